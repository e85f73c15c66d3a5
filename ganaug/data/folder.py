"""The `imagefolder` source: any folder of class subfolders (or of images labelled by their file names),
streamed and decoded once.

Each image is opened, turned upright, converted and fitted to the target side on its own, in worker
processes (`data.workers`), so memory stays at the output tensor plus a few images per worker, whatever the
folder's size and however large its photos. The resized uint8 tensor is cached (`<run>/cache/`, or
`data.cache`), keyed by the data config and every file's path, size and modification time: later stages
list the folder and load the tensor instead of decoding again. A file changed behind the cache's back is
still caught by the split manifest's content hashes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import memory
from ..config.sections import DataConfig
from ..errors import ConfigError, DataError
from .decode import GRAY_MODES, decode, decode_task, header
from .images import ImageSet

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
CACHE_VERSION = 1
POOL_THRESHOLD = 64  # fewer files than this are decoded in this process (starting workers costs more)


def load_imagefolder(cfg: DataConfig, cache_dir: Optional[Path] = None, progress: bool = False) -> ImageSet:
    """Any folder of class subfolders (torchvision's ImageFolder layout), resized and center-cropped."""
    if cfg.root is None:
        raise ConfigError("config key 'data.root' must name the folder of class subfolders for source imagefolder")
    if cfg.resolution is None:
        raise ConfigError("config key 'data.resolution' must be set for source imagefolder (e.g. 64): images vary in size")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root: folder '{root}' does not exist; point data.root at a folder of "
                        f"{'images' if cfg.label_regex else 'class subfolders'}")
    classes, files, unlabelled = _labels_from_names(root, cfg) if cfg.label_regex else _labels_from_folders(root)

    # Decoded before, by this config, from these very files? Then load that (well under a second).
    stats = [(rel, *_stat(root / rel)) for rel, _ in files]
    key = _cache_key(cfg, classes, stats)
    cached = _read_cache(cache_dir, key)
    if cached is not None:
        return cached

    # Which mode: the config's channels, else grayscale when every image is.
    heads = [header(str(root / rel), cfg.max_image_pixels) for rel, _ in files] if cfg.channels is None else [{} for _ in files]
    for (rel, _), h in zip(files, heads):
        if "bomb" in h:
            raise _bomb(root / rel, h["bomb"], cfg)
    modes = [h.get("mode") for h in heads if "mode" in h]
    channels = cfg.channels or (1 if modes and set(modes) <= GRAY_MODES else 3)
    pil_mode = "L" if channels == 1 else "RGB"

    # Decode, one image at a time per worker, straight into the output tensor.
    size, intensity = cfg.resolution, cfg.intensity or "dtype"
    memory.check_decoded(len(files), channels, size, root)  # before the tensor is taken, not after
    out = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    ok = np.zeros(len(files), dtype=bool)
    infos: List[Dict[str, Any]] = [{} for _ in files]
    skipped: List[str] = list(unlabelled)
    tasks = [(i, str(root / rel), size, pil_mode, intensity, cfg.max_image_pixels) for i, (rel, _) in enumerate(files)]
    for i, res in _decode_all(tasks, cfg.workers, progress):
        rel = files[i][0]
        if "bomb" in res:
            raise _bomb(root / rel, res["bomb"], cfg)
        if "error" in res:
            if cfg.bad_images == "skip":
                skipped.append(rel)
                continue
            raise DataError(f"data.root: cannot read image '{root / rel}' ({res['error']}); "
                            "replace or remove it, or set data.bad_images: skip")
        out[i] = torch.from_numpy(res["array"])
        ok[i], infos[i] = True, res["info"]
    present = {files[i][1] for i in np.flatnonzero(ok)}
    for label, name in enumerate(classes):
        if label not in present:
            where = f"class '{name}' (from file names)" if cfg.label_regex else f"class folder '{root / name}'"
            raise DataError(f"data.root: {where} has no readable image; add images or remove it")

    keep = np.flatnonzero(ok)
    ds = ImageSet(images=out[torch.from_numpy(keep)].contiguous() if len(keep) < len(files) else out,
                  labels=torch.tensor([files[i][1] for i in keep], dtype=torch.int64), classes=classes,
                  ids=[files[i][0] for i in keep], notes=_notes([infos[i] for i in keep], [files[i][0] for i in keep],
                                                                 unlabelled, skipped[len(unlabelled):], pil_mode),
                  skipped=skipped)
    _write_cache(cache_dir, key, ds)
    return ds


def _stat(path: Path) -> Tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _decode_all(tasks: List[Tuple], workers: Optional[int], progress: bool):
    """(index, result) for every task: in this process for small folders, else in a pool of light workers."""
    n = workers if workers is not None else min(4, os.cpu_count() or 1)
    bar = tqdm(total=len(tasks), desc="decode", unit="img", disable=not progress, leave=False, mininterval=1.0)
    try:
        if n <= 1 or len(tasks) < POOL_THRESHOLD:
            for task in tasks:
                yield decode_task(task)
                bar.update(1)
            return
        # spawn: the workers import only ganaug.data.decode (Pillow, NumPy), not the parent's torch.
        with multiprocessing.get_context("spawn").Pool(n) as pool:
            for result in pool.imap_unordered(decode_task, tasks, chunksize=4):
                yield result
                bar.update(1)
    finally:
        bar.close()


def _bomb(path: Path, message: str, cfg: DataConfig) -> DataError:
    pixels = re.search(r"\((\d+) pixels\)", message)
    limit = re.search(r"limit of (\d+) pixels", message)
    said = f"{int(pixels.group(1)):,} pixels" if pixels else "more pixels than allowed"
    bound = f"{int(limit.group(1)):,}" if limit else "Pillow's limit"
    return DataError(f"data.root: '{path}' has {said}, over the decompression-bomb limit ({bound}); if the file is "
                     f"trusted, raise data.max_image_pixels (e.g. {2 * int(pixels.group(1)) if pixels else 10**9})")


def _notes(infos: List[Dict[str, Any]], ids: List[str], unlabelled: List[str], unreadable: List[str],
           pil_mode: str) -> List[str]:
    def some(names: List[str]) -> str:
        return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")

    notes = []
    for what, names in (("file(s) whose name holds no label", unlabelled), ("unreadable image(s)", unreadable)):
        if names:
            notes.append(f"skipped {len(names)} {what}: {some(names)}")
    modes: Dict[str, int] = {}
    for info in infos:
        modes[info.get("mode", "?")] = modes.get(info.get("mode", "?"), 0) + 1
    if len(modes) > 1:
        notes.append(f"images had mixed modes ({', '.join(f'{m}: {n}' for m, n in sorted(modes.items()))}); "
                     f"all converted to {pil_mode}")
    rescaled: Dict[str, List[str]] = {}
    for info, name in zip(infos, ids):
        if "rescaled" in info:
            rescaled.setdefault(info["rescaled"], []).append(name)
    for how, names in rescaled.items():
        notes.append(f"rescaled {len(names)} high-bit-depth image(s) to 0..255 ({how}): {some(names)}")
    frames = [f"{n} ({info['frames']} frames)" for info, n in zip(infos, ids) if "frames" in info]
    if frames:
        notes.append(f"took the first frame of {len(frames)} multi-frame image(s): {some(frames)}")
    oriented = [n for info, n in zip(infos, ids) if "oriented" in info]
    if oriented:
        notes.append(f"turned {len(oriented)} image(s) upright by their EXIF orientation: {some(oriented)}")
    return notes


# ----------------------------------------------------------------------------------------------------
# The decoded-tensor cache.


def _cache_key(cfg: DataConfig, classes: List[str], stats: List[Tuple[str, int, int]]) -> str:
    relevant = {k: getattr(cfg, k) for k in ("source", "root", "resolution", "channels", "bad_images", "label_regex",
                                             "intensity")}
    blob = json.dumps({"version": CACHE_VERSION, "config": relevant, "classes": classes, "files": stats},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _cache_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"imagefolder-{key}.pt"


def _read_cache(cache_dir: Optional[Path], key: str) -> Optional[ImageSet]:
    if cache_dir is None or not _cache_file(cache_dir, key).is_file():
        return None
    try:
        blob = torch.load(_cache_file(cache_dir, key), map_location="cpu", weights_only=True, mmap=True)
        return ImageSet(images=blob["images"], labels=blob["labels"], classes=blob["classes"], ids=blob["ids"],
                        notes=blob["notes"], skipped=blob["skipped"])
    except Exception:  # a damaged cache is only a cache: decode again
        return None


def _write_cache(cache_dir: Optional[Path], key: str, ds: ImageSet) -> None:
    if cache_dir is None:
        return
    from ..utils import atomic_torch_save

    atomic_torch_save({"key": key, "images": ds.images, "labels": ds.labels, "classes": ds.classes, "ids": ds.ids,
                       "notes": ds.notes, "skipped": ds.skipped}, _cache_file(cache_dir, key))


# ----------------------------------------------------------------------------------------------------
# Labels: class folders, or a pattern in the file names.


def _image_files(folder: Path, root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS and not p.name.startswith("."))


def _subfolders(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _labels_from_folders(root: Path) -> Tuple[List[str], List[Tuple[str, int]], List[str]]:
    """torchvision's ImageFolder layout: one subfolder per class."""
    classes = _subfolders(root)
    if not classes:
        raise DataError(f"data.root: '{root}' has no class subfolders; lay images out as {root}/<class>/<image>.png "
                        "or set data.label_regex to read labels from file names")
    # A folder one level too high: its subfolders (train/, test/, or a single wrapper) hold the class folders.
    nested = [c for c in classes if len(_subfolders(root / c)) >= 2 and not any(
        p.is_file() and p.suffix.lower() in IMG_EXTENSIONS for p in (root / c).iterdir())]
    if len(classes) < 2:
        hint = (f"; it holds {len(_subfolders(root / classes[0]))} folders ({', '.join(_subfolders(root / classes[0])[:4])}"
                f"{' ...' if len(_subfolders(root / classes[0])) > 4 else ''}): set data.root: {root / classes[0]}"
                if nested else "")
        raise DataError(f"data.root: '{root}' has one class folder ('{classes[0]}'); a classifier needs at least two{hint}")
    if len(nested) == len(classes):
        inner = _subfolders(root / classes[0])
        raise DataError(f"data.root: '{root}' holds folders ({', '.join(classes[:4])}) that each hold class folders "
                        f"({', '.join(inner[:4])}{' ...' if len(inner) > 4 else ''}), not images; point data.root at one "
                        f"of them, e.g. data.root: {root / classes[0]}")
    files: List[Tuple[str, int]] = []
    for label, name in enumerate(classes):
        found = _image_files(root / name, root)
        if not found:
            raise DataError(
                f"data.root: class folder '{root / name}' has no images ({', '.join(IMG_EXTENSIONS[:3])}, ...); "
                "add images or remove the folder"
            )
        files += [(f, label) for f in found]
    return classes, files, []


def _labels_from_names(root: Path, cfg: DataConfig) -> Tuple[List[str], List[Tuple[str, int]], List[str]]:
    """Labels parsed from file names (UTKFace's '<age>_<gender>_<race>_<date>.jpg'): the regex's group
    'label', or its first group, searched in each file name under root."""
    pattern = re.compile(cfg.label_regex or "")
    group = "label" if "label" in pattern.groupindex else 1
    found = _image_files(root, root)
    if not found:
        raise DataError(f"data.root: '{root}' has no images ({', '.join(IMG_EXTENSIONS[:3])}, ...)")
    named, unlabelled = [], []
    for rel in found:
        m = pattern.search(Path(rel).name)
        if m is None or m.group(group) is None:
            unlabelled.append(rel)
        else:
            named.append((rel, m.group(group)))
    if unlabelled and cfg.bad_images != "skip":
        raise DataError(f"data.label_regex {cfg.label_regex!r} matches no label in {len(unlabelled)} file name(s) under "
                        f"'{root}', e.g. '{unlabelled[0]}'; fix the pattern, or set data.bad_images: skip to leave them out")
    values = {v for _, v in named}
    classes = sorted(values, key=lambda v: (0, int(v), v) if v.isdigit() else (1, 0, v))
    if len(classes) < 2:
        raise DataError(f"data.label_regex {cfg.label_regex!r} finds {len(classes)} label(s) in the file names under "
                        f"'{root}' ({', '.join(classes) or 'none'}); a classifier needs at least two")
    index = {c: i for i, c in enumerate(classes)}
    return classes, [(rel, index[v]) for rel, v in named], unlabelled


__all__ = ["IMG_EXTENSIONS", "decode", "load_imagefolder"]
