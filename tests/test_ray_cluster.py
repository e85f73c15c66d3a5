"""A real two-node Ray cluster on this machine: a head with 1 CPU and a worker node with 2, each started with
`ray start` in a session of its own (its own ports and --temp-dir), so the tests stop exactly the processes they
started and never another Ray running here.

The quick config through `executor: ray` at the head's address gives the serial table, its cells spread over both
nodes; the worker node killed (SIGKILL of every process of it, as when a machine goes away) while its cells run
costs nothing: Ray runs them again on the head. Where Ray has no retries left, each of them fails with one line
naming the node's death and the rerun, nothing half-written is left, and a rerun redoes only them.

The fault is real and timed by locks, as in tests/test_dead_worker.py: the test holds the classifier cells' locks,
so their tasks wait in their workers; it reads each worker's pid from the head of its cell's log, and kills the
worker node once some of them wait there."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import pytest

from ganaug.stages.locks import cell_lock

from .conftest import invoke, make_folder, ok
from .ports import free_port
from .test_cells import REAL_ARMS, cfg_file, table

pytestmark = pytest.mark.cluster  # make test-clusters (CI runs it after the default suite)

CLF_CELLS = [f"clf/{arm['name']}/seed-{s}" for arm in REAL_ARMS for s in (0, 1)]


# ----------------------------------------------------------------------------------------------------
# Processes, by /proc: a node is the session `ray start` made, plus the workers its raylet started (each in a
# process group of its own).


def _procs() -> Dict[int, Tuple[int, int, str, str]]:
    """pid -> (ppid, process group, state, name) of every process here."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        out[int(d)] = (int(rest[1]), int(rest[2]), rest[0], name)
    return out


def alive(pid: int) -> bool:
    """Running (a zombie whose parent died with its node counts as dead)."""
    p = _procs().get(pid)
    return p is not None and p[2] not in ("Z", "X")


def ray_cli() -> str:
    here = Path(sys.executable).with_name("ray")
    return str(here) if here.is_file() else (shutil.which("ray") or "ray")


class Node:
    """One `ray start`: its session's process group, and the workers its raylet started."""

    def __init__(self, name: str, temp: Path, args: List[str]):
        self.name, self.temp = name, temp
        log = temp.parent / f"{name}.out"
        cmd = [ray_cli(), "start", *args, "--temp-dir", str(temp), "--disable-usage-stats",
               "--node-ip-address", "127.0.0.1", "--ray-client-server-port", str(free_port()),
               "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
               "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
               # no token authentication (a head may turn it on, and the nodes and the coordinator would need the token)
               "RAY_AUTH_MODE": "disabled",
               # the head notices a dead node in a few seconds, not Ray's 15 s (not quicker: a busy machine's nodes
               # answer late, and would be taken for dead)
               "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "2000",
               "RAY_health_check_failure_threshold": "3"}
        with open(log, "w") as out:
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pgid = p.pid  # `ray start` leads a new session; the node's daemons stay in its group when it exits
        try:
            rc = p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            rc = None
        if rc != 0:
            self.kill()
            raise RuntimeError(f"ray start ({name}) failed ({rc}): {log.read_text()[-2000:]}")

    def pids(self) -> Set[int]:
        """The node's processes: its session's group and every descendant (the workers lead groups of their own)."""
        procs = _procs()
        mine = {pid for pid, (_, pgid, _, _) in procs.items() if pgid == self.pgid}
        grew = True
        while grew:
            more = {pid for pid, (ppid, _, _, _) in procs.items() if ppid in mine} - mine
            mine |= more
            grew = bool(more)
        return {pid for pid in mine if procs[pid][2] not in ("Z", "X")}

    def raylet(self) -> Optional[int]:
        procs = _procs()
        return next((pid for pid, (_, pgid, st, name) in procs.items()
                     if pgid == self.pgid and name == "raylet" and st != "Z"), None)

    def runs(self, pid: int) -> bool:
        """Whether worker process `pid` was started by this node's raylet."""
        p = _procs().get(pid)
        return p is not None and p[0] == self.raylet()

    def kill(self) -> None:
        """SIGKILL every process of the node at once, as when its machine goes away; wait until they are gone."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 30
        while any(alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.05)

    @property
    def up(self) -> bool:
        return self.raylet() is not None


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.head = Node("head", root / "h", ["--head", "--port", str(self.port), "--num-cpus", "1",
                                              "--include-dashboard=false", "--dashboard-port", str(free_port())])
        self.worker: Optional[Node] = None
        self.starts = 0

    def ensure_worker(self) -> Node:
        """The worker node, started again where a test killed it (in a temp dir of its own each time)."""
        for attempt in range(2):  # a busy machine's head can be slow to take a node: once more
            if self.worker is not None and self.worker.up:
                break
            self.starts += 1
            try:
                self.worker = Node(f"worker{self.starts}", self.root / f"w{self.starts}",
                                   ["--address", self.address, "--num-cpus", "2"])
            except RuntimeError:
                if attempt:
                    raise
        return self.worker

    def stop(self) -> None:
        for node in (self.worker, self.head):
            if node is not None:
                node.kill()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'ganaug[ray]')")
    root = Path(tempfile.mkdtemp(prefix="gr", dir="/tmp"))  # short: Ray's unix sockets live under it (107 bytes)
    c = None
    try:
        c = Cluster(root)
        c.ensure_worker()
        yield c
    finally:
        if c is not None:
            c.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory: Any) -> Path:
    return make_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def serial(tmp_path_factory: Any, images: Path) -> str:
    """The serial table of the quick config (two real arms x two seeds)."""
    d = tmp_path_factory.mktemp("serial")
    ok("run", "-c", str(cfg_file(d, images, "serial", arms=REAL_ARMS)))
    return table(d / "serial")


def on_cluster(tmp_path: Path, images: Path, cluster: Cluster, name: str) -> Path:
    return cfg_file(tmp_path, images, name, arms=REAL_ARMS, executor={"name": "ray", "address": cluster.address})


def head_of(log: Path) -> Optional[re.Match]:
    """The first `# cell` line of a cell's log: where its (first) worker ran."""
    text = log.read_text() if log.is_file() else ""
    return re.search(r"^# cell .* pid (\d+),", text, re.M)


def leftovers(run: Path) -> List[str]:
    """What a killed writer could leave: temporary files, and cell folders without their outputs."""
    tmp = [str(p.relative_to(run)) for p in run.rglob("*.tmp")] + [str(p.relative_to(run)) for p in run.rglob(".*.tmp")]
    hollow = [c for c in CLF_CELLS if (run / c / "stage.json").exists() and not (run / c / "result.json").is_file()]
    return tmp + hollow


# ----------------------------------------------------------------------------------------------------
# The same table as serial, on both nodes.


def test_a_two_node_cluster_gives_the_serial_table(cluster: Cluster, images: Path, serial: str, tmp_path: Path) -> None:
    # The cells wait for one another at their locks, so that three run at once, on both nodes (the head has one CPU).
    r, box = run_holding_locks(on_cluster(tmp_path, images, cluster, "two"), tmp_path / "two", cluster, kill=False)
    assert r.exit_code == 0, r.output
    assert f"ray ({cluster.address}: 3 CPUs" in r.stderr, r.stderr
    assert table(tmp_path / "two") == serial
    logs = list((tmp_path / "two" / "logs").glob("*.log"))
    nodes = {m.group(1) for log in logs for m in re.finditer(r"^# cell .* on \S+ \(Ray node ([0-9a-f]+)\)",
                                                              log.read_text(), re.M)}
    assert len(nodes) == 2, [log.read_text().splitlines()[0] for log in logs]  # the head's and the worker node's


# ----------------------------------------------------------------------------------------------------
# The worker node dies under its cells.


def hold_then_kill(run: Path, cluster: Cluster, held: threading.Event, box: Dict[str, Any], kill: bool) -> None:
    """Hold the classifier cells' locks until three of them wait in their workers, some on the worker node; kill the
    worker node (`kill`); let the cells go on once its processes are gone."""
    worker = cluster.ensure_worker()
    try:
        with contextlib.ExitStack() as stack:
            for c in CLF_CELLS:
                stack.enter_context(cell_lock(run / c))
            held.set()
            deadline = time.time() + 120
            while time.time() < deadline:
                pids = {c: int(m.group(1)) for c in CLF_CELLS
                        if (m := head_of(run / "logs" / (c.replace("/", "__") + ".log")))}
                there = {c for c, pid in pids.items() if worker.runs(pid)}
                if len(pids) >= 3 and there:
                    break
                time.sleep(0.05)
            else:
                raise TimeoutError(f"no cells waited on the worker node: {pids}")
            box["there"], box["pids"] = there, pids
            if kill:
                worker.kill()
                box["gone"] = not worker.up and not any(alive(pids[c]) for c in there)
                time.sleep(10)  # the cells go on after the head has noticed (health checks: ~5 s), as longer cells would
    except BaseException as e:  # noqa: BLE001 - reported by the test
        box["error"] = e
    finally:
        held.set()


def run_holding_locks(f: Path, run: Path, cluster: Cluster, kill: bool = True) -> Tuple[Any, Dict[str, Any]]:
    held: threading.Event = threading.Event()
    box: Dict[str, Any] = {}
    killer = threading.Thread(target=hold_then_kill, args=(run, cluster, held, box, kill), daemon=True)
    killer.start()
    held.wait(60)
    r = invoke("run", "-c", str(f))
    killer.join(60)
    assert "error" not in box, box
    assert box.get("gone") or not kill, box
    return r, box


def test_cells_of_a_dead_node_run_again_on_the_head(cluster: Cluster, images: Path, serial: str, tmp_path: Path) -> None:
    f = on_cluster(tmp_path, images, cluster, "node-dies")
    run = tmp_path / "node-dies"
    r, box = run_holding_locks(f, run, cluster)

    # The run goes on: Ray runs the dead node's cells again on the head; it says so, once, and finishes.
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and "FAILED" not in r.stderr
    died = [line for line in r.stderr.splitlines() if "died" in line]
    assert len(died) == 1 and died[0].startswith("run: Ray node "), r.stderr
    assert "its cells run again on the other nodes" in died[0], died[0]
    assert table(run) == serial
    for c in box["there"]:  # each ran twice: on the worker node (killed), then on the head
        assert len(re.findall(r"^# cell ", (run / "logs" / (c.replace("/", "__") + ".log")).read_text(), re.M)) == 2
    assert not leftovers(run), leftovers(run)

    r = ok("run", "-c", str(f))
    assert "5 cells, 5 done, 0 to run" in r.stderr, r.stderr
    assert table(run) == serial


def test_with_no_retries_left_each_cell_of_a_dead_node_fails_in_one_line(cluster: Cluster, images: Path, serial: str,
                                                                          tmp_path: Path, monkeypatch: Any) -> None:
    from ganaug.executors.ray_executor import RayExecutor

    monkeypatch.setattr(RayExecutor, "retries", 0)
    f = on_cluster(tmp_path, images, cluster, "no-retries")
    run = tmp_path / "no-retries"
    r, box = run_holding_locks(f, run, cluster)

    # One line per cell that died with the node, naming it, the node's death and the rerun; then the summary.
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    failed = [line for line in r.stderr.splitlines() if "FAILED" in line]
    cells = {re.search(r"FAILED train-clf (\S+) seed (\d)", line).expand(r"clf/\1/seed-\2") for line in failed}
    assert len(cells) == len(failed) and box["there"] <= cells <= set(CLF_CELLS), (box, r.stderr)
    for line in failed:
        assert re.search(r"the Ray node running it( \([0-9a-f]+\))? died \(no retries\); rerun the same command", line), line
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: run: {len(failed)} cell(s) failed"), r.stderr
    if os.environ.get("GANAUG_SHOW_FAULT"):
        print("\n".join(failed))

    # Nothing half-written: the dead cells have no record, no temporary file is left; the others finished.
    assert not leftovers(run), leftovers(run)
    for c in CLF_CELLS:
        assert (run / c / "stage.json").is_file() == (c not in cells), c

    # The node back, a rerun redoes those cells alone and prints the serial table.
    cluster.ensure_worker()
    r = ok("run", "-c", str(f))
    assert f"5 cells, {5 - len(cells)} done, {len(cells)} to run" in r.stderr, r.stderr
    assert table(run) == serial
