"""Data: sources, splits, synthetic sets, mixed batches and classic augmentation. Knows nothing of models.

The names below load on first use (PEP 562), so a worker process that imports only `ganaug.data.decode`
(Pillow and NumPy) does not pay for torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"ImageSet": "images", "to_float": "images", "to_uint8": "images", "DATASETS": "sources",
            "list_datasets": "sources", "load_dataset": "sources", "register_dataset": "sources"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
