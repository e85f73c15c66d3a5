"""An experiment as a graph of cells: split -> domain features -> each generator x GAN seed -> its samples ->
their evaluation; split (and samples) -> each classifier arm x seed; then `compare`.

A cell is a function of its config sections and its inputs' fingerprints (the stage fingerprints of
`records.py`); it writes only its own folder, atomically, under a lock of its own (`<folder>.lock`). Its spec
is plain data (the resolved config, the folder it reads its upstream from, which generator or arm and seed),
so another process, or another host that sees the run folder, can run it: `run_cell(spec)`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .. import cost, memory, progress
from ..checkpoint import RESUME_NAME, resume_files
from ..config import Config, Rep, config_from_dict, to_dict
from ..errors import Interrupted
from ..utils import environ_restored, native_bf16
from .costs import record_cost
from .layout import RESUME_DIR, STAGE_FILE, paths
from .locks import cell_lock
from .quality import rep_tag
from .records import (
    EVALUATE,
    FEATURES,
    GAN,
    SAMPLES,
    SPLIT,
    clf_config,
    clf_fingerprint,
    needs_run,
    partial_of,
    read_record,
    stage_config,
    stage_fingerprint,
    superseded,
)
from .sweep import experiments

KINDS = ("split", "features", "train-gan", "sample", "evaluate", "train-clf")


@dataclass
class Cell:
    id: str  # its folder relative to the run folder: split, gan/cgan, clf/real/seed-0, sweep/<key>=<v>/clf/...
    kind: str  # one of KINDS
    label: str  # for people: 'train-clf real seed 0'
    folder: Path
    fingerprint: str
    config: Dict[str, Any]  # the stage config the fingerprint hashes (for the 'made by a different config' message)
    deps: Tuple[str, ...]
    spec: Dict[str, Any] = field(repr=False)  # what run_cell needs, as plain (picklable) data
    what: str = ""
    command: str = ""
    sub: Optional[Config] = field(default=None, repr=False, compare=False)  # its (sub-)experiment's config, here only

    def state(self, force: bool = False) -> str:
        """done, to run, resume (step N), or differs (made by another config: needs --force)."""
        rec = read_record(self.folder)
        if rec is None:
            saved = resume_files(partial_of(self.folder) / RESUME_DIR)  # oldest first
            if saved and self.kind in ("train-gan", "train-clf") and not force:
                return f"resume (step {int(RESUME_NAME.match(saved[-1].name).group(1))})"
            return "to run"
        if rec.get("fingerprint") == self.fingerprint:
            return "to run" if force else "done"
        if superseded(rec.get("config", {}), self.config):
            return "to run"  # made by an older method for this same config: redone
        return "to run" if force else "differs"

    def check(self, force: bool) -> None:
        """Raise the stage's own 'made by a different config; --force' error when the cell's output is another's."""
        needs_run(self.folder, self.fingerprint, self.config, force, self.what, self.command)


def _spec(sub: Config, kind: str, **extra: Any) -> Dict[str, Any]:
    """What a worker needs to run a cell; `cpu_bf16`: what `amp: auto` means on the coordinator's CPU (`native_bf16`),
    which every worker follows, so that a cell trains and fingerprints what the coordinator planned and checks
    (on a cluster whose nodes differ from the login node in bfloat16, one precision for the whole table)."""
    return {"kind": kind, "config": to_dict(sub), "upstream_dir": sub.upstream_dir, "cwd": os.getcwd(),
            "cpu_bf16": "1" if native_bf16() else "0", **extra}


def _needs_features(sub: Config) -> bool:
    gens = [sub.gen(n) for n in sub.generator_names]
    return sub.evaluate.enabled or sub.sample.filter is not None or any(getattr(g, "eval_every", None) for g in gens)


def needs_gan(cfg: Config) -> bool:
    return any(arm.uses_synthetic for arm in cfg.all_arms)


def build_graph(cfg: Config) -> List[Cell]:
    """Every cell of the experiment (and of each sub-experiment of its sweep), dependencies first."""
    root = Path(cfg.out_dir)
    cells: List[Cell] = []
    made = set()

    def rel(folder: Path) -> str:
        try:
            return folder.relative_to(root).as_posix()
        except ValueError:
            return folder.as_posix()

    for sub in experiments(cfg):
        first = len(cells)
        p = paths(sub)
        tag = f" [{p.root.name}]" if sub is not cfg else ""
        split_id = rel(p.split)
        rep_ids: Dict[Rep, str] = {}
        if p.up not in made:  # sub-experiments that share their parent's split and generators make them once
            made.add(p.up)
            cells.append(Cell(split_id, "split", f"split{tag}", p.split, stage_fingerprint(sub, SPLIT),
                              stage_config(sub, SPLIT), (), _spec(sub, "split"), SPLIT.what, SPLIT.command))
            if needs_gan(sub):
                feat_id = None
                if _needs_features(sub):
                    feat_id = rel(p.features)
                    cells.append(Cell(feat_id, "features", f"features (domain extractor){tag}", p.features,
                                      stage_fingerprint(sub, FEATURES), stage_config(sub, FEATURES), (split_id,),
                                      _spec(sub, "features"), FEATURES.what, FEATURES.command))
                for rep in sub.replicates:
                    g = sub.gen(rep.generator)
                    gt = rep_tag(rep)
                    rep_spec = {"generator": rep.generator, "gan_seed": rep.seed}
                    gan_id = rel(p.gan(rep))
                    gan_deps = (split_id,) + ((feat_id,) if feat_id and getattr(g, "eval_every", None) else ())
                    if all(c.id != gan_id for c in cells):  # generators that differ only in sampling train once
                        cells.append(Cell(gan_id, "train-gan", f"train-gan {g.name}{gt}{tag}", p.gan(rep),
                                          stage_fingerprint(sub, GAN, rep), stage_config(sub, GAN, rep), gan_deps,
                                          _spec(sub, "train-gan", **rep_spec), f"the trained {g.name}", GAN.command))
                    sample_id = rel(p.samples(rep))
                    s = sub.sample_of(rep.generator)
                    sample_deps = (gan_id,) + ((feat_id,) if feat_id and s.filter is not None else ())
                    what = (f"{s.per_image} edit(s)/image" if s.per_image else f"{s.n_per_class}/class") + \
                        (f" edits at {','.join(f'{v:g}' for v in s.strengths)}" if s.mode == "edit" else "")
                    cells.append(Cell(sample_id, "sample", f"sample {what}{gt}{tag}",
                                      p.samples(rep), stage_fingerprint(sub, SAMPLES, rep), stage_config(sub, SAMPLES, rep),
                                      sample_deps, _spec(sub, "sample", **rep_spec), SAMPLES.what, SAMPLES.command))
                    rep_ids[rep] = sample_id
                    if sub.evaluate.enabled:
                        assert feat_id is not None
                        cells.append(Cell(rel(p.evaluate(rep)), "evaluate", f"evaluate {sub.evaluate.features}{gt}{tag}",
                                          p.evaluate(rep), stage_fingerprint(sub, EVALUATE, rep),
                                          stage_config(sub, EVALUATE, rep), (sample_id, feat_id),
                                          _spec(sub, "evaluate", **rep_spec), EVALUATE.what, EVALUATE.command))
        else:
            rep_ids = {rep: rel(paths(sub).samples(rep)) for rep in sub.replicates} if needs_gan(sub) else {}
        for arm in sub.all_arms:
            for seed in sub.seeds:
                run = p.clf_run(arm.name, seed)
                deps = (split_id,) + ((rep_ids[sub.rep_of(arm, seed)],) if arm.uses_synthetic else ())
                cells.append(Cell(rel(run), "train-clf", f"train-clf {arm.name} seed {seed}{tag}", run,
                                  clf_fingerprint(sub, arm, seed), clf_config(sub, arm, seed), deps,
                                  _spec(sub, "train-clf", arm=to_dict(arm), seed=seed),
                                  f"classifier run '{arm.name}' seed {seed}", "ganaug train-clf"))
        for c in cells[first:]:
            c.sub = sub
    ids = [c.id for c in cells]
    assert len(ids) == len(set(ids)), "two cells of one graph write the same folder"
    return cells


def describe_graph(cfg: Config, cells: List[Cell], force: bool = False, estimates: Optional[Dict[str, Any]] = None) -> List[str]:
    """`run --dry-run`: each cell with its state, its time (`estimates`: cell id -> executors.workload.Guess, what
    it took for a done cell) and inputs, then compare."""
    states = [c.state(force) for c in cells]
    counts: Dict[str, int] = {}
    for s in states:
        key = s.split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    lines = [f"plan for '{cfg.name}' in {cfg.out_dir}: {len(cells)} cells ({summary}), executor {cfg.executor.name}"]
    for c, s in zip(cells, states):
        shown = "differs: needs --force" if s == "differs" else s
        deps = f"  <- {', '.join(c.deps)}" if c.deps else ""
        took = f"{estimates[c.id].text():22s} " if estimates and c.id in estimates else ""
        lines.append(f"  {c.kind:10s} {shown:22s} {took}{c.label}{deps}")
    lines.append("  compare    to run" + (f" (each of {len(experiments(cfg))} sub-experiments, then the summary)"
                                          if cfg.experiment_sweep else ""))
    return lines


# ----------------------------------------------------------------------------------------------------
# Running one cell, here or in a worker.


def config_of(spec: Dict[str, Any]) -> Config:
    cfg = config_from_dict(spec["config"])
    cfg.upstream_dir = spec.get("upstream_dir")
    return cfg


def cell_folder(cfg: Config, spec: Dict[str, Any]) -> Path:
    """The folder a cell's spec writes."""
    from ..config import arm_from_dict

    p = paths(cfg)
    kind = spec["kind"]
    if kind == "split":
        return p.split
    if kind == "features":
        return p.features
    if kind == "train-clf":
        return p.clf_run(arm_from_dict(spec["arm"]).name, spec["seed"])
    if kind not in ("train-gan", "sample", "evaluate"):  # pragma: no cover - build_graph makes only KINDS
        raise ValueError(f"unknown cell kind {kind!r}")
    return {"train-gan": p.gan, "sample": p.samples, "evaluate": p.evaluate}[kind](
        Rep(spec.get("generator"), spec.get("gan_seed")))


def _record_stamp(folder: Path) -> Optional[Tuple[int, int, int]]:
    """Which stage record a folder holds (None: none), to tell whether a cell wrote a new one."""
    try:
        st = (folder / STAGE_FILE).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def run_cell(spec: Dict[str, Any], force: bool = False, progress: bool = False,
             spent: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Run one cell from its spec, in this process: the stage function restricted to the cell, under the cell's lock;
    returns what it cost (`cost.measure`), also filled into `spent` where given, even when the cell fails.

    A cell whose output is already there (another coordinator made it while this one waited for the lock) is
    skipped by the stage function itself, and its record keeps the cost of the run that made it; a cell that ran
    adds its cost to the record it wrote.
    """
    from ..config import arm_from_dict
    from .evaluate import run_evaluate
    from .features import domain_checkpoint
    from .sample import run_sample
    from .split import run_split
    from .train_clf import run_train_clf
    from .train_gan import run_train_gan

    cfg = config_of(spec)
    kind = spec["kind"]
    rep = Rep(spec.get("generator"), spec.get("gan_seed"))
    folder = cell_folder(cfg, spec)
    # NVlabs' train.py trains on the GPU in a child process, out of sight of this process's CUDA counters.
    official = kind == "train-gan" and getattr(cfg.gen(rep.generator), "impl", None) == "official"
    spent = {} if spent is None else spent
    with cell_lock(folder):
        before = _record_stamp(folder)
        with cost.measure(spent, on_gpu=official), cost.phases() as book:
            if kind == "split":
                run_split(cfg, force=force, progress=progress)
            elif kind == "features":
                domain_checkpoint(cfg, force=force, progress=progress)
            elif kind == "train-gan":
                # What the later stages will take, now: an absurd count stops here, before the GAN trains.
                for stage in ["sample"] + (["evaluate"] if cfg.evaluate.enabled else []) + ["train-clf"]:
                    memory.check(cfg, stage, paths(cfg))
                if cfg.executor.ddp > 1:  # on executor.ddp processes, under torchrun
                    from . import ddp_cell

                    ddp_cell.run({**spec, "force": force}, cfg, rep)
                else:
                    run_train_gan(cfg, force=force, progress=progress, resume=True, reps=[rep])
            elif kind == "sample":
                run_sample(cfg, force=force, reps=[rep])
            elif kind == "evaluate":
                run_evaluate(cfg, force=force, reps=[rep], train_features=False)
            else:
                run_train_clf(cfg, arms=[arm_from_dict(spec["arm"])], seeds=[spec["seed"]], force=force,
                              progress=progress, resume=True)
        spent["phases"] = cost.rounded(book, spent.get("wall_seconds"))  # where the cell's time went
        if _record_stamp(folder) != before:
            record_cost(folder, spent)
    return spent


@contextlib.contextmanager
def redirected(log: Optional[Path]) -> Iterator[None]:
    """stdout and stderr (the file descriptors too, so C-level output follows) into `log` while a cell runs."""
    if log is None:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    old = sys.stdout, sys.stderr
    with open(log, "a", buffering=1) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        sys.stdout = sys.stderr = f
        try:
            yield
        finally:
            f.flush()
            sys.stdout, sys.stderr = old
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def worker_run(spec: Dict[str, Any]) -> Dict[str, Any]:
    """A worker's entry point (local processes, Ray tasks, Slurm jobs): set the threads, go to the coordinator's
    folder, run the cell with its output in its log file, and return an outcome instead of raising (an exception
    need not pickle): {'id', 'ok', 'error', 'log', 'seconds', 'threads', 'cost'} ('cost': `cost.measure`'s record of
    the cell, a failed one's too)."""
    started = time.time()
    log = Path(spec["log"]) if spec.get("log") else None
    here = os.getcwd()
    threads = spec.get("threads")
    out: Dict[str, Any] = {"id": spec["id"], "ok": False, "error": None, "log": str(log) if log else None,
                           "started": started}
    spent: Dict[str, Any] = {}
    try:
        os.chdir(spec["cwd"])
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        out["threads"] = torch.get_num_threads()
        # The loops' bars write the cell's progress file (for the coordinator's display) instead of the log.
        with redirected(log), progress.reporting_to(spec.get("progress")), environ_restored("GANAUG_CPU_BF16"):
            if spec.get("cpu_bf16") is not None:  # the coordinator's answer (the cell's torchrun processes inherit it)
                os.environ["GANAUG_CPU_BF16"] = spec["cpu_bf16"]
            print(f"# cell {spec['id']} ({spec['kind']}) on {os.uname().nodename}{spec.get('node', '')} pid {os.getpid()}, "
                  f"{torch.get_num_threads()} torch threads", flush=True)
            try:
                run_cell(spec, force=spec.get("force", False), spent=spent)
            except Interrupted as e:  # stopped on request, its checkpoint saved: a line, not a traceback
                print(e, flush=True)
                raise
            except BaseException:
                import traceback

                traceback.print_exc()
                raise
        out["ok"] = True
    except KeyboardInterrupt:
        out["error"] = "interrupted"
    except Interrupted as e:  # stopped by a signal after saving a checkpoint: the next attempt resumes it
        out["error"], out["stopped_by"] = str(e), e.signal
    except Exception as e:  # noqa: BLE001 - the coordinator reports it with the log file
        out["error"] = " ".join(str(e).split()) or type(e).__name__
    finally:
        os.chdir(here)
        out["seconds"] = round(time.time() - started, 2)
        out["cost"] = spent or None
    return out
