"""Kill `ganaug train-gan` with SIGKILL at a random step, resume it, and compare with an uninterrupted run.

    python scripts/kill_resume.py -c configs/mnist5k-cgan.yaml --every 200 --reference runs/mnist5k-cgan

Trains the reference (never interrupted) into --reference unless it already holds a finished GAN made by
the same config, then trains the same config into --out, kills it once a checkpoint at or past a random
step exists, resumes with --resume, and prints where the two final checkpoints differ (nothing, if the
resume is exact). Checkpoint settings do not change a result, so --every only sets how often to save.
"""

from __future__ import annotations

import argparse
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List

import torch

STEP_FILE = re.compile(r"^step-(\d{9})\.pt$")


def ganaug(*args: str) -> List[str]:
    return [sys.executable, "-m", "ganaug.cli", *args]


def diff(a: Any, b: Any, path: str = "") -> List[str]:
    if isinstance(a, torch.Tensor):
        return [] if isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b) else [path]
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return [f"{path}: keys differ"]
        return [d for k in a for d in diff(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, (list, tuple)):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a} != {b}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides for both runs")
    ap.add_argument("--every", type=int, default=200, help="checkpoint.every_steps of the run that is killed")
    ap.add_argument("--reference", required=True, help="out_dir of the uninterrupted run")
    ap.add_argument("--out", default="runs/kill-resume", help="out_dir of the killed and resumed run")
    ap.add_argument("--seed", type=int, default=None, help="picks the kill step (default: random)")
    args = ap.parse_args()
    sets = [x for o in args.overrides for x in ("--set", o)]
    ref = ganaug("train-gan", "-c", args.config, *sets, "--set", f"out_dir={args.reference}")
    out = ["-c", args.config, *sets, "--set", f"out_dir={args.out}", "--set", f"checkpoint.every_steps={args.every}"]

    subprocess.run(ganaug("split", "-c", args.config, *sets, "--set", f"out_dir={args.reference}"), check=True)
    t = time.time()
    subprocess.run(ref, check=True)
    print(f"reference: {time.time() - t:.0f}s (skipped if it was up to date)", flush=True)
    subprocess.run(ganaug("split", *out, "--force"), check=True)
    want = torch.load(Path(args.reference) / "gan" / "checkpoint.pt", weights_only=True)
    total = int(want["step"])
    rng = random.Random(args.seed)
    target = rng.randint(args.every, max(args.every, total - args.every))
    resume_dir = Path(args.out) / "gan.partial" / "resume"

    t = time.time()
    proc = subprocess.Popen(ganaug("train-gan", *out, "--force"))
    killed_at = None
    while proc.poll() is None:
        steps = [int(m.group(1)) for f in (resume_dir.iterdir() if resume_dir.is_dir() else [])
                 if (m := STEP_FILE.match(f.name))]
        if steps and max(steps) >= target:
            time.sleep(rng.uniform(0, 3))  # somewhere after that checkpoint, not right on it
            proc.send_signal(signal.SIGKILL)
            killed_at = max(steps)
            break
        time.sleep(0.01)
    proc.wait()
    print(f"killed after {time.time() - t:.0f}s; newest checkpoint then: step {killed_at} of {total} "
          f"(target {target}); exit {proc.returncode}", flush=True)
    t = time.time()
    subprocess.run(ganaug("train-gan", *out, "--resume"), check=True)
    print(f"resumed run: {time.time() - t:.0f}s", flush=True)

    got = torch.load(Path(args.out) / "gan" / "checkpoint.pt", weights_only=True)
    keys = [k for k in ("state_dict", "optimizer", "augment", "step", "cur_nimg", "rng") if k in want]
    problems = diff({k: got.get(k) for k in keys}, {k: want[k] for k in keys})
    n = sum(v.numel() for k in ("G", "D", "G_ema") for v in got["state_dict"][k].values())
    print(f"compared {n} weights of G, D and G_ema and the reference's {', '.join(keys)}: "
          + ("bit-identical" if not problems else f"{len(problems)} differences: {problems[:5]}"))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
