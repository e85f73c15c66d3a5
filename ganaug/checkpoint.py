"""Self-describing checkpoints: state_dicts plus what is needed to rebuild the networks (never pickled code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import torch

from .errors import CheckpointError
from .utils import atomic_torch_save

CHECKPOINT_KEYS = ("kind", "name", "kwargs", "state_dict", "optimizer", "step", "rng", "config", "data_fingerprint")


def save_checkpoint(path: Union[str, Path], ckpt: Dict[str, Any]) -> None:
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    assert not missing, f"checkpoint lacks {missing}"
    atomic_torch_save(ckpt, path)


def load_checkpoint(path: Union[str, Path], kind: str, hint: str) -> Dict[str, Any]:
    """Load a checkpoint of `kind` ('gan' or 'classifier'); errors say what to run (`hint`)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no {kind} checkpoint at '{p}'; {hint}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint '{p}' cannot be read ({type(e).__name__}: {str(e)[:80]}); "
                              f"it may be truncated - {hint}") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != kind:
        got = ckpt.get("kind") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"'{p}' is not a ganaug {kind} checkpoint (kind: {got}); {hint}")
    return ckpt
