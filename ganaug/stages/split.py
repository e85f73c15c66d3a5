"""Stage `split`: the small-data regime and its manifest."""

from __future__ import annotations

import time
from pathlib import Path

from ..config import Config
from ..data import load_dataset
from ..data.split import make_split
from ..utils import atomic_write_json
from .common import SPLIT, building, data_cache, echo, output_hashes, paths, start_stage, write_record


def run_split(cfg: Config, force: bool = False, progress: bool = False) -> Path:
    """Write `<out_dir>/split/manifest.json` unless the same config already made it."""
    p = paths(cfg)
    todo = start_stage(cfg, SPLIT, force)
    if todo is None:
        return p.manifest
    fp, config = todo
    started = time.time()
    with building(p.split) as out:
        # A decoded folder is cached with the split (split/cache/), so a failed split leaves nothing behind.
        ds = load_dataset(cfg.data, cache_dir=data_cache(cfg, out), progress=progress)
        for note in ds.notes:
            echo(f"split: note: {note}")
        manifest = make_split(ds, cfg.split, cfg.data)
        manifest["notes"] = list(ds.notes)  # conversions, rescaled images, first frames, EXIF turns, skipped files
        atomic_write_json(out / "manifest.json", manifest)
        write_record(out, "split", fp, config, started, {"content_fingerprint": manifest["fingerprint"],
                                                      **output_hashes(out, "manifest.json")})
    n = {k: sum(manifest["counts"][k].values()) for k in ("train", "val", "test")}
    echo(f"split: {n['train']} train / {n['val']} val / {n['test']} test images in {len(manifest['classes'])} "
         f"classes from {cfg.data.source} -> {p.manifest}")
    if manifest["duplicates_train_test"]:
        echo(f"split: note: {manifest['duplicates_train_test']} training images have an exact duplicate in the test set")
    return p.manifest

