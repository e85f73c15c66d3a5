"""What every config section is built on: a strict pydantic model, the error a check raises, and the number
types YAML needs (2e-4 read as a string is a number; 3.0 is the integer 3).

Below everything that reads a section: imports nothing of ganaug, so `data/`, `gans/` and `classifiers/` can take
their section without importing the config that composes them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator


class Invalid(ValueError):
    """A key's value is wrong. `key` is relative to the model that raises it (the loader prefixes the section's
    place in the file); `{key}` in the message becomes that section's full key. A `whole` message is the
    error's whole text (it names its keys itself)."""

    def __init__(self, key: str, msg: str, whole: bool = False):
        super().__init__(msg)
        self.key, self.msg, self.whole = key, msg, whole


def need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise Invalid(key, msg)


def _yaml_float(v: Any) -> Any:
    """PyYAML reads 2e-4 (no dot) as a string: a number written so is a number."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _whole(v: Any) -> Any:
    """3.0 is the integer 3."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _switch(v: Any) -> Any:
    """YAML reads off and on (unquoted, in a file or a --set) as false and true: a switch written so is its word."""
    return {False: "off", True: "on"}.get(v, v) if isinstance(v, bool) else v


Float = Annotated[float, BeforeValidator(_yaml_float)]
Switch = BeforeValidator(_switch)  # on a Literal of words that include "off": Annotated[Literal[...], Switch]
Int = Annotated[int, BeforeValidator(_whole)]


class Section(BaseModel):
    """A section of the config: its keys and nothing else, strictly typed (YAML's 'yes' is not true, '3' not 3)."""

    model_config = ConfigDict(strict=True, extra="forbid", use_attribute_docstrings=True, populate_by_name=True,
                              validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, v: Any) -> Any:
        return {} if v is None else v  # `split:` with nothing under it: every key at its default
