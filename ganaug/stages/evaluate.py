"""Stage `evaluate`: how good each synthetic set is, and whether it copies, against real held-out images.

For every synthetic set (each GAN seed), overall and per class, against the real test images:
FID, KID, precision, recall, density and coverage in the features of `evaluate.features`. The test images
are cut in two: a reference part that every set is compared with, and a held-out part whose numbers are the
floor a perfect generator would reach at this sample size (FID and P/R are biased at small n). The fakes, the
floor and the real training images are scored at one size per class (the fewest of the class's training images,
half its test images and its fakes); a class too small to hold out a floor is left out of every row and said.
The real training images' row is not a floor in a domain extractor's features (it has seen them).
Then the copy check (`metrics/copies.py`: each fake's nearest training image after alignment, in pixels and in
features, over every training image, against how close real test images sit to the training set, by three
criteria under one false-alarm rate; an edit's own source left out of its search) and class consistency (the
domain classifier, trained on real training images only, labels each fake). Nothing here selects or trains anything
on the test images.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import memory
from ..classifiers.train import predict
from ..config import Config, Rep
from ..data.synthetic import EDITS_FILE, load_synthetic
from ..errors import DataError
from ..metrics.copies import (
    Neighbours,
    Space,
    Transform,
    apply,
    check,
    describe,
    describe_to_source,
    feature_views,
    interior,
    max_shift,
    mirror_allowed,
    own_distance,
    pixel_views,
    to_source,
    transforms,
)
from ..metrics.features import get_extractor, load_domain
from ..metrics.quality import min_images, quality
from ..progress import echo
from ..utils import atomic_write_json, in_config_threads, resolve_device
from .features import domain_checkpoint
from .layout import paths
from .records import EVALUATE, SAMPLES, building, read_record, require_stage, start_stage, up_to_date, write_record
from .split import load_split_data

RESULT = "quality.json"


@in_config_threads
def run_evaluate(cfg: Config, force: bool = False, reps: Optional[Sequence[Rep]] = None,
                 train_features: bool = True) -> List[Path]:
    """Write `<out_dir>/evaluate/quality.json` (one per generator and entry of gan_seeds, or per rep of `reps`) and
    the closest-pairs grid."""
    reps = cfg.replicates if reps is None else list(reps)
    if force or not all(up_to_date(cfg, EVALUATE, rep) for rep in reps):
        memory.check(cfg, "evaluate", paths(cfg))
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


def _sizes(train_counts: List[int], test_counts: List[int], fake_counts: List[int], need: int, cap: Optional[int]
           ) -> Tuple[List[int], bool, List[int]]:
    """Images per class scored in every row (fakes, floor, training images), whether a floor is held out, and the
    classes left out because their test images are too few to hold one out (k + 2 on each side)."""
    can = [n_te // 2 >= need for n_te in test_counts]
    if any(can):
        n = [min(n_tr, n_te // 2, n_f) if ok else 0 for n_tr, n_te, n_f, ok in zip(train_counts, test_counts, fake_counts, can)]
        without = [c for c, ok in enumerate(can) if not ok]
    else:  # no floor at all: the fakes and the training images at one size, against every test image
        n, without = [min(n_tr, n_f) for n_tr, n_f in zip(train_counts, fake_counts)], []
    total = sum(n)
    if cap is not None and total > cap:
        n = [max(1, int(k * cap / total)) if k else 0 for k in n]
    return n, any(can), without


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

    # Which images. Per class, the fakes, the real training images and a held-out part of the test set (the floor's
    # stand-in for a perfect generator) are scored at one size, n_c = min(train, test // 2, fakes), so no row is
    # flattered or penalised by its sample size; the reference is the rest of the test set, the same for every row.
    # A class whose test images are too few to hold out a floor is left out of every row, and said. max_images caps
    # each set (a CPU cap for slow extractors), proportionally per class.
    gen = torch.Generator().manual_seed(ev.seed)
    nc = len(classes)
    train_counts = torch.bincount(data.train.labels, minlength=nc).tolist()
    test_labels = data.test.labels
    test_counts = torch.bincount(test_labels, minlength=nc).tolist()
    n_per, floor, without_floor = _sizes(train_counts, test_counts, fake_counts, need, ev.max_images)
    train_sel = _subset(data.train.labels, n_per, gen)
    held_sel = _subset(test_labels, n_per if floor else [0] * nc, gen)
    rest = torch.ones(len(test_labels), dtype=torch.bool)
    rest[held_sel] = False
    for c in without_floor:
        rest[test_labels == c] = False
    pool = torch.nonzero(rest).flatten()
    ref_sel = pool[_subset(test_labels[pool], _cap(test_labels[pool], nc, ev.max_images), gen)]
    fake_sel = _subset(fake_y, n_per, gen)
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

    # Copies: each fake's nearest training image after alignment (shifts, and mirroring where the generator's
    # training could flip), in pixels over every fake, every training image and every test image; in features over
    # every training image (aligned too where the extractor is the cheap domain one) and every fake, or a random
    # max_images of them. An edit (sample.mode: edit) is meant to resemble its own source: that training image is
    # left out of its search, so it is judged against the others, and its distance to its source is reported.
    mirror = ev.copy_mirror if ev.copy_mirror is not None else mirror_allowed(cfg.gen(rep.generator))
    shift = max_shift(ev.copy_shift, min(fake_x.shape[-2:]))
    ts = transforms(shift, mirror)
    f_ts = ts if extractor.name == "domain" else ts[:1]
    cp_sel = torch.arange(len(fake_y)) if ev.max_images is None else _subset(fake_y, _cap(fake_y, nc, ev.max_images), gen)
    views = pixel_views(data.train.images, ts, shift)
    f_views = feature_views(data.train.images, f_ts, extractor)  # the training images' features, extracted once
    edits = _edits_of(p.samples(rep), len(fake_y), len(data.train.labels))
    own = None if edits is None else torch.from_numpy(edits["source_index"])  # each edit's own source: left out
    n_train = len(data.train.labels)
    spaces = {"pixels": Space(interior(fake_x, shift), fake_y, interior(data.test.images, shift), test_labels, views,
                              len(ts), n_train, exclude=own),
              "features": Space(extractor(fake_x[cp_sel]), fake_y[cp_sel], test_f, test_labels[test_sel], f_views,
                                len(f_ts), n_train, exclude=None if own is None else own[cp_sel])}
    judged, near = check(spaces, classes, ev.copy_quantile, ev.copy_ratio, ev.copy_alpha)
    copies: Dict[str, Any] = {**judged, "shift": shift, "mirror": mirror}
    if edits is not None:
        copies.update(edit_copies(fake_x, data.train.images, edits, near["pixels"][0], copies["pixels"], ts, shift))

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
              "held_out": len(held_sel), "fake_all": len(fake_y), "per_class": dict(zip(classes, n_per)),
              "classes_without_floor": [classes[c] for c in without_floor]},
        "seconds": None,
        "filter": _filter_of(p.samples(rep)),
    }
    with building(folder) as out:
        _closest_pairs(fake_x, data.train.images, near["pixels"][0], ts, out / "closest.png", ev.closest_pairs)
        result["seconds"] = round(time.time() - started, 2)
        atomic_write_json(out / RESULT, result)
        write_record(out, "evaluate", fp, config, started, {"features": extractor.name})
    o, floor = overall["fake"], overall["floor"]
    said = (f"FID {o['fid']:.2f}" + (f" (floor {floor['fid']:.2f})" if floor else " (too few test images for a floor)")
            + f", precision {o['precision']:.3f}, recall {o['recall']:.3f}; " if o else "too few images for FID; ")
    flagged = f" COPIES? ({', '.join(copies['fired'][:3])}{' ...' if len(copies['fired']) > 3 else ''})" if copies["flag"] else ""
    echo(f"evaluate: {extractor.name} {said}copies (pixels) {describe(copies['pixels'])}{flagged}; class "
         f"consistency {100 * consistency['overall']:.1f}% in {time.time() - started:.0f}s -> {folder}")
    if edits is not None:
        echo("evaluate: edits' pixel distance to their own source by strength (median; 10th percentile; share within "
             "the copy threshold; median to the nearest other training image, which the copy check judges): "
             + describe_to_source(copies["to_source"]))
    return folder / RESULT


def edit_copies(fakes: torch.Tensor, train: torch.Tensor, edits: Dict[str, np.ndarray], near: Neighbours,
                pixels: Dict[str, Any], ts: Sequence[Transform], shift: int) -> Dict[str, Any]:
    """An edited set's additions to its copy check: that each edit's own source was left out of its search, and per
    strength how near edits stay to their sources (`to_source`), in the check's pixel distance (aligned interiors)
    against its threshold. fakes (N, C, H, W), train the training images, `near` the fakes' pixel neighbours (each
    source left out), `pixels` the pixel space's criteria."""
    own = torch.from_numpy(edits["source_index"])
    d = own_distance(fakes, train[own], ts, shift)
    summary = to_source(d, torch.from_numpy(edits["strength"]), near.d1, pixels["overall"]["threshold"])
    return {"own_source_excluded": True, "to_source": summary}


def _edits_of(folder: Path, n_fakes: int, n_train: int) -> Optional[Dict[str, np.ndarray]]:
    """An edited set's provenance (edits.npz: each fake's source index, hash, strength, classes), or None; checked
    to hold one row per fake and source indices among the training images."""
    f = folder / EDITS_FILE
    if not f.is_file():
        return None
    with np.load(f) as z:
        edits = {k: z[k] for k in z.files}
    index = edits.get("source_index")
    if index is None or "strength" not in edits:
        raise DataError(f"'{f}' lacks source_index or strength; sample again (`ganaug sample --force`)")
    if len(index) != n_fakes or len(edits["strength"]) != n_fakes:
        raise DataError(f"'{f}' records {len(index)} edits but the set holds {n_fakes} fakes; sample again "
                        "(`ganaug sample --force`)")
    if len(index) and (index.min() < 0 or index.max() >= n_train):
        raise DataError(f"'{f}' has source indices outside the {n_train} training images; sample again "
                        "(`ganaug sample --force`)")
    return edits


def _filter_of(folder: Path) -> Optional[Dict[str, Any]]:
    """The acceptance the sample stage's filter recorded (None for an unfiltered set)."""
    rec = read_record(folder) or {}
    return rec.get("filter")


def _closest_pairs(fakes: torch.Tensor, train: torch.Tensor, near: Neighbours, ts: List[Transform], path: Path,
                   k: int) -> None:
    """The k fakes nearest (in pixels, after alignment) to a training image, each beside that training image as it
    matched (shifted or mirrored), laid out by `closest_pairs_grid`."""
    from PIL import Image

    order = torch.argsort(near.d1)[:k].tolist()
    matched = torch.stack([apply(train[int(near.index[i])][None], ts[int(near.transform[i])])[0] for i in order])
    grid = closest_pairs_grid(fakes[order], matched).permute(1, 2, 0).numpy()
    Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid).save(path)


CLOSEST_MIN_SIDE = 64  # px: smaller images are enlarged, pixel for pixel, to at least this


def closest_pairs_grid(fakes: torch.Tensor, matched: torch.Tensor, min_side: int = CLOSEST_MIN_SIDE) -> torch.Tensor:
    """Pairs of uint8 images (k, C, H, W), fake on the left and its match on the right, as one uint8 image (C, H', W'):
    about as many pairs per row as rows (so about twice as wide as tall), a wider white gap between pairs than within
    one, and images under `min_side` pixels enlarged by a whole factor with nearest-neighbour (a 28-pixel digit is
    drawn 84 pixels high, every pixel a 3 x 3 block)."""
    k, c, h, w = fakes.shape
    scale = max(1, -(-min_side // min(h, w)))
    th, tw = h * scale, w * scale
    per_row = max(1, math.ceil(math.sqrt(k)))
    rows = math.ceil(k / per_row)
    margin, inner, between, row_gap = 4, 2, max(8, tw // 4), max(4, th // 8)
    pair_w = 2 * tw + inner
    grid = torch.full((c, 2 * margin + rows * th + (rows - 1) * row_gap,
                       2 * margin + per_row * pair_w + (per_row - 1) * between), 255, dtype=torch.uint8)

    def big(img: torch.Tensor) -> torch.Tensor:
        return img.repeat_interleave(scale, 1).repeat_interleave(scale, 2)

    for i in range(k):
        row, col = divmod(i, per_row)
        y, x = margin + row * (th + row_gap), margin + col * (pair_w + between)
        grid[:, y:y + th, x:x + tw] = big(fakes[i])
        grid[:, y:y + th, x + tw + inner:x + pair_w] = big(matched[i])
    return grid
