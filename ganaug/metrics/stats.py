"""Statistics for comparing experiment arms across replicate seeds.

Every arm of an experiment is run with the same list of seeds, so two arms give paired scores: the
natural comparison is on the per-seed differences d = a - b. This module gives

* ``mean_ci``      - mean, spread and Student-t confidence interval of one set of scores,
* ``paired_test``  - paired t-test and Wilcoxon signed-rank test on d,
* ``holm`` / ``bonferroni`` - family-wise corrections when many arms are compared with one baseline,
* ``sign_test``    - the exact two-sided sign test, for when the t-test is undefined (zero spread),
* ``min_detectable_difference`` / ``pairs_needed`` - what a "no detectable difference" ruled out, by the
  paired t-test's power (the noncentral t distribution),
* ``verdict`` / ``decide`` - the plain-words reading of an adjusted p-value, and whether the evidence
  allows one at all (at least ``MIN_PAIRS`` pairs, a non-zero spread of the differences).

The statistics are computed here with numpy; scipy is used only for the t and normal distribution
functions. Keeping the tests themselves out of scipy lets the unit tests check this code against
scipy's ``ttest_rel`` / ``wilcoxon`` instead of against itself.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.stats import nct, norm
from scipy.stats import t as student_t

# scipy's ``wilcoxon(method="auto")`` rules (1.17): with more than this many differences (zeros
# included) the normal approximation is used whatever the data ...
EXACT_MAX_N = 50
# ... and with ties or zeros the exact signed-rank table no longer applies, so scipy enumerates all
# 2**n sign flips (a permutation test) when n is at most this, and uses the normal approximation above.
PERMUTATION_MAX_N = 13
# Fewer pairs than this give no verdict: with 2 pairs the t-test has 1 degree of freedom and its interval
# is wider than any effect worth reporting, and one lucky seed decides it.
MIN_PAIRS = 3


def _as_vector(values: Sequence[float], name: str) -> np.ndarray:
    """1-D float64 copy of ``values``; NaN or inf would silently poison every statistic, so refuse them."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Dict[str, Optional[float]]:
    """{"n", "mean", "std" (ddof=1), "sem", "ci_low", "ci_high"}: Student-t interval of the mean.

    n == 0 raises ValueError; with n == 1 there is no spread, so std/sem/ci_low/ci_high are None.
    """
    _check_confidence(confidence)
    x = _as_vector(values, "values")
    n = int(x.size)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    if np.all(x == x[0]):
        # Identical values: report the value itself and an exact zero spread. np.mean/np.std can be
        # off by an ulp here (e.g. three copies of 0.1), which would turn "no spread" into a tiny one.
        mean, std = float(x[0]), 0.0
    else:
        mean, std = float(np.mean(x)), float(np.std(x, ddof=1))
    if n == 1:
        return {"n": n, "mean": mean, "std": None, "sem": None, "ci_low": None, "ci_high": None}
    sem = std / math.sqrt(n)
    half = float(student_t.ppf((1.0 + confidence) / 2.0, n - 1)) * sem
    return {"n": n, "mean": mean, "std": std, "sem": sem, "ci_low": mean - half, "ci_high": mean + half}


def _doubled_average_ranks(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Twice the average ranks of ``x`` (1-based), and the size of each tie group.

    A tie group filling sorted positions i..j (1-based) has average rank (i + j) / 2, so twice the rank
    is the integer i + j: working with doubled ranks keeps the null distribution on an integer grid
    even when ties produce half ranks.
    """
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # 0-based first position of each group
    ends = np.r_[starts[1:], xs.size]  # 0-based one-past-last, i.e. the 1-based last position
    sizes = ends - starts
    doubled = np.empty(x.size, dtype=np.int64)
    doubled[order] = np.repeat(starts + 1 + ends, sizes)
    return doubled, sizes


def _sign_flip_counts(doubled_ranks: np.ndarray) -> np.ndarray:
    """counts[s] = number of the 2**n sign assignments whose doubled positive-rank sum is s.

    Dynamic programming adds one rank at a time (each either in or out of the positive sum). Without
    ties this is the classical exact signed-rank distribution; with ties it is the exact permutation
    distribution given the observed tie pattern. int64 is exact: at most 2**50 assignments are counted.
    """
    counts = np.zeros(int(doubled_ranks.sum()) + 1, dtype=np.int64)
    counts[0] = 1
    for r in doubled_ranks.tolist():
        shifted = np.zeros_like(counts)
        shifted[r:] = counts[:-r]
        counts += shifted
    return counts


def _wilcoxon(d: np.ndarray) -> Tuple[float, float, str, Optional[float]]:
    """Two-sided Wilcoxon signed-rank test on differences ``d``: (w, p, method, min_p).

    Follows scipy 1.17's ``wilcoxon(d, zero_method="wilcox", correction=False, method="auto")``:
    zeros are dropped before ranking; the test is exact (full enumeration of sign flips) when
    len(d) <= 13, or when len(d) <= 50 and there are neither ties nor zeros; otherwise it is the
    normal approximation with tie correction and no continuity correction.
    """
    nonzero = d[d != 0]
    n_nz = int(nonzero.size)
    if n_nz == 0:
        # No signed differences at all: nothing points either way, and no smallest p to report.
        return 0.0, 1.0, "exact", None
    doubled, tie_sizes = _doubled_average_ranks(np.abs(nonzero))
    plus2 = int(doubled[nonzero > 0].sum())  # 2 * W+
    minus2 = int(doubled[nonzero < 0].sum())  # 2 * W-
    w = min(plus2, minus2) / 2.0
    has_ties = bool(np.any(tie_sizes > 1))
    has_zeros = n_nz < d.size
    # scipy decides on the *total* number of differences, zeros included; mirrored for identical p-values.
    n_total = int(d.size)
    exact = n_total <= PERMUTATION_MAX_N or (n_total <= EXACT_MAX_N and not (has_ties or has_zeros))

    if exact:
        counts = _sign_flip_counts(doubled)
        total = 2**n_nz
        # Two-sided p = 2 * the smaller tail, both tails including the observed value.
        tail = min(int(counts[: plus2 + 1].sum()), int(counts[plus2:].sum()))
        p = min(1.0, 2.0 * tail / total)
        # The most extreme outcome (all differences of one sign) is reached by exactly one sign
        # assignment per side, ties or not, so this is the floor on p at this n.
        return w, p, "exact", min(1.0, 2.0 / total)

    n = float(n_nz)
    mean_w = n * (n + 1.0) / 4.0
    var_w = n * (n + 1.0) * (2.0 * n + 1.0) / 24.0 - float(np.sum(tie_sizes.astype(np.float64) ** 3 - tie_sizes)) / 48.0
    # scipy builds z from W+ and reports -|z|; using min(W+, W-) gives the same -|z|.
    z = (w - mean_w) / math.sqrt(var_w)
    p = min(1.0, 2.0 * float(norm.sf(abs(z))))
    return w, p, "approx", None


def paired_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Dict[str, Any]:
    """Paired comparison of ``a`` against ``b`` (same seeds, same order) on the differences d = a - b.

    Returns {"n", "mean", "std", "ci_low", "ci_high"} (t-interval of the mean difference), {"t", "df",
    "p_t"} (two-sided paired t-test), and {"w", "p_wilcoxon", "wilcoxon_method", "wilcoxon_min_p"}
    (two-sided Wilcoxon signed-rank test; w = min(W+, W-) as scipy reports it). Unequal lengths or no
    pairs raise ValueError. With one pair the t quantities are None.
    """
    x = _as_vector(a, "a")
    y = _as_vector(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired_test needs equal lengths, got {x.size} and {y.size}")
    if x.size == 0:
        raise ValueError("paired_test needs at least one pair")
    d = x - y
    # Accuracies are counts over the same test set, so equal differences can differ in the last bit
    # (0.85 - 0.80 != 0.86 - 0.81 in floating point); within this tolerance they are the same.
    tol = 1e-12 * max(1.0, float(np.abs(x).max()), float(np.abs(y).max()))
    zero_spread = bool(d.size >= 2 and np.ptp(d) <= tol)
    if zero_spread:
        d = np.full_like(d, float(np.median(d)))
    summary = mean_ci(d, confidence)
    n = int(d.size)
    mean = float(summary["mean"])  # type: ignore[arg-type]

    t_stat: Optional[float] = None
    df: Optional[int] = None
    p_t: Optional[float] = None
    if n >= 2:
        df = n - 1
        if zero_spread:
            # t = mean / 0. Identical differences of 0 are no evidence of a difference (p = 1); identical
            # non-zero differences leave the t-test undefined (scipy returns nan): the sign test speaks instead.
            if mean == 0.0:
                t_stat, p_t = 0.0, 1.0
        else:
            t_stat = mean / float(summary["sem"])  # type: ignore[arg-type]
            p_t = float(2.0 * student_t.sf(abs(t_stat), df))

    w, p_w, method, min_p = _wilcoxon(d)
    return {
        "n": n,
        "mean": mean,
        "std": summary["std"],
        "ci_low": summary["ci_low"],
        "ci_high": summary["ci_high"],
        "t": t_stat,
        "df": df,
        "p_t": p_t,
        "zero_spread": zero_spread,
        "p_sign": sign_test(d),
        "w": w,
        "p_wilcoxon": p_w,
        "wilcoxon_method": method,
        "wilcoxon_min_p": min_p,
    }


def sign_test(d: Sequence[float]) -> float:
    """Exact two-sided sign test on differences ``d`` (zeros dropped): 2 * P(Binomial(n, 1/2) <= min(k+, k-))."""
    x = _as_vector(d, "d")
    pos, neg = int(np.sum(x > 0)), int(np.sum(x < 0))
    n = pos + neg
    if n == 0:
        return 1.0
    k = min(pos, neg)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def min_pairs_for(alpha: float) -> int:
    """The fewest pairs with which an exact signed-rank (or sign) test can reach p < alpha: 2 / 2**n < alpha."""
    n = 1
    while 2.0 / 2**n >= alpha:
        n += 1
    return n


def _present(pvalues: Sequence[Optional[float]]) -> List[int]:
    """Indices of the p-values that are not None, after checking they are probabilities."""
    idx = []
    for i, p in enumerate(pvalues):
        if p is None:
            continue
        if not 0.0 <= float(p) <= 1.0:  # also rejects NaN
            raise ValueError(f"p-value at position {i} is not in [0, 1]: {p}")
        idx.append(i)
    return idx


def holm(pvalues: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm-Bonferroni step-down adjusted p-values, in the order given, monotone and capped at 1.

    None entries (comparisons with too few replicates to test) stay None and do not count toward m.
    """
    idx = _present(pvalues)
    m = len(idx)
    out: List[Optional[float]] = [None] * len(pvalues)
    # Stable sort so equal p-values keep their input order; the running max makes the adjusted
    # values monotone in the raw ones, as the step-down procedure requires.
    running = 0.0
    for k, i in enumerate(sorted(idx, key=lambda j: float(pvalues[j]))):  # type: ignore[arg-type]
        running = max(running, min(1.0, (m - k) * float(pvalues[i])))  # type: ignore[arg-type]
        out[i] = running
    return out


def bonferroni(pvalues: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Bonferroni adjusted p-values min(1, p * m); None entries stay None and do not count toward m."""
    idx = _present(pvalues)
    m = len(idx)
    out: List[Optional[float]] = [None] * len(pvalues)
    for i in idx:
        out[i] = min(1.0, m * float(pvalues[i]))  # type: ignore[arg-type]
    return out


def verdict(mean_diff: Optional[float], p_adjusted: Optional[float], alpha: float = 0.05) -> str:
    """Plain-words reading of a comparison.

    "too few replicates" if p_adjusted is None; "better" / "worse" if p_adjusted < alpha and the mean
    difference is positive / negative; otherwise "no detectable difference".
    """
    if p_adjusted is None:
        return "too few replicates"
    if mean_diff is not None and p_adjusted < alpha:
        if mean_diff > 0:
            return "better"
        if mean_diff < 0:
            return "worse"
    return "no detectable difference"


def decide(delta: Dict[str, Any], p_adjusted: Optional[float], alpha: float = 0.05) -> Tuple[str, str]:
    """(verdict, reason) for a paired comparison (``paired_test``'s result) and its family-adjusted p-value.

    No verdict comes from degenerate evidence: fewer than MIN_PAIRS pairs, or identical non-zero differences
    (zero spread: the t-test is undefined). The verdict then starts with "undecided" and the reason says why;
    identical differences of zero (the same result on every seed) are "no detectable difference".
    """
    n = delta.get("n") or 0
    if n < MIN_PAIRS:
        return ("undecided (too few pairs)",
                f"only {n} pair{'s' if n != 1 else ''}; a verdict needs at least {MIN_PAIRS} seeds shared with the baseline")
    if delta.get("zero_spread") and delta.get("mean"):
        return ("undecided (zero spread)",
                f"every one of the {n} pairs differs by the same {100 * delta['mean']:+.2f} points (zero spread), so "
                f"the t-test is undefined; the exact sign test gives p = {delta['p_sign']:.3f}")
    if delta.get("zero_spread"):
        return "no detectable difference", f"the same result on all {n} seeds"
    v = verdict(delta.get("mean"), p_adjusted, alpha)
    return v, f"paired t-test, adjusted p = {p_adjusted:.3g}" if p_adjusted is not None else ""


def t_power(effect: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired (one-sample) t-test with n pairs to detect a standardised effect."""
    df = n - 1
    crit = float(student_t.ppf(1.0 - alpha / 2.0, df))
    nc = effect * math.sqrt(n)
    return float(nct.sf(crit, df, nc) + nct.cdf(-crit, df, nc))


def min_detectable_difference(sd: float, n: int, alpha: float, power: float = 0.8) -> Optional[float]:
    """The smallest true mean difference the paired t-test with n pairs detects with `power` at level `alpha`,
    given a spread `sd` of the differences (as observed): the effect solving t_power = power, times sd."""
    if n < 2 or not sd > 0:
        return None
    lo, hi = 0.0, 1.0
    while t_power(hi, n, alpha) < power:
        hi *= 2.0
        if hi > 1e6:
            return None
    for _ in range(100):  # bisection on the standardised effect
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if t_power(mid, n, alpha) < power else (lo, mid)
    return hi * sd


def pairs_needed(difference: float, sd: float, alpha: float, power: float = 0.8, limit: int = 10_000) -> Optional[int]:
    """The fewest pairs (seeds) with which the paired t-test detects `difference` with `power`, given spread `sd`."""
    if not sd > 0 or difference == 0:
        return None
    effect = abs(difference) / sd
    for n in range(2, limit + 1):
        if t_power(effect, n, alpha) >= power:
            return n
    return None
