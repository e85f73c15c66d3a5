"""A real one-node Slurm for the tests: munged, slurmctld and slurmd on localhost, every file in one temporary folder.

Debian's `slurm-wlm` and `munge` packages give the daemons; they are started as root (Slurm's daemons run as
SlurmUser=root here) with a minimal slurm.conf: no accounting database (so `sacct` answers nothing and the jobs'
states come from `squeue`, as on clusters without slurmdbd), memory enforced by polling (OverMemoryKill), requeue
allowed. The Slurm commands the tests and submitit run find it through SLURM_CONF.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

from .ports import free_port

DAEMONS = ("munged", "slurmctld", "slurmd")
COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
WHY_NOT = ("a one-node Slurm needs Debian's slurm-wlm and munge packages and root "
           "(apt-get install slurm-wlm munge, as .ci/run does)")


def missing() -> List[str]:
    """What this machine lacks for a one-node Slurm (empty: it can start one)."""
    lack = [b for b in DAEMONS + COMMANDS if not (shutil.which(b) or Path("/usr/sbin", b).exists())]
    if os.geteuid() != 0:
        lack.append("root")
    return lack


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


CONF = """\
ClusterName=ganaug-test
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/sock
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
NodeName=localhost CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


def _wait(what: str, ok: "callable", timeout: float, log: Path) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Address already in use" in _text(log):
            break  # the daemon could not bind its port: start() tries other ports at once
        if ok():
            return
        time.sleep(0.3)
    tail = log.read_text()[-2000:] if log.exists() else "(no log)"
    raise RuntimeError(f"the test Slurm's {what} did not come up in {timeout:.0f} s; {log}:\n{tail}")


class Slurm:
    """A running one-node Slurm: `env` (SLURM_CONF for the commands), `cpus`, `mem_mb`, and helpers."""

    def __init__(self, root: Path, cpus: int, mem_mb: int):
        self.root, self.cpus, self.mem_mb = root, cpus, mem_mb
        self.conf = root / "slurm.conf"
        self.env: Dict[str, str] = {**os.environ, "SLURM_CONF": str(self.conf)}

    def cmd(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60)
        if check and r.returncode:
            raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def jobs(self) -> Dict[str, str]:
        """Every job Slurm knows (array tasks one by one): id -> state (RUNNING, PENDING, COMPLETED, ...)."""
        out = self.cmd("squeue", "-h", "-r", "-t", "all", "-o", "%i|%T")
        return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)

    def running(self) -> List[str]:
        return [j for j, s in self.jobs().items() if s == "RUNNING"]

    def controller_up(self) -> bool:
        return "UP" in self.cmd("scontrol", "ping", check=False)

    def idle(self) -> bool:
        return "idle" in self.cmd("sinfo", "-h", "-o", "%T", check=False)


def start(cpus: int = 2, tries: int = 3) -> Slurm:
    """Start munged, slurmctld and slurmd in a new temporary folder (a short path: unix sockets live in it).

    A daemon that cannot bind its port (another process took it between the choice and the bind) is started
    again on other ports, up to `tries` times."""
    for attempt in range(tries):
        cluster = _start(cpus)
        try:
            _wait("controller", cluster.controller_up, 30, cluster.root / "slurmctld.log")
            subprocess.run([_binary("slurmd"), "-f", str(cluster.conf), "-N", "localhost"], check=True,
                           env=cluster.env, timeout=30)
            _wait("node", cluster.idle, 60, cluster.root / "slurmd.log")
            return cluster
        except RuntimeError:
            logs = _text(cluster.root / "slurmd.log") + _text(cluster.root / "slurmctld.log")
            stop(cluster)
            if "Address already in use" not in logs or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _start(cpus: int) -> Slurm:
    """Write the folder and slurm.conf, start munged and slurmctld (start() waits for them and starts slurmd)."""
    root = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
    mem_mb = max(1024, _memory_mb() - 1024)
    for d in ("state", "spool", "munge"):
        (root / d).mkdir()
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o600)
    (root / "slurm.conf").write_text(CONF.format(root=root, ctld_port=free_port(), d_port=free_port(), cpus=cpus,
                                                 mem_mb=mem_mb))
    cluster = Slurm(root, cpus, mem_mb)
    m = root / "munge"
    subprocess.run([_binary("munged"), "--force", f"--socket={m}/sock", f"--key-file={key}", f"--pid-file={m}/pid",
                    f"--log-file={m}/log", f"--seed-file={m}/seed"], check=True, env=cluster.env, timeout=30)
    subprocess.run([_binary("slurmctld"), "-f", str(cluster.conf)], check=True, env=cluster.env, timeout=30)
    return cluster


def stop(cluster: Slurm) -> None:
    """Cancel every job, stop the daemons (slurmd, slurmctld, munged) and remove the folder."""
    cluster.cmd("scancel", "--user", "root", check=False)
    time.sleep(0.5)
    for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/pid"):
        path = cluster.root / pid_file
        try:
            os.kill(int(path.read_text().split()[0]), signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            pass
    time.sleep(1.0)
    shutil.rmtree(cluster.root, ignore_errors=True)


def session() -> Iterator[Slurm]:
    cluster = start()
    try:
        yield cluster
    finally:
        stop(cluster)
