"""What a stage will take, estimated from the config before anything is allocated, against what the machine has.

A count with one zero too many (`sample.n_per_class: 100000000`) must be a one-line error that names the key,
the estimate, the limit and a value that fits, in a second, and not a machine swapping itself to death and
a traceback. Each estimate is a plain product of counts and sizes read from the config and the split manifest
(no data is loaded); `--dry-run` prints them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import ConfigError

PNG_BYTES_ON_DISK = 4096  # a small PNG takes a file system block
PNG_SECONDS = 0.0003  # measured writing 28 x 28 PNGs on this project's 2-core CPU (about 3,300 a second)
RAM_SHARE = 0.8  # leave the rest for the OS and the other processes
DISK_SHARE = 0.95


def available_ram() -> int:
    """Bytes of memory the system says are available (Linux: MemAvailable), else the physical total."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def free_disk(path: Path) -> int:
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def fmt(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


@dataclass
class Estimate:
    key: str  # the config key the estimate grows with
    what: str  # what takes the memory
    bytes: float
    kind: str  # RAM or disk
    per_unit: float  # bytes per unit of the key's value (to suggest one that fits)
    value: float  # the key's value now

    def limit(self, root: Path) -> int:
        return int((available_ram() * RAM_SHARE) if self.kind == "RAM" else (free_disk(root) * DISK_SHARE))

    def line(self, root: Path) -> str:
        return f"{self.what}: {fmt(self.bytes)} of {self.kind} (limit here {fmt(self.limit(root))})"


def _manifest(run: Any) -> Optional[Dict[str, Any]]:
    f = run.manifest
    try:
        return json.loads(f.read_text()) if f.is_file() else None
    except (OSError, ValueError):
        return None


def shape_and_classes(run: Any) -> Optional[tuple]:
    """((C, H, W), class count, training images) from the split manifest of `run` (a run folder's `RunPaths`); None
    before the split exists."""
    m = _manifest(run)
    if m is None:
        return None
    return tuple(m["shape"]), len(m["classes"]), sum(m["counts"]["train"].values()), m


def sample_count(cfg: Any, classes: int, train: int) -> int:
    s = cfg.sample
    return s.n_per_class * classes  # "real" proportions keep the same total


def estimates(cfg: Any, stage: str, run: Any) -> List[Estimate]:
    """The estimates of one stage ("sample", "train-clf", "evaluate") from the config and the split manifest of `run`
    (the run folder's `RunPaths`, passed in by the caller: this module sits below the stages and imports none)."""
    info = shape_and_classes(run)
    if info is None:
        return []
    (c, h, w), k, n_train, manifest = info
    image = c * h * w
    out: List[Estimate] = []
    n = sample_count(cfg, k, n_train)
    uses_fakes = any(a.uses_synthetic for a in cfg.all_arms)
    if stage == "sample" or (stage == "train-clf" and uses_fakes):
        if stage == "sample":
            out.append(Estimate("sample.n_per_class", f"the synthetic set ({n:,} images of {c}x{h}x{w}) on disk",
                                n * (image + 8), "disk", k * (image + 8), cfg.sample.n_per_class))
            if cfg.sample.png:
                out.append(Estimate("sample.n_per_class", f"its PNG tree ({n:,} files; sample.png: false skips it)",
                                    n * PNG_BYTES_ON_DISK, "disk", k * PNG_BYTES_ON_DISK, cfg.sample.n_per_class))
        # A classifier run keeps the set mapped from disk, but its labels and orders in memory (8 + 8 + 8 bytes each).
        out.append(Estimate("sample.n_per_class", f"a classifier run's labels and index orders for {n:,} fakes",
                            24 * n, "RAM", 24 * k, cfg.sample.n_per_class))
    if stage == "train-clf":
        for i, arm in enumerate(cfg.all_arms):
            mix = arm.mix
            if mix is not None and (mix.add or mix.balance):
                extra = (mix.add or 0) * k if not mix.balance else max(manifest["counts"]["train"].values()) * k
                out.append(Estimate(f"arms[{i}].mix.add" if mix.add else "sample.n_per_class",
                                    f"arm '{arm.name}': {n_train:,} real + {extra:,} fakes held together",
                                    (n_train + extra) * (image + 8), "RAM", k * (image + 8), mix.add or extra / k))
    if stage == "evaluate":
        cap = cfg.evaluate.max_images
        test = sum(manifest["counts"]["test"].values())
        ref = min(test, cap) if cap else test
        fake = min(n_train, cap) if cap else n_train
        # prdc's distance matrices (float32): reference x reference, fakes x fakes, reference x fakes.
        out.append(Estimate("evaluate.max_images", f"the nearest-neighbour distances of {ref:,} reference and "
                                                   f"{fake:,} generated images", 4 * (ref * ref + fake * fake + ref * fake),
                            "RAM", 4 * 3 * max(ref, fake), cap or max(ref, fake)))
    return out


def check(cfg: Any, stage: str, run: Any) -> None:
    """A one-line error when an estimate of `stage` exceeds what this machine has; else nothing. `run`: the run
    folder's `RunPaths`."""
    root = run.root
    for e in estimates(cfg, stage, run):
        limit = e.limit(root)
        if e.bytes <= limit:
            continue
        fits = math.floor(e.value * limit / e.bytes) if e.bytes else 0
        raise too_big(e.key, e.value, e.what, e.bytes, limit, e.kind, fits if 0 < fits < e.value else None)


def too_big(key: str, value: float, what: str, need: float, limit: float, kind: str, fits: Optional[int]) -> ConfigError:
    """The one line for an estimate over what the machine has: the key, the estimate, the limit, a value that fits."""
    suggest = f"; {key}: {fits:,} would fit" if fits is not None else ""
    return ConfigError(f"config key '{key}' is {value:,.0f}, so {what} would take about {fmt(need)}, "
                       f"more than the {fmt(limit)} of {kind} this machine has{suggest}")


def check_decoded(n: int, channels: int, size: int, root: Path) -> None:
    """The split's tensor of a photo folder (n x channels x size x size bytes), before it is allocated."""
    need = n * channels * size * size
    limit = available_ram() * RAM_SHARE
    if need <= limit:
        return
    fits = math.isqrt(int(limit // max(1, n * channels)))
    raise too_big("data.resolution", size, f"the {n:,} images of '{root}' decoded at {channels}x{size}x{size}", need,
                  limit, "RAM", fits if 4 <= fits < size else None)


def plan_lines(cfg: Any, run: Any) -> List[str]:
    """What --dry-run prints: each stage's estimates (once the split exists). `run`: the run folder's `RunPaths`."""
    root = run.root
    lines = []
    for stage in ("sample", "train-clf", "evaluate"):
        for e in estimates(cfg, stage, run):
            lines.append(f"  memory     {stage:10s} {e.line(root)}")
    if not lines:
        lines.append("  memory     (estimated once the split exists: run `ganaug split`)")
    return lines


def png_seconds(n: int) -> float:
    return n * PNG_SECONDS
