"""Training with the official train.py: its options, the subprocess and its launcher, following it, resuming."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from ...errors import ConfigError, StageError
from ...progress import bar as progress_bar
from ...utils import atomic_open, atomic_write_json
from .env import PathLike, check_repo
from .runs import RUNS_FILE, _read_runs, _run_dirs, find_resume
from .stats import StatsFollower

LAUNCHER = Path(__file__).with_name("_launcher.py")
POLL_SECONDS = 1.0  # how often stats.jsonl is read while train.py runs


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
    through `_launcher.py`. The official --resume also makes ADA adjust 5x faster (ada_kimg 100) and
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
