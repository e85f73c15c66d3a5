"""Where a cell's time goes: the per-phase breakdown of a classifier cell and a GAN cell of a config.

    python scripts/bench_cells.py [--config configs/mnist5k-cgan.yaml] [--gan-epochs 20] [--out /tmp/bench-cells]

One fresh process does what a local worker does: imports ganaug's cell runner, runs the split cell, then two
classifier cells one after the other (the first arm at seeds 0 and 1: the second shows what a cell costs in a
worker that has already run one), then the GAN cell. Each cell's phases come from the cell's own record
(`cost.phase`: load, build, steps, validation, checkpoint, grids, test, write; `other` is the rest of its wall
time: the lock, the stats stream's close, the folder's rename, lazy imports). The process's start-up (the
interpreter and its imports) is what the parent saw minus what the child measured. The run folder is under --out,
never the config's own; the first arm must train on real images only (no GAN needed for it). Numbers depend on the
CPU and on what else runs: quote them with the machine's line printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairing import machine_line  # noqa: E402

CHILD = r"""
import json, sys, time
t0 = time.time()
import torch
from ganaug.config import config_from_dict
from ganaug.stages.cells import build_graph, run_cell
imports = time.time() - t0
cfg_dict, threads, clf_threads, skip_gan = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
torch.set_num_threads(threads)
cfg = config_from_dict(cfg_dict)
cells = {c.id: c for c in build_graph(cfg)}
arm = cfg.arms[0].name
out = {"imports": imports, "cells": {}}
order = ["split", f"clf/{arm}/seed-{cfg.seeds[0]}", f"clf/{arm}/seed-{cfg.seeds[1]}"]
order += [] if skip_gan else [c for c in cells if cells[c].kind == "train-gan"][:1]
for cid in order:
    cell = cells[cid]
    torch.set_num_threads(clf_threads if cell.kind == "train-clf" else threads)
    out["cells"][cid] = run_cell(cell.spec, force=True)
out["child_seconds"] = time.time() - t0
print("BENCH " + json.dumps(out))
"""

PHASES = ("load", "build", "steps", "validation", "checkpoint", "grids", "test", "write", "other")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/mnist5k-cgan.yaml")
    ap.add_argument("--gan-epochs", type=int, default=None, help="the GAN cell's epochs [the config's]")
    ap.add_argument("--skip-gan", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-cells"))
    args = ap.parse_args()

    from ganaug.config import load_config, to_dict
    from ganaug.errors import GanaugError

    try:
        cfg = load_config(args.config)
    except GanaugError as e:  # the config's own one-line error
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    d = to_dict(cfg)
    d["out_dir"] = str(args.out / cfg.name)
    if args.gan_epochs is not None and d.get("gan"):
        d["gan"]["epochs"] = args.gan_epochs
    if len(d["seeds"]) < 2:
        d["seeds"] = [0, 1]
    threads = cfg.executor.threads or min(4, os.cpu_count() or 1)
    print(machine_line())
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(d), str(threads), str(cfg.executor.clf_threads),
                           "1" if args.skip_gan else "0"], capture_output=True, text=True)
    whole = time.time() - t0
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH ")), None)
    if proc.returncode or line is None:
        raise SystemExit((proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1])
    res = json.loads(line[6:])
    cells = res["cells"]
    print(f"one process, {whole:.1f} s in all: start-up {whole - res['child_seconds']:.1f} s (interpreter), "
          f"imports {res['imports']:.1f} s, then the cells")
    names = list(cells)
    heads = {n: ("2nd " if i == 2 else "") + n.split("/")[0] for i, n in enumerate(names)}
    print(f"{'phase (s)':12s}" + "".join(f"{heads[n]:>12s}" for n in names))
    for ph in PHASES + ("wall_seconds",):
        vals = [(cells[n].get("phases") or {}).get(ph) if ph != "wall_seconds" else cells[n].get(ph) for n in names]
        if all(v is None for v in vals):
            continue
        print(f"{'cell wall' if ph == 'wall_seconds' else ph:12s}" +
              "".join(f"{v:12.2f}" if v is not None else f"{'':12s}" for v in vals))
    print("cells: " + ", ".join(names) + f"; classifier at {cfg.executor.clf_threads} thread(s), others at {threads}")


if __name__ == "__main__":
    main()
