"""Small shared pieces: atomic files, devices, seeding, precision, the metrics stream."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, TypeVar, Union

import numpy as np
import torch

from .errors import ConfigError, GanaugError

PathLike = Union[str, Path]
F = TypeVar("F", bound=Callable[..., Any])


# ----------------------------------------------------------------------------------------------------
# Files that are either whole or absent.


@contextlib.contextmanager
def torch_threads(n: Optional[int]) -> Iterator[int]:
    """Run the block with `n` torch threads (None: as they are), then restore them; yields the count in use."""
    old = torch.get_num_threads()
    if n and n != old:
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        if n and n != old:
            torch.set_num_threads(old)


def in_config_threads(stage: F) -> F:
    """Run a stage (split, train-gan, sample, evaluate) on the config's executor.threads torch threads (None: as
    they are): the threads its cell gets under `run`, so the same command by hand makes the same numbers."""

    @functools.wraps(stage)
    def run(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        with torch_threads(cfg.executor.threads):
            return stage(cfg, *args, **kwargs)

    return run  # type: ignore[return-value]


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w") -> Iterator[Any]:
    """Write to a temporary file beside `path`, fsync, rename over it, fsync the folder; a failure leaves `path` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):  # a full disk, no permission ...: named with the file meant, not the temporary one
            raise io_error(e, path) from None
        raise


def io_error(e: OSError, path: Optional[PathLike] = None) -> GanaugError:
    """A file that could not be written or read, as the one-line error the CLI prints."""
    where = f"'{path or e.filename}'" if (path or e.filename) else "a file"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return GanaugError(f"could not write {where}: {e.strerror or e}; free some disk space and run again "
                           "(interrupted training continues from its last checkpoint with --resume, and in `ganaug run`)")
    return GanaugError(f"could not write or read {where}: {e.strerror or e}; check the path and its permissions")


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: fsync the folder's entry list too (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def file_sha256(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------
# Stopping cleanly: Ctrl-C (SIGINT), SIGTERM or SIGUSR2 (the notice Slurm sends before preempting a job or at its
# time limit, `sbatch --signal`) asks the training loop to finish its step and save.

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR2") if hasattr(signal, name))


class StopRequest:
    """Set by the first stop signal while `catch_stop()` is active; a second SIGINT aborts at once."""

    def __init__(self) -> None:
        self.signal: Optional[str] = None

    @property
    def requested(self) -> bool:
        return self.signal is not None


@contextlib.contextmanager
def catch_stop() -> Iterator[StopRequest]:
    """While active, SIGINT/SIGTERM/SIGUSR2 set the returned StopRequest instead of raising (main thread only)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without saving
        stop.signal = signal.Signals(signum).name
        print(f"\n{stop.signal}: finishing this step and saving a checkpoint (Ctrl-C again to abort without saving)",
              file=sys.stderr, flush=True)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ----------------------------------------------------------------------------------------------------
# Devices, seeds and precision.


def resolve_device(name: str) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit device that is not there is a ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config key 'device' is '{name}' but no CUDA device is available; use auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("config key 'device' is 'mps' but Apple's MPS is not available; use auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator for explicit draws."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rng_state() -> Dict[str, Any]:
    """Every RNG state as plain data and tensors, so checkpoints load with `weights_only=True`."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what `rng_state` captured (CUDA only when this machine has as many devices)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def environ_restored(*names: str) -> Iterator[None]:
    """The environment variables `names` as they were on entry, again on exit (what the block set or removed is
    undone: a command or cell run in-process leaves the environment as it found it)."""
    before = {k: os.environ.get(k) for k in names}
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def preserve_rng() -> Iterator[None]:
    """Leave every random stream (Python, NumPy, torch, CUDA) as it was: for work beside a training run that
    must not change what the run draws (building an evaluator, training a feature extractor)."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX-BF16: Zen 4 and later, Cooper Lake,
    Sapphire Rapids and later) and the math libraries may use it; AVX2-only and older AVX-512 CPUs emulate it, more
    slowly than float32.

    GANAUG_CPU_BF16=0 answers no (float32 for `amp: auto`, as on a CPU without it: the numbers such a CPU gives,
    and what the test suite runs with); =1 answers yes (bf16 emulated where the hardware lacks it)."""
    forced = os.environ.get("GANAUG_CPU_BF16")
    if forced:  # set and not empty
        if forced not in ("0", "1"):
            raise ConfigError(f"environment variable GANAUG_CPU_BF16 is '{forced}'; set it to 0 (float32) or 1 "
                              "(bfloat16) for amp: auto on CPUs, or unset it to go by the CPU")
        return forced == "1"
    from .provenance import cpu_features

    return bool({"avx512_bf16", "amx_bf16"} & cpu_features()) and not _held_below_bf16()


# oneDNN's instruction-set ceilings (ONEDNN_MAX_CPU_ISA) at which it still multiplies bfloat16 in hardware.
BF16_ISAS = frozenset({"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                       "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2",
                       "ALL"})


def _held_below_bf16() -> bool:
    """Whether the math libraries are held below the CPU's bfloat16 instructions (`reproducible: strict` holds them
    to AVX2; a user may set such a ceiling too): ATen's kernels at `default` or `avx2`, or a oneDNN ceiling without
    bf16. There bf16 is emulated, slowly, and the numbers are not those of the CPU the ceiling stands for."""
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("default", "avx2"):
        return True
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return bool(isa) and isa.upper() not in BF16_ISAS


def autocast_dtype(setting: str, device: torch.device, cpu_bf16: bool = True) -> Optional[torch.dtype]:
    """The autocast dtype for `amp: auto|bf16|off` on this device, or None for full precision.

    auto: bfloat16 on CUDA cards that support it and, for networks measured to gain from it (`cpu_bf16`: the
    classifiers, the DCGAN families), on CPUs with native bfloat16 (`native_bf16`); float32 elsewhere. On a Zen 4
    CPU (AVX512-BF16) bf16 autocast made the small CNN's step 1.4x and the cGAN's 1.3x faster than float32 (`make
    bench` prints the comparison for the machine at hand); without native support it is slower, so it is opt-in
    there.
    """
    if setting == "off":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if resolved_amp(setting, device.type, cpu_bf16) == "bf16" else None


def resolved_amp(setting: str, device_name: str, cpu_bf16: bool = True) -> str:
    """What a fingerprint records for `amp`: `auto` that means bfloat16 on this CPU is `bf16` (the same numbers as
    writing bf16), so runs made in float32 before, or on another CPU, are not taken for it; otherwise the setting.
    (`autocast_dtype` asks it too, so what trains and what the fingerprint says are one rule.)"""
    on_cpu = device_name == "cpu" or (device_name == "auto" and resolve_device("auto").type == "cpu")
    return "bf16" if setting == "auto" and cpu_bf16 and on_cpu and native_bf16() else setting


def use_channels_last(setting: str, device: torch.device) -> bool:
    if setting == "auto":
        return device.type in ("cpu", "cuda")
    return setting == "on"


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ----------------------------------------------------------------------------------------------------
# One stats stream: report(name, value) anywhere; tick() writes the means to metrics.jsonl and TensorBoard.


class Stats:
    """Collects scalar reports and appends one JSON line of their means per tick; the same rows (and the loops'
    sample grids, `image`) go to TensorBoard event files beside that file (`tracking.Board`).

    TensorBoard's x axis is the tick's `step` (the loops' optimizer step), or `global_step` where a loop's step
    count restarts (a per-class GAN's pairs). Close the stream (or use it as a context manager) before its folder
    is renamed. `Stats(None)` writes nothing (the other ranks under torchrun).
    """

    def __init__(self, path: Optional[PathLike]):
        from .tracking import Board

        self.path = Path(path) if path is not None else None
        self._sums: Dict[str, float] = {}
        self._counts: Dict[str, int] = {}
        self._t0 = time.time()
        self.last: Dict[str, Any] = {}
        self.rows = 0  # lines written to `path` by this stream
        self.board = Board(self.path.parent) if self.path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> "Stats":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the event file (metrics.jsonl is closed after every line)."""
        if self.board is not None:
            self.board.close()

    def report(self, name: str, value: Union[float, torch.Tensor]) -> None:
        if isinstance(value, torch.Tensor):
            value = float(value.detach().float().mean())
        self._sums[name] = self._sums.get(name, 0.0) + float(value)
        self._counts[name] = self._counts.get(name, 0) + 1

    def state_dict(self) -> Dict[str, Any]:
        """What a resumed run needs to continue the stream: partial sums, elapsed time, rows written."""
        return {"sums": dict(self._sums), "counts": dict(self._counts), "seconds": time.time() - self._t0,
                "rows": self.rows, "board_step": self.board.step if self.board is not None else None}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from `state`: rows written after it (by a run that was killed later) are dropped, and so are
        their TensorBoard points (a state saved before event files existed drops none)."""
        self._sums, self._counts = dict(state["sums"]), dict(state["counts"])
        self._t0 = time.time() - float(state["seconds"])
        if self.path is not None:
            lines = self.path.read_text().splitlines(keepends=True) if self.path.is_file() else []
            atomic_write_text(self.path, "".join(lines[:int(state["rows"])]))
        self.rows = int(state["rows"])
        if self.board is not None and "board_step" in state:
            self.board.drop_after(state["board_step"])

    def tick(self, *, global_step: Optional[int] = None, **fields: Any) -> Dict[str, Any]:
        """One row: `fields` (step, epoch, kimg...), the time, the means of the reports since the last tick.

        `global_step`: TensorBoard's x position when it is not `fields["step"]` (it is not in the row)."""
        row: Dict[str, Any] = dict(fields)
        row["seconds"] = round(time.time() - self._t0, 3)
        for k in self._sums:
            row[k] = self._sums[k] / self._counts[k]
        self._sums.clear()
        self._counts.clear()
        self.last = row
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
            self.rows += 1
        if self.board is not None:
            step = global_step if global_step is not None else row.get("step", self.rows)
            self.board.scalars(row, step)
        return row

    def image(self, tag: str, images: torch.Tensor, step: int, nrow: int = 8) -> None:
        """Float [-1, 1] images (N, C, H, W) as one grid image (laid out as `save_grid`'s PNG) at `step`."""
        if self.board is not None:
            from .tracking import grid_image

            self.board.image(tag, grid_image(images, nrow), step)


def read_jsonl(path: PathLike) -> list[Dict[str, Any]]:
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows
