"""Benchmark: a folder of large photos through `ganaug split` and a later stage.

Writes N phone-sized JPEGs (default 400 of 4000 x 3000, smooth colour fields with noise, as photos compress)
into class folders, then runs in fresh processes:
  1. `ganaug split` at data.resolution R (the folder streamed through worker processes and cached),
  2. a later stage's data loading (`load_split_data`: the cache, after listing the folder),
and prints wall seconds and peak resident memory (the process's own, and its largest worker's).

    python scripts/bench_imagefolder.py --n 400 --resolution 64 --out /tmp/bench-folder

GANAUG_TREE=/path/to/another/checkout runs that checkout's ganaug instead (a before/after comparison).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = r"""
import json, os, resource, sys, time
if os.environ.get("GANAUG_TREE"):  # another checkout of ganaug (e.g. an older commit, for a before/after figure)
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in str(f)]
    sys.path.insert(0, os.environ["GANAUG_TREE"])
t0 = time.time()
mode, cfg = sys.argv[1], sys.argv[2]
if mode == "split":
    from ganaug.cli import main
    try:
        main(["split", "-c", cfg], standalone_mode=False)
    except SystemExit:
        pass
else:
    from ganaug.config import load_config
    from ganaug.stages.split import load_split_data
    c = load_config(cfg)
    t1 = time.time()
    data, _ = load_split_data(c)
    t0 = t1
    assert len(data.train.labels) > 0
print(json.dumps({"seconds": time.time() - t0, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _descendants(pid: int) -> list:
    """The process ids below `pid` (from /proc), for the decoding workers' own memory."""
    kids: dict = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0



def write_photos(root: Path, n: int, w: int, h: int, classes: int = 4, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"IMG_{i:04d}.jpg"
        if path.is_file():
            continue
        a, b, c = rng.uniform(0, 6.28, 3)
        base = np.stack([127 + 100 * np.sin(xx / (300 + 50 * k) + a * k + b * yy / h + c) for k in range(1, 4)], -1)
        small = rng.normal(0, 12, (h // 8, w // 8, 3)).astype(np.float32)
        noise = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)[:h, :w]  # grain at 8-pixel scale
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, quality=90)


def child(mode: str, cfg: Path) -> dict:
    """Run one stage in a fresh process; its own peak RSS, and the largest RSS any of its workers reached (sampled
    from /proc: a spawned worker's ru_maxrss would count the parent's pages from before its exec)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    workers = 0.0
    while proc.poll() is None:
        workers = max([workers] + [_rss_mb(p) for p in _descendants(proc.pid)])
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}")
    res = json.loads(out.strip().splitlines()[-1])
    res["workers_rss_mb"] = workers
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400, help="photos to write")
    ap.add_argument("--size", default="4000x3000", help="each photo's W x H")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None, help="data.workers (default: ganaug's)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-imagefolder"))
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    photos = args.out / f"photos-{args.n}-{w}x{h}"
    t = time.time()
    write_photos(photos, args.n, w, h)
    size_mb = sum(p.stat().st_size for p in photos.rglob("*.jpg")) / 2**20
    print(f"photos: {args.n} JPEGs of {w}x{h} in {photos} ({size_mb:.0f} MB; {time.time() - t:.0f}s to write or find)")

    run = args.out / "run"
    shutil.rmtree(run, ignore_errors=True)
    cfg = args.out / "bench.yaml"
    data = {"source": "imagefolder", "root": str(photos), "resolution": args.resolution}
    if args.workers is not None:
        data["workers"] = args.workers
    import yaml

    cfg.write_text(yaml.safe_dump({"name": "bench-imagefolder", "out_dir": str(run), "device": "cpu", "data": data,
                                   "split": {"n_per_class": 10, "val_per_class": 5}, "arms": [{"name": "real"}]}))
    split = child("split", cfg)
    print(f"split:       {split['seconds']:6.1f} s, peak RSS {split['rss_mb']:7.0f} MB (largest decoding worker "
          f"{split['workers_rss_mb']:.0f} MB)")
    later = child("load", cfg)
    print(f"later stage: {later['seconds']:6.2f} s to list the folder and load the decoded tensor from the cache, "
          f"peak RSS {later['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
