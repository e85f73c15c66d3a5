"""A generic name -> builder registry, filled by decorators (as torchvision and timm do)."""

from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, List

from .errors import ConfigError


class Registry:
    """Maps names to builders; a duplicate name raises, an unknown name suggests close matches."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Callable[..., Any]] = {}
        self._meta: Dict[str, Dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: `@REG.register("name", key=value)` stores the builder and its metadata."""

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered (by {self._entries[name].__module__})")
            self._entries[name] = fn
            doc = (fn.__doc__ or "").strip().splitlines()
            self._meta[name] = {"description": doc[0] if doc else "", **meta}
            return fn

        return decorator

    def check(self, name: str, key: str = "name") -> None:
        """Raise a ConfigError naming `key` if `name` is not registered."""
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), list(self._entries), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"{key}: unknown {self.kind} '{name}'{hint} (known: {', '.join(self.names())}; see `ganaug list`)"
            )

    def get(self, name: str, key: str = "name") -> Callable[..., Any]:
        self.check(name, key)
        return self._entries[name]

    def meta(self, name: str) -> Dict[str, Any]:
        self.check(name)
        return dict(self._meta[name])

    def names(self) -> List[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
