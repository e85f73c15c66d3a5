"""Run folders: stages are whole or absent, skipped when up to date, and depend only on what they use."""

from pathlib import Path

import pytest

from ganaug.config import load_config
from ganaug.errors import StageError
from ganaug.stages import run_sample, run_split, run_train_clf, run_train_gan
from ganaug.stages import train_gan as train_gan_stage
from ganaug.stages.records import clf_fingerprint, read_record


def test_a_failed_stage_leaves_the_previous_output_untouched(config_file: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(config_file, ["gan.epochs=1"])
    run_split(cfg)
    run_train_gan(cfg, progress=False)
    gan = tmp_path / "run" / "gan"
    before = (gan / "checkpoint.pt").read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # the user pressed Ctrl-C half way through

    monkeypatch.setattr(train_gan_stage, "train_generator", boom)
    with pytest.raises(KeyboardInterrupt):
        run_train_gan(cfg, force=True, progress=False)
    assert (gan / "checkpoint.pt").read_bytes() == before
    assert read_record(gan) is not None
    assert not (tmp_path / "run" / "gan.partial").exists()


def test_classifier_runs_depend_only_on_what_they_use(config_file: Path) -> None:
    cfg = load_config(config_file)
    other_gan = load_config(config_file, ["gan.epochs=5"])
    other_aug = load_config(config_file, ["augment.degrees=5"])
    real, synthetic, aug = cfg.arms[0], cfg.arms[1], cfg.arms[4]
    assert clf_fingerprint(cfg, real, 0) == clf_fingerprint(other_gan, real, 0) == clf_fingerprint(other_aug, real, 0)
    assert clf_fingerprint(cfg, synthetic, 0) != clf_fingerprint(other_gan, synthetic, 0)
    assert clf_fingerprint(cfg, aug, 0) != clf_fingerprint(other_aug, aug, 0)
    assert clf_fingerprint(cfg, real, 0) != clf_fingerprint(cfg, real, 1)


def test_a_retrained_gan_blocks_stale_samples_but_not_real_arms(config_file: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    cfg = load_config(config_file, ["gan.epochs=1", "arms=[{name: real, data: real}, {name: s, data: synthetic}]"])
    run_split(cfg)
    run_train_gan(cfg, progress=False)
    run_sample(cfg)
    run_train_clf(cfg, progress=False)
    cfg2 = load_config(config_file, ["gan.epochs=2", "arms=[{name: real, data: real}, {name: s, data: synthetic}]"])
    run_train_gan(cfg2, force=True, progress=False)
    with pytest.raises(StageError, match="synthetic set .* was made by a different config"):
        run_sample(cfg2)
    with pytest.raises(StageError, match="classifier run 's' seed 0"):
        run_train_clf(cfg2, progress=False)
    real_run = Path(cfg.out_dir) / "clf" / "real" / "seed-0"
    before = {f.name: f.read_bytes() for f in real_run.iterdir()}
    run_train_clf(cfg2, arms=[cfg2.arms[0]], progress=False)  # real-only runs stay valid: skipped, no error
    assert "train-clf: 1 run(s) up to date" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in real_run.iterdir()} == before  # not retrained


def test_test_set_is_scored_once_and_never_used_for_selection(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from ganaug.classifiers import train as train_loop
    from ganaug.stages import train_clf as clf_stage
    from ganaug.stages.split import load_split_data

    cfg = load_config(config_file, ["arms=[{name: real, data: real}]", "seeds=[0, 1]"])
    run_split(cfg)
    data, _ = load_split_data(cfg)
    calls = {"test": 0, "val": 0}
    real_predict = train_loop.predict

    def counting_predict(model, images, **kw):
        if images.shape == data.test.images.shape and bool((images == data.test.images).all()):
            calls["test"] += 1
        elif images.shape == data.val.images.shape and bool((images == data.val.images).all()):
            calls["val"] += 1
        return real_predict(model, images, **kw)

    monkeypatch.setattr(train_loop, "predict", counting_predict)
    monkeypatch.setattr(clf_stage, "predict", counting_predict)
    run_train_clf(cfg, progress=False)
    assert calls["test"] == 2  # once per (arm, seed)
    assert calls["val"] == 2 * 2  # steps 6, eval_every 3: two validation passes per run
    result = json.loads((Path(cfg.out_dir) / "clf" / "real" / "seed-1" / "result.json").read_text())
    assert result["protocol"]["test_evaluations"] == 1 and result["val"]["selected_step"] in (3, 6)


def test_compare_leaves_out_runs_made_by_another_config(config_file: Path) -> None:
    import json

    from ganaug.stages import run_compare

    cfg = load_config(config_file, ["arms=[{name: real, data: real}, {name: aug, data: real, augment: classic}]"])
    run_split(cfg)
    run_train_clf(cfg, progress=False)
    run_compare(cfg)
    full = Path(cfg.out_dir) / "compare" / "table.md"
    assert "| aug |" in full.read_text()
    changed = load_config(config_file, ["arms=[{name: real, data: real}, {name: aug, data: real, augment: classic}]",
                                        "augment.degrees=3"])
    said = run_compare(changed)
    table = full.read_text()
    assert "| real |" in table and "| aug |" not in table
    assert "Left out, made by another config: aug/seed-0" in table
    assert [line.split()[0] for line in said.split("\n\n")[0].splitlines()[2:]] == ["real"]  # the terminal's table
    assert "Left out, made by another config: aug/seed-0" in said  # a warning, on the terminal too
    assert json.loads((Path(cfg.out_dir) / "compare" / "table.json").read_text())["left_out"] == ["aug/seed-0"]
    with pytest.raises(StageError, match="every classifier run .* was made by another config"):
        run_compare(load_config(config_file, ["arms=[{name: real, data: real}, {name: aug, data: real, augment: classic}]",
                                              "classifier.steps=7"]))
