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
    "precision_recall": lambda p: plots.plot_precision_recall(PR_SETS, p),
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


def test_confusions_say_n_per_seed_and_their_numbers_can_be_read() -> None:
    classes = [str(c) for c in range(10)]
    one = np.eye(10) * 340 + 1  # one seed's 3,500 test images, 10 classes
    fig = plots.confusions_figure({f"arm-{i}": 5 * one for i in range(6)}, classes, seeds={f"arm-{i}": 5 for i in range(6)})
    assert fig.axes[0].get_title() == "arm-0 (n=3500 per seed, 5 seeds, acc 97.4%)"  # not the 17,500 summed
    assert "summed over 5 seeds" in fig._suptitle.get_text()
    # Shown at its own size in a 1280-px window's column and at no less than 0.6 of it at 800 px, a cell's number
    # stays over 13 px high (and 9 px at 800 px), not the 6 px of a 13-inch figure's 5.5-point numbers.
    width_px = fig.get_size_inches()[0] * plots.DPI
    assert width_px <= 1250
    sizes = [t.get_fontsize() * plots.DPI / 72 for ax in fig.axes[:6] for t in ax.texts]
    assert len(sizes) == 6 * 100 and min(sizes) >= 13 and min(sizes) * min(1.0, 768 / width_px) >= 9


PR_SETS = [
    {"label": "samples", "precision": 0.83, "recall": 0.81, "per_class": [(0.62, 0.91), (0.95, 0.70), (0.88, 0.79)]},
    {"label": "real held-out images (floor)", "precision": 0.90, "recall": 0.87, "per_class": [(0.93, 0.84)],
     "floor": True},
]


def test_precision_recall_zooms_to_its_points_and_says_so() -> None:
    ax = plots.precision_recall_figure(PR_SETS).axes[0]
    points = [v for s in PR_SETS for pair in [(s["precision"], s["recall"]), *s["per_class"]] for v in pair]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert (x0, x1) == (y0, y1)  # one range for both axes
    assert x0 < min(points) and max(points) < x1  # every point inside, with a margin
    assert x0 >= 0.5 and x1 - x0 <= 0.5  # zoomed: not 0..1 when the points lie in 0.62..0.95
    title = ax.get_title()
    assert f"from {x0:g} to 1" in title and "0 off the chart" in title  # the axes' range is said
    # What the title calls the floor is the square the legend names: the held-out images, not the training images.
    legend = [t.get_text() for t in ax.figure.legends[0].get_texts()] if ax.figure.legends else [
        t.get_text() for t in ax.get_legend().get_texts()]
    assert "real held-out images (floor)" in legend and "square: the floor, real held-out images" in title
    assert "training" not in title
    squares = [c for c in ax.collections if c.get_label() == "real held-out images (floor)"]
    assert np.allclose(squares[0].get_offsets(), [[0.87, 0.90]])  # recall across, precision up
    # Points over the whole range keep the whole range, and say nothing of a zoom.
    wide = plots.precision_recall_figure([{"label": "a", "precision": 0.1, "recall": 0.99, "per_class": []}]).axes[0]
    assert wide.get_xlim() == (-0.02, 1.02) and "zoomed" not in wide.get_title()


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
