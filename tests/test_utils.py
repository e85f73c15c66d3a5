"""Atomic files: whole or absent, and readable like any other file."""

import os
import stat
from pathlib import Path

import pytest

from ganaug.utils import atomic_open, atomic_write_text


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "x")
    plain = tmp_path / "b.txt"
    plain.write_text("x")
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "a.txt") as f:
            f.write("new, half written")
            raise RuntimeError("disk full")
    assert (tmp_path / "a.txt").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.txt"]
