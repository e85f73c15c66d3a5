"""Long runs survive interruption: SIGKILL / Ctrl-C at a random step, then resume, ends bit-identical."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

from ganaug.checkpoint import Checkpointer
from ganaug.stages.locks import run_lock
from ganaug.utils import read_jsonl

from .conftest import invoke, make_folder, ok, tiny_config, write_yaml

STEP_FILE = re.compile(r"^step-(\d{9})\.pt$")
VOLATILE = {"seconds", "img_per_s", "train_seconds"}  # wall-clock figures, the only things allowed to differ


def kill_step(low: int, high: int) -> int:
    """A random step to interrupt at, from a seeded generator: GANAUG_KILL_SEED=S replays a failure (the seed is printed)."""
    seed = int(os.environ.get("GANAUG_KILL_SEED") or random.SystemRandom().randrange(2**31))
    step = random.Random(seed).randint(low, high)
    print(f"kill step {step} of [{low}, {high}] from GANAUG_KILL_SEED={seed}", file=sys.stderr)
    return step


def make_config(tmp_path: Path, **sections: Any) -> Path:
    """80 GAN steps with ADA, x-flips and checkpoints every 3 steps; 120 classifier steps."""
    folder = make_folder(tmp_path / "images")
    cfg = tiny_config(tmp_path, folder, **{
        "gan": {"epochs": 40, "augment": "ada", "ada_kimg": 1, "ada_interval": 1, "mirror": True, "grid_every": 5},
        "classifier": {"steps": 120, "eval_every": 10},
        "checkpoint": {"every_steps": 3, "keep": 2},
        **sections,
    })
    return write_yaml(tmp_path / "tiny.yaml", cfg)


def resume_steps(folder: Path) -> List[int]:
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for f in folder.iterdir() if (m := STEP_FILE.match(f.name)))


def same(a: Any, b: Any, path: str = "") -> List[str]:
    """Where two checkpoints (or JSON trees) differ, ignoring out_dir and wall-clock figures."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return [] if a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        out = [] if set(a) == set(b) else [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        for k in set(a) & set(b):
            if k not in VOLATILE and k != "out_dir":
                out += same(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in same(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {str(a)[:60]} != {str(b)[:60]}"]


def same_metrics(a: Path, b: Path) -> List[str]:
    ra, rb = read_jsonl(a), read_jsonl(b)
    return same([{k: v for k, v in r.items() if k not in VOLATILE} for r in ra],
                [{k: v for k, v in r.items() if k not in VOLATILE} for r in rb], a.name)


def same_gan_run(run: Path, ref: Path) -> None:
    ckpt = torch.load(run / "gan" / "checkpoint.pt", weights_only=True)
    want = torch.load(ref / "gan" / "checkpoint.pt", weights_only=True)
    assert same(ckpt, want) == []
    assert same_metrics(run / "gan" / "metrics.jsonl", ref / "gan" / "metrics.jsonl") == []
    grids = sorted(p.name for p in (ref / "gan" / "grids").iterdir())
    assert sorted(p.name for p in (run / "gan" / "grids").iterdir()) == grids
    for name in grids:
        assert (run / "gan" / "grids" / name).read_bytes() == (ref / "gan" / "grids" / name).read_bytes(), name
    assert not (run / "gan" / "resume").exists() and not (run / "gan.partial").exists()


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ganaug.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def signal_after(proc: subprocess.Popen, resume_dir: Path, target: int, sig: int, timeout: float = 120) -> int:
    """Send `sig` once a checkpoint at step >= target exists; returns the newest checkpoint's step then."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        steps = resume_steps(resume_dir)
        if steps and steps[-1] >= target:
            proc.send_signal(sig)
            return steps[-1]
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before step {target}: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.002)
    proc.kill()
    raise AssertionError(f"no checkpoint at step {target} within {timeout}s")


# ----------------------------------------------------------------------------------------------------
# Killed in a subprocess at a random step, then resumed: the same final weights, bit for bit.


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_gan_stopped_at_a_random_step_resumes_bit_identical(tmp_path: Path, sig: int) -> None:
    cfg = make_config(tmp_path)
    run, ref = tmp_path / "run", tmp_path / "ref"
    c = ("--config", str(cfg))
    ok("split", *c)
    ok("split", *c, "--set", f"out_dir={ref}")
    ok("train-gan", *c, "--set", f"out_dir={ref}")  # never interrupted

    target = kill_step(3, 70)  # of 80 steps
    proc = spawn("train-gan", *c)
    at = signal_after(proc, run / "gan.partial" / "resume", target, sig)
    _, err = proc.communicate(timeout=120)
    seen = resume_steps(run / "gan.partial" / "resume")
    assert not (run / "gan").exists() and seen, f"target {target}: {err}"
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # Ctrl-C: the step finishes, a checkpoint is saved, the command to continue is printed
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        m = re.search(r"interrupted: stopped by SIGINT after step (\d+) of 80; saved .*step-(\d+)\.pt; "
                      r"continue with: ganaug train-gan --config \S+ --resume$", err.strip().splitlines()[-1])
        assert m, err
        assert int(m.group(1)) == int(m.group(2)) == seen[-1] >= at
    assert len(seen) <= (3 if sig == signal.SIGKILL else 2)  # keep: 2 (a kill between a save and a deletion: 3)

    r = invoke("train-gan", *c)  # interrupted work is not discarded silently
    assert r.exit_code == 2 and "add --resume" in r.stderr
    r = ok("train-gan", *c, "--resume")
    assert f"resuming from {run / 'gan.partial' / 'resume' / f'step-{seen[-1]:09d}.pt'}" in r.stderr
    same_gan_run(run, ref)
    assert json.loads((run / "gan" / "stage.json").read_text())["resumed_from_step"] == seen[-1]


@pytest.mark.parametrize("gan", [
    {"name": "vae", "epochs": 40, "batch_size": 8, "z_dim": 4, "width": 4, "mirror": True, "beta_warmup_kimg": 0.3,
     "free_bits": 0.1, "grid_every": 5},
    {"name": "diffusion", "preset": "tiny", "timesteps": 50, "epochs": 40, "batch_size": 8, "mirror": True,
     "grid_every": 5},
], ids=["vae", "diffusion"])
def test_vae_and_diffusion_killed_at_a_random_step_resume_bit_identical(tmp_path: Path, gan: Dict[str, Any]) -> None:
    cfg = make_config(tmp_path)
    data = __import__("yaml").safe_load(cfg.read_text())
    data["gan"] = gan
    write_yaml(cfg, data)
    run, ref = tmp_path / "run", tmp_path / "ref"
    c = ("--config", str(cfg))
    ok("split", *c)
    ok("split", *c, "--set", f"out_dir={ref}")
    ok("train-gan", *c, "--set", f"out_dir={ref}")  # never interrupted

    target = kill_step(3, 70)  # of 80 steps
    proc = spawn("train-gan", *c)
    signal_after(proc, run / "gan.partial" / "resume", target, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL and resume_steps(run / "gan.partial" / "resume"), f"target {target}: {err}"
    ok("train-gan", *c, "--resume")
    same_gan_run(run, ref)


def test_classifier_killed_at_a_random_step_resumes_bit_identical(tmp_path: Path) -> None:
    # A mixed arm with classic augmentation: batch order, per-sample replacement and augmentation all draw
    # from the run's generator, which must continue where it was.
    cfg = make_config(tmp_path, gan={"epochs": 2, "grid_every": 1})
    run, ref = tmp_path / "run", tmp_path / "ref"
    c = ("--config", str(cfg))
    for out in (run, ref):
        for stage in ("split", "train-gan", "sample"):
            ok(stage, *c, "--set", f"out_dir={out}")
    arm = ("--mix", "p_real=0.5", "--augment", "classic")
    ok("train-clf", *c, *arm, "--set", f"out_dir={ref}")

    target = kill_step(3, 110)  # of 120 steps
    proc = spawn("train-clf", *c, *arm)
    folder = run / "clf" / "mixed-p0.5-aug" / "seed-0"
    at = signal_after(proc, folder.with_name("seed-0.partial") / "resume", target, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not folder.exists(), f"target {target}, at {at}"

    r = ok("train-clf", *c, *arm, "--resume")
    assert "resuming from" in r.stderr
    refdir = ref / "clf" / "mixed-p0.5-aug" / "seed-0"
    assert same(torch.load(folder / "best.pt", weights_only=True), torch.load(refdir / "best.pt", weights_only=True)) == []
    assert same(json.loads((folder / "result.json").read_text()), json.loads((refdir / "result.json").read_text())) == []
    assert same_metrics(folder / "metrics.jsonl", refdir / "metrics.jsonl") == []


# ----------------------------------------------------------------------------------------------------
# Every GAN family resumes exactly (a stop requested in-process at a given step, as Ctrl-C does).


@pytest.fixture
def stop_at(monkeypatch: pytest.MonkeyPatch):
    """stop_at(k): after the k-th training step from now (any loop, any pair), behave as if Ctrl-C had been pressed."""
    state = {"left": None}
    orig = Checkpointer.after_step

    def after_step(self: Checkpointer, step: int, total: int, make_state: Any, last: Any = None) -> None:
        if state["left"] is not None and self.stop is not None:
            state["left"] -= 1
            if state["left"] == 0:
                state["left"] = None
                self.stop.signal = "SIGINT"
        return orig(self, step, total, make_state, last)

    monkeypatch.setattr(Checkpointer, "after_step", after_step)
    return lambda k: state.update(left=k)


@pytest.mark.parametrize("gan, stop", [
    ({"name": "dcgan", "per_class": True, "epochs": 3, "augment": None, "ada_kimg": None, "ada_interval": None,
      "mirror": False}, 5),  # 3 steps per class: inside the second class's pair, the first one's state kept
    ({"name": "stylegan2", "preset": "tiny", "epochs": 3, "z_dim": None, "width": None, "augment": "ada",
      "ada_kimg": 1, "ada_interval": 1, "r1_interval": 2}, 4),  # lazy R1, style mixing, ADA
    ({"name": "cgan", "epochs": 3, "augment": "diffaugment", "ada_kimg": None, "ada_interval": None}, 3),
    ({"name": "cgan", "epochs": 4, "eval_every": 1, "select": "best-fid", "augment": None, "ada_kimg": None,
      "ada_interval": None}, 5),  # validation FID each epoch, the best snapshot kept: stopped after its second
    ({"name": "vae", "epochs": 4, "z_dim": 4, "width": 4, "eval_every": 1, "select": "best-fid", "augment": None,
      "ada_kimg": None, "ada_interval": None, "beta_warmup_kimg": 0.05}, 5),  # KL warm-up, best-FID selection
    ({"name": "diffusion", "preset": "tiny", "timesteps": 50, "epochs": 3, "z_dim": None, "width": None,
      "augment": None, "ada_kimg": None, "ada_interval": None, "prediction": "v"}, 3),
])
def test_every_family_resumes_exactly(tmp_path: Path, stop_at: Any, gan: Dict[str, Any], stop: int) -> None:
    cfg = make_config(tmp_path, gan={k: v for k, v in gan.items() if v is not None},
                      checkpoint={"every_steps": 100, "keep": 2})
    data = __import__("yaml").safe_load(cfg.read_text())
    for k, v in gan.items():
        if v is None:
            data["gan"].pop(k, None)
    data["evaluate"] = {"domain": {"steps": 20, "width": 4}}
    write_yaml(cfg, data)
    run, ref = tmp_path / "run", tmp_path / "ref"
    c = ("--config", str(cfg))
    for out in (run, ref):
        ok("split", *c, "--set", f"out_dir={out}")
    ok("train-gan", *c, "--set", f"out_dir={ref}")
    stop_at(stop)
    r = invoke("train-gan", *c)
    assert r.exit_code == 130 and "continue with: ganaug train-gan --config" in r.stderr, r.output
    ok("train-gan", *c, "--resume")
    same_gan_run(run, ref)


# ----------------------------------------------------------------------------------------------------
# `ganaug run` continues by itself; a checkpoint of another config is refused.


def test_run_continues_interrupted_stages_by_itself(tmp_path: Path, stop_at: Any) -> None:
    cfg = make_config(tmp_path, gan={"epochs": 3}, classifier={"steps": 30, "eval_every": 10},
                      arms=[{"name": "real", "data": "real"}, {"name": "mixed-0.5", "data": "mixed", "mix": {"p_real": 0.5}}],
                      seeds=[0, 1])
    c = ("--config", str(cfg))
    want = ok("run", *c, "--set", f"out_dir={tmp_path / 'ref'}").stdout
    stop_at(5)  # in the GAN
    r = invoke("run", *c)
    assert r.exit_code == 130 and r.stderr.strip().endswith(f"continue with: ganaug run --config {cfg}"), r.stderr
    assert "resume (step 5)" in ok("run", *c, "--dry-run").output
    stop_at(17)  # in the first classifier run
    assert invoke("run", *c).exit_code == 130
    got = ok("run", *c)
    assert "resuming from" in got.stderr
    # The same table, number for number (the last line names each run's own table.md).
    assert got.stdout == want.replace(str(tmp_path / "ref"), str(tmp_path / "run"))
    same_gan_run(tmp_path / "run", tmp_path / "ref")


def test_a_checkpoint_of_another_config_is_refused(tmp_path: Path, stop_at: Any) -> None:
    cfg = make_config(tmp_path)
    c = ("--config", str(cfg))
    ok("split", *c)
    stop_at(7)
    assert invoke("train-gan", *c).exit_code == 130
    partial = tmp_path / "run" / "gan.partial"
    before = {p: p.read_bytes() for p in partial.rglob("*") if p.is_file()}
    r = invoke("train-gan", *c, "--resume", "--set", "gan.lr=0.001")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert re.fullmatch(r"error: checkpoint '\S+step-000000007\.pt' was made by a different config "
                        r"\(gan\.lr: 0\.0002 -> 0\.001\); restore that config to continue it, or rerun "
                        r"`ganaug train-gan` with --force to discard it and start over\n", r.stderr), r.stderr
    assert {p: p.read_bytes() for p in partial.rglob("*") if p.is_file()} == before  # nothing touched
    r = invoke("train-gan", *c, "--resume", "--force")
    assert r.exit_code == 2 and "give one of them" in r.stderr
    ok("train-gan", *c, "--force", "--set", "gan.lr=0.001")  # starting over is explicit
    assert not partial.exists()


def test_a_gan_checkpoint_from_another_config_is_refused_by_sample(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, gan={"epochs": 1})
    c = ("--config", str(cfg))
    run, other = tmp_path / "run", tmp_path / "other"
    for out, lr in ((run, 0.0002), (other, 0.001)):
        ok("split", *c, "--set", f"out_dir={out}")
        ok("train-gan", *c, "--set", f"out_dir={out}", "--set", f"gan.lr={lr}")
    # Someone copies the other run's checkpoint in, and its hash into stage.json to match.
    (run / "gan" / "checkpoint.pt").write_bytes((other / "gan" / "checkpoint.pt").read_bytes())
    rec = json.loads((run / "gan" / "stage.json").read_text())
    rec["outputs"] = json.loads((other / "gan" / "stage.json").read_text())["outputs"]
    (run / "gan" / "stage.json").write_text(json.dumps(rec))
    r = invoke("sample", *c)
    assert r.exit_code == 2 and "checkpoint.pt' was made by a different config" in r.stderr, r.output
    assert not (run / "samples").exists()


# ----------------------------------------------------------------------------------------------------
# A disk that fills while saving; a second process on the same run folder; inputs changed on disk.


def test_disk_full_while_saving_a_checkpoint_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(tmp_path)
    run, ref = tmp_path / "run", tmp_path / "ref"
    c = ("--config", str(cfg))
    for out in (run, ref):
        ok("split", *c, "--set", f"out_dir={out}")
    ok("train-gan", *c, "--set", f"out_dir={ref}")

    real_fsync, calls = os.fsync, {"n": 0}

    def fsync(fd: int) -> None:  # the disk fills up at the 8th checkpoint written
        if os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 2)[-2] == "resume":
            calls["n"] += 1
            if calls["n"] == 8:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    r = invoke("train-gan", *c)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert re.fullmatch(r"error: could not write '\S+/gan\.partial/resume/step-000000024\.pt': No space left on "
                        r"device; free some disk space and run again \(interrupted training continues from its last "
                        r"checkpoint with --resume, and in `ganaug run`\)", r.stderr.splitlines()[-1]), r.stderr
    assert [line for line in r.stderr.splitlines() if line.startswith("error")] == r.stderr.splitlines()[-1:]
    resume = run / "gan.partial" / "resume"
    assert sorted(p.name for p in resume.iterdir()) == ["step-000000018.pt", "step-000000021.pt"]  # no .tmp left
    assert not (run / "gan").exists()
    monkeypatch.setattr(os, "fsync", real_fsync)  # space freed
    ok("train-gan", *c, "--resume")
    same_gan_run(run, ref)


def test_a_second_process_on_the_same_run_folder_is_refused(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    run = tmp_path / "run"
    with run_lock(run, "ganaug run"):
        r = invoke("split", "--config", str(cfg))
        assert r.exit_code == 2
        assert re.fullmatch(rf"error: run folder '{run}' is in use by ganaug process {os.getpid()} \(`ganaug run` since "
                            r"[^)]+\); wait for it to finish or stop it \(kill \d+\), or set out_dir to another folder\n",
                            r.stderr), r.stderr
        assert sorted(p.name for p in run.iterdir()) == ["ganaug.lock"]
    assert not run.exists()  # made by the lock, and nothing else was written: removed again
    # A holder that was killed leaves its file behind, but not its lock.
    run.mkdir()
    (run / "ganaug.lock").write_text(json.dumps({"pid": 999999999, "command": "ganaug run"}))
    ok("split", "--config", str(cfg))
    assert not (run / "ganaug.lock").exists()


def test_inputs_changed_on_disk_are_named(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, gan={"epochs": 1})
    run = tmp_path / "run"
    c = ("--config", str(cfg))
    for stage in ("split", "train-gan", "sample"):
        ok(stage, *c)
    samples = run / "samples" / "images.npy"
    samples.write_bytes(samples.read_bytes() + b"\0")
    r = invoke("train-clf", *c, "--data", "synthetic")
    assert r.exit_code == 2 and (f"error: '{samples}' changed on disk since `ganaug sample` wrote it" in r.stderr), r.stderr
    manifest = run / "split" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"seed": 0', '"seed": 1'))
    r = invoke("train-clf", *c, "--data", "real")
    assert r.exit_code == 2 and f"'{manifest}' changed on disk since `ganaug split` wrote it" in r.stderr, r.stderr
