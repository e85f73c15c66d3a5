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
