"""Benchmark: `ganaug train-clf` against the plain torchvision loop a PyTorch user would write, as whole processes.

    python scripts/bench_vs_torchvision.py --runs 3
    python scripts/bench_vs_torchvision.py --steps 20 --runs 1 --warmup 0      # a quick check that it works

Both train the same network (the config's small-cnn, rebuilt in plain torch.nn in the plain loop) on the same
images (the config's split, written once as PNG ImageFolders under --out) for the same optimizer steps, batch,
AdamW settings, learning-rate schedule and model selection on the validation images, then score the test images
once. The plain loop decodes PNGs through torchvision's ImageFolder and a DataLoader; ganaug holds the split as
uint8 tensors. Each command runs as a fresh process, alternating ganaug, plain, ganaug, plain (scripts/pairing.py),
and the table gives min / median / max wall seconds, median CPU seconds and peak RSS of each; the ratio is plain's
wall seconds over ganaug's within each pair, its median over the pairs: how many times faster ganaug is (below 1:
slower). Each command's test accuracy from its last run is printed too, to show the two trained comparable models.

Threads are each side's own: ganaug trains classifiers on executor.clf_threads torch threads (1 by default), the
plain loop on torch's default unless --plain-threads is given. The user's run folders are not touched: the config
is copied into --out with out_dir pointing at --out/run. Never imported by the package.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairing import pair, report  # noqa: E402

PLAIN_LOOP = r'''"""A plain PyTorch classifier loop on ImageFolders (written by scripts/bench_vs_torchvision.py)."""

import argparse
import copy
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms

t0 = time.time()
ap = argparse.ArgumentParser()
ap.add_argument("root", help="a folder with train/, val/ and test/ ImageFolders")
ap.add_argument("--channels", type=int, default=1)
ap.add_argument("--steps", type=int, default=600)
ap.add_argument("--batch-size", type=int, default=64)
ap.add_argument("--lr", type=float, default=0.001)
ap.add_argument("--weight-decay", type=float, default=0.0005)
ap.add_argument("--width", type=int, default=16)
ap.add_argument("--schedule", default="cosine", choices=["cosine", "constant"])
ap.add_argument("--eval-every", type=int, default=100)
ap.add_argument("--workers", type=int, default=0)
ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
ap.add_argument("--device", default="cpu")
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
device = torch.device(args.device)

# Load data: PNG folders, pixels to [-1, 1].
C = args.channels
tf = transforms.Compose(([transforms.Grayscale(1)] if C == 1 else [])
                        + [transforms.ToTensor(), transforms.Normalize((0.5,) * C, (0.5,) * C)])
train = torchvision.datasets.ImageFolder(f"{args.root}/train", transform=tf)
val = torchvision.datasets.ImageFolder(f"{args.root}/val", transform=tf)
test = torchvision.datasets.ImageFolder(f"{args.root}/test", transform=tf)
loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True,
                    persistent_workers=args.workers > 0)


def forever(loader):
    while True:
        yield from loader


# Build the network: ganaug's small-cnn.
def conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    def __init__(self, resolution, channels, num_classes, width, dropout=0.3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(channels, w),  # (w) x R x R
            conv_bn(w, 2 * w, stride=2),  # (2w) x R/2 x R/2
            conv_bn(2 * w, 2 * w),
            conv_bn(2 * w, 4 * w, stride=2 if resolution >= 8 else 1),  # (4w) x R/4 x R/4
            conv_bn(4 * w, 4 * w),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(4 * w, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


resolution = train[0][0].shape[-1]
model = SmallCNN(resolution, C, len(train.classes), args.width).to(device)
opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
if args.schedule == "cosine":
    T = args.steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, T) / T)))
else:
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


@torch.no_grad()
def accuracy(model, dataset):
    model.eval()
    correct = 0
    for x, y in DataLoader(dataset, batch_size=1000, num_workers=args.workers):
        correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    model.train()
    return correct / len(dataset)


# Train: a fixed number of optimizer steps; keep the weights of the best validation accuracy (ties: the later).
best_acc, best_step, best_state = -1.0, 0, None
batches = forever(loader)
model.train()
for step in range(1, args.steps + 1):
    x, y = next(batches)
    x, y = x.to(device), y.to(device)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    if step % args.eval_every == 0 or step == args.steps:
        acc = accuracy(model, val)
        if acc >= best_acc:
            best_acc, best_step, best_state = acc, step, copy.deepcopy(model.state_dict())

# Test once, with the selected weights.
model.load_state_dict(best_state)
test_acc = accuracy(model, test)
print(f"plain: {len(train)} train images, {torch.get_num_threads()} torch threads, val {best_acc:.4f} "
      f"(step {best_step}), test acc {test_acc:.4f} in {time.time() - t0:.0f}s")
'''


def write_folders(data, root: Path) -> None:
    """The split as PNG ImageFolders root/{train,val,test}/<class>/<i>.png, unless the same split is there already."""
    stamp = root / "split.json"
    counts = {p: len(getattr(data, p).labels) for p in ("train", "val", "test")}
    want = {"fingerprint": data.fingerprint, "counts": counts}
    if stamp.is_file() and json.loads(stamp.read_text()) == want and all(
            sum(1 for _ in (root / p).rglob("*.png")) == n for p, n in want["counts"].items()):
        return
    shutil.rmtree(root, ignore_errors=True)
    for part in ("train", "val", "test"):
        images, labels = getattr(data, part).images.numpy(), getattr(data, part).labels.tolist()
        for i, (img, y) in enumerate(zip(images, labels)):
            folder = root / part / data.classes[y]
            folder.mkdir(parents=True, exist_ok=True)
            pil = Image.fromarray(img[0], "L") if img.shape[0] == 1 else Image.fromarray(img.transpose(1, 2, 0), "RGB")
            pil.save(folder / f"{i}.png")
    stamp.write_text(json.dumps(want))
    print(f"setup: wrote {sum(want['counts'].values())} PNGs under {root}")


def test_acc(log_paths: list) -> str:
    """The last 'test acc 0.xxxx' a command printed (stdout or stderr), with the line it is on."""
    for path in reversed(log_paths):
        lines = [s.strip() for s in Path(path).read_text(errors="replace").splitlines() if re.search(r"test acc \d", s)]
        if lines:
            return lines[-1]
    return "(no 'test acc' line found)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=Path("configs/mnist5k-cgan.yaml"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-vs-torchvision"))
    ap.add_argument("--runs", type=int, default=3, help="counted pairs")
    ap.add_argument("--warmup", type=int, default=1, help="uncounted pairs first")
    ap.add_argument("--steps", type=int, default=None, help="classifier.steps for both (default: the config's)")
    ap.add_argument("--workers", type=int, default=0, help="the plain loop's DataLoader num_workers")
    ap.add_argument("--plain-threads", type=int, default=None, help="the plain loop's torch threads [torch's]")
    ap.add_argument("--device", default="cpu", help="both commands' device (ganaug's config key device)")
    args = ap.parse_args()
    if args.runs < 1 or args.warmup < 0:
        ap.error("--runs must be 1 or more and --warmup 0 or more")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    # Setup (not timed): the config copied with its run folder under --out, the split, and its PNG folders.
    raw = yaml.safe_load(args.config.read_text())
    raw["out_dir"] = str(out / "run")
    raw["device"] = args.device
    if (raw.get("data") or {}).get("root"):  # relative roots are read from the working directory: keep them so
        raw["data"]["root"] = str(Path(raw["data"]["root"]).expanduser().resolve())
    if args.steps is not None:
        raw.setdefault("classifier", {})["steps"] = args.steps
    cfg_path = out / "bench.yaml"
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    ganaug = [sys.executable, "-m", "ganaug"]
    split = subprocess.run(ganaug + ["split", "-c", str(cfg_path), "-q"], capture_output=True, text=True)
    if split.returncode != 0:
        raise SystemExit(f"ganaug split failed: {(split.stderr.strip().splitlines() or ['?'])[-1]}")
    from ganaug.config import load_config
    from ganaug.stages.split import load_split_data

    cfg = load_config(cfg_path)
    data, _ = load_split_data(cfg)
    write_folders(data, out / "folders")
    c = cfg.classifier
    if c.name != "small-cnn":
        raise SystemExit(f"classifier.name is {c.name}; the plain loop rebuilds small-cnn only")
    plain_path = out / "plain_loop.py"
    plain_path.write_text(PLAIN_LOOP)
    channels, h, w = data.train.images.shape[1:]
    print(f"setup: {cfg_path} ({cfg.data.source}, {len(data.train.labels)} train / {len(data.val.labels)} val / "
          f"{len(data.test.labels)} test images, {channels}x{h}x{w}); "
          f"{c.steps} steps of batch {c.batch_size}, AdamW lr {c.lr:g} wd {c.weight_decay:g}, {c.schedule}, "
          f"width {c.width}, eval every {c.eval_every}")

    # Time: ganaug (A) and the plain loop (B), alternating.
    cmd_a = ganaug + ["train-clf", "-c", str(cfg_path), "--arm", "real", "--seed", "0", "--force", "--no-progress"]
    cmd_b = [sys.executable, str(plain_path), str(out / "folders"), "--channels", str(channels),
             "--steps", str(c.steps), "--batch-size", str(c.batch_size), "--lr", repr(c.lr),
             "--weight-decay", repr(c.weight_decay), "--width", str(c.width), "--schedule", c.schedule,
             "--eval-every", str(c.eval_every),
             "--workers", str(args.workers), "--device", args.device, "--seed", "0"]
    if args.plain_threads is not None:
        cmd_b += ["--threads", str(args.plain_threads)]
    result = pair(cmd_a, cmd_b, runs=args.runs, warmup=args.warmup, log_dir=out / "logs")
    report(result, "ganaug train-clf", "plain torchvision")
    for k, label in (("a", "ganaug train-clf"), ("b", "plain torchvision")):
        print(f"{label}, last run: {test_acc([result[k]['stdout'][-1], result[k]['stderr'][-1]])}")
    record = next((out / "run").rglob("real/seed-0/result.json"), None)
    if record is not None:
        r = json.loads(record.read_text())
        print(f"ganaug train-clf, last run: {r.get('threads')} torch threads, {r.get('train_seconds')}s in its "
              f"training loop ({record})")


if __name__ == "__main__":
    main()
