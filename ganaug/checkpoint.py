"""Self-describing checkpoints: state_dicts plus what is needed to rebuild the networks (never pickled code).

Two kinds live in a run folder: the final checkpoint a stage leaves beside its outputs, and the resumable
ones a training loop writes while it runs (`Checkpointer`: every N steps and every T seconds, atomically,
keeping the newest K), which hold everything needed to continue bit for bit.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import torch

from . import distributed
from .errors import CheckpointError, Interrupted
from .utils import StopRequest, atomic_torch_save

CHECKPOINT_KEYS = ("kind", "name", "kwargs", "state_dict", "optimizer", "step", "rng", "config", "data_fingerprint")
RESUME_NAME = re.compile(r"^step-(\d{9})\.pt$")


def cpu_state(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A module's state_dict on the CPU, contiguous, ready for a checkpoint."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(path: Union[str, Path], ckpt: Dict[str, Any]) -> None:
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    assert not missing, f"checkpoint lacks {missing}"
    atomic_torch_save(ckpt, path)


def load_checkpoint(path: Union[str, Path], kind: str, hint: str) -> Dict[str, Any]:
    """Load a checkpoint of `kind` ('gan' or 'classifier'); errors say what to run (`hint`)."""
    p = Path(path)
    then, dash = (f"; {hint}", f" - {hint}") if hint else ("", "")  # an empty hint leaves no separator behind
    if not p.is_file():
        raise CheckpointError(f"no {kind} checkpoint at '{p}'{then}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint '{p}' cannot be read ({type(e).__name__}: {str(e)[:80]}); "
                              f"it may be truncated{dash}") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != kind:
        got = ckpt.get("kind") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"'{p}' is not a ganaug {kind} checkpoint (kind: {got}){then}")
    return ckpt


# ----------------------------------------------------------------------------------------------------
# Resumable checkpoints while training.


def resume_files(folder: Path) -> List[Path]:
    """The resumable checkpoints in `folder`, oldest first (temporary files of an interrupted save ignored)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if RESUME_NAME.match(p.name))


def latest_resume(folder: Path, kind: str) -> Optional[Dict[str, Any]]:
    """The newest readable resumable checkpoint in `folder` (an unreadable newest one falls back to the one before)."""
    problems = []
    for path in reversed(resume_files(folder)):
        try:
            ckpt = load_checkpoint(path, kind, "")
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if "resume" in ckpt:
            ckpt["path"] = str(path)
            return ckpt
    if problems:
        raise CheckpointError(f"no readable checkpoint in '{folder}' ({problems[0]}); remove that folder to start "
                              "the stage over (or rerun with --force)")
    return None


class Checkpointer:
    """Saves a training loop's full state every `every_steps` steps and every `every_seconds`, and on a stop request.

    `after_step(step, make_state)` is called once per finished optimizer step; `make_state()` builds the
    checkpoint dict only when one is due. After saving on a stop request it raises `Interrupted`.
    """

    def __init__(self, folder: Path, *, every_steps: Optional[int], every_seconds: Optional[float], keep: int,
                 stop: Optional[StopRequest] = None, meta: Optional[Dict[str, Any]] = None):
        self.folder, self.every_steps, self.every_seconds, self.keep = Path(folder), every_steps, every_seconds, keep
        self.stop, self.meta = stop, dict(meta or {})
        self.last_time = time.monotonic()

    def due(self, step: int) -> bool:
        if self.every_steps is not None and step % self.every_steps == 0:
            return True
        if self.every_seconds is not None and time.monotonic() - self.last_time >= self.every_seconds:
            return True
        return self.stop is not None and self.stop.requested

    def after_step(self, step: int, total: int, make_state: Callable[[], Dict[str, Any]], last: Optional[bool] = None) -> None:
        """`last`: this was the final step of the whole run (default: step == total); the stage then finishes.

        Under torchrun every rank calls this after every step: a stop request that reached any rank stops all of
        them after the same step, and rank 0 alone saves.
        """
        if (step >= total) if last is None else last:
            return  # the stage writes its final checkpoint itself
        stop = distributed.any_rank(self.stop is not None and self.stop.requested)
        if not (self.due(step) or stop):
            return
        if distributed.is_main():
            path = self.save(step, make_state())
        else:
            path = self.folder / f"step-{step:09d}.pt"  # where rank 0 saved it
        if stop:
            by = self.stop.signal if self.stop is not None and self.stop.signal else "a signal to another process"
            raise Interrupted(f"stopped by {by} after step {step} of {total}; saved {path}", by)

    def save(self, step: int, ckpt: Dict[str, Any]) -> Path:
        path = self.folder / f"step-{step:09d}.pt"
        save_checkpoint(path, {**self.meta, **ckpt})
        self.last_time = time.monotonic()
        for old in resume_files(self.folder)[:-self.keep]:
            old.unlink(missing_ok=True)
        return path
