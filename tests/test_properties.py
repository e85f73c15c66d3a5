"""Property tests: whatever config or override a user writes, ganaug answers with a Config or a GanaugError.

Generated configs start from the tiny test config and are mutated (keys set to values of any type, unknown keys,
deleted keys, sections wrapped in lists); generated overrides use the schema's real key paths. At the CLI the
answer must be exit status 0, or 2 with exactly one `error: ` line and no traceback.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import typing
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ganaug.cli import main
from ganaug.config import Config, config_from_dict, fingerprint, load_config, to_dict
from ganaug.errors import GanaugError

from .conftest import make_folder, tiny_config

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ----------------------------------------------------------------------------------------------------
# The schema's key paths, as --set writes them (list items by index: arms.0.mix.p_real).


def _plain(tp: Any) -> Any:
    """A type without Annotated metadata (validators, the generator union's tags and discriminator)."""
    if typing.get_origin(tp) is typing.Annotated:
        return _plain(typing.get_args(tp)[0])
    if typing.get_origin(tp) is Union:
        return Union[tuple(_plain(a) for a in typing.get_args(tp))]
    if typing.get_origin(tp) is list:
        return List[_plain(typing.get_args(tp)[0])]
    if typing.get_origin(tp) is dict:
        return Dict[str, _plain(typing.get_args(tp)[1])]
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def key_types(cls: type = Config, prefix: str = "") -> Dict[str, Any]:
    """Every key path of the schema -> its type hint (a generator section: every family's keys)."""
    out: Dict[str, Any] = {}
    for name, f in cls.model_fields.items():
        path = prefix + (f.alias or name)
        tp = out.setdefault(path, _plain(f.annotation))
        for a in typing.get_args(tp) if typing.get_origin(tp) is Union else (tp,):
            if _is_model(a):
                out.update(key_types(a, path + "."))
            elif typing.get_origin(a) is list:
                (item,) = typing.get_args(a)
                out[path + ".0"] = out[path + ".1"] = item
                if _is_model(item):
                    out.update(key_types(item, path + ".0."))
                    out.update(key_types(item, path + ".4."))
    return out


KEY_TYPES = key_types()
KEY_PATHS = sorted(KEY_TYPES)
FIELD_NAMES = sorted({p.rsplit(".", 1)[-1] for p in KEY_PATHS if not p.rsplit(".", 1)[-1].isdigit()})

# Words the schema knows, so that generated values sometimes pass the type checks and reach the range checks.
WORDS = ["cgan", "dcgan", "stylegan2", "stylegan2-ada", "small-cnn", "resnet18", "imagefolder", "digits", "mnist-5k",
         "real", "synthetic", "mixed", "classic", "none", "ada", "diffaugment", "fixed", "native", "official", "auto",
         "tiny", "small", "cifar", "bf16", "off", "on", "cpu", "cuda:0", "mps", "balanced", "holm", "bonferroni",
         "concat", "projection", "skip", "error", "bgc", "color,translation", "mix.p_real", "mix.add", "0:1:0.5",
         "0:1:0.1", "0:inf:1", "0:1:1e-12", "1,2,3", "p_real", "bars", "x", "", " ", "-1", "1e400", "nan"]

LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.text(max_size=12), st.sampled_from(WORDS),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)

# Raw --set values: YAML that parses oddly or not at all, beside dumped values of every type.
RAW_VALUES = ["[1, 2", "{a: 1", "2001-13-01", "2001-02-30", "!!int x", "!!float x", "!!bool x", "!!timestamp x",
              "!!binary ===", "!!set {a: 1}", "!!python/name:os.system", "&a [*a]", "*nothing", ".nan", "-.inf",
              "0x1F", "0o17", "1_000", "1e-4", "2e-4", "~", "'quoted'", '"x\\ty"', "- a\n- b", "a: b", "|\n  text",
              "[[[[1]]]]", "{}", "[]", "'0:1:0.1'", "0:1:0.1", "yes", "no", "null"]


def value_text(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) or v is None else str(v)


VALUE_TEXT = st.one_of(VALUES.map(value_text), st.sampled_from(RAW_VALUES), st.text(max_size=20))


def typed_values(tp: Any) -> st.SearchStrategy[Any]:
    """Values of the key's own type, mostly in range, so that examples get past the type checks."""
    origin = typing.get_origin(tp)
    if origin is Union:
        return st.one_of([typed_values(a) for a in typing.get_args(tp)])
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(tp))
    if origin is list:
        return st.lists(typed_values(typing.get_args(tp)[0]), min_size=1, max_size=3)
    if _is_model(tp):
        return st.just({})
    return {
        type(None): st.none(),
        bool: st.booleans(),
        int: st.integers(0, 12),
        float: st.floats(0, 1) | st.sampled_from([0.5, 2.0, 1e-4]),
        str: st.sampled_from(WORDS),
    }.get(tp, VALUES)


def structured_override(keys: Sequence[str]) -> st.SearchStrategy[str]:
    """'key=value' from a real key path (sometimes bent: a suffix, a typo, a dropped part) and a value of its type
    or of any type."""
    def one(k: str) -> st.SearchStrategy[str]:
        bent = st.sampled_from([k, k, k, k, k + ".x", k + ".0", k.rsplit(".", 1)[0], k.replace("_", ""), k[:-1] or k,
                                k.upper(), k + "."])
        typed = typed_values(KEY_TYPES.get(k, Any)).map(value_text)
        return st.builds(lambda b, v: f"{b}={v}", bent, typed | typed | VALUE_TEXT)
    return st.sampled_from(keys).flatmap(one)


OVERRIDES = st.lists(st.one_of(structured_override(KEY_PATHS), structured_override(KEY_PATHS), st.text(max_size=30)),
                     max_size=4)


# ----------------------------------------------------------------------------------------------------
# Generated config dicts: bases the schema accepts, then mutations.

FAKE = Path(tempfile.gettempdir()) / "ganaug-properties-never-written"


def _bases() -> List[Dict[str, Any]]:
    tiny = tiny_config(FAKE, FAKE / "images")
    return [
        tiny,
        tiny_config(FAKE, FAKE / "images", gan={"name": "stylegan2", "preset": "tiny", "epochs": 1, "batch_size": 8}),
        tiny_config(FAKE, FAKE / "images", gan={"augment": "ada"}, seeds=[0, 1], gan_seeds=[0, 1]),
        tiny_config(FAKE, FAKE / "images", sweep={"key": "mix.p_real", "values": "0:1:0.5"}, baseline="real"),
        {"data": {"source": "digits"}, "split": {"fraction": 0.5}},
        {},
    ]


BASES = _bases()


def _parts(path: str) -> List[Union[str, int]]:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def _walk(node: Any, parts: Sequence[Union[str, int]]) -> Any:
    """The container holding the last part, making dict sections on the way; None where a list index is missing."""
    for part in parts[:-1]:
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                return None
            if not isinstance(node[part], (dict, list)):
                node[part] = {}
            node = node[part]
        else:
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
    return node


def mutate(data: Dict[str, Any], op: tuple) -> None:
    kind, path, value = op
    parts = _parts(path)
    node = _walk(data, parts)
    if node is None:
        return
    last = parts[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            return
        if kind == "del":
            del node[last]
            return
    elif kind == "del":
        node.pop(last, None)
        return
    if kind == "set":
        node[last] = value
    elif kind == "unknown" and isinstance(node, dict):
        node[value[0]] = value[1]
    elif kind == "wrap":
        old = node[last] if isinstance(node, list) else node.get(last)
        node[last] = [old] if value else {"inner": old}


OPS = st.one_of(
    st.sampled_from(KEY_PATHS).flatmap(lambda k: st.tuples(st.just("set"), st.just(k), typed_values(KEY_TYPES[k]))),
    st.tuples(st.just("set"), st.sampled_from(KEY_PATHS), VALUES),
    st.tuples(st.just("del"), st.sampled_from(KEY_PATHS), st.none()),
    st.tuples(st.just("unknown"), st.sampled_from(KEY_PATHS),
              st.tuples(st.text(min_size=1, max_size=10) | st.sampled_from(FIELD_NAMES), VALUES)),
    st.tuples(st.just("wrap"), st.sampled_from(KEY_PATHS), st.booleans()),
)


def load_or_config_error(path: Path, overrides: Sequence[str] = ()) -> None:
    """load_config answers with a Config (whose saved form loads back the same) or a GanaugError, nothing else."""
    try:
        cfg = load_config(path, overrides)
    except GanaugError as e:
        assert str(e).strip()
        event(f"load_config: {type(e).__name__}")
        return
    assert isinstance(cfg, Config)
    event("load_config: Config")
    # The resolved config is what every run folder saves as config.yaml; it must load back unchanged.
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False)))
    assert fingerprint(again) == fingerprint(cfg)


# ----------------------------------------------------------------------------------------------------
# (a) generated config files.


@settings(max_examples=400, **SETTINGS)
@given(base=st.sampled_from(BASES), ops=st.lists(OPS, max_size=6))
def test_generated_configs_load_or_raise_a_config_error(tmp_path: Path, base: Dict[str, Any], ops: List[tuple]) -> None:
    data = copy.deepcopy(base)
    for op in ops:
        mutate(data, op)
    path = tmp_path / "generated.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    load_or_config_error(path)


YAMLISH_LINE = st.builds(
    lambda indent, key, sep, value: " " * indent + key + sep + value,
    st.integers(0, 4), st.sampled_from(FIELD_NAMES + ["- ", "? ", "---", "#"]) | st.text(max_size=6),
    st.sampled_from([": ", ":", " ", ": |", ": &a ", ": *a ", ""]), VALUE_TEXT,
)


@settings(max_examples=300, **SETTINGS)
@given(text=st.one_of(st.text(), st.lists(YAMLISH_LINE, max_size=8).map("\n".join)))
def test_random_text_as_the_config_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    load_or_config_error(path)


# ----------------------------------------------------------------------------------------------------
# (b) generated --set overrides.


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("props") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(FAKE, FAKE / "images"), sort_keys=False))
    return path


@settings(max_examples=400, **SETTINGS)
@given(overrides=OVERRIDES)
def test_generated_overrides_load_or_raise_a_config_error(tiny_file: Path, overrides: List[str]) -> None:
    load_or_config_error(tiny_file, overrides)


def test_key_paths_cover_the_schema() -> None:
    assert {"arms.0.mix.p_real", "split.shrink.class", "gan.betas.1", "sweep.values", "seeds.0"} <= set(KEY_PATHS)


# ----------------------------------------------------------------------------------------------------
# (c) the CLI: exit 0, or 2 with one line.


def assert_clean_exit(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    event(f"exit {result.exit_code}")
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the tiny image folder; each example makes its own subfolder."""
    root = tmp_path_factory.mktemp("cli")
    make_folder(root / "images")
    return root


def _example(root: Path) -> tuple[Path, Path]:
    """(example folder, its config file) with out_dir inside the example folder."""
    here = Path(tempfile.mkdtemp(dir=root))
    cfg = tiny_config(here, root / "images", gan={"epochs": 1})
    path = here / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return here, path


def _invoke(here: Path, args: List[str]):
    old = Path.cwd()
    os.chdir(here)  # relative out_dirs from generated overrides land here
    try:
        return CliRunner().invoke(main, args)
    finally:
        os.chdir(old)


@settings(max_examples=150, **SETTINGS)
@given(overrides=OVERRIDES)
def test_cli_dry_run_exits_0_or_2_with_one_line(cli_world: Path, overrides: List[str]) -> None:
    here, cfg = _example(cli_world)
    r = _invoke(here, ["run", "--dry-run", "-c", str(cfg)] + [f"--set={o}" for o in overrides])
    assert_clean_exit(r)


# The split really runs, so its overrides never point out_dir or data.root outside the example's folder.
SPLIT_KEYS = [k for k in KEY_PATHS if k not in ("out_dir", "data.root")]
SPLIT_FOCUS = [k for k in SPLIT_KEYS if k.startswith(("data.", "split."))]
SPLIT_OVERRIDES = st.lists(st.one_of(structured_override(SPLIT_FOCUS), structured_override(SPLIT_FOCUS),
                                     structured_override(SPLIT_KEYS),
                                     st.text(max_size=30).filter(lambda t: "out_dir" not in t and "root" not in t)),
                           max_size=3)


@settings(max_examples=80, **SETTINGS)
@given(overrides=SPLIT_OVERRIDES)
def test_cli_split_exits_0_or_2_with_one_line(cli_world: Path, overrides: List[str]) -> None:
    here, cfg = _example(cli_world)
    r = _invoke(here, ["split", "-c", str(cfg)] + [f"--set={o}" for o in overrides])
    assert_clean_exit(r)
