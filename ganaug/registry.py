"""A generic name -> builder registry, filled by decorators (as torchvision and timm do)."""

from __future__ import annotations

import ast
import difflib
import inspect
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .errors import ConfigError


def describe(doc: Optional[str]) -> str:
    """A builder's description: its docstring's first paragraph (one sentence, however many lines), on one line."""
    return " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())


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
            self._meta[name] = {"description": describe(fn.__doc__), **meta}
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


def read_registrations(folder: Path, decorator: str) -> Dict[str, Dict[str, Any]]:
    """The `@decorator("name", key=value, ...)` registrations in a package folder's modules, read from their source
    without importing them (so `ganaug list` runs without torch): name -> {"description", literal meta keys}.

    Meta values that are not literals (a schema class, a function) are left out; the registry itself, filled by
    importing the modules, is the truth, and tests/test_list.py checks the two agree.
    """
    found: Dict[str, Dict[str, Any]] = {}
    for path in sorted(Path(folder).glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if f"@{decorator}(" not in text:
            continue
        for node in ast.walk(ast.parse(text, str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for dec in node.decorator_list:
                if not (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Name) and dec.func.id == decorator
                        and dec.args and isinstance(dec.args[0], ast.Constant) and isinstance(dec.args[0].value, str)):
                    continue
                meta: Dict[str, Any] = {"description": describe(ast.get_docstring(node))}
                for kw in dec.keywords:
                    try:
                        if kw.arg is not None:
                            meta[kw.arg] = ast.literal_eval(kw.value)
                    except (ValueError, TypeError):
                        pass
                found[dec.args[0].value] = meta
    return dict(sorted(found.items()))
