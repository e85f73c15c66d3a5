"""Reading a config: YAML, then `--set` overrides, then the typed models; their errors as one line naming the key."""

from __future__ import annotations

import difflib
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import yaml
from pydantic import BaseModel, Discriminator, ValidationError

from ..errors import ConfigError
from ..gans import GANS
from ..gans.schema import GeneratorConfig
from .base import Invalid
from .execution import ExecutorConfig, check_executor
from .experiment import Config, family_schema, image_resolution
from .fingerprints import to_dict
from .sections import ArmConfig, DataConfig
from .sweeps import EXPERIMENT_SWEEP_KEYS, sweep_dir_name, sweep_key, sweep_values

# ----------------------------------------------------------------------------------------------------
# YAML and overrides.


def _yaml_value_error(e: Exception) -> str:
    """A short reason for an error PyYAML raised outside its own YAMLError."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e).strip("'\"") or type(e).__name__


def read_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a YAML mapping; a missing file or malformed YAML is a ConfigError with line and column."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist; pass an existing YAML file (see configs/)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file '{p}' cannot be read: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file '{p}' is not valid YAML{where}: {problem}; fix the file") from None
    except Exception as e:  # PyYAML's constructors raise plain errors for bad tagged scalars (2001-13-01, !!int x)
        raise ConfigError(f"config file '{p}' is not valid YAML: a value cannot be read ({_yaml_value_error(e)}); "
                          "fix the file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping of keys to values, not {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[Union[str, int]], Any]:
    """'a.b=value' -> (['a', 'b'], value), the value read as YAML ('seeds=[0,1,2]' gives a list)."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}' must look like key=value (e.g. --set gan.epochs=10)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set '{text}' has an empty key; write it like gan.epochs=10")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set '{text}': the value '{raw}' is not valid YAML; quote it or fix the brackets") from None
    except Exception as e:  # bad tagged scalars: 2001-13-01, !!int x
        raise ConfigError(f"--set '{text}': the value '{raw}' cannot be read ({_yaml_value_error(e)}); "
                          "quote it to keep it a string") from None
    # ASCII digits only: '²'.isdigit() is true but int('²') fails.
    path: list[Union[str, int]] = [int(p) if p.isascii() and p.isdigit() else p for p in key.split(".")]
    return path, value


def _key_text(path: Sequence[Union[str, int]]) -> str:
    out = ""
    for p in path:
        out = _join(out, p)
    return out


def apply_override(data: Dict[str, Any], path: Sequence[Union[str, int]], value: Any) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or not 0 <= part < len(node):
                raise ConfigError(f"--set {_key_text(path)}: index {part} is outside the list of {len(node)}")
            if node[part] is None:
                node[part] = {}
            if not isinstance(node[part], (dict, list)):  # seeds.0.x: seeds[0] is a number
                raise ConfigError(f"--set {_key_text(path)}: '{_key_text(path[:i + 1])}' holds a value, not a section")
            node = node[part]
            continue
        if isinstance(part, int):
            raise ConfigError(f"--set {_key_text(path)}: '{_key_text(path[:i])}' is not a list")
        child = node.get(part)
        if child is None:
            if part == "arms" and isinstance(nxt, int):
                child = [to_dict(a) for a in Config().arms]
            else:
                child = {}
            node[part] = child
        if not isinstance(child, (dict, list)):
            raise ConfigError(f"--set {_key_text(path)}: '{_key_text(path[:i + 1])}' holds a value, not a section")
        node = child
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or not 0 <= last < len(node):
            raise ConfigError(f"--set {_key_text(path)}: index {last} is outside the list of {len(node)}")
        node[last] = value
    else:
        node[last] = value


# ----------------------------------------------------------------------------------------------------
# Validation, and its errors as one line.


def _join(prefix: str, key: Union[str, int]) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    if key == "":
        return prefix
    return f"{prefix}.{key}" if prefix else str(key)


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _strip(tp: Any) -> Any:
    """A type without its Annotated metadata or its Optional (a union of one type and None)."""
    while True:
        if typing.get_origin(tp) is Annotated and not _is_generator(tp):
            tp = typing.get_args(tp)[0]
            continue
        if typing.get_origin(tp) is Union:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _is_generator(tp: Any) -> bool:
    return typing.get_origin(tp) is Annotated and any(isinstance(m, Discriminator) for m in tp.__metadata__)


def _describe(tp: Any) -> str:
    tp = _strip(tp)
    origin = typing.get_origin(tp)
    if origin is Union:
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, List):
        return "a list"
    if origin in (dict, Dict) or _is_generator(tp) or (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return "a mapping"
    return _TYPE_WORDS.get(tp, getattr(tp, "__name__", str(tp)))


def _field(model: type, key: Any) -> Any:
    for name, f in model.model_fields.items():
        if key in (name, f.alias):
            return f
    return None


def _walk(model: type, loc: Sequence[Any]) -> Tuple[str, Any, Optional[type]]:
    """The YAML key a pydantic error location names (without the union's family tags), the type expected there,
    and the model that holds it."""
    key, tp, parent = "", model, None
    for part in loc:
        if _is_generator(tp):  # the family's tag: no key of its own
            tp = family_schema(part) if isinstance(part, str) and part in GANS else None
            continue
        tp = _strip(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            f = _field(tp, part)
            parent, key = tp, _join(key, part)
            tp = f.annotation if f is not None else None
            if f is not None and f.metadata:
                tp = Annotated[(tp, *f.metadata)]
        elif origin in (list, List):
            key, tp = _join(key, int(part) if isinstance(part, int) else part), typing.get_args(tp)[0]
        elif origin in (dict, Dict):
            key, tp = _join(key, str(part)), typing.get_args(tp)[1]
        else:  # a union's member label: the union as a whole was not matched
            break
    return key, tp, parent


class _Explain:
    """Turns the first error of a validation into a ConfigError that names the key, where it was set and what to do."""

    def __init__(self, where: Dict[str, str]):
        self.where = where  # key -> where it was set (file or --set), for messages

    def origin(self, key: str) -> str:
        for k, src in self.where.items():  # set at this key, above it, or (an unknown key) below it by --set
            if k and (key == k or key.startswith(k + ".") or key.startswith(k + "[") or k.startswith(key + ".")):
                return f" (from {src})"
        return f" (in {self.where['']})" if "" in self.where else ""

    def __call__(self, e: ValidationError, model: type, prefix: str = "") -> ConfigError:
        err = e.errors(include_url=False)[0]
        key, tp, parent = _walk(model, err["loc"])
        key = _join(prefix, key) if prefix and key else (key or prefix)
        kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
        if kind == "value_error" and isinstance(ctx.get("error"), Invalid):
            inv = ctx["error"]
            text = inv.msg.replace("{key}", key)
            return ConfigError(text if inv.whole else f"config key '{_join(key, inv.key)}' {text}")
        if kind == "extra_forbidden":
            section = key.rsplit(".", 1)[0] if "." in key else ""
            unknown = key.rsplit(".", 1)[-1]
            known = [f.alias or n for n, f in parent.model_fields.items()] if parent is not None else []
            if parent is not None and issubclass(parent, GeneratorConfig):
                owners = [n for n in GANS.names() if _field(family_schema(n), unknown) is not None]
                family = parent.model_fields["name"].default
                if owners:
                    return ConfigError(f"config key '{key}' applies to {', '.join(owners)}, not {family}{self.origin(key)}; "
                                       f"remove it, or set {_join(section, 'name')} to one of those")
            close = difflib.get_close_matches(unknown, known, n=3)
            hint = (f"; did you mean {' or '.join(repr(_join(section, c)) for c in close)}?" if close
                    else f"; known keys here: {', '.join(known)}")
            return ConfigError(f"unknown config key '{key}'{self.origin(key)}{hint}")
        if kind == "union_tag_invalid":
            name = value.get("name") if isinstance(value, dict) else None
            if isinstance(name, str):
                GANS.check(name, f"config key '{_join(key, 'name')}'")  # raises, with the close matches
            return self.fail(_join(key, "name"), f"must be a generator family's name, got {name!r}")
        if kind in ("union_tag_not_found", "model_type", "model_attributes_type") or (
                kind == "dict_type" and typing.get_origin(_strip(tp)) not in (dict, Dict)):
            return self.fail(key or "<top level>", f"must be a mapping of keys to values, got {value!r}")
        if kind == "dict_type":
            return self.fail(key, f"must be a mapping of names to sections, got {value!r}")
        if kind == "list_type":
            hint = f"; write a list in brackets: [{value}]" if isinstance(value, str) and "," in value else ""
            return self.fail(key, f"must be a list, got {value!r}{hint}")
        if kind == "literal_error":
            choices = typing.get_args(_strip(tp))
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            return self.fail(key, f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}")
        if value is None and kind != "missing":
            return self.fail(key, f"must be {_describe(tp)}, not empty")
        if tp is not None and kind.endswith(("_type", "_parsing", "_from_float")):
            return self.fail(key, f"must be {_describe(tp)}, got {value!r} ({type(value).__name__})")
        return self.fail(key, err["msg"].lower())  # pragma: no cover - every error the schema can raise is named above

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"config key '{key}' {msg}{self.origin(key)}")


def _validated(model: type, data: Any, prefix: str = "", where: Optional[Dict[str, str]] = None,
               context: Optional[Dict[str, Any]] = None) -> Any:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        raise _Explain(where or {})(e, model, prefix) from None


def _config(data: Dict[str, Any], where: Dict[str, str]) -> Config:
    """Typed and checked: the data section first, for the images' resolution the generators' defaults depend on."""
    d = _validated(DataConfig, data.get("data"), "data", where)
    from ..data import DATASETS

    resolution = image_resolution(d) if d.source in DATASETS else None
    return _validated(Config, data, "", where, context={"resolution": resolution})


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults -> YAML file -> `--set` overrides, typed and validated."""
    data = read_yaml(path) if path is not None else {}
    where = {"": str(path)} if path is not None else {}
    for text in overrides:
        keypath, value = parse_override(text)
        apply_override(data, keypath, value)
        where[_key_text(keypath)] = f"--set {text}"
    cfg = _config(data, where)
    cfg.config_path = str(path) if path is not None else None
    return cfg


def config_from_dict(data: Dict[str, Any]) -> Config:
    """A validated Config from plain data (a saved config.yaml or a checkpoint's copy)."""
    return _config(data, {})


def arm_from_dict(data: Dict[str, Any]) -> ArmConfig:
    """An ArmConfig from plain data (a result.json's copy)."""
    return _validated(ArmConfig, data, "arm")


def validate_executor(e: ExecutorConfig) -> None:
    """The executor's checks again, after `--executor` changed its name."""
    try:
        check_executor(e)
    except Invalid as err:
        raise ConfigError(f"config key '{_join('executor', err.key)}' {err.msg}") from None


def save_config(cfg: Config, path: Union[str, Path]) -> None:
    from ..utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def json_schema() -> Dict[str, Any]:
    """The JSON Schema of a config file (editors complete and check keys with it; the docs' reference is made
    from it)."""
    schema = Config.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "ganaug config",
            **{k: v for k, v in schema.items() if k != "title"}}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


# ----------------------------------------------------------------------------------------------------
# Sub-experiments and arms made from other data.


def sweep_experiments(cfg: "Config") -> List[tuple[float, "Config"]]:
    """(value, config) per value of an experiment sweep: the config with the key set, no sweep, its own out_dir."""
    assert cfg.sweep is not None and cfg.experiment_sweep
    key = sweep_key(cfg.sweep.key)
    spec = EXPERIMENT_SWEEP_KEYS[key]
    out = []
    for x in sweep_values(cfg.sweep):
        value: Any = int(round(x)) if spec["integer"] else x
        data = to_dict(cfg)
        inner = cfg.sweep.inner
        data["sweep"] = None if inner is None else {"key": inner.key, "values": inner.values, "augment": inner.augment}
        data["out_dir"] = str(Path(cfg.out_dir) / "sweep" / sweep_dir_name(key, x))
        data["name"] = f"{cfg.name} [{key}={x:g}]"
        if key == "split.n_per_class":  # the other ways of sizing the training part give way to the swept one;
            # the test images start after the largest value's training images, so every value scores the same ones
            data["split"].update(fraction=None, first_per_class=None, test_after=int(max(sweep_values(cfg.sweep))))
        elif key == "split.fraction":
            data["split"].update(n_per_class=None, first_per_class=None)
        apply_override(data, key.split("."), value)
        sub = config_from_dict(data)
        sub.upstream_dir = cfg.upstream_dir or cfg.out_dir if spec["shares_upstream"] else None
        out.append((x, sub))
    return out


def parse_arm_shorthand(data: Optional[str], mix: Optional[str], augment: Optional[str],
                        generator: Optional[str] = None, generators: Optional[Dict[str, Any]] = None) -> ArmConfig:
    """The arm that `train-clf --data D --mix p_real=P|add=K --augment classic [--generator NAME]` describes."""
    flags = " ".join(f for f in (data and f"--data {data}", mix and f"--mix {mix}",
                                 augment and f"--augment {augment}") if f)
    raw: Dict[str, Any] = {}
    if mix is not None:
        path, value = parse_override(mix)
        if len(path) != 1 or path[0] not in ("p_real", "add", "balance"):
            raise ConfigError(f"--mix '{mix}' must be p_real=P (0..1), add=K (fakes per class) or balance=true")
        raw["mix"] = {path[0]: value}
        if data not in (None, "mixed"):
            raise ConfigError(f"--mix needs --data mixed (or no --data), got --data {data}")
        data = "mixed"
    raw["data"] = data or "real"
    if augment is not None:
        raw["augment"] = augment
    try:
        arm = _validated(ArmConfig, raw, "arm")
        if arm.mix is not None:
            m = arm.mix
            base = f"mixed-p{m.p_real:g}" if m.p_real is not None else f"real+{m.add}" if m.add is not None else "real+balance"
        else:
            base = arm.data
        arm.name = base + {"none": "", "classic": "-aug"}.get(arm.augment, f"-{arm.augment}")
    except ConfigError as e:
        raise ConfigError(f"{flags}: " + str(e).replace("config key 'arm.mix.", "'").replace("config key 'arm.", "'")) from None
    if generator is not None or (generators and len(generators) > 1 and arm.uses_synthetic):
        names = ", ".join(generators or {}) or "none: this config has one gan:"
        if not arm.uses_synthetic:
            raise ConfigError(f"--generator {generator}: {flags or '--data real'} uses no fakes; leave --generator out")
        if generator is None or not generators or generator not in generators:
            raise ConfigError(f"{flags}: --generator must name whose fakes the arm uses (generators: {names})"
                              + (f", got {generator!r}" if generator is not None else ""))
        arm.generator, arm.name = generator, f"{arm.name}-{generator}"
    elif generators and arm.uses_synthetic:
        arm.generator = next(iter(generators))
    return arm
