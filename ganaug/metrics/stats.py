"""Statistics for comparing experiment arms across replicate seeds.

Every arm of an experiment is run with the same list of seeds, so two arms give paired scores: the
natural comparison is on the per-seed differences d = a - b. This module gives

* ``mean_ci``      - mean, spread and Student-t confidence interval of one set of scores,
* ``paired_test``  - paired t-test and Wilcoxon signed-rank test on d,
* ``holm`` / ``bonferroni`` - family-wise corrections when many arms are compared with one baseline,
* ``sign_test``    - the exact two-sided sign test, for when the t-test is undefined (zero spread),
* ``min_detectable_difference`` / ``pairs_needed`` - what an inconclusive comparison ruled out, by the
  paired t-test's power (the noncentral t distribution),
* ``tost_paired``  - the two one-sided paired t-tests (TOST) of equivalence within a margin, with the
  (1 - 2 alpha) interval they amount to; ``tost_power`` / ``seeds_to_decide`` - their exact power, and
  the seeds that would show equivalence,
* ``verdict`` / ``decide`` - the plain-words reading (better, worse, equivalent, inconclusive) of the
  adjusted p-values, and whether the evidence allows one at all (at least ``MIN_PAIRS`` pairs, a
  non-zero spread of the differences).

The statistics are computed here with numpy; scipy is used only for the t and normal distribution
functions and one numerical integral (TOST's power). Keeping the tests themselves out of scipy lets the
unit tests check this code against scipy's ``ttest_rel`` / ``wilcoxon`` (and statsmodels'
``ttost_paired``) instead of against itself.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.integrate import quad
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


def _differences(a: Sequence[float], b: Sequence[float], who: str) -> Tuple[np.ndarray, bool]:
    """The paired differences d = a - b, and whether they all are the same (zero spread; then made exactly equal)."""
    x = _as_vector(a, "a")
    y = _as_vector(b, "b")
    if x.size != y.size:
        raise ValueError(f"{who} needs equal lengths, got {x.size} and {y.size}")
    if x.size == 0:
        raise ValueError(f"{who} needs at least one pair")
    d = x - y
    # Accuracies are counts over the same test set, so equal differences can differ in the last bit
    # (0.85 - 0.80 != 0.86 - 0.81 in floating point); within this tolerance they are the same.
    tol = 1e-12 * max(1.0, float(np.abs(x).max()), float(np.abs(y).max()))
    zero_spread = bool(d.size >= 2 and np.ptp(d) <= tol)
    if zero_spread:
        d = np.full_like(d, float(np.median(d)))
    return d, zero_spread


def paired_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Dict[str, Any]:
    """Paired comparison of ``a`` against ``b`` (same seeds, same order) on the differences d = a - b.

    Returns {"n", "mean", "std", "ci_low", "ci_high"} (t-interval of the mean difference), {"t", "df",
    "p_t"} (two-sided paired t-test), and {"w", "p_wilcoxon", "wilcoxon_method", "wilcoxon_min_p"}
    (two-sided Wilcoxon signed-rank test; w = min(W+, W-) as scipy reports it). Unequal lengths or no
    pairs raise ValueError. With one pair the t quantities are None.
    """
    d, zero_spread = _differences(a, b, "paired_test")
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


def equivalent_label(margin: float) -> str:
    """The equivalence verdict with its margin in accuracy points: "equivalent (±1 pt)" for a margin of 0.01."""
    points = 100.0 * margin
    return f"equivalent (±{points:.3g} pt{'s' if points > 1 else ''})"


def verdict(mean_diff: Optional[float], p_adjusted: Optional[float], alpha: float = 0.05,
            p_equivalence: Optional[float] = None, margin: Optional[float] = None) -> str:
    """Plain-words reading of a comparison.

    "too few replicates" if p_adjusted is None; "better" / "worse" if p_adjusted < alpha and the mean difference is
    positive / negative; otherwise "equivalent (±margin)" if the equivalence test's (TOST's) adjusted p-value
    `p_equivalence` is below alpha, else "inconclusive": not significant is not the same as no effect.
    """
    if p_adjusted is None:
        return "too few replicates"
    if mean_diff is not None and p_adjusted < alpha:
        if mean_diff > 0:
            return "better"
        if mean_diff < 0:
            return "worse"
    if p_equivalence is not None and margin is not None and p_equivalence < alpha:
        return equivalent_label(margin)
    return "inconclusive"


def decide(delta: Dict[str, Any], p_adjusted: Optional[float], alpha: float = 0.05,
           tost: Optional[Dict[str, Any]] = None, p_equivalence: Optional[float] = None,
           seeds: Optional[int] = None) -> Tuple[str, str]:
    """(verdict, reason) for a paired comparison (``paired_test``'s result) and its family-adjusted p-value; with
    ``tost_paired``'s result and its family-adjusted p-value, the verdict can also be "equivalent (±margin)", and an
    "inconclusive" one says how many `seeds` would decide ("inconclusive (7 seeds would decide)") when that is more
    than it has.

    No verdict comes from degenerate evidence: fewer than MIN_PAIRS pairs, or identical non-zero differences
    (zero spread: the t-test is undefined). The verdict then starts with "undecided" and the reason says why.
    Identical differences of zero (the same result on every seed) are equivalent or inconclusive by the exact
    sign tests against the margin (``tost_paired``'s p_sign), as the caller passed them in p_equivalence.
    """
    n = delta.get("n") or 0
    if n < MIN_PAIRS:
        return ("undecided (too few pairs)",
                f"only {n} pair{'s' if n != 1 else ''}; a verdict needs at least {MIN_PAIRS} seeds shared with the baseline")
    if delta.get("zero_spread") and delta.get("mean"):
        return ("undecided (zero spread)",
                f"every one of the {n} pairs differs by the same {100 * delta['mean']:+.2f} points (zero spread), so "
                f"the t-test is undefined; the exact sign test gives p = {delta['p_sign']:.3f}")
    margin = tost["margin"] if tost else None
    v = verdict(delta.get("mean"), p_adjusted, alpha, p_equivalence, margin)
    if delta.get("zero_spread"):
        why = f"the same result on all {n} seeds"
    else:
        why = f"paired t-test, adjusted p = {p_adjusted:.3g}" if p_adjusted is not None else ""
    if v in ("better", "worse") or tost is None or p_equivalence is None:
        return v, why
    test = "exact sign tests" if delta.get("zero_spread") else "TOST"
    points = 100 * tost["margin"]
    why += f"; {test} against ±{points:.3g} point{'s' if points != 1 else ''}, adjusted p = {p_equivalence:.3g}"
    if tost.get("ci_low") is not None and not delta.get("zero_spread"):
        # The (1 - 2 alpha) interval inside the margin is TOST at alpha before the correction; after it, it may not do.
        inside = -tost["margin"] < tost["ci_low"] and tost["ci_high"] < tost["margin"]
        why += (f", {100 * tost['confidence']:g}% CI of Δ [{100 * tost['ci_low']:+.2f}, {100 * tost['ci_high']:+.2f}] "
                + (f"inside ±{100 * tost['margin']:.3g}" if inside else f"reaching past ±{100 * tost['margin']:.3g}")
                + (" but not by enough for the correction" if inside and v == "inconclusive" else ""))
    if v == "inconclusive" and seeds is not None and seeds > n:
        v = f"inconclusive ({seeds} seeds would decide)"
    return v, why


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


# ----------------------------------------------------------------------------------------------------
# Equivalence: is the difference inside ±margin, and how many seeds would show it?


def _binomial_upper_tail(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) >= k), exactly."""
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2.0**n


def tost_paired(a: Sequence[float], b: Sequence[float], margin: float, alpha: float = 0.05) -> Dict[str, Any]:
    """Two one-sided paired t-tests (TOST) of equivalence of ``a`` and ``b`` within ±margin, on d = a - b.

    H0: mean(d) <= -margin or mean(d) >= +margin; rejecting both one-sided nulls shows -margin < mean(d) < margin.
    Returns {"n", "mean", "std", "df", "margin"}, {"t_lower", "p_lower"} (against H0: mean <= -margin),
    {"t_upper", "p_upper"} (against H0: mean >= +margin), "p" (their max, TOST's p-value, as statsmodels'
    ``ttost_paired``), {"confidence", "ci_low", "ci_high"}: the Student-t interval at 1 - 2 alpha (90% at 0.05),
    which lies strictly inside ±margin exactly when p < alpha; "zero_spread"; and "p_sign": the same two tests as
    exact sign tests (each P(Binomial >= the pairs on the equivalent side of its bound), ties with a bound dropped).

    Degenerate cases, as ``paired_test`` treats them: no pairs or unequal lengths raise ValueError; one pair leaves
    the t quantities and the interval None. Identical differences (zero spread, within the last bit) make t = ±inf
    and statsmodels' p = 0 or 1 from no evidence of spread at all: here the t quantities are None and p_sign speaks
    (with every one of n differences inside the margin it is 2**-n, so it takes 5 pairs to go below 0.05).
    """
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a positive number, got {margin}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    d, zero_spread = _differences(a, b, "tost_paired")
    n = int(d.size)
    summary = mean_ci(d, 1.0 - 2.0 * alpha)
    mean, std = float(summary["mean"]), summary["std"]  # type: ignore[arg-type]
    out: Dict[str, Any] = {
        "n": n, "mean": mean, "std": std, "df": n - 1 if n >= 2 else None, "margin": float(margin),
        "t_lower": None, "p_lower": None, "t_upper": None, "p_upper": None, "p": None,
        "confidence": 1.0 - 2.0 * alpha, "ci_low": summary["ci_low"], "ci_high": summary["ci_high"],
        "zero_spread": zero_spread,
    }
    if n >= 2 and not zero_spread:
        sem, df = float(summary["sem"]), n - 1  # type: ignore[arg-type]
        t_lower, t_upper = (mean + margin) / sem, (mean - margin) / sem
        p_lower, p_upper = float(student_t.sf(t_lower, df)), float(student_t.cdf(t_upper, df))
        out.update(t_lower=t_lower, p_lower=p_lower, t_upper=t_upper, p_upper=p_upper, p=max(p_lower, p_upper))
    above, below = d[d != -margin], d[d != margin]
    out["p_sign"] = max(_binomial_upper_tail(int(np.sum(above > -margin)), int(above.size)),
                        _binomial_upper_tail(int(np.sum(below < margin)), int(below.size)))
    return out


def tost_power(margin: float, n: int, alpha: float, difference: float = 0.0) -> float:
    """Exact power of the paired TOST at level `alpha` with n pairs, the margin and the true mean difference in units
    of the differences' standard deviation: P(-margin + c s/√n < mean < margin - c s/√n), c = t_{1-alpha, n-1}.

    The mean is normal and the sample variance an independent scaled chi-square, so the power is one integral over
    u = (n - 1) s² (Owen's Q, as in Phillips 1990), done here by quad: no approximation beyond the quadrature's.
    """
    if n < 2 or not margin > 0:
        return 0.0
    df, root = n - 1, math.sqrt(n)
    c = float(student_t.ppf(1.0 - alpha, df))
    # Equivalence needs c s / √n < margin: s below margin √n / c, i.e. u = df s² below u_max.
    u_max = df * (margin * root / c) ** 2
    log_norm = -(df / 2.0) * math.log(2.0) - math.lgamma(df / 2.0)  # the chi-square density's constant

    def phi(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2.0))

    def given(u: float) -> float:
        # P(equivalence | u) times u's chi-square density, with math's functions: quad calls this often.
        half = margin - c * math.sqrt(u / df) / root
        if u <= 0.0 or half <= 0.0:
            return 0.0
        density = math.exp(log_norm + (df / 2.0 - 1.0) * math.log(u) - u / 2.0)
        return (phi(root * (half - difference)) - phi(root * (-half - difference))) * density

    peak = [x for x in (max(df - 2.0, 0.0), float(df)) if 0.0 < x < u_max]  # the density's mode and mean
    value, _ = quad(given, 0.0, u_max, points=peak or None, limit=200, epsabs=1e-13, epsrel=1e-11)
    return min(1.0, max(0.0, value))


def seeds_to_decide(sd: float, margin: float, alpha: float, power: float = 0.8, limit: int = 10_000) -> Optional[int]:
    """The fewest pairs with which TOST at `alpha` shows equivalence within ±margin with `power` when the true mean
    difference is 0, given a spread `sd` of the differences (exact power, ``tost_power``); None beyond `limit`.

    With sd == 0 (every pair the same) the t-tests are undefined and the exact sign tests decide: the fewest n with
    2**-n < alpha.
    """
    if not margin > 0:
        return None
    if sd == 0:
        return next(n for n in range(1, 64) if 0.5**n < alpha)
    if not sd > 0:
        return None
    effect = margin / sd

    def enough(n: int) -> bool:
        return tost_power(effect, n, alpha) >= power

    # The power at a true difference of 0 grows with n: double to bracket, then bisect.
    lo, hi = 1, 2
    while not enough(hi):
        lo, hi = hi, 2 * hi
        if lo >= limit:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi if hi <= limit else None
