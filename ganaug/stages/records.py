"""Stages and their records: what each stage's output depends on (its fingerprint), the `stage.json` it leaves, and the
atomic stage folders that make its output whole or absent.

Each stage writes into `<stage>.partial/` and renames it into place when it finishes, so a stage's
folder is either whole or absent. Beside its outputs a stage leaves `stage.json`: its fingerprint
(the config that matters to it plus its inputs' fingerprints), that config, the content hash of each
output a later stage reads, and timings. A stage whose fingerprint matches is skipped; one made by
another config is an error unless `--force`. Training stages keep resumable checkpoints in
`<stage>.partial/resume/` while they run; an interrupted one is continued with `--resume` (and by `run`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from ..checkpoint import Checkpointer, latest_resume, resume_files
from ..classifiers import weights_identity
from ..config import ArmConfig, Config, fingerprint, result_config, save_config, to_dict
from ..data.sources import source_hflip
from ..errors import CheckpointError, StageError
from ..gans import GANS, cpu_bf16
from ..progress import echo
from ..utils import StopRequest, atomic_write_json, file_sha256, resolved_amp
from .layout import RESUME_DIR, STAGE_FILE, RepLike, RunPaths, as_rep, paths

# ----------------------------------------------------------------------------------------------------
# Stages and their fingerprints: what each one's output depends on.


@dataclass(frozen=True)
class Stage:
    name: str  # also its folder under out_dir
    what: str  # for messages
    command: str


SPLIT = Stage("split", "split", "ganaug split")
GAN = Stage("gan", "trained GAN", "ganaug train-gan")
SAMPLES = Stage("samples", "synthetic set", "ganaug sample")
FEATURES = Stage("features", "domain feature extractor", "ganaug evaluate")
EVALUATE = Stage("evaluate", "evaluation of the synthetic set", "ganaug evaluate")
# The evaluation's method, raised when the same config scores differently: 2 aligns copies over every training image
# with three tested criteria, and scores the floor, the fakes and the training images at one size. An evaluation
# made by an older method is redone without --force (`superseded`).
EVALUATE_METHOD = 2


def stage_folder(p: RunPaths, stage: Stage, rep: RepLike = None) -> Path:
    """Where `stage`'s output lives in the run folder `p`."""
    if stage == GAN:
        return p.gan(rep)
    if stage == SAMPLES:
        return p.samples(rep)
    if stage == FEATURES:
        return p.features
    if stage == EVALUATE:
        return p.evaluate(rep)
    return p.up / stage.name


def stage_config(cfg: Config, stage: Stage, rep: RepLike = None) -> Dict[str, Any]:
    """The config sections a stage's output depends on, its inputs' included, as plain data."""
    rep = as_rep(rep)
    out = {"data": result_config("data", cfg.data), "split": to_dict(cfg.split)}
    if stage == FEATURES:
        return out | {"domain": to_dict(cfg.evaluate.domain)}
    if stage in (GAN, SAMPLES, EVALUATE):
        out["gan"] = result_config("gan", cfg.gen(rep.generator)) | ({"seed": rep.seed} if rep.seed is not None else {})
        if "amp" in out["gan"]:  # auto as this machine resolves it (bf16 on CPUs with native bfloat16)
            out["gan"]["amp"] = resolved_amp(out["gan"]["amp"], cfg.device, cpu_bf16(cfg.gen(rep.generator)))
    if stage in (SAMPLES, EVALUATE):
        sample = cfg.sample_of(rep.generator)
        out["sample"] = result_config("sample", sample)
        meta = GANS.meta(cfg.gen(rep.generator).name)
        for key, reader in (("truncation", "truncation"), ("guidance", "guidance"), ("steps", "guidance")):
            if not meta.get(reader):  # a sampling key another family reads changes nothing here
                out["sample"].pop(key, None)
            elif out["sample"].get(key) is None and key in meta.get("sample_defaults", {}):
                out["sample"][key] = meta["sample_defaults"][key]  # the value sampled with, default or not
        if sample.filter is not None:  # the filter's classifier is the domain extractor
            out["domain"] = to_dict(cfg.evaluate.domain)
    if stage == EVALUATE:
        out["evaluate"] = result_config("evaluate", cfg.evaluate)
        out["method"] = EVALUATE_METHOD
    return out


def stage_fingerprint(cfg: Config, stage: Stage, rep: RepLike = None) -> str:
    return fingerprint(stage_config(cfg, stage, rep))


def clf_config(cfg: Config, arm: ArmConfig, seed: int) -> Dict[str, Any]:
    """Everything a classifier run depends on, as plain data."""
    return {
        "split": stage_fingerprint(cfg, SPLIT),
        "classifier": result_config("classifier", cfg.classifier) | weights_identity(cfg.classifier)
        | {"amp": resolved_amp(cfg.classifier.amp, cfg.device)},
        "arm": to_dict(arm),
        "seed": seed,
        "augment": augment_config(cfg, arm),
        "samples": stage_fingerprint(cfg, SAMPLES, cfg.rep_of(arm, seed)) if arm.uses_synthetic else None,
    }


def augment_config(cfg: Config, arm: ArmConfig) -> Optional[Dict[str, Any]]:
    """The augmentation keys an arm's training reads (classic's numbers; a label mix's alpha)."""
    out: Dict[str, Any] = {}
    if arm.augment == "classic":
        out = {k: v for k, v in to_dict(cfg.augment).items() if k not in ("mixup_alpha", "cutmix_alpha")}
        out["hflip"] = source_hflip(cfg.data, cfg.augment.hflip)
    if arm.label_mix is not None:
        out[f"{arm.label_mix}_alpha"] = getattr(cfg.augment, f"{arm.label_mix}_alpha") or 1.0
    return out or None


def clf_fingerprint(cfg: Config, arm: ArmConfig, seed: int) -> str:
    return fingerprint(clf_config(cfg, arm, seed))


# ----------------------------------------------------------------------------------------------------
# Stage records and atomic stage folders.


def read_record(folder: Path) -> Optional[Dict[str, Any]]:
    f = folder / STAGE_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _diff(old: Any, new: Any, prefix: str = "") -> List[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def _changes(old: Any, new: Any) -> str:
    changes = _diff(old, new) or ["its inputs changed"]
    return "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more" if len(changes) > 3 else "")


def _flat(d: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: Dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
    return out


def superseded(old: Dict[str, Any], new: Dict[str, Any]) -> bool:
    """Whether a finished output was made for this same config by an older ganaug whose method a newer one replaced
    (its stage config has an older `method`, or none, and every key it knew has today's value): derived output that
    is redone without --force, since nothing a user chose would be lost."""
    if "method" not in new:
        return False
    a, b = _flat(old), _flat(new)
    return a.get("method", 1) < b["method"] and all(k == "method" or b.get(k, v) == v for k, v in a.items())


def needs_run(folder: Path, fp: str, config: Dict[str, Any], force: bool, what: str, command: str) -> bool:
    """True if the stage must run; False if its finished output matches `fp` (skip).

    A finished output made by another config is never replaced silently: it needs --force. One made by an older
    method for the same config (`superseded`) is redone.
    """
    rec = read_record(folder)
    if rec is None:
        return True
    if rec.get("fingerprint") == fp:
        return force
    if force:
        return True
    if superseded(rec.get("config", {}), config):
        echo(f"{what} in '{folder}' was made by an older ganaug's method; making it again")
        return True
    shown = _changes(rec.get("config", {}), config)
    raise StageError(
        f"{what} in '{folder}' was made by a different config ({shown}); "
        f"rerun `{command}` with --force to replace it, or set out_dir to a new folder"
    )


def start_stage(cfg: Config, stage: Stage, force: bool, rep: RepLike = None,
                quiet: bool = False) -> Optional[tuple[str, Dict[str, Any]]]:
    """(fingerprint, config) when `stage` must run; None (and a line saying so) when it is up to date."""
    folder = stage_folder(paths(cfg), stage, rep)
    config = stage_config(cfg, stage, rep)
    fp = fingerprint(config)
    if needs_run(folder, fp, config, force, f"the {stage.what}", stage.command):
        return fp, config
    if not quiet:
        echo(f"{stage.command.split()[-1]}: up to date in {folder}")
    return None


def up_to_date(cfg: Config, stage: Stage, rep: RepLike = None) -> bool:
    """Whether `stage` has finished output made by this config."""
    rec = read_record(stage_folder(paths(cfg), stage, rep))
    return rec is not None and rec.get("fingerprint") == stage_fingerprint(cfg, stage, rep)


def command_line(cfg: Config, command: str) -> str:
    """`command` with this config's file, as a user types it (the file it was read from; CONFIG when unknown)."""
    import shlex

    return f"{command} -c {shlex.quote(cfg.config_path) if cfg.config_path else 'CONFIG'}"


def require_stage(cfg: Config, stage: Stage, rep: RepLike = None) -> Dict[str, Any]:
    """The record of a finished upstream stage, which must have been made by this config."""
    folder = stage_folder(paths(cfg), stage, rep)
    rec = read_record(folder)
    if rec is None:
        raise StageError(f"no {stage.what} in '{folder}'; run `{command_line(cfg, stage.command)}` first")
    if rec.get("fingerprint") != stage_fingerprint(cfg, stage, rep):
        raise StageError(f"the {stage.what} in '{folder}' was made by a different config; "
                         f"run `{command_line(cfg, stage.command)} --force` first")
    check_outputs(folder, rec, stage.command)
    return rec


def check_outputs(folder: Path, rec: Dict[str, Any], command: str) -> None:
    """Each output a later stage reads must be the file the stage wrote (content hash in stage.json)."""
    for name, want in (rec.get("outputs") or {}).items():
        path = folder / name
        if not path.is_file():
            raise StageError(f"'{path}' is missing; it was written by `{command}` - rerun it with --force")
        if file_sha256(path) != want:
            raise StageError(f"'{path}' changed on disk since `{command}` wrote it (its content hash differs); "
                             f"restore it, or rerun `{command} --force` to remake it")


def output_hashes(folder: Path, *names: str) -> Dict[str, Any]:
    """For write_record(extra=...): the content hash of the outputs later stages read."""
    return {"outputs": {n: file_sha256(folder / n) for n in names}}


def partial_of(folder: Path) -> Path:
    return folder.with_name(folder.name + ".partial")


@contextlib.contextmanager
def building(folder: Path, resume: bool = False) -> Iterator[Path]:
    """Yield `<folder>.partial` to write into; on success it replaces `folder`.

    On failure the partial folder is removed, unless it holds resumable checkpoints (then it stays for
    `--resume`). `resume`: continue in the partial folder an interrupted run left.
    """
    partial = partial_of(folder)
    if partial.exists() and not resume:
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    try:
        yield partial
    except BaseException:
        if not resume_files(partial / RESUME_DIR):
            shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(partial / RESUME_DIR, ignore_errors=True)  # the finished output supersedes them
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        if old.exists():
            shutil.rmtree(old)
        folder.rename(old)
    partial.rename(folder)
    if old.exists():
        shutil.rmtree(old)


def make_checkpointer(cfg: Config, out: Path, stop: StopRequest, meta: Dict[str, Any]) -> Checkpointer:
    """The resumable checkpoints of a training stage writing into `out` (a partial folder), as cfg.checkpoint says."""
    ck = cfg.checkpoint
    return Checkpointer(out / RESUME_DIR, every_steps=ck.every_steps, keep=ck.keep, stop=stop, meta=meta,
                        every_seconds=ck.every_minutes * 60 if ck.every_minutes is not None else None)


def resume_point(folder: Path, fp: str, config: Dict[str, Any], kind: str, *, resume: bool, force: bool,
                 what: str, command: str) -> Optional[Dict[str, Any]]:
    """The checkpoint an interrupted run of this stage left, to continue from; None to start afresh.

    Interrupted work is never thrown away silently: without `resume` it is an error, and a checkpoint made
    by another config is an error too; `force` starts over (the partial folder is then replaced).
    """
    partial = partial_of(folder)
    if force or not resume_files(partial / RESUME_DIR):
        return None
    ckpt = latest_resume(partial / RESUME_DIR, kind)
    if ckpt is None:
        return None
    if ckpt.get("fingerprint") != fp:
        raise CheckpointError(
            f"checkpoint '{ckpt['path']}' was made by a different config ({_changes(ckpt.get('stage_config', {}), config)}); "
            f"restore that config to continue it, or rerun `{command}` with --force to discard it and start over")
    if not resume:
        raise StageError(f"{what} was interrupted: '{partial}' holds its checkpoint at step {ckpt['step']}; "
                         f"add --resume to continue it, or --force to discard it and start over")
    return ckpt


def write_record(folder: Path, stage: str, fp: str, config: Dict[str, Any], started: float,
                 extra: Optional[Dict[str, Any]] = None) -> None:
    from .. import __version__
    from ..provenance import environment

    atomic_write_json(folder / STAGE_FILE, {
        "stage": stage,
        "fingerprint": fp,
        "config": config,
        "ganaug_version": __version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 2),
        # Where it ran (versions, CPU and instruction set, threads, pins): provenance only, never part of a fingerprint.
        "environment": environment(),
        **(extra or {}),
    })


def save_run_config(cfg: Config) -> None:
    """The resolved config of the latest command, at the top of the run folder."""
    save_config(cfg, paths(cfg).root / "config.yaml")


def trained_on(hashes: List[str], manifest: Dict[str, Any], hashed_in: str) -> Dict[str, Any]:
    """What a model trained on, image by image, for the audit: `hashes`, the content hash of every image handed to
    its training code, hashed there (`hashed_in` says where; the audit compares them with the split's parts).
    The manifest's training indices ride along as what the stage asked for, a convenience and not the evidence."""
    return {"n": len(hashes), "hashes": list(hashes), "hashed_in": hashed_in,
            "indices": list(manifest["train"]["indices"])}
