"""The one place config is read, merged (defaults -> YAML -> --set a.b=v), typed and validated.

A config becomes a tree of pydantic models before any work starts: a model per section (`sections.py`), each
generator family's beside its builder (`gans/`), the whole experiment with the rules across sections
(`experiment.py`). Unknown keys, wrong types and values out of range are ConfigErrors that name the key
(`loading.py`); nothing downstream re-checks what is checked here. `base.py` is what every section is built on,
`execution.py` holds the sections that never change a result, `fingerprints.py` hashes what can, and `sweeps.py`
expands a sweep into arms or sub-experiments.
"""

import importlib
from typing import Any

# Each name's module, imported on first use: `from ganaug.config.sections import DataConfig` (the data layer) and
# `ganaug list` need no generator family, and so no torch.
_WHERE = {
    "GanConfig": "..gans.schema",
    "GeneratorConfig": "..gans.schema",
    "EXECUTORS": ".execution",
    "CheckpointConfig": ".execution",
    "ExecutorConfig": ".execution",
    "SlurmConfig": ".execution",
    "Config": ".experiment",
    "Rep": ".experiment",
    "default_gan": ".experiment",
    "family_schema": ".experiment",
    "image_resolution": ".experiment",
    "COSMETIC_KEYS": ".fingerprints",
    "LEGACY_GAN_KEYS": ".fingerprints",
    "fingerprint": ".fingerprints",
    "result_config": ".fingerprints",
    "to_dict": ".fingerprints",
    "apply_override": ".loading",
    "arm_from_dict": ".loading",
    "config_from_dict": ".loading",
    "json_schema": ".loading",
    "load_config": ".loading",
    "parse_arm_shorthand": ".loading",
    "parse_override": ".loading",
    "read_yaml": ".loading",
    "save_config": ".loading",
    "schema_text": ".loading",
    "sweep_experiments": ".loading",
    "validate_executor": ".loading",
    "AUGMENT_KINDS": ".sections",
    "ArmConfig": ".sections",
    "AugmentConfig": ".sections",
    "ClassifierConfig": ".sections",
    "CompareConfig": ".sections",
    "DataConfig": ".sections",
    "DomainConfig": ".sections",
    "EvaluateConfig": ".sections",
    "FilterConfig": ".sections",
    "MixConfig": ".sections",
    "SampleConfig": ".sections",
    "ShrinkConfig": ".sections",
    "SplitConfig": ".sections",
    "EXPERIMENT_SWEEP_KEYS": ".sweeps",
    "SWEEP_KEYS": ".sweeps",
    "InnerSweepConfig": ".sweeps",
    "SweepConfig": ".sweeps",
    "sweep_arms": ".sweeps",
    "sweep_dir_name": ".sweeps",
    "sweep_key": ".sweeps",
    "sweep_value": ".sweeps",
    "sweep_values": ".sweeps",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ganaug.config' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(list(globals()) + list(_WHERE))


__all__ = [
    "AUGMENT_KINDS", "COSMETIC_KEYS", "EXECUTORS", "EXPERIMENT_SWEEP_KEYS", "LEGACY_GAN_KEYS", "SWEEP_KEYS", "ArmConfig",
    "AugmentConfig", "CheckpointConfig", "ClassifierConfig", "CompareConfig", "Config", "DataConfig", "DomainConfig",
    "EvaluateConfig", "ExecutorConfig", "FilterConfig", "GanConfig", "GeneratorConfig", "InnerSweepConfig", "MixConfig",
    "Rep", "SampleConfig", "ShrinkConfig", "SlurmConfig", "SplitConfig", "SweepConfig", "apply_override",
    "arm_from_dict", "config_from_dict", "default_gan", "family_schema", "fingerprint", "image_resolution",
    "json_schema", "load_config", "parse_arm_shorthand", "parse_override", "read_yaml", "result_config",
    "save_config", "schema_text", "sweep_arms", "sweep_dir_name", "sweep_experiments", "sweep_key", "sweep_value",
    "sweep_values", "to_dict", "validate_executor",
]
