"""The repository keeps its promises: CI runs the README's commands; every bundled config is valid."""

import re
from pathlib import Path

import pytest

from ganaug.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> tuple[str, str]:
    text = (ROOT / "README.md").read_text()
    install = re.search(r"^(pip install -e \"\.\[dev\]\")\s+# install", text, re.M)
    test = re.search(r"^(make test)\s+# test", text, re.M)
    assert install and test, "README must show the install and test commands"
    return install.group(1), test.group(1)


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    install, test = readme_commands()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert install in ci and test in ci and ci.index(install) < ci.index(test)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_bundled_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name and cfg.arms
