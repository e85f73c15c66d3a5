"""Stage `sample`: a labelled synthetic set, class-balanced or in the real proportions, and grids."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import memory
from ..config import Config, Rep, to_dict
from ..data.images import image_hashes, to_float, to_uint8
from ..data.synthetic import EDITS_FILE, IMAGES_FILE, OUTPUTS, SOFT_FILE, SetWriter, class_counts, read_synthetic
from ..errors import CheckpointError, StageError
from ..gans import GANS
from ..gans.training import generate
from ..progress import echo
from ..utils import atomic_open, in_config_threads, resolve_device
from .layout import paths
from .records import GAN, SAMPLES, building, output_hashes, require_stage, stage_fingerprint, start_stage, write_record
from .split import load_split_data
from .train_gan import load_generator

CHUNK = 16384  # images generated and written at a time (sample.chunk_size)


@in_config_threads
def run_sample(cfg: Config, force: bool = False, reps: Optional[Sequence[Rep]] = None) -> List[Path]:
    """Write `<out_dir>/samples/` (one per generator and entry of gan_seeds, or per rep of `reps`): samples.pt,
    images/<class>/*.png and grid.png."""
    return [_sample_one(cfg, rep, force) for rep in (cfg.replicates if reps is None else reps)]


def _sample_one(cfg: Config, rep: Rep, force: bool) -> Path:
    p = paths(cfg)
    out_dir, ckpt_path = p.samples(rep), p.gan_checkpoint(rep)
    todo = start_stage(cfg, SAMPLES, force, rep)
    if todo is None:
        return out_dir
    fp, config = todo
    started = time.time()
    memory.check(cfg, "sample", paths(cfg))  # a count with a zero too many stops here, before anything is allocated
    require_stage(cfg, GAN, rep)
    G, ckpt = load_generator(ckpt_path)
    made_by = ckpt.get("fingerprint")  # absent in checkpoints written before it was recorded
    if made_by is not None and made_by != stage_fingerprint(cfg, GAN, rep):
        raise CheckpointError(f"GAN checkpoint '{ckpt_path}' was made by a different config; "
                              "run `ganaug train-gan --force` to train this config's GAN")
    if not getattr(G, "conditional", False):
        raise StageError(
            f"gan '{cfg.gen(rep.generator).name}' with per_class: false is unconditional: its samples have no labels; "
            "set gan.per_class: true or use gan.name: cgan to sample a labelled set"
        )
    data, manifest = load_split_data(cfg)
    if ckpt["data_fingerprint"] != manifest["fingerprint"]:
        raise StageError(f"GAN checkpoint '{ckpt_path}' was trained on another split; "
                         "run `ganaug train-gan --force` first")
    num_classes = len(data.classes)
    s = cfg.sample_of(rep.generator)

    # How many per class: balanced, or the training set's proportions at the same total.
    if s.per_image is not None:  # edits: M of every training image
        counts = [s.per_image * n for n in class_counts(data.train.labels, num_classes)]
    elif s.proportions == "balanced":
        counts = [s.n_per_class] * num_classes
    else:
        real = class_counts(data.train.labels, num_classes)
        total = s.n_per_class * num_classes
        counts = [max(1, round(total * n / sum(real))) for n in real]

    device = resolve_device(cfg.device)
    G = G.to(device)
    gen = torch.Generator().manual_seed(s.seed)
    n = sum(counts)
    shape = tuple(int(v) for v in data.train.images.shape[1:])
    g_kwargs = sampler_kwargs(cfg, rep)
    # Chunks of a multiple of batch_size (and of 16 rows: torch draws the same normals in chunks as in one call),
    # so a chunked set is bit for bit the one an unchunked run makes.
    chunk = max(s.batch_size, (s.chunk_size or CHUNK) // s.batch_size * s.batch_size)
    bounds = np.cumsum([0] + counts)
    echo(f"sample: {n} images ({', '.join(map(str, counts)) if len(set(counts)) > 1 else f'{counts[0]} per class'}) "
         f"from {ckpt_path}" + (f", in chunks of {chunk}" if n > chunk and s.filter is None else "")
         + (f", keeping those the domain classifier gives their class with p >= {s.filter.min_confidence}"
            if s.filter is not None else "")
         + (f"; the PNG tree will take about {memory.png_seconds(n) / 60:.0f} min (sample.png: false skips it)"
            if s.png and memory.png_seconds(n) > 60 else ""))

    def draw(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return to_uint8(generate(G, z.to(device), y.to(device), batch_size=s.batch_size, **g_kwargs))

    with building(out_dir) as out:
        writer = SetWriter(out, n, shape, data.classes, png=s.png)
        extra: dict = {}
        if s.mode == "edit":
            extra["edit"] = _edit(G, s, data, counts, gen, writer, chunk, device, g_kwargs, out)
        elif s.filter is None:
            for a in range(0, n, chunk):
                b = min(n, a + chunk)
                y = torch.from_numpy(np.searchsorted(bounds, np.arange(a, b), side="right") - 1).to(torch.int64)
                z = torch.randn(b - a, G.z_dim, generator=gen)
                writer.add(draw(z, y), y)
        else:
            extra["filter"] = _filtered(cfg, data.classes, counts, G.z_dim, gen, draw, writer, chunk, device)
        writer.close({**({"edits": EDITS_FILE} if s.mode == "edit" else {}),
                      **({"soft_labels": SOFT_FILE} if "soft_labels" in extra.get("edit", {}) else {}),
                      "gan_checkpoint": str(ckpt_path), "gan_step": ckpt["step"], "gan_seed": rep.seed,
                      "generator": rep.generator, "family": cfg.gen(rep.generator).name, "sampler": g_kwargs,
                      "data_fingerprint": manifest["fingerprint"], "config": to_dict(cfg), **extra})
        images, labels, _ = read_synthetic(out)
        _real_vs_fake_grid(data.train.images, data.train.labels, images, labels, num_classes, s.grid_per_class, gen,
                           out / "grid.png")
        if s.mode == "edit":
            _edit_grid(edit_sources(data)[0], images, out)
        written = [f for f in (*OUTPUTS, SOFT_FILE, EDITS_FILE) if (out / f).is_file()]
        write_record(out, "samples", fp, config, started, {"counts": counts, **extra, **output_hashes(out, *written)})
    if s.filter is not None:
        f = extra["filter"]
        echo(f"sample: the filter kept {f['kept_total']} of {f['drawn_total']} fakes ({100 * f['rate_total']:.1f}%); "
             "per class " + ", ".join(f"{c} {100 * r:.0f}%" for c, r in zip(data.classes, f["rate"])))
    if s.mode == "edit":
        e = extra["edit"]
        echo(f"sample: {n} edits of {e['sources']} training images at strength "
             f"{', '.join(f'{v:g}' for v in s.strengths)}{' (inverted)' if s.invert else ''}, "
             + ("toward their own class" if s.target == "same" else "toward another class, with soft labels"))
    echo(f"sample: wrote {out_dir / IMAGES_FILE}{' and a PNG tree' if s.png else ''}; grid {out_dir / 'grid.png'}")
    return out_dir


def sampler_kwargs(cfg: Config, rep: Rep) -> Dict[str, Any]:
    """The sampling keys the rep's family reads: truncation for StyleGAN2, DDIM steps and guidance for diffusion."""
    s, meta = cfg.sample_of(rep.generator), GANS.meta(cfg.gen(rep.generator).name)
    out: Dict[str, Any] = {}
    if meta.get("truncation") and s.truncation is not None:
        out["truncation_psi"] = s.truncation  # toward the class's mean w
    if meta.get("guidance"):  # the family's defaults made explicit, so the record says what was run
        out |= {k: (v if v is not None else meta["sample_defaults"][k]) for k, v in (("steps", s.steps),
                                                                                   ("guidance", s.guidance))}
    return out


def edit_sources(data: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """The images edits start from, and their labels: the split's training images, never validation or test ones."""
    return data.train.images, data.train.labels


def edit_plan(labels: torch.Tensor, counts: List[int], s: Any, num_classes: int, gen: torch.Generator
              ) -> Dict[str, torch.Tensor]:
    """Per fake: its source (an index into `labels`), strength, source and target class, hard and soft label.

    Each class's sources are cycled evenly (every image once before any twice); a list of strengths is drawn from
    per fake; with target other, the target classes of a class's fakes cycle evenly over the other classes in a
    random order (classes of equal counts then receive as many as they send), and the soft label is
    1 - strength on the source's class and strength on the target's.
    """
    index, target = [], []
    # One start for every class: each class then sends as many edits to each offset, and (equal counts) every class
    # receives exactly as many as it sends, so hard labels stay balanced.
    start = int(torch.randint(max(1, num_classes - 1), (1,), generator=gen))
    for c, k in enumerate(counts):
        idx = torch.nonzero(labels == c).flatten()
        if k and not len(idx):
            raise StageError(f"sample.mode edit: class {c} has no training image to edit; sample.mode: noise makes fakes "
                             "of classes without images")
        index.append(idx[torch.arange(k) % max(1, len(idx))])
        if s.target == "other":
            off = (torch.arange(k) + start) % (num_classes - 1) + 1
            target.append((c + off[torch.randperm(k, generator=gen)]) % num_classes)
    source_index = torch.cat(index)
    source_label = labels[source_index].to(torch.int64)
    n = len(source_index)
    levels = torch.tensor(s.strengths, dtype=torch.float32)
    strength = levels[torch.randint(len(levels), (n,), generator=gen)] if len(levels) > 1 else levels.expand(n).clone()
    target_label = torch.cat(target) if s.target == "other" else source_label.clone()
    soft = None
    if s.target == "other":
        soft = torch.zeros(n, num_classes)
        soft[torch.arange(n), source_label] += 1 - strength
        soft[torch.arange(n), target_label] += strength
    label = torch.where(strength >= 0.5, target_label, source_label)  # the larger share (the target's at 0.5)
    return {"source_index": source_index, "source_label": source_label, "target_label": target_label,
            "strength": strength, "label": label, "soft": soft}


def _edit(G: torch.nn.Module, s: Any, data: Any, counts: List[int], gen: torch.Generator, writer: SetWriter,
          chunk: int, device: torch.device, g_kwargs: Dict[str, Any], out: Path) -> Dict[str, Any]:
    """Edits of the training images (`sample.mode: edit`), written chunk by chunk, with each one's provenance:
    the index and content hash of the very tensor handed to the editor, its strength and classes."""
    if s.target == "other" and len(counts) < 2:
        raise StageError("sample.target other edits toward another class, and the split has one class; use target: same")
    images, labels = edit_sources(data)
    plan = edit_plan(labels, counts, s, len(counts), gen)
    n = len(plan["source_index"])
    hashes: List[str] = []
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        src = images[plan["source_index"][a:b]]  # uint8 (n, C, H, W): what is edited
        hashes += image_hashes(src)
        z = torch.randn(b - a, G.z_dim, generator=gen)
        parts = []
        for i in range(0, b - a, s.batch_size):
            j = slice(i, min(b - a, i + s.batch_size))
            parts.append(G.edit(to_float(src[j]).to(device), plan["source_label"][a:b][j].to(device),
                                plan["target_label"][a:b][j].to(device), plan["strength"][a:b][j].to(device),
                                z[j].to(device), invert=s.invert, **g_kwargs).float().cpu())
        writer.add(to_uint8(torch.cat(parts)), plan["label"][a:b])
    if plan["soft"] is not None:
        with atomic_open(out / SOFT_FILE, "wb") as f:
            np.save(f, plan["soft"].numpy().astype(np.float32))
    with atomic_open(out / EDITS_FILE, "wb") as f:
        np.savez(f, source_index=plan["source_index"].numpy(), source_hash=np.array(hashes),
                 strength=plan["strength"].numpy(), source_label=plan["source_label"].numpy(),
                 target_label=plan["target_label"].numpy())
    return {"strength": s.strengths, "target": s.target, "invert": s.invert, "per_image": s.per_image,
            "sources": len(set(plan["source_index"].tolist())), "edits": EDITS_FILE,
            **({"soft_labels": SOFT_FILE} if plan["soft"] is not None else {})}


def _edit_grid(sources: torch.Tensor, fakes: torch.Tensor, folder: Path, k: int = 8) -> None:
    """edits.png: per source class (up to 20 rows), its first source image, then up to k of its edits."""
    from torchvision.utils import save_image

    e = np.load(folder / EDITS_FILE)
    index, label = torch.from_numpy(e["source_index"]), torch.from_numpy(e["source_label"])
    tiles = []
    for c in label.unique().tolist()[:20]:
        first = int(index[label == c][0])
        row = torch.cat([sources[first:first + 1], fakes[torch.nonzero(index == first).flatten()[:k]]])
        tiles.append(torch.cat([row, torch.zeros((k + 1 - len(row),) + tuple(row.shape[1:]), dtype=torch.uint8)]))
    save_image(torch.cat(tiles).float() / 255.0, folder / "edits.png", nrow=k + 1, padding=1, pad_value=0.5)


def _filtered(cfg: Config, classes: List[str], counts: List[int], z_dim: int, gen: torch.Generator,
              draw: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], writer: SetWriter, chunk: int,
              device: torch.device) -> Dict[str, Any]:
    """Draw per class until counts[c] fakes pass the domain classifier at min_confidence (at most max_draws times
    counts[c] draws); write the kept ones and return the acceptance per class. Raises when a class falls short."""
    from ..metrics.features import load_domain
    from .features import domain_checkpoint

    f = cfg.sample.filter
    clf, _ = load_domain(domain_checkpoint(cfg), device)
    drawn, kept = [0] * len(classes), [0] * len(classes)
    for c, want in enumerate(counts):
        cap = math.ceil(f.max_draws * want)
        while kept[c] < want and drawn[c] < cap:
            rate = kept[c] / drawn[c] if drawn[c] else 1.0  # draw about what the rate so far says is missing
            m = min(cap - drawn[c], chunk, max(64, math.ceil(1.2 * (want - kept[c]) / max(rate, 0.02))))
            y = torch.full((m,), c, dtype=torch.int64)
            x = draw(torch.randn(m, z_dim, generator=gen), y)
            with torch.no_grad():
                p = torch.cat([torch.softmax(clf(to_float(x[i:i + 1000].to(device))).float(), 1)[:, c].cpu()
                               for i in range(0, m, 1000)])
            ok = torch.nonzero(p >= f.min_confidence).flatten()[:want - kept[c]]
            drawn[c] += m
            if len(ok):
                writer.add(x[ok], y[ok])
                kept[c] += len(ok)
        if kept[c] < want:
            raise StageError(
                f"sample.filter: only {kept[c]} of {drawn[c]} fakes of class '{classes[c]}' "
                f"({100 * kept[c] / drawn[c]:.1f}%) reach p >= {f.min_confidence}, short of the {want} wanted within "
                f"sample.filter.max_draws {f.max_draws:g}; lower sample.filter.min_confidence, raise max_draws, or train "
                "the generator longer")
    rate = [k / d for k, d in zip(kept, drawn)]
    return {"min_confidence": f.min_confidence, "drawn": drawn, "kept": kept, "rate": rate,
            "drawn_total": sum(drawn), "kept_total": sum(kept), "rate_total": sum(kept) / sum(drawn)}


def _real_vs_fake_grid(real_x: torch.Tensor, real_y: torch.Tensor, fake_x: torch.Tensor, fake_y: torch.Tensor,
                       num_classes: int, k: int, gen: torch.Generator, path: Path) -> None:
    """One row per class (up to 20): k real training images, then k synthetic ones."""
    from torchvision.utils import save_image

    tiles = []
    for c in range(min(num_classes, 20)):
        for xs, ys in ((real_x, real_y), (fake_x, fake_y)):
            idx = torch.nonzero(ys == c).flatten()
            if len(idx) > 1_000_000:  # a huge set: k random picks, not a permutation of a class
                idx = idx[torch.randint(len(idx), (k,), generator=gen)]
            else:
                idx = idx[torch.randperm(len(idx), generator=gen)[:k]]
            row = xs[idx]
            if len(row) < k:  # a class with fewer than k images: pad with blanks
                row = torch.cat([row, torch.zeros((k - len(row),) + tuple(xs.shape[1:]), dtype=torch.uint8)])
            tiles.append(row)
    grid = torch.cat(tiles).float() / 255.0
    save_image(grid, path, nrow=2 * k, padding=1, pad_value=0.5)
