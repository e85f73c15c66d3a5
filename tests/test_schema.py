"""The JSON Schema editors check configs with: current, naming every config in configs/, and as strict as the
loader about keys and types (a typo an editor lets through would only fail at `ganaug run`)."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from ganaug.cli import main
from ganaug.config import config_from_dict, json_schema, schema_text
from ganaug.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "configs" / "ganaug.schema.json"
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def test_the_committed_schema_is_the_models_own() -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), "configs/ganaug.schema.json is stale: run `ganaug schema -o " \
                                                     "configs/ganaug.schema.json`"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_names_the_schema_and_passes_it(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (path.parent / first.split("$schema=", 1)[1]).resolve() == SCHEMA_FILE
    jsonschema.validate(yaml.safe_load(path.read_text()), json_schema())


@pytest.mark.parametrize("bad", [
    {"gan": {"name": "cgan", "widht": 32}},  # a typo in a family's key
    {"gan": {"name": "vae", "d_cond": "concat"}},  # another family's key
    {"gan": {"beta": 1.0}},  # a vae key under the default family
    {"split": {"n_per_class": "ten"}},
    {"arms": [{"name": "r", "data": "rael"}]},
    {"sample": {"png": "yes"}},
    {"claasifier": {}},
])
def test_the_schema_and_the_loader_refuse_the_same_mistakes(bad: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json_schema())
    with pytest.raises(ConfigError):
        config_from_dict(bad)


def test_the_schema_tells_families_apart_and_describes_keys() -> None:
    schema = json_schema()
    jsonschema.validate({"gan": {"name": "diffusion", "timesteps": 100}}, schema)
    jsonschema.validate({"generators": {"a": {"name": "vae"}, "b": {}}}, schema)
    assert schema["$defs"]["VaeConfig"]["properties"]["beta"]["description"].startswith("The KL weight")


def test_schema_command_prints_or_writes_it(tmp_path: Path) -> None:
    printed = CliRunner().invoke(main, ["schema"])
    assert printed.exit_code == 0 and json.loads(printed.output) == json_schema()
    out = tmp_path / "s.json"
    written = CliRunner().invoke(main, ["schema", "-o", str(out)])
    assert written.exit_code == 0 and out.read_text() == schema_text()
