"""Where a result was made, and `reproducible: strict`.

A CPU result depends on more than its config: torch's kernels add up in an order set by the instruction set they
dispatch to (AVX-512 or AVX2), by the BLAS and oneDNN code paths, and by the thread count, so the same config can read
94.59 on one machine and 94.65 on another. Every stage record therefore holds `environment()` (never part of a
fingerprint: a run made elsewhere is still the same run), `compare` says when one table's runs came from different
machines (`machines_note`), and `reproducible: strict` pins the CPU math of x86 machines to AVX2, so machines of
different generations print the same table.

The pins are environment variables the libraries read once, when they load: `start_strict` sets them before torch is
imported (re-executing the command when something loaded torch first), and every process the command starts (local
workers, a local Ray, Slurm jobs) inherits them. This module imports nothing heavy at its top: the CLI calls it first.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# What `reproducible: strict` sets, each in the spelling its library accepts: ATen compares lowercase names
# (DispatchStub.cpp), oneDNN reads an uppercase ISA name (its "CPU dispatcher control"), oneMKL a code branch
# (its "conditional numerical reproducibility"; on non-Intel CPUs oneMKL may fall back to its AUTO branch).
STRICT_PINS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
STRICT_CUDA = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}  # cuBLAS's deterministic workspaces (deterministic algorithms need it)
MARKER = "GANAUG_REPRODUCIBLE"  # "strict" in every process of a strict command; the records read it
# The variables that change which code computes the numbers, recorded when set.
RECORDED_VARS = (*STRICT_PINS, "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", *STRICT_CUDA,
                 "OMP_NUM_THREADS", "MKL_NUM_THREADS", MARKER)
# The CPU flags that decide which kernels run (x86 and Arm), recorded when present.
CPU_FEATURES = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                "avx_vnni", "asimd", "sve", "sve2")


# ----------------------------------------------------------------------------------------------------
# The environment a stage ran in.


def environment() -> Dict[str, Any]:
    """Versions, machine, instruction set, threads and pins of this process, for a stage record.

    The parts that cannot change within a process (versions, CPU, host, the git checkout, asked once) are cached, so
    a call costs well under a millisecond after the first; never raises (an unknown field is null).
    """
    import torch

    env: Dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _fixed().items()}
    env["cpu"]["capability"] = _safe(torch.backends.cpu.get_cpu_capability)  # what ATen dispatches to, pins included
    env["threads"] = {"intra_op": _safe(torch.get_num_threads), "inter_op": _safe(torch.get_num_interop_threads)}
    env["deterministic"] = _safe(torch.are_deterministic_algorithms_enabled)
    env["gpu"] = _gpu()
    env["env"] = {k: os.environ[k] for k in RECORDED_VARS if k in os.environ}
    env["reproducible"] = "strict" if os.environ.get(MARKER) == "strict" else "default"
    return env


def clear_cache() -> None:
    """Forget the cached parts (tests; a process that changed its checkout)."""
    _fixed.cache_clear()
    _gpu_fixed.cache_clear()
    _cpu.cache_clear()


def _safe(f: Callable[[], Any]) -> Any:
    try:
        return f()
    except Exception:  # noqa: BLE001 - a record is never worth failing a stage for
        return None


@functools.lru_cache(maxsize=None)
def _fixed() -> Dict[str, Any]:
    import torch

    from . import __version__

    config = _safe(torch.__config__.show) or ""
    return {
        "host": _safe(socket.gethostname),
        "os": _safe(platform.platform),
        "python": platform.python_version(),
        "ganaug": __version__,
        "git": _git(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "numpy": _version("numpy"),
        "cpu": {**_cpu(), "mkl": _safe(torch.backends.mkl.is_available),
                "mkl_version": _after(config, "Math Kernel Library Version "),
                "onednn": _safe(torch.backends.mkldnn.is_available), "onednn_version": _after(config, "MKL-DNN v")},
    }


def _version(name: str) -> Optional[str]:
    """A package's version without importing it (torchvision's import alone takes most of a second)."""
    mod = sys.modules.get(name)
    if mod is not None and getattr(mod, "__version__", None):
        return str(mod.__version__)
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return None


def _after(text: str, marker: str) -> Optional[str]:
    """The word after `marker` in torch's build summary ('2024.2-Product' -> '2024.2')."""
    i = text.find(marker)
    if i < 0:
        return None
    words = text[i + len(marker):].split()
    return words[0].split("-")[0] if words else None


@functools.lru_cache(maxsize=None)
def _cpu() -> Dict[str, Any]:
    """Model, cores and the kernel-relevant flags, from the first processor block of /proc/cpuinfo (or platform);
    read once per process (callers copy it before changing it)."""
    info: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:  # the first processor is enough, and reading all of them is slow on large machines
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    flags = set((info.get("flags") or info.get("features") or "").split())
    return {"model": info.get("model name") or info.get("hardware") or platform.processor() or None,
            "arch": platform.machine() or None, "cores": os.cpu_count(),
            "features": [f for f in CPU_FEATURES if f in flags] if flags else None}


def _git() -> Dict[str, Any]:
    """The commit and dirty flag of the checkout ganaug is imported from; nulls when it is not one or git is absent."""
    root = Path(__file__).resolve().parent.parent
    unknown = {"commit": None, "dirty": None}
    if not (root / ".git").exists():  # installed from a wheel, or nested in someone else's repository
        return unknown
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {"GIT_OPTIONAL_LOCKS": "0"}
    try:  # one call for both: the commit (branch.oid) and any changed tracked file
        out = subprocess.run(["git", "-C", str(root), "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
                             capture_output=True, text=True, timeout=10, env=env, check=False)
    except (OSError, subprocess.SubprocessError):
        return unknown
    if out.returncode != 0:
        return unknown
    lines = out.stdout.splitlines()
    commit = next((ln.split()[2] for ln in lines if ln.startswith("# branch.oid ")), None)
    return {"commit": None if commit in (None, "(initial)") else commit,
            "dirty": any(ln and not ln.startswith("#") for ln in lines)}


def _gpu() -> Optional[Dict[str, Any]]:
    import torch

    if not _safe(torch.cuda.is_available):
        return None
    return _gpu_fixed(bool(torch.cuda.is_initialized()))


@functools.lru_cache(maxsize=None)
def _gpu_fixed(initialized: bool) -> Dict[str, Any]:
    """The GPUs, without creating a CUDA context a CPU stage does not need: names from the driver's /proc files
    until CUDA is up in this process."""
    import torch

    count = _safe(torch.cuda.device_count) or 0
    names: List[Optional[str]] = []
    if initialized:
        names = [_safe(lambda i=i: torch.cuda.get_device_name(i)) for i in range(count)]
    else:
        for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
            model = _read_field(info, "Model")
            if model:
                names.append(model)
    driver = None
    try:
        driver = Path("/proc/driver/nvidia/version").read_text().split("Kernel Module")[1].split()[0]
    except (OSError, IndexError):
        pass
    return {"name": names[0] if names else None, "names": names or None, "count": count, "driver": driver,
            "cuda": torch.version.cuda or getattr(torch.version, "hip", None),
            "cudnn": _safe(torch.backends.cudnn.version) if initialized else None}


def _read_field(path: Path, key: str) -> Optional[str]:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key:
                return v.strip()
    except OSError:
        pass
    return None


# ----------------------------------------------------------------------------------------------------
# compare: one table's runs from different machines.


def _short_cpu(model: Any) -> str:
    """'Intel(R) Xeon(R) Platinum 8480+ @ 2.0GHz' -> 'Intel Xeon Platinum 8480+'."""
    text = str(model).split(" @ ")[0]
    for mark in ("(R)", "(r)", "(TM)", "(tm)", " CPU", " 64-Core Processor", " 32-Core Processor", " Processor"):
        text = text.replace(mark, "")
    return " ".join(text.split()) or str(model)


def _threads(n: Any) -> str:
    return f"{n} thread{'' if n == 1 else 's'}"


def _gpu_name(gpu: Any) -> Any:
    return (gpu or {}).get("name") if isinstance(gpu, dict) else None


# Fields that can change a result, in the order a sentence names them: key, how to read it, how it reads, and what
# differing means.
_FIELDS: Tuple[Tuple[str, Callable[[Dict[str, Any]], Any], Callable[[Any], str], str], ...] = (
    ("host", lambda e: e.get("host"), str, "machines"),
    ("cpu", lambda e: (e.get("cpu") or {}).get("model"), _short_cpu, "CPUs"),
    ("isa", lambda e: (e.get("cpu") or {}).get("capability"), str, "instruction sets"),
    ("torch", lambda e: e.get("torch"), lambda v: f"torch {v}", "torch versions"),
    ("threads", lambda e: (e.get("threads") or {}).get("intra_op"), _threads, "thread counts"),
    ("gpu", lambda e: _gpu_name(e.get("gpu")), lambda v: v or "no GPU", "GPUs"),
    ("strict", lambda e: e.get("reproducible"), lambda v: "strict" if v == "strict" else "default",
     "strict and default runs"),
)
_MAX_GROUPS = 4


def machines_note(records: Sequence[Optional[Dict[str, Any]]]) -> Optional[str]:
    """One sentence when the runs behind a table come from machines (or thread counts, torch versions) that differ,
    naming only the fields that differ; None when they agree or too few records say where they ran.

    `records`: the runs' stage records (None or a record without `environment`, as an older ganaug wrote, is counted
    as unknown)."""
    envs = [r["environment"] for r in records if isinstance(r, dict) and isinstance(r.get("environment"), dict)]
    unknown = len(records) - len(envs)
    if len(envs) < 2:
        return None
    values = [tuple(_safe(lambda f=f, e=e: f[1](e)) for f in _FIELDS) for e in envs]
    differ = [i for i, f in enumerate(_FIELDS) if len({v[i] for v in values}) > 1]
    if not differ:
        return None
    groups = Counter(tuple(v[i] for i in differ) for v in values).most_common()
    by_host = _FIELDS[differ[0]][0] == "host"
    shown = []
    for n, (key, count) in enumerate(groups[:_MAX_GROUPS]):
        said = [_FIELDS[i][2](v) for i, v in zip(differ, key)]
        runs = f"{count} run{'s' if count != 1 else ''}" if n == 0 else str(count)
        if by_host:
            shown.append(f"{runs} on {said[0]}" + (f" ({', '.join(said[1:])})" if said[1:] else ""))
        else:
            shown.append(f"{runs} ({', '.join(said)})")
    if len(groups) > _MAX_GROUPS:
        shown.append(f"{sum(c for _, c in groups[_MAX_GROUPS:])} more on {len(groups) - _MAX_GROUPS} others")
    what = "machines" if by_host and len(groups) == len({v[0] for v in values}) else \
        "setups" if by_host else "setups on one machine"
    names = {_FIELDS[i][0] for i in differ}
    # strict differs through the instruction set it pins: naming both would say one thing twice
    causes = [_FIELDS[i][3] for i in differ if _FIELDS[i][0] != "host" and not (_FIELDS[i][0] == "strict" and "isa" in names)]
    if causes:
        why = "results can differ in the last digits between " + " and ".join(causes)
        if {"cpu", "isa"} & names:
            why += " (`reproducible: strict` pins x86 CPUs to AVX2)"
    else:
        why = "they agree on CPU, instruction set, torch, threads and GPU, so the numbers should not depend on which ran them"
    if unknown:
        one = unknown == 1
        why += f"; {unknown} more run{' does' if one else 's do'} not record where {'it' if one else 'they'} ran"
    return f"These runs come from {len(groups)} {what}: {', '.join(shown)}; {why}."


def cpu_features() -> frozenset:
    """This CPU's kernel-relevant flags (CPU_FEATURES it has; empty where they cannot be read)."""
    return frozenset(_cpu()["features"] or ())


# ----------------------------------------------------------------------------------------------------
# reproducible: strict.


def strict_requested(args: Sequence[str]) -> bool:
    """Whether a command's arguments ask for `reproducible: strict`: its --config file's key, or the last
    `--set reproducible=...`. Cheap and tolerant: a file that cannot be read is left to the loader's own error."""
    config: Optional[str] = None
    override: Optional[str] = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            break
        value: Optional[str] = None
        if a in ("-c", "--config", "--set") and i + 1 < len(args):
            value, i = args[i + 1], i + 1
        elif a.startswith(("--config=", "--set=")):
            a, _, value = a.partition("=")
        elif a.startswith("-c") and not a.startswith("--") and len(a) > 2:
            a, value = "-c", a[2:]
        if value is not None:
            if a == "--set":
                key, sep, raw = value.partition("=")
                if sep and key.strip() == "reproducible":
                    override = raw.strip().strip("'\"")
            else:
                config = value
        i += 1
    if override is not None:
        return override == "strict"
    if config is None:
        return False
    try:
        import yaml

        data = yaml.load(Path(config).read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except Exception:  # noqa: BLE001 - the loader says what is wrong with the file
        return False
    return isinstance(data, dict) and data.get("reproducible") == "strict"


def strict_pins() -> Dict[str, str]:
    """The variables strict sets on this machine: the AVX2 pins on an x86 CPU with AVX2 and FMA; cuBLAS's always."""
    cpu = _cpu()
    x86 = (cpu["arch"] or "").lower() in ("x86_64", "amd64", "x86")
    has_avx2 = cpu["features"] is None or {"avx2", "fma"} <= set(cpu["features"])  # unknown flags (not Linux): assume
    return (dict(STRICT_PINS) if x86 and has_avx2 else {}) | STRICT_CUDA


def start_strict(command: Optional[str]) -> None:
    """First thing in the CLI: when the command asks for `reproducible: strict`, set the pins before torch loads.

    If torch was loaded before this call, the command is re-executed with the pins set (os.execv, the same command
    line), since the libraries read them only when they load. `command`: the subcommand click is about to run; the
    pins are set only when it is this process's own command line (not a command run in-process by a test or notebook).
    """
    argv = sys.argv
    if not command or len(argv) < 2 or argv[1] != command or not strict_requested(argv[2:]):
        return
    pins = strict_pins()
    if "ATEN_CPU_CAPABILITY" not in pins:
        _warn(f"reproducible: strict pins x86 CPUs with AVX2 to AVX2, and this one ({platform.machine()}, "
              f"{_cpu()['model']}) is not such a CPU: its numbers may differ from other machines' in the last digits")
    for k, v in pins.items():
        if os.environ.get(k, v) != v:
            _warn(f"{k}={os.environ[k]} is set; reproducible: strict keeps it (strict would set {v})")
    missing = {k: v for k, v in pins.items() if k not in os.environ}
    first = os.environ.get(MARKER) != "strict"  # the re-executed command finds the marker: no second re-execution
    os.environ.update(missing)
    os.environ[MARKER] = "strict"
    if missing and first and "torch" in sys.modules:
        _reexec()
    _deterministic()


def _reexec() -> None:
    """Run this process's command line again (same interpreter, options and arguments), now with the pins set."""
    args = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, args)
    except OSError as e:
        _warn(f"reproducible: strict could not restart the command with its CPU pins ({e}); this run is not pinned")


def _deterministic() -> None:
    """On a machine with CUDA, deterministic algorithms (warning where an op has none) and no cuDNN autotuning. On the
    CPU torch's kernels are already deterministic for a given thread count, so the CPU math is left as it is."""
    import torch

    if torch.cuda.is_available():
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)
