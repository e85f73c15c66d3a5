"""A config as plain data, and the stable hashes of the parts of it that can change a stage's result."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Sequence

from pydantic import BaseModel


def to_dict(obj: Any) -> Any:
    """A config tree as plain data with YAML key names, ready for YAML or JSON (internal fields left out)."""
    if isinstance(obj, BaseModel):
        return {(f.alias or name): to_dict(getattr(obj, name)) for name, f in type(obj).model_fields.items()
                if not f.exclude}
    if isinstance(obj, (list, tuple)):
        return [to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _canonical(obj: Any) -> Any:
    """Plain data without the keys that are off (None or false), so a key added later with an off default
    leaves every earlier fingerprint, and the runs they identify, valid."""
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in obj.items() if v is not None and v is not False}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    return obj


# Keys that cannot change a stage's result: how often grids or snapshots are written, whether a missing data
# set may be downloaded. A fingerprint hashes them at their default, like the keys a family does not read.
EDIT_KEYS = ("mode", "strength", "per_image", "invert", "target")  # sample's keys of edit mode
COSMETIC_KEYS = {"gan": ("grid_every", "snap"), "data": ("download", "workers", "cache", "max_image_pixels"), "classifier": (),
                 "sample": ("chunk_size",),
                 "evaluate": ("enabled", "closest_pairs")}


def _pinned(obj: BaseModel, unused: Sequence[str]) -> Dict[str, Any]:
    """A config section as plain data with `unused` keys at their schema default (so they change no hash).

    Pinning rather than dropping keeps every fingerprint made before a key was known to be unused as it was,
    and with it the run folders it identifies.
    """
    defaults = {(f.alias or name): f.get_default(call_default_factory=True)
                for name, f in type(obj).model_fields.items() if not f.exclude}
    return {k: (to_dict(defaults[k]) if k in unused else v) for k, v in to_dict(obj).items()}


# The gan section as one flat schema held it before each family had its own: every fingerprint made then hashed
# all of these keys. A family's section is hashed on top of them, so a family that lacks a key hashes its old
# default, and those fingerprints (and the run folders they name) stay valid.
LEGACY_GAN_KEYS: Dict[str, Any] = {
    "name": "cgan", "preset": None, "impl": None, "repo": None, "epochs": 100, "kimg": None, "batch_size": None,
    "z_dim": None, "lr": None, "betas": None, "width": 64, "channel_base": None, "channel_max": None, "w_dim": None,
    "mapping_layers": None, "mbstd_group": None, "r1_gamma": None, "r1_interval": None, "style_mixing": None,
    "per_class": False, "d_cond": "concat", "ema_kimg": None, "augment": None, "augment_p": None, "ada_target": None,
    "ada_interval": None, "ada_kimg": None, "augpipe": None, "diffaugment": None, "mirror": False, "gpus": None,
    "snap": None, "seed": 0, "eval_every": None, "select": None, "grid_every": 10, "amp": "auto", "channels_last": "auto",
}


def result_config(section: str, obj: Any) -> Dict[str, Any]:
    """A config section as its stage's fingerprint sees it: only the keys that can change the result."""
    unused = list(COSMETIC_KEYS.get(section, ()))
    if section == "gan":
        if obj.select in (None, "last"):  # evaluating during training only watches; it changes the result when it selects
            unused += ["eval_every", "select"]
        out = {**LEGACY_GAN_KEYS, **{k: (LEGACY_GAN_KEYS.get(k) if k in unused else v) for k, v in to_dict(obj).items()}}
        out.pop("sample", None)  # how its fakes are drawn: the samples' fingerprint, not the training's
        return out
    if section == "sample" and obj.mode == "noise":  # the edit keys are off: fingerprints as before they existed
        return {k: v for k, v in _pinned(obj, unused).items() if k not in EDIT_KEYS}
    if section == "classifier":
        from ..classifiers import CLASSIFIERS

        unused += list(CLASSIFIERS.meta(obj.name).get("ignores", ()))
    return _pinned(obj, unused)


def fingerprint(obj: Any) -> str:
    """A short stable hash of plain data or a config tree (keys that are off do not count)."""
    blob = json.dumps(_canonical(to_dict(obj)), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
