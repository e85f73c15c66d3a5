"""Where and how safely the cells run: checkpoints, the executor and its Slurm settings. None of these keys is
part of a fingerprint: they never change a result."""

from __future__ import annotations

import math
from typing import List, Literal, Optional

from pydantic import Field, model_validator

from .base import Float, Int, Section, need


class CheckpointConfig(Section):
    """Resumable checkpoints of GAN and classifier training.

    One every `every_steps` optimizer steps and every `every_minutes`, whichever comes first; the newest `keep` are
    kept. They never change a result, so no fingerprint includes them.
    """

    every_steps: Optional[Int] = 1000
    """Optimizer steps between checkpoints; null: only on the time interval"""
    every_minutes: Optional[Float] = 10.0
    """Minutes between checkpoints; null: only every every_steps"""
    keep: Int = 2
    """The newest K are kept; older ones are deleted after a new one is safely on disk"""

    @model_validator(mode="after")
    def _check(self) -> "CheckpointConfig":
        if self.every_steps is not None:
            need(self.every_steps >= 1, "every_steps", f"must be 1 or more (or null), got {self.every_steps}")
        if self.every_minutes is not None:
            need(self.every_minutes > 0 and math.isfinite(self.every_minutes), "every_minutes",
                 f"must be a positive number of minutes (or null), got {self.every_minutes}")
        need(self.keep >= 1, "keep", f"must be 1 or more, got {self.keep}")
        return self


# ----------------------------------------------------------------------------------------------------
# Where the cells run.


class SlurmConfig(Section):
    """Slurm jobs through submitit: the sbatch settings of every cell's job (the run folder must be on a file
    system the compute nodes share: cells read their inputs from it and write their folders into it)."""

    partition: Optional[str] = None
    """The Slurm partition (sbatch --partition); null: the cluster's default"""
    time_min: Int = 60
    """Each cell's wall-time limit, in minutes"""
    mem_gb: Optional[Float] = 8.0
    """Memory per job, in GB; null: the cluster's default"""
    gpus_per_node: Optional[Int] = None
    """GPUs per node [executor.gpus rounded up]"""
    account: Optional[str] = None
    """The Slurm account (sbatch --account)"""
    qos: Optional[str] = None
    """The Slurm quality of service (sbatch --qos)"""
    setup: List[str] = Field(default_factory=list)
    """Shell lines before each cell (module load, conda activate)"""
    array_parallelism: Optional[Int] = None
    """At most this many cells of one array job at once"""
    cluster: Optional[Literal["slurm", "local", "debug"]] = None
    """submitit's cluster: slurm, local (runs jobs here) or debug; null finds Slurm"""
    poll_seconds: Float = 10.0
    """Seconds between asking Slurm for the jobs' states"""

    @model_validator(mode="after")
    def _check(self) -> "SlurmConfig":
        need(self.time_min >= 1, "time_min", f"must be 1 minute or more, got {self.time_min}")
        need(self.mem_gb is None or self.mem_gb > 0, "mem_gb", f"must be positive, got {self.mem_gb}")
        need(self.poll_seconds > 0, "poll_seconds", f"must be positive, got {self.poll_seconds}")
        need(self.array_parallelism is None or self.array_parallelism >= 1, "array_parallelism",
             f"must be 1 or more, got {self.array_parallelism}")
        for i, line in enumerate(self.setup):
            need("\n" not in line, f"setup[{i}]", "must be one shell line; give several lines as several entries")
        return self


EXECUTORS = ("serial", "local", "ray", "slurm")


class ExecutorConfig(Section):
    """Where the experiment's cells run (`ganaug run --executor`).

    Never part of a fingerprint. A CPU cell's numbers depend on its torch threads (torch's CPU kernels split their
    sums by thread), so each cell's threads come from here, the same in every executor: the table does not depend on
    where it ran.
    """

    name: str = "serial"
    """serial, local (processes here), ray or slurm"""
    workers: Optional[Int] = None
    """local: processes [cores // clf_threads]; ray: the CPUs of a local Ray [cores]"""
    threads: Optional[Int] = None
    """Torch threads of the split, features, GAN, sample and evaluate cells, and of those commands run by hand
    [this machine's cores; executor.cpus on a Ray cluster or Slurm]"""
    clf_threads: Int = 1
    """Torch threads of each classifier run, in every executor and in `ganaug train-clf`"""
    address: Optional[str] = None
    """ray: a cluster's address, or auto; null starts a local Ray"""
    cpus: Int = 1
    """ray, slurm: CPUs per cell"""
    gpus: Float = 0.0
    """ray, slurm: GPUs per generator cell"""
    clf_gpus: Optional[Float] = None
    """Per classifier cell; a fraction (0.25) packs several on one GPU [gpus]"""
    ddp: Int = 1
    """Processes per generator-training cell: N > 1 trains each generator on N processes with torchrun (the global
    batch split over them, gradients averaged), and the cell holds N times its CPUs and GPUs"""
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    """With name slurm: the sbatch settings of every cell's job (through submitit)"""

    @model_validator(mode="after")
    def _check(self) -> "ExecutorConfig":
        check_executor(self)
        return self


def check_executor(e: ExecutorConfig) -> None:
    """The executor's own checks (also after `--executor` changes its name)."""
    need(e.name in EXECUTORS, "name", f"is {e.name!r}; choose one of {', '.join(EXECUTORS)}")
    for k in ("workers", "threads", "clf_threads"):
        v = getattr(e, k)
        need(v is None or v >= 1, k, f"must be 1 or more, got {v}")
    need(e.cpus >= 1, "cpus", f"must be 1 or more, got {e.cpus}")
    need(e.ddp >= 1, "ddp", f"must be 1 or more processes, got {e.ddp}")
    need(e.gpus >= 0 and math.isfinite(e.gpus), "gpus", f"must be 0 or more, got {e.gpus}")
    need(e.clf_gpus is None or (e.clf_gpus >= 0 and math.isfinite(e.clf_gpus)), "clf_gpus",
         f"must be 0 or more, got {e.clf_gpus}")
    need(e.address is None or e.name == "ray", "address", f"applies to executor ray, not {e.name}")
