"""Ports for the tests' daemons (Slurm, Ray), chosen below the kernel's ephemeral range.

A port the kernel hands out as free (bind to port 0) comes from the ephemeral range, where any outgoing connection
may take it before the daemon binds it; that happened once to slurmd. Below the range only listeners compete, and no
port is handed out twice in one process.
"""

from __future__ import annotations

import random
import socket
from contextlib import closing
from pathlib import Path
from typing import Set

_given: Set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, below the ephemeral range, not handed out before in this process."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(max(1024, low - 12000), low)
        if port in _given:
            continue
        with closing(socket.socket()) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range for the tests' daemons")
