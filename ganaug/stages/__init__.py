"""Stages: config + run folder in, artefacts out. The only layer that touches run folders."""

from .compare import run_compare
from .report import run_report
from .run import plan, run_all
from .sample import run_sample
from .split import run_split
from .sweep import compare_all, experiments
from .train_clf import run_train_clf
from .train_gan import run_train_gan

__all__ = ["compare_all", "experiments", "plan", "run_all", "run_compare", "run_report", "run_sample", "run_split",
           "run_train_clf", "run_train_gan"]
