"""Replicate statistics: checked against scipy's own tests on the same inputs, and against known values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ganaug.metrics.stats import bonferroni, holm, mean_ci, paired_test, tost_paired, verdict

REL = 1e-10


def approx(value: float) -> object:
    return pytest.approx(value, rel=REL, abs=1e-15)


# ----------------------------------------------------------------------------- mean_ci


@pytest.mark.parametrize("n", [2, 3, 5, 10])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_mean_ci_matches_scipy_t_interval(n: int, confidence: float) -> None:
    x = np.random.default_rng(n).normal(0.8, 0.05, n)
    r = mean_ci(x, confidence)
    low, high = stats.t.interval(confidence, n - 1, loc=np.mean(x), scale=stats.sem(x))
    assert r["n"] == n
    assert r["mean"] == approx(np.mean(x))
    assert r["std"] == approx(np.std(x, ddof=1))
    assert r["sem"] == approx(stats.sem(x))
    assert r["ci_low"] == approx(low)
    assert r["ci_high"] == approx(high)


def test_mean_ci_single_value_has_no_spread() -> None:
    assert mean_ci([0.7]) == {"n": 1, "mean": 0.7, "std": None, "sem": None, "ci_low": None, "ci_high": None}


def test_mean_ci_constant_values_give_exact_zero_width() -> None:
    r = mean_ci([0.1, 0.1, 0.1])
    assert r["mean"] == 0.1 and r["std"] == 0.0 and r["ci_low"] == r["ci_high"] == 0.1


@pytest.mark.parametrize("bad", [[], [0.5, float("nan")], [float("inf"), 1.0]])
def test_mean_ci_rejects_empty_and_non_finite(bad: list) -> None:
    with pytest.raises(ValueError):
        mean_ci(bad)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_mean_ci_rejects_bad_confidence(confidence: float) -> None:
    with pytest.raises(ValueError):
        mean_ci([1.0, 2.0], confidence)


# ----------------------------------------------------------------------------- paired t


@pytest.mark.parametrize("seed, n", [(0, 2), (1, 3), (2, 5), (3, 8), (4, 20)])
def test_paired_t_matches_scipy_ttest_rel(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.80, 0.03, n)
    b = a - rng.normal(0.01, 0.02, n)
    r = paired_test(a, b)
    ref = stats.ttest_rel(a, b)
    assert r["n"] == n and r["df"] == n - 1
    assert r["t"] == approx(ref.statistic)
    assert r["p_t"] == approx(ref.pvalue)
    d = a - b
    low, high = stats.t.interval(0.95, n - 1, loc=np.mean(d), scale=stats.sem(d))
    assert r["mean"] == approx(np.mean(d))
    assert r["std"] == approx(np.std(d, ddof=1))
    assert r["ci_low"] == approx(low) and r["ci_high"] == approx(high)


def test_paired_test_is_antisymmetric_in_its_arguments() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=9), rng.normal(size=9)
    ab, ba = paired_test(a, b), paired_test(b, a)
    assert ab["mean"] == approx(-ba["mean"]) and ab["t"] == approx(-ba["t"])
    assert ab["p_t"] == approx(ba["p_t"]) and ab["p_wilcoxon"] == approx(ba["p_wilcoxon"]) and ab["w"] == ba["w"]


# ----------------------------------------------------------------------------- Wilcoxon


@pytest.mark.parametrize("n", [5, 6, 8, 12, 30, 50])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wilcoxon_exact_matches_scipy_without_ties(n: int, seed: int) -> None:
    rng = np.random.default_rng(100 * n + seed)
    a = rng.normal(0.8, 0.05, n)
    b = a - rng.normal(0.01, 0.03, n)
    r = paired_test(a, b)
    ref = stats.wilcoxon(a, b, method="exact")
    assert r["wilcoxon_method"] == "exact"
    assert r["w"] == ref.statistic
    assert r["p_wilcoxon"] == approx(ref.pvalue)
    # scipy's default ("auto") picks the exact test for these inputs too.
    assert r["p_wilcoxon"] == approx(stats.wilcoxon(a, b).pvalue)
    assert r["wilcoxon_min_p"] == approx(min(1.0, 2.0 / 2**n))


@pytest.mark.parametrize("n", [5, 6, 8, 12])
def test_wilcoxon_all_positive_reaches_the_floor(n: int) -> None:
    a = 0.8 + 0.01 * np.arange(1, n + 1) ** 1.5  # distinct positive differences
    b = np.full(n, 0.8)
    r = paired_test(a, b)
    assert r["w"] == 0.0
    assert r["p_wilcoxon"] == approx(2.0 / 2**n) == approx(stats.wilcoxon(a, b, method="exact").pvalue)
    assert r["p_wilcoxon"] == r["wilcoxon_min_p"]


def test_wilcoxon_five_seeds_can_never_reach_005() -> None:
    # Why wilcoxon_min_p exists: with 5 seeds the best possible two-sided p is 1/16.
    r = paired_test([2, 3, 4, 5, 6], [1, 1, 1, 1, 1])
    assert r["wilcoxon_min_p"] == 0.0625 == r["p_wilcoxon"]


def _tied_differences(n: int, seed: int) -> np.ndarray:
    """Integer-valued differences: ties and zeros are certain, but not every difference is zero."""
    rng = np.random.default_rng(seed)
    d = rng.integers(-2, 5, n).astype(float)
    d[0], d[1], d[2] = 0.0, 3.0, 3.0
    return d


@pytest.mark.parametrize("n", [16, 20, 30, 60])
@pytest.mark.parametrize("seed", [0, 1])
def test_wilcoxon_with_ties_and_zeros_matches_scipy_normal_approximation(n: int, seed: int) -> None:
    d = _tied_differences(n, seed)
    r = paired_test(d, np.zeros(n))
    # scipy 1.17 spells the normal approximation method="asymptotic" ("approx" is rejected).
    ref = stats.wilcoxon(d, zero_method="wilcox", correction=False, method="asymptotic")
    assert r["wilcoxon_method"] == "approx" and r["wilcoxon_min_p"] is None
    assert r["w"] == ref.statistic
    assert r["p_wilcoxon"] == approx(ref.pvalue)
    assert r["p_wilcoxon"] == approx(stats.wilcoxon(d).pvalue)  # what scipy's "auto" does here


def test_wilcoxon_zeros_without_ties_use_approximation_above_13() -> None:
    d = np.r_[0.0, np.arange(1.0, 20.0) * np.where(np.arange(19) % 3 == 0, -1, 1)]
    r = paired_test(d, np.zeros_like(d))
    ref = stats.wilcoxon(d, correction=False, method="asymptotic")
    assert r["wilcoxon_method"] == "approx"
    assert r["w"] == ref.statistic and r["p_wilcoxon"] == approx(ref.pvalue)


def test_wilcoxon_large_tie_free_sample_uses_approximation_like_scipy() -> None:
    rng = np.random.default_rng(5)
    d = rng.normal(0.2, 1.0, 60)
    r = paired_test(d, np.zeros(60))
    ref = stats.wilcoxon(d, method="asymptotic")
    assert r["wilcoxon_method"] == "approx"
    assert r["w"] == ref.statistic and r["p_wilcoxon"] == approx(ref.pvalue)
    assert r["p_wilcoxon"] == approx(stats.wilcoxon(d).pvalue)


@pytest.mark.parametrize("n", [4, 6, 9, 13])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wilcoxon_small_samples_with_ties_enumerate_like_scipy_auto(n: int, seed: int) -> None:
    # With ties or zeros and n <= 13, scipy's default runs an exact permutation test over all sign
    # flips instead of the normal approximation; the module does the same enumeration.
    d = _tied_differences(n, seed)
    r = paired_test(d, np.zeros(n))
    ref = stats.wilcoxon(d)
    assert r["wilcoxon_method"] == "exact"
    assert r["w"] == ref.statistic
    assert r["p_wilcoxon"] == approx(ref.pvalue)
    assert r["wilcoxon_min_p"] == approx(min(1.0, 2.0 / 2 ** int(np.count_nonzero(d))))


# ----------------------------------------------------------------------------- degenerate inputs


def test_all_zero_differences() -> None:
    a = [0.8, 0.7, 0.9, 0.75]
    r = paired_test(a, a)
    assert r["mean"] == 0.0 and r["std"] == 0.0
    assert (r["t"], r["df"], r["p_t"]) == (0.0, 3, 1.0)
    assert r["ci_low"] == r["ci_high"] == 0.0
    assert (r["w"], r["p_wilcoxon"], r["wilcoxon_method"], r["wilcoxon_min_p"]) == (0.0, 1.0, "exact", None)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_constant_nonzero_differences(sign: float) -> None:
    b = np.array([0.5, 0.6, 0.7, 0.8, 0.55, 0.65])
    a = b + sign * 0.25  # exactly representable shift, so every difference is identical
    r = paired_test(a, b)
    assert r["mean"] == sign * 0.25 and r["std"] == 0.0 and r["zero_spread"]
    # Zero spread leaves t undefined (not p = 0, which would call two seeds 'better'); the sign test speaks.
    assert r["t"] is None and r["p_t"] is None and r["p_sign"] == approx(2.0 / 2**6)
    assert r["ci_low"] == r["ci_high"] == sign * 0.25
    # All |d| tied: the enumeration gives the same floor 2 / 2**n as scipy's permutation test.
    assert r["p_wilcoxon"] == approx(2.0 / 2**6) == approx(stats.wilcoxon(a, b).pvalue)


def test_single_pair() -> None:
    r = paired_test([0.9], [0.8])
    assert r["n"] == 1 and r["mean"] == pytest.approx(0.1)
    assert all(r[k] is None for k in ("std", "ci_low", "ci_high", "t", "df", "p_t"))
    assert (r["w"], r["p_wilcoxon"], r["wilcoxon_method"], r["wilcoxon_min_p"]) == (0.0, 1.0, "exact", 1.0)


def test_paired_test_rejects_mismatched_or_empty_input() -> None:
    with pytest.raises(ValueError):
        paired_test([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError):
        paired_test([], [])


# ----------------------------------------------------------------------------- multiplicity


def test_holm_known_values() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_none_entries_are_kept_and_not_counted() -> None:
    out = holm([0.01, None, 0.04, 0.03, None, 0.005])
    assert out[1] is None and out[4] is None
    assert [out[i] for i in (0, 2, 3, 5)] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([None, None]) == [None, None]
    assert holm([]) == []


def test_holm_is_capped_and_monotone() -> None:
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 0.2, 12).tolist()
    adj = holm(p)
    order = np.argsort(p)
    assert all(adj[i] >= p[i] for i in range(12))
    assert all(adj[order[k]] <= adj[order[k + 1]] for k in range(11))


def test_holm_against_direct_definition() -> None:
    # adjusted p_(k) = max over j <= k of min(1, (m - j + 1) p_(j)), for sorted p (1-based k, j).
    p = np.random.default_rng(11).uniform(0, 0.1, 8)
    ps = np.sort(p)
    m = len(p)
    direct_sorted = [max(min(1.0, (m - j) * ps[j]) for j in range(k + 1)) for k in range(m)]
    adj = holm(p.tolist())
    assert [adj[i] for i in np.argsort(p)] == pytest.approx(direct_sorted)


def test_bonferroni() -> None:
    assert bonferroni([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert bonferroni([0.01, None, 0.3]) == [pytest.approx(0.02), None, pytest.approx(0.6)]
    assert bonferroni([0.4, 0.7, 0.01]) == [1.0, 1.0, pytest.approx(0.03)]
    assert bonferroni([None]) == [None]


@pytest.mark.parametrize("fn", [holm, bonferroni])
@pytest.mark.parametrize("bad", [[0.1, 1.5], [-0.1], [float("nan")]])
def test_adjustments_reject_non_probabilities(fn, bad: list) -> None:
    with pytest.raises(ValueError):
        fn(bad)


# ----------------------------------------------------------------------------- verdict


@pytest.mark.parametrize(
    "mean_diff, p, expected",
    [
        (0.02, 0.01, "better"),
        (-0.02, 0.01, "worse"),
        (0.02, 0.05, "inconclusive"),  # p must be strictly below alpha; without an equivalence test, no more
        (-0.02, 0.4, "inconclusive"),
        (0.0, 0.01, "inconclusive"),
        (0.02, None, "too few replicates"),
        (None, None, "too few replicates"),
    ],
)
def test_verdict(mean_diff, p, expected: str) -> None:
    assert verdict(mean_diff, p) == expected


def test_verdict_alpha() -> None:
    assert verdict(0.02, 0.03, alpha=0.01) == "inconclusive"
    assert verdict(0.02, 0.03, alpha=0.05) == "better"


def test_verdict_equivalence_only_when_the_difference_is_not_significant() -> None:
    assert verdict(0.002, 0.3, 0.05, p_equivalence=0.01, margin=0.01) == "equivalent (±1 pt)"
    assert verdict(0.002, 0.3, 0.05, p_equivalence=0.05, margin=0.005) == "inconclusive"  # strictly below alpha
    assert verdict(0.002, 0.3, 0.05, p_equivalence=0.01, margin=0.025) == "equivalent (±2.5 pts)"
    # Significant and equivalent at once (a tiny, precisely measured difference): the difference test speaks first.
    assert verdict(0.002, 0.01, 0.05, p_equivalence=0.001, margin=0.01) == "better"


# ----------------------------------------------------------------------------- sign test and decide


@pytest.mark.parametrize("d", [[1, 1, 1], [1, -1, 2, 3, 0, 4], [-0.1] * 7, [0.2, -0.3, 0.1, 0.4, -0.2, 0.5, 0.3, 0.1]])
def test_sign_test_matches_scipy_binomtest(d: list) -> None:
    from ganaug.metrics.stats import sign_test

    x = np.asarray(d, dtype=float)
    pos, n = int((x > 0).sum()), int((x != 0).sum())
    assert sign_test(d) == approx(stats.binomtest(pos, n, 0.5).pvalue)


def test_min_pairs_for_alpha() -> None:
    from ganaug.metrics.stats import min_pairs_for

    assert [min_pairs_for(a) for a in (0.05, 0.1, 0.01, 0.2)] == [6, 5, 8, 4]


def test_decide_needs_three_pairs_and_spread() -> None:
    from ganaug.metrics.stats import decide

    assert decide(paired_test([0.9, 0.95], [0.8, 0.82]), 0.01)[0] == "undecided (too few pairs)"
    flat = paired_test([0.85, 0.86, 0.88, 0.9], [0.80, 0.81, 0.83, 0.85])  # +0.05 each time, up to the last bit
    v, why = decide(flat, None)
    assert v == "undecided (zero spread)" and "sign test gives p = 0.125" in why and flat["p_t"] is None
    same = paired_test([0.8, 0.7, 0.9], [0.8, 0.7, 0.9])
    assert decide(same, 1.0)[0] == "inconclusive"  # not asked about equivalence
    # The same result on every seed: the exact sign tests against ±margin give 2**-n, so 3 seeds cannot show
    # equivalence at 0.05 and 5 can.
    tost3 = tost_paired([0.8, 0.7, 0.9], [0.8, 0.7, 0.9], 0.01)
    assert tost3["p"] is None and tost3["p_sign"] == 0.125
    assert decide(same, 1.0, 0.05, tost3, tost3["p_sign"], seeds=5) == (
        "inconclusive (5 seeds would decide)",
        "the same result on all 3 seeds; exact sign tests against ±1 point, adjusted p = 0.125")
    five = [0.8, 0.7, 0.9, 0.6, 0.5]
    tost5 = tost_paired(five, five, 0.01)
    v, why = decide(paired_test(five, five), 1.0, 0.05, tost5, tost5["p_sign"], seeds=5)
    assert v == "equivalent (±1 pt)" and "adjusted p = 0.0312" in why
    assert decide(paired_test([0.9, 0.91, 0.95], [0.8, 0.8, 0.81]), 0.01) == ("better", "paired t-test, adjusted p = 0.01")
