"""One model on several processes: torchrun, DDP on gloo, two CPU processes against one.

Two processes reproduce one to float rounding: without BatchNorm (tests/ddp_worker.py strips it, for the loops
and the resume tests) and with it, which normalises with the global batch's statistics on gloo too
(`distributed.GlobalBatchNorm`). tests/test_ddp_families.py does the same for every family.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import torch

from ganaug import distributed
from ganaug.classifiers import get_classifier
from ganaug.errors import ConfigError
from ganaug.gans import get_gan
from ganaug.utils import read_jsonl, seed_everything

from .conftest import abort_at_exit, invoke, make_folder, ok, tiny_config, write_yaml

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="this torch build has no torch.distributed with gloo")

WORKER = Path(__file__).with_name("ddp_worker.py")
TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID")

# Measured on 2 busy CPU cores (torch 2.14, gloo), float rounding all: without BatchNorm max |w2 - w1| seen 5.2e-7
# (both loops), 1.5e-8 (resumed at another world size); with it (synced on gloo), cgan after 8 steps
# max |w2 - w1| 7.0e-8, small-cnn after 60 steps 2.4e-5 (lr 0.01), test accuracy equal (1.000).
# (Before BatchNorm synced on gloo, per-rank statistics gave 2.6e-3 and 0.45 / 0.65 of how far training moved.)
EXACT = 1e-5
CLF_BN = 1e-4  # 60 steps at lr 0.01 through BatchNorm: rounding grows more than in 8 GAN steps
CLF_ACC = 0.0


def _env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _command(n: int, *args: str, worker: bool = False) -> List[str]:
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--standalone"] if n > 1 \
        else [sys.executable]
    return run + ([str(WORKER), "cli", *args] if worker else ["-m", "ganaug", *args])


def launch(n: int, *args: str, worker: bool = False, rc: int = 0, env: Optional[Dict[str, str]] = None
           ) -> subprocess.CompletedProcess:
    """`ganaug ARGS` on n processes (torchrun for n > 1); `worker`: with the test's BatchNorm-free networks."""
    r = subprocess.run(_command(n, *args, worker=worker), env=env or _env(), capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == rc, r.stdout + r.stderr
    return r


def max_diff(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


def relative_diff(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor], init: Dict[str, torch.Tensor]) -> float:
    """|a - b| / |a - init| over the learned tensors (BatchNorm's running statistics left out), L2."""
    keys = [k for k in a if a[k].is_floating_point() and "running" not in k]
    norm = lambda d: float(sum(t.double().square().sum() for t in d) ** 0.5)  # noqa: E731
    return norm(a[k] - b[k] for k in keys) / norm(a[k] - init[k] for k in keys)


def files(root: Path) -> List[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def copy_split(ref: Path, out: Path) -> None:
    out.mkdir(parents=True)
    shutil.copytree(ref / "split", out / "split")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """A config (cgan with ADA and x-flips, 8 steps of 8; small-cnn, 60 steps of 12) and its split."""
    tmp = tmp_path_factory.mktemp("ddp")
    folder = make_folder(tmp / "images")
    cfg = tiny_config(tmp, folder, **{
        "gan": {"epochs": 4, "augment": "ada", "ada_kimg": 1, "ada_interval": 1, "mirror": True, "grid_every": 2},
        "classifier": {"steps": 60, "batch_size": 12, "width": 8, "lr": 0.01, "eval_every": 20},
        "checkpoint": {"every_steps": 3, "keep": 2},
    })
    cfg["out_dir"] = str(tmp / "one")
    path = write_yaml(tmp / "tiny.yaml", cfg)
    ok("split", "-c", str(path))
    return {"tmp": tmp, "config": path, "one": tmp / "one"}


# ----------------------------------------------------------------------------------------------------
# The loops without BatchNorm: two processes are one, to rounding.


def test_both_loops_on_two_processes_match_one_process(tmp_path: Path) -> None:
    from .ddp_worker import main as loops

    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    loops(str(one))  # here, on one process
    r = subprocess.run(_command(2)[:-2] + [str(WORKER), "loops", str(two)], env=_env(), capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    a, b = torch.load(one), torch.load(two)
    b1 = torch.load(f"{two}.rank1")
    assert (a["world"], b["world"]) == (1, 2)
    # Each rank trained on its half of the global batch (and the one process on all of it)...
    assert a["seen_G"] == a["seen_D"] == [8, 8, 8] and b["seen_G"] == b["seen_D"] == b1["seen_D"] == [4, 4, 4]
    assert a["seen_clf"] == [12, 12] and b["seen_clf"] == b1["seen_clf"] == [6, 6]
    # ... and both ranks ended with the very same networks, those of the one process to rounding.
    for k in ("G", "D", "G_ema"):
        assert max_diff(b["gan"][k], b1["gan"][k]) == 0.0, k
        diff = max_diff(a["gan"][k], b["gan"][k])
        print(f"loops: cgan {k} max |2 - 1| = {diff:.2e}")
        assert diff < EXACT, k
    assert max_diff(b["clf"], b1["clf"]) == 0.0
    diff = max_diff(a["clf"], b["clf"])
    print(f"loops: small-cnn max |2 - 1| = {diff:.2e}")
    assert diff < EXACT
    assert a["ada_p"] == b["ada_p"] == b1["ada_p"] > 0  # ADA's r_t over the global batch: the same p moves
    assert a["best_step"] == b["best_step"]


# ----------------------------------------------------------------------------------------------------
# cgan and small-cnn, with their BatchNorm, through `torchrun -m ganaug`: one process's, and rank 0 alone wrote.


def test_cgan_on_two_processes_against_one(tiny: Dict[str, Any]) -> None:
    c, one, two = str(tiny["config"]), tiny["one"], tiny["tmp"] / "two-gan"
    ok("train-gan", "-c", c)
    copy_split(one, two)
    # Rank 1 aborts if it gets to the interpreter's teardown: every process ends together before it.
    r = launch(2, "train-gan", "-c", c, "--set", f"out_dir={two}", env=abort_at_exit(_env()))
    assert "Traceback" not in r.stderr
    assert sum(line.startswith("train-gan: cgan seed 0") for line in r.stderr.splitlines()) == 1  # rank 0 talks
    assert "2 processes" in r.stderr

    a = torch.load(one / "gan" / "checkpoint.pt", weights_only=True)
    b = torch.load(two / "gan" / "checkpoint.pt", weights_only=True)
    assert (a["step"], a["cur_nimg"]) == (b["step"], b["cur_nimg"]) == (8, 64)  # global batches of 8
    seed_everything(0)
    init = get_gan("cgan", **a["kwargs"]).G.state_dict()  # as train-gan built it
    diff = max(max_diff(a["state_dict"][k], b["state_dict"][k]) for k in ("G", "D", "G_ema"))
    rel = relative_diff(a["state_dict"]["G_ema"], b["state_dict"]["G_ema"], init)
    print(f"cgan (BatchNorm synced): max |w2 - w1| = {diff:.2e}, relative to its training {rel:.1e}")
    assert diff < EXACT

    # Rank 0 alone wrote: the same files as one process, one stage record, one metrics line per epoch.
    assert files(two) == files(one)
    assert not any(p.name.startswith(".") or p.name.endswith(".tmp") for p in two.rglob("*"))
    rec_a, rec_b = (json.loads((d / "gan" / "stage.json").read_text()) for d in (one, two))
    assert (rec_a["world_size"], rec_b["world_size"]) == (1, 2)
    assert rec_a["fingerprint"] == rec_b["fingerprint"]  # the same experiment at any world size
    rows_a, rows_b = read_jsonl(one / "gan" / "metrics.jsonl"), read_jsonl(two / "gan" / "metrics.jsonl")
    assert [row["epoch"] for row in rows_b] == [row["epoch"] for row in rows_a] == [1, 2, 3, 4]
    assert abs(rows_b[-1]["loss/D"] - rows_a[-1]["loss/D"]) < 0.05  # means over the global batch, not a slice


def test_classifier_on_two_processes_against_one(tiny: Dict[str, Any]) -> None:
    c, one, two = str(tiny["config"]), tiny["one"], tiny["tmp"] / "two-clf"
    copy_split(one, two)
    ok("train-clf", "-c", c, "--data", "real")
    r = launch(2, "train-clf", "-c", c, "--data", "real", "--set", f"out_dir={two}")
    assert sum("test acc" in line for line in r.stderr.splitlines()) == 1

    run_a, run_b = one / "clf" / "real" / "seed-0", two / "clf" / "real" / "seed-0"
    res_a, res_b = (json.loads((d / "result.json").read_text()) for d in (run_a, run_b))
    print(f"small-cnn (BatchNorm synced): test accuracy {res_a['test']['accuracy']:.3f} on one process, "
          f"{res_b['test']['accuracy']:.3f} on two")
    assert res_a["test"]["accuracy"] > 0.8  # it learned
    assert abs(res_a["test"]["accuracy"] - res_b["test"]["accuracy"]) <= CLF_ACC
    assert (res_a["world_size"], res_b["world_size"]) == (1, 2)
    assert res_a["seen"] == res_b["seen"] == {"real": 720, "fake": 0}  # 60 global batches of 12
    assert res_b["protocol"]["test_evaluations"] == 1  # scored once, by rank 0
    ckpt = torch.load(run_a / "best.pt", weights_only=True)
    wa, wb = ckpt["state_dict"], torch.load(run_b / "best.pt", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys()  # saved unwrapped: no DDP 'module.' prefix
    seed_everything(0)
    init = get_classifier("small-cnn", **ckpt["kwargs"]).state_dict()  # as train-clf built it
    learned = [k for k in wa if "running" not in k and wa[k].is_floating_point()]
    diff = max_diff({k: wa[k] for k in learned}, {k: wb[k] for k in learned})
    rel = relative_diff(wa, wb, init)
    print(f"small-cnn (BatchNorm synced): max |w2 - w1| = {diff:.2e}, relative to its training {rel:.1e}")
    assert diff < CLF_BN

    # Rank 0 alone wrote: the same files, one stage record, one metrics line per evaluation.
    assert files(two / "clf") == files(one / "clf")
    assert sorted(p.name for p in two.iterdir()) == ["clf", "config.yaml", "split"]
    rows = read_jsonl(run_b / "metrics.jsonl")
    assert [row["step"] for row in rows] == [20, 40, 60] and all("acc/val" in row for row in rows)


# ----------------------------------------------------------------------------------------------------
# Resume at another world size: the streams a checkpoint saves are the global batch's, the same at any.


@pytest.fixture(scope="module")
def nobn(tiny: Dict[str, Any]) -> Dict[str, Any]:
    """cgan without BatchNorm (40 steps, ADA, x-flips, checkpoints every 2 steps) trained once without a stop."""
    data = json.loads(json.dumps(__import__("yaml").safe_load(tiny["config"].read_text())))
    data["gan"].update(name="cgan-nobn", epochs=20)
    data["checkpoint"] = {"every_steps": 2, "keep": 2}
    path = write_yaml(tiny["tmp"] / "nobn.yaml", data)
    ref = tiny["tmp"] / "nobn-ref"
    copy_split(tiny["one"], ref)
    launch(1, "train-gan", "-c", str(path), "--set", f"out_dir={ref}", worker=True)
    return {"config": path, "ref": ref}


def _stopped(n: int, config: Path, out: Path, sig: int, after: int) -> int:
    """Train on n processes until a checkpoint at step >= `after` exists, then send `sig`; the newest step saved."""
    proc = subprocess.Popen(_command(n, "train-gan", "-c", str(config), "--set", f"out_dir={out}", worker=True),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    resume = out / "gan.partial" / "resume"
    deadline = time.time() + 200
    while time.time() < deadline and proc.poll() is None:
        if resume.is_dir() and any(int(p.stem[5:]) >= after for p in resume.glob("step-*.pt")):
            proc.send_signal(sig)
            break
        time.sleep(0.002)
    _, err = proc.communicate(timeout=120)
    steps = sorted(int(p.stem[5:]) for p in resume.glob("step-*.pt"))
    assert steps and not (out / "gan").exists(), err
    if sig == signal.SIGTERM:  # torchrun passes it on; both ranks stop after the same step, rank 0 saves it
        assert f"interrupted: stopped by SIGTERM after step {steps[-1]} of 40" in err, err
        assert err.count("interrupted:") == 1
    return steps[-1]


def _same_as_ref(out: Path, ref: Path) -> None:
    a = torch.load(ref / "gan" / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "gan" / "checkpoint.pt", weights_only=True)
    assert (a["step"], a["cur_nimg"]) == (b["step"], b["cur_nimg"])
    for k in ("G", "D", "G_ema"):
        diff = max_diff(a["state_dict"][k], b["state_dict"][k])
        print(f"resumed at another world size: {k} max |resumed - uninterrupted| = {diff:.2e}")
        assert diff < EXACT, k
    assert abs(b["augment"]["all"]["p"] - a["augment"]["all"]["p"]) < 1e-6
    rows_a, rows_b = read_jsonl(ref / "gan" / "metrics.jsonl"), read_jsonl(out / "gan" / "metrics.jsonl")
    assert [row["epoch"] for row in rows_b] == [row["epoch"] for row in rows_a] == list(range(1, 21))
    assert max(abs(x["loss/D"] - y["loss/D"]) for x, y in zip(rows_a, rows_b)) < 1e-4
    assert files(out / "gan") == files(ref / "gan")


@pytest.mark.slow  # with the next one, about a minute: four trainings, two of them on two processes
def test_one_process_killed_resumes_on_two(tiny: Dict[str, Any], nobn: Dict[str, Any]) -> None:
    out = tiny["tmp"] / "nobn-1to2"
    copy_split(tiny["one"], out)
    at = _stopped(1, nobn["config"], out, signal.SIGKILL, after=6)
    r = launch(2, "train-gan", "-c", str(nobn["config"]), "--set", f"out_dir={out}", "--resume", worker=True)
    assert f"resuming from {out / 'gan.partial' / 'resume' / f'step-{at:09d}.pt'}" in r.stderr
    _same_as_ref(out, nobn["ref"])
    rec = json.loads((out / "gan" / "stage.json").read_text())
    assert (rec["resumed_from_step"], rec["world_size"]) == (at, 2)


@pytest.mark.slow
def test_two_processes_stopped_resume_on_one(tiny: Dict[str, Any], nobn: Dict[str, Any]) -> None:
    out = tiny["tmp"] / "nobn-2to1"
    copy_split(tiny["one"], out)
    at = _stopped(2, nobn["config"], out, signal.SIGTERM, after=6)
    launch(1, "train-gan", "-c", str(nobn["config"]), "--set", f"out_dir={out}", "--resume", worker=True)
    _same_as_ref(out, nobn["ref"])
    rec = json.loads((out / "gan" / "stage.json").read_text())
    assert (rec["resumed_from_step"], rec["world_size"]) == (at, 1)


# ----------------------------------------------------------------------------------------------------
# What cannot run on several processes says so, in one line, before any work.


@pytest.mark.slow  # 15 s for what the in-process test below checks too, but from torchrun's own processes
def test_a_batch_that_does_not_split_is_refused_under_torchrun(tiny: Dict[str, Any], tmp_path: Path) -> None:
    r = launch(2, "train-gan", "-c", str(tiny["config"]), "--set", "gan.batch_size=7", "--set",
               f"out_dir={tmp_path / 'run'}", rc=1)  # torchrun's own status when its processes fail
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: gan.batch_size 7 is not divisible by the world size 2 (torchrun --nproc_per_node); the "
                      "batch is global and each process trains on gan.batch_size / 2 of it: set gan.batch_size to "
                      "a multiple of 2"] * 2, r.stderr
    assert re.search(r"exitcode\s*: 2", r.stderr), r.stderr  # torchrun's report: a rank exited with status 2
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["train-gan", "--set", "gan.batch_size=9"], "error: gan.batch_size 9 is not divisible by the world size 2"),
    (["train-clf", "--data", "real", "--set", "classifier.batch_size=9"],
     "error: classifier.batch_size 9 is not divisible by the world size 2"),
    (["train-gan", "--set", "gan={name: stylegan2-ada, impl: official, repo: /nowhere, epochs: 1}"],
     "error: gan.name stylegan2-ada (impl: official) trains on one process; drop torchrun (families that train on "
     "several: cgan, dcgan, diffusion, stylegan2, stylegan2-ada, vae)"),
    (["run"], "error: `ganaug run` runs on one process; under torchrun use train-gan or train-clf"),
    (["sample"], "error: `ganaug sample` runs on one process; under torchrun use train-gan or train-clf"),
], ids=["gan-batch", "clf-batch", "official", "run", "sample"])
def test_what_trains_on_one_process_is_refused(tiny: Dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                               args: List[str], message: str) -> None:
    # As torchrun's rank 0 of 2 sees it; the refusals come before any process group is needed.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(distributed, "init", lambda device="auto": None)
    before = files(tiny["one"])
    r = invoke(args[0], "-c", str(tiny["config"]), *args[1:])
    assert r.exit_code == 2 and r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr
    assert files(tiny["one"]) == before


def test_without_torchrun_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    x = torch.arange(12.0).view(6, 2)
    net = torch.nn.Linear(2, 2)
    assert (distributed.world(), distributed.rank(), distributed.is_main(), distributed.active()) == (1, 0, True, False)
    assert distributed.shard(x) is x and distributed.gather(x) is x and distributed.wrap(net) is net
    assert distributed.per_sample(lambda t: t * 2, x, 6).equal(x * 2)
    assert distributed.broadcast_object({"a": 1}) == {"a": 1} and distributed.any_rank(True) is True
    distributed.require_divisible(7, "gan.batch_size")
    distributed.barrier()
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    assert distributed.shard(torch.arange(6)).tolist() == [4, 5]  # rank r: rows [r*B/W, (r+1)*B/W)


def test_one_gpu_for_every_process_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"device cuda:0 would put every process on one GPU; under torchrun set "
                                          r"device: cuda \(or auto\)"):
        distributed.init("cuda:0")
