"""One process at a time writes a run folder (`ganaug.lock` at its top names the holder), and one writer at a time
writes each cell of an experiment (`<folder>.lock` beside it)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from ..errors import StageError
from .layout import LOCK_FILE


@contextlib.contextmanager
def run_lock(out_dir: str | Path, command: str = "ganaug") -> Iterator[None]:
    """Hold `<out_dir>/ganaug.lock` (an flock, so a killed holder frees it) while a command writes the run folder.

    A second ganaug process on the same folder gets an error naming the holder's process id. A folder this
    call made, and that nothing else was written into, is removed again at the end.
    """
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise StageError(f"out_dir '{root}' is a file, not a folder; set out_dir to a folder")
    made = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = _acquire(path, root)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # before unlocking, so a waiter never locks a file that is no longer the lock
        os.close(fd)
        if made:
            with contextlib.suppress(OSError):
                root.rmdir()  # only if empty


def _acquire(path: Path, root: Path) -> int:
    """An open, flock-ed descriptor of the lock file (POSIX; elsewhere ganaug runs without the lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            os.close(fd)
            pid = holder.get("pid", "unknown")
            host = holder.get("host")
            raise StageError(
                f"run folder '{root}' is in use by ganaug process {pid} (`{holder.get('command', 'ganaug')}` since "
                f"{holder.get('since', '?')}{', on ' + host if host not in (None, socket.gethostname()) else ''}); "
                f"wait for it to finish or stop it (kill {pid}), or set out_dir to another folder") from None
        # The holder may have removed the file between our open and our lock: then lock the new one.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def cell_lock(folder: Path) -> Iterator[None]:
    """Hold `<folder>.lock` while one cell of an experiment writes `folder`: a second writer of the same cell (another
    coordinator, a worker on another host that sees the folder) waits, then finds the cell done and skips it. An
    flock, so a dead worker's lock is free again; on a network file system it needs working flock (NFSv4, Lustre)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = folder.parent / (folder.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holder is done (or dead)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file between our open and our lock: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # before unlocking, so a waiter never keeps a file that is no longer the lock
        os.close(fd)

