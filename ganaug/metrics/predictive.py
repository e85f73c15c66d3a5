"""Which quality score predicts the gain: Spearman's rank correlation, over generators, between a sample-quality
score and an arm's Δ accuracy against the baseline, with an exact or permutation p-value.

* ``average_ranks``  - ranks 1..n with ties given their average rank (scipy's ``rankdata(method="average")``),
* ``spearman``       - rho (the Pearson correlation of the ranks, as ``scipy.stats.spearmanr``), n and a two-sided
  p-value: exact (every permutation of one variable's ranks) for n <= ``EXACT_MAX_N``, else a seeded permutation test,
* ``SCORES``         - the quality scores, each with the direction that is better,
* ``predictive_table`` - for every arm kind with at least ``MIN_GENERATORS`` generators and every score: n, rho,
  p and whether a better score goes with a bigger gain; flagged exploratory below ``EXPLORATORY_BELOW``.

Ranks and the null distribution are computed here with numpy, so the tests can check them against scipy's
``spearmanr`` and ``permutation_test`` rather than against themselves.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

# Every permutation is enumerated up to this n (8! = 40,320 of them); above it, PERMUTATIONS random ones are drawn.
EXACT_MAX_N = 8
PERMUTATIONS = 9_999
# Fewer generators than this give no row: two points always have rho = ±1.
MIN_GENERATORS = 3
# Below this n no two-sided p can reach 0.05 (the smallest exact p is 2/n!: 1/3 at n = 3, 1/12 at n = 4, 1/60 at
# n = 5), so a row is a hint to follow up, not evidence.
EXPLORATORY_BELOW = 5
# Two rhos this close are equal: a permuted rho that ties the observed one counts as at least as extreme.
_TOL = 1e-12


class Score(NamedTuple):
    key: str
    label: str
    higher_is_better: bool


SCORES = [
    Score("fid", "FID", False), Score("kid", "KID", False), Score("precision", "precision", True),
    Score("recall", "recall", True), Score("density", "density", True), Score("coverage", "coverage", True),
    Score("class_consistency", "class consistency", True), Score("cas", "CAS", True),
    Score("copies_pixels", "copies (pixels)", False), Score("copies_features", "copies (features)", False),
]


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties given the average of the ranks they span."""
    a = np.asarray(x, dtype=float)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    for v in np.unique(a):
        tied = a == v
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def _centred_ranks(x: Sequence[float]) -> Optional[np.ndarray]:
    """The ranks less their mean, scaled to unit length; None when every value is the same (rho is undefined)."""
    r = average_ranks(x)
    c = r - r.mean()
    norm = math.sqrt(float(c @ c))
    return None if norm == 0 else c / norm


def spearman(x: Sequence[float], y: Sequence[float], exact_max_n: int = EXACT_MAX_N,
             permutations: int = PERMUTATIONS, seed: int = 0) -> Dict[str, Any]:
    """Spearman's rho between x and y, with n and a two-sided p-value.

    rho is the Pearson correlation of the average ranks (``scipy.stats.spearmanr``). The p-value is the share of
    pairings of x with a permutation of y whose |rho| is at least the observed |rho|: over all n! permutations for
    n <= `exact_max_n` (method "exact"), else over `permutations` random ones drawn with `seed`, counting the
    observed pairing too, (1 + hits) / (1 + permutations) (method "permutation"). rho and p are None when n < 3 or
    either variable is constant.

    Returns: {"n", "rho", "p", "method"}.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} and {len(y)})")
    n = len(x)
    out: Dict[str, Any] = {"n": n, "rho": None, "p": None, "method": None}
    if n < 3:
        return out
    cx, cy = _centred_ranks(x), _centred_ranks(y)
    if cx is None or cy is None:
        return out
    rho = float(np.clip(cx @ cy, -1.0, 1.0))
    rho = 0.0 if abs(rho) < _TOL else rho  # rounding's sign is no direction
    if n <= exact_max_n:
        perms = np.array(list(itertools.permutations(range(n))), dtype=np.intp)
        extra, method = 0, "exact"
    else:
        rng = np.random.default_rng(seed)
        perms = np.argsort(rng.random((permutations, n)), axis=1)
        extra, method = 1, "permutation"
    null = np.abs(cy[perms] @ cx)
    hits = int(np.count_nonzero(null >= abs(rho) - _TOL * max(1.0, abs(rho))))
    return {"n": n, "rho": rho, "p": min(1.0, (hits + extra) / (len(perms) + extra)), "method": method}


def better_gain(rho: Optional[float], higher_is_better: bool) -> Optional[bool]:
    """Whether a better score goes with a bigger gain (rho's sign read in the score's direction); None at rho = 0."""
    if rho is None or abs(rho) < _TOL:
        return None
    return (rho > 0) == higher_is_better


def predictive_table(points: Sequence[Dict[str, Any]], scores: Sequence[Score] = SCORES,
                     min_generators: int = MIN_GENERATORS) -> List[Dict[str, Any]]:
    """One row per arm kind and score: Spearman's rho over generators between the score and the kind's Δ accuracy.

    Args:
        points: one per arm and generator: {"kind" (a key), "kind_label", "arm", "generator" (a label), "delta" (Δ
            accuracy, a fraction, or None), "scores" ({score key: value or None})}.

    A kind with fewer than `min_generators` generators with a Δ gives no rows; a score is left out of a kind where
    fewer than `min_generators` of them have it. Each row: {"kind", "kind_label", "score", "label", "higher_is_better",
    "n", "rho", "p", "method", "better_gain", "exploratory", "points": [{"generator", "arm", "x", "delta"}]}.
    """
    kinds: Dict[str, List[Dict[str, Any]]] = {}
    for p in points:
        if p.get("delta") is not None:
            kinds.setdefault(p["kind"], []).append(p)
    rows = []
    for kind, members in kinds.items():
        if len({p["generator"] for p in members}) < min_generators:
            continue
        for s in scores:
            used = [p for p in members if _finite(p["scores"].get(s.key))]
            if len(used) < min_generators:
                continue
            xs, ys = [float(p["scores"][s.key]) for p in used], [float(p["delta"]) for p in used]
            r = spearman(xs, ys)
            rows.append({"kind": kind, "kind_label": used[0]["kind_label"], "score": s.key, "label": s.label,
                         "higher_is_better": s.higher_is_better, **r,
                         "better_gain": better_gain(r["rho"], s.higher_is_better),
                         "exploratory": r["n"] < EXPLORATORY_BELOW,
                         "points": [{"generator": p["generator"], "arm": p.get("arm"), "x": x, "delta": y}
                                    for p, x, y in zip(used, xs, ys)]})
    return rows


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
