"""Benchmark: `ganaug train-gan` (dcgan, one network for all images) against pytorch/examples' dcgan/main.py.

    git clone https://github.com/pytorch/examples /tmp/examples
    python scripts/bench_vs_dcgan.py --dcgan /tmp/examples/dcgan/main.py --runs 3
    python scripts/bench_vs_dcgan.py --dcgan /tmp/examples/dcgan/main.py --n 128 --epochs 1 --runs 1 --warmup 0

Setup (not timed): a folder of 64x64 colour JPEGs (quality 90; smooth random colour fields with noise) in 4 class
folders, N/4 training images per class plus one validation and one test image per class that ganaug's split holds
back, so that ganaug's GAN trains on exactly N images; a ganaug config for it (dcgan, per_class false, width 64 =
ngf = ndf, z_dim 100 = nz, batch 64, Adam 2e-4, betas (0.5, 0.999): main.py's numbers); `ganaug split`; and
`ganaug export --what train` of those N training images as PNGs, the folder main.py trains on.

Timed: each command as a fresh process for E epochs over the same N images at batch 64 (ganaug's --epochs,
main.py's --niter; both take ceil(N / 64) steps per epoch), alternating ganaug, main.py, ganaug, main.py
(scripts/pairing.py). The table gives min / median / max wall seconds, median CPU seconds and peak RSS of each;
the ratio is main.py's wall seconds over ganaug's within each pair, its median over the pairs: how many times
faster ganaug is (below 1: slower). Steps per second are of the whole process (steps / wall seconds, start-up,
data loading and writing images and checkpoints included).

The networks match up to a few biases (printed: ganaug's G ends in a biased convolution and its D's first
convolution and 4x4 output layer have biases, main.py's have none). What differs in the work: ganaug decodes the
images once into a uint8 tensor (main.py decodes every PNG every epoch through a DataLoader with --workers
processes), keeps a moving average of G (ema_kimg; --ema-kimg 0 turns it off), uses channels_last on CPU, and its
loss is softplus on logits where main.py's is a sigmoid and BCELoss. Never imported by the package.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairing import pair, report  # noqa: E402

CLASSES = 4


def write_images(root: Path, per_class: int, size: int = 64, seed: int = 0) -> None:
    """`per_class` JPEGs in each of CLASSES folders (each class its own colour), unless that many are there."""
    if all(len(list((root / f"class{c}").glob("*.jpg"))) == per_class for c in range(CLASSES)):
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for c in range(CLASSES):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            a, b, f = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi), rng.uniform(1, 4)
            base = np.stack([127 + 90 * np.sin(f * (xx * np.cos(a) + yy * np.sin(a)) * (k + 1) + b + c * 1.5 * k)
                             for k in range(3)], -1)
            noise = rng.normal(0, 10, (size, size, 3))
            img = np.clip(base + noise, 0, 255).astype(np.uint8)
            Image.fromarray(img, "RGB").save(folder / f"img_{i:05d}.jpg", quality=90)
    print(f"setup: wrote {CLASSES * per_class} JPEGs of {size}x{size} under {root}")


def main_py_counts(nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3) -> tuple:
    """Parameters of main.py's Generator and Discriminator (its layers rebuilt here: main.py trains when imported)."""
    import torch.nn as nn

    G = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8),  # (ngf*8) x 4 x 4
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4),  # (ngf*4) x 8 x 8
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2),  # (ngf*2) x 16 x 16
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf),  # (ngf) x 32 x 32
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False))  # (nc) x 64 x 64
    D = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # (ndf) x 32 x 32
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2),  # (ndf*2) x 16 x 16
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4),  # (ndf*4) x 8 x 8
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8),  # (ndf*8) x 4 x 4
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False))  # 1 x 1 x 1
    return sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())


def ganaug_counts(z_dim: int = 100, width: int = 64) -> tuple:
    from ganaug.gans import get_gan

    nets = get_gan("dcgan", resolution=64, channels=3, num_classes=CLASSES, z_dim=z_dim, width=width, per_class=False)
    return sum(p.numel() for p in nets.G.parameters()), sum(p.numel() for p in nets.D.parameters())


def run_setup(cmd: list) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"setup failed: {' '.join(cmd)}: {(done.stderr.strip().splitlines() or ['?'])[-1]}")


def grep(paths: list, pattern: str) -> str:
    for path in paths:
        for line in Path(path).read_text(errors="replace").splitlines():
            if re.search(pattern, line):
                return line.strip()
    return f"(no line matching {pattern!r})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dcgan", type=Path, default=None, help="pytorch/examples' dcgan/main.py")
    ap.add_argument("--n", type=int, default=1024, help="training images (a multiple of 4)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of each (ganaug gan.epochs, main.py --niter)")
    ap.add_argument("--runs", type=int, default=3, help="counted pairs")
    ap.add_argument("--warmup", type=int, default=1, help="uncounted pairs first")
    ap.add_argument("--workers", type=int, default=2, help="main.py's --workers (its own default: 2)")
    ap.add_argument("--ema-kimg", type=float, default=None, help="ganaug's gan.ema_kimg (default: ganaug's, 10)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: main.py gets --accel")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-vs-dcgan"))
    args = ap.parse_args()
    if args.dcgan is None or not args.dcgan.is_file():
        print(f"bench_vs_dcgan: --dcgan must name pytorch/examples' dcgan/main.py ({args.dcgan or 'not given'}); "
              "get it with `git clone https://github.com/pytorch/examples` and pass --dcgan examples/dcgan/main.py",
              file=sys.stderr)
        raise SystemExit(2)
    if args.runs < 1 or args.warmup < 0 or args.n < CLASSES or args.epochs < 1:
        ap.error("--runs and --epochs must be 1 or more, --warmup 0 or more, --n at least 4")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    per_class = args.n // CLASSES
    n = per_class * CLASSES
    if n != args.n:
        print(f"setup: --n {args.n} rounded down to {n} ({per_class} per class)")

    # Setup (not timed): images, the config, the split, and the split's training images exported for main.py.
    write_images(out / "folder", per_class + 2)  # + 1 validation and 1 test image per class, held back by the split
    gan = {"name": "dcgan", "per_class": False, "width": 64, "z_dim": 100, "batch_size": 64, "epochs": args.epochs,
           "lr": 0.0002, "betas": [0.5, 0.999]}
    if args.ema_kimg is not None:
        gan["ema_kimg"] = args.ema_kimg
    cfg = {"name": "bench-vs-dcgan", "out_dir": str(out / "run"), "device": args.device,
           "data": {"source": "imagefolder", "root": str(out / "folder"), "resolution": 64, "channels": 3},
           "split": {"n_per_class": per_class, "val_per_class": 1, "test_per_class": 1, "seed": 0},
           "gan": gan, "arms": [{"name": "real", "data": "real"}]}
    cfg_path = out / "bench.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    ganaug = [sys.executable, "-m", "ganaug"]
    exported = out / "exported"
    run_setup(ganaug + ["split", "-c", str(cfg_path), "-q", "--force"])
    run_setup(ganaug + ["export", "-c", str(cfg_path), "--what", "train", "--format", "imagefolder",
                        "-o", str(exported), "--force", "-q"])
    n_exported = sum(1 for p in exported.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    if n_exported != n:
        raise SystemExit(f"setup: exported {n_exported} training images, expected {n}")
    steps = args.epochs * math.ceil(n / 64)  # both: ceil(N / 64) steps per epoch (main.py keeps the last partial batch)
    (gG, gD), (mG, mD) = ganaug_counts(), main_py_counts()
    print(f"setup: {n} training images (64x64 RGB) in {exported}; {args.epochs} epochs at batch 64 = {steps} steps "
          f"each (~{0.3 * steps:.0f}-{1.0 * steps:.0f}s at 0.3-1 s a step on a 2-core CPU)")
    print(f"parameters: ganaug G {gG:,} / D {gD:,}; main.py G {mG:,} / D {mD:,} (ngf = ndf = 64, nz = 100)"
          + ("" if (gG, gD) == (mG, mD) else f"; they differ by G {gG - mG:+,} / D {gD - mD:+,}: ganaug's biases "
             "(G's last convolution, D's first convolution and output layer)"))

    # Time: ganaug (A) and main.py (B), alternating.
    cmd_a = ganaug + ["train-gan", "-c", str(cfg_path), "--force", "--no-progress"]
    cmd_b = [sys.executable, str(args.dcgan.resolve()), "--dataset", "folder", "--dataroot", str(exported),
             "--workers", str(args.workers), "--batchSize", "64", "--imageSize", "64", "--nz", "100", "--ngf", "64",
             "--ndf", "64", "--niter", str(args.epochs), "--lr", "0.0002", "--beta1", "0.5",
             "--outf", str(out / "dcgan-out"), "--manualSeed", "0"] + (["--accel"] if args.device == "cuda" else [])
    result = pair(cmd_a, cmd_b, runs=args.runs, warmup=args.warmup, log_dir=out / "logs")
    report(result, "ganaug train-gan", "dcgan/main.py")
    a_logs = [result["a"]["stdout"][-1], result["a"]["stderr"][-1]]
    b_logs = [result["b"]["stdout"][-1], result["b"]["stderr"][-1]]
    print(f"ganaug, last run: {grep(a_logs, r'train-gan: dcgan')}")
    print(f"ganaug, last run: {grep(a_logs, r'train-gan: [0-9]+ steps')}")
    step_lines = [s for s in Path(b_logs[0]).read_text(errors="replace").splitlines() if s.startswith("[")]
    print(f"main.py, last run: {len(step_lines)} steps{'' if len(step_lines) == steps else f' (expected {steps})'}, "
          f"the last: {step_lines[-1] if step_lines else '(none)'}")
    med = {k: statistics.median(steps / w for w in result[k]["wall"]) for k in ("a", "b")}
    print(f"steps per second of the whole process (median): ganaug {med['a']:.3f}, main.py {med['b']:.3f}; "
          f"ganaug / main.py {med['a'] / med['b']:.2f}x")

if __name__ == "__main__":
    main()
