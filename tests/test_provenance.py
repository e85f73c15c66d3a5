"""Runs that say where they ran (every record's `environment`), compare's note on mixed machines, and
`reproducible: strict` (the CPU math pinned to AVX2 before torch loads, in the process that runs the stage)."""

from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

from ganaug import __version__
from ganaug.config import load_config
from ganaug.provenance import STRICT_PINS, environment, machines_note

from .conftest import invoke, make_folder, ok, tiny_config, write_yaml

REPO = Path(__file__).resolve().parents[1]
PIN_VARS = (*STRICT_PINS, "GANAUG_REPRODUCIBLE", "DNNL_MAX_CPU_ISA", "CUBLAS_WORKSPACE_CONFIG")


def _has_avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _real_only(tmp_path: Path, **sections: Any) -> Path:
    folder = make_folder(tmp_path / "images")
    return write_yaml(tmp_path / "tiny.yaml", tiny_config(tmp_path, folder, **{"arms": [{"name": "real", "data": "real"}],
                                                                               "seeds": [0, 1], **sections}))


def _record(folder: Path) -> Dict[str, Any]:
    return json.loads((folder / "stage.json").read_text())


def _clean_env() -> Dict[str, str]:
    """This process's environment without any pin, as a fresh shell would have it."""
    return {k: v for k, v in os.environ.items() if k not in PIN_VARS}


# ----------------------------------------------------------------------------------------------------
# Every record says where it ran.


def test_a_stage_record_and_a_classifier_run_record_say_where_they_ran(tmp_path: Path) -> None:
    cfg = _real_only(tmp_path)
    ok("split", "-c", str(cfg), "-q")
    ok("train-clf", "-c", str(cfg), "--arm", "real", "--seed", "0", "-q")
    run = tmp_path / "run"
    for folder in (run / "split", run / "clf" / "real" / "seed-0"):
        env = _record(folder)["environment"]
        assert env["torch"] == torch.__version__ and env["python"] == platform.python_version()
        assert env["ganaug"] == __version__ and env["host"] == socket.gethostname()
        assert env["numpy"] and env["torchvision"]
        assert env["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability()
        assert env["cpu"]["model"] and env["cpu"]["cores"] == os.cpu_count()
        assert env["cpu"]["mkl"] == torch.backends.mkl.is_available()
        assert env["cpu"]["onednn"] == torch.backends.mkldnn.is_available()
        assert env["threads"]["inter_op"] >= 1
        assert env["reproducible"] == ("strict" if os.environ.get("GANAUG_REPRODUCIBLE") == "strict" else "default")
        assert (env["gpu"] is None) == (not torch.cuda.is_available())
        assert set(env["git"]) == {"commit", "dirty"}
    # The classifier run's threads are the config's (executor.clf_threads: 1), where the numbers were made.
    assert _record(run / "clf" / "real" / "seed-0")["environment"]["threads"]["intra_op"] == 1


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_the_record_names_the_checkout_s_commit() -> None:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    git = environment()["git"]
    assert git["commit"] == head and isinstance(git["dirty"], bool)


def test_git_is_asked_once_per_process_and_its_absence_is_null(monkeypatch: pytest.MonkeyPatch) -> None:
    from ganaug import provenance

    environment()  # cached from here on: no further subprocess

    def no_subprocess(*a: Any, **k: Any) -> Any:
        raise AssertionError("environment() ran a subprocess after its first call")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    for _ in range(3):
        environment()
    # Without git on the PATH the commit is null, never an error.
    monkeypatch.undo()
    provenance.clear_cache()
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent / "no-such-folder"))
    try:
        assert environment()["git"] == {"commit": None, "dirty": None}
    finally:
        monkeypatch.undo()
        provenance.clear_cache()


def test_a_run_folder_from_before_still_plans_as_done(tmp_path: Path) -> None:
    from ganaug.stages import plan

    cfg = _real_only(tmp_path, seeds=[0])
    ok("split", "-c", str(cfg), "-q")
    ok("train-clf", "-c", str(cfg), "--arm", "real", "--seed", "0", "-q")
    run = tmp_path / "run"
    folders = (run / "split", run / "clf" / "real" / "seed-0")
    # An older ganaug wrote no environment; another machine wrote another one: neither makes a stage look changed.
    for edit in (lambda env: None, lambda env: {**env, "host": "elsewhere", "torch": "1.0",
                                                "cpu": {**env["cpu"], "capability": "DEFAULT"}}):
        for folder in folders:
            rec = _record(folder)
            rec["environment"] = edit(rec.get("environment") or environment())
            if rec["environment"] is None:
                del rec["environment"]
            (folder / "stage.json").write_text(json.dumps(rec))
        before = [(f / "stage.json").read_text() for f in folders]
        assert "(2 done)" in plan(load_config(cfg))[0]
        r = ok("train-clf", "-c", str(cfg), "--arm", "real", "--seed", "0")
        assert "up to date" in r.stderr
        assert [(f / "stage.json").read_text() for f in folders] == before


# ----------------------------------------------------------------------------------------------------
# compare: one table's runs from different machines.


def _env(**changes: Any) -> Dict[str, Any]:
    env = copy.deepcopy(environment())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            env[section][field] = value
        else:
            env[section] = value
    return env


def test_machines_note_names_the_hosts_and_instruction_sets_that_differ() -> None:
    a = _env(host="node-a", cpu__model="Intel(R) Xeon(R) Platinum 8480+", cpu__capability="AVX512")
    b = _env(host="node-b", cpu__model="AMD EPYC 7763 64-Core Processor", cpu__capability="AVX2")
    records: List[Any] = [{"environment": a}] * 30 + [{"environment": b}] * 5
    note = machines_note(records)
    assert note is not None
    assert "2 machines" in note and "30 runs on node-a" in note and "5 on node-b" in note
    assert "AVX512" in note and "AVX2" in note and "Intel Xeon Platinum 8480+" in note and "AMD EPYC 7763" in note
    assert "instruction sets" in note
    # Only the fields that differ are named.
    assert "torch" not in note.split(";")[0] and "thread" not in note.split(";")[0]


def test_machines_note_is_silent_on_one_machine_and_on_records_without_the_field() -> None:
    env = environment()
    assert machines_note([{"environment": env}] * 5) is None
    assert machines_note([{"stage": "classifier"}] * 5) is None
    assert machines_note([None, {"environment": env}, {}]) is None
    assert machines_note([]) is None


def test_machines_note_names_thread_counts_on_one_host() -> None:
    note = machines_note([{"environment": _env(threads__intra_op=1)}] * 3 + [{"environment": _env(threads__intra_op=2)}] * 2)
    assert note is not None and "1 thread" in note and "2 threads" in note and "thread counts" in note
    assert socket.gethostname() not in note  # the host is the same: not named


def test_a_record_without_the_field_is_counted_apart() -> None:
    note = machines_note([{"environment": _env(host="node-a")}, {"environment": _env(host="node-b")}, {}])
    assert note is not None and "1 more run does not record where it ran" in note


# ----------------------------------------------------------------------------------------------------
# reproducible: strict.


def test_reproducible_defaults_to_default_and_an_invalid_value_is_one_line(tmp_path: Path) -> None:
    cfg = _real_only(tmp_path)
    assert load_config(cfg).reproducible == "default"
    assert load_config(cfg, ["reproducible=strict"]).reproducible == "strict"
    r = invoke("split", "-c", str(cfg), "--set", "reproducible=strcit")
    assert r.exit_code == 2
    line = r.stderr.strip()
    assert "\n" not in line and "'reproducible'" in line and "'default'" in line and "'strict'" in line
    # From the command line too: the early peek leaves a bad value (or a broken file) to the loader's own error.
    data = tiny_config(tmp_path, tmp_path / "images", reproducible="always")
    for path, text in ((tmp_path / "bad.yaml", None), (tmp_path / "broken.yaml", "reproducible: [strict\n")):
        if text is None:
            write_yaml(path, data)
        else:
            path.write_text(text)
        p = subprocess.run([sys.executable, "-m", "ganaug", "split", "-c", str(path)], capture_output=True, text=True,
                           env=_clean_env(), cwd=tmp_path, timeout=120)
        assert p.returncode == 2, p.stderr
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: "), p.stderr
    assert "'reproducible'" in subprocess.run([sys.executable, "-m", "ganaug", "split", "-c", str(tmp_path / "bad.yaml")],
                                              capture_output=True, text=True, env=_clean_env(), cwd=tmp_path).stderr


def _configs() -> List[Path]:
    return sorted((REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", _configs(), ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_strict_changes_no_fingerprint(path: Path) -> None:
    from ganaug.stages.records import EVALUATE, FEATURES, GAN, SAMPLES, SPLIT, clf_fingerprint, stage_fingerprint

    default, strict = load_config(path), load_config(path, ["reproducible=strict"])
    assert strict.reproducible == "strict"

    def prints(cfg: Any) -> Dict[str, str]:
        out = {s.name: stage_fingerprint(cfg, s) for s in (SPLIT, FEATURES)}
        for rep in cfg.replicates:
            out |= {f"{s.name}/{rep}": stage_fingerprint(cfg, s, rep) for s in (GAN, SAMPLES, EVALUATE)}
        return out | {f"clf/{a.name}/{s}": clf_fingerprint(cfg, a, s) for a in cfg.all_arms for s in cfg.seeds}

    assert prints(strict) == prints(default)
    from .test_trust import BUNDLED_FINGERPRINTS

    key = f"configs/{path.relative_to(REPO / 'configs')}"
    if key in BUNDLED_FINGERPRINTS:
        assert {a.name: clf_fingerprint(strict, a, 0) for a in strict.all_arms} == BUNDLED_FINGERPRINTS[key]["clf"]


def _ganaug(*args: str, cwd: Path, prefix: tuple = ("-m", "ganaug")) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, *prefix, *args], capture_output=True, text=True, env=_clean_env(), cwd=cwd,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return p


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="strict pins x86 CPUs to AVX2")
def test_strict_pins_the_cpu_math_in_the_process_that_runs_the_stage(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "images")
    data = tiny_config(tmp_path, folder, arms=[{"name": "real", "data": "real"}], seeds=[0, 1])
    default = write_yaml(tmp_path / "default.yaml", data)
    strict = write_yaml(tmp_path / "strict.yaml", {**data, "reproducible": "strict"})
    ok("split", "-c", str(default), "-q")
    ok("train-clf", "-c", str(default), "--arm", "real", "--seed", "0", "-q")  # here, unpinned
    # `python -m ganaug`: strict is read from the YAML before torch loads.
    _ganaug("train-clf", "-c", str(strict), "--arm", "real", "--seed", "1", "-q", cwd=tmp_path)
    run = tmp_path / "run"
    env = _record(run / "clf" / "real" / "seed-1")["environment"]
    assert env["reproducible"] == "strict"
    assert {k: env["env"].get(k) for k in STRICT_PINS} == STRICT_PINS
    assert env["cpu"]["capability"] == "AVX2"
    assert env["deterministic"] == torch.cuda.is_available()  # deterministic algorithms where they apply: CUDA
    # torch already loaded when the CLI starts (as a program that imports it first would have it): it re-executes
    # itself with the pins set; --set says strict this time.
    shutil.rmtree(run / "clf" / "real" / "seed-1")
    _ganaug("train-clf", "-c", str(default), "--set", "reproducible=strict", "--arm", "real", "--seed", "1", "-q",
            cwd=tmp_path, prefix=("-c", "import torch; from ganaug.cli import main; main()"))
    env = _record(run / "clf" / "real" / "seed-1")["environment"]
    assert env["reproducible"] == "strict" and env["cpu"]["capability"] == "AVX2"
    # The same table holds both runs (strict changes no fingerprint); on an AVX-512 CPU compare says they differ.
    ok("compare", "-c", str(default))
    if _has_avx512():
        assert _record(run / "clf" / "real" / "seed-0")["environment"]["cpu"]["capability"] != "AVX2"
        note = next(ln for ln in (run / "compare" / "table.md").read_text().splitlines() if ln.startswith("These runs"))
        assert "2 setups on one machine" in note and "(AVX2, strict)" in note and "instruction sets" in note
