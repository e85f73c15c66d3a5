"""From a photo folder to a printed table, timed: the path a new user takes.

Makes a 2-class folder of PHOTOS photos per class (crops of scikit-learn's two sample photos, china.jpg and
flower.jpg, at random positions, scales and flips, saved as JPEG), then times `ganaug init FOLDER` and
`ganaug run -c THE_CONFIG`, and prints the wall time of each and the table's verdict lines.

    python scripts/photo_folder_demo.py [--photos 300] [--work /tmp/photo-demo]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_folder(root: Path, photos: int, seed: int = 0) -> Path:
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    sample = load_sample_images()
    for name, image in zip(["china", "flower"], sample.images):
        (root / name).mkdir(parents=True, exist_ok=True)
        h, w, _ = image.shape
        for i in range(photos):
            side = int(rng.integers(min(h, w) // 6, min(h, w) // 2))
            y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
            crop = Image.fromarray(image[y:y + side, x:x + side]).resize((96, 96), Image.BICUBIC)
            if rng.random() < 0.5:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            crop.save(root / name / f"{i:04d}.jpg", quality=90)
    return root


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.time()
    r = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return time.time() - t0, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=300, help="photos per class")
    ap.add_argument("--work", type=Path, default=Path("/tmp/photo-demo"))
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    folder = make_folder(args.work / "photos", args.photos)
    t_init, out = timed(["ganaug", "init", str(folder), "-o", "photos.yaml"], args.work)
    print(out.strip())
    t_run, table = timed(["ganaug", "run", "-q", "-c", "photos.yaml"], args.work)
    print(table.strip())
    print(f"\ninit {t_init:.1f} s, run {t_run:.1f} s: {(t_init + t_run) / 60:.1f} min from the folder to the table")


if __name__ == "__main__":
    main()
