"""The slurm executor on a real one-node Slurm (tests/slurm_cluster.py): array jobs with cpus-per-task, the job logs
under the run folder, the serial table; and the faults a cluster brings: a cancelled array task, a preempted job
(USR2: the cell checkpoints and resumes), a job over its memory limit.

Skipped with one line where the packages or root are missing; .ci/run installs them and sets GANAUG_REQUIRE_SLURM=1,
so in CI these tests run or fail."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from . import slurm_cluster
from .conftest import make_folder, ok
from .ports import free_port as real_free_port
from .test_cells import REAL_ARMS, cfg_file, table

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(bool(slurm_cluster.missing()) and not os.environ.get("GANAUG_REQUIRE_SLURM"),
                                 reason=slurm_cluster.WHY_NOT)]


def test_a_daemon_whose_port_is_taken_is_started_again_on_other_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """slurmd finds its port taken (in CI an outgoing connection took it between the choice and the bind): the test
    cluster starts again on other ports at once, instead of failing after the node's 60 s wait. (First in the file:
    no other test cluster runs beside it.)"""
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        taken = held.getsockname()[1]
        given: List[int] = []

        def slurmd_port_taken_once() -> int:  # ports go to slurmctld, then slurmd: the first slurmd port is taken
            given.append(taken if len(given) == 1 else real_free_port())
            return given[-1]

        monkeypatch.setattr(slurm_cluster, "free_port", slurmd_port_taken_once)
        t0 = time.monotonic()
        cluster = slurm_cluster.start()
        try:
            assert cluster.idle() and f"SlurmdPort={taken}\n" not in cluster.conf.read_text()
            assert len(given) == 4 and given[1] == taken  # two ports, twice
            assert time.monotonic() - t0 < 55, "started again only after the node's wait ran out"
        finally:
            slurm_cluster.stop(cluster)


@pytest.fixture(scope="module")
def slurm() -> Iterator[slurm_cluster.Slurm]:
    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    with pytest.MonkeyPatch.context() as mp:
        for cluster in slurm_cluster.session():
            mp.setenv("SLURM_CONF", str(cluster.conf))
            yield cluster


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("slurm-images") / "images")


def on_slurm(**slurm: Any) -> Dict[str, Any]:
    return {"name": "slurm", "cpus": 1, "slurm": {"cluster": "slurm", "time_min": 10, "mem_gb": 2, "poll_seconds": 0.5,
                                                  **slurm}}


def test_the_quick_config_on_slurm_gives_the_serial_table(slurm: slurm_cluster.Slurm, folder: Path,
                                                          tmp_path: Path) -> None:
    serial = cfg_file(tmp_path, folder, "serial", seeds=[0], executor={"threads": 1})  # every stage: GAN to compare
    jobs = cfg_file(tmp_path, folder, "jobs", seeds=[0], executor=on_slurm())
    ok("run", "-c", str(serial))
    r = ok("run", "-c", str(jobs))
    assert table(tmp_path / "serial") == table(tmp_path / "jobs")
    logs = tmp_path / "jobs" / "logs" / "slurm"
    scripts = sorted(logs.rglob("*_submission.sh"))
    assert scripts, "submitit's job folders live under the run folder"
    text = "\n".join(p.read_text() for p in scripts)
    assert "#SBATCH --array=" in text and "#SBATCH --cpus-per-task=1" in text and "#SBATCH --mem=2GB" in text
    assert any(p.name.endswith("_log.out") for p in logs.rglob("*")), "the jobs' logs are under the run folder"
    print(r.stderr)


# ----------------------------------------------------------------------------------------------------
# Faults on the real thing. Each runs `ganaug run` in the background, waits until the classifier cell is training
# in its Slurm job, does to that job what the cluster would, and reads what the user sees.

LONG = {"steps": 3000, "eval_every": 1000}  # a classifier cell that trains long enough to be caught mid-run


@pytest.fixture(scope="module")
def reference(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The serial run the fault tests' reruns must match: real and real-aug, long classifier cells, seed 0."""
    tmp = tmp_path_factory.mktemp("slurm-serial")
    ok("run", "-c", str(cfg_file(tmp, folder, "serial", arms=REAL_ARMS, seeds=[0], classifier=LONG,
                                 executor={"threads": 1})))
    return tmp / "serial"


def _start(config: Path, slurm: slurm_cluster.Slurm) -> subprocess.Popen:
    env = {**slurm.env, "GANAUG_PROGRESS_SECONDS": "0.2"}  # the cells' progress files, written often
    return subprocess.Popen([sys.executable, "-m", "ganaug", "run", "-c", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _training(run: Path, proc: subprocess.Popen, cells: int = 1, steps: int = 50, timeout: float = 240) -> Dict[str, str]:
    """Wait until `cells` classifier cells' progress files show `steps` steps; their Slurm job ids (cell -> job)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        feeds = list((run / "logs" / "progress").glob("clf__*.json"))
        if len(feeds) == cells and all(_step(f) >= steps for f in feeds):
            jobs = {}
            for f in feeds:
                log = (run / "logs" / (f.stem + ".log")).read_text()
                jobs[f.stem] = next(line.split()[3] for line in log.splitlines() if line.startswith("# Slurm job "))
            return jobs
        time.sleep(0.3)
    raise AssertionError(f"no classifier cell trained {steps} steps within {timeout} s")


def _step(feed: Path) -> int:
    try:
        return int(json.loads(feed.read_text()).get("step") or 0)
    except (OSError, ValueError):
        return 0


def _finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _half_written(run: Path) -> List[str]:
    return [str(p) for p in run.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]


def test_a_cancelled_array_task_fails_its_cell_and_a_rerun_redoes_it(slurm: slurm_cluster.Slurm, folder: Path,
                                                                     reference: Path, tmp_path: Path) -> None:
    jobs = cfg_file(tmp_path, folder, "jobs", arms=REAL_ARMS, seeds=[0], classifier=LONG, executor=on_slurm())
    proc = _start(jobs, slurm)
    job = _training(tmp_path / "jobs", proc, cells=2)
    (cell, job_id), = [(c, j) for c, j in job.items() if "real-aug" in c]
    slurm.cmd("scancel", job_id)
    r = _finish(proc)
    assert r.returncode != 0, r.stderr
    failed = [line for line in r.stderr.splitlines() if "FAILED" in line]
    print("\n".join(failed))
    assert len(failed) == 1 and "real-aug" in failed[0] and f"Slurm job {job_id} was cancelled (scancel)" in failed[0]
    assert "rerun" in failed[0] and "Traceback" not in r.stderr
    assert (tmp_path / "jobs" / "clf" / "real" / "seed-0" / "result.json").exists(), "the other cell went on"
    assert not (tmp_path / "jobs" / "clf" / "real-aug" / "seed-0" / "result.json").exists()
    assert not _half_written(tmp_path / "jobs" / "clf" / "real")
    again = ok("run", "-c", str(jobs))
    assert "1 to run" in again.stderr, again.stderr  # the cancelled cell alone
    assert table(reference) == table(tmp_path / "jobs")


def _preempt(slurm: slurm_cluster.Slurm, proc: subprocess.Popen, job_id: str, while_queued: Any = None) -> None:
    """Send the job USR2, as Slurm does before preempting it (or at its time limit); it checkpoints and requeues
    itself. Slurm holds a requeued job back a while (its begin time, past the life of the job credential it
    revoked): once it is back in the queue, run `while_queued()` and let it start 2 s from then. Not at once: slurmd
    refuses a start in the same second as the revocation ("Job credential revoked") and the job ends FAILED."""
    slurm.cmd("scancel", "--signal=USR2", job_id)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if slurm.jobs().get(job_id) == "PENDING":
            if while_queued is not None:
                while_queued()
            slurm.cmd("scontrol", "update", f"JobId={job_id}", "StartTime=now+2", check=False)
            return
        time.sleep(0.2)
    raise AssertionError(f"Slurm job {job_id} was not requeued within 120 s: {slurm.jobs()}")


def test_a_preempted_cell_checkpoints_on_usr2_and_resumes_where_it_stopped(slurm: slurm_cluster.Slurm, folder: Path,
                                                                           reference: Path, tmp_path: Path) -> None:
    jobs = cfg_file(tmp_path, folder, "jobs", arms=REAL_ARMS, seeds=[0], classifier=LONG, executor=on_slurm())
    proc = _start(jobs, slurm)
    job_id = _training(tmp_path / "jobs", proc, cells=2)["clf__real__seed-0"]
    _preempt(slurm, proc, job_id)
    r = _finish(proc)
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "jobs" / "clf" / "real" / "seed-0" / "stage.json").read_text())
    assert record["resumed_from_step"] and record["resumed_from_step"] >= 50, record
    log = (tmp_path / "jobs" / "logs" / "clf__real__seed-0.log").read_text()
    assert "stopped by SIGUSR2" in log and "resuming from" in log and "Traceback" not in log
    assert f"# Slurm job {job_id} start 2" in log
    assert table(reference) == table(tmp_path / "jobs")


def test_a_requeued_job_whose_restart_fails_says_why_and_not_that_it_was_cancelled(slurm: slurm_cluster.Slurm,
                                                                                  folder: Path, tmp_path: Path) -> None:
    """The first start's log ends with Slurm's "CANCELLED ... DUE TO JOB REQUEUE": the cell's failure on its second
    start (here its only checkpoint was cut short while it waited in the queue, as a full disk would) is what the
    user reads, not a cancellation nobody asked for."""
    jobs = cfg_file(tmp_path, folder, "jobs", arms=REAL_ARMS[:1], seeds=[0], classifier=LONG, executor=on_slurm())
    proc = _start(jobs, slurm)
    job_id = _training(tmp_path / "jobs", proc)["clf__real__seed-0"]
    resume = tmp_path / "jobs" / "clf" / "real" / "seed-0.partial" / "resume"

    def cut_short() -> None:
        saved = sorted(resume.glob("step-*.pt"))
        assert saved, f"no checkpoint in {resume}"
        for p in saved:
            p.write_bytes(p.read_bytes()[:100])

    _preempt(slurm, proc, job_id, while_queued=cut_short)
    r = _finish(proc)
    assert r.returncode != 0
    failed = [line for line in r.stderr.splitlines() if "FAILED" in line]
    print("\n".join(failed))
    assert len(failed) == 1 and f"no readable checkpoint in '{resume}'" in failed[0], r.stderr
    assert "remove that folder" in failed[0] and "cancelled" not in failed[0] and "Traceback" not in r.stderr
    log = (tmp_path / "jobs" / "logs" / "clf__real__seed-0.log").read_text()
    assert f"# Slurm job {job_id} start 2" in log
    shutil.rmtree(resume)  # what the line says to do
    again = ok("run", "-c", str(jobs))
    assert "1 to run" in again.stderr and (tmp_path / "jobs" / "clf" / "real" / "seed-0" / "result.json").exists()


def test_a_job_over_its_memory_limit_is_one_line_naming_the_key(slurm: slurm_cluster.Slurm, folder: Path,
                                                                tmp_path: Path) -> None:
    jobs = cfg_file(tmp_path, folder, "jobs", arms=REAL_ARMS[:1], seeds=[0], executor=on_slurm(mem_gb=0.15))
    r = _finish(_start(jobs, slurm))
    assert r.returncode != 0
    failed = [line for line in r.stderr.splitlines() if "FAILED" in line]
    print("\n".join(failed))
    assert failed and "went over its memory limit (0.15 GB, executor.slurm.mem_gb)" in failed[0], r.stderr
    assert "Traceback" not in r.stderr
