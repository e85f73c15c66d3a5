"""Stage `sample`: a labelled synthetic set, class-balanced or in the real proportions, and grids."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from .. import memory
from ..config import Config, to_dict
from ..data.images import to_uint8
from ..data.synthetic import IMAGES_FILE, OUTPUTS, SetWriter, class_counts, read_synthetic
from ..errors import CheckpointError, StageError
from ..gans.training import generate
from ..utils import resolve_device
from .common import (
    GAN,
    SAMPLES,
    building,
    echo,
    load_split_data,
    output_hashes,
    paths,
    require_stage,
    stage_fingerprint,
    start_stage,
    write_record,
)
from .train_gan import load_generator

CHUNK = 16384  # images generated and written at a time (sample.chunk_size)


def run_sample(cfg: Config, force: bool = False) -> List[Path]:
    """Write `<out_dir>/samples/` (one per entry of gan_seeds): samples.pt, images/<class>/*.png and grid.png."""
    return [_sample_one(cfg, g, force) for g in cfg.gan_replicates]


def _sample_one(cfg: Config, gan_seed: Optional[int], force: bool) -> Path:
    p = paths(cfg)
    out_dir, ckpt_path = p.samples(gan_seed), p.gan_checkpoint(gan_seed)
    todo = start_stage(cfg, SAMPLES, force, gan_seed)
    if todo is None:
        return out_dir
    fp, config = todo
    started = time.time()
    memory.check(cfg, "sample")  # a count with a zero too many stops here, before anything is allocated
    require_stage(cfg, GAN, gan_seed)
    G, ckpt = load_generator(ckpt_path)
    made_by = ckpt.get("fingerprint")  # absent in checkpoints written before it was recorded
    if made_by is not None and made_by != stage_fingerprint(cfg, GAN, gan_seed):
        raise CheckpointError(f"GAN checkpoint '{ckpt_path}' was made by a different config; "
                              "run `ganaug train-gan --force` to train this config's GAN")
    if not getattr(G, "conditional", False):
        raise StageError(
            f"gan '{cfg.gan.name}' with per_class: false is unconditional: its samples have no labels; "
            "set gan.per_class: true or use gan.name: cgan to sample a labelled set"
        )
    data, manifest = load_split_data(cfg)
    if ckpt["data_fingerprint"] != manifest["fingerprint"]:
        raise StageError(f"GAN checkpoint '{ckpt_path}' was trained on another split; "
                         "run `ganaug train-gan --force` first")
    num_classes = len(data.classes)
    s = cfg.sample

    # How many per class: balanced, or the training set's proportions at the same total.
    if s.proportions == "balanced":
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
    g_kwargs = {"truncation_psi": s.truncation} if s.truncation is not None else {}  # stylegan2: toward the class's mean w
    # Chunks of a multiple of batch_size (and of 16 rows: torch draws the same normals in chunks as in one call),
    # so a chunked set is bit for bit the one an unchunked run makes.
    chunk = max(s.batch_size, (s.chunk_size or CHUNK) // s.batch_size * s.batch_size)
    bounds = np.cumsum([0] + counts)
    echo(f"sample: {n} images ({', '.join(map(str, counts)) if len(set(counts)) > 1 else f'{counts[0]} per class'}) "
         f"from {ckpt_path}" + (f", in chunks of {chunk}" if n > chunk else "")
         + (f"; the PNG tree will take about {memory.png_seconds(n) / 60:.0f} min (sample.png: false skips it)"
            if s.png and memory.png_seconds(n) > 60 else ""))

    with building(out_dir) as out:
        writer = SetWriter(out, n, shape, data.classes, png=s.png)
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            y = torch.from_numpy(np.searchsorted(bounds, np.arange(a, b), side="right") - 1).to(torch.int64)
            z = torch.randn(b - a, G.z_dim, generator=gen)
            writer.add(to_uint8(generate(G, z.to(device), y.to(device), batch_size=s.batch_size, **g_kwargs)), y)
        writer.close({"gan_checkpoint": str(ckpt_path), "gan_step": ckpt["step"], "gan_seed": gan_seed,
                      "data_fingerprint": manifest["fingerprint"], "config": to_dict(cfg)})
        images, labels, _ = read_synthetic(out)
        _real_vs_fake_grid(data.train.images, data.train.labels, images, labels, num_classes, s.grid_per_class, gen,
                           out / "grid.png")
        write_record(out, "samples", fp, config, started, {"counts": counts, **output_hashes(out, *OUTPUTS)})
    echo(f"sample: wrote {out_dir / IMAGES_FILE}{' and a PNG tree' if s.png else ''}; grid {out_dir / 'grid.png'}")
    return out_dir


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
