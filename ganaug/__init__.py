"""ganaug: does adding GAN-generated images make a small-data classifier better, and by how much?"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["Config", "GanaugError", "__version__", "load_config"]


def __getattr__(name: str) -> Any:
    """`ganaug.Config`, `ganaug.load_config` and `ganaug.GanaugError`, imported on first use (so that `ganaug list`
    and the data layer's config sections do not import torch)."""
    if name in ("Config", "load_config"):
        from . import config

        return getattr(config, name)
    if name == "GanaugError":
        from .errors import GanaugError

        return GanaugError
    raise AttributeError(f"module 'ganaug' has no attribute {name!r}")
