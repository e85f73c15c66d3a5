"""The command line as a new user meets it: help with examples, commands in pipeline order, only the options that
mean something, --quiet, and messages that name what to type."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ganaug.cli import ORDER, main

from .conftest import invoke, ok

CONFIG_COMMANDS = ["split", "train-gan", "sample", "evaluate", "train-clf", "compare", "report", "run", "export"]


@pytest.mark.parametrize("command", ["init"] + CONFIG_COMMANDS)
def test_every_help_has_examples(command: str) -> None:
    r = ok(command, "--help")
    assert "Examples:" in r.output and f"ganaug {command} " in r.output


def test_commands_are_listed_in_pipeline_order_with_whole_sentences() -> None:
    out = ok("--help").output
    section = out.split("Commands")[1]
    where = [section.index(f"  {name} ") for name in ORDER]
    assert where == sorted(where)
    assert "..." not in section
    assert "_GANAUG_COMPLETE=bash_source ganaug" in out  # shell completion is said


def test_shell_completion_works() -> None:
    env = {**os.environ, "_GANAUG_COMPLETE": "bash_source"}
    command = [sys.executable, "-c", "from ganaug.cli import main; main(prog_name='ganaug')"]
    r = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "complete -o nosort -F" in r.stdout


@pytest.mark.parametrize("command,absent", [
    ("split", ["--sweep"]), ("train-gan", ["--sweep"]), ("sample", ["--sweep", "--progress"]),
    ("evaluate", ["--sweep", "--progress"]), ("compare", ["--force", "--progress"]),
    ("report", ["--force", "--progress"]), ("export", ["--sweep", "--progress"]),
])
def test_options_that_mean_nothing_are_not_offered(command: str, absent: list) -> None:
    out = ok(command, "--help").output
    for option in absent:
        assert option not in out
        r = invoke(command, "-c", "x.yaml", option)
        assert r.exit_code == 2 and "No such option" in r.output


def test_one_arm_options_are_checked_before_a_dry_run(config_file: Path) -> None:
    r = invoke("train-clf", "-c", str(config_file), "--mix", "p_real=1.5", "--dry-run")
    assert r.exit_code == 2 and "p_real" in r.stderr and "1.5" in r.stderr
    r = invoke("train-clf", "-c", str(config_file), "--arm", "nope", "--dry-run")
    assert r.exit_code == 2 and "--arm nope" in r.stderr


def test_an_unknown_set_key_is_blamed_on_the_set(config_file: Path) -> None:
    r = invoke("split", "-c", str(config_file), "--set", "foo.bar=1", "--dry-run")
    assert r.exit_code == 2 and "(from --set foo.bar=1)" in r.stderr and str(config_file) not in r.stderr


def test_comma_separated_seeds_get_the_list_hint(config_file: Path) -> None:
    r = invoke("split", "-c", str(config_file), "--set", "seeds=0,1,2", "--dry-run")
    assert r.exit_code == 2 and "[0,1,2]" in r.stderr


def test_what_to_run_first_names_the_config(config_file: Path) -> None:
    r = invoke("train-gan", "-c", str(config_file))
    assert r.exit_code == 2 and f"ganaug split -c {config_file}" in r.stderr and "..." not in r.stderr
    r = invoke("compare", "-c", str(config_file))
    assert r.exit_code == 2 and f"ganaug train-clf -c {config_file}" in r.stderr


def test_quiet_prints_no_progress_and_the_gan_line_no_none(config_file: Path) -> None:
    r = ok("split", "-c", str(config_file), "--quiet")
    assert r.stderr == ""
    r = ok("train-gan", "-c", str(config_file))
    assert "None" not in r.stderr and "train-gan: cgan" in r.stderr
    assert os.environ.get("GANAUG_QUIET") is None  # an in-process call leaves the environment as it was


def test_main_is_importable_without_running() -> None:
    assert main.name == "main"
