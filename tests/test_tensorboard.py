"""TensorBoard event files beside every metrics.jsonl: each training's scalars and grids, read back as TensorBoard
reads them, once per step even after an interruption, in the finished folder and never among its hashed outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganaug.checkpoint import Checkpointer
from ganaug.config import load_config
from ganaug.gans.official import StatsFollower
from ganaug.stages import run_split, run_train_clf, run_train_gan
from ganaug.stages.records import read_record
from ganaug.tracking import EVENTS_GLOB, tag_of
from ganaug.utils import Stats, read_jsonl

from .conftest import make_folder, tiny_config, write_yaml


def board(folder: Path) -> EventAccumulator:
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    return ea


def curve(ea: EventAccumulator, tag: str) -> List[tuple]:
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def event_dirs(root: Path) -> List[str]:
    """The folders under `root` holding event files (TensorBoard's runs), relative to it."""
    return sorted({p.parent.relative_to(root).as_posix() for p in root.rglob(EVENTS_GLOB)})


def config(tmp_path: Path, **sections: Any):
    data = tiny_config(tmp_path, make_folder(tmp_path / "images"), **sections)
    cfg = load_config(write_yaml(tmp_path / "tiny.yaml", data))
    run_split(cfg)
    return cfg


def rows_of(path: Path, key: str, step: str = "step") -> List[tuple]:
    return [(r[step], pytest.approx(r[key], rel=1e-6)) for r in read_jsonl(path) if key in r]


# ----------------------------------------------------------------------------------------------------
# Tags and the import.


def test_tags_keep_the_stream_names_and_group_the_rest() -> None:
    assert tag_of("loss/G") == "loss/G" and tag_of("fid/val") == "fid/val" and tag_of("augment/p") == "augment/p"
    assert tag_of("D(x)") == "D/D(x)" and tag_of("D(G(z))") == "D/D(G(z))" and tag_of("r_t") == "augment/rt"
    assert tag_of("lr") == "train/lr" and tag_of("share_real") == "train/share_real"
    assert tag_of("seconds") == "time/seconds" and tag_of("img_per_s") == "time/img_per_s"
    assert tag_of("kimg") == "progress/kimg" and tag_of("epoch") == "progress/epoch"
    assert tag_of("step") is None  # the x axis, not a curve


def test_importing_ganaug_does_not_load_tensorboard() -> None:
    code = "import sys, ganaug, ganaug.utils, ganaug.tracking; sys.exit('torch.utils.tensorboard' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# ----------------------------------------------------------------------------------------------------
# Each training, through its stage.


def test_classifier_writes_validation_accuracy_and_losses_in_its_finished_folder(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    run_train_clf(cfg, arms=[cfg.arms[0]], progress=False)
    run = tmp_path / "run" / "clf" / "real" / "seed-0"
    ea = board(run)
    metrics = run / "metrics.jsonl"
    assert curve(ea, "acc/val") == rows_of(metrics, "acc/val") and [s for s, _ in curve(ea, "acc/val")] == [3, 6]
    assert curve(ea, "loss/train") == rows_of(metrics, "loss/train")
    assert {"acc/train", "train/lr", "train/share_real", "time/seconds"} <= set(ea.Tags()["scalars"])
    # Closed before the partial folder became the run folder: every event file is there, under a stable name.
    assert event_dirs(tmp_path / "run") == ["clf/real/seed-0"]
    assert [p.name for p in run.glob(EVENTS_GLOB)] == ["events.out.tfevents.0000.ganaug"]
    assert not run.with_name("seed-0.partial").exists()


def test_gan_with_ada_writes_losses_p_fid_and_grids(tmp_path: Path) -> None:
    cfg = config(tmp_path, gan={"augment": "ada", "ada_kimg": 1, "ada_interval": 1, "eval_every": 1})
    run_train_gan(cfg, progress=False)
    gan = tmp_path / "run" / "gan"
    ea = board(gan)
    metrics = gan / "metrics.jsonl"  # 12 images in batches of 8: 2 steps an epoch, 2 epochs
    for key, tag in (("loss/G", "loss/G"), ("loss/D", "loss/D"), ("augment/p", "augment/p"), ("fid/val", "fid/val"),
                     ("kid/val", "kid/val"), ("D(x)", "D/D(x)"), ("kimg", "progress/kimg")):
        assert curve(ea, tag) == rows_of(metrics, key), tag
    assert [s for s, _ in curve(ea, "loss/G")] == [2, 4] and curve(ea, "augment/p")[-1][1] > 0
    grids = ea.Images("grid")
    assert [g.step for g in grids] == [2, 4] and grids[0].width > grids[0].height > 16  # 3 rows of 8 images
    # The domain extractor (trained for the validation FID) writes its own: its loss and its validation accuracy.
    assert event_dirs(tmp_path / "run") == ["features/domain", "gan"]
    feats = board(tmp_path / "run" / "features" / "domain")
    assert [s for s, _ in curve(feats, "loss/train")] == [20] and 0 <= curve(feats, "acc/val")[0][1] <= 1
    # The event files are no output of the stage: not hashed, and the stage stays up to date.
    assert set(read_record(gan)["outputs"]) == {"checkpoint.pt"}
    before = (gan / "checkpoint.pt").stat().st_mtime_ns
    run_train_gan(cfg, progress=False)  # check_outputs passed: nothing retrained
    assert (gan / "checkpoint.pt").stat().st_mtime_ns == before


def test_the_vae_writes_its_losses_and_grids(tmp_path: Path) -> None:
    # The likelihood loop (the diffusion model's too; its grids take a sampler run, too slow for here).
    data = tiny_config(tmp_path, make_folder(tmp_path / "images"))
    data["gan"] = {"name": "vae", "epochs": 2, "z_dim": 4, "width": 4, "batch_size": 8, "grid_every": 1}
    cfg = load_config(write_yaml(tmp_path / "tiny.yaml", data))
    run_split(cfg)
    run_train_gan(cfg, progress=False)
    gan = tmp_path / "run" / "gan"
    ea = board(gan)
    for key, tag in (("loss/total", "loss/total"), ("loss/recon", "loss/recon"), ("loss/kl", "loss/kl"),
                     ("beta", "train/beta")):
        assert curve(ea, tag) == rows_of(gan / "metrics.jsonl", key), tag
        assert [s for s, _ in curve(ea, tag)] == [2, 4], tag
    assert [g.step for g in ea.Images("grid")] == [2, 4]


def test_per_class_pairs_count_their_steps_on(tmp_path: Path) -> None:
    cfg = config(tmp_path, gan={"name": "dcgan", "per_class": True, "epochs": 1})
    run_train_gan(cfg, progress=False)
    ea = board(tmp_path / "run" / "gan")  # 4 images a class in batches of 8: one step each, one after the other
    assert [s for s, _ in curve(ea, "loss/G")] == [1, 2, 3]
    assert [v for _, v in curve(ea, "progress/class")] == [0, 1, 2]
    assert {t: [g.step for g in ea.Images(t)] for t in ea.Tags()["images"]} == {
        "grid/class-0": [1], "grid/class-1": [2], "grid/class-2": [3]}


# ----------------------------------------------------------------------------------------------------
# Interrupted and resumed: every step once.


class Killed(Exception):
    pass


def test_a_resumed_classifier_shows_every_step_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path, classifier={"steps": 24, "eval_every": 3}, checkpoint={"every_steps": 6, "keep": 2})
    orig = Checkpointer.after_step

    def after_step(self: Checkpointer, step: int, total: int, make_state: Any, last: Any = None) -> None:
        orig(self, step, total, make_state, last)
        if step == 16:  # killed 4 steps after the checkpoint of step 12, the ticks of 15 already written
            raise Killed

    monkeypatch.setattr(Checkpointer, "after_step", after_step)
    with pytest.raises(Killed):
        run_train_clf(cfg, arms=[cfg.arms[0]], progress=False)
    partial = tmp_path / "run" / "clf" / "real" / "seed-0.partial"
    assert [s for s, _ in curve(board(partial), "acc/val")] == [3, 6, 9, 12, 15]
    monkeypatch.setattr(Checkpointer, "after_step", orig)
    run_train_clf(cfg, arms=[cfg.arms[0]], progress=False, resume=True)
    run = partial.with_name("seed-0")
    ea = board(run)
    assert curve(ea, "acc/val") == rows_of(run / "metrics.jsonl", "acc/val")
    assert [s for s, _ in curve(ea, "acc/val")] == list(range(3, 25, 3))
    assert [s for s, _ in curve(ea, "loss/train")] == list(range(3, 25, 3))
    assert sorted(p.name for p in run.glob(EVENTS_GLOB)) == ["events.out.tfevents.0000.ganaug",
                                                              "events.out.tfevents.0001.ganaug"]


def test_stats_resumed_after_a_kill_drop_the_later_points(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"

    def train(stats: Stats, steps: range, state_at: int = -1) -> Dict[str, Any]:
        state: Dict[str, Any] = {}
        for s in steps:
            stats.report("loss/G", float(s))
            stats.tick(step=s)
            if s == state_at:
                state = stats.state_dict()
        return state

    a = Stats(path)
    state = train(a, range(1, 8), state_at=4)
    a.board.flush()  # SIGKILL: never closed, its file left under the name SummaryWriter gave it
    with Stats(path) as b:  # resumed from step 4, killed again at 6 but closed (Ctrl-C)
        b.load_state_dict(state)
        state = train(b, range(5, 7), state_at=5)
    with Stats(path) as c:
        c.load_state_dict(state)
        train(c, range(6, 10))
    assert [(s, v) for s, v in curve(board(tmp_path), "loss/G")] == [(s, float(s)) for s in range(1, 10)]
    assert [r["step"] for r in read_jsonl(path)] == list(range(1, 10))
    assert sorted(p.name for p in tmp_path.glob(EVENTS_GLOB)) == [f"events.out.tfevents.000{i}.ganaug" for i in range(3)]


def test_a_stream_without_a_path_writes_no_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Stats(None) as stats:  # the other ranks under torchrun
        stats.report("loss/G", 1.0)
        stats.tick(step=1)
        stats.image("grid", torch.zeros(2, 1, 4, 4), step=1)
    assert not list(tmp_path.rglob("*"))


# ----------------------------------------------------------------------------------------------------
# The official StyleGAN2-ADA: its stats.jsonl followed into events, on images shown.


def official_line(kimg: float, p: float) -> str:
    return json.dumps({"Progress/kimg": {"num": 1, "mean": kimg}, "Progress/augment": {"num": 1, "mean": p},
                       "Loss/G/loss": {"num": 2, "mean": 1.5}, "Loss/scores/real": {"num": 2, "mean": 0.0}}) + "\n"


def test_the_official_follower_writes_events_on_images_shown(tmp_path: Path) -> None:
    stats, metrics = tmp_path / "stats.jsonl", tmp_path / "work" / "metrics.jsonl"
    f = StatsFollower(metrics)
    f.follow(stats)
    stats.write_text(official_line(0, 0.0) + official_line(4, 0.1) + official_line(8, 0.2))
    f.poll()
    f.close()
    # Resumed from the snapshot at 4 kimg: the rows after it are trimmed, their points dropped.
    f = StatsFollower(metrics, kimg_offset=4, keep_kimg=4.0)
    f.follow(stats)
    stats.write_text(official_line(4, 0.15) + official_line(8, 0.25))
    f.poll()
    f.close()
    ea = board(tmp_path / "work")
    assert curve(ea, "augment/p") == [(0, 0.0), (4000, pytest.approx(0.1)), (8000, pytest.approx(0.15)),
                                      (12000, pytest.approx(0.25))]
    assert {"loss/G", "D/D(x)", "progress/kimg"} <= set(ea.Tags()["scalars"])
