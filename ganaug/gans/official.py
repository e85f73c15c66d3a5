"""NVlabs' stylegan2-ada-pytorch, run as it is: the dataset in its format, its train.py in a subprocess, its
snapshots loaded as a generator ganaug can sample from.

Nothing here copies the official code: a checkout of https://github.com/NVlabs/stylegan2-ada-pytorch is
named by `gan.repo`, its `train.py` runs in a subprocess (through `_official_launcher.py`, see there), and
its `legacy.load_network_pkl` reads the snapshots. Knows nothing of run folders or the CLI.

The official code trains only on CUDA GPUs. Its snapshots are pickles that hold code as well as weights
(the official `persistence` module): load only snapshots you made yourself.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..errors import CheckpointError, ConfigError, DataError, StageError
from ..progress import bar as progress_bar
from ..utils import atomic_open, atomic_write_json

PathLike = Union[str, Path]
OFFICIAL_URL = "https://github.com/NVlabs/stylegan2-ada-pytorch"
LAUNCHER = Path(__file__).with_name("_official_launcher.py")
RUNS_FILE = "ganaug-runs.json"  # in the official outdir: where each run of train.py started (kimg, p)
TRAINING_PACKAGES = ("click", "requests", "psutil", "scipy")  # what the official train.py imports beyond torch
POLL_SECONDS = 1.0  # how often stats.jsonl is read while train.py runs


# ----------------------------------------------------------------------------------------------------
# The checkout and the machine.


def check_repo(repo: Optional[PathLike], where: str = "config key 'gan.repo'") -> Path:
    """The checkout as an absolute path; a ConfigError when it is not a folder with train.py and legacy.py."""
    if not repo:
        raise ConfigError(f"{where} is not set; clone {OFFICIAL_URL} and name the folder there, "
                          "or use gan.name: stylegan2 (ganaug's native code)")
    p = Path(repo).expanduser()
    if not p.is_dir():
        raise ConfigError(f"{where} is '{repo}', which is not a folder; clone {OFFICIAL_URL} there, "
                          "or use gan.name: stylegan2 (ganaug's native code)")
    missing = [f for f in ("train.py", "legacy.py") if not (p / f).is_file()]
    if missing:
        raise ConfigError(f"{where} is '{repo}', which has no {' and no '.join(missing)}; name a checkout of "
                          f"{OFFICIAL_URL}, or use gan.name: stylegan2 (ganaug's native code)")
    return p.resolve()


def require_training_env(gpus: int = 1) -> None:
    """CUDA GPUs enough for `gpus`, and the Python packages the official train.py imports."""
    if not torch.cuda.is_available():
        raise ConfigError("config key 'gan.impl' is 'official', but no CUDA device is available: the official code "
                          "trains only on CUDA GPUs; use gan.name: stylegan2 (native, runs on CPU and GPU) here, "
                          "or train on a machine with an NVIDIA GPU")
    n = torch.cuda.device_count()
    if n < gpus:
        raise ConfigError(f"config key 'gan.gpus' is {gpus}, but {n} CUDA device{'s are' if n != 1 else ' is'} "
                          f"visible; set gan.gpus to {n} or fewer")
    missing = [m for m in TRAINING_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        raise StageError(f"the official train.py needs the Python package{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)}; pip install {' '.join(missing)} (and ninja for its CUDA kernels)")


# ----------------------------------------------------------------------------------------------------
# The dataset, as the official dataset_tool.py writes it.


def official_resolution(side: int) -> int:
    """The side the official code trains at: `side` rounded up to a power of two."""
    return 2 ** math.ceil(math.log2(max(int(side), 1)))


def write_dataset_zip(images: torch.Tensor, labels: torch.Tensor, path: PathLike) -> Path:
    """Write uint8 images (N, C, H, W) and int64 labels (N,) as the official dataset zip; return its path.

    The format is dataset_tool.py's: an uncompressed (ZIP_STORED) zip of PNGs (compress_level 0) named
    `{idx // 1000:05d}/img{idx:08d}.png`, grayscale as mode 'L' and RGB as 'RGB', and `dataset.json` holding
    `{"labels": [[name, label], ...]}` in image order. The official loader needs square images whose side is
    a power of two, so a side that is not one is resized up to the next (bilinear, antialiased), as the native
    stylegan2 does; `load_official_generator` scales samples back down. Entries carry a fixed timestamp, so the
    same images give the same bytes. Written atomically (a temporary file renamed into place).
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise DataError(f"the official dataset needs uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = (int(s) for s in images.shape)
    if h != w:
        raise DataError(f"the official dataset needs square images, got {h}x{w}; set data.resolution")
    if c not in (1, 3):
        raise DataError(f"the official dataset needs 1 or 3 channels, got {c}; set data.channels")
    if labels.shape != (n,):
        raise DataError(f"got {n} images but {tuple(labels.shape)} labels")
    side = official_resolution(h)
    mode = "L" if c == 1 else "RGB"
    entries: List[List[Any]] = []
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        for start in range(0, n, 1024):
            chunk = images[start:start + 1024]
            if side != h:
                chunk = F.interpolate(chunk.float(), size=(side, side), mode="bilinear", align_corners=False,
                                      antialias=True).round_().clamp_(0, 255).to(torch.uint8)
            arrays = chunk.permute(0, 2, 3, 1).contiguous().numpy()
            for j, arr in enumerate(arrays):
                idx = start + j
                name = f"{idx // 1000:05d}/img{idx:08d}.png"
                buf = io.BytesIO()
                Image.fromarray(arr[:, :, 0] if c == 1 else arr, mode).save(buf, format="png", compress_level=0,
                                                                           optimize=False)
                _write_entry(zf, name, buf.getvalue())
                entries.append([name, int(labels[idx])])
        _write_entry(zf, "dataset.json", json.dumps({"labels": entries}).encode())
    return Path(path)


def _write_entry(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16  # -rw-r--r-- when unzipped
    zf.writestr(info, data)


# ----------------------------------------------------------------------------------------------------
# train.py's options.


def train_args(gan_cfg: Any, *, data_zip: PathLike, outdir: PathLike, conditional: bool, seed: int,
               resume: Optional[PathLike] = None, kimg: Optional[int] = None) -> List[str]:
    """The official train.py options a resolved gan config maps to.

    Only keys train.py has options for are passed: kimg (`kimg` overrides gan.kimg, e.g. what is left after a
    resume), batch, gamma, aug/p/target/augpipe, mirror, gpus, snap, seed and the base config (`--cfg`, the
    preset: auto or cifar). Network sizes, learning rate, EMA and mapping depth come from that base config;
    the auto and cifar presets hold the same numbers, so the saved config still says what ran. Metrics are off
    (`--metrics=none`): ganaug scores the GAN by what its images do for a classifier.
    """
    total = kimg if kimg is not None else (math.ceil(gan_cfg.kimg) if gan_cfg.kimg is not None else None)
    aug = {None: "noaug", "none": "noaug", "ada": "ada", "fixed": "fixed"}.get(gan_cfg.augment)
    if aug is None:
        raise ConfigError(f"config key 'gan.augment' is '{gan_cfg.augment}', which the official code does not have; "
                          "use ada, fixed or none")
    args = [f"--outdir={Path(outdir).resolve()}", f"--data={Path(data_zip).resolve()}",
            f"--cond={int(bool(conditional))}", f"--mirror={int(bool(gan_cfg.mirror))}",
            f"--cfg={gan_cfg.preset or 'auto'}"]
    if total is not None:
        args.append(f"--kimg={max(1, int(total))}")
    if gan_cfg.gpus is not None:
        args.append(f"--gpus={gan_cfg.gpus}")
    args.append(f"--aug={aug}")
    if aug == "fixed":
        args.append(f"--p={float(gan_cfg.augment_p)!r}")
    if aug == "ada" and gan_cfg.ada_target is not None:
        args.append(f"--target={float(gan_cfg.ada_target)!r}")
    if aug != "noaug" and gan_cfg.augpipe is not None:
        args.append(f"--augpipe={gan_cfg.augpipe}")
    if gan_cfg.snap is not None:
        args.append(f"--snap={gan_cfg.snap}")
    if gan_cfg.batch_size is not None:
        args.append(f"--batch={gan_cfg.batch_size}")
    if gan_cfg.r1_gamma is not None:
        args.append(f"--gamma={float(gan_cfg.r1_gamma)!r}")
    args += [f"--seed={seed}", "--metrics=none"]
    if resume is not None:
        args.append(f"--resume={Path(resume).resolve()}")
    return args


# ----------------------------------------------------------------------------------------------------
# Following stats.jsonl.

_SCALARS = {  # ganaug metrics key <- official training_stats name (its per-tick mean)
    "loss/G": "Loss/G/loss",
    "loss/D": "Loss/D/loss",
    "loss/G_pl": "Loss/G/reg",
    "loss/D_r1": "Loss/D/reg",
    "r_t": "Loss/signs/real",
    "augment/p": "Progress/augment",
    "seconds": "Timing/total_sec",
    "sec_per_kimg": "Timing/sec_per_kimg",
}


def _mean(stats: Dict[str, Any], name: str) -> Optional[float]:
    v = stats.get(name)
    if isinstance(v, dict):
        if not v.get("num"):
            return None
        v = v.get("mean")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def metrics_row(stats: Dict[str, Any], kimg_offset: float = 0.0) -> Optional[Dict[str, Any]]:
    """One official stats.jsonl line -> a ganaug metrics row (None for a line without Progress/kimg).

    kimg counts from the start of training (the official count restarts on --resume; `kimg_offset` adds what
    came before). D(x) and D(G(z)) are the sigmoid of the tick's mean logit, not the mean of the sigmoids,
    which the official stats do not keep.
    """
    kimg = _mean(stats, "Progress/kimg")
    if kimg is None:
        return None
    row: Dict[str, Any] = {"tick": int(_mean(stats, "Progress/tick") or 0), "kimg": round(kimg_offset + kimg, 3)}
    for key, name in _SCALARS.items():
        v = _mean(stats, name)
        if v is not None:
            row[key] = v
    for key, name in (("D(x)", "Loss/scores/real"), ("D(G(z))", "Loss/scores/fake")):
        v = _mean(stats, name)
        if v is not None:
            row[key] = 1.0 / (1.0 + math.exp(-max(min(v, 50.0), -50.0)))
    return row


class StatsFollower:
    """Reads an official run's stats.jsonl as it grows and appends ganaug rows to `metrics_path`, and the same rows
    to TensorBoard event files beside it, on the images shown so far (kimg x 1000) as the step.

    Only complete lines are read; a partial last line waits for its newline. `bar`, a tqdm in kimg, follows.
    `keep_kimg`: the kimg up to which an earlier run's rows were kept (a resume); its later points are dropped
    (None: all of them). `close()` closes the event file.
    """

    def __init__(self, metrics_path: PathLike, *, kimg_offset: float = 0.0, bar: Optional[tqdm] = None,
                 keep_kimg: Optional[float] = None):
        from ..tracking import Board

        self.metrics_path = Path(metrics_path)
        self.kimg_offset = kimg_offset
        self.bar = bar
        self.stats_path: Optional[Path] = None
        self.rows: List[Dict[str, Any]] = []
        self._pos = 0
        self._rest = b""
        self.board = Board(self.metrics_path.parent)
        self.board.drop_after(None if keep_kimg is None else int(round(keep_kimg * 1000)))

    def close(self) -> None:
        self.board.close()

    def follow(self, stats_path: PathLike) -> None:
        self.stats_path = Path(stats_path)
        self._pos, self._rest = 0, b""

    def poll(self) -> List[Dict[str, Any]]:
        """The rows of the lines completed since the last call (also appended to metrics_path)."""
        if self.stats_path is None or not self.stats_path.is_file():
            return []
        with open(self.stats_path, "rb") as f:
            f.seek(self._pos)
            data = f.read()
        self._pos += len(data)
        *lines, self._rest = (self._rest + data).split(b"\n")
        new = []
        for line in lines:
            try:
                stats = json.loads(line)
            except ValueError:
                continue  # a blank or foreign line
            row = metrics_row(stats, self.kimg_offset) if isinstance(stats, dict) else None
            if row is not None:
                new.append(row)
        if new:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.metrics_path, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in new))
            self.rows += new
            for r in new:
                self.board.scalars(r, int(round(r["kimg"] * 1000)))
            if self.bar is not None:
                kimg = new[-1]["kimg"]
                if self.bar.total is not None:
                    kimg = min(kimg, self.bar.total)
                self.bar.update(kimg - self.bar.n)
                self.bar.set_postfix_str(_postfix(new[-1]), refresh=False)
        return new


def _postfix(row: Dict[str, Any]) -> str:
    parts = [f"{k} {row[k]:.3f}" for k in ("loss/G", "loss/D", "augment/p") if k in row]
    return ", ".join(parts)


def _stats_rows(path: Path) -> List[Dict[str, Any]]:
    """The complete lines of a stats.jsonl, parsed."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_bytes().split(b"\n")[:-1]:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


# ----------------------------------------------------------------------------------------------------
# Runs, snapshots and resuming.

_RUN_DIR = re.compile(r"^(\d+)")
_SNAPSHOT = re.compile(r"^network-snapshot-(\d+)\.pkl$")


@dataclass
class ResumePoint:
    """A complete snapshot to go on from."""

    pkl: Path
    run_id: int
    kimg: int  # whole thousands of images before this snapshot, over every earlier run (the snapshot's name)
    kimg_exact: float  # the same from its stats line
    augment_p: Optional[float]  # the augmentation probability at the snapshot


def _run_dirs(outdir: Path) -> Dict[int, Path]:
    out = {}
    if outdir.is_dir():
        for d in outdir.iterdir():
            m = _RUN_DIR.match(d.name)
            if m and d.is_dir():
                out[int(m.group(1))] = d
    return out


def _read_runs(outdir: Path) -> Dict[int, Dict[str, Any]]:
    try:
        data = json.loads((outdir / RUNS_FILE).read_text())
        return {int(k): v for k, v in data.get("runs", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def find_resume(outdir: PathLike) -> Optional[ResumePoint]:
    """The newest complete snapshot of the runs ganaug started in `outdir` (None if there is none).

    A snapshot counts as complete when its run's stats.jsonl has the line of the same tick: the official loop
    writes that line after the pickle, so a snapshot cut off mid-write is never picked. That line also gives
    the augmentation probability to carry over. Runs of train.py that ganaug did not start (no entry in
    ganaug-runs.json, so no known kimg offset) are ignored.
    """
    outdir = Path(outdir)
    runs = _read_runs(outdir)
    best: Optional[ResumePoint] = None
    for run_id, run_dir in sorted(_run_dirs(outdir).items()):
        info = runs.get(run_id)
        if info is None:
            continue
        offset = int(info.get("kimg_offset", 0))
        rows = _stats_rows(run_dir / "stats.jsonl")
        for pkl in run_dir.iterdir():
            m = _SNAPSHOT.match(pkl.name)
            if not m:
                continue
            k = int(m.group(1))
            same_tick = [r for r in rows if (kimg := _mean(r, "Progress/kimg")) is not None
                         and math.floor(kimg + 1e-9) == k]
            if not same_tick:
                continue
            row = same_tick[-1]
            point = ResumePoint(pkl=pkl, run_id=run_id, kimg=offset + k,
                                kimg_exact=offset + float(_mean(row, "Progress/kimg") or k),
                                augment_p=_mean(row, "Progress/augment"))
            if best is None or (point.kimg, point.run_id) >= (best.kimg, best.run_id):
                best = point
    return best


@dataclass
class OfficialResult:
    pkl: Path  # the last snapshot: the trained networks
    kimg: float  # thousands of real images shown to D, over every resume
    augment_p: Optional[float]  # the augmentation probability at the end
    run_dir: Path  # the official run folder the snapshot is in
    resumed_from: Optional[Path]  # the snapshot this call went on from
    ran: bool  # False when an earlier call had already finished the training


def run_official_training(gan_cfg: Any, *, repo: PathLike, data_zip: PathLike, outdir: PathLike, seed: int,
                          kimg: int, metrics_path: PathLike, log_path: PathLike, conditional: bool = True,
                          progress: bool = True) -> OfficialResult:
    """Run the official train.py until `kimg` thousand images, going on from the newest snapshot in `outdir`.

    train.py runs in a subprocess (cwd: the checkout) with its output appended to `log_path`; its stats.jsonl is
    followed into `metrics_path` (ganaug rows, kimg counted over every resume). A non-zero exit is a StageError
    naming the log; the snapshots stay in `outdir`, so calling again goes on from the newest complete one.

    Resuming: the official --resume loads the networks but starts the image count and the augmentation
    probability from zero. ganaug passes `--kimg` = what is left (in whole kimg: up to 999 images of a
    snapshot's count are not carried), adds the kimg done to every row, and starts p where the snapshot left it
    through `_official_launcher.py`. The official --resume also makes ADA adjust 5x faster (ada_kimg 100) and
    turns the EMA ramp-up off; the launcher puts gan.ada_kimg back, the ramp-up stays off (there is nothing to
    ramp up after the first run). Optimizer states are not in the snapshots, so Adam starts afresh on resume,
    as with the official code.
    """
    repo, outdir = check_repo(repo), Path(outdir).resolve()
    metrics_path, log_path = Path(metrics_path), Path(log_path)
    outdir.mkdir(parents=True, exist_ok=True)
    total = max(1, int(math.ceil(kimg)))

    # Where to start: the newest complete snapshot, or nothing.
    resume = find_resume(outdir)
    if resume is None:
        metrics_path.unlink(missing_ok=True)
        offset, p_start = 0, None
    else:
        _trim_rows(metrics_path, resume.kimg_exact)
        offset, p_start = resume.kimg, resume.augment_p
        if resume.kimg >= total:
            return OfficialResult(pkl=resume.pkl, kimg=resume.kimg_exact, augment_p=resume.augment_p,
                                  run_dir=resume.pkl.parent, resumed_from=None, ran=False)
    ada = gan_cfg.augment == "ada"
    if resume is None and ada and gan_cfg.augment_p:
        p_start = float(gan_cfg.augment_p)  # ada: where p starts; the official train.py has no option for it
    args = train_args(gan_cfg, data_zip=data_zip, outdir=outdir, conditional=conditional, seed=seed,
                      resume=resume.pkl if resume else None, kimg=total - offset)
    launcher = [sys.executable, str(LAUNCHER), "--repo", str(repo)]
    if ada and p_start is not None:
        launcher += ["--augment-p", repr(float(p_start))]
    if ada and gan_cfg.ada_kimg is not None:
        launcher += ["--ada-kimg", repr(float(gan_cfg.ada_kimg))]
    if ada and gan_cfg.ada_interval is not None:
        launcher += ["--ada-interval", str(int(gan_cfg.ada_interval))]
    cmd = launcher + ["--"] + args

    # The official main() names its run folder max(earlier ids) + 1; record where this one starts first.
    run_id = max(_run_dirs(outdir), default=-1) + 1
    runs = _read_runs(outdir)
    runs[run_id] = {"kimg_offset": offset, "augment_p": p_start, "resume": str(resume.pkl) if resume else None,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(outdir / RUNS_FILE, {"runs": {str(k): v for k, v in sorted(runs.items())}})

    # Train, following stats.jsonl.
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"# ganaug {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(cmd)}\n")
        log.flush()
        bar = progress_bar(total=total, initial=offset, unit="kimg", desc="train-gan official", disable=not progress,
                           leave=False, bar_format="{l_bar}{bar}| {n:.1f}/{total} kimg [{elapsed}<{remaining}{postfix}]")
        follower = StatsFollower(metrics_path, kimg_offset=offset, bar=bar,
                                 keep_kimg=resume.kimg_exact if resume is not None else None)
        proc = subprocess.Popen(cmd, cwd=repo, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                rc = proc.poll()
                if follower.stats_path is None and run_id in _run_dirs(outdir):
                    follower.follow(_run_dirs(outdir)[run_id] / "stats.jsonl")
                follower.poll()
                if rc is not None:
                    break
                time.sleep(POLL_SECONDS)
        except BaseException:  # Ctrl-C or an error here: stop train.py too; its snapshots stay for a resume
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            bar.close()
            follower.close()
    if rc != 0:
        raise StageError(f"the official train.py exited with status {rc} ({_last_line(log_path)}); its output is in "
                         f"'{log_path}'; fix the cause and run again to go on from the newest snapshot")
    end = find_resume(outdir)
    if end is None or end.run_id != run_id:
        raise StageError(f"the official train.py finished without writing a network snapshot; see '{log_path}'")
    kimg_end = follower.rows[-1]["kimg"] if follower.rows else end.kimg_exact
    return OfficialResult(pkl=end.pkl, kimg=kimg_end, augment_p=end.augment_p, run_dir=end.pkl.parent,
                          resumed_from=resume.pkl if resume else None, ran=True)


def _trim_rows(metrics_path: Path, kimg: float) -> None:
    """Drop the metrics rows past `kimg`: training after the last complete snapshot is done again."""
    if not metrics_path.is_file():
        return
    keep = []
    for line in metrics_path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("kimg", 0) <= kimg + 1e-6:
            keep.append(line + "\n")
    with atomic_open(metrics_path, "w") as f:
        f.write("".join(keep))


def _last_line(path: Path, limit: int = 160) -> str:
    """The last non-empty line of a log that is not a ganaug header, shortened."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 8192))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return "no output"
    for line in reversed(lines):
        line = line.strip()
        if line and not line.startswith("# ganaug"):
            return line if len(line) <= limit else line[:limit - 3] + "..."
    return "no output"


# ----------------------------------------------------------------------------------------------------
# Sampling from a snapshot.


def _import_legacy(repo: Path) -> Any:
    """The official legacy module, importing the checkout (put first on sys.path) once per process."""
    loaded = sys.modules.get("legacy")
    if loaded is not None and not _same_file(getattr(loaded, "__file__", None), repo / "legacy.py"):
        raise CheckpointError(f"another copy of the official code ('{Path(loaded.__file__).parent}') is already "
                              f"imported in this process, not '{repo}'; run ganaug again in a new process")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    try:
        import legacy  # type: ignore[import-not-found]
    except Exception as e:
        raise CheckpointError(f"the official code in '{repo}' cannot be imported ({type(e).__name__}: "
                              f"{str(e)[:120]}); check the checkout and its requirements ({OFFICIAL_URL})") from None
    return legacy


def _same_file(a: Optional[str], b: Path) -> bool:
    try:
        return a is not None and os.path.samefile(a, b)
    except OSError:
        return False


class OfficialGenerator(nn.Module):
    """An official G_ema behind ganaug's generator interface: G(z, y, truncation_psi) -> [-1, 1] images.

    Images come at the data's side and channels (scaled down, antialiased, from the power of two the official
    network runs at). Truncation pulls w toward the mean w of the sample's class (from `w_avg_samples` latents
    per class, computed once), not the official tracked mean of all classes. Noise is constant
    (noise_mode='const'); the official fp16 layers run in fp32 off CUDA.
    """

    def __init__(self, G: nn.Module, *, resolution: int, channels: int, num_classes: int, w_avg_samples: int = 2000):
        super().__init__()
        self.G = G.eval().requires_grad_(False)
        self.z_dim = int(G.z_dim)
        self.c_dim = int(G.c_dim)
        self.conditional = self.c_dim > 0
        self.resolution, self.channels, self.num_classes = int(resolution), int(channels), int(num_classes)
        self.w_avg_samples = int(w_avg_samples)
        self._w_avg: Optional[torch.Tensor] = None  # (classes, w_dim)

    def train(self, mode: bool = True) -> "OfficialGenerator":
        super().train(mode)
        self.G.eval()  # in training mode the official mapping network would move its tracked w_avg
        return self

    def _c(self, y: Optional[torch.Tensor], n: int, device: torch.device) -> torch.Tensor:
        if not self.conditional:
            return torch.zeros(n, 0, device=device)
        if y is None:
            raise ValueError("this generator is conditional: pass class labels y")
        return F.one_hot(y.to(device).long(), self.c_dim).float()

    @torch.no_grad()
    def class_w_avg(self, device: torch.device) -> torch.Tensor:
        """The mean w per class (one row when unconditional), from a fixed set of latents."""
        if self._w_avg is None:
            gen = torch.Generator().manual_seed(0)
            means = []
            for cls in range(self.c_dim if self.conditional else 1):
                z = torch.randn(self.w_avg_samples, self.z_dim, generator=gen)
                ws = []
                for zb in z.split(500):
                    y = torch.full((len(zb),), cls, dtype=torch.int64)
                    ws.append(self.G.mapping(zb.to(device), self._c(y, len(zb), device), truncation_psi=1)[:, 0])
                means.append(torch.cat(ws).float().mean(0))
            self._w_avg = torch.stack(means)
        return self._w_avg.to(device)

    @torch.no_grad()
    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None, truncation_psi: float = 1.0) -> torch.Tensor:
        device = z.device
        ws = self.G.mapping(z, self._c(y, len(z), device), truncation_psi=1)  # (N, num_ws, w_dim)
        if truncation_psi != 1:
            idx = y.to(device).long() if self.conditional and y is not None else torch.zeros(len(z), dtype=torch.long,
                                                                                                device=device)
            w_avg = self.class_w_avg(device)[idx].unsqueeze(1)  # (N, 1, w_dim)
            ws = w_avg + truncation_psi * (ws - w_avg)
        img = self.G.synthesis(ws, noise_mode="const", force_fp32=device.type != "cuda").float()
        if img.shape[-1] != self.resolution:
            img = F.interpolate(img, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False,
                                antialias=True)
        return img.clamp(-1, 1)


def load_official_generator(pkl_path: PathLike, repo: PathLike, *, resolution: int, channels: int,
                            num_classes: int) -> OfficialGenerator:
    """G_ema of an official snapshot, on the CPU, read with the checkout's legacy.load_network_pkl.

    The pickle runs code from the checkout (and holds some of its own): load only snapshots you made.
    """
    pkl = Path(pkl_path)
    if not pkl.is_file():
        raise CheckpointError(f"no official network snapshot at '{pkl}'; train one with `ganaug train-gan -c CONFIG`")
    root = check_repo(repo, where=f"the official code for '{pkl}' ('repo' in its checkpoint)")
    legacy = _import_legacy(root)
    try:
        with open(pkl, "rb") as f:
            data = legacy.load_network_pkl(f)
        G = data["G_ema"]
    except Exception as e:
        raise CheckpointError(f"'{pkl}' cannot be read with the official code in '{root}' ({type(e).__name__}: "
                              f"{str(e)[:120]}); it may be truncated, or not a stylegan2-ada-pytorch snapshot") from None
    G = G.cpu().float()
    if int(G.img_channels) != channels:
        raise CheckpointError(f"'{pkl}' makes {G.img_channels}-channel images but the data has {channels}; "
                              "train the GAN again on this data")
    if int(G.img_resolution) != official_resolution(resolution):
        raise CheckpointError(f"'{pkl}' makes {G.img_resolution}px images, not the {official_resolution(resolution)}px "
                              f"that {resolution}px data trains at; train the GAN again on this data")
    if 0 < int(G.c_dim) < num_classes:
        raise CheckpointError(f"'{pkl}' knows {G.c_dim} classes but the data has {num_classes}; "
                              "train the GAN again on this split")
    return OfficialGenerator(G, resolution=resolution, channels=channels, num_classes=num_classes)
