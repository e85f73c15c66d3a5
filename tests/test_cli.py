"""Every command through Click's CliRunner on tiny generated data, and one-line errors for bad input."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from ganaug.config import load_config
from ganaug.data.synthetic import load_synthetic
from ganaug.errors import CheckpointError
from ganaug.stages.split import load_split_data
from ganaug.stages.train_gan import load_generator
from ganaug.utils import read_jsonl

from .conftest import invoke, make_folder, ok, tiny_config, write_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_every_stage_through_the_cli(config_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    c = ("--config", str(config_file))

    ok("split", *c)
    manifest = json.loads((run / "split" / "manifest.json").read_text())
    assert manifest["counts"]["train"] == {"bars": 4, "columns": 4, "diagonal": 4}
    assert (run / "config.yaml").is_file()

    ok("train-gan", *c)
    assert (run / "gan" / "checkpoint.pt").is_file()
    rows = read_jsonl(run / "gan" / "metrics.jsonl")
    assert len(rows) == 2 and {"loss/G", "loss/D", "D(x)", "D(G(z))", "epoch", "kimg"} <= set(rows[-1])
    assert sorted(p.name for p in (run / "gan" / "grids").iterdir()) == ["epoch-0001.png", "epoch-0002.png"]
    ckpt = torch.load(run / "gan" / "checkpoint.pt", weights_only=True)
    assert {"kind", "kwargs", "state_dict", "optimizer", "step", "rng", "config", "data_fingerprint"} <= set(ckpt)
    assert ckpt["data_fingerprint"] == manifest["fingerprint"]

    ok("sample", *c)
    assert len(list((run / "samples" / "images" / "columns").glob("*.png"))) == 10
    assert (run / "samples" / "grid.png").is_file()
    # Synthetic images share the real images' dtype and value range.
    cfg = load_config(config_file)
    data, _ = load_split_data(cfg)
    fake_x, fake_y = load_synthetic(run / "samples", tuple(data.train.images.shape[1:]), data.classes)
    assert fake_x.dtype == data.train.images.dtype == torch.uint8
    assert fake_x.shape[1:] == data.train.images.shape[1:]
    # ... and the same scale: each saved fake is G's tanh output mapped from [-1, 1] onto 0..255.
    G, _ = load_generator(run / "gan" / "checkpoint.pt")
    z = torch.randn(len(fake_y), G.z_dim, generator=torch.Generator().manual_seed(cfg.sample.seed))
    with torch.no_grad():
        raw = G(z[:5], fake_y[:5]).float()
    assert torch.equal(fake_x[:5], ((raw + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
    assert 1 < int(fake_x.max()) <= 255 and int(data.train.images.max()) == 230
    assert torch.bincount(fake_y).tolist() == [10, 10, 10]

    ok("train-clf", *c)
    for arm in ("real", "synthetic", "mixed-0.5", "real+5", "real-aug"):
        result = json.loads((run / "clf" / arm / "seed-0" / "result.json").read_text())
        assert result["budget"]["steps"] == 6 and sum(result["seen"].values()) == 6 * 8
        assert set(result["test"]) >= {"accuracy", "macro_f1", "per_class_accuracy", "confusion_matrix"}
        assert result["test"]["n"] == sum(manifest["counts"]["test"].values())
        assert (run / "clf" / arm / "seed-0" / "best.pt").is_file()
    assert json.loads((run / "clf" / "synthetic" / "seed-0" / "result.json").read_text())["seen"]["real"] == 0

    r = ok("train-clf", *c, "--mix", "p_real=0.8")
    assert (run / "clf" / "mixed-p0.8" / "seed-0" / "result.json").is_file()
    ok("train-clf", *c, "--data", "synthetic", "--augment", "classic", "--seed", "3")
    assert (run / "clf" / "synthetic-aug" / "seed-3" / "result.json").is_file()

    r = ok("compare", *c)
    full = (run / "compare" / "table.md").read_text()
    for arm in ("real", "synthetic", "mixed-0.5", "real+5", "real-aug", "mixed-p0.8"):
        assert f"| {arm} |" in full and f"\n{arm} " in r.output  # table.md in full; the terminal's compact table
    assert "| synthetic-aug |" not in full and "\nsynthetic-aug " not in r.output
    assert "Left out: 1 run(s) for seeds this config does not list (3)." in r.output
    assert "\nsynthetic-aug " in ok("compare", *c, "--set", "seeds=[0, 3]").output
    assert "| synthetic-aug | synthetic + classic aug | 1 |" in (run / "compare" / "table.md").read_text()
    r = ok("compare", *c)
    assert "baseline" in r.output
    for ext in ("md", "csv", "json"):
        assert (run / "compare" / f"table.{ext}").is_file()
    table = json.loads((run / "compare" / "table.json").read_text())
    real = next(row for row in table["rows"] if row["arm"] == "real")
    synth = next(row for row in table["rows"] if row["arm"] == "synthetic")
    assert synth["delta_mean"] == pytest.approx(synth["acc_mean"] - real["acc_mean"])


def test_run_skips_finished_stages_and_guards_changed_ones(config_file: Path, tmp_path: Path) -> None:
    c = ("--config", str(config_file), "--set", "arms=[{name: real, data: real}, {name: m, data: mixed, mix: {p_real: 0.5}}]")
    first = ok("run", *c)
    assert "\nreal " in first.output and "\nm " in first.output
    mtime = (tmp_path / "run" / "gan" / "checkpoint.pt").stat().st_mtime_ns
    again = ok("run", *c)
    assert "7 cells, 7 done, 0 to run" in again.stderr
    assert (tmp_path / "run" / "gan" / "checkpoint.pt").stat().st_mtime_ns == mtime
    changed = invoke("run", *c, "--set", "gan.epochs=3")
    assert changed.exit_code == 2
    assert "gan.epochs: 2 -> 3" in changed.stderr and "--force" in changed.stderr
    assert (tmp_path / "run" / "gan" / "checkpoint.pt").stat().st_mtime_ns == mtime  # nothing lost
    ok("run", *c, "--set", "gan.epochs=3", "--force")
    assert (tmp_path / "run" / "gan" / "checkpoint.pt").stat().st_mtime_ns != mtime
    assert not list(tmp_path.glob("run/**/*.partial"))


def test_dry_run_prints_the_plan_and_writes_nothing(config_file: Path, tmp_path: Path) -> None:
    r = ok("run", "--config", str(config_file), "--dry-run", "--set", "seeds=[0, 1]")
    assert "plan for 'tiny'" in r.output and "real-aug seed 1" in r.output and "seeds:" in r.output
    assert not (tmp_path / "run").exists()


def test_list_shows_the_registries() -> None:
    r = ok("list")
    for name in ("mnist-5k", "digits", "imagefolder", "cifar100", "dcgan", "cgan", "small-cnn", "resnet18"):
        assert name in r.output


def test_bundled_default_config_runs_every_stage_when_shrunk(tmp_path: Path) -> None:
    tiny = ["--set", f"out_dir={tmp_path / 'default'}", "--set", "gan.epochs=1", "--set", "sample.n_per_class=20",
            "--set", "classifier.steps=4", "--set", "classifier.eval_every=2", "--set", "seeds=[0]",
            "--set", "arms.3.mix.add=10", "--set", "evaluate.domain.steps=20", "--set", "evaluate.kid_subsets=5"]
    r = ok("run", "--config", str(CONFIGS / "mnist5k-cgan.yaml"), *tiny)
    for arm in ("real", "synthetic", "mixed-0.8", "real+1000", "real-aug", "mixed-0.8-aug"):
        assert f"\n{arm} " in r.output
    r = ok("run", "--config", str(CONFIGS / "quick.yaml"), "--set", f"out_dir={tmp_path / 'quick'}", "--set", "gan.epochs=1",
           "--set", "classifier.steps=4", "--set", "seeds=[0]")
    assert "\nmixed-0.8 " in r.output


# ----------------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit status 2, no traceback.


def one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_unknown_key(config_file: Path) -> None:
    one_line_error(invoke("split", "-c", str(config_file), "--set", "split.n_per_clas=3"),
                   "'split.n_per_clas'", "did you mean 'split.n_per_class'")


def test_unknown_dataset_gan_and_classifier(config_file: Path) -> None:
    one_line_error(invoke("split", "-c", str(config_file), "--set", "data.source=imagefolders"),
                   "unknown dataset 'imagefolders'", "did you mean 'imagefolder'")
    one_line_error(invoke("train-gan", "-c", str(config_file), "--set", "gan.name=dcgam"), "unknown GAN 'dcgam'")
    one_line_error(invoke("train-clf", "-c", str(config_file), "--set", "classifier.name=smallcnn"),
                   "unknown classifier 'smallcnn'", "small-cnn")


def test_p_real_outside_unit_interval(config_file: Path) -> None:
    one_line_error(invoke("train-clf", "-c", str(config_file), "--mix", "p_real=1.5"), "p_real", "between 0 and 1")
    one_line_error(invoke("run", "-c", str(config_file), "--set", "arms.2.mix.p_real=-0.2"),
                   "'arms[2].mix.p_real'", "between 0 and 1")


def test_empty_class_folder(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "imgs")
    (folder / "nothing").mkdir()
    cfg = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path, folder))
    one_line_error(invoke("split", "-c", str(cfg)), "nothing' has no images")
    assert not (tmp_path / "run" / "split").exists()


def test_corrupt_image(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "imgs")
    (folder / "bars" / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    cfg = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path, folder))
    one_line_error(invoke("split", "-c", str(cfg)), "bars/bad.jpg", "bad_images: skip")
    r = ok("split", "-c", str(cfg), "--set", "data.bad_images=skip")
    assert "skipped 1 unreadable image(s): bars/bad.jpg" in r.stderr


def test_missing_checkpoint_and_missing_inputs(config_file: Path) -> None:
    one_line_error(invoke("train-gan", "-c", str(config_file)), "no split", "run `ganaug split")
    ok("split", "-c", str(config_file))
    one_line_error(invoke("sample", "-c", str(config_file)), "no trained GAN", "ganaug train-gan")
    one_line_error(invoke("train-clf", "-c", str(config_file), "--data", "synthetic"), "no synthetic set")
    one_line_error(invoke("compare", "-c", str(config_file)), "no finished classifier runs")


def test_truncated_checkpoint(config_file: Path, tmp_path: Path) -> None:
    c = ("-c", str(config_file), "--set", "gan.epochs=1")
    ok("split", *c)
    ok("train-gan", *c)
    ckpt = tmp_path / "run" / "gan" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    # The stage record holds the checkpoint's content hash, so the damage is caught before it is read ...
    one_line_error(invoke("sample", *c), "checkpoint.pt' changed on disk since `ganaug train-gan` wrote it", "--force")
    assert not (tmp_path / "run" / "samples").exists()
    # ... and a truncated checkpoint read directly says so.
    with pytest.raises(CheckpointError, match="cannot be read.*truncated"):
        load_generator(ckpt)


def test_config_file_problems(tmp_path: Path) -> None:
    one_line_error(invoke("split", "-c", str(tmp_path / "missing.yaml")), "does not exist")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsplit: [1, 2\n")
    one_line_error(invoke("split", "-c", str(bad)), "not valid YAML at line")
    bad.write_text(yaml.safe_dump({"gan": {"epochs": "many"}}))
    one_line_error(invoke("split", "-c", str(bad)), "'gan.epochs' must be an integer")


def test_n_per_class_larger_than_a_class(config_file: Path) -> None:
    one_line_error(invoke("split", "-c", str(config_file), "--set", "split.n_per_class=13"),
                   "class 'bars' has 14 images", "13 training + 3 validation")


def test_unconditional_gan_cannot_make_a_labelled_set(config_file: Path) -> None:
    c = ("-c", str(config_file), "--set", "gan.name=dcgan", "--set", "gan.epochs=1")
    ok("split", *c)
    ok("train-gan", *c)
    one_line_error(invoke("sample", *c), "unconditional", "per_class: true")


def test_one_dcgan_per_class_samples_a_labelled_set(config_file: Path, tmp_path: Path) -> None:
    c = ("-c", str(config_file), "--set", "gan.name=dcgan", "--set", "gan.per_class=true", "--set", "gan.epochs=2")
    ok("split", *c)
    ok("train-gan", *c)
    grids = sorted(p.name for p in (tmp_path / "run" / "gan" / "grids").iterdir())
    assert grids[0] == "class-0-epoch-0001.png" and len(grids) == 6  # 3 classes x 2 epochs
    ok("sample", *c)
    from ganaug.data.synthetic import read_synthetic

    images, labels, _ = read_synthetic(tmp_path / "run" / "samples")
    assert torch.bincount(labels).tolist() == [10, 10, 10] and images.dtype == torch.uint8
