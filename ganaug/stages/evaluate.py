"""Stage `evaluate`: how good each synthetic set is, and whether it copies, against real held-out images.

For every synthetic set (each GAN seed), overall and per class, against the real test images:
FID, KID, precision, recall, density and coverage in the features of `evaluate.features`. The test images
are cut in two: a reference part that every set is compared with, and a held-out part as large per class as
the training set, whose numbers are the floor a perfect generator would reach at this sample size (FID and
P/R are biased at small n); the fakes are a random subset of the same size per class. The real training
images are scored too, but a domain extractor has seen them, so their row is not a floor in its features.
Then the copy check (each fake's nearest training image, in the features and in pixels, against how close
real test images sit to the training set) and class consistency (the domain classifier, trained on real
training images only, labels each fake). Nothing here selects or trains anything on the test images.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from .. import memory
from ..classifiers.train import predict
from ..config import Config, Rep
from ..data.synthetic import load_synthetic
from ..errors import DataError
from ..metrics.features import get_extractor, load_domain
from ..metrics.quality import copy_share, min_images, nearest, quality
from ..utils import atomic_write_json, resolve_device
from .common import (
    EVALUATE,
    SAMPLES,
    building,
    echo,
    load_split_data,
    paths,
    read_record,
    require_stage,
    start_stage,
    up_to_date,
    write_record,
)
from .features import domain_checkpoint

RESULT = "quality.json"


def run_evaluate(cfg: Config, force: bool = False, reps: Optional[Sequence[Rep]] = None,
                 train_features: bool = True) -> List[Path]:
    """Write `<out_dir>/evaluate/quality.json` (one per generator and entry of gan_seeds, or per rep of `reps`) and
    the closest-pairs grid."""
    reps = cfg.replicates if reps is None else list(reps)
    if force or not all(up_to_date(cfg, EVALUATE, rep) for rep in reps):
        memory.check(cfg, "evaluate")
        for rep in reps:
            require_stage(cfg, SAMPLES, rep)
        if cfg.evaluate.features != "domain":  # a missing or wrong network file is said before any work
            get_extractor(cfg.evaluate, device=resolve_device(cfg.device))
        # once: every set is scored in the same features (an experiment's graph trains them in a cell of their own)
        domain_checkpoint(cfg, force=force and train_features)
    return [_evaluate_one(cfg, rep, force) for rep in reps]


def _subset(labels: torch.Tensor, per_class: List[int], gen: torch.Generator) -> torch.Tensor:
    """Indices of a random subset with per_class[c] images of class c (all of a class that has fewer)."""
    out = []
    for c, k in enumerate(per_class):
        idx = torch.nonzero(labels == c).flatten()
        out.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    return torch.cat(out).sort().values


def _cap(labels: torch.Tensor, num_classes: int, cap: Optional[int]) -> List[int]:
    """Images per class, scaled down proportionally so the total is at most `cap`."""
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    total = sum(counts)
    if cap is None or total <= cap:
        return counts
    return [max(1, int(n * cap / total)) for n in counts]


def _evaluate_one(cfg: Config, rep: Rep, force: bool) -> Path:
    p = paths(cfg)
    folder = p.evaluate(rep)
    todo = start_stage(cfg, EVALUATE, force, rep)
    if todo is None:
        return folder / RESULT
    fp, config = todo
    started = time.time()
    ev = cfg.evaluate
    require_stage(cfg, SAMPLES, rep)
    data, manifest = load_split_data(cfg)
    fake_x, fake_y = load_synthetic(p.samples(rep), tuple(data.train.images.shape[1:]), data.classes)
    classes, k = data.classes, max(ev.k_pr, ev.k_dc)
    need = min_images(k)
    fake_counts = torch.bincount(fake_y, minlength=len(classes)).tolist()
    short = [(classes[c], n) for c, n in enumerate(fake_counts) if n < need]
    if short:
        raise DataError(f"synthetic set '{p.samples(rep)}' has {short[0][1]} fake(s) of class '{short[0][0]}', fewer "
                        f"than the {need} that k = {k} nearest neighbours need (evaluate.k_dc); raise sample.n_per_class")
    device = resolve_device(cfg.device)
    domain = domain_checkpoint(cfg)
    extractor = get_extractor(ev, device=device, domain_checkpoint=domain)
    echo(f"evaluate: {extractor.description}")

    # Which images. The test set is cut in two per class: a held-out part as large as the training set's class (at
    # most half the class), the floor's stand-in for a perfect generator, and the reference, the rest; the fakes
    # are a random subset of the held-out part's size per class. Every set is compared with the same reference.
    # max_images caps each set (a CPU cap for slow extractors), proportionally per class.
    gen = torch.Generator().manual_seed(ev.seed)
    nc = len(classes)
    train_sel = _subset(data.train.labels, _cap(data.train.labels, nc, ev.max_images), gen)
    train_counts = torch.bincount(data.train.labels[train_sel], minlength=nc).tolist()
    test_labels = data.test.labels
    test_counts = torch.bincount(test_labels, minlength=nc).tolist()
    held = [min(n_tr, n_te // 2) if n_te // 2 >= need else 0 for n_tr, n_te in zip(train_counts, test_counts)]
    held_sel = _subset(test_labels, held, gen)
    rest = torch.ones(len(test_labels), dtype=torch.bool)
    rest[held_sel] = False
    pool = torch.nonzero(rest).flatten()
    ref_sel = pool[_subset(test_labels[pool], _cap(test_labels[pool], nc, ev.max_images), gen)]
    fake_sel = _subset(fake_y, [h if h else n for h, n in zip(held, train_counts)], gen)
    test_sel = torch.cat([ref_sel, held_sel]).sort().values
    test_images = data.test.images[test_sel]  # read once: evaluation, never selection
    test_f = extractor(test_images)
    pos = {int(j): i for i, j in enumerate(test_sel.tolist())}
    feats = {"ref": test_f[[pos[int(j)] for j in ref_sel]], "held": test_f[[pos[int(j)] for j in held_sel]],
             "train": extractor(data.train.images[train_sel]), "fake": extractor(fake_x[fake_sel])}
    labels = {"ref": test_labels[ref_sel], "held": test_labels[held_sel], "train": data.train.labels[train_sel],
              "fake": fake_y[fake_sel]}

    def scores(kind: str, mask_cls: Optional[int] = None) -> Optional[Dict[str, Any]]:
        real, gen_ = feats["ref"], feats[kind]
        if mask_cls is not None:
            real, gen_ = real[labels["ref"] == mask_cls], gen_[labels[kind] == mask_cls]
        if len(real) < need or len(gen_) < need:
            return None  # too few images of this class for k nearest neighbours (said in the notes)
        return quality(real, gen_, k_pr=ev.k_pr, k_dc=ev.k_dc, kid_subsets=ev.kid_subsets, seed=ev.seed)

    kinds = ("fake", "floor", "train")
    source = {"fake": "fake", "floor": "held", "train": "train"}
    overall = {kind: scores(source[kind]) for kind in kinds}
    per = {name: {kind: scores(source[kind], c) for kind in kinds} for c, name in enumerate(classes)}

    # Copies: each fake's nearest training image, in pixels and in features, against real test images' own. Every
    # fake and every training image, unless max_images caps the sets (then the ones scored above).
    capped = ev.max_images is not None
    cp_x, cp_y = (fake_x[fake_sel], fake_y[fake_sel]) if capped else (fake_x, fake_y)
    train_x = data.train.images[train_sel] if capped else data.train.images
    cp_f = feats["fake"] if capped else extractor(fake_x)
    train_f = feats["train"] if capped else extractor(data.train.images)
    copies: Dict[str, Any] = {}
    for space, fake_q, test_q, ref in (("pixels", cp_x.float(), test_images.float(), train_x.float()),
                                       ("features", cp_f, test_f, train_f)):
        d_fake, nn_idx = nearest(fake_q, ref)
        d_test, _ = nearest(test_q, ref)
        per_class_share = {name: copy_share(d_fake[cp_y == c], d_test[test_labels[test_sel] == c], ev.copy_quantile)
                           for c, name in enumerate(classes)}
        copies[space] = {"overall": copy_share(d_fake, d_test, ev.copy_quantile), "per_class": per_class_share,
                         "n_fakes": len(cp_y)}
        if space == "pixels":
            px_dist, px_idx = d_fake, nn_idx

    # Class consistency: the domain classifier (real training images only) labels every fake.
    clf, ck = load_domain(domain, device)
    right = (predict(clf, fake_x, device=device, amp_dtype=None) == fake_y).float()
    consistency = {"overall": float(right.mean()), "per_class": {name: float(right[fake_y == c].mean())
                                                                for c, name in enumerate(classes)},
                   "reference_val_accuracy": ck["val_accuracy"]}

    result = {
        "gan_seed": rep.seed, "generator": rep.generator, "family": cfg.gen(rep.generator).name,
        "synthetic_set": p.relative(p.samples(rep)), "features": extractor.name,
        "features_description": extractor.description, "overall": overall, "per_class": per,
        "copies": copies, "class_consistency": consistency,
        "n": {"fake": len(fake_sel), "train": len(train_sel), "test": len(test_sel), "reference": len(ref_sel),
              "held_out": len(held_sel), "fake_all": len(fake_y)},
        "seconds": None,
        "filter": _filter_of(p.samples(rep)),
    }
    with building(folder) as out:
        _closest_pairs(cp_x, train_x, px_dist, px_idx, out / "closest.png", ev.closest_pairs)
        result["seconds"] = round(time.time() - started, 2)
        atomic_write_json(out / RESULT, result)
        write_record(out, "evaluate", fp, config, started, {"features": extractor.name})
    o, floor = overall["fake"], overall["floor"]
    said = (f"FID {o['fid']:.2f}" + (f" (floor {floor['fid']:.2f})" if floor else " (too few test images for a floor)")
            + f", precision {o['precision']:.3f}, recall {o['recall']:.3f}; " if o else "too few images for FID; ")
    echo(f"evaluate: {extractor.name} {said}copies {100 * copies['pixels']['overall']['share']:.1f}% (pixels); class "
         f"consistency {100 * consistency['overall']:.1f}% in {time.time() - started:.0f}s -> {folder}")
    return folder / RESULT


def _filter_of(folder: Path) -> Optional[Dict[str, Any]]:
    """The acceptance the sample stage's filter recorded (None for an unfiltered set)."""
    rec = read_record(folder) or {}
    return rec.get("filter")


def _closest_pairs(fakes: torch.Tensor, train: torch.Tensor, dist: torch.Tensor, idx: torch.Tensor, path: Path,
                   k: int) -> None:
    """The k fakes nearest (in pixels) to a training image, each beside that training image: a two-column grid."""
    from torchvision.utils import save_image

    order = torch.argsort(dist)[:k]
    tiles = torch.stack([t for i in order.tolist() for t in (fakes[i], train[idx[i]])]).float() / 255.0
    save_image(tiles, path, nrow=2, padding=1, pad_value=1.0)
