"""The trust machinery must be able to fail: one test per way the audit, the comparison or a fingerprint
could pass what it should not (each of these failed on the code before the repair)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

from ganaug.config import load_config
from ganaug.errors import ConfigError
from ganaug.stages import run_compare, run_split, run_train_clf
from ganaug.stages import train_clf as clf_stage
from ganaug.stages.records import GAN, SAMPLES, stage_fingerprint
from ganaug.utils import file_sha256

from .conftest import finished_run, invoke, write_yaml

ARMS = [{"name": "real", "data": "real"}, {"name": "real-aug", "data": "real", "augment": "classic"},
        {"name": "mixed-0.5", "data": "mixed", "mix": {"p_real": 0.5}}]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run: three arms, three seeds."""
    return finished_run(tmp_path_factory.mktemp("trust"), ARMS)


def _copy(config: Path, tmp_path: Path) -> Path:
    """The finished run and its config copied, so a test can change them."""
    data = __import__("yaml").safe_load(config.read_text())
    shutil.copytree(data["out_dir"], tmp_path / "run")
    data["out_dir"] = str(tmp_path / "run")
    return write_yaml(tmp_path / "cfg.yaml", data)


def _table(config: Path) -> Dict[str, Any]:
    return json.loads((Path(load_config(config).out_dir) / "compare" / "table.json").read_text())


def _check(table: Dict[str, Any], name_start: str) -> Dict[str, str]:
    return next(c for c in table["audit"] if c["check"].startswith(name_start))


# ----------------------------------------------------------------------------------------------------
# 1. The split check compares indices across parts; identical pixels of distinct images are a note.


def test_a_split_that_shares_an_index_is_a_protocol_violation(finished: Path, tmp_path: Path) -> None:
    cfg_file = _copy(finished, tmp_path)
    cfg = load_config(cfg_file)
    root = Path(cfg.out_dir)
    # A buggy split: training image 0 is test image 0 (index, id and hash), and its record agrees.
    manifest = json.loads((root / "split" / "manifest.json").read_text())
    for k in ("indices", "ids", "hashes"):
        manifest["train"][k][0] = manifest["test"][k][0]
    (root / "split" / "manifest.json").write_text(json.dumps(manifest))
    rec = json.loads((root / "split" / "stage.json").read_text())
    rec["outputs"]["manifest.json"] = file_sha256(root / "split" / "manifest.json")
    (root / "split" / "stage.json").write_text(json.dumps(rec))

    md = run_compare(cfg)
    check = _check(_table(cfg_file), "split")
    assert check["status"] == "violation", check
    assert "PROTOCOL VIOLATION: split" in md and "share 1 image index" in check["detail"]
    assert f"index {manifest['test']['indices'][0]}" in check["detail"]


def test_identical_pixels_of_distinct_images_are_a_note_not_a_pass() -> None:
    from ganaug.stages.audit import split_check

    manifest = {p: {"indices": idx, "ids": [f"f{i}" for i in idx], "hashes": hs}
                for p, idx, hs in (("train", [0, 1], ["a", "b"]), ("val", [2], ["c"]), ("test", [3, 4], ["a", "d"]))}
    check = split_check(manifest)
    assert check["status"] == "note" and "1 test image(s)" in check["detail"] and "identical pixels" in check["detail"]
    manifest["test"]["hashes"] = ["e", "d"]
    assert split_check(manifest)["status"] == "ok"


# ----------------------------------------------------------------------------------------------------
# 2. What the audit checks was counted where it happened, not written as a constant.


def test_a_run_that_peeked_at_the_test_set_is_caught(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(config_file, ["arms=[{name: real, data: real}]"])
    run_split(cfg)
    real_load, real_train = clf_stage.load_split_data, clf_stage.train_classifier
    held: Dict[str, Any] = {}

    def load(c):
        data, manifest = real_load(c)
        held["data"] = data
        return data, manifest

    def peeking_train(model, **kw):  # a loop that logs test accuracy while it trains: a second test evaluation
        res = real_train(model, **kw)
        clf_stage.predict(res["model"], held["data"].test.images, device=kw["device"], amp_dtype=None)
        return res

    monkeypatch.setattr(clf_stage, "load_split_data", load)
    monkeypatch.setattr(clf_stage, "train_classifier", peeking_train)
    run_train_clf(cfg, progress=False)
    said = run_compare(cfg)
    md = (Path(cfg.out_dir) / "compare" / "table.md").read_text()
    assert "PROTOCOL VIOLATION: model selection never used the test set" in said  # on the terminal too
    assert "PROTOCOL VIOLATION: model selection never used the test set" in md
    assert "real seed 0 read the test set 2 times" in md


def test_a_run_that_validated_on_a_fake_is_caught(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(config_file, ["arms=[{name: real, data: real}]"])
    run_split(cfg)
    real_train = clf_stage.train_classifier

    def leaky_train(model, **kw):  # one validation image swapped for a generated one
        val = kw["val_images"].clone()
        val[0] = torch.randint(0, 256, val[0].shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        return real_train(model, **{**kw, "val_images": val})

    monkeypatch.setattr(clf_stage, "train_classifier", leaky_train)
    run_train_clf(cfg, progress=False)
    said = run_compare(cfg)
    md = (Path(cfg.out_dir) / "compare" / "table.md").read_text()
    assert "PROTOCOL VIOLATION: no synthetic image in validation or test" in said  # on the terminal too
    assert "PROTOCOL VIOLATION: no synthetic image in validation or test" in md
    assert "real seed 0 validated on 1 image(s) that are not the split's validation images" in md


# ----------------------------------------------------------------------------------------------------
# 3. The Holm family is the config's arms, whatever else lies on disk.


def test_a_stray_arm_on_disk_never_changes_the_configured_verdicts(finished: Path, tmp_path: Path) -> None:
    cfg_file = _copy(finished, tmp_path)
    before = {r["arm"]: r for r in _table(cfg_file)["rows"]}
    assert invoke("train-clf", "-c", str(cfg_file), "--mix", "p_real=0.25").exit_code == 0
    said = run_compare(load_config(cfg_file))
    md = (Path(load_config(cfg_file).out_dir) / "compare" / "table.md").read_text()
    table = _table(cfg_file)
    rows = {r["arm"]: r for r in table["rows"]}
    assert set(rows) == set(before)  # the configured arms only
    for arm in ("real-aug", "mixed-0.5"):
        assert rows[arm]["delta_p_adj"] == before[arm]["delta_p_adj"] and rows[arm]["verdict"] == before[arm]["verdict"]
    assert "Holm correction over 2 arms" in md
    extra = {r["arm"]: r for r in table["extra_rows"]}
    assert list(extra) == ["mixed-p0.25"]
    assert "Other runs found on disk" in md and "| mixed-p0.25 |" in md.split("Other runs found on disk")[1]
    assert "Other runs found on disk" in said and "mixed-p0.25 " in said.split("Other runs found on disk")[1]


# ----------------------------------------------------------------------------------------------------
# 4. No verdict from degenerate evidence.


def _results(base: List[float], arm: List[float], n_test: int = 100) -> Dict[str, List[Dict[str, Any]]]:
    def run(name: str, seed: int, acc: float) -> Dict[str, Any]:
        return {"arm": name, "seed": seed, "arm_config": {"name": name, "data": "real"}, "gan_seed": None,
                "test": {"accuracy": acc, "macro_f1": acc, "n": n_test}, "val": {"accuracy": acc, "n": 10}}
    return {"real": [run("real", s, a) for s, a in enumerate(base)],
            "aug": [run("aug", s, a) for s, a in enumerate(arm)]}


@pytest.mark.parametrize("base, arm, words", [
    ([0.80, 0.81, 0.83], [0.85, 0.86, 0.88], "zero spread"),  # +5 test images every time
    ([0.80, 0.83], [0.85, 0.87], "2 pairs"),
])
def test_degenerate_evidence_gives_no_verdict(config_file: Path, base: List[float], arm: List[float], words: str) -> None:
    from ganaug.stages.compare import summarize

    cfg = load_config(config_file, ["arms=[{name: real, data: real}, {name: aug, data: real, augment: classic}]"])
    row = next(r for r in summarize(cfg, _results(base, arm)) if r["arm"] == "aug")
    assert row["verdict"] not in ("better", "worse") and row["verdict"].startswith("undecided"), row["verdict"]
    assert words in row["verdict_reason"]
    if words == "zero spread":
        assert row["delta_p_t"] is None and row["delta_p_sign"] == pytest.approx(0.25)


def test_the_wilcoxon_note_follows_alpha(finished: Path, tmp_path: Path) -> None:
    cfg_file = _copy(finished, tmp_path)
    run_compare(load_config(cfg_file, ["compare.alpha=0.1"]))
    md = (Path(load_config(cfg_file).out_dir) / "compare" / "table.md").read_text()
    assert "it needs at least 5 pairs to reach 0.1" in md


# ----------------------------------------------------------------------------------------------------
# 6. Fingerprints cover only what changes a result.


def test_gan_fingerprints_ignore_keys_that_change_no_result(config_file: Path) -> None:
    # A key of another family is an error naming the family (gan.d_cond is the cgan's); cosmetic keys change nothing.
    with pytest.raises(ConfigError, match=r"'gan.d_cond' applies to cgan, not dcgan"):
        load_config(config_file, ["gan.name=dcgan", "gan.per_class=true", "gan.width=8", "gan.d_cond=projection"])
    base = load_config(config_file, ["gan.name=dcgan", "gan.per_class=true"])
    for change in ("gan.grid_every=3", "data.download=false"):
        other = load_config(config_file, ["gan.name=dcgan", "gan.per_class=true", change])
        assert stage_fingerprint(other, GAN) == stage_fingerprint(base, GAN), change
        assert stage_fingerprint(other, SAMPLES) == stage_fingerprint(base, SAMPLES), change
    cgan = load_config(config_file)
    assert stage_fingerprint(load_config(config_file, ["gan.d_cond=projection"]), GAN) != stage_fingerprint(cgan, GAN)
    assert stage_fingerprint(load_config(config_file, ["gan.width=9"]), GAN) != stage_fingerprint(cgan, GAN)
    with pytest.raises(ConfigError, match=r"'gan.width' applies to cgan, dcgan, vae, not stylegan2"):
        load_config(config_file, ["gan.name=stylegan2", "gan.preset=tiny", "gan.z_dim=null", "gan.width=7"])


# Fingerprints that ganaug wrote before unused keys were pinned: run folders made then must stay up to date.
BUNDLED_FINGERPRINTS = {
    "configs/mnist5k-cgan.yaml": {
        "split": "08b0b7800e9bbb49",
        "gan": "c176a89343a2cc04",
        "samples": "26a7476c2111ff87",
        "clf": {
            "real": "2d323e2c70f53509",
            "synthetic": "4543281ec682ecf1",
            "mixed-0.8": "93b3905f97f921f1",
            "real+1000": "2aed710326b5e8a5",
            "real-aug": "5895fba5b0370e29",
            "mixed-0.8-aug": "fc916359e851f91b"
        }
    },
    "configs/mnist5k-stylegan2.yaml": {
        "split": "08b0b7800e9bbb49",
        "gan": "940b10a9524be480",
        "samples": "ac5ba59d93d931ce",
        "clf": {
            "real": "2d323e2c70f53509",
            "synthetic": "97a61acacc417be0",
            "mixed-0.8": "40a2869e75cb86a8",
            "real+1000": "bac745d577ed2f72",
            "real-aug": "5895fba5b0370e29",
            "mixed-0.8-aug": "6249a620cbd35553"
        }
    }
}


@pytest.mark.parametrize("config", list(BUNDLED_FINGERPRINTS))
def test_the_bundled_configs_keep_their_fingerprints(config: str) -> None:
    from ganaug.stages.records import SPLIT, clf_fingerprint

    cfg = load_config(Path(__file__).resolve().parents[1] / config)
    want = BUNDLED_FINGERPRINTS[config]
    assert {s.name: stage_fingerprint(cfg, s) for s in (SPLIT, GAN, SAMPLES)} == {k: want[k] for k in ("split", "gan", "samples")}
    assert {a.name: clf_fingerprint(cfg, a, 0) for a in cfg.all_arms} == want["clf"]


# ----------------------------------------------------------------------------------------------------
# 7. A verdict from classifiers still improving at the end of their budget is flagged.


def _curve(run_dir: Path, accs: List[float], every: int = 100) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": every * (i + 1), "acc/val": a}) + "\n"
                                                   for i, a in enumerate(accs)))


def test_the_budget_check_flags_arms_still_improving(tmp_path: Path) -> None:
    from ganaug.stages.budget import budget_flags

    rising = [[0.5, 0.6, 0.7, 0.75, 0.80, 0.86], [0.5, 0.62, 0.7, 0.74, 0.81, 0.85], [0.52, 0.6, 0.69, 0.76, 0.8, 0.87]]
    flat = [[0.5, 0.8, 0.85, 0.86, 0.86, 0.86], [0.55, 0.8, 0.86, 0.85, 0.86, 0.86], [0.5, 0.82, 0.85, 0.86, 0.85, 0.86]]
    results: Dict[str, List[Dict[str, Any]]] = {}
    for arm, curves in (("rising", rising), ("flat", flat)):
        results[arm] = []
        for seed, accs in enumerate(curves):
            d = tmp_path / arm / f"seed-{seed}"
            _curve(d, accs)
            best = max(range(len(accs)), key=lambda i: (accs[i], i))
            results[arm].append({"arm": arm, "seed": seed, "_dir": str(d), "budget": {"steps": 600, "batch_size": 8},
                                 "val": {"accuracy": accs[best], "selected_step": 100 * (best + 1), "n": 200}})
    flags = budget_flags(results)
    assert set(flags) == {"rising"}
    f = flags["rising"]
    # Each seed's rise: its two readings after step 480 against its two just before, averaged over seeds, and tested
    # against the seeds' spread of rises (one-sided paired t-test), not against the spread of their levels.
    rises = [(c[4] + c[5]) / 2 - (c[2] + c[3]) / 2 for c in rising]
    assert f["seeds_best_in_tail"] == 3 and f["readings"] == 2 and f["gain"] == pytest.approx(sum(rises) / 3)
    assert f["test"] == "t" and f["p"] < 0.05


def test_the_table_shows_the_budget_flag_and_the_command_to_test_it(finished: Path, tmp_path: Path) -> None:
    cfg_file = _copy(finished, tmp_path)
    cfg = load_config(cfg_file)
    root = Path(cfg.out_dir)
    for run in (root / "clf" / "real-aug").glob("seed-*"):  # still climbing over its last validation passes
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for i, row in enumerate(rows):
            row["acc/val"] = 0.3 + 0.2 * i
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        result = json.loads((run / "result.json").read_text())
        result["val"].update(accuracy=rows[-1]["acc/val"], selected_step=rows[-1]["step"])  # selection agrees
        (run / "result.json").write_text(json.dumps(result))
    said = run_compare(cfg)
    md = (Path(cfg.out_dir) / "compare" / "table.md").read_text()
    row = next(r for r in _table(cfg_file)["rows"] if r["arm"] == "real-aug")
    assert row["budget_flag"] is not None and "budget?" in md.split("\n")[5]  # under "# name", the header and ---
    assert "budget?" in next(line for line in said.splitlines() if line.startswith("real-aug "))
    assert "still improving" in md and "--sweep classifier.steps=" in md
