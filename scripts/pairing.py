"""A pairing timer: two commands as whole processes, alternating A B A B, and a compact table of the result.

    from pairing import pair, report
    result = pair(["ganaug", "train-clf", ...], ["python", "plain_loop.py", ...], runs=3)
    report(result, "ganaug train-clf", "plain torchvision")

Alternating the two spreads slow spells of a shared machine over both commands; the ratio is taken within
each pair (B's wall seconds over A's: how many times faster A is) and summarised by its median.
Used by scripts/bench_vs_*.py; never imported by the package.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


def machine_line() -> str:
    """One line naming the CPU, its wide-vector and matrix flags, the cores and the torch version."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or "unknown CPU"
    amx = sorted(f for f in flags if f.startswith("amx"))
    has = lambda f: "yes" if f in flags else "no"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    # Variables that hold the math libraries to fewer instructions than the CPU has (e.g. an AVX2-only CPU's, on
    # an AVX-512 one) or fix ganaug's precision choice: the figures are theirs, not the CPU's.
    pins = [f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                                             "MKL_CBWR", "GANAUG_CPU_BF16") if os.environ.get(k)]
    return (f"cpu: {model} | avx512f {has('avx512f')}, avx512_bf16 {has('avx512_bf16')}, "
            f"amx {'/'.join(amx) if amx else 'no'} | {usable} usable cores of {os.cpu_count()} | "
            f"torch {torch_version} | python {platform.python_version()}"
            + (f" | pinned: {', '.join(pins)}" if pins else ""))


def _run_once(cmd: List[str], log: Path, env: Optional[Dict[str, str]], cwd: Optional[str]) -> Dict[str, Any]:
    """Run `cmd` to its end with stdout and stderr in log.out / log.err; its wall and CPU seconds and peak RSS."""
    out, err = log.with_suffix(".out"), log.with_suffix(".err")
    with open(out, "wb") as fo, open(err, "wb") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)  # reaps it: its own rusage (and its waited-for children's)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        lines = [s for s in err.read_text(errors="replace").splitlines() if s.strip()]
        last = lines[-1].strip() if lines else "(nothing on stderr)"
        raise SystemExit(f"exit {proc.returncode} from {' '.join(map(str, cmd))}: {last} (log: {err})")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
            "stdout": str(out), "stderr": str(err)}


def pair(cmd_a: list, cmd_b: list, runs: int, warmup: int = 1, env=None, cwd=None, log_dir=None) -> dict:
    """Run `warmup` pairs uncounted, then `runs` pairs A, B, A, B, ... each as a fresh process.

    Returns {"a": {...}, "b": {...}, "ratio": [...]}: per command its `cmd` and per counted run lists `wall`
    and `cpu` (seconds, user + system, with its reaped children's), `rss_mb` (the peak resident MB of the largest
    one process of it and its children: not their sum) and the `stdout` / `stderr` log paths;
    `ratio` is B's wall over A's per pair (above 1: A is faster). A non-zero exit raises SystemExit with the
    last line the command wrote to stderr.
    """
    logs = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="pairing-"))
    logs.mkdir(parents=True, exist_ok=True)
    result: Dict[str, Any] = {k: {"cmd": [str(c) for c in cmd], "wall": [], "cpu": [], "rss_mb": [], "stdout": [],
                                  "stderr": []} for k, cmd in (("a", cmd_a), ("b", cmd_b))}
    result["ratio"], result["log_dir"] = [], str(logs)
    for i in range(warmup + runs):
        tag = f"warmup{i}" if i < warmup else f"run{i - warmup}"
        done = {}
        for k in ("a", "b"):
            done[k] = _run_once(result[k]["cmd"], logs / f"{tag}-{k}", env, cwd)
            print(f"  {tag} {k.upper()}: {done[k]['wall']:.2f}s wall ({Path(result[k]['cmd'][0]).name} "
                  f"{' '.join(result[k]['cmd'][1:4])} ...)", flush=True)
        if i < warmup:
            continue
        for k in ("a", "b"):
            for field, value in done[k].items():
                result[k][field].append(value)
        result["ratio"].append(done["b"]["wall"] / done["a"]["wall"])
    return result


def report(result: dict, label_a: str, label_b: str) -> None:
    """Print the machine, each command, min / median / max wall, median CPU, peak RSS, and the median ratio B/A."""
    print(machine_line())
    width = max(len(label_a), len(label_b), 7)
    for k, label in (("a", label_a), ("b", label_b)):
        print(f"{k.upper()} {label}: {' '.join(result[k]['cmd'])}")
    print(f"{'command':<{width}}  runs  wall min  median     max  cpu med  peak RSS MB")
    for k, label in (("a", label_a), ("b", label_b)):
        r = result[k]
        if not r["wall"]:
            continue
        w = r["wall"]
        print(f"{label:<{width}}  {len(w):>4}  {min(w):>8.2f}  {statistics.median(w):>6.2f}  {max(w):>6.2f}"
              f"  {statistics.median(r['cpu']):>7.2f}  {max(r['rss_mb']):>11.0f}")
    ratio = result["ratio"]
    if ratio:
        print(f"ratio {label_b} / {label_a} wall, per pair: median {statistics.median(ratio):.2f}x "
              f"(min {min(ratio):.2f}, max {max(ratio):.2f}, {len(ratio)} pairs): {label_a} is "
              f"{statistics.median(ratio):.2f}x as fast (wall seconds, whole processes; logs in {result['log_dir']})")
