"""The experiment as a graph of cells: the dry-run's states, executors (serial, local processes, Ray, Slurm through
submitit) giving the serial table byte for byte, failures that leave the rest running, Ctrl-C, per-cell locks,
and sweeps over the split and the generator."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ganaug.config import load_config
from ganaug.stages.cells import build_graph
from ganaug.stages.costs import SECTION

from .conftest import invoke, ok, tiny_config, write_yaml

REAL_ARMS = [{"name": "real", "data": "real"}, {"name": "real-aug", "data": "real", "augment": "classic"}]


def cfg_file(tmp_path: Path, folder: Path, name: str, **sections: Any) -> Path:
    sections.setdefault("seeds", [0, 1])
    return write_yaml(tmp_path / f"{name}.yaml", tiny_config(tmp_path, folder, out_dir=str(tmp_path / name), **sections))


def table(run: Path) -> str:
    """table.md without its cost section, which is measured (seconds, memory), not computed: it differs run to run."""
    return (run / "compare" / "table.md").read_text().split("\n" + SECTION)[0]


def one_line_error(result: Any, *words: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("run: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------------------------------
# The graph and its states.


def test_graph_has_every_cell_once_with_its_inputs(tmp_path: Path, image_folder: Path) -> None:
    cfg = load_config(cfg_file(tmp_path, image_folder, "g"))
    cells = {c.id: c for c in build_graph(cfg)}
    assert list(cells)[:5] == ["split", "features/domain", "gan", "samples", "evaluate"]
    assert cells["gan"].deps == ("split",) and cells["samples"].deps == ("gan",)
    assert set(cells["evaluate"].deps) == {"samples", "features/domain"}
    assert cells["clf/real/seed-1"].deps == ("split",)  # real arms need no fakes: they can run beside the GAN
    assert cells["clf/synthetic/seed-0"].deps == ("split", "samples")
    assert len([c for c in cells.values() if c.kind == "train-clf"]) == 5 * 2


def test_dry_run_shows_done_to_run_resume_and_differs(tmp_path: Path, image_folder: Path) -> None:
    f = cfg_file(tmp_path, image_folder, "d", arms=REAL_ARMS)
    r = ok("run", "-c", str(f), "--dry-run", "--executor", "local")
    assert "5 cells (5 to run), executor local" in r.output and "train-clf  to run" in r.output
    assert not (tmp_path / "d").exists()
    ok("run", "-c", str(f))
    r = ok("run", "-c", str(f), "--dry-run")
    assert "5 cells (5 done)" in r.output and "to run" not in r.output.split("plan for")[1].split("  compare")[0]
    # An interrupted classifier: its partial folder holds a resumable checkpoint.
    run = tmp_path / "d" / "clf" / "real" / "seed-1"
    partial = run.with_name(run.name + ".partial")
    (partial / "resume").mkdir(parents=True)
    (partial / "resume" / "step-000000004.pt").write_bytes(b"x")
    import shutil

    shutil.rmtree(run)
    r = ok("run", "-c", str(f), "--dry-run")
    assert "resume (step 4)" in r.output
    shutil.rmtree(partial)
    r = ok("run", "-c", str(f), "--dry-run", "--set", "classifier.steps=5")
    assert "differs: needs --force" in r.output


# ----------------------------------------------------------------------------------------------------
# Executors: the same table as serial.


def _overlap(record: Dict[str, Any]) -> int:
    """The most torch threads the cells of a run.json held at one moment."""
    events = sorted([(c["submitted"], c["threads"]) for c in record["cells"]] +
                    [(c["finished"], -c["threads"]) for c in record["cells"]], key=lambda e: (e[0], e[1]))
    held = most = 0
    for _, d in events:
        held += d
        most = max(most, held)
    return most


def test_workers_on_another_cpu_train_in_the_precision_the_run_was_planned_in(tmp_path: Path, image_folder: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster's login node and its compute nodes can differ in bfloat16: the coordinator decides what amp: auto
    means for every cell, so the workers train and fingerprint what it planned, and a rerun finds every cell done.
    Here the coordinator pretends to be the other kind of CPU from the one its spawned workers find."""
    from ganaug import provenance, utils

    monkeypatch.delenv("GANAUG_CPU_BF16", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    workers_bf16 = utils.native_bf16()  # what this host's CPU answers, as the spawned workers will
    pretended = frozenset() if workers_bf16 else frozenset({"avx2", "fma", "avx512f", "avx512_bf16"})
    monkeypatch.setattr(provenance, "cpu_features", lambda: pretended)
    assert utils.native_bf16() != workers_bf16
    run = cfg_file(tmp_path, image_folder, "hetero", arms=[{"name": "real", "data": "real"}], seeds=[0],
                   executor={"name": "local", "workers": 1})
    ok("run", "-c", str(run))
    result = json.loads((tmp_path / "hetero" / "clf" / "real" / "seed-0" / "result.json").read_text())
    assert result["precision"] == ("float32" if workers_bf16 else "bfloat16")  # the coordinator's, not the worker's
    r = ok("run", "-c", str(run))
    assert "0 to run" in r.stderr, r.stderr


@pytest.mark.parametrize("bf16", ["0", "1"], ids=["float32", "bf16"])
def test_local_executor_gives_the_serial_table_with_the_defaults(tmp_path: Path, image_folder: Path, bf16: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """float32, and bfloat16 as amp: auto chooses on CPUs that have it (forced here on any CPU): one table."""
    from ganaug.executors.base import available_cores, default_threads

    monkeypatch.setenv("GANAUG_CPU_BF16", bf16)  # the spawned workers inherit it

    serial = cfg_file(tmp_path, image_folder, "serial")
    local = cfg_file(tmp_path, image_folder, "local")
    r = ok("run", "-c", str(serial))
    assert f"executor serial, {default_threads()} torch thread(s) per generator cell, 1 per classifier cell" in r.stderr
    r = ok("run", "-c", str(local), "--executor", "local", "--set", "executor.workers=2")
    assert table(tmp_path / "serial") == table(tmp_path / "local")
    assert f"local, 2 worker processes on {available_cores()} cores" in r.stderr
    record = json.loads((tmp_path / "local" / "logs" / "run.json").read_text())
    assert len(record["cells"]) == 15
    assert {c["threads"] for c in record["cells"] if c["kind"] == "train-clf"} == {1}
    assert all(c["cost"]["cpu_seconds"] > 0 and c["cost"]["peak_rss_of"] == "block" for c in record["cells"])  # workers'
    assert {c["threads"] for c in record["cells"] if c["kind"] != "train-clf"} == {default_threads()}
    assert _overlap(record) <= max(available_cores(), default_threads()), "the cores are never oversubscribed"
    results = [json.loads(f.read_text()) for f in (tmp_path / "local" / "clf").glob("*/seed-*/result.json")]
    assert {res["threads"] for res in results} == {1}
    assert {res["precision"] for res in results} == {"bfloat16" if bf16 == "1" else "float32"}  # recorded as chosen
    assert (tmp_path / "local" / "logs" / "clf__real__seed-0.log").read_text().startswith("# cell clf/real/seed-0")
    # Run again: every cell is done, nothing is submitted.
    r = ok("run", "-c", str(local), "--executor", "local", "--set", "executor.workers=2")
    assert "15 done, 0 to run" in r.stderr


def test_a_cells_threads_come_from_the_config_not_the_executor(tmp_path: Path, image_folder: Path) -> None:
    from ganaug.executors import get_executor
    from ganaug.executors.base import available_cores, default_threads

    for extra, gen, clf in (({}, default_threads(), 1), ({"threads": 3, "clf_threads": 2}, 3, 2)):
        for name in ("serial", "local"):
            cfg = load_config(cfg_file(tmp_path, image_folder, "t", executor={"name": name, **extra}))
            cells = build_graph(cfg)
            ex = get_executor(cfg)
            try:
                assert {ex.cell_threads(c) for c in cells if c.kind == "train-clf"} == {clf}
                assert {ex.cell_threads(c) for c in cells if c.kind != "train-clf"} == {gen}
                if name == "local":
                    assert ex.workers == max(1, available_cores() // clf) and ex.capacity == available_cores()
            finally:
                ex.close()


def test_a_stage_run_by_hand_has_the_threads_run_gives_it(tmp_path: Path, image_folder: Path) -> None:
    """`ganaug split / train-gan / sample / evaluate` by hand use executor.threads, as their cells under `run` do
    (torch's CPU kernels split their sums by thread, so a GAN trained on other threads can make other fakes). The
    records' threads catch a stage that ignores the key; the tiny GAN's fakes do not differ between 2 and 3 threads."""
    # threads: 3 is not this machine's core count, whatever the machine
    by_hand, graph = (cfg_file(tmp_path, image_folder, name, arms=[{"name": "synthetic", "data": "synthetic"}],
                               seeds=[0], executor={"threads": 3}) for name in ("hand", "graph"))
    for stage in ("split", "train-gan", "sample", "evaluate"):
        ok(stage, "-c", str(by_hand))
    for folder in ("split", "gan", "samples", "evaluate"):
        record = json.loads((tmp_path / "hand" / folder / "stage.json").read_text())
        assert record["environment"]["threads"]["intra_op"] == 3, folder
    ok("run", "-c", str(graph))
    for array in ("images.npy", "labels.npy"):  # the fakes and their labels (samples.pt also names its folder)
        assert (tmp_path / "hand" / "samples" / array).read_bytes() == (tmp_path / "graph" / "samples" / array).read_bytes()


def test_the_scheduler_keeps_the_running_cells_threads_within_the_capacity(tmp_path: Path, image_folder: Path) -> None:
    """Two cores: a generator cell of 2 threads runs alone; classifier cells of 1 thread run two at a time."""
    from ganaug.executors import run_graph

    class TwoCores(FakeExecutor):
        capacity = 2

        def __init__(self) -> None:
            super().__init__()
            self.running: List[str] = []
            self.most: List[List[str]] = []

        def cost(self, cell: Any) -> int:
            return 1 if cell.kind == "train-clf" else 2

        def submit(self, cells: List[Any], force: bool) -> List[str]:
            self.running += [c.id for c in cells]
            self.most.append(list(self.running))
            return super().submit(cells, force)

        def wait(self, handles: List[str]) -> List[Any]:
            self.running.remove(handles[0])
            return [(handles[0], {"ok": True, "seconds": 0.0})]

    cfg = load_config(cfg_file(tmp_path, image_folder, "cap"))
    ex = TwoCores()
    run_graph(cfg, build_graph(cfg), ex)
    assert sorted(ex.submitted) == sorted(c.id for c in build_graph(cfg))
    for held in ex.most:
        gen = [h for h in held if not h.startswith("clf/")]
        assert (len(gen) == 1 and len(held) == 1) or (not gen and len(held) <= 2), held
    assert max(len(h) for h in ex.most) == 2


@pytest.mark.cluster  # starts a local Ray / submitit's local cluster: make test-clusters
def test_ray_executor_gives_the_serial_table(tmp_path: Path, image_folder: Path) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    serial = cfg_file(tmp_path, image_folder, "serial", arms=REAL_ARMS)
    on_ray = cfg_file(tmp_path, image_folder, "on-ray", arms=REAL_ARMS)
    ok("run", "-c", str(serial))
    r = ok("run", "-c", str(on_ray), "--executor", "ray", "--set", "executor.workers=2")
    assert "a local Ray: 2 CPUs" in r.stderr
    assert table(tmp_path / "serial") == table(tmp_path / "on-ray")


@pytest.mark.cluster  # starts a local Ray / submitit's local cluster: make test-clusters
def test_slurm_through_submitit_local_cluster_gives_the_serial_table(tmp_path: Path, image_folder: Path) -> None:
    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    serial = cfg_file(tmp_path, image_folder, "serial", arms=REAL_ARMS[:1], executor={"threads": 1})
    jobs = cfg_file(tmp_path, image_folder, "jobs", arms=REAL_ARMS[:1],
                    executor={"name": "slurm", "slurm": {"cluster": "local", "time_min": 5}})
    ok("run", "-c", str(serial))
    ok("run", "-c", str(jobs))
    assert table(tmp_path / "serial") == table(tmp_path / "jobs")
    assert list((tmp_path / "jobs" / "logs" / "slurm").iterdir()), "submitit's job folders live under the run folder"


def _stand_in_slurm(bin_dir: Path, record: Path) -> None:
    """sbatch that keeps the script it was given and answers as Slurm does; scancel, sacct, srun that do nothing."""
    bin_dir.mkdir()
    scripts = {
        "sbatch": f'#!/bin/sh\ncp "$1" "{record}"\necho "Submitted batch job 4242"\n',
        "scancel": "#!/bin/sh\nexit 0\n",
        "sacct": "#!/bin/sh\nexit 0\n",
        "srun": "#!/bin/sh\nexit 0\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)


def test_slurm_sbatch_script_has_the_config_settings(tmp_path: Path, image_folder: Path, monkeypatch: Any) -> None:
    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    from ganaug.executors import get_executor

    record = tmp_path / "submitted.sh"
    _stand_in_slurm(tmp_path / "bin", record)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    cfg = load_config(cfg_file(tmp_path, image_folder, "sl", arms=REAL_ARMS, executor={
        "name": "slurm", "cpus": 2, "gpus": 1, "clf_gpus": 0.5,
        "slurm": {"cluster": "slurm", "partition": "gpu", "time_min": 30, "mem_gb": 16, "account": "lab",
                  "setup": ["module load cuda/12.4", "source ~/venv/bin/activate"], "array_parallelism": 8}}))
    ex = get_executor(cfg)
    clf = [c for c in build_graph(cfg) if c.kind == "train-clf"]
    jobs = ex.submit(clf, force=False)
    ex.cancel(jobs)
    text = record.read_text()
    if os.environ.get("GANAUG_SHOW_SBATCH"):
        print(text)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=30", "#SBATCH --gpus-per-node=1", "#SBATCH --mem=16GB",
                 "#SBATCH --cpus-per-task=2", "#SBATCH --account=lab", f"#SBATCH --array=0-{len(clf) - 1}%{min(8, len(clf))}",
                 "module load cuda/12.4", "source ~/venv/bin/activate", "submitit.core._submit"):
        assert line in text, (line, text)
    assert str((tmp_path / "sl" / "logs" / "slurm").resolve()) in text  # job files under the (shared) run folder


@pytest.mark.parametrize("name,extra", [("ray", "ray"), ("slurm", "slurm")])
def test_missing_extra_is_one_line_naming_it(tmp_path: Path, image_folder: Path, monkeypatch: Any, name: str,
                                             extra: str) -> None:
    module = {"ray": "ray", "slurm": "submitit"}[name]
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    f = cfg_file(tmp_path, image_folder, "x", arms=REAL_ARMS)
    one_line_error(invoke("run", "-c", str(f), "--executor", name), f"pip install 'ganaug[{extra}]'", f"'{name}'")
    assert not (tmp_path / "x").exists(), "nothing is written before the executor exists"


# ----------------------------------------------------------------------------------------------------
# Failures, reruns, Ctrl-C.


def test_a_failed_cell_is_reported_with_its_log_while_the_others_finish(tmp_path: Path, image_folder: Path) -> None:
    f = cfg_file(tmp_path, image_folder, "fail", arms=[REAL_ARMS[0], {"name": "synthetic", "data": "synthetic"}])
    for stage in ("split", "train-gan", "sample"):
        ok(stage, "-c", str(f))
    samples = tmp_path / "fail" / "samples" / "samples.pt"
    good = samples.read_bytes()
    samples.write_bytes(good[:-8] + b"tampered")  # the fakes no longer match their stage record
    r = invoke("run", "-c", str(f), "--executor", "local", "--set", "executor.workers=2")
    # the evaluation ranks above the classifier runs (its chain is longer), so it starts, and fails, first
    line = one_line_error(r, "3 cell(s) failed", "(first: evaluate", "log", "rerun the same command")
    log = Path(line.split("; log ")[1].split(")")[0])
    assert "Traceback" in log.read_text() and "samples" in log.read_text()
    assert all((tmp_path / "fail" / "clf" / "real" / f"seed-{s}" / "result.json").is_file() for s in (0, 1))
    assert not (tmp_path / "fail" / "clf" / "synthetic" / "seed-0").exists()
    samples.write_bytes(good)
    r = ok("run", "-c", str(f), "--executor", "local", "--set", "executor.workers=2")
    assert "6 done, 3 to run" in r.stderr  # only what failed: the evaluation and the two synthetic runs
    assert (tmp_path / "fail" / "compare" / "table.md").is_file()


class FakeExecutor:
    """Records what the scheduler submits and cancels; its wait() raises KeyboardInterrupt on the second call."""

    name = "fake"
    capacity = None

    def threads_line(self) -> str:
        return "1 torch thread"

    def cost(self, cell: Any) -> int:
        return 0

    def __init__(self) -> None:
        self.submitted: List[str] = []
        self.cancelled: List[str] = []
        self.waits = 0

    def describe(self) -> str:
        return "fake"

    def submit(self, cells: List[Any], force: bool) -> List[str]:
        self.submitted += [c.id for c in cells]
        return [c.id for c in cells]

    def wait(self, handles: List[str]) -> List[Any]:
        self.waits += 1
        if self.waits == 2:
            raise KeyboardInterrupt
        return [(handles[0], {"ok": True, "seconds": 0.0})]

    def cancel(self, handles: List[str]) -> None:
        self.cancelled += handles

    def close(self) -> None:
        pass


def test_ctrl_c_cancels_what_is_running_and_submits_nothing_more(tmp_path: Path, image_folder: Path) -> None:
    from ganaug.executors import run_graph

    cfg = load_config(cfg_file(tmp_path, image_folder, "c"))
    ex = FakeExecutor()
    with pytest.raises(KeyboardInterrupt):
        run_graph(cfg, build_graph(cfg), ex)
    assert ex.submitted[0] == "split" and ex.waits == 2
    # After the split: features, the GAN and the real arms' classifiers were running; all of them are cancelled,
    # and nothing that waited on them (samples, the synthetic arms) was ever submitted.
    assert set(ex.cancelled) == set(ex.submitted) - {"split"}
    assert "samples" not in ex.submitted and not any(s.startswith("clf/synthetic") for s in ex.submitted)


def test_a_failure_skips_only_what_depends_on_it(tmp_path: Path, image_folder: Path) -> None:
    from ganaug.errors import StageError
    from ganaug.executors import run_graph

    class FailsGan(FakeExecutor):
        def wait(self, handles: List[str]) -> List[Any]:
            return [(h, {"ok": h != "gan", "error": "boom", "log": "x.log", "seconds": 0.0}) for h in handles]

    cfg = load_config(cfg_file(tmp_path, image_folder, "s"))
    ex = FailsGan()
    with pytest.raises(StageError, match=r"1 cell\(s\) failed \(first: gan: boom; log x.log\), 8 cell\(s\)"):
        run_graph(cfg, build_graph(cfg), ex)
    assert {s for s in ex.submitted if s.startswith("clf/real")} == {"clf/real/seed-0", "clf/real/seed-1",
                                                                      "clf/real-aug/seed-0", "clf/real-aug/seed-1"}
    assert "samples" not in ex.submitted


# ----------------------------------------------------------------------------------------------------
# Per-cell locks.


def _hold(folder: str, ready: Any, seconds: float) -> None:
    from ganaug.stages.locks import cell_lock

    with cell_lock(Path(folder)):
        ready.set()
        time.sleep(seconds)


def test_cell_lock_waits_for_its_holder_and_is_free_when_the_holder_dies(tmp_path: Path) -> None:
    from ganaug.stages.locks import cell_lock

    folder = tmp_path / "clf" / "real" / "seed-0"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(folder), ready, 60.0))
    holder.start()
    assert ready.wait(60)
    got = threading.Event()

    def take() -> None:
        with cell_lock(folder):
            got.set()

    t = threading.Thread(target=take, daemon=True)
    t.start()
    time.sleep(1.0)
    assert not got.is_set(), "a second writer of the cell must wait"
    holder.kill()  # a dead worker: the kernel frees its flock
    holder.join()
    t.join(30)
    assert got.is_set()
    assert not (tmp_path / "clf" / "real" / "seed-0.lock").exists()


# ----------------------------------------------------------------------------------------------------
# Sweeps over the split and the generator.


def test_data_size_sweep_has_its_own_splits_and_one_test_set(tmp_path: Path, image_folder: Path) -> None:
    f = cfg_file(tmp_path, image_folder, "lc", arms=[REAL_ARMS[0], {"name": "mixed-0.5", "data": "mixed",
                                                                   "mix": {"p_real": 0.5}}],
                 evaluate={"enabled": False}, seeds=[0, 1, 2],
                 sweep={"key": "split.n_per_class", "values": [2, 4], "inner": {"key": "mix.p_real", "values": [0.25]}})
    r = ok("run", "-c", str(f))
    root = tmp_path / "lc"
    manifests = {n: json.loads((root / "sweep" / f"split.n_per_class={n}" / "split" / "manifest.json").read_text())
                 for n in (2, 4)}

    def idx(m: Dict[str, Any], part: str) -> List[int]:
        return sorted(m["indices"][part]) if "indices" in m else sorted(m[part]["indices"])

    assert idx(manifests[2], "test") == idx(manifests[4], "test"), "every size is tested on the same images"
    assert idx(manifests[2], "val") == idx(manifests[4], "val")
    assert set(idx(manifests[2], "train")) < set(idx(manifests[4], "train"))  # nested training parts
    assert len(idx(manifests[4], "train")) == 4 * 3
    for n in (2, 4):
        assert (root / "sweep" / f"split.n_per_class={n}" / "gan" / "checkpoint.pt").is_file()  # own generator
    summary = json.loads((root / "compare" / "table.json").read_text())
    assert set(summary["series"]) == {"real", "mixed-0.5", "p_real-0.25"}  # one curve per inner value too
    assert [p["x"] for p in summary["series"]["p_real-0.25"]] == [2, 4]
    assert "split.n_per_class" in r.output and (root / "compare" / "sweep.png").is_file()


def test_generator_key_sweep_trains_one_generator_per_value(tmp_path: Path, image_folder: Path) -> None:
    f = cfg_file(tmp_path, image_folder, "ge", arms=[REAL_ARMS[0], {"name": "synthetic", "data": "synthetic"}],
                 evaluate={"enabled": False}, seeds=[0], sweep={"key": "gan.epochs", "values": [1, 2]})
    cells = [c for c in build_graph(load_config(f)) if c.kind == "train-gan"]
    assert [c.id for c in cells] == ["sweep/gan.epochs=1/gan", "sweep/gan.epochs=2/gan"]
    assert cells[0].fingerprint != cells[1].fingerprint


@pytest.mark.parametrize("sweep,words", [
    ({"key": "gan.epochs", "values": [1, 2]}, ["'sweep.key'", "generators:"]),
    ({"key": "mix.p_real", "values": [0.5], "inner": {"key": "mix.add", "values": [1]}}, ["'sweep.inner'", "experiment key"]),
    ({"key": "split.n_per_class", "values": [2], "inner": {"key": "classifier.steps", "values": [1]}}, ["'sweep.inner.key'"]),
    ({"key": "split.fraction", "values": [0.5, 1.5]}, ["'sweep.values'", "1 or less"]),
    ({"key": "split.n_per_class", "values": [2, 2.5]}, ["'sweep.values'", "whole numbers"]),
])
def test_sweep_errors_name_their_key(tmp_path: Path, image_folder: Path, sweep: Dict[str, Any], words: List[str]) -> None:
    extra: Dict[str, Any] = {"sweep": sweep}
    if sweep["key"] == "gan.epochs":
        extra["generators"] = {"a": {"name": "cgan", "epochs": 1}}
        extra["arms"] = [REAL_ARMS[0], {"name": "s", "data": "synthetic", "generator": "a"}]
    data = tiny_config(tmp_path, image_folder, out_dir=str(tmp_path / "e"), **extra)
    if "generators" in extra:
        data.pop("gan")
    f = write_yaml(tmp_path / "e.yaml", data)
    r = invoke("run", "-c", str(f), "--dry-run")
    assert r.exit_code == 2, r.output
    line = [x for x in r.stderr.splitlines() if x.strip()][0]
    for w in words:
        assert w in line, (w, line)


def test_executor_errors_name_their_key(tmp_path: Path, image_folder: Path) -> None:
    for bad, words in ((["executor.workers=0"], ["'executor.workers'"]), (["executor.name=dask"], ["'executor.name'", "serial"]),
                       (["executor.address=auto"], ["'executor.address'", "ray"]),
                       (['executor.slurm.setup=["a\\nb"]'], ["'executor.slurm.setup[0]'"])):
        f = cfg_file(tmp_path, image_folder, "x")
        args = ["run", "-c", str(f), "--dry-run"] + [a for s in bad for a in ("--set", s)]
        one_line_error(invoke(*args), *words)



def test_the_config_names_every_registered_executor() -> None:
    from ganaug.config import EXECUTORS as NAMES
    from ganaug.executors import EXECUTORS

    assert sorted(NAMES) == EXECUTORS.names()


def test_test_after_errors_name_their_key(tmp_path: Path, image_folder: Path) -> None:
    f = cfg_file(tmp_path, image_folder, "ta")
    one_line_error(invoke("split", "-c", str(f), "--set", "split.test_after=2"), "'split.test_after'",
                   "at least split.n_per_class (4)")
    one_line_error(invoke("split", "-c", str(f), "--set", "split.test_after=6", "--set", "split.n_per_class=null",
                          "--set", "split.fraction=0.5"), "'split.test_after'", "not to first_per_class or fraction")
    one_line_error(invoke("run", "-c", str(f), "--dry-run", "--set", "split.test_after=6", "--set", "sweep.key=split.n_per_class",
                          "--set", "sweep.values=[2,4]"), "'split.test_after'", "leave it out")
