"""Sweeps: one arm per value of an arm key, or one sub-experiment per value of an experiment key."""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from ..errors import ConfigError
from .base import Float, Section
from .sections import ArmConfig, MixConfig

SweepValues = Union[List[Float], str, float]


class InnerSweepConfig(Section):
    """The second key of a two-key sweep: an arm key swept inside every sub-experiment (one curve per value)."""

    key: str = "mix.p_real"
    """The arm key swept: mix.p_real or mix.add"""
    values: SweepValues = "0:1:0.25"
    """A list, or 'start:stop:step' (quoted in YAML; stop included)"""
    augment: Literal["none", "classic"] = "none"
    """classic augmentation on every swept arm"""


class SweepConfig(Section):
    """A grid over one key, drawn as accuracy against it with confidence bands.

    An arm key (mix.p_real, mix.add) adds one arm per value to the experiment, named p_real-0.1, ... (add-K for
    mix.add; -aug with augment: classic). An experiment key (classifier.steps) makes one sub-experiment per value,
    with all the config's arms, in `<out_dir>/sweep/<key>=<value>/`: each its own table, correction family and audit
    (a classifier.steps sweep shares the split and GAN).
    """

    key: str = "mix.p_real"
    """mix.p_real, mix.add (arms), or an experiment key (classifier.steps, split.n_per_class, gan.epochs, ...)"""
    values: SweepValues = "0:1:0.1"
    """A list, or 'start:stop:step' (quoted in YAML; stop included)"""
    augment: Literal["none", "classic"] = "none"
    """classic augmentation on every swept arm"""
    inner: Optional[InnerSweepConfig] = None
    """An experiment sweep: an arm sweep inside each sub-experiment"""

SWEEP_KEYS = {"mix.p_real": "p_real", "mix.add": "add"}
# Keys outside the arms: one sub-experiment per value. `shares_upstream`: the key cannot change the split,
# the GAN or the samples, so every sub-experiment reads the parent's.
EXPERIMENT_SWEEP_KEYS: Dict[str, Dict[str, Any]] = {
    "classifier.steps": {"integer": True, "minimum": 1, "shares_upstream": True, "label": "classifier steps (the budget)"},
    "split.n_per_class": {"integer": True, "minimum": 1, "shares_upstream": False, "label": "real training images per class"},
    "split.fraction": {"integer": False, "minimum": 1e-9, "maximum": 1.0, "shares_upstream": False,
                       "label": "share of the pool used for training"},
    "gan.epochs": {"integer": True, "minimum": 1, "shares_upstream": False, "generator": True, "label": "generator epochs"},
    "gan.kimg": {"integer": False, "minimum": 1e-9, "shares_upstream": False, "generator": True,
                 "label": "generator training length (kimg)"},
    "gan.lr": {"integer": False, "minimum": 1e-12, "shares_upstream": False, "generator": True,
               "label": "generator learning rate"},
}
MAX_SWEEP_VALUES = 200


def sweep_key(key: str) -> str:
    """The canonical key: an experiment key as written, or the arm key for 'classifier.mix.p_real',
    'arm.mix.p_real', 'mix.p_real' or 'p_real'."""
    k = key.strip()
    if k in EXPERIMENT_SWEEP_KEYS:
        return k
    for prefix in ("classifier.", "arms.", "arm."):
        if k.startswith(prefix):
            k = k[len(prefix):]
    if k in ("p_real", "add"):
        k = "mix." + k
    if k not in SWEEP_KEYS:
        raise ConfigError(f"config key 'sweep.key' is {key!r}; a sweep varies an arm key ({' or '.join(SWEEP_KEYS)}, "
                          f"also written classifier.mix.p_real) or an experiment key ({', '.join(EXPERIMENT_SWEEP_KEYS)})")
    return k


def sweep_dir_name(key: str, value: float) -> str:
    return f"{key}={value:g}"


def sweep_values(sweep: SweepConfig) -> List[float]:
    """The swept values: a list as given, or 'start:stop:step' with the stop included."""
    v = sweep.values
    if isinstance(v, float):
        return [v]
    if isinstance(v, list):
        out = [float(x) for x in v]
    else:
        text = v.strip()
        try:
            if ":" in text:
                start, stop, step = (float(t) for t in text.split(":"))
                if step <= 0 or stop < start:
                    raise ValueError
                n = int(round((stop - start) / step))
                if n + 1 > MAX_SWEEP_VALUES:  # before building the list: '0:1:1e-9' would be a billion values
                    raise ConfigError(f"config key 'sweep.values' is {v!r}, which gives {n + 1} values; "
                                      f"{MAX_SWEEP_VALUES} at most, so raise the step or narrow the range")
                out = [round(start + i * step, 10) for i in range(n + 1)]
                out = [x for x in out if x <= stop + 1e-9]
            else:
                out = [float(t) for t in text.split(",") if t.strip()]
        except (ValueError, OverflowError):  # OverflowError: an infinite start, stop or step
            raise ConfigError(f"config key 'sweep.values' is {v!r}; write 'start:stop:step' with step > 0 and "
                              "stop >= start (e.g. '0:1:0.1'), a comma list, or a YAML list") from None
    if not out:
        raise ConfigError("config key 'sweep.values' is empty; give at least one value")
    return out


def sweep_arms(sweep: SweepConfig) -> List[ArmConfig]:
    """The arms a sweep adds, named '<key>-<value>' (plus '-aug' with classic augmentation)."""
    key = sweep_key(sweep.key)
    short = SWEEP_KEYS[key]
    arms = []
    for x in sweep_values(sweep):
        mix = MixConfig(p_real=x) if short == "p_real" else MixConfig(add=int(round(x)))
        name = f"{short}-{x:g}" if short == "p_real" else f"{short}-{int(round(x))}"
        arms.append(ArmConfig(name=name + ("-aug" if sweep.augment == "classic" else ""), data="mixed", mix=mix,
                              augment=sweep.augment))
    return arms


def sweep_value(arm: Dict[str, Any], key: str) -> Optional[float]:
    """The value of a swept key in an arm's plain-data form (a result.json's arm_config)."""
    mix = arm.get("mix") or {}
    v = mix.get(SWEEP_KEYS[sweep_key(key)])
    return None if v is None else float(v)
