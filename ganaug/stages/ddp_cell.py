"""A generator-training cell on several processes (`executor.ddp: N`), in any executor.

The worker that runs the cell holds its lock and starts torchrun with N processes on this machine
(`python -m torch.distributed.run --standalone --nproc_per_node N -m ganaug.stages.ddp_cell SPEC`); each process
joins the process group and trains the cell's generator as `torchrun -m ganaug train-gan` does (`distributed`:
the global batch split over the processes, rank 0 writing the stage and the cell's progress file). The processes'
output goes to the cell's log. A stop signal to the worker (Ctrl-C, scancel, Slurm's SIGUSR2 notice of preemption)
is handed to torchrun's processes as SIGTERM: they save a checkpoint after the same step and stop, and the cell
stops as a one-process cell does (`Interrupted`), to resume at any world size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

from ..config import Config, Rep
from ..errors import ConfigError, Interrupted, StageError

TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR",
                 "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def check(cfg: Config, rep: Rep) -> None:
    """executor.ddp's demands on the generator: a family whose loop runs in DDP, a global batch that splits."""
    from .train_gan import several_families, single_process

    n = cfg.executor.ddp
    why = single_process(cfg, rep)
    if why:
        raise ConfigError(f"executor.ddp is {n} but {why}; set executor.ddp: 1 (families that train on several: "
                          f"{several_families()})")
    g = cfg.gen(rep.generator)
    key = "gan" if rep.generator is None else f"generators.{rep.generator}"
    if g.batch_size % n:
        raise ConfigError(f"executor.ddp is {n} but {key}.batch_size {g.batch_size} does not split over {n} "
                          f"processes; set {key}.batch_size to a multiple of {n}")


def run(spec: Dict[str, Any], cfg: Config, rep: Rep) -> None:
    """In the worker: train the cell's generator on executor.ddp processes under torchrun, and wait for them. Each
    process gets the cell's torch threads (the worker's)."""
    import torch

    from ..utils import catch_stop

    check(cfg, rep)
    n = cfg.executor.ddp
    threads = torch.get_num_threads()
    spec = {**spec, "threads": threads}
    fd, name = tempfile.mkstemp(prefix="ganaug-ddp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["OMP_NUM_THREADS"] = str(threads)  # each process's threads: the cell's, as on one process
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
           "-m", "ganaug.stages.ddp_cell", name]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        with catch_stop() as stop:
            # stdout and stderr: this process's (the cell's log). Its own session: a Ctrl-C at the terminal reaches
            # this process, which hands it on; SIGUSR2 (Slurm signals every process of the job) ignored by torchrun,
            # which would die of it, while its processes catch it and save.
            proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                                    preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
            handed = False
            while proc.poll() is None:
                if stop.requested and not handed:
                    for pid in _children(proc.pid) or [proc.pid]:  # the processes, which save and stop (exit 0)
                        os.kill(pid, signal.SIGTERM)
                    handed = True
                time.sleep(0.1)
    finally:
        os.unlink(name)
    if stop.requested:
        raise Interrupted(f"stopped by {stop.signal}; its {n} processes (executor.ddp) saved a checkpoint",
                          stop.signal or "")
    if proc.returncode:
        raise StageError(f"train-gan on {n} processes (executor.ddp) exited with status {proc.returncode}; the "
                         "cell's log has their output")


def _children(pid: int) -> List[int]:
    """The processes torchrun started (Linux's /proc), so a stop reaches them and not torchrun, whose own handler
    would print a traceback; empty where /proc does not tell."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def main(argv: List[str]) -> None:
    """In each of torchrun's processes: join the group, train the cell's generator, rank 0 writing."""
    import torch

    from .. import distributed, progress
    from .cells import config_of
    from .train_gan import run_train_gan

    spec: Dict[str, Any] = json.loads(Path(argv[0]).read_text())
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    cfg = config_of(spec)
    distributed.init(cfg.device)
    main_rank = distributed.is_main()
    with progress.reporting_to(spec.get("progress") if main_rank else None):
        run_train_gan(cfg, force=spec.get("force", False), progress=main_rank, resume=True,
                      reps=[Rep(spec.get("generator"), spec.get("gan_seed"))])


if __name__ == "__main__":
    from .. import distributed
    from ..errors import GanaugError

    try:
        main(sys.argv[1:])
    except Interrupted:  # saved and stopped on request: the worker that asked says so
        pass
    except GanaugError as e:  # one line in the cell's log, as the CLI prints it
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    distributed.exit_together(0)  # done or stopped, with every process
