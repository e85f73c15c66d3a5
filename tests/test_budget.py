"""The budget checks: a classifier arm, or a generator, still improving at the end of its budget is flagged against
its own seeds' reading noise, at a stated false-alarm rate; a curve too short to check is said, never skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pytest
import yaml

from ganaug.config import Rep, load_config
from ganaug.stages import run_compare
from ganaug.stages.layout import paths

from .conftest import finished_run, make_folder, tiny_config, write_yaml

VAL_N = 500  # a validation set of 500 images: a reading's binomial standard error is about 1.8 points at 80%
READINGS = 30  # one validation reading every 100 steps of 3,000: the last 20% holds 6 of them


def _clf_run(root: Path, arm: str, seed: int, accs: Sequence[float], steps: int = 100 * READINGS,
             at: Optional[Sequence[int]] = None, val_n: int = VAL_N) -> Dict[str, Any]:
    """A finished classifier run as `compare` reads it: metrics.jsonl (as the training loop ticks) and result.json."""
    at = list(at) if at is not None else [100 * (i + 1) for i in range(len(accs))]
    d = root / arm / f"seed-{seed}"
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "lr": 0.001, "seconds": 0.1, "loss/train": 0.5, "acc/train": 0.8, "acc/val": a}) + "\n"
        for s, a in zip(at, accs)))
    best = max(range(len(accs)), key=lambda i: (accs[i], i))
    return {"arm": arm, "seed": seed, "_dir": str(d), "budget": {"steps": steps, "batch_size": 8},
            "val": {"accuracy": accs[best], "selected_step": at[best], "n": val_n}}


def _flat_then_up(level: float, rise: float) -> List[float]:
    """Flat at `level`, then `rise` higher over the last 20% of the readings."""
    tail = READINGS // 5
    return [level] * (READINGS - tail) + [level + rise] * tail


OFFSETS = [-0.03, -0.015, 0.0, 0.015, 0.03]  # five seeds' levels, -3..+3 points around 80%


# ----------------------------------------------------------------------------------------------------
# The classifier check.


def test_identical_rising_curves_are_flagged_whatever_the_seeds_levels(tmp_path: Path) -> None:
    from ganaug.stages.budget import budget_flags

    results = {"rising": [_clf_run(tmp_path, "rising", s, _flat_then_up(0.80 + o, 0.02)) for s, o in enumerate(OFFSETS)],
               "flat": [_clf_run(tmp_path, "flat", s, _flat_then_up(0.80 + o, 0.0)) for s, o in enumerate(OFFSETS)],
               "same-level": [_clf_run(tmp_path, "same-level", s, _flat_then_up(0.80, 0.02)) for s in range(5)]}
    flags = budget_flags(results)
    # The levels' spread (2.4 points) is between seeds; the rise (2 points) is within each: it is flagged either way.
    assert set(flags) == {"rising", "same-level"}
    f = flags["rising"]
    assert f["n"] == 5 and f["gain"] == pytest.approx(0.02)


def test_a_curve_with_no_reading_before_the_tail_is_reported_unchecked(tmp_path: Path) -> None:
    from ganaug.stages.budget import budget_checks

    late = [_clf_run(tmp_path, "late", s, [0.5, 0.6, 0.7], steps=1000, at=[900, 950, 1000]) for s in range(3)]
    mixed = [_clf_run(tmp_path, "mixed", 0, [0.5, 0.6, 0.7], steps=1000, at=[900, 950, 1000])] + [
        _clf_run(tmp_path, "mixed", s, _flat_then_up(0.8, 0.0)) for s in (1, 2, 3)]
    checks = budget_checks({"late": late, "mixed": mixed})
    assert not checks["late"]["flag"] and checks["late"]["n"] == 0
    assert [u["seed"] for u in checks["late"]["unchecked"]] == [0, 1, 2]
    assert "before step 800" in checks["late"]["unchecked"][0]["reason"]
    # One short seed is said too; the others are still checked.
    assert [u["seed"] for u in checks["mixed"]["unchecked"]] == [0] and checks["mixed"]["n"] == 3


def _simulate(rng: np.random.Generator, sets: int, seeds: int, rise: float) -> float:
    """Share of `sets` synthetic arms flagged: `seeds` curves of READINGS binomial readings on VAL_N images, each
    at its own level, the true accuracy `rise` higher by the end (a straight climb over the last 20%)."""
    from ganaug.stages.budget import BUDGET_ALPHA, budget_test, reading_se, window_stats

    steps = [100 * (i + 1) for i in range(READINGS)]
    tail = READINGS // 5
    climb = np.concatenate([np.zeros(READINGS - tail), rise * np.arange(1, tail + 1) / tail])
    flagged = 0
    for _ in range(sets):
        levels = rng.uniform(0.7, 0.85, seeds)
        accs = rng.binomial(VAL_N, levels[:, None] + climb[None, :]) / VAL_N
        stats = [window_stats(list(zip(steps, a)), end=steps[-1]) for a in accs]
        flagged += budget_test(stats, floor=reading_se(float(accs.mean()), VAL_N), alpha=BUDGET_ALPHA)["flag"]
    return flagged / sets


def test_flat_noisy_curves_are_flagged_at_most_at_the_stated_rate_and_rising_ones_almost_always() -> None:
    from ganaug.stages.budget import BUDGET_ALPHA

    rng = np.random.default_rng(0)
    sets = 2000
    tolerance = 3 * np.sqrt(BUDGET_ALPHA * (1 - BUDGET_ALPHA) / sets)  # three Monte-Carlo standard errors
    assert _simulate(rng, sets, seeds=5, rise=0.0) <= BUDGET_ALPHA + tolerance
    assert _simulate(rng, sets, seeds=2, rise=0.0) <= BUDGET_ALPHA + tolerance  # the few-seeds rule too
    assert _simulate(rng, 500, seeds=5, rise=0.06) >= 0.95  # clearly rising: 6 points over the last 20%


# ----------------------------------------------------------------------------------------------------
# The generator check.


def _gan_rows(values: Sequence[float], metric: str = "fid/val", every: int = 1, per_class: int = 0) -> str:
    """A GAN folder's metrics.jsonl as the training loop writes it: one row per epoch, `metric` every `every`."""
    rows = []
    for cls in range(per_class) if per_class else [None]:
        for i in range(len(values) * every):
            epoch = i + 1
            row: Dict[str, Any] = {"epoch": epoch, "step": 3 * epoch, "kimg": round(0.024 * epoch, 3), "img_per_s": 50.0,
                                   **({} if cls is None else {"class": cls}), "seconds": 0.5 * epoch,
                                   "loss/G": 0.7, "loss/D": 1.3, "D(x)": 0.5, "D(G(z))": 0.5}
            if metric.startswith("loss/"):
                row = {k: v for k, v in row.items() if not k.startswith(("loss/G", "loss/D", "D("))}
            if epoch % every == 0:
                row[metric] = float(values[epoch // every - 1])
            rows.append(row)
    return "".join(json.dumps(r) + "\n" for r in rows)


def _falling(n: int = 40, seed: int = 0, noise: float = 0.5) -> List[float]:
    rng = np.random.default_rng(seed)
    return list(100.0 * np.exp(-np.arange(n) / 60) + noise * rng.standard_normal(n))


def _flat(n: int = 40, seed: int = 0, noise: float = 0.5) -> List[float]:
    rng = np.random.default_rng(seed)
    return list(30.0 + 200.0 * np.exp(-np.arange(n) / 2) + noise * rng.standard_normal(n))


def test_generator_checks_use_the_paired_test_over_gan_seeds_and_the_familys_length_key(tmp_path: Path) -> None:
    from ganaug.stages.budget import generator_checks

    folder = make_folder(tmp_path / "images")
    cfg = load_config(write_yaml(tmp_path / "cfg.yaml", tiny_config(tmp_path, folder, seeds=[0, 1, 2], gan_seeds=[0, 1, 2])))
    for s in (0, 1, 2):
        d = paths(cfg).gan(Rep(None, s))
        d.mkdir(parents=True)
        (d / "metrics.jsonl").write_text(_gan_rows(_falling(seed=s)))
    checks = generator_checks(cfg)
    assert set(checks) == {Rep(None, 0), Rep(None, 1), Rep(None, 2)}
    c = checks[Rep(None, 0)]
    assert c["flag"] and c["metric"] == "fid/val" and c["n"] == 3 and c["test"] == "t" and c["p"] < 0.05
    assert c["key"] == "gan.epochs" and "--sweep gan.epochs=" in c["command"]
    for s in (0, 1, 2):
        (paths(cfg).gan(Rep(None, s)) / "metrics.jsonl").write_text(_gan_rows(_flat(seed=s)))
    assert not any(c["flag"] for c in generator_checks(cfg).values())

    # The VAE and the diffusion model: the loss they minimise, per run when there is one of them; its kimg key.
    vae = load_config(write_yaml(tmp_path / "vae.yaml", tiny_config(
        tmp_path, folder, out_dir=str(tmp_path / "vae"), gan={"name": "vae", "kimg": 2.0, "epochs": 1})))
    d = paths(vae).gan(Rep())
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text(_gan_rows(_falling(), metric="loss/total"))
    c = generator_checks(vae)[Rep()]
    assert c["flag"] and c["metric"] == "loss/total" and c["n"] == 1 and c["key"] == "gan.kimg"
    (d / "metrics.jsonl").write_text(_gan_rows(_flat(), metric="loss/total"))
    assert not generator_checks(vae)[Rep()]["flag"]
    # A per-class GAN: the classes' readings averaged epoch by epoch.
    (d / "metrics.jsonl").write_text(_gan_rows(_falling(), metric="loss/total", per_class=3))
    assert generator_checks(vae)[Rep()]["flag"]


def test_a_gan_without_validation_fid_is_unchecked_with_the_key_that_fixes_it(tmp_path: Path) -> None:
    from ganaug.stages.budget import generator_checks

    folder = make_folder(tmp_path / "images")
    cfg = load_config(write_yaml(tmp_path / "cfg.yaml", tiny_config(tmp_path, folder)))
    d = paths(cfg).gan(Rep())
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text(_gan_rows([1.0] * 40, metric="loss/G"))  # an adversarial loss: no verdict
    c = generator_checks(cfg)[Rep()]
    assert not c["flag"] and "gan.eval_every" in c["unchecked"]
    (d / "metrics.jsonl").write_text(_gan_rows([50.0, 40.0, 30.0, 20.0], every=10))  # one FID each side: too few
    c = generator_checks(cfg)[Rep()]
    assert not c["flag"] and "eval_every" in c["unchecked"]


ARMS = [{"name": "real", "data": "real"}, {"name": "mixed-0.5", "data": "mixed", "mix": {"p_real": 0.5}}]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run with a GAN: a real arm and a mixed one, three seeds, the quality table."""
    return finished_run(tmp_path_factory.mktemp("budget"), ARMS)


def _copy(config: Path, tmp_path: Path) -> Path:
    data = yaml.safe_load(config.read_text())
    shutil.copytree(data["out_dir"], tmp_path / "run")
    data["out_dir"] = str(tmp_path / "run")
    return write_yaml(tmp_path / "cfg.yaml", data)


@pytest.mark.parametrize("falling", [True, False])
def test_a_generator_still_improving_is_marked_in_the_quality_table_and_on_its_arms(
        finished: Path, tmp_path: Path, falling: bool) -> None:
    cfg = load_config(_copy(finished, tmp_path))
    gan = paths(cfg).gan(Rep()) / "metrics.jsonl"
    gan.write_text(_gan_rows(_falling() if falling else _flat()))
    said = run_compare(cfg)  # the terminal's compact table; table.md holds the full one and its notes
    md = (paths(cfg).compare / "table.md").read_text()
    table = json.loads((paths(cfg).compare / "table.json").read_text())
    rows = {r["arm"]: r for r in table["rows"]}
    quality = next(r for r in table["quality"] if not r["floor"])
    assert rows["real"].get("generator_flag") is None
    if falling:
        assert quality["still_improving"] and quality["still_improving"]["metric"] == "fid/val"
        assert rows["mixed-0.5"]["generator_flag"] is not None
        mixed_line = next(line for line in md.splitlines() if line.startswith("| mixed-0.5 |"))
        assert "generator budget?" in mixed_line
        lines = said.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("mixed-0.5 "))
        # A long verdict ("inconclusive (779 seeds would decide)") wraps its cell onto the next line.
        assert "generator budget?" in " ".join(" ".join(lines[at:at + 2]).split())
        assert "generator still improving: this verdict may be the budget's" in md
        assert "still improving" in next(line for line in md.splitlines() if line.startswith("| samples"))
        assert "--sweep gan.epochs=" in md
    else:
        assert not quality["still_improving"] and rows["mixed-0.5"].get("generator_flag") is None
        assert "generator still improving" not in md


def test_the_table_notes_say_which_classifier_runs_could_not_be_checked(finished: Path, tmp_path: Path) -> None:
    cfg = load_config(_copy(finished, tmp_path))
    run = paths(cfg).clf_run("mixed-0.5", 1)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] > 32))
    run_compare(cfg)
    md = (paths(cfg).compare / "table.md").read_text()
    assert "mixed-0.5 seed 1" in md and "no validation reading at or before step 32" in md
