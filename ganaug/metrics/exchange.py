"""What an arm is worth in real images: the exchange rate read off a learning curve.

From per-seed test accuracies at several real training-set sizes n (images per class) for the real-only
baseline and for other arms, each arm's accuracy a at size n is mapped to the equivalent real size n*: the
fewest real images per class at which the real-only curve reaches a. Then n* - n is what the arm adds in
real images per class, (n* - n) / fakes per class what one fake adds, and n* / n the arm's worth as a
multiple of its real images (the one number for an augmentation arm, which adds no images).

* **The real-only curve is made monotone by isotonic regression** (pool adjacent violators on the seed
  means, weighted by the seeds at each size): more real images do not lower the expected accuracy, so a
  dip is noise, and inverting the curve needs a monotone one to give a single answer. Isotonic regression
  is the least-squares monotone fit: a dip is pooled with its neighbour, whereas a running maximum would
  carry one lucky size's high mean forward and bias every later point upward.
* **Between measured sizes the curve is linear in log(n)**: learning curves are close to straight in
  log(n) over a decade (a power law in the error), so an accuracy halfway between the fits at 20 and 50
  reads as sqrt(20 * 50) = 31.6 real images, not 35. n* is the smallest n with curve(n) >= a, so a flat
  stretch of the fit maps to its start.
* **Outside the measured sizes nothing is extrapolated**: an accuracy above the curve's top is
  censored (n* > the largest size), one below its start likewise (n* < the smallest size).
* **The interval is a bootstrap over seeds**, paired: each resample draws seeds with replacement, and the
  same draw builds the baseline curve and every arm's mean at every size (a seed's runs share its split
  order, initialisation and batches). The interval is the percentile interval, taken at observed
  resample values (no interpolation, so a censored end stays censored). With k seeds only
  C(2k - 1, k) distinct resamples exist (10 for 3 seeds): the interval is then rough, and says so.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

N_BOOT = 2000
BOOT_SEED = 0

# An arm's relation to fakes, which decides what "per fake" means for it.
ADDS_FAKES = "adds fakes"  # real images plus fakes (mix.add, mix.p_real): a fake adds (n* - n) / F real images
FAKES_ONLY = "fakes only"  # the classifier sees only fakes made from n real images: a fake stands for n* / F
NO_FAKES = "no fakes"  # augmentation, oversampling: n* and n* / n only


def monotone_curve(means: Sequence[float], weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """The weighted isotonic (non-decreasing) least-squares fit of `means`, in their order (pool adjacent violators)."""
    y = np.asarray(means, dtype=float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    blocks: List[List[float]] = []  # [value, weight, points]
    for yi, wi in zip(y, w):
        blocks.append([float(yi), float(wi), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.concatenate([np.full(int(c), v) for v, _, c in blocks]) if blocks else y


def equivalent_size(sizes: Sequence[float], curve: Sequence[float], accuracy: float) -> float:
    """The smallest n with curve(n) >= accuracy, the curve (non-decreasing, at increasing `sizes`) linear in log(n)
    between sizes; +inf above the curve's top, -inf below its start (censored: nothing is extrapolated)."""
    n = np.asarray(sizes, dtype=float)
    c = np.asarray(curve, dtype=float)
    if accuracy > c[-1]:
        return math.inf
    if accuracy < c[0]:
        return -math.inf
    i = int(np.argmax(c >= accuracy))  # the first size that reaches it
    if i == 0 or accuracy == c[i]:
        return float(n[i])
    # c[i - 1] < accuracy <= c[i], so the segment rises and t is in (0, 1].
    t = (accuracy - c[i - 1]) / (c[i] - c[i - 1])
    return float(math.exp(math.log(n[i - 1]) + t * (math.log(n[i]) - math.log(n[i - 1]))))


def _matrix(points: Mapping[float, Mapping[Any, float]], sizes: Sequence[float], seeds: Sequence[Any]) -> np.ndarray:
    """Accuracy per (size, seed), NaN where a seed has no run at a size."""
    return np.array([[points.get(n, {}).get(s, np.nan) for s in seeds] for n in sizes], dtype=float)


def _means(m: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per resample (rows of `counts`: how often each seed was drawn) the mean at each size of `m` and the draws
    it rests on; a size none of the drawn seeds reached has weight 0 and mean NaN."""
    present = np.isfinite(m).astype(float)  # sizes x seeds
    weight = counts @ present.T  # resamples x sizes
    total = counts @ np.nan_to_num(m).T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1), np.nan), weight


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval at observed values (infinities kept: a censored end stays censored)."""
    v = np.sort(values[~np.isnan(values)])
    if v.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    lo = v[int(math.floor(tail * (v.size - 1)))]
    hi = v[int(math.ceil((1.0 - tail) * (v.size - 1)))]
    return float(lo), float(hi)


def distinct_resamples(k: int) -> int:
    """How many different multisets a bootstrap of k seeds can draw: C(2k - 1, k)."""
    return math.comb(2 * k - 1, k) if k > 0 else 0


def exchange_rates(real: Mapping[float, Mapping[Any, float]], arms: Mapping[str, Mapping[float, Mapping[Any, float]]],
                   fakes: Optional[Mapping[str, Optional[float]]] = None, kinds: Optional[Mapping[str, str]] = None,
                   confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> Dict[str, Any]:
    """Each arm's equivalent real size at each of its sizes, with bootstrap intervals over seeds.

    Args:
        real: the real-only baseline: size (real images per class) -> seed -> test accuracy; two sizes or more.
        arms: the same for each arm to price.
        fakes: fakes per class behind each arm (None or absent: none, or not one number).
        kinds: ADDS_FAKES, FAKES_ONLY or NO_FAKES per arm; by default ADDS_FAKES where `fakes` gives a number.

    Returns {"sizes", "curve" (the monotone fit at each size), "real_means", "seeds", "distinct_resamples",
    "n_boot", "confidence", "rows"}; a row per (size, arm), sizes first, with the arm's mean accuracy `acc`,
    `n_star`, `ratio` (n* / n), `gain` (n* - n) and `per_fake`, each with `_low`/`_high` bootstrap ends (+-inf:
    censored above the curve's top or below its start; None where it does not apply), and `censored`.
    """
    fakes, kinds = dict(fakes or {}), dict(kinds or {})
    sizes = sorted(float(n) for n in real)
    if len(sizes) < 2:
        raise ValueError(f"a learning curve needs the real-only arm at two sizes or more, got {len(sizes)}")
    if any(n <= 0 for n in sizes):
        raise ValueError(f"real training-set sizes must be positive, got {sizes}")
    seeds = sorted({s for pts in [real, *arms.values()] for by_seed in pts.values() for s in by_seed}, key=str)
    real_m = _matrix(real, sizes, seeds)
    if np.isnan(real_m).all(axis=1).any():
        raise ValueError("the real-only arm has a size without any run")

    # The point estimate: every seed once.
    ones = np.ones((1, len(seeds)))
    real_mean, real_w = _means(real_m, ones)
    curve = monotone_curve(real_mean[0], real_w[0])
    # The bootstrap: one draw of seeds per resample, shared by the curve and every arm at every size.
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, len(seeds), len(seeds)), minlength=len(seeds))
                       for _ in range(n_boot)]).astype(float)
    boot_mean, boot_w = _means(real_m, counts)
    boot_ok = (boot_w > 0).all(axis=1)
    boot_curves = np.full_like(boot_mean, np.nan)
    for b in np.flatnonzero(boot_ok):
        boot_curves[b] = monotone_curve(boot_mean[b], boot_w[b])

    rows: List[Dict[str, Any]] = []
    for name, points in arms.items():
        arm_sizes = sorted(float(n) for n in points if points[n])
        arm_m = _matrix(points, arm_sizes, seeds)
        mean, _ = _means(arm_m, ones)
        b_mean, _ = _means(arm_m, counts)
        f = fakes.get(name)
        kind = kinds.get(name) or (ADDS_FAKES if f else NO_FAKES)
        for j, n in enumerate(arm_sizes):
            a = float(mean[0, j])
            n_star = equivalent_size(sizes, curve, a)
            ok = boot_ok & np.isfinite(b_mean[:, j])
            boot = np.array([equivalent_size(sizes, boot_curves[b], b_mean[b, j]) for b in np.flatnonzero(ok)])
            low, high = _interval(boot, confidence) if boot.size else (math.nan, math.nan)
            row: Dict[str, Any] = {
                "arm": name, "n": n, "kind": kind, "fakes": f, "acc": a, "seeds": int(np.isfinite(arm_m[j]).sum()),
                "n_star": n_star, "n_star_low": low, "n_star_high": high,
                "censored": "above" if n_star == math.inf else "below" if n_star == -math.inf else None,
                "ratio": n_star / n, "ratio_low": low / n, "ratio_high": high / n,
                "gain": n_star - n, "gain_low": low - n, "gain_high": high - n,
                "per_fake": None, "per_fake_low": None, "per_fake_high": None,
            }
            if f and kind == ADDS_FAKES:
                row.update(per_fake=(n_star - n) / f, per_fake_low=(low - n) / f, per_fake_high=(high - n) / f)
            elif f and kind == FAKES_ONLY:
                row.update(per_fake=n_star / f, per_fake_low=low / f, per_fake_high=high / f)
            rows.append(row)
    rows.sort(key=lambda r: r["n"])  # stable: the arms keep their order within a size
    k = len(seeds)
    return {"sizes": sizes, "curve": curve.tolist(), "real_means": real_mean[0].tolist(), "seeds": seeds,
            "distinct_resamples": distinct_resamples(k), "n_boot": n_boot, "boot_seed": seed,
            "confidence": confidence, "rows": rows}


# ----------------------------------------------------------------------------------------------------
# In words.


def _size(v: float) -> str:
    return "0" if v == 0 else f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}"


def _ratio(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}" if abs(v) < 10 else f"{v:.0f}"


def _rate(v: float) -> str:
    return "0" if v == 0 else f"{v:.2g}"


def fmt_value(v: Optional[float], sizes: Sequence[float], g: Callable[[float], float] = lambda x: x,
              fmt: Callable[[float], str] = _size) -> str:
    """g(n*) as text, for a g increasing in n* (n* itself, n* / n, n* - n, per fake): censored at the measured range
    as '> g(largest size)' or '< g(smallest size)'; '-' for none."""
    if v is None or math.isnan(v):
        return "-"
    if math.isinf(v):
        return f"> {fmt(g(max(sizes)))}" if v > 0 else f"< {fmt(g(min(sizes)))}"
    return fmt(g(v))


def fmt_interval(low: Optional[float], high: Optional[float], sizes: Sequence[float],
                 g: Callable[[float], float] = lambda x: x, fmt: Callable[[float], str] = _size) -> str:
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "-"
    return f"[{fmt_value(low, sizes, g, fmt)}, {fmt_value(high, sizes, g, fmt)}]"


def per_fake_map(row: Mapping[str, Any]) -> Optional[Callable[[float], float]]:
    """n* -> real images per fake for the row's arm, or None where it has no fakes to count."""
    n, f, kind = row["n"], row["fakes"], row["kind"]
    if not f or kind == NO_FAKES:
        return None
    return (lambda v: v / f) if kind == FAKES_ONLY else (lambda v: (v - n) / f)


def cells(row: Mapping[str, Any], sizes: Sequence[float]) -> Dict[str, str]:
    """The row's numbers as text: n_star, ratio, gain and per_fake, each with its interval (`*_ci`)."""
    n = row["n"]
    maps: Dict[str, tuple] = {"n_star": (lambda v: v, _size), "ratio": (lambda v: v / n, _ratio),
                              "gain": (lambda v: v - n, lambda v: ("+" if v > 0 else "") + _size(v))}
    per_fake = per_fake_map(row)
    out = {}
    for key, (g, fmt) in list(maps.items()) + ([("per_fake", (per_fake, _rate))] if per_fake else []):
        out[key] = fmt_value(row["n_star"], sizes, g, fmt)
        out[key + "_ci"] = fmt_interval(row["n_star_low"], row["n_star_high"], sizes, g, fmt)
    if not per_fake:
        out["per_fake"] = out["per_fake_ci"] = "-"
    return out


def reading(row: Mapping[str, Any], sizes: Sequence[float]) -> str:
    """The row in one plain sentence: what the arm is worth in real images, or what it costs, and whether its interval
    tells that apart from worth nothing (n* = n)."""
    text = _reading(row, sizes)
    low, high = row["n_star_low"], row["n_star_high"]
    if row["kind"] != FAKES_ONLY and low is not None and high is not None and low <= row["n"] <= high:
        text += f"; its interval includes {row['n']:g}: not told apart from worth nothing"
    return text


def _reading(row: Mapping[str, Any], sizes: Sequence[float]) -> str:
    n, n_star, f, kind = row["n"], row["n_star"], row["fakes"], row["kind"]
    lo_n, hi_n = min(sizes), max(sizes)
    c = cells(row, sizes)
    what = (f"{f:,.0f} fakes per class" + (f" at {n:g} real" if kind == ADDS_FAKES else f" (from {n:g} real)")
            if f and kind != NO_FAKES else f"at {n:g} real")
    if row["censored"] == "above":
        more = f"more than {_size(hi_n - n)} real images per class" if hi_n > n else "something"
        return (f"{what}: above the real-only curve's top ({hi_n:g} per class): worth {more}; "
                "larger real sizes would say how much")
    if kind == FAKES_ONLY:
        if row["censored"] == "below":
            return f"{what}: below the real-only curve's start: worth fewer than {lo_n:g} real images per class"
        return f"{what} ≈ {c['n_star']} real {c['n_star_ci']}: one fake ≈ {c['per_fake']} real images"
    whose = "the fakes cost" if kind == ADDS_FAKES else "it costs"
    if row["censored"] == "below":
        cost = (f"more than {_size(n - lo_n)} real images per class" if n > lo_n
                else f"an amount the curve cannot say (it starts at {lo_n:g} per class)")
        return f"{what}: worth less than nothing: below the real-only curve's start, {whose} {cost}"
    if n_star < n:
        return (f"{what} ≈ {c['n_star']} real {c['n_star_ci']}: worth less than nothing: {whose} the equivalent "
                f"of {_size(n - n_star)} real images per class")
    if per_fake_map(row):
        return f"{what} ≈ {c['n_star']} real {c['n_star_ci']}: one fake ≈ {c['per_fake']} real images"
    return f"{what} ≈ {c['n_star']} real {c['n_star_ci']}: worth {c['ratio']}× its real images"
