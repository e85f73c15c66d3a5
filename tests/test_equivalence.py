"""'No effect', not only 'not detected': the paired equivalence tests (TOST) against statsmodels and by hand, their
exact power against simulation, and the verdicts they give in the table (equivalent, inconclusive, Holm over arms)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
from scipy import stats

from ganaug.config import load_config
from ganaug.errors import ConfigError
from ganaug.metrics.stats import holm, seeds_to_decide, tost_paired, tost_power

# ----------------------------------------------------------------------------------------------------
# tost_paired


def test_tost_matches_statsmodels_on_many_random_samples() -> None:
    weightstats = pytest.importorskip("statsmodels.stats.weightstats")
    rng = np.random.default_rng(0)
    for _ in range(400):
        n = int(rng.integers(2, 30))
        margin = float(rng.choice([0.0025, 0.005, 0.01, 0.02, 0.05]))
        base = rng.uniform(0.7, 0.98, n)
        arm = base + rng.normal(rng.normal(0.0, 0.01), rng.uniform(0.0005, 0.02), n)
        ours = tost_paired(arm, base, margin)
        p, (t1, p1, df1), (t2, p2, df2) = weightstats.ttost_paired(arm, base, -margin, margin)
        assert ours["p"] == pytest.approx(p, rel=1e-10, abs=1e-12)
        assert ours["p_lower"] == pytest.approx(p1, rel=1e-10, abs=1e-12)
        assert ours["p_upper"] == pytest.approx(p2, rel=1e-10, abs=1e-12)
        assert ours["t_lower"] == pytest.approx(t1, rel=1e-10) and ours["t_upper"] == pytest.approx(t2, rel=1e-10)
        assert ours["df"] == df1 == df2 == n - 1
        # TOST at alpha is the (1 - 2 alpha) interval lying strictly inside the margin.
        inside = -margin < ours["ci_low"] and ours["ci_high"] < margin
        assert (ours["p"] < 0.05) == inside
        assert ours["confidence"] == pytest.approx(0.9)


def test_tost_by_hand() -> None:
    # d = 0.01, 0.02, 0.03: mean 0.02, sd 0.01, sem 0.01/√3; against ±0.05, t = 0.07/sem = √147 and -0.03/sem = -√27,
    # and with 2 degrees of freedom the t distribution's cdf is 1/2 + t / (2 √(2 + t²)).
    r = tost_paired([0.91, 0.92, 0.93], [0.90, 0.90, 0.90], 0.05)
    assert r["t_lower"] == pytest.approx(math.sqrt(147), rel=1e-9)
    assert r["t_upper"] == pytest.approx(-math.sqrt(27), rel=1e-9)
    assert r["p_lower"] == pytest.approx(0.5 - math.sqrt(147) / (2 * math.sqrt(149)), rel=1e-8)
    assert r["p_upper"] == pytest.approx(0.5 - math.sqrt(27) / (2 * math.sqrt(29)), rel=1e-8)
    assert r["p"] == r["p_upper"] == pytest.approx(0.017549, abs=1e-6)
    # The 90% interval: t_{0.95, 2} = 0.9 / √(2 · 0.95 · 0.05).
    half = 0.9 / math.sqrt(2 * 0.95 * 0.05) * 0.01 / math.sqrt(3)
    assert r["ci_low"] == pytest.approx(0.02 - half, rel=1e-9) and r["ci_high"] == pytest.approx(0.02 + half, rel=1e-9)
    assert r["p_sign"] == 0.125  # all three inside ±0.05: 1/2³ on each side


def test_tost_is_symmetric_in_its_arguments() -> None:
    a, b = [0.91, 0.935, 0.92, 0.94], [0.90, 0.93, 0.925, 0.93]
    ab, ba = tost_paired(a, b, 0.01), tost_paired(b, a, 0.01)
    assert ab["p"] == pytest.approx(ba["p"], rel=1e-12)
    assert ab["p_lower"] == pytest.approx(ba["p_upper"], rel=1e-12)


def test_tost_degenerate_cases() -> None:
    one = tost_paired([0.9], [0.895], 0.01)
    assert one["p"] is None and one["ci_low"] is None and one["df"] is None and one["p_sign"] == 0.5
    # Identical differences: t = ±inf (statsmodels says p = 0); here no t-test, the exact sign tests instead.
    same = tost_paired([0.85, 0.86, 0.88, 0.9, 0.7], [0.848, 0.858, 0.878, 0.898, 0.698], 0.01)
    assert same["zero_spread"] and same["p"] is None and same["p_lower"] is None and same["p_sign"] == 1 / 32
    outside = tost_paired([0.85, 0.86, 0.88], [0.80, 0.81, 0.83], 0.01)  # +5 points every time
    assert outside["zero_spread"] and outside["p"] is None and outside["p_sign"] == 1.0
    with pytest.raises(ValueError):
        tost_paired([], [], 0.01)
    with pytest.raises(ValueError):
        tost_paired([0.9, 0.8], [0.9], 0.01)
    for bad in (0.0, -0.01, float("nan")):
        with pytest.raises(ValueError):
            tost_paired([0.9, 0.8], [0.9, 0.85], bad)


# ----------------------------------------------------------------------------------------------------
# Power and the seeds that would decide.


def _simulated_power(margin: float, n: int, alpha: float, difference: float, rng: np.random.Generator,
                     runs: int = 100_000) -> float:
    """Brute force: the share of `runs` simulated experiments (differences N(difference, 1)) in which TOST rejects."""
    d = rng.normal(difference, 1.0, (runs, n))
    mean, sem = d.mean(axis=1), d.std(axis=1, ddof=1) / math.sqrt(n)
    c = stats.t.ppf(1 - alpha, n - 1)
    return float(np.mean((mean - c * sem > -margin) & (mean + c * sem < margin)))


@pytest.mark.parametrize("margin, n, alpha, difference", [
    (2.5, 5, 0.05, 0.0), (1.0, 12, 0.01, 0.0), (0.8, 30, 0.05, 0.2), (3.0, 3, 0.05, 0.5), (2.0, 4, 0.0125, 0.0),
])
def test_tost_power_matches_a_simulation(margin: float, n: int, alpha: float, difference: float) -> None:
    rng = np.random.default_rng(n)
    want = _simulated_power(margin, n, alpha, difference, rng)
    se = math.sqrt(want * (1 - want) / 100_000)
    assert tost_power(margin, n, alpha, difference) == pytest.approx(want, abs=4.5 * se + 1e-4)


@pytest.mark.parametrize("sd, margin, alpha", [(0.004, 0.01, 0.01), (0.004, 0.01, 0.05), (0.02, 0.01, 0.0125),
                                               (0.003, 0.005, 0.01)])
def test_seeds_to_decide_is_the_fewest_with_the_power(sd: float, margin: float, alpha: float) -> None:
    n = seeds_to_decide(sd, margin, alpha, power=0.8)
    assert n is not None
    assert tost_power(margin / sd, n, alpha) >= 0.8 > tost_power(margin / sd, n - 1, alpha)
    # The textbook sample size (t_{1-alpha} + t_{1-beta/2}) s / √n <= margin approximates the exact power's.
    formula = next(k for k in range(2, 10_000) if (stats.t.ppf(1 - alpha, k - 1) + stats.t.ppf(0.9, k - 1))
                   * sd / math.sqrt(k) <= margin)
    assert abs(formula - n) <= 1


def test_seeds_to_decide_at_zero_spread_counts_the_sign_tests() -> None:
    assert seeds_to_decide(0.0, 0.01, 0.05) == 5 and seeds_to_decide(0.0, 0.01, 0.01) == 7  # 2**-n below alpha
    assert seeds_to_decide(1.0, 0.01, 0.05, limit=100) is None


# ----------------------------------------------------------------------------------------------------
# The verdicts in the table.


BASE = [0.90, 0.91, 0.92, 0.905, 0.915]


def _results(deltas: Dict[str, List[float]]) -> Dict[str, List[Dict[str, Any]]]:
    """Finished runs of a baseline `real` and one arm per entry, whose accuracies differ from real's by `deltas`."""
    def run(name: str, seed: int, acc: float) -> Dict[str, Any]:
        return {"arm": name, "seed": seed, "arm_config": {"name": name, "data": "real"}, "gan_seed": None,
                "test": {"accuracy": acc, "macro_f1": acc, "n": 1000}, "val": {"accuracy": acc, "n": 10},
                "budget": {"steps": 6, "batch_size": 8}}
    out = {"real": [run("real", s, a) for s, a in enumerate(BASE)]}
    for name, d in deltas.items():
        out[name] = [run(name, s, a + x) for s, (a, x) in enumerate(zip(BASE, d))]
    return out


def _summarize(config_file: Path, deltas: Dict[str, List[float]], *overrides: str) -> Dict[str, Dict[str, Any]]:
    """compare's rows for a config of those arms, from the runs `_results` makes."""
    from ganaug.stages.compare import summarize

    return {r["arm"]: r for r in summarize(_config(config_file, deltas, *overrides), _results(deltas))}


def _config(config_file: Path, deltas: Dict[str, List[float]], *overrides: str) -> Any:
    arms = ", ".join(["{name: real, data: real}"] + [f"{{name: {a}, data: real, augment: classic}}" for a in deltas])
    return load_config(config_file, [f"arms=[{arms}]", *overrides])


TIGHT = [0.001, -0.002, 0.002, 0.0, -0.001]  # mean 0, spread 0.16 points
WIDE = [0.03, -0.025, 0.02, -0.03, 0.005]  # mean 0, spread 2.7 points
BETTER = [0.03, 0.028, 0.033, 0.031, 0.029]  # +3 points
NEAR = [-0.002, 0.008, 0.009, -0.001, 0.006]  # +0.4 ± 0.5 points: TOST p = 0.03 against ±1 point


def test_equivalent_inconclusive_and_better_arms(config_file: Path) -> None:
    from ganaug.stages.table import table_notes

    deltas = {"tight": TIGHT, "wide": WIDE, "better": BETTER}
    rows = _summarize(config_file, deltas)
    for arm, d in deltas.items():
        ref = tost_paired([b + x for b, x in zip(BASE, d)], BASE, 0.01)
        assert rows[arm]["tost_p"] == pytest.approx(ref["p"], rel=1e-9)
        assert rows[arm]["tost_ci_low"] == pytest.approx(ref["ci_low"], rel=1e-9)
    assert rows["tight"]["verdict"] == "equivalent (±1 pt)"
    assert rows["better"]["verdict"] == "better" and rows["better"]["tost_p"] > 0.99  # the difference test speaks first
    wide = rows["wide"]
    need = seeds_to_decide(wide["delta_std"], 0.01, 0.05 / 3, 0.8)
    assert wide["seeds_to_decide"] == need and need > 5 and wide["tost_p_adj"] > 0.05
    assert wide["verdict"] == f"inconclusive ({need} seeds would decide)"
    assert tost_power(0.01 / wide["delta_std"], need, 0.05 / 3) >= 0.8
    assert "reaching past ±1" in wide["verdict_reason"]
    assert [rows[a]["tost_p_adj"] for a in ("tight", "wide", "better")] == holm(
        [rows[a]["tost_p"] for a in ("tight", "wide", "better")])
    notes = " ".join(table_notes(_config(config_file, deltas), list(rows.values()), _results(deltas), []))
    assert "equivalent (±1 pt) when two one-sided paired t-tests (TOST)" in notes and "Holm correction over 3 arms" in notes
    assert "The margin (compare.equivalence_margin, the smallest effect of interest) is 1 point, the default" in notes
    assert f"wide: {need} seeds would show equivalence within ±1 point if the true Δ were 0" in notes
    assert f"it could have detected |Δ| ≥ {100 * wide['mde']:.2f} points with its 5 seeds" in notes


def test_holm_over_the_arms_applies_to_the_equivalence_tests(config_file: Path) -> None:
    alone = _summarize(config_file, {"near": NEAR})["near"]
    assert 0.01 < alone["tost_p"] < 0.05 and alone["tost_p_adj"] == alone["tost_p"]
    assert alone["verdict"] == "equivalent (±1 pt)" and -0.01 < alone["tost_ci_low"] < alone["tost_ci_high"] < 0.01
    # The same arm beside two others: its p is the smallest of three, so Holm triples it, past 0.05.
    rows = _summarize(config_file, {"near": NEAR, "better": BETTER, "better2": [x + 0.002 for x in BETTER]})
    near = rows["near"]
    assert near["tost_p"] == pytest.approx(alone["tost_p"]) and near["tost_p_adj"] == pytest.approx(3 * near["tost_p"])
    assert near["verdict"].startswith("inconclusive") and near["delta_p_adj"] > 0.05
    assert "inside ±1 but not by enough for the correction" in near["verdict_reason"]
    # Bonferroni and no correction are the config's to choose, for both tests alike.
    none = _summarize(config_file, {"near": NEAR, "better": BETTER}, "compare.correction=none")["near"]
    assert none["tost_p_adj"] == none["tost_p"] and none["verdict"] == "equivalent (±1 pt)"


def test_the_margin_is_read_in_points_and_checked(config_file: Path) -> None:
    rows = _summarize(config_file, {"near": NEAR}, "compare.equivalence_margin=0.5")
    assert rows["near"]["tost_margin"] == pytest.approx(0.005) and rows["near"]["verdict"].startswith("inconclusive")
    wide = _summarize(config_file, {"near": NEAR}, "compare.equivalence_margin=2")["near"]
    assert wide["verdict"] == "equivalent (±2 pts)"
    for bad in ("0", "-1", "100"):
        with pytest.raises(ConfigError, match="equivalence_margin"):
            load_config(config_file, [f"compare.equivalence_margin={bad}"])
