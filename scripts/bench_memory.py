"""Benchmark: peak memory of `ganaug sample` for a large synthetic set, and of classifier runs in parallel
processes sharing one memory-mapped set.

    python scripts/bench_memory.py --config configs/mnist5k-cgan.yaml --per-class 100000 --out runs/bench-memory

1. `ganaug sample` with sample.n_per_class = --per-class (PNG tree off) into a copy of the config's run folder
   (its split and GAN reused): wall seconds and peak RSS.
2. Two `ganaug train-clf --data synthetic` processes at once on that set, then on the config's own set: the peak
   RSS of each (ru_maxrss) and, sampled while they run, the sum of their proportional set sizes (PSS, shared
   pages divided among the processes that map them), which is what two runs really cost together.
GANAUG_TREE=/path/to/another/checkout runs that checkout's ganaug instead (a before/after comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
if os.environ.get("GANAUG_TREE"):  # another checkout of ganaug (e.g. an older commit, for a before/after figure)
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in str(f)]
    sys.path.insert(0, os.environ["GANAUG_TREE"])
t = time.time()
from ganaug.cli import main
try:
    main(sys.argv[1:], standalone_mode=True)
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "seconds": time.time() - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def pss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def ganaug(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    res = json.loads(out.strip().splitlines()[-1])
    if res["code"] not in (0, None):
        raise SystemExit(f"ganaug failed: {err.strip().splitlines()[-1]}")
    return res


def linked_copy(src: Path, dst: Path) -> Path:
    """`src`'s split, GAN and samples under `dst`, hard-linked: the same files (and so the same cached pages),
    in a run folder of its own (one writer per run folder)."""
    shutil.rmtree(dst, ignore_errors=True)
    for part in ("split", "gan", "samples"):
        shutil.copytree(src / part, dst / part, copy_function=os.link)
    return dst


def two_runs(config: str, out_dir: Path, seeds: tuple = (0, 1), extra: tuple = ()) -> dict:
    """Two classifier runs at once on one synthetic set (two run folders hard-linked to it); their peak RSS and
    summed PSS."""
    folders = [linked_copy(out_dir, out_dir.with_name(f"{out_dir.name}-run{s}")) for s in seeds]
    procs = [ganaug("train-clf", "-c", config, "--set", f"out_dir={folder}", "--data", "synthetic", "--seed", str(s),
                    "--set", "classifier.steps=200", "--set", f"seeds=[{s}]", "--force",
                    "--set", "checkpoint.every_steps=null", *extra) for s, folder in zip(seeds, folders)]
    peak_pss = 0.0
    while any(p.poll() is None for p in procs):
        peak_pss = max(peak_pss, sum(pss_mb(p.pid) for p in procs))
        time.sleep(0.05)
    res = [result(p) for p in procs]
    return {"rss_mb": [round(r["rss_mb"]) for r in res], "pss_sum_mb": round(peak_pss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/mnist5k-cgan.yaml")
    ap.add_argument("--per-class", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-memory"))
    ap.add_argument("--reuse", action="store_true", help="keep a synthetic set an earlier call made under --out")
    ap.add_argument("--source", type=Path, default=None, help="the finished run folder to reuse [the config's out_dir]")
    ap.add_argument("--own-only", action="store_true", help="only the two classifier runs on the source's own set")
    args = ap.parse_args()

    import yaml

    src = args.source or Path(yaml.safe_load(Path(args.config).read_text())["out_dir"])
    if not (src / "gan" / "checkpoint.pt").is_file():
        raise SystemExit(f"run `ganaug run -c {args.config}` first: the benchmark reuses its split and GAN")
    big = args.out / "big"
    tree = Path(os.environ.get("GANAUG_TREE") or Path(__file__).resolve().parents[1])
    # An older checkout without the evaluation stage has no evaluate key to turn off.
    no_evaluate = ("--set", "evaluate.enabled=false") if (tree / "ganaug" / "stages" / "evaluate.py").is_file() else ()
    made_big = ("--set", f"sample.n_per_class={args.per_class}", "--set", "sample.png=false", *no_evaluate)
    if not args.own_only and not (args.reuse and (big / "samples" / "stage.json").is_file()):
        shutil.rmtree(big, ignore_errors=True)
        big.mkdir(parents=True)
        for part in ("split", "gan"):
            shutil.copytree(src / part, big / part)
        r = result(ganaug("sample", "-c", args.config, "--set", f"out_dir={big}", *made_big))
        size = sum(f.stat().st_size for f in (big / "samples").iterdir() if f.is_file()) / 2**20
        print(f"sample: {args.per_class:,} per class ({size:.0f} MB on disk) in {r['seconds']:.0f} s, "
              f"peak RSS {r['rss_mb']:.0f} MB")
    for label, out, extra in ((f"{args.per_class:,} per class", big, made_big), ("the config's own set", src, ())):
        if args.own_only and out == big:
            continue
        if out == src:
            out = args.out / "own"
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("clf", "compare", "report.html"))
        t = two_runs(args.config, out, seeds=(100, 101), extra=extra)
        print(f"two train-clf processes at once on {label}: peak RSS {t['rss_mb'][0]} MB and {t['rss_mb'][1]} MB; "
              f"their summed PSS at most {t['pss_sum_mb']} MB")


if __name__ == "__main__":
    main()
