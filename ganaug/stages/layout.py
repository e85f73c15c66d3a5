"""The run folder's layout: where the split, each generator's GAN, samples and evaluation, the classifier runs and the
comparison live, and the names of the files stages leave beside their outputs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

from ..config import Config, Rep

STAGE_FILE = "stage.json"
RESUME_DIR = "resume"  # in <stage>.partial/: the resumable checkpoints of an unfinished training stage
LOCK_FILE = "ganaug.lock"
TRAINED_ON = "trained_on.json"  # beside a GAN (and the domain extractor): the content hash of every image its
# training code was handed, hashed there (`hashed_in`; a record without it was made by an older ganaug)
SELECTION = "selection.json"  # beside a GAN checkpoint chosen by validation FID: the epochs kept, the images used


RepLike = Union[Rep, int, None]  # a generator replicate; an int or None: the one gan:'s GAN of that seed


def as_rep(rep: RepLike) -> Rep:
    return rep if isinstance(rep, Rep) else Rep(None, rep)


@dataclass
class RunPaths:
    root: Path  # classifier runs and the comparison
    upstream: Optional[Path] = None  # split, GANs and samples (a sweep's sub-experiment reads its parent's)
    trained_as: Optional[Dict[str, str]] = None  # a generator whose training is another's: that one's GAN folder

    @property
    def up(self) -> Path:
        return self.upstream or self.root

    @property
    def split(self) -> Path:
        return self.up / "split"

    @property
    def manifest(self) -> Path:
        return self.split / "manifest.json"

    # Each generator (generators: NAME) and, with gan_seeds, each independent one gets folders of its own.
    def _of(self, base: str, rep: RepLike) -> Path:
        rep = as_rep(rep)
        path = self.up / base
        if rep.generator is not None:
            path = path / rep.generator
        return path if rep.seed is None else path / f"seed-{rep.seed}"

    def gan(self, rep: RepLike = None) -> Path:
        rep = as_rep(rep)
        if self.trained_as and rep.generator in self.trained_as:
            rep = Rep(self.trained_as[rep.generator], rep.seed)
        return self._of("gan", rep)

    def gan_checkpoint(self, rep: RepLike = None) -> Path:
        return self.gan(rep) / "checkpoint.pt"

    def samples(self, rep: RepLike = None) -> Path:
        return self._of("samples", rep)

    def evaluate(self, rep: RepLike = None) -> Path:
        return self._of("evaluate", rep)

    def relative(self, path: Path) -> str:
        """`path` relative to the run folder, as results record it (`../../samples` in a sub-experiment)."""
        return Path(os.path.relpath(path, self.root)).as_posix()

    @property
    def features(self) -> Path:
        """The domain feature extractor (trained on the training images only)."""
        return self.up / "features" / "domain"

    @property
    def clf(self) -> Path:
        return self.root / "clf"

    def clf_run(self, arm: str, seed: int) -> Path:
        return self.clf / arm / f"seed-{seed}"

    @property
    def compare(self) -> Path:
        return self.root / "compare"


def paths(cfg: Config) -> RunPaths:
    twins = {n: first for n, first in cfg.training_twins().items() if first != n}
    return RunPaths(Path(cfg.out_dir), Path(cfg.upstream_dir) if cfg.upstream_dir else None, twins or None)


def data_cache(cfg: Config, split_folder: Optional[Path] = None) -> Path:
    """Where a source that decodes files keeps its decoded tensor: data.cache, else the split's cache/."""
    return Path(cfg.data.cache).expanduser() if cfg.data.cache else (split_folder or paths(cfg).split) / "cache"
