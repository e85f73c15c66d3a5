"""Run folders: the only layer that reads and writes them.

Each stage writes into `<stage>.partial/` and renames it into place when it finishes, so a stage's
folder is either whole or absent. Beside its outputs a stage leaves `stage.json`: its fingerprint
(the config that matters to it plus its inputs' fingerprints), that config, and timings. A stage whose
fingerprint matches is skipped; one made by another config is an error unless `--force`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from ..config import ArmConfig, Config, fingerprint, save_config, to_dict
from ..data import load_dataset
from ..data.sources import source_hflip
from ..data.split import SplitData, apply_split
from ..errors import StageError
from ..utils import atomic_write_json

STAGE_FILE = "stage.json"
TRAINED_ON = "trained_on.json"  # beside a GAN checkpoint: the content hash of every image the GAN trained on


def echo(msg: str) -> None:
    """Progress lines for people go to stderr; tables go to stdout."""
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------
# Where things live.


@dataclass
class RunPaths:
    root: Path

    @property
    def split(self) -> Path:
        return self.root / "split"

    @property
    def manifest(self) -> Path:
        return self.split / "manifest.json"

    # With gan_seeds, each independent GAN and its synthetic set get a folder of their own.
    def gan(self, gan_seed: Optional[int] = None) -> Path:
        return self.root / "gan" if gan_seed is None else self.root / "gan" / f"seed-{gan_seed}"

    def gan_checkpoint(self, gan_seed: Optional[int] = None) -> Path:
        return self.gan(gan_seed) / "checkpoint.pt"

    def samples(self, gan_seed: Optional[int] = None) -> Path:
        return self.root / "samples" if gan_seed is None else self.root / "samples" / f"seed-{gan_seed}"

    def stage(self, stage: "Stage", gan_seed: Optional[int] = None) -> Path:
        if stage == GAN:
            return self.gan(gan_seed)
        if stage == SAMPLES:
            return self.samples(gan_seed)
        return self.root / stage.name

    @property
    def clf(self) -> Path:
        return self.root / "clf"

    def clf_run(self, arm: str, seed: int) -> Path:
        return self.clf / arm / f"seed-{seed}"

    @property
    def compare(self) -> Path:
        return self.root / "compare"


def paths(cfg: Config) -> RunPaths:
    return RunPaths(Path(cfg.out_dir))


# ----------------------------------------------------------------------------------------------------
# Stages and their fingerprints: what each one's output depends on.


@dataclass(frozen=True)
class Stage:
    name: str  # also its folder under out_dir
    what: str  # for messages
    command: str


SPLIT = Stage("split", "split", "ganaug split")
GAN = Stage("gan", "trained GAN", "ganaug train-gan")
SAMPLES = Stage("samples", "synthetic set", "ganaug sample")


def stage_config(cfg: Config, stage: Stage, gan_seed: Optional[int] = None) -> Dict[str, Any]:
    """The config sections a stage's output depends on, its inputs' included, as plain data."""
    out = {"data": to_dict(cfg.data), "split": to_dict(cfg.split)}
    if stage in (GAN, SAMPLES):
        out["gan"] = to_dict(cfg.gan) | ({"seed": gan_seed} if gan_seed is not None else {})
    if stage == SAMPLES:
        out["sample"] = to_dict(cfg.sample)
    return out


def stage_fingerprint(cfg: Config, stage: Stage, gan_seed: Optional[int] = None) -> str:
    return fingerprint(stage_config(cfg, stage, gan_seed))


def clf_config(cfg: Config, arm: ArmConfig, seed: int) -> Dict[str, Any]:
    """Everything a classifier run depends on, as plain data."""
    return {
        "split": stage_fingerprint(cfg, SPLIT),
        "classifier": to_dict(cfg.classifier),
        "arm": to_dict(arm),
        "seed": seed,
        "augment": (to_dict(cfg.augment) | {"hflip": source_hflip(cfg.data, cfg.augment.hflip)})
        if arm.augment == "classic" else None,
        "samples": stage_fingerprint(cfg, SAMPLES, cfg.gan_seed_of(seed)) if arm.uses_synthetic else None,
    }


def clf_fingerprint(cfg: Config, arm: ArmConfig, seed: int) -> str:
    return fingerprint(clf_config(cfg, arm, seed))


# ----------------------------------------------------------------------------------------------------
# Stage records and atomic stage folders.


def read_record(folder: Path) -> Optional[Dict[str, Any]]:
    f = folder / STAGE_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _diff(old: Any, new: Any, prefix: str = "") -> List[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def needs_run(folder: Path, fp: str, config: Dict[str, Any], force: bool, what: str, command: str) -> bool:
    """True if the stage must run; False if its finished output matches `fp` (skip).

    A finished output made by another config is never replaced silently: it needs --force.
    """
    rec = read_record(folder)
    if rec is None:
        return True
    if rec.get("fingerprint") == fp:
        return force
    if force:
        return True
    changes = _diff(rec.get("config", {}), config) or ["its inputs changed"]
    shown = "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more" if len(changes) > 3 else "")
    raise StageError(
        f"{what} in '{folder}' was made by a different config ({shown}); "
        f"rerun `{command}` with --force to replace it, or set out_dir to a new folder"
    )


def start_stage(cfg: Config, stage: Stage, force: bool,
                gan_seed: Optional[int] = None) -> Optional[tuple[str, Dict[str, Any]]]:
    """(fingerprint, config) when `stage` must run; None (and a line saying so) when it is up to date."""
    folder = paths(cfg).stage(stage, gan_seed)
    config = stage_config(cfg, stage, gan_seed)
    fp = fingerprint(config)
    if needs_run(folder, fp, config, force, f"the {stage.what}", stage.command):
        return fp, config
    echo(f"{stage.command.split()[-1]}: up to date in {folder}")
    return None


def up_to_date(cfg: Config, stage: Stage, gan_seed: Optional[int] = None) -> bool:
    """Whether `stage` has finished output made by this config."""
    rec = read_record(paths(cfg).stage(stage, gan_seed))
    return rec is not None and rec.get("fingerprint") == stage_fingerprint(cfg, stage, gan_seed)


def require_stage(cfg: Config, stage: Stage, gan_seed: Optional[int] = None) -> Dict[str, Any]:
    """The record of a finished upstream stage, which must have been made by this config."""
    folder = paths(cfg).stage(stage, gan_seed)
    rec = read_record(folder)
    if rec is None:
        raise StageError(f"no {stage.what} in '{folder}'; run `{stage.command} --config ...` first")
    if rec.get("fingerprint") != stage_fingerprint(cfg, stage, gan_seed):
        raise StageError(f"the {stage.what} in '{folder}' was made by a different config; "
                         f"run `{stage.command} --config ...` (with --force) first")
    return rec


@contextlib.contextmanager
def building(folder: Path) -> Iterator[Path]:
    """Yield `<folder>.partial` to write into; on success it replaces `folder`, on failure it is removed."""
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        if old.exists():
            shutil.rmtree(old)
        folder.rename(old)
    partial.rename(folder)
    if old.exists():
        shutil.rmtree(old)


def write_record(folder: Path, stage: str, fp: str, config: Dict[str, Any], started: float,
                 extra: Optional[Dict[str, Any]] = None) -> None:
    from .. import __version__

    atomic_write_json(folder / STAGE_FILE, {
        "stage": stage,
        "fingerprint": fp,
        "config": config,
        "ganaug_version": __version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 2),
        **(extra or {}),
    })


def save_run_config(cfg: Config) -> None:
    """The resolved config of the latest command, at the top of the run folder."""
    save_config(cfg, paths(cfg).root / "config.yaml")


# ----------------------------------------------------------------------------------------------------
# Data every stage after split needs.


def load_split_data(cfg: Config) -> tuple[SplitData, Dict[str, Any]]:
    """The source reloaded and cut by the saved manifest, each image checked against its hash."""
    p = paths(cfg)
    require_stage(cfg, SPLIT)
    manifest = json.loads(p.manifest.read_text())
    ds = load_dataset(cfg.data)
    return apply_split(ds, manifest, f"split manifest '{p.manifest}'"), manifest
