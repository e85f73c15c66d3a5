"""Does the copy check catch the copies a small-data generator makes? On a finished run (the bundled default by
default), the synthetic set is replaced as a faulty generator would write it — training images shifted by 1-2
pixels, or 5% of each class's fakes copied verbatim — its stage record updated as the sample stage would write it,
and `ganaug evaluate` is run again on a copy of the run folder; the run's own set is evaluated as it is. Prints each
criterion's share and whether the set is flagged.

    python scripts/copy_faults.py --config configs/mnist5k-cgan.yaml   # after `ganaug run` of that config
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch


def rewrite(folder: Path, images: torch.Tensor) -> None:
    """The synthetic set's images replaced (labels kept), its record's output hashes as the sampler writes them."""
    from ganaug.data.synthetic import OUTPUTS, read_synthetic, save_synthetic
    from ganaug.utils import file_sha256

    _, labels, meta = read_synthetic(folder)
    keep = {k: v for k, v in meta.items() if k not in ("format", "images", "labels", "n", "shape", "classes")}
    for name in OUTPUTS:
        (folder / name).unlink(missing_ok=True)
    save_synthetic(folder, images, torch.as_tensor(labels).clone(), meta["classes"], keep, png=False)
    rec = json.loads((folder / "stage.json").read_text())
    rec["outputs"] = {name: file_sha256(folder / name) for name in OUTPUTS}
    (folder / "stage.json").write_text(json.dumps(rec))


def shifted(train: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image moved by a random shift of 1 or 2 pixels in each direction (a zero-filled translation, as
    DiffAugment's), or left where it is along one axis."""
    out = torch.zeros_like(train)
    h, w = train.shape[-2:]
    for i in range(len(train)):
        dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
        if dy == 0 and dx == 0:
            dx = 1
        src = train[i, :, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        out[i, :, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/mnist5k-cgan.yaml")
    ap.add_argument("--share", type=float, default=0.05, help="share of each class's fakes copied verbatim")
    args = ap.parse_args()

    from ganaug.cli import main as main_cli
    from ganaug.config import load_config
    from ganaug.data.synthetic import read_synthetic
    from ganaug.stages.split import load_split_data

    cfg = load_config(args.config)
    root = Path(cfg.out_dir)
    if not (root / "evaluate" / "quality.json").is_file():
        print(f"copy_faults: run `ganaug run -c {args.config}` first ({root} has no evaluation)", file=sys.stderr)
        return 2
    data, _ = load_split_data(cfg)
    _, labels, _ = read_synthetic(root / "samples")
    labels = torch.as_tensor(labels)
    gen = torch.Generator().manual_seed(0)

    def from_train(kind: str) -> torch.Tensor:
        images = read_synthetic(root / "samples")[0].clone()
        for c in range(len(data.classes)):
            idx = torch.nonzero(labels == c).flatten()
            pool = data.train.images[data.train.labels == c]
            if kind == "shifted":
                images[idx] = shifted(pool[torch.randint(len(pool), (len(idx),), generator=gen)], gen)
            else:
                idx = idx[torch.randperm(len(idx), generator=gen)[:int(round(args.share * len(idx)))]]
                images[idx] = pool[torch.randint(len(pool), (len(idx),), generator=gen)]
        return images

    cases = {"the run's own set": None, "training images shifted by 1-2 pixels": "shifted",
             f"{args.share:.0%} of each class's fakes verbatim training images": "verbatim"}
    for title, kind in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            shutil.copytree(root, run, ignore=shutil.ignore_patterns("clf", "compare", "logs", "*.lock"))
            if kind is not None:
                rewrite(run / "samples", from_train(kind))
            main_cli(["evaluate", "-c", args.config, "--set", f"out_dir={run}", "--force"], standalone_mode=False)
            q = json.loads((run / "evaluate" / "quality.json").read_text())
        cp = q["copies"]
        print(f"\n{title}: {'FLAGGED' if cp['flag'] else 'not flagged'} "
              f"({len(cp['fired'])} of {cp['tests']} tests fire at alpha {cp['alpha']:g} after Holm; "
              f"shifts up to {cp['shift']} px{', mirrored' if cp['mirror'] else ''})")
        for space in ("pixels", "features"):
            c = cp[space]
            ct = "-" if c["ct"]["ct"] is None else f"{c['ct']['ct']:+.2f} (p {c['ct']['p']:.2g})"
            o = c["overall"]
            print(f"  {space:8s} quantile rule {100 * o['share']:5.1f}% (expected {100 * o['expected']:.1f}%, "
                  f"p {o['p']:.2g}); ratio test {100 * c['ratio']['share']:5.1f}% (test images "
                  f"{100 * c['ratio']['baseline']:.1f}%, p {c['ratio']['p']:.2g}); C_T {ct}; "
                  f"flagged classes: {', '.join(c['flagged_classes']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
