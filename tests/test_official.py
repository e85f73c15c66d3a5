"""The wrapper of NVlabs' stylegan2-ada-pytorch: dataset zip, train.py options, following a run, resuming,
errors, and (with GANAUG_SG2ADA_REPO set to a checkout) loading a real official generator on the CPU.

Training runs a stand-in train.py (it records its options and writes stats.jsonl lines and snapshots the way
the official training loop does), so these tests need no GPU and no checkout.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import ganaug.gans.official.generator as official_generator
import ganaug.gans.official.training as official_training
from ganaug.data.images import image_hashes
from ganaug.errors import StageError
from ganaug.gans.official import (
    StatsFollower,
    find_resume,
    load_official_generator,
    run_official_training,
    train_args,
    write_dataset_zip,
)
from ganaug.utils import read_jsonl

from .conftest import invoke, tiny_config, write_yaml

REAL_REPO = os.environ.get("GANAUG_SG2ADA_REPO")
needs_real_repo = pytest.mark.skipif(not REAL_REPO or not Path(REAL_REPO, "legacy.py").is_file(),
                                     reason="set GANAUG_SG2ADA_REPO to a checkout of NVlabs/stylegan2-ada-pytorch")

# A stand-in for the official train.py: the same module-level setup_training_loop_kwargs/main pair the
# launcher wraps, the same run-folder naming, and stats.jsonl lines and snapshots in the official order
# (snapshot first, then the tick's line). Ticks every 4 kimg after a first tick at 0.064. STUB_MODE=fail
# exits 1 at once; crash exits 1 after the fourth tick's line, leaving a partial line behind.
STUB_TRAIN = r'''
import json, os, re, shutil, sys, time
import click

def setup_training_loop_kwargs(aug=None, p=None, resume=None):
    args = {"augment_p": p if aug == "fixed" else 0, "ada_target": 0.6 if aug in (None, "ada") else None}
    if resume:
        args["ada_kimg"] = 100  # as the official train.py does on --resume
    return "stub", args

@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def main(ctx):
    opts = dict(a[2:].partition("=")[::2] for a in ctx.args)
    desc, args = setup_training_loop_kwargs(aug=opts.get("aug"), p=float(opts["p"]) if "p" in opts else None,
                                            resume=opts.get("resume"))
    outdir = opts["outdir"]
    ids = [int(m.group()) for m in (re.match(r"^\d+", d) for d in os.listdir(outdir)
                                    if os.path.isdir(os.path.join(outdir, d))) if m]
    run_dir = os.path.join(outdir, f"{max(ids, default=-1) + 1:05d}-{desc}")
    os.makedirs(run_dir)
    with open(os.path.join(outdir, "calls.jsonl"), "a") as f:
        f.write(json.dumps({"argv": ctx.args, "args": args, "cwd": os.getcwd(), "path0": sys.path[0]}) + "\n")
    mode = os.environ.get("STUB_MODE", "ok")
    if mode == "fail":
        print("RuntimeError: stub ran out of CUDA memory", file=sys.stderr)
        sys.exit(1)
    total, snap, p = int(opts["kimg"]), int(opts.get("snap", 50)), float(args["augment_p"])
    ticks = [0.064] + list(range(4, total, 4)) + [total]
    with open(os.path.join(run_dir, "stats.jsonl"), "w") as f:
        for tick, kimg in enumerate(ticks):
            if args["ada_target"] is not None:
                p += 0.01
            if tick == len(ticks) - 1 or tick % snap == 0:
                pkl = os.path.join(run_dir, f"network-snapshot-{int(kimg):06d}.pkl")
                if os.environ.get("STUB_PKL"):
                    shutil.copyfile(os.environ["STUB_PKL"], pkl)
                else:
                    with open(pkl, "wb") as g:
                        g.write(f"{run_dir} {kimg}".encode())
            m = lambda v: {"num": 4, "mean": v, "std": 0.0}
            line = json.dumps({"Progress/tick": m(tick), "Progress/kimg": m(kimg), "Progress/augment": m(p),
                               "Loss/G/loss": m(1.0 + tick), "Loss/D/loss": m(2.0 - tick / 10),
                               "Loss/scores/real": m(0.0), "Loss/scores/fake": m(-1.0), "Loss/signs/real": m(0.2),
                               "Loss/r1_penalty": {"num": 0, "mean": float("nan"), "std": float("nan")},
                               "Timing/total_sec": m(tick * 10.0), "timestamp": time.time()})
            f.write(line[:40])  # a line in two writes: the follower must wait for its newline
            f.flush()
            time.sleep(0.03)
            f.write(line[40:] + "\n")
            f.flush()
            if mode == "crash" and tick == 3:
                f.write('{"Progress/kimg": {"num"')
                sys.exit(1)
'''


@pytest.fixture
def stub_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "stub-sg2ada"
    repo.mkdir()
    (repo / "train.py").write_text(STUB_TRAIN)
    (repo / "legacy.py").write_text("")
    return repo


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(official_training, "POLL_SECONDS", 0.02)


def gan_cfg(**kw: Any) -> SimpleNamespace:
    g = dict(kimg=16.0, batch_size=32, r1_gamma=0.0016, preset="auto", augment="ada", augment_p=0.0, ada_target=0.6,
             ada_interval=4, ada_kimg=500.0, augpipe="bgc", mirror=False, gpus=1, snap=2)
    g.update(kw)
    return SimpleNamespace(**g)


def calls(outdir: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (outdir / "calls.jsonl").read_text().splitlines()]


def one_line_error(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def official_config(tmp_path: Path, folder: Path, repo: Path, **gan: Any) -> Path:
    cfg = tiny_config(tmp_path, folder)
    cfg["gan"] = {"name": "stylegan2-ada", "impl": "official", "repo": str(repo), "preset": "auto", "kimg": 16,
                  "snap": 2, "batch_size": 8, **gan}
    return write_yaml(tmp_path / "official.yaml", cfg)


# ----------------------------------------------------------------------------------------------------
# The dataset zip and `ganaug export`.


def read_zip(path: Path):
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        meta = json.loads(zf.read("dataset.json"))
        images = {i.filename: Image.open(io.BytesIO(zf.read(i.filename))) for i in infos if i.filename.endswith(".png")}
        for im in images.values():
            im.load()
    return infos, meta, images


def test_export_writes_the_training_images_only_in_the_official_format(config_file: Path, tmp_path: Path) -> None:
    c = ("--config", str(config_file))
    assert invoke("split", *c).exit_code == 0
    r = invoke("export", *c, "--format", "stylegan2-ada")
    assert r.exit_code == 0, r.output
    path = Path(r.stdout.strip())
    assert path == tmp_path / "run" / "export" / "stylegan2-ada.zip"
    assert "12 training images (4 per class, 3 classes) of 1x16x16" in r.stderr and "0 = bars" in r.stderr

    infos, meta, images = read_zip(path)
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    names = [f"00000/img{i:08d}.png" for i in range(12)]
    assert sorted(images) == names and [i.filename for i in infos] == names + ["dataset.json"]
    manifest = json.loads((tmp_path / "run" / "split" / "manifest.json").read_text())
    from ganaug.config import load_config
    from ganaug.stages.split import load_split_data

    data, _ = load_split_data(load_config(config_file))
    assert meta["labels"] == [[n, int(y)] for n, y in zip(names, data.train.labels)]
    assert all(im.mode == "L" and im.size == (16, 16) for im in images.values())
    pixels = torch.stack([torch.from_numpy(np.array(images[n])) for n in names]).unsqueeze(1)
    hashes = image_hashes(pixels)
    assert hashes == manifest["train"]["hashes"]  # the training images, in order, pixel for pixel
    assert not set(hashes) & (set(manifest["val"]["hashes"]) | set(manifest["test"]["hashes"]))

    out = tmp_path / "elsewhere.zip"
    r = invoke("export", *c, "--format", "stylegan2-ada", "-o", str(out))
    assert r.exit_code == 0 and out.read_bytes() == path.read_bytes()  # fixed timestamps: the same bytes
    assert invoke("export", *c, "--format", "tfrecords").exit_code == 2


def test_dataset_zip_rgb_and_non_power_of_two_sides(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (1003, 3, 12, 12), dtype=torch.uint8)
    images[0] = 200
    labels = torch.arange(1003) % 3
    write_dataset_zip(images, labels, tmp_path / "d.zip")
    infos, meta, pngs = read_zip(tmp_path / "d.zip")
    assert pngs["00000/img00000000.png"].mode == "RGB" and pngs["00001/img00001002.png"].size == (16, 16)
    assert meta["labels"][1002] == ["00001/img00001002.png", 1002 % 3]
    assert (np.asarray(pngs["00000/img00000000.png"]) == 200).all()  # resized, not padded
    assert not list(tmp_path.glob(".d.zip*"))  # no temporary file left


# ----------------------------------------------------------------------------------------------------
# train.py's options.


def test_train_args_map_the_config() -> None:
    ada = train_args(gan_cfg(), data_zip="/d/x.zip", outdir="/o", conditional=True, seed=3)
    assert ada == ["--outdir=/o", "--data=/d/x.zip", "--cond=1", "--mirror=0", "--cfg=auto", "--kimg=16", "--gpus=1",
                   "--aug=ada", "--target=0.6", "--augpipe=bgc", "--snap=2", "--batch=32", "--gamma=0.0016", "--seed=3",
                   "--metrics=none"]
    fixed = train_args(gan_cfg(augment="fixed", augment_p=0.2, kimg=2.5, mirror=True, preset="cifar"),
                       data_zip="/d/x.zip", outdir="/o", conditional=False, seed=0, resume="/o/r/network-snapshot-000004.pkl")
    assert {"--aug=fixed", "--p=0.2", "--kimg=3", "--mirror=1", "--cond=0", "--cfg=cifar",
            "--resume=/o/r/network-snapshot-000004.pkl"} <= set(fixed)
    assert not any(a.startswith("--target") for a in fixed)
    none = train_args(gan_cfg(augment="none", augment_p=None, ada_target=None), data_zip="/d/x.zip", outdir="/o",
                      conditional=True, seed=0, kimg=7)
    assert "--aug=noaug" in none and "--kimg=7" in none
    assert not any(a.split("=")[0] in ("--p", "--target", "--augpipe", "--resume") for a in none)


# ----------------------------------------------------------------------------------------------------
# Following a run, failing, resuming.


def test_stats_follower_reads_complete_lines_only(tmp_path: Path) -> None:
    stats, metrics = tmp_path / "stats.jsonl", tmp_path / "metrics.jsonl"
    f = StatsFollower(metrics, kimg_offset=8)
    f.follow(stats)
    assert f.poll() == []  # no file yet
    line = json.dumps({"Progress/kimg": {"num": 1, "mean": 4.0, "std": 0}, "Progress/augment": {"num": 1, "mean": 0.25},
                       "Loss/G/loss": {"num": 2, "mean": 1.5}, "Loss/scores/real": {"num": 2, "mean": 0.0},
                       "Loss/r1_penalty": {"num": 0, "mean": float("nan")}})
    stats.write_text(line[:30])
    assert f.poll() == []
    with open(stats, "a") as fh:
        fh.write(line[30:] + "\n" + line[:10])
    (row,) = f.poll()
    assert row["kimg"] == 12.0 and row["augment/p"] == 0.25 and row["loss/G"] == 1.5 and row["D(x)"] == 0.5
    assert "loss/D_r1" not in row and read_jsonl(metrics) == [row]


def test_run_official_training_follows_the_run(stub_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "official"
    zip_path = tmp_path / "d.zip"
    zip_path.write_bytes(b"zip")
    res = run_official_training(gan_cfg(), repo=stub_repo, data_zip=zip_path, outdir=out, seed=5, kimg=16,
                                metrics_path=out / "metrics.jsonl", log_path=out / "train.log", progress=False)
    (call,) = calls(out)
    assert call["cwd"] == str(stub_repo) and call["path0"] == str(stub_repo)  # through the launcher, in the checkout
    assert "--kimg=16" in call["argv"] and "--seed=5" in call["argv"] and not any("resume" in a for a in call["argv"])
    assert call["args"]["ada_kimg"] == 500.0 and call["args"]["augment_p"] == 0  # gan.ada_kimg; p from 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["kimg"] for r in rows] == [0.064, 4, 8, 12, 16]
    assert [r["augment/p"] for r in rows] == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05])
    assert rows[0]["loss/G"] == 1.0 and rows[0]["D(x)"] == 0.5 and "loss/D_r1" not in rows[0]
    assert res.pkl.name == "network-snapshot-000016.pkl" and res.kimg == 16 and res.augment_p == pytest.approx(0.05)
    assert res.ran and res.resumed_from is None
    # Done already: a second call starts nothing.
    again = run_official_training(gan_cfg(), repo=stub_repo, data_zip=zip_path, outdir=out, seed=5, kimg=16,
                                  metrics_path=out / "metrics.jsonl", log_path=out / "train.log", progress=False)
    assert not again.ran and again.pkl == res.pkl and len(calls(out)) == 1


def test_a_failed_run_names_its_log(stub_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_MODE", "fail")
    out = tmp_path / "official"
    with pytest.raises(StageError) as e:
        run_official_training(gan_cfg(), repo=stub_repo, data_zip=tmp_path / "d.zip", outdir=out, seed=0, kimg=16,
                              metrics_path=out / "metrics.jsonl", log_path=out / "train.log", progress=False)
    msg = str(e.value)
    assert "status 1" in msg and "stub ran out of CUDA memory" in msg and str(out / "train.log") in msg
    assert "\n" not in msg


def test_resume_goes_on_from_the_newest_complete_snapshot(stub_repo: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "official"
    kw = dict(repo=stub_repo, data_zip=tmp_path / "d.zip", outdir=out, seed=0, kimg=16,
              metrics_path=out / "metrics.jsonl", log_path=out / "train.log", progress=False)
    monkeypatch.setenv("STUB_MODE", "crash")
    with pytest.raises(StageError):
        run_official_training(gan_cfg(), **kw)
    assert [r["kimg"] for r in read_jsonl(out / "metrics.jsonl")] == [0.064, 4, 8, 12]
    point = find_resume(out)
    assert point is not None and point.pkl.name == "network-snapshot-000008.pkl" and point.kimg == 8
    assert point.augment_p == pytest.approx(0.03)

    monkeypatch.setenv("STUB_MODE", "ok")
    res = run_official_training(gan_cfg(), **kw)
    first, second = calls(out)
    assert f"--resume={point.pkl}" in second["argv"] and "--kimg=8" in second["argv"]
    assert second["args"]["augment_p"] == pytest.approx(0.03)  # carried over through the launcher
    assert second["args"]["ada_kimg"] == 500.0  # not the 100 the official --resume sets
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["kimg"] for r in rows] == [0.064, 4, 8, 8.064, 12, 16]  # the lost tick at 12 is done again
    assert [r["augment/p"] for r in rows][3:] == pytest.approx([0.04, 0.05, 0.06])
    assert res.resumed_from == point.pkl and res.kimg == 16 and res.pkl.parent.name.startswith("00001-")
    log = (out / "train.log").read_text()
    assert log.count("# ganaug ") == 2 and "_launcher.py" in log


# ----------------------------------------------------------------------------------------------------
# The stage, through the CLI.


def test_train_gan_official_stage_resumes_and_records(stub_repo: Path, tmp_path: Path, image_folder: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ganaug.stages.official.require_training_env", lambda gpus: None)
    c = ("--config", str(official_config(tmp_path, image_folder, stub_repo)))
    run = tmp_path / "run"
    assert invoke("split", *c).exit_code == 0

    monkeypatch.setenv("STUB_MODE", "crash")
    r = invoke("train-gan", *c)
    assert r.exit_code == 2 and "train.log" in r.stderr.strip().splitlines()[-1]
    assert not (run / "gan").exists() and not (run / "gan.partial").exists()
    assert list((run / "gan.official").glob("0*/network-snapshot-000008.pkl"))

    monkeypatch.setenv("STUB_MODE", "ok")
    r = invoke("train-gan", *c)
    assert r.exit_code == 0, r.output
    gan = run / "gan"
    assert not (run / "gan.official").exists() and (gan / "official" / "dataset.zip").is_file()
    snapshots = sorted((gan / "official").glob("00001-*/network-snapshot-000008.pkl"))
    assert (gan / "network-final.pkl").read_bytes() == snapshots[0].read_bytes()
    ckpt = torch.load(gan / "checkpoint.pt", weights_only=True)
    assert ckpt["impl"] == "official" and ckpt["name"] == "stylegan2-ada" and ckpt["pkl"] == "network-final.pkl"
    assert ckpt["kwargs"] == {"resolution": 16, "channels": 1, "num_classes": 3} and ckpt["cur_nimg"] == 16000
    assert ckpt["step"] == 2000 and ckpt["repo"] == str(stub_repo) and ckpt["shape"] == [1, 16, 16]
    assert [row["kimg"] for row in read_jsonl(gan / "metrics.jsonl")] == [0.064, 4, 8, 8.064, 12, 16]
    seen = json.loads((gan / "trained_on.json").read_text())  # hashed from the dataset zip train.py read
    assert seen["n"] == 12 and "dataset zip" in seen["hashed_in"]
    assert sorted(seen["hashes"]) == sorted(json.loads((run / "split" / "manifest.json").read_text())["train"]["hashes"])
    assert (gan / "training.png").is_file() and json.loads((gan / "stage.json").read_text())["impl"] == "official"
    assert "up to date" in invoke("train-gan", *c).stderr


def test_a_swapped_official_snapshot_is_refused_before_it_is_unpickled(stub_repo: Path, tmp_path: Path,
                                                                       image_folder: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The official path records what a later stage reads, as the native one does: a pickle runs code when
    loaded, so a changed network-final.pkl must be caught before `sample` opens it."""
    monkeypatch.setattr("ganaug.stages.official.require_training_env", lambda gpus: None)
    c = ("--config", str(official_config(tmp_path, image_folder, stub_repo, kimg=4)))
    for cmd in ("split", "train-gan"):
        assert invoke(cmd, *c).exit_code == 0
    gan = tmp_path / "run" / "gan"
    rec = json.loads((gan / "stage.json").read_text())
    assert set(rec["outputs"]) == {"checkpoint.pt", "network-final.pkl"}
    ckpt = torch.load(gan / "checkpoint.pt", weights_only=True)
    assert ckpt["fingerprint"] == rec["fingerprint"] and ckpt["stage_config"] == rec["config"]
    opened = []
    monkeypatch.setattr(official_generator, "_import_legacy", lambda repo: opened.append(repo))
    (gan / "network-final.pkl").write_bytes(b"not the snapshot train.py wrote")
    line = one_line_error(invoke("sample", *c), "network-final.pkl", "changed on disk")
    assert not opened and not (tmp_path / "run" / "samples").exists(), line


def test_official_errors_are_one_line(stub_repo: Path, tmp_path: Path, image_folder: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = official_config(tmp_path, image_folder, stub_repo)
    c = ("--config", str(cfg))
    one_line_error(invoke("train-gan", *c, "--set", "gan.repo="), "gan.repo", "stylegan2")
    empty = tmp_path / "not-a-checkout"
    empty.mkdir()
    one_line_error(invoke("train-gan", *c, "--set", f"gan.repo={empty}"), "gan.repo", "train.py", "stylegan2")
    one_line_error(invoke("train-gan", *c, "--set", f"gan.repo={tmp_path / 'missing'}"), "gan.repo", "not a folder")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    one_line_error(invoke("train-gan", *c), "only on CUDA", "gan.name: stylegan2")
    run_dir = Path(yaml.safe_load(cfg.read_text())["out_dir"])
    shutil.rmtree(run_dir, ignore_errors=True)
    one_line_error(invoke("run", *c), "only on CUDA")  # `run` says so before any stage writes anything
    assert not run_dir.exists()
    one_line_error(invoke("train-gan", *c, "--set", "gan.augment=diffaugment"), "gan.augment")


# ----------------------------------------------------------------------------------------------------
# The real official code (skipped without a checkout).


def tiny_official_snapshot(repo: str, path: Path, c_dim: int = 3) -> Path:
    """A tiny official G/D pickled as training_loop.py does (persistence-decorated modules)."""
    if repo not in sys.path:
        sys.path.insert(0, repo)
    import copy

    from training.networks import Discriminator, Generator  # type: ignore[import-not-found]

    torch.manual_seed(0)
    common = dict(c_dim=c_dim, img_resolution=16, img_channels=1)
    G = Generator(z_dim=8, w_dim=16, **common, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=64, channel_max=16, num_fp16_res=4, conv_clamp=256))
    D = Discriminator(**common, channel_base=64, channel_max=16, epilogue_kwargs=dict(mbstd_group_size=4))
    data = dict(training_set_kwargs=dict(path="dataset.zip"), augment_pipe=None)
    for name, module in (("G", G), ("D", D), ("G_ema", G)):
        data[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


@needs_real_repo
def test_load_official_generator_on_the_cpu(tmp_path: Path) -> None:
    pkl = tiny_official_snapshot(REAL_REPO, tmp_path / "network-snapshot-000000.pkl")
    G = load_official_generator(pkl, REAL_REPO, resolution=12, channels=1, num_classes=3)
    assert G.z_dim == 8 and G.conditional
    z = torch.randn(12, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(3).repeat_interleave(4)
    x = G(z, y)
    assert x.shape == (12, 1, 12, 12) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    assert not torch.allclose(x[0], x[1])
    assert torch.equal(G(z, y), x)  # constant noise: the same latents give the same images
    x0 = G(z, y, truncation_psi=0.0)  # every sample at its class's mean w
    for cls in range(3):
        assert torch.allclose(x0[y == cls], x0[y == cls][:1].expand(4, -1, -1, -1), atol=1e-5)
    assert not torch.allclose(x0[0], x0[4])  # classes differ
    x5 = G(z, y, truncation_psi=0.5)
    assert (x5 - x0).abs().mean() < (x - x0).abs().mean()  # halfway toward the mean
    with pytest.raises(Exception, match="no official network snapshot"):
        load_official_generator(tmp_path / "none.pkl", REAL_REPO, resolution=12, channels=1, num_classes=3)
    with pytest.raises(Exception, match="3 classes but the data has 4"):
        load_official_generator(pkl, REAL_REPO, resolution=16, channels=1, num_classes=4)


@needs_real_repo
def test_sample_from_an_official_checkpoint(tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A checkout whose train.py is the stand-in, writing a real tiny official snapshot; the rest is the real code.
    repo = tmp_path / "hybrid-sg2ada"
    repo.mkdir()
    for name in ("dnnlib", "torch_utils", "training", "legacy.py"):
        (repo / name).symlink_to(Path(REAL_REPO, name).resolve())
    (repo / "train.py").write_text(STUB_TRAIN)
    monkeypatch.setenv("STUB_PKL", str(tiny_official_snapshot(str(repo), tmp_path / "tiny.pkl")))
    monkeypatch.setattr("ganaug.stages.official.require_training_env", lambda gpus: None)
    c = ("--config", str(official_config(tmp_path, image_folder, repo, kimg=4)), "--set", "sample.truncation=0")
    for cmd in ("split", "train-gan", "sample"):
        r = invoke(cmd, *c)
        assert r.exit_code == 0, r.output
    from ganaug.data.synthetic import load_synthetic

    images, labels = load_synthetic(tmp_path / "run" / "samples", (1, 16, 16), ["bars", "columns", "diagonal"])
    assert images.shape == (30, 1, 16, 16) and images.dtype == torch.uint8 and labels.bincount().tolist() == [10, 10, 10]
    # truncation 0 reached the generator: every fake of a class is its class's mean-w image, and classes differ.
    firsts = [images[labels == cls][0] for cls in range(3)]
    for cls in range(3):
        assert (images[labels == cls] == firsts[cls]).all()
    assert not torch.equal(firsts[0], firsts[1])
