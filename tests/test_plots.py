"""Every figure is written as a whole PNG, overwrites the last one, and leaves no temporary files behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pytest
from PIL import Image

from ganaug import plots

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["bars", "columns", "diagonal"]


def gan_rows(per_class: bool) -> list:
    rows = []
    for cls in (0, 1, 2) if per_class else (None,):
        for i in range(12):
            row: Dict[str, Any] = {"epoch": i // 4, "step": i * 10, "kimg": i * 0.64, "loss/G": 2.0 - 0.1 * i,
                                   "loss/D": 0.5 + 0.02 * i, "D(x)": 0.8 - 0.01 * i, "D(G(z))": 0.2 + 0.01 * i}
            if cls is not None:
                row["class"] = cls
            if i % 2 == 0:
                row["augment/p"] = 0.02 * i
            rows.append(row)
    rows[3].pop("loss/G")  # a row missing a key is skipped for that key only
    return rows


def arm_rows() -> list:
    return [
        {"arm": "real", "mean": 0.80, "ci_low": 0.76, "ci_high": 0.84, "values": [0.78, 0.80, 0.82]},
        {"arm": "real+gan", "mean": 0.83, "ci_low": 0.79, "ci_high": 0.87, "values": [0.81, 0.83, 0.85]},
        {"arm": "gan only", "mean": 0.61, "ci_low": None, "ci_high": None, "values": [0.61]},
    ]


def sweep_points() -> list:
    return [
        {"x": 1.0, "mean": 0.82, "ci_low": 0.79, "ci_high": 0.85, "values": [0.80, 0.82, 0.84]},
        {"x": 0.0, "mean": 0.80, "ci_low": 0.77, "ci_high": 0.83, "values": [0.78, 0.80, 0.82]},
        {"x": 0.5, "mean": 0.84, "ci_low": None, "ci_high": None, "values": [0.84]},
    ]


CASES: Dict[str, Callable[[Path], Path]] = {
    "gan": lambda p: plots.plot_gan_metrics(gan_rows(per_class=False), p),
    "gan_per_class": lambda p: plots.plot_gan_metrics(gan_rows(per_class=True), p, title="Per-class GANs"),
    "gan_empty": lambda p: plots.plot_gan_metrics([], p),
    "val_curves": lambda p: plots.plot_val_curves({
        "real": [[(0, 0.3), (100, 0.6), (200, 0.7)], [(0, 0.35), (100, 0.62), (200, 0.72)]],
        # Seeds with different step lists: only steps 0 and 200 are common.
        "real+gan": [[(0, 0.3), (100, 0.65), (200, 0.75)], [(0, 0.32), (150, 0.6), (200, 0.78)]],
        "single seed": [[(0, 0.4), (200, 0.6)]],
        "disjoint": [[(10, 0.5)], [(20, 0.55)]],
    }, p),
    "confusions": lambda p: plots.plot_confusions({
        "real": [[8, 1, 1], [0, 9, 1], [2, 0, 8]],
        "real+gan": np.array([[9, 1, 0], [1, 9, 0], [0, 0, 0]]),  # a class with no test images
    }, CLASSES, p),
    "confusions_many": lambda p: plots.plot_confusions(
        {f"arm{i}": np.eye(3) * 10 + 1 for i in range(5)}, CLASSES, p),
    "arm_accuracy": lambda p: plots.plot_arm_accuracy(arm_rows(), p, baseline="real"),
    "arm_accuracy_base_no_ci": lambda p: plots.plot_arm_accuracy(arm_rows(), p, baseline="gan only"),
    "sweep": lambda p: plots.plot_sweep(sweep_points(), p, xlabel="GAN images per real image",
                                        baseline={"label": "real only", "mean": 0.8, "ci_low": 0.77, "ci_high": 0.83}),
    "sweep_no_ci": lambda p: plots.plot_sweep(
        [{"x": 10.0, "mean": 0.7, "ci_low": None, "ci_high": None, "values": [0.7]}], p, xlabel="n",
        baseline={"label": "real only", "mean": 0.8, "ci_low": None, "ci_high": None}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_writes_one_png_and_overwrites_it(tmp_path: Path, name: str) -> None:
    target = tmp_path / "figs" / f"{name}.png"
    written = CASES[name](target)
    assert written == target and target.is_file()
    with Image.open(target) as img:
        assert img.format == "PNG"
        assert img.size[0] > 300 and img.size[1] > 150
    first = target.stat().st_mtime_ns, target.stat().st_ino

    CASES[name](str(target))  # str paths work too
    assert (target.stat().st_mtime_ns, target.stat().st_ino) != first
    with Image.open(target) as img:
        img.verify()
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_confusion_shape_must_match_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        plots.plot_confusions({"real": [[1, 0], [0, 1]]}, CLASSES, tmp_path / "c.png")
    assert not list(tmp_path.iterdir())


def test_never_imports_pyplot(tmp_path: Path) -> None:
    point = {"x": 1, "mean": 0.5, "ci_low": None, "ci_high": None, "values": [0.5]}
    code = ("import sys, ganaug.plots as p; "
            f"p.plot_sweep([{point!r}], {str(tmp_path / 's.png')!r}, 'x'); "
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert (tmp_path / "s.png").is_file()


# ----------------------------------------------------------------------------------------------------
# What each figure draws: the numbers it was given, in the place it says.


def _lines(ax: Any) -> Dict[str, Any]:
    return {line.get_label(): line for line in ax.get_lines()}


def test_gan_figure_draws_each_metric_against_kimg() -> None:
    rows = gan_rows(per_class=False)
    ax_loss, ax_prob = plots.gan_metrics_figure(rows).axes[:2]
    loss = _lines(ax_loss)
    assert set(loss) == {"loss/G", "loss/D"}
    kept = [r for r in rows if "loss/G" in r]  # the row without loss/G is skipped for that key only
    assert list(loss["loss/G"].get_xdata()) == [r["kimg"] for r in kept]
    assert list(loss["loss/G"].get_ydata()) == [r["loss/G"] for r in kept]
    assert list(loss["loss/D"].get_xdata()) == [r["kimg"] for r in rows]
    prob = _lines(ax_prob)
    assert set(prob) == {"D(x)", "D(G(z))", "ADA p"} and prob["ADA p"].get_linestyle() == "--"
    assert list(prob["ADA p"].get_ydata()) == [r["augment/p"] for r in rows if "augment/p" in r]
    # Per-class GANs: one line per class for each metric, one legend entry per metric.
    per_class = plots.gan_metrics_figure(gan_rows(per_class=True))
    assert len(per_class.axes[0].get_lines()) == 6 and "3 per-class GANs" in per_class._suptitle.get_text()
    assert "no data" in [t.get_text() for t in plots.gan_metrics_figure([]).axes[0].texts]


def test_val_curves_figure_draws_the_mean_and_the_band_over_seeds() -> None:
    curves = {"real": [[(0, 0.3), (100, 0.6), (200, 0.7)], [(0, 0.35), (100, 0.62), (200, 0.72)]],
              "real+gan": [[(0, 0.3), (100, 0.65), (200, 0.75)], [(0, 0.32), (150, 0.6), (200, 0.78)]]}
    ax = plots.val_curves_figure(curves).axes[0]
    lines = _lines(ax)
    real = lines["real (n=2)"]
    assert list(real.get_xdata()) == [0, 100, 200]
    assert np.allclose(real.get_ydata(), [32.5, 61.0, 71.0])  # the mean over seeds, in %
    both = lines["real+gan (n=2)"]  # seeds share only steps 0 and 200
    assert list(both.get_xdata()) == [0, 200] and np.allclose(both.get_ydata(), [31.0, 76.5])
    band = ax.collections[0].get_paths()[0].vertices  # min..max over seeds
    assert np.isclose(band[:, 1].min(), 30.0) and np.isclose(band[:, 1].max(), 72.0)


def test_confusions_figure_shows_row_normalised_percentages() -> None:
    fig = plots.confusions_figure({"real": [[8, 1, 1], [0, 9, 1], [2, 0, 8]],
                                   "empty class": [[9, 1, 0], [1, 9, 0], [0, 0, 0]]}, CLASSES)
    real, other = fig.axes[0], fig.axes[1]
    assert np.allclose(real.images[0].get_array(), [[80, 10, 10], [0, 90, 10], [20, 0, 80]])
    assert real.get_title() == "real (n=30, acc 83.3%)"
    assert np.ma.getmaskarray(np.ma.masked_invalid(other.images[0].get_array()))[2].all()  # no test images: grey
    assert "80" in [t.get_text() for t in real.texts]


def test_arm_accuracy_figure_marks_each_mean_and_interval() -> None:
    ax = plots.arm_accuracy_figure(arm_rows(), baseline="real").axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["real", "real+gan", "gan only"]
    notes = [t.get_text() for t in ax.texts]
    assert notes == ["80.0% [76.0, 84.0]", "83.0% [79.0, 87.0]", "61.0%"]
    from matplotlib.collections import PathCollection

    seeds = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections if isinstance(c, PathCollection)])
    assert sorted(np.round(seeds, 6)) == sorted([78, 80, 82, 81, 83, 85, 61])
    span = [p for p in ax.patches if p.get_label() == "real 95% CI"]
    x0, x1 = span[0].get_bbox().x0, span[0].get_bbox().x1
    assert np.allclose([x0, x1], [76.0, 84.0])  # the baseline's band


def test_sweep_figure_joins_the_means_in_order_of_the_swept_value() -> None:
    ax = plots.sweep_figure(sweep_points(), xlabel="p_real", baseline={"label": "real only", "mean": 0.8,
                                                                        "ci_low": 0.77, "ci_high": 0.83}).axes[0]
    mean = _lines(ax)["mean"]
    assert list(mean.get_xdata()) == [0.0, 0.5, 1.0] and np.allclose(mean.get_ydata(), [80.0, 84.0, 82.0])
    base = _lines(ax)["real only"]
    assert np.allclose(base.get_ydata(), [80.0, 80.0]) and ax.get_xlabel() == "p_real"
    band = [c for c in ax.collections if c.get_label() == "95% CI"][0].get_paths()[0].vertices
    assert np.isclose(band[:, 1].min(), 77.0) and np.isclose(band[:, 1].max(), 85.0)  # the point without a CI is stepped over
