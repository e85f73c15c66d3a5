"""Stage `split`: the small-data regime and its manifest; and the split data every later stage loads."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict

from ..config import Config
from ..data import load_dataset
from ..data.split import SplitData, apply_split, make_split
from ..progress import echo
from ..utils import atomic_write_json, in_config_threads
from .layout import data_cache, paths
from .records import SPLIT, building, output_hashes, require_stage, start_stage, write_record


@in_config_threads
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


def load_split_data(cfg: Config) -> tuple[SplitData, Dict[str, Any]]:
    """The source reloaded and cut by the saved manifest, each image checked against its hash."""
    p = paths(cfg)
    require_stage(cfg, SPLIT)
    manifest = json.loads(p.manifest.read_text())
    ds = load_dataset(cfg.data, cache_dir=data_cache(cfg))
    return apply_split(ds, manifest, f"split manifest '{p.manifest}'"), manifest
