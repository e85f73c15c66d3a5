"""The `ganaug` command: thin Click commands that read the config and call a stage."""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from typing import Any, Callable, Optional, Sequence, Tuple

import click
import yaml

from . import __version__
from .config import AUGMENT_KINDS, EXECUTORS, Config, load_config, parse_arm_shorthand, to_dict, validate_executor
from .errors import ConfigError, GanaugError, Interrupted


class _Group(click.Group):
    """Turns GanaugErrors (and files that cannot be written) into one line on stderr and exit status 2, and an
    interruption into a line saying what was kept, exit status 130 (GANAUG_DEBUG=1 shows the traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GanaugError as e:
            if os.environ.get("GANAUG_DEBUG"):
                raise
            click.echo("error: " + " ".join(str(e).split()), err=True)
            ctx.exit(2)
        except OSError as e:  # written outside atomic_open (which names its file itself): metrics lines, folders
            if os.environ.get("GANAUG_DEBUG"):
                raise
            from .utils import io_error

            click.echo(f"error: {io_error(e)}", err=True)
            ctx.exit(2)
        except (MemoryError, RuntimeError) as e:  # torch's out-of-memory errors (CUDA's, or the CPU allocator's)
            if os.environ.get("GANAUG_DEBUG") or not _out_of_memory(e):
                raise
            click.echo("error: " + _out_of_memory_line(ctx.invoked_subcommand or "", e), err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished stages are kept, the unfinished one was discarded; "
                       "run the same command again to continue", err=True)
            ctx.exit(130)


# The keys whose values set a stage's working memory, to name when it runs out.
OOM_KEYS = {"train-clf": "classifier.batch_size", "train-gan": "gan.batch_size", "sample": "sample.batch_size",
            "evaluate": "evaluate.max_images",
            "run": "classifier.batch_size, gan.batch_size or sample.batch_size"}


def _out_of_memory(e: BaseException) -> bool:
    text = str(e)
    return (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "out of memory" in text
            or "can't allocate memory" in text)


def _out_of_memory_line(command: str, e: BaseException) -> str:
    """One line for a stage that ran out of memory: where, torch's own first sentence, the keys that lower it."""
    text = " ".join(str(e).split())
    gpu = "CUDA" in text or type(e).__name__ == "OutOfMemoryError"
    first = text.split(". ")[0].rstrip(".") + "." if text else type(e).__name__
    keys = OOM_KEYS.get(command, "the batch sizes")
    where = "GPU" if gpu else "memory"
    return (f"`ganaug {command}` ran out of {where} ({first[:200]}); lower {keys}"
            + (", or set device: cpu" if gpu else ", or free memory") + "; finished stages and checkpoints are kept "
            "(rerun with --resume where training was interrupted)")


def _command_line(ctx: click.Context, resume: bool) -> str:
    """The command as typed (long options), without --force/--dry-run, plus --resume where the command has it."""
    parts = ["ganaug", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if not isinstance(param, click.Option) or param.name in ("force", "dry_run", "resume", "progress"):
            continue
        if value is None or value == () or value is False:
            continue
        opt = max(param.opts, key=len)
        if param.is_flag:
            parts.append(opt)
            continue
        for v in value if param.multiple else [value]:
            parts += [opt, shlex.quote(str(v))]
    if resume:
        parts.append("--resume")
    return " ".join(parts)


def _config_options(f: Callable) -> Callable:
    """--config, --set, --dry-run, --force, --progress: shared by every command that takes a config."""

    @click.option("--config", "-c", "config_path", required=True, metavar="FILE", help="Experiment YAML file.")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="Override a config key; the value is read as YAML (e.g. --set seeds=[0,1,2]). Repeatable.")
    @click.option("--sweep", "sweep", default=None, metavar="KEY=SPEC",
                  help="Add a grid of arms over an arm key, e.g. mix.p_real=0:1:0.1 (start:stop:step) or mix.add=0,500,1000.")
    @click.option("--dry-run", is_flag=True, help="Print the resolved config and the plan, then exit.")
    @click.option("--force", is_flag=True, help="Redo stages whose outputs exist (even from another config).")
    @click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bars or lines (for logs): warnings, errors and the table only.")
    @functools.wraps(f)
    def wrapper(config_path: str, overrides: Tuple[str, ...], sweep: Optional[str], dry_run: bool, force: bool,
                progress: Optional[bool], quiet: bool, **kwargs: Any) -> None:
        if quiet:
            os.environ["GANAUG_QUIET"] = "1"  # read by stages.common.quiet(), here and in every worker
            progress = False
        if sweep is not None:
            key, sep, spec = sweep.partition("=")
            if not sep or not key.strip() or not spec.strip():
                raise ConfigError(f"--sweep '{sweep}' must look like KEY=SPEC, e.g. --sweep mix.p_real=0:1:0.1")
            # The spec stays a string: YAML would read 0:1:0.1 as a base-60 number.
            overrides = overrides + (f"sweep.key={key.strip()}", "sweep.values=" + json.dumps(spec.strip()))
        cfg = load_config(config_path, overrides)
        if progress is None:
            progress = sys.stderr.isatty()
        if dry_run:
            from .stages import plan

            if kwargs.get("executor"):  # run --executor: the plan names the executor it would use
                cfg.executor.name = kwargs["executor"]

            click.echo(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip())
            click.echo("\n".join(plan(cfg)))
            return
        if force and kwargs.get("resume"):
            raise ConfigError("--force starts the stage over and --resume continues it; give one of them")
        import contextlib

        from . import distributed
        from .stages.common import run_lock

        ctx = click.get_current_context()
        if distributed.world() > 1 and ctx.info_name not in ("train-gan", "train-clf"):
            raise ConfigError(f"`ganaug {ctx.info_name}` runs on one process; under torchrun use train-gan or train-clf "
                              "(one model on several processes) and run the other stages without torchrun")
        distributed.init(cfg.device)  # under torchrun: join the other processes; without it, nothing
        # Under torchrun rank 0 alone holds the lock and writes the run folder; the others only train.
        with run_lock(cfg.out_dir, f"ganaug {ctx.info_name}") if distributed.is_main() else contextlib.nullcontext():
            try:
                f(cfg, force=force, progress=progress, **kwargs)
            except Interrupted as e:
                again = _command_line(ctx, resume=any(p.name == "resume" for p in ctx.command.params))
                if distributed.is_main():
                    click.echo(f"interrupted: {e}; continue with: {again}", err=True)
                ctx.exit(130)
            distributed.barrier()  # the lock is held until every process is done

    return wrapper


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ganaug")
def main() -> None:
    """Does adding GAN-generated images make a small-data classifier better, and by how much?

    Every command reads one YAML config (see configs/); `ganaug run` does every stage.
    """


@main.command()
@_config_options
def split(cfg: Config, force: bool, progress: bool) -> None:
    """Make the small-data split (train / real validation / held-out test) and save its manifest."""
    from .stages import run_split

    run_split(cfg, force=force, progress=progress)
    _save(cfg)


_resume_option = click.option("--resume", is_flag=True,
                              help="Continue an interrupted run from its newest checkpoint (ganaug run does this by itself).")


@main.command("train-gan")
@_config_options
@_resume_option
def train_gan(cfg: Config, force: bool, progress: bool, resume: bool) -> None:
    """Train the config's GAN on the split's training images (Ctrl-C saves a checkpoint to --resume from)."""
    from .stages import run_train_gan

    run_train_gan(cfg, force=force, progress=progress, resume=resume)
    _save(cfg)


@main.command()
@_config_options
def sample(cfg: Config, force: bool, progress: bool) -> None:
    """Write a labelled synthetic set (tensor file, PNG folder, real-vs-fake grid)."""
    from .stages import run_sample

    run_sample(cfg, force=force)
    _save(cfg)


@main.command()
@_config_options
def evaluate(cfg: Config, force: bool, progress: bool) -> None:
    """Score every synthetic set against the real test images: FID, KID, precision/recall, density/coverage, copies."""
    from .stages.evaluate import run_evaluate

    run_evaluate(cfg, force=force)
    _save(cfg)


@main.command("train-clf")
@_config_options
@_resume_option
@click.option("--data", "data", type=click.Choice(["real", "synthetic", "mixed"]), default=None,
              help="Train one arm on this data instead of the config's arms.")
@click.option("--mix", "mix", default=None, metavar="p_real=P|add=K",
              help="One mixed arm: per-sample replacement (p_real) or K fakes per class added (add).")
@click.option("--augment", "augment", type=click.Choice(list(AUGMENT_KINDS)), default=None,
              help="Augmentation (classic, or a torchvision policy) for the one arm given by --data/--mix.")
@click.option("--generator", "generator", default=None, metavar="NAME",
              help="Whose fakes the one arm given by --data/--mix uses (a name under generators:).")
@click.option("--arm", "arm_names", multiple=True, metavar="NAME", help="Only these arms of the config.")
@click.option("--seed", "seeds", multiple=True, type=int, help="Only these seeds (default: the config's seeds).")
def train_clf(cfg: Config, force: bool, progress: bool, resume: bool, data: Optional[str], mix: Optional[str],
              augment: Optional[str], generator: Optional[str], arm_names: Sequence[str], seeds: Sequence[int]) -> None:
    """Train classifiers for the config's arms and seeds (or one arm from --data/--mix/--augment)."""
    from .stages import experiments, run_train_clf

    arms = cfg.all_arms
    if data is not None or mix is not None or augment is not None:
        if arm_names:
            raise ConfigError("--arm picks arms of the config; it cannot be combined with --data/--mix/--augment")
        arm = parse_arm_shorthand(data, mix, augment, generator, cfg.generators)
        # The same arm as one the config lists (its keys, not its name)? Then that one: no second copy to train.
        same = [a for a in cfg.all_arms if {**to_dict(a), "name": None} == {**to_dict(arm), "name": None}]
        arms = [same[0] if same else arm]
    elif generator is not None:
        raise ConfigError("--generator names whose fakes the one arm of --data/--mix uses; give --data or --mix too")
    elif arm_names:
        known = {a.name: a for a in cfg.all_arms}
        missing = [n for n in arm_names if n not in known]
        if missing:
            raise ConfigError(f"--arm {missing[0]}: no such arm in the config (arms: {', '.join(known)})")
        arms = [known[n] for n in arm_names]
    for sub in experiments(cfg):  # with a sweep over classifier.steps: every value's sub-experiment
        run_train_clf(sub, arms=arms, seeds=list(seeds) or None, force=force, progress=progress, resume=resume)
    _save(cfg)


@main.command()
@_config_options
def compare(cfg: Config, force: bool, progress: bool) -> None:
    """Print the accuracy table across arms and seeds; write it as Markdown, CSV and JSON."""
    from .stages import compare_all

    click.echo(compare_all(cfg), nl=False)


@main.command()
@_config_options
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False), help="Where to write [<out_dir>/report.html].")
def report(cfg: Config, force: bool, progress: bool, output: Optional[str]) -> None:
    """Write one self-contained HTML report: config, table, audit, plots and sample grids (no network needed)."""
    from pathlib import Path

    from .stages import run_report

    click.echo(str(run_report(cfg, Path(output) if output else None)))


@main.command()
@_config_options
@click.option("--format", "fmt", required=True, type=click.Choice(["stylegan2-ada"]),
              help="stylegan2-ada: the dataset zip of NVlabs' dataset_tool.py, for its train.py.")
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False),
              help="Where to write [<out_dir>/export/<format>.zip].")
def export(cfg: Config, force: bool, progress: bool, fmt: str, output: Optional[str]) -> None:
    """Write the split's training images (only those) in another tool's dataset format."""
    from pathlib import Path

    from .stages.export import run_export

    click.echo(str(run_export(cfg, fmt, Path(output) if output else None)))


@main.command()
@_config_options
@click.option("--executor", "executor", type=click.Choice(list(EXECUTORS)), default=None,
              help="Where the cells run: serial (here, the default), local (processes here), ray, slurm "
                   "(settings under executor: in the config, or --set executor.workers=2).")
def run(cfg: Config, force: bool, progress: bool, executor: Optional[str]) -> None:
    """Every stage: split, train-gan, sample, evaluate, train-clf for each arm and seed (each a cell of the
    experiment's graph, on the executor), then compare."""
    from .stages import run_all

    if executor is not None:
        cfg.executor.name = executor
        validate_executor(cfg.executor)
    click.echo(run_all(cfg, force=force, progress=progress), nl=False)


@main.command("list")
def list_cmd() -> None:
    """List the registered datasets, generators, classifiers and executors."""
    from .classifiers import CLASSIFIERS
    from .data import DATASETS
    from .executors import EXECUTORS as RUNNERS
    from .gans import GANS

    for title, reg in (("datasets", DATASETS), ("gans", GANS), ("classifiers", CLASSIFIERS), ("executors", RUNNERS)):
        click.echo(f"{title}:")
        for name in reg.names():
            meta = reg.meta(name)
            flags = [] if meta.get("offline", True) else ["needs a download"]
            if meta.get("per_class"):
                flags.append("per_class")
            extra = f" [{', '.join(flags)}]" if flags else ""
            click.echo(f"  {name:14s} {meta['description']}{extra}")


def _save(cfg: Config) -> None:
    from . import distributed
    from .stages.common import save_run_config

    if distributed.is_main():  # under torchrun, rank 0 alone writes
        save_run_config(cfg)


if __name__ == "__main__":  # pragma: no cover
    main()
