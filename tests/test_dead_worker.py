"""A dead worker costs one cell: a `local` worker killed with SIGKILL (as the out-of-memory killer does) fails the cell
it ran, the cell running beside it finishes, independent cells still run, and a rerun redoes only what is missing.

The fault is real: the test holds two cells' locks, so each waits in its own worker process, reads the pid of the
worker running the GAN from the head of its log file, and kills that process."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

from ganaug.executors import local
from ganaug.stages.locks import cell_lock

from .conftest import invoke, ok, tiny_config, write_yaml

ARMS = [{"name": "real", "data": "real"}, {"name": "real-aug", "data": "real", "augment": "classic"},
        {"name": "synthetic", "data": "synthetic"}]
RUN = ["--executor", "local", "--set", "executor.workers=2", "--set", "executor.threads=1"]


def worker_pid(log: Path, timeout: float = 60.0) -> int:
    """The pid in the first line of a cell's log (worker_run writes it before the cell takes its lock)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = re.search(r" pid (\d+),", log.read_text()) if log.is_file() else None
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise TimeoutError(f"no worker started {log.name}")


def gone(pid: int, timeout: float = 20.0) -> bool:
    """Wait until `pid` is dead and reaped by its parent."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def kill_gan_beside_a_classifier(run: Path, held: threading.Event, box: Dict[str, Any]) -> None:
    """Hold the GAN's and a real classifier's locks until both wait in their workers, SIGKILL the GAN's worker, and
    let the classifier go on once the coordinator has seen the death."""
    try:
        with cell_lock(run / "gan"), cell_lock(run / "clf" / "real" / "seed-0"):
            held.set()
            box["gan_pid"] = worker_pid(run / "logs" / "gan.log")
            box["clf_pid"] = worker_pid(run / "logs" / "clf__real__seed-0.log")
            os.kill(box["gan_pid"], signal.SIGKILL)
            box["reaped"] = gone(box["gan_pid"])
    except BaseException as e:  # noqa: BLE001 - reported by the test
        box["error"] = e
    finally:
        held.set()


def test_a_killed_worker_fails_only_its_cell_and_a_rerun_redoes_only_it(tmp_path: Path, image_folder: Path,
                                                                        monkeypatch: Any) -> None:
    monkeypatch.setattr(local, "available_cores", lambda: 2)  # two one-thread cells side by side on any machine
    f = write_yaml(tmp_path / "tiny.yaml", tiny_config(tmp_path, image_folder, arms=ARMS, seeds=[0]))
    run = tmp_path / "run"
    held, box = threading.Event(), {}
    killer = threading.Thread(target=kill_gan_beside_a_classifier, args=(run, held, box), daemon=True)
    killer.start()
    held.wait(30)
    r = invoke("run", "-c", str(f), *RUN)
    killer.join(60)
    assert "error" not in box, box
    assert box.get("reaped") and box["clf_pid"] != box["gan_pid"], box

    # One line, exit status 2, naming the killed cell and how its worker died; no traceback.
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("run: ")]
    assert len(errors) == 1 and errors[0] is lines[-1], r.stderr  # the summary ends the output
    for words in ("error: run: 1 cell(s) failed (first: gan: its worker process died", "killed by signal 9",
                  "3 cell(s) that need them were not run", "rerun the same command"):
        assert words in errors[0], (words, errors[0])
    failed = [line for line in lines if "FAILED" in line]
    assert len(failed) == 1 and failed[0].split("FAILED ")[1].startswith("train-gan"), r.stderr

    # The classifier beside it and every cell that does not need the GAN finished.
    assert all((run / "clf" / arm / "seed-0" / "result.json").is_file() for arm in ("real", "real-aug"))
    for cell in ("split", "features/domain", "clf/real/seed-0", "clf/real-aug/seed-0"):
        assert (run / cell / "stage.json").is_file(), cell
    assert not (run / "gan" / "stage.json").exists() and not (run / "samples").exists()
    kept = {p: p.stat().st_mtime_ns for p in run.glob("clf/*/seed-0/result.json")}

    # A rerun redoes the GAN and what waited on it, nothing else.
    r = ok("run", "-c", str(f), *RUN)
    assert "8 cells, 4 done, 4 to run" in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("run: finished in"), r.stderr
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert (run / "clf" / "synthetic" / "seed-0" / "result.json").is_file()
    assert (run / "compare" / "table.md").is_file()


def test_cancel_drops_what_waits_for_a_worker_and_close_ends_the_workers(tmp_path: Path, image_folder: Path) -> None:
    from ganaug.config import load_config
    from ganaug.stages.cells import build_graph

    f = write_yaml(tmp_path / "tiny.yaml", tiny_config(tmp_path, image_folder, arms=ARMS[:1], seeds=[0],
                                                       executor={"name": "local", "workers": 1}))
    cfg = load_config(f)
    cells = {c.id: c for c in build_graph(cfg)}
    ex = local.LocalExecutor(cfg)
    logs = Path(cfg.out_dir) / "logs"
    with cell_lock(Path(cfg.out_dir) / "split"):
        handles: List[Any] = ex.submit([cells["split"], cells["clf/real/seed-0"]], force=False)
        worker_pid(logs / "split.log")
        ex.cancel(handles)  # the split waits on the lock (no training loop to stop): it goes on; the classifier never starts
    ex.close()
    assert (Path(cfg.out_dir) / "split" / "stage.json").is_file()
    assert not (logs / "clf__real__seed-0.log").exists()
    assert not multiprocessing.active_children()  # no worker left behind
