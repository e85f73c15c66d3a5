"""Which quality score predicts the gain: Spearman's rho and its p-value against scipy, the table over generators,
and the table in compare's output, the sweep summary and the report."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
from scipy import stats

from ganaug.metrics.predictive import (
    EXPLORATORY_BELOW,
    SCORES,
    average_ranks,
    better_gain,
    predictive_table,
    spearman,
)

# ----------------------------------------------------------------------------------------------------
# Spearman's rho and its p-value.


def _tied(rng: np.random.Generator, n: int, varied: bool = False) -> np.ndarray:
    """n values drawn from few levels, so most samples have ties (with `varied`, never all the same)."""
    while True:
        x = rng.integers(0, max(2, n // 2), size=n).astype(float) * rng.choice([1.0, 0.37])
        if not varied or len(set(x)) > 1:
            return x


def test_average_ranks_match_scipy_rankdata() -> None:
    rng = np.random.default_rng(0)
    for n in range(1, 30):
        x = _tied(rng, n)
        np.testing.assert_allclose(average_ranks(x), stats.rankdata(x, method="average"))


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_rho_matches_scipy_spearmanr_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(3, 25))
        x = _tied(rng, n) if rng.random() < 0.7 else rng.normal(size=n)
        y = _tied(rng, n) if rng.random() < 0.7 else rng.normal(size=n) + 0.5 * x
        ours = spearman(x, y, permutations=99)
        want = stats.spearmanr(x, y).statistic
        if math.isnan(want):  # a constant variable: undefined in both
            assert ours["rho"] is None and ours["p"] is None
            continue
        assert ours["rho"] == pytest.approx(want, abs=1e-12)
        checked += 1
    assert checked > 250


def _brute_force_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided exact p by enumeration, with scipy's spearmanr for every reordering of y."""
    obs = abs(stats.spearmanr(x, y).statistic)
    null = [abs(stats.spearmanr(x, y[list(p)]).statistic) for p in itertools.permutations(range(len(y)))]
    return float(np.mean([v >= obs - 1e-12 for v in null]))


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_exact_p_matches_enumeration_with_scipy(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(5):
        x, y = _tied(rng, n, varied=True), rng.normal(size=n)
        r = spearman(x, y)
        assert r["method"] == "exact"
        assert r["p"] == pytest.approx(_brute_force_p(x, y), abs=1e-12)


def _abs_rho_against(rx: np.ndarray) -> Any:
    """|rho| of x (ranks `rx`) with each reordering of y, from scipy's ranks and Pearson r, every reordering at once."""
    def abs_rho(v: np.ndarray, axis: int) -> np.ndarray:
        return np.abs(stats.pearsonr(np.broadcast_to(rx, v.shape), stats.rankdata(v, axis=axis), axis=axis).statistic)
    return abs_rho


def test_exact_p_matches_scipy_permutation_test() -> None:
    rng = np.random.default_rng(7)
    for n in (5, 7, 8):
        x, y = _tied(rng, n, varied=True), rng.normal(size=n)
        want = stats.permutation_test((y,), _abs_rho_against(stats.rankdata(x)), vectorized=True,
                                      permutation_type="pairings", alternative="greater", n_resamples=math.inf)
        r = spearman(x, y)
        assert r["method"] == "exact" and r["p"] == pytest.approx(want.pvalue, abs=1e-12)


def test_a_perfect_ranking_has_p_two_over_n_factorial() -> None:
    for n in range(3, 9):
        x = np.arange(n, dtype=float)
        assert spearman(x, x ** 3)["p"] == pytest.approx(2 / math.factorial(n))
        assert spearman(x, -x)["rho"] == pytest.approx(-1.0)


def test_above_the_exact_limit_the_permutation_p_is_seeded_and_near_the_exact_one() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=9), rng.normal(size=9)
    big = spearman(x, y, permutations=20_000, seed=1)
    assert big["method"] == "permutation" and big == spearman(x, y, permutations=20_000, seed=1)
    exact = spearman(x, y, exact_max_n=9)
    assert exact["method"] == "exact" and big["p"] == pytest.approx(exact["p"], abs=0.015)
    # The observed pairing counts: p is never 0.
    assert spearman(np.arange(12.0), np.arange(12.0), permutations=99)["p"] == pytest.approx(1 / 100)


def test_the_p_value_holds_its_level_under_the_null() -> None:
    """Independent scores and gains: p <= 0.1 in at most about 10% of 400 cases (the test is exact)."""
    rng = np.random.default_rng(11)
    ps = [spearman(rng.normal(size=7), rng.normal(size=7))["p"] for _ in range(400)]
    assert np.mean([p <= 0.1 for p in ps]) <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / 400)


def test_undefined_below_three_or_for_a_constant_variable() -> None:
    assert spearman([1.0, 2.0], [2.0, 1.0])["rho"] is None
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == {"n": 3, "rho": None, "p": None, "method": None}


def test_better_gain_reads_rho_in_the_scores_direction() -> None:
    assert better_gain(-0.8, higher_is_better=False) is True and better_gain(-0.8, higher_is_better=True) is False
    assert better_gain(0.5, higher_is_better=True) is True and better_gain(0.0, True) is None


# ----------------------------------------------------------------------------------------------------
# The table over generators.


def points(kind: str, deltas: List[float], fids: List[float], recalls: List[float],
           names: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    names = names or [f"g{i}" for i in range(len(deltas))]
    return [{"kind": kind, "kind_label": kind, "arm": f"{kind}-{g}", "generator": g, "delta": d,
             "scores": {"fid": f, "recall": r}} for g, d, f, r in zip(names, deltas, fids, recalls)]


def test_one_score_predicts_the_gain_perfectly_and_another_does_not() -> None:
    deltas = [0.05, 0.02, -0.01, -0.03, 0.00, 0.04]
    fids = [10.0, 30.0, 60.0, 90.0, 50.0, 20.0]     # lower FID, bigger gain: rho = -1
    recalls = [0.5, 0.1, 0.4, 0.3, 0.6, 0.2]         # no relation
    rows = {r["score"]: r for r in predictive_table(points("synthetic", deltas, fids, recalls))}
    assert set(rows) == {"fid", "recall"}
    fid = rows["fid"]
    assert fid["rho"] == pytest.approx(-1.0) and fid["p"] == pytest.approx(2 / math.factorial(6))
    assert fid["method"] == "exact" and fid["better_gain"] is True and not fid["exploratory"] and fid["n"] == 6
    assert [p["generator"] for p in fid["points"]] == [f"g{i}" for i in range(6)]
    rec = rows["recall"]
    assert abs(rec["rho"]) < 0.5 and rec["p"] > 0.3
    assert rec["rho"] == pytest.approx(stats.spearmanr(recalls, deltas).statistic)


def test_below_five_generators_a_row_is_exploratory_and_below_three_there_is_none() -> None:
    four = predictive_table(points("real+K", [0.1, 0.2, 0.3, 0.4], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]))
    assert len(four) == 2 and all(r["exploratory"] and r["n"] == 4 < EXPLORATORY_BELOW for r in four)
    assert all(r["p"] == pytest.approx(2 / 24) for r in four)
    five = predictive_table(points("real+K", [0.1, 0.2, 0.3, 0.4, 0.5], [5.0, 4, 3, 2, 1], [1.0, 2, 3, 4, 5]))
    assert not any(r["exploratory"] for r in five)
    assert predictive_table(points("real+K", [0.1, 0.2], [2.0, 1.0], [1.0, 2.0])) == []


def test_each_kind_is_its_own_row_and_missing_scores_or_gains_drop_out() -> None:
    pts = points("synthetic", [0.1, 0.2, 0.3], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0]) + \
        points("real+K", [0.3, 0.2, 0.1, None], [3.0, 2.0, 1.0, 0.5], [1.0, 2.0, None, 4.0])  # type: ignore[list-item]
    rows = predictive_table(pts)
    assert {(r["kind"], r["score"]) for r in rows} == {("synthetic", "fid"), ("synthetic", "recall"), ("real+K", "fid")}
    rk = next(r for r in rows if r["kind"] == "real+K")
    assert rk["n"] == 3 and rk["rho"] == pytest.approx(1.0) and rk["better_gain"] is False


def test_every_score_the_issue_names_is_scored() -> None:
    keys = {s.key for s in SCORES}
    assert {"fid", "kid", "precision", "recall", "density", "coverage", "class_consistency", "cas"} <= keys
    assert {"copies_pixels", "copies_features"} <= keys
    assert {s.key for s in SCORES if not s.higher_is_better} == {"fid", "kid", "copies_pixels", "copies_features"}


# ----------------------------------------------------------------------------------------------------
# In compare's output, the sweep summary and the report.

GENERATORS = ("a", "b", "c")


@pytest.fixture(scope="module")
def three_generators(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny experiment with three generators, a synthetic and a real+5 arm each; its config file."""
    from ganaug.config import load_config
    from ganaug.stages import run_all

    from .conftest import make_folder, tiny_config, write_yaml
    from .test_generators import TINY_CGAN, TINY_VAE

    tmp = tmp_path_factory.mktemp("three")
    raw = tiny_config(tmp, make_folder(tmp / "images"), seeds=[0])
    del raw["gan"]
    raw["generators"] = {"a": dict(TINY_CGAN, epochs=1), "b": dict(TINY_CGAN, epochs=1, z_dim=4),
                         "c": dict(TINY_VAE, epochs=1)}
    raw["arms"] = [{"name": "real", "data": "real"}] + [
        {"name": f"{kind}-{g}", "data": data, "generator": g, **extra} for g in GENERATORS
        for kind, data, extra in (("synthetic", "synthetic", {}), ("real+5", "mixed", {"mix": {"add": 5}}))]
    path = write_yaml(tmp / "three.yaml", raw)
    run_all(load_config(path), progress=False)
    return path


def set_accuracy(cfg_path: Path, accuracy: Dict[str, float]) -> None:
    """Give each arm's finished run this test accuracy (a tiny classifier's are all at chance: Δ = 0 everywhere)."""
    for arm, acc in accuracy.items():
        f = cfg_path.parent / "run" / "clf" / arm / "seed-0" / "result.json"
        result = json.loads(f.read_text())
        result["test"]["accuracy"] = acc
        f.write_text(json.dumps(result))


def test_compare_and_the_report_show_which_score_predicts_the_gain(three_generators: Path) -> None:
    from ganaug.config import load_config
    from ganaug.stages.compare import run_compare
    from ganaug.stages.report import run_report

    set_accuracy(three_generators, {"real": 0.40, "synthetic-a": 0.30, "synthetic-b": 0.50, "synthetic-c": 0.20,
                                    "real+5-a": 0.45, "real+5-b": 0.35, "real+5-c": 0.42})
    cfg = load_config(three_generators)
    run_compare(cfg)
    out = three_generators.parent / "run" / "compare"
    table = json.loads((out / "table.json").read_text())
    section = table["predictive"]
    assert section["generators"] == list(GENERATORS) and section["baseline"] == "real"
    rows = {(r["kind_label"], r["score"]): r for r in section["rows"]}
    assert {k for k, _ in rows} == {"synthetic", "real + 5 fakes/class"}
    scores = {q["generator"]: q for q in table["quality"] if not q["floor"]}
    for kind, arm in (("synthetic", "synthetic"), ("real + 5 fakes/class", "real+5")):
        deltas = [next(r["delta_mean"] for r in table["rows"] if r["arm"] == f"{arm}-{g}") for g in GENERATORS]
        fid = rows[(kind, "fid")]
        want = stats.spearmanr([scores[g]["fid"] for g in GENERATORS], deltas).statistic
        assert fid["rho"] == pytest.approx(want) and fid["n"] == 3 and fid["method"] == "exact"
        assert fid["exploratory"] and [p["generator"] for p in fid["points"]] == list(GENERATORS)
        assert [p["delta"] for p in fid["points"]] == pytest.approx(deltas)
    # CAS is the synthetic arm's accuracy: it ranks that arm's gains perfectly, p = 2/3!.
    cas = rows[("synthetic", "cas")]
    assert cas["rho"] == pytest.approx(1.0) and cas["p"] == pytest.approx(1 / 3) and cas["better_gain"] is True
    md = (out / "table.md").read_text()
    assert "Which quality score predicts the gain" in md and "| synthetic | CAS (higher is better) | 3 | +1.00 |" in md
    assert "exploratory (n < 5)" in md and "predictive.png" in table["plots"] and (out / "predictive.png").is_file()
    page = run_report(cfg).read_text()
    assert "<h2>Which quality score predicts the gain</h2>" in page and "one colour per arm kind" in page


def test_fewer_than_three_generators_show_nothing(tmp_path: Path, image_folder: Path) -> None:
    from ganaug.config import load_config
    from ganaug.stages.predictive import experiment_section, render_html, render_markdown, write_plot

    from .conftest import write_yaml
    from .test_generators import two_generators

    cfg = load_config(write_yaml(tmp_path / "two.yaml", two_generators(tmp_path, image_folder)))
    rows = [{"arm": f"synthetic-{g}", "arm_config": {"name": f"synthetic-{g}", "data": "synthetic", "generator": g},
             "data": "synthetic", "generator": g, "is_baseline": False, "family": "config", "delta_mean": d}
            for g, d in (("cg", 0.1), ("va", 0.2))]
    quality = [{"generator": g, "floor": False, "fid": f} for g, f in (("cg", 2.0), ("va", 1.0))]
    section = experiment_section(cfg, rows, quality)
    assert section is None and render_markdown(section) == [] and render_html(section, tmp_path, str) == []
    assert write_plot(section, tmp_path) == [] and not (tmp_path / "predictive.png").exists()


def test_a_generator_key_sweep_summary_ranks_its_values(three_generators: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Sub-experiments of a gan.epochs sweep (their tables written here from a real one's rows): the summary's table
    over the five values, not exploratory, FID predicting the gain perfectly and recall not at all."""
    import yaml

    from ganaug.config import load_config, sweep_experiments
    from ganaug.stages import sweep as sweep_stage
    from ganaug.stages.layout import paths
    from ganaug.stages.report import run_report

    real = json.loads((three_generators.parent / "run" / "compare" / "table.json").read_text())
    template = {r["arm"]: r for r in real["rows"]}
    raw = yaml.safe_load(three_generators.read_text())
    raw.update(out_dir=str(tmp_path / "run"), gan=raw["generators"]["a"], generators=None,
               sweep={"key": "gan.epochs", "values": [1, 2, 3, 4, 5]},
               arms=[{"name": "real", "data": "real"}, {"name": "synthetic", "data": "synthetic"}])
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "sweep.yaml")
    fids, recalls, deltas = [50.0, 40.0, 30.0, 20.0, 10.0], [0.3, 0.1, 0.5, 0.2, 0.4], [-0.1, 0.0, 0.02, 0.05, 0.08]
    for (_, sub), fid, recall, delta in zip(sweep_experiments(cfg), fids, recalls, deltas):
        synthetic = dict(template["synthetic-a"], arm="synthetic", generator="", delta_mean=delta,
                         arm_config={"name": "synthetic", "data": "synthetic"})
        quality = [dict(q, generator=None, fid=fid, recall=recall) if not q["floor"] else q
                   for q in real["quality"] if q["floor"] or q["generator"] == "a"]
        table = {"rows": [template["real"], synthetic], "notes": [], "audit": [], "baseline": "real", "quality": quality,
                 "runs": []}
        paths(sub).compare.mkdir(parents=True)
        (paths(sub).compare / "table.json").write_text(json.dumps(table))
    monkeypatch.setattr(sweep_stage, "run_compare", lambda sub: "")  # the sub-experiments' tables are the ones above
    md = sweep_stage.run_sweep_compare(cfg)
    summary = json.loads((paths(cfg).compare / "table.json").read_text())
    rows = {r["score"]: r for r in summary["predictive"]["rows"]}
    assert summary["predictive"]["generators"] == ["1", "2", "3", "4", "5"] and "predictive.png" in summary["plots"]
    assert rows["fid"]["rho"] == pytest.approx(-1.0) and rows["fid"]["p"] == pytest.approx(2 / 120)
    assert rows["fid"]["better_gain"] is True and not rows["fid"]["exploratory"]
    assert rows["recall"]["rho"] == pytest.approx(stats.spearmanr(recalls, deltas).statistic)
    assert rows["recall"]["p"] > 0.3
    assert "| synthetic | FID (lower is better) | 5 | -1.00 | 0.017 (exact) | yes |  |" in md
    assert "gan.epochs = 1, 2, 3, 4, 5" in md and (paths(cfg).compare / "predictive.png").is_file()
    page = run_report(cfg).read_text()
    assert page.count("<h2>Which quality score predicts the gain</h2>") == 1 and "<td>-1.00</td>" in page


def test_the_figure_draws_each_generator_where_its_score_and_gain_put_it(tmp_path: Path) -> None:
    from matplotlib.collections import PathCollection

    from ganaug.plots import plot_predictive, predictive_figure

    deltas, fids = [0.05, 0.02, -0.01, 0.03], [10.0, 30.0, 60.0, 20.0]
    pts = points("synthetic", deltas, fids, [0.2] * 4) + points("real+K", [0.01, 0.0, 0.02, 0.03], fids, [0.2] * 4)
    rows = predictive_table(pts)
    fig = predictive_figure(rows, baseline="real")
    drawn = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(drawn) == 1  # recall is the same for every generator: a table row, no panel
    ax = drawn[0]
    series = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [c.get_label() for c in series] == ["synthetic", "real+K"]
    assert np.allclose(series[0].get_offsets(), np.c_[fids, 100 * np.array(deltas)])
    assert [t.get_text() for t in ax.texts if t.get_text().startswith("g")][:4] == ["g0", "g1", "g2", "g3"]
    assert ax.xaxis_inverted() and "reversed" in ax.get_xlabel() and ax.get_ylabel() == "Δ test acc vs real (pp)"
    assert any(t.get_text() == "ρ = -1.00, p = 0.083 (n=4)" for t in ax.texts)
    assert plot_predictive(rows, tmp_path / "p.png").is_file()
