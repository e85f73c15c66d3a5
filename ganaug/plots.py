"""Figures for GAN training and classifier comparisons, written atomically as PNG files.

Only matplotlib's object-oriented API is used (no pyplot), so nothing here touches global state
and everything works headless. Accuracies come in as fractions (0..1) and are drawn in %.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import offset_copy

PathLike = Union[str, Path]

DPI = 110
SEED_DOT = dict(s=14, alpha=0.35, linewidths=0, zorder=2)

__all__ = ["arm_accuracy_figure", "confusions_figure", "exchange_figure", "gan_metrics_figure", "plot_arm_accuracy",
           "plot_confusions", "plot_exchange",
           "plot_gan_metrics", "plot_precision_recall", "plot_predictive", "plot_sweep", "plot_sweep_arms",
           "plot_val_curves", "precision_recall_figure", "predictive_figure", "sweep_arms_figure", "sweep_figure",
           "val_curves_figure"]


# ----------------------------------------------------------------------------------------------------
# Shared pieces.


def _new_figure(width: float, height: float) -> Figure:
    """A figure with its own Agg canvas and constrained layout."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _write_png(fig: Figure, path: PathLike) -> Path:
    """Render `fig` to PNG bytes, then write them atomically to `path`."""
    # Imported here because ganaug.utils pulls in torch, which would make importing this module slow.
    from .utils import atomic_open

    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def _num(value: Any) -> Optional[float]:
    """A float for a real number, None for anything else (None, bool, str, missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value)


def _pct(value: Any) -> Optional[float]:
    """A fraction as a percentage, or None."""
    v = _num(value)
    return None if v is None else 100.0 * v


def _pct_values(values: Any) -> List[float]:
    """A list of fractions as finite percentages, dropping anything else."""
    out = [_pct(v) for v in (values or [])]
    return [v for v in out if v is not None and math.isfinite(v)]


def _empty(ax: Any, message: str) -> None:
    """Say in the axes that there is nothing to draw."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _legend_below(ax: Any, ncol: int = 3) -> None:
    """A frameless legend under the axes' x label, out of the data's way."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        # A fixed offset in points (tick labels plus x label) clears the label whatever the axes' height.
        below = offset_copy(ax.transAxes, fig=ax.figure, y=-36, units="points")
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below, ncol=ncol,
                  frameon=False, fontsize="small")


# ----------------------------------------------------------------------------------------------------
# GAN training.

_LOSS_KEYS = (("loss/G", "tab:blue"), ("loss/D", "tab:red"))
_PROB_KEYS = (("D(x)", "tab:green"), ("D(G(z))", "tab:purple"))


def gan_metrics_figure(rows: Sequence[Dict[str, Any]], title: str = "GAN training") -> Figure:
    """Losses (left) and discriminator outputs with the ADA probability (right) against kimg."""
    groups: Dict[Optional[int], List[Dict[str, Any]]] = {}
    for row in rows:
        cls = row.get("class")
        groups.setdefault(None if cls is None else int(cls), []).append(row)
    per_class = any(k is not None for k in groups)
    lw, alpha = (0.9, 0.75) if per_class else (1.5, 1.0)

    with_fid = any(_num(r.get("fid/val")) is not None for r in rows)
    fig = _new_figure(13.0 if with_fid else 9.0, 3.9)
    axes = fig.subplots(1, 3 if with_fid else 2)
    ax_loss, ax_prob = axes[0], axes[1]
    drawn = {ax: False for ax in axes}
    labelled: set = set()

    def draw(ax: Any, group: List[Dict[str, Any]], key: str, color: str, label: str, **style: Any) -> None:
        xs, ys = [], []
        for row in group:
            x, y = _num(row.get("kimg")), _num(row.get(key))
            if x is not None and y is not None:
                xs.append(x)
                ys.append(y)
        if not xs:
            return
        # One legend entry per metric, however many per-class lines share its colour.
        ax.plot(xs, ys, color=color, lw=lw, alpha=alpha, label=None if label in labelled else label, **style)
        labelled.add(label)
        drawn[ax] = True

    for cls in sorted(groups, key=lambda c: -1 if c is None else c):
        group = groups[cls]
        for key, color in _LOSS_KEYS:
            draw(ax_loss, group, key, color, key)
        for key, color in _PROB_KEYS:
            draw(ax_prob, group, key, color, key)
        draw(ax_prob, group, "augment/p", "tab:orange", "ADA p", linestyle="--")
        if with_fid:
            draw(axes[2], group, "fid/val", "tab:brown", "FID (validation)", marker="o", ms=3)

    ax_loss.set_title("Losses", fontsize="medium")
    ax_loss.set_ylabel("loss")
    ax_prob.set_title("Discriminator outputs", fontsize="medium")
    ax_prob.set_ylabel("sigmoid output / probability")
    ax_prob.set_ylim(-0.03, 1.03)
    if with_fid:
        axes[2].set_title("FID of G_ema on the validation images", fontsize="medium")
        axes[2].set_ylabel("FID (domain features)")
    for ax in axes:
        if drawn[ax]:
            ax.set_xlabel("kimg (thousands of real images shown to D)")
            ax.grid(True, alpha=0.3)
            _legend_below(ax)
        else:
            _empty(ax, "no data")
    n_classes = sum(1 for k in groups if k is not None)
    fig.suptitle(f"{title} ({n_classes} per-class GANs, one line each)" if per_class else title)
    return fig


def plot_gan_metrics(rows: Sequence[Dict[str, Any]], path: PathLike, title: str = "GAN training") -> Path:
    """Losses (left) and discriminator outputs with the ADA probability (right) against kimg. Written to `path`."""
    return _write_png(gan_metrics_figure(rows, title=title), path)


# ----------------------------------------------------------------------------------------------------
# Validation curves.


def _seed_curve(seed: Sequence[Tuple[int, float]]) -> Dict[int, float]:
    """step -> accuracy in %; a repeated step (e.g. after a resume) keeps its last value."""
    out: Dict[int, float] = {}
    for step, acc in seed:
        s, a = _num(step), _pct(acc)
        if s is not None and a is not None:
            out[int(s)] = a
    return out


def val_curves_figure(curves: Dict[str, List[List[Tuple[int, float]]]],
                    title: str = "Validation accuracy (real validation set)") -> Figure:
    """Mean validation accuracy (%) over seeds against step, one line per arm, with a min..max band."""
    fig = _new_figure(8.0, 4.5)
    ax = fig.subplots()
    any_line = False
    for arm, seeds in curves.items():
        per_seed = [c for c in (_seed_curve(s) for s in seeds) if c]
        if not per_seed:
            continue
        common = sorted(set.intersection(*(set(c) for c in per_seed)))
        if common:
            acc = np.array([[c[s] for s in common] for c in per_seed])
            (line,) = ax.plot(common, acc.mean(axis=0), lw=1.6, marker="o" if len(common) == 1 else None, zorder=3,
                              label=f"{arm} (n={len(per_seed)})")
            if len(per_seed) > 1:
                ax.fill_between(common, acc.min(axis=0), acc.max(axis=0), color=line.get_color(), alpha=0.18,
                                linewidth=0, zorder=1)
        else:
            # Seeds evaluated at disjoint steps: no mean exists, so show each seed faintly instead.
            color = None
            for i, c in enumerate(per_seed):
                steps = sorted(c)
                (line,) = ax.plot(steps, [c[s] for s in steps], lw=0.9, alpha=0.6, color=color, marker=".",
                                  label=f"{arm} (n={len(per_seed)}, no common steps)" if i == 0 else None)
                color = line.get_color()
        any_line = True

    if not any_line:
        _empty(ax, "no validation curves")
    else:
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(True, alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        if len(handles) > 4:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
        else:
            ax.legend(loc="lower right", fontsize="small")
    ax.set_title(title + ("; band = min..max over seeds" if any_line else ""), fontsize="medium")
    return fig


def plot_val_curves(curves: Dict[str, List[List[Tuple[int, float]]]], path: PathLike,
                    title: str = "Validation accuracy (real validation set)") -> Path:
    """Mean validation accuracy (%) over seeds against step, one line per arm, with a min..max band. Written to `path`."""
    return _write_png(val_curves_figure(curves, title=title), path)


# ----------------------------------------------------------------------------------------------------
# Confusion matrices.


# Confusion-matrix panels: wide enough for their numbers to be read, few enough per row for the figure to be shown at
# about its own size in a report (1,250 px at DPI 110: a 1280-px window's column) and no less than 0.6 of it at 800 px.
CONFUSION_MAX_WIDTH = 11.3  # inches
CONFUSION_NUMBER_PT = {5: 12.0, 10: 10.0}  # cell numbers' size by the most classes it serves; none above 10 classes


def confusions_figure(mats: Dict[str, Any], classes: Sequence[str], seeds: Optional[Dict[str, int]] = None) -> Figure:
    """One row-normalised (%) confusion-matrix heatmap per arm, sharing a colour scale. `mats` may be sums over seeds:
    `seeds` (arm -> how many) makes each panel's n the test images per seed, and says so."""
    k = len(classes)
    arms = list(mats)
    counts = {}
    for arm in arms:
        m = np.asarray(mats[arm], dtype=float)
        if m.shape != (k, k):
            raise ValueError(f"confusion matrix for arm '{arm}' has shape {m.shape}, expected ({k}, {k}) for {k} classes")
        counts[arm] = m

    panel = 2.6 + 0.19 * min(k, 10)  # inches per heatmap: room for k labels and k*k numbers
    ncols = max(1, min(len(arms), int((CONFUSION_MAX_WIDTH - 1.0) // panel)))
    nrows = max(1, math.ceil(len(arms) / ncols))
    fig = _new_figure(max(6.0, ncols * panel + 1.0), nrows * panel + 0.6)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    if not arms:
        _empty(axes[0], "no confusion matrices")
        return fig

    cmap = colormaps["Blues"].with_extremes(bad="0.85")
    tick_size = 9.0 if k <= 10 else max(6.0, 9.0 - 0.2 * (k - 10))
    cell_size = next((pt for most, pt in CONFUSION_NUMBER_PT.items() if k <= most), None)
    image = None
    for i, (ax, arm) in enumerate(zip(axes, arms)):
        m = counts[arm]
        totals = m.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            # A class with no test images has no row to normalise: leave it grey (NaN) rather than 0 %.
            pct = np.where(totals > 0, 100.0 * m / np.where(totals > 0, totals, 1.0), np.nan)
        image = ax.imshow(pct, cmap=cmap, vmin=0.0, vmax=100.0, interpolation="nearest")
        n = int(m.sum())
        acc = f", acc {100.0 * np.trace(m) / n:.1f}%" if n else ""
        s = (seeds or {}).get(arm)
        size = f"n={n}" if not s else (f"n={n // s} per seed, {s} seeds" if n % s == 0 else f"n={n} over {s} seeds")
        ax.set_title(f"{arm} ({size}{acc})", fontsize=10)
        row, col = divmod(i, ncols)
        if k <= 20:
            ax.set_xticks(range(k))
            ax.set_yticks(range(k))
            ax.set_xticklabels(list(classes), rotation=90 if k > 4 else 45, ha="center" if k > 4 else "right",
                               fontsize=tick_size)
            ax.set_yticklabels(list(classes) if col == 0 else [], fontsize=tick_size)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        if col == 0:
            ax.set_ylabel("true class")
        if row == nrows - 1 or i + ncols >= len(arms):
            ax.set_xlabel("predicted class")
        if cell_size is not None:
            for (r, c), v in np.ndenumerate(pct):
                if np.isfinite(v):
                    ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=cell_size,
                            color="white" if v > 55 else "black")
    for ax in axes[len(arms):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=list(axes[:len(arms)]), shrink=0.8, label="% of true class")
    n_seeds = set((seeds or {}).values())
    summed = f"summed over {n_seeds.pop()} seeds" if len(n_seeds) == 1 else "summed over seeds"
    fig.suptitle(f"Confusion matrices (test set, {summed}, row-normalised %)")
    return fig


def plot_confusions(mats: Dict[str, Any], classes: Sequence[str], path: PathLike,
                    seeds: Optional[Dict[str, int]] = None) -> Path:
    """One row-normalised (%) confusion-matrix heatmap per arm, sharing a colour scale. Written to `path`."""
    return _write_png(confusions_figure(mats, classes, seeds=seeds), path)


# ----------------------------------------------------------------------------------------------------
# Test accuracy per arm and across a sweep.


def _ci_err(mean: Optional[float], low: Optional[float], high: Optional[float]) -> Optional[List[List[float]]]:
    """Asymmetric error-bar lengths [[below], [above]], or None without a full CI."""
    if mean is None or low is None or high is None:
        return None
    return [[max(0.0, mean - low)], [max(0.0, high - mean)]]


def _mean_of(row: Dict[str, Any]) -> Optional[float]:
    """The row's mean in %, falling back to the mean of its values."""
    mean = _pct(row.get("mean"))
    if mean is None:
        values = _pct_values(row.get("values"))
        mean = float(np.mean(values)) if values else None
    return mean


def _nan_array(values: Any) -> np.ndarray:
    """A float array with NaN standing in for None."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _jitter(n: int, width: float = 0.3) -> np.ndarray:
    """Fixed, evenly spread offsets so repeated seed values do not hide each other."""
    return np.zeros(1) if n <= 1 else np.linspace(-width / 2, width / 2, n)


def arm_accuracy_figure(rows: Sequence[Dict[str, Any]], baseline: Optional[str] = None,
                      title: str = "Test accuracy per arm (mean and 95% CI over seeds)") -> Figure:
    """Horizontal dot plot of test accuracy (%) per arm: seeds faint, mean with its 95% CI as an error bar."""
    fig = _new_figure(8.0, 1.6 + 0.45 * max(1, len(rows)))
    ax = fig.subplots()
    if not rows:
        _empty(ax, "no arms")
        ax.set_title(title, fontsize="medium")
        return fig

    for y, row in enumerate(rows):
        values = _pct_values(row.get("values"))
        if values:
            ax.scatter(values, y + _jitter(len(values)), color="0.35", label="seed" if y == 0 else None, **SEED_DOT)
        mean = _mean_of(row)
        if mean is None:
            continue
        low, high = _pct(row.get("ci_low")), _pct(row.get("ci_high"))
        is_base = baseline is not None and row.get("arm") == baseline
        ax.errorbar([mean], [y], xerr=_ci_err(mean, low, high), fmt="D", ms=7, capsize=3, lw=1.4, zorder=4,
                    color="tab:gray" if is_base else "tab:blue")
        ci = f" [{low:.1f}, {high:.1f}]" if low is not None and high is not None else ""
        ax.annotate(f"{mean:.1f}%{ci}", xy=(1.01, y), xycoords=("axes fraction", "data"), va="center",
                    fontsize="small")

    base = next((r for r in rows if baseline is not None and r.get("arm") == baseline), None)
    if base is not None:
        mean, low, high = _mean_of(base), _pct(base.get("ci_low")), _pct(base.get("ci_high"))
        if low is not None and high is not None:
            ax.axvspan(low, high, color="tab:gray", alpha=0.15, lw=0, zorder=0, label=f"{baseline} 95% CI")
        elif mean is not None:
            ax.axvline(mean, color="tab:gray", ls="--", lw=1, zorder=0, label=f"{baseline} mean")

    # Proxy artists so the legend explains the marks without one entry per arm.
    ax.errorbar([], [], xerr=[[], []], fmt="D", ms=7, capsize=3, color="tab:blue", label="mean and 95% CI")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([str(r.get("arm", "?")) for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first arm on top
    ax.set_xlabel("test accuracy (%)")
    ax.grid(True, axis="x", alpha=0.3)
    _legend_below(ax, ncol=3)
    ax.set_title(title, fontsize="medium")
    return fig


def plot_arm_accuracy(rows: Sequence[Dict[str, Any]], path: PathLike, baseline: Optional[str] = None,
                      title: str = "Test accuracy per arm (mean and 95% CI over seeds)") -> Path:
    """Horizontal dot plot of test accuracy (%) per arm: seeds faint, mean with its 95% CI as an error bar. Written to `path`."""
    return _write_png(arm_accuracy_figure(rows, baseline=baseline, title=title), path)


def sweep_figure(points: Sequence[Dict[str, Any]], xlabel: str,
               baseline: Optional[Dict[str, Any]] = None, title: str = "Test accuracy across the sweep") -> Figure:
    """Test accuracy (%) against a swept value: means joined by a line, 95% CI band and bars, seeds faint."""
    pts = sorted((p for p in points if _num(p.get("x")) is not None), key=lambda p: float(p["x"]))
    fig = _new_figure(7.5, 4.5)
    ax = fig.subplots()

    xs = np.array([float(p["x"]) for p in pts])
    means = _nan_array(_mean_of(p) for p in pts)
    lows = _nan_array(_pct(p.get("ci_low")) for p in pts)
    highs = _nan_array(_pct(p.get("ci_high")) for p in pts)

    if baseline is not None:
        b_mean = _mean_of(baseline)
        b_low, b_high = _pct(baseline.get("ci_low")), _pct(baseline.get("ci_high"))
        label = str(baseline.get("label", "baseline"))
        if b_low is not None and b_high is not None:
            ax.axhspan(b_low, b_high, color="tab:gray", alpha=0.12, lw=0, zorder=0)
        if b_mean is not None:
            ax.axhline(b_mean, color="tab:gray", ls="--", lw=1.2, zorder=1, label=label)

    if len(pts):
        for i, p in enumerate(pts):
            values = _pct_values(p.get("values"))
            if values:
                ax.scatter([xs[i]] * len(values), values, color="0.25", label="seed" if i == 0 else None,
                           **{**SEED_DOT, "zorder": 3})
        has_ci = np.isfinite(lows) & np.isfinite(highs) & np.isfinite(means)
        if has_ci.any():
            # The band joins the points that have a CI (a point without one, n = 1, is stepped over rather than
            # splitting the band into invisible slivers); the error bars show exactly which points have one.
            ax.fill_between(xs[has_ci], lows[has_ci], highs[has_ci], color="tab:blue", alpha=0.15, lw=0, zorder=1,
                            label="95% CI")
            err = np.vstack([means[has_ci] - lows[has_ci], highs[has_ci] - means[has_ci]]).clip(min=0)
            ax.errorbar(xs[has_ci], means[has_ci], yerr=err, fmt="none", ecolor="tab:blue", capsize=3, lw=1, zorder=2)
        ok = np.isfinite(means)
        ax.plot(xs[ok], means[ok], "-o", color="tab:blue", ms=5, lw=1.6, zorder=4, label="mean")
        # Sweeps over several orders of magnitude (learning rates, sample counts) read better on a log axis.
        if len(xs) > 2 and (xs > 0).all() and xs.max() / xs.min() >= 100:
            ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no sweep points", ha="center", va="center", transform=ax.transAxes, color="0.4")

    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    _legend_below(ax, ncol=4)
    ax.set_title(title, fontsize="medium")
    return fig


def plot_sweep(points: Sequence[Dict[str, Any]], path: PathLike, xlabel: str,
               baseline: Optional[Dict[str, Any]] = None, title: str = "Test accuracy across the sweep") -> Path:
    """Test accuracy (%) against a swept value: means joined by a line, 95% CI band and bars, seeds faint. Written to `path`."""
    return _write_png(sweep_figure(points, xlabel, baseline=baseline, title=title), path)




def sweep_arms_figure(series: Dict[str, Sequence[Dict[str, Any]]], xlabel: str,
                      title: str = "Test accuracy across the sweep, per arm") -> Figure:
    """Test accuracy (%) against a swept value, one line per arm: means joined, CI band, seeds faint."""
    fig = _new_figure(8.0, 4.8)
    ax = fig.subplots()
    all_x: List[float] = []
    for name, points in series.items():
        pts = sorted((p for p in points if _num(p.get("x")) is not None), key=lambda p: float(p["x"]))
        if not pts:
            continue
        xs = np.array([float(p["x"]) for p in pts])
        all_x += xs.tolist()
        means = _nan_array(_mean_of(p) for p in pts)
        lows = _nan_array(_pct(p.get("ci_low")) for p in pts)
        highs = _nan_array(_pct(p.get("ci_high")) for p in pts)
        ok = np.isfinite(means)
        (line,) = ax.plot(xs[ok], means[ok], "-o", ms=5, lw=1.6, zorder=4, label=name)
        has_ci = np.isfinite(lows) & np.isfinite(highs) & ok
        if has_ci.any():
            ax.fill_between(xs[has_ci], lows[has_ci], highs[has_ci], color=line.get_color(), alpha=0.15, lw=0, zorder=1)
        for x, p in zip(xs, pts):
            values = _pct_values(p.get("values"))
            if values:
                ax.scatter([x] * len(values), values, color=line.get_color(), **{**SEED_DOT, "zorder": 3})
    if not all_x:
        _empty(ax, "no sweep points")
    else:
        xs = np.array(all_x)
        if (xs > 0).all() and xs.max() / xs.min() >= 4:
            ax.set_xscale("log", base=2)
            ticks = sorted(set(all_x))
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
        _legend_below(ax, ncol=min(4, max(1, len(series))))
    ax.set_title(title, fontsize="medium")
    return fig


def plot_sweep_arms(series: Dict[str, Sequence[Dict[str, Any]]], path: PathLike, xlabel: str,
                    title: str = "Test accuracy across the sweep, per arm") -> Path:
    """Test accuracy (%) against a swept value, one line per arm. Written to `path`."""
    return _write_png(sweep_arms_figure(series, xlabel, title=title), path)


def _zoom(values: Sequence[float], margin: float = 0.03, step: float = 0.05, near: float = 0.15) -> Tuple[float, float]:
    """Axis limits for shares in [0, 1]: the values with a margin, rounded out to `step`; an end within `near` of 0 or 1
    goes all the way (with room for the marks): a zoom that would hide so little is not worth the reader's care."""
    lo = math.floor((min(values) - margin) / step) * step
    hi = math.ceil((max(values) + margin) / step) * step
    return (-0.02 if lo <= near else round(lo, 4)), (1.02 if hi >= 1 - near else round(hi, 4))


def precision_recall_figure(sets: Sequence[Dict[str, Any]],
                            title: str = "Precision (fidelity) against recall (diversity), per synthetic set") -> Figure:
    """Each set's overall precision and recall (large marks) and per class (small), with the floor: the set marked
    `floor` (a square). Both axes share one range, zoomed to the points, and the figure says where it starts."""
    fig = _new_figure(6.2, 6.4)
    ax = fig.subplots()
    if not sets:
        _empty(ax, "no evaluations")
        return fig
    shown: List[float] = []
    for i, s in enumerate(sets):
        floor = bool(s.get("floor"))
        color = "0.3" if floor else f"C{i}"
        per = [(float(p), float(r)) for p, r in s.get("per_class", []) if _num(p) is not None and _num(r) is not None]
        if per:
            ax.scatter([r for _, r in per], [p for p, _ in per], s=14, alpha=0.35, color=color, linewidths=0, zorder=2)
        ax.scatter([s["recall"]], [s["precision"]], s=90, marker="s" if floor else "o", color=color, zorder=4,
                   edgecolors="white", label=str(s["label"]))
        shown += [v for pair in per for v in pair] + [float(s["recall"]), float(s["precision"])]
    lo, hi = _zoom(shown)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("recall: share of real test images inside the fakes' manifold")
    ax.set_ylabel("precision: share of fakes inside the real manifold")
    ax.grid(True, alpha=0.3)
    _legend_below(ax, ncol=2)
    floors = [str(s["label"]).removesuffix(" (floor)") for s in sets if s.get("floor")]
    lines = [title, "(small marks: per class" + (f"; square: the floor, {floors[0]})" if floors else ")")]
    if lo > 0 or hi < 1:  # a zoomed axis says so where the eye lands first
        off = " and ".join(e for e, cut in (("0", lo > 0), ("1", hi < 1)) if cut)
        lines.append(f"both axes run from {max(lo, 0):g} to {min(hi, 1):g} (zoomed to the points; {off} off the chart)")
    ax.set_title("\n".join(lines), fontsize="medium")
    return fig


def plot_precision_recall(sets: Sequence[Dict[str, Any]], path: PathLike) -> Path:
    """Precision against recall per synthetic set and class, with the floor. Written to `path`."""
    return _write_png(precision_recall_figure(sets), path)


def predictive_figure(rows: Sequence[Dict[str, Any]], baseline: Optional[str] = None,
                      title: str = "Δ test accuracy against each quality score") -> Figure:
    """One panel per quality score: Δ accuracy (pp) against the score, a point per generator (labelled), a colour
    per arm kind, each kind's rho in the panel. `rows`: `metrics.predictive.predictive_table`'s; a score no kind has a
    rho for (every generator scores the same) gets no panel. A lower-is-better score's axis is reversed, so a better
    score is always to the right."""
    from matplotlib.ticker import MaxNLocator

    kinds = list(dict.fromkeys(r["kind_label"] for r in rows))
    scores = list(dict.fromkeys(r["score"] for r in rows if r["rho"] is not None))
    ncol = min(3, max(1, len(scores)))
    nrow = max(1, math.ceil(len(scores) / ncol))
    fig = _new_figure(4.3 * ncol, 3.4 * nrow + 0.9)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    if not scores:
        _empty(axes[0], "no score varies across the generators" if rows else "fewer than 3 generators")
    for ax in axes[len(scores):]:
        ax.set_axis_off()
    for ax, score in zip(axes, scores):
        said = []
        for r in (r for r in rows if r["score"] == score):
            color = f"C{kinds.index(r['kind_label'])}"
            xs = [float(p["x"]) for p in r["points"]]
            ys = [100.0 * float(p["delta"]) for p in r["points"]]
            ax.scatter(xs, ys, s=36, color=color, edgecolors="white", zorder=3,
                       label=r["kind_label"] if ax is axes[0] else None)
            for p, x, y in zip(r["points"], xs, ys):
                ax.annotate(str(p["generator"]), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7,
                            color=color)
            rho = "ρ undefined: no spread" if r["rho"] is None else f"ρ = {r['rho']:+.2f}, p = {r['p']:.2g}"
            said.append((f"{rho} (n={r['n']})", color))
        for i, (text, color) in enumerate(said):
            ax.text(0.02, 0.98 - 0.09 * i, text, transform=ax.transAxes, fontsize=7, color=color, va="top", zorder=5,
                    bbox=dict(facecolor="white", alpha=0.7, linewidth=0, pad=1))
        ax.xaxis.set_major_locator(MaxNLocator(4))
        first = next(r for r in rows if r["score"] == score)
        if not first["higher_is_better"]:
            ax.invert_xaxis()
        ax.axhline(0.0, color="0.5", lw=0.8, ls="--", zorder=1)
        ax.set_xlabel(first["label"] + ("" if first["higher_is_better"] else " (reversed: lower to the right)"),
                      fontsize="small")
        ax.set_ylabel(f"Δ test acc vs {baseline or 'baseline'} (pp)", fontsize="small")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), frameon=False,
                   fontsize="small")
    fig.suptitle(title, fontsize="medium")
    return fig


def plot_predictive(rows: Sequence[Dict[str, Any]], path: PathLike, baseline: Optional[str] = None,
                    title: str = "Δ test accuracy against each quality score") -> Path:
    """Δ accuracy against each quality score, a point per generator, a colour per arm kind. Written to `path`."""
    return _write_png(predictive_figure(rows, baseline=baseline, title=title), path)


# ----------------------------------------------------------------------------------------------------
# The exchange rate of a learning curve.


def exchange_figure(ex: Dict[str, Any], title: str = "What each arm is worth in real images per class") -> Figure:
    """Left: the real-only learning curve (measured means, the monotone fit) with each arm's accuracy moved along it
    from its real size n to its equivalent real size n*. Right: n* against n with bootstrap intervals, the diagonal
    n* = n marking 'worth nothing'. `ex` is ganaug.metrics.exchange.exchange_rates' result; censored sizes are drawn
    as triangles just beyond the measured range."""
    fig = _new_figure(12.0, 4.8)
    ax_curve, ax_rate = fig.subplots(1, 2)
    sizes = [float(n) for n in ex.get("sizes") or []]
    rows = ex.get("rows") or []
    if len(sizes) < 2 or not rows:
        _empty(ax_curve, "no learning curve")
        _empty(ax_rate, "no exchange rates")
        return fig
    lo, hi = min(sizes), max(sizes)
    below, above = lo / 1.35, hi * 1.35  # where a censored size is drawn

    def place(v: Optional[float]) -> float:
        v = _num(v)
        if v is None or math.isnan(v):
            return math.nan
        return above if v == math.inf else below if v == -math.inf else v

    ax_curve.scatter(sizes, _pct_values(ex.get("real_means")), color="0.2", s=22, zorder=4,
                     label=f"{ex.get('baseline', 'real')} (mean)")
    ax_curve.plot(sizes, _pct_values(ex.get("curve")), color="0.2", lw=1.6, zorder=3, label="monotone fit")
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    for i, arm in enumerate(arms):
        color = f"C{i}"
        mine = [r for r in rows if r["arm"] == arm]
        for j, r in enumerate(mine):
            n, y, x = float(r["n"]), _pct(r["acc"]), place(r["n_star"])
            ax_curve.scatter([n], [y], s=30, facecolors="none", edgecolors=color, zorder=5,
                             label=f"{arm} at n" if j == 0 else None)
            if math.isfinite(x):
                ax_curve.annotate("", xy=(x, y), xytext=(n, y), zorder=4,
                                  arrowprops=dict(arrowstyle="->", color=color, lw=1.1, alpha=0.8, shrinkA=3, shrinkB=2))
                marker = ">" if r["censored"] == "above" else "<" if r["censored"] == "below" else "o"
                ax_curve.scatter([x], [y], s=26, marker=marker, color=color, zorder=5,
                                 label=f"{arm} at n*" if j == 0 else None)
        # Right: n* against n, each arm nudged sideways so the bars do not hide each other.
        nudge = 1.0 + 0.05 * (i - (len(arms) - 1) / 2)
        xs = [float(r["n"]) * nudge for r in mine]
        ys = [place(r["n_star"]) for r in mine]
        lows = [place(r["n_star_low"]) for r in mine]
        highs = [place(r["n_star_high"]) for r in mine]
        ok = [k for k, y in enumerate(ys) if math.isfinite(y)]
        ax_rate.plot([xs[k] for k in ok], [ys[k] for k in ok], "-", color=color, lw=1.0, alpha=0.6, zorder=2)
        for k in ok:
            r = mine[k]
            marker = "^" if r["censored"] == "above" else "v" if r["censored"] == "below" else "o"
            err = None
            if math.isfinite(lows[k]) and math.isfinite(highs[k]):
                err = [[max(0.0, ys[k] - lows[k])], [max(0.0, highs[k] - ys[k])]]
            ax_rate.errorbar([xs[k]], [ys[k]], yerr=err, fmt=marker, ms=6, color=color, capsize=3, lw=1.1, zorder=4,
                             label=arm if k == ok[0] else None)
    for ax in (ax_curve, ax_rate):
        ax.set_xscale("log")
        ax.set_xlim(below / 1.15, above * 1.15)
        ax.set_xticks(sizes)
        ax.set_xticklabels([f"{n:g}" for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("real training images per class (n)")
        ax.grid(True, alpha=0.3)
    ax_rate.set_yscale("log")
    ax_rate.set_ylim(below / 1.15, above * 1.15)
    ax_rate.set_yticks(sizes)
    ax_rate.set_yticklabels([f"{n:g}" for n in sizes])
    ax_rate.minorticks_off()
    ax_rate.plot([below, above], [below, above], ls="--", color="0.5", lw=1, zorder=1, label="n* = n: worth nothing")
    for y in (below * 1.08, above / 1.08):
        ax_rate.axhline(y, color="0.85", lw=0.8, zorder=0)
    ax_curve.set_ylabel("test accuracy (%)")
    ax_curve.set_title("Each arm moved along the real-only curve to its equivalent size", fontsize="medium")
    ax_rate.set_ylabel("equivalent real images per class (n*)")
    ax_rate.set_title(f"n* against n (triangles: beyond {lo:g}..{hi:g}, not extrapolated)", fontsize="medium")
    _legend_below(ax_curve, ncol=3)
    _legend_below(ax_rate, ncol=3)
    fig.suptitle(title)
    return fig


def plot_exchange(ex: Dict[str, Any], path: PathLike, title: str = "What each arm is worth in real images per class") -> Path:
    """The real-only curve with each arm moved to its equivalent real size, and n* against n. Written to `path`."""
    return _write_png(exchange_figure(ex, title=title), path)
