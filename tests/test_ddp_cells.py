"""`executor.ddp: N`: a generator-training cell on N processes under torchrun, started by the executor (serial and
local here; Slurm's job and Ray's task hold N times the cell's CPUs), the same table in every executor, a stop
signal handed to the processes (a checkpoint, then a resume), and a generator that cannot split refused up front."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganaug.config import load_config
from ganaug.stages.cells import build_graph

from .conftest import abort_at_exit, invoke, ok
from .test_cells import cfg_file, one_line_error, table

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="this torch build has no torch.distributed with gloo")

ARMS = [{"name": "real", "data": "real"}, {"name": "mixed-0.5", "data": "mixed", "mix": {"p_real": 0.5}}]


def _record(run: Path) -> dict:
    return json.loads((run / "gan" / "stage.json").read_text())


@pytest.mark.cluster  # torchrun process groups in every executor: make test-clusters
def test_a_generator_cell_on_two_processes_gives_one_table_in_every_executor(tmp_path: Path,
                                                                             image_folder: Path) -> None:
    ddp = {"ddp": 2, "threads": 1}
    serial = cfg_file(tmp_path, image_folder, "serial", arms=ARMS, seeds=[0], executor=ddp)
    local = cfg_file(tmp_path, image_folder, "local", arms=ARMS, seeds=[0], executor={**ddp, "name": "local",
                                                                                      "workers": 2})
    ok("run", "-c", str(serial))
    ok("run", "-c", str(local))
    assert _record(tmp_path / "serial")["world_size"] == _record(tmp_path / "local")["world_size"] == 2
    assert table(tmp_path / "serial") == table(tmp_path / "local")  # (2 processes against 1: test_ddp_families.py)
    log = (tmp_path / "local" / "logs" / "gan.log").read_text()
    assert "2 processes" in log


def test_the_executors_hold_n_times_a_generator_cells_cpus(tmp_path: Path, image_folder: Path) -> None:
    from ganaug.executors import get_executor

    cfg = load_config(cfg_file(tmp_path, image_folder, "x", arms=ARMS, executor={"name": "local", "ddp": 2,
                                                                               "threads": 1, "workers": 4}))
    cells = {c.kind: c for c in build_graph(cfg)}
    ex = get_executor(cfg)
    try:
        assert ex.cost(cells["train-gan"]) == 2 and ex.cost(cells["train-clf"]) == 1
    finally:
        ex.close()
    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    cfg.executor.name, cfg.executor.cpus, cfg.executor.gpus = "slurm", 3, 1.0
    cfg.executor.slurm.cluster = "local"
    ex = get_executor(cfg)  # the job's one task holds torchrun's processes: N times the CPUs and GPUs
    assert (ex.cpus(cells["train-gan"]), ex.gpus(cells["train-gan"])) == (6, 2.0)
    assert (ex.cpus(cells["train-clf"]), ex.gpus(cells["train-clf"])) == (3, 1.0)


@pytest.mark.cluster  # torchrun process groups in every executor: make test-clusters
def test_a_stop_reaches_the_processes_which_save_and_resume(tmp_path: Path, image_folder: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Rank 1 aborts if it gets to the interpreter's teardown (as gloo's threads now and then make one do): stopped
    # or done, every process ends together before it.
    monkeypatch.setenv("PYTHONPATH", abort_at_exit(dict(os.environ))["PYTHONPATH"])
    run = cfg_file(tmp_path, image_folder, "run", arms=ARMS[:1] + ARMS[1:], seeds=[0],
                   gan={"epochs": 100}, checkpoint={"every_steps": 100000},
                   executor={"ddp": 2, "threads": 1})
    proc = subprocess.Popen([sys.executable, "-m", "ganaug", "run", "-c", str(run)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "GANAUG_PROGRESS_SECONDS": "0.2"})
    feed = tmp_path / "run" / "gan.partial"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not list((tmp_path / "run").glob("gan.partial/metrics.jsonl")):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    saved = list(feed.glob("resume/step-*.pt"))
    assert saved, err
    assert "stopped by SIGINT" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "gan" / "checkpoint.pt").exists()
    ok("run", "-c", str(run))
    assert _record(tmp_path / "run")["world_size"] == 2


def test_a_generator_that_cannot_split_is_refused_before_any_cell(tmp_path: Path, image_folder: Path) -> None:
    f = cfg_file(tmp_path, image_folder, "x", arms=ARMS, executor={"ddp": 3})
    one_line_error(invoke("run", "-c", str(f)), "executor.ddp is 3", "gan.batch_size 8", "multiple of 3")
    assert not (tmp_path / "x").exists()
