"""The `ganaug` command: thin Click commands that read the config and call a stage."""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Tuple

import click
import yaml

from . import __version__, config
from .config.execution import EXECUTORS
from .config.sections import AUGMENT_KINDS
from .errors import ConfigError, GanaugError, Interrupted

if TYPE_CHECKING:  # the config's models import every generator family, and with them torch: `ganaug list` does not
    from .config import Config


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


def _config_options(*, sweep: bool = False, force: bool = True, progress: bool = True,
                    check: Optional[Callable[..., Any]] = None) -> Callable[[Callable], Callable]:
    """--config, --set, --dry-run, --quiet on every command that takes a config; --sweep, --force and --progress
    only where they change what the command does. `check(cfg, **options)` validates the command's own options,
    before a dry run too."""

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(config_path: str, overrides: Tuple[str, ...], dry_run: bool, quiet: bool, **kwargs: Any) -> None:
            from .utils import environ_restored

            with environ_restored("GANAUG_QUIET"):  # a command called in-process (tests, notebooks) leaves it as it was
                body(config_path, overrides, dry_run, quiet, **kwargs)

        def body(config_path: str, overrides: Tuple[str, ...], dry_run: bool, quiet: bool, **kwargs: Any) -> None:
            sweep_spec: Optional[str] = kwargs.pop("sweep", None)
            force_: bool = kwargs.pop("force", False)
            progress_: Optional[bool] = kwargs.pop("progress", None)
            if quiet:
                os.environ["GANAUG_QUIET"] = "1"  # read by progress.quiet(), here and in every worker
                progress_ = False
            if sweep_spec is not None:
                key, sep, spec = sweep_spec.partition("=")
                if not sep or not key.strip() or not spec.strip():
                    raise ConfigError(f"--sweep '{sweep_spec}' must look like KEY=SPEC, e.g. --sweep mix.p_real=0:1:0.1")
                # The spec stays a string: YAML would read 0:1:0.1 as a base-60 number.
                overrides = overrides + (f"sweep.key={key.strip()}", "sweep.values=" + json.dumps(spec.strip()))
            cfg = config.load_config(config_path, overrides)
            ctx = click.get_current_context()
            if check is not None:
                check(cfg, **kwargs)
            if ctx.info_name in ("run", "train-clf", "compare"):
                _warn_thin(config_path, overrides, cfg, dry_run)
            if progress_ is None:
                progress_ = sys.stderr.isatty()
            if dry_run:
                from .stages import plan

                if kwargs.get("executor"):  # run --executor: the plan names the executor it would use
                    cfg.executor.name = kwargs["executor"]

                click.echo(yaml.safe_dump(config.to_dict(cfg), sort_keys=False).rstrip())
                click.echo("\n".join(plan(cfg)))
                return
            if force_ and kwargs.get("resume"):
                raise ConfigError("--force starts the stage over and --resume continues it; give one of them")
            import contextlib

            from . import distributed
            from .stages.locks import run_lock

            if distributed.world() > 1 and ctx.info_name not in ("train-gan", "train-clf"):
                raise ConfigError(f"`ganaug {ctx.info_name}` runs on one process; under torchrun use train-gan or train-clf "
                                  "(one model on several processes) and run the other stages without torchrun")
            distributed.init(cfg.device)  # under torchrun: join the other processes; without it, nothing
            # Under torchrun rank 0 alone holds the lock and writes the run folder; the others only train.
            code = 0
            with run_lock(cfg.out_dir, f"ganaug {ctx.info_name}") if distributed.is_main() else contextlib.nullcontext():
                try:
                    f(cfg, force=force_, progress=progress_, **kwargs)
                except Interrupted as e:  # every process stopped after the same step
                    again = _command_line(ctx, resume=any(p.name == "resume" for p in ctx.command.params))
                    if distributed.is_main():
                        click.echo(f"interrupted: {e}; continue with: {again}", err=True)
                    code = 130
                distributed.barrier()  # the lock is held until every process is done
            distributed.exit_together(code)  # under torchrun: every process ends here, together
            if code:
                ctx.exit(code)

        options = [
            click.option("--config", "-c", "config_path", required=True, metavar="FILE", help="Experiment YAML file."),
            click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                         help="Override a config key; the value is read as YAML (e.g. --set seeds=[0,1,2]). Repeatable."),
        ]
        if sweep:
            options.append(click.option(
                "--sweep", "sweep", default=None, metavar="KEY=SPEC",
                help="Add a grid of arms over an arm key, e.g. mix.p_real=0:1:0.1 (start:stop:step) or mix.add=0,500,1000, "
                     "or sub-experiments over classifier.steps, split.n_per_class or a gan key."))
        options.append(click.option("--dry-run", is_flag=True, help="Print the resolved config and the plan, then exit."))
        if force:
            options.append(click.option("--force", is_flag=True,
                                        help="Redo stages whose outputs exist (even from another config)."))
        if progress:
            options.append(click.option("--progress/--no-progress", default=None,
                                        help="Progress bars (default: when stderr is a terminal)."))
        options.append(click.option("--quiet", "-q", is_flag=True,
                                    help="No progress bars or lines (for logs): warnings, errors and the table only."))
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def _warn_thin(config_path: str, overrides: Sequence[str], cfg: Config, dry_run: bool) -> None:
    """A config that would train only the real-only baseline says so instead of running silently; its plan also says
    when one seed leaves the table without spread or test."""
    from .config import read_yaml
    from .progress import echo

    raw = read_yaml(config_path) or {}
    said = {o.split("=", 1)[0].strip() for o in overrides}
    if "arms" not in raw and "arms" not in said and len(cfg.all_arms) == 1:
        echo(f"warning: {config_path} has no arms: only the real-only baseline trains, and nothing is compared; add arms "
             "(`ganaug init FOLDER` writes the default's six, or copy them from configs/mnist5k-cgan.yaml)")
    if dry_run and len(cfg.seeds) == 1 and len(cfg.all_arms) > 1:
        echo(f"warning: {config_path} has one seed: the table has no spread and no test; set seeds: [0, 1, 2, 3, 4]")


ORDER = ["init", "split", "train-gan", "sample", "evaluate", "train-clf", "compare", "report", "run", "export", "list",
         "schema"]


class _Commands(_Group):
    """Lists the commands in the order a run goes through them, not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(self.commands)
        return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its whole first sentence (Click would cut it at the terminal's width)."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                first = " ".join((cmd.help or "").split("\n\n")[0].split())
                rows.append((name, first.split(". ")[0].rstrip(".") + "."))
        with formatter.section("Commands (in the order a run goes through them)"):
            formatter.write_dl(rows)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Shell completion: eval \"$(_GANAUG_COMPLETE=bash_source ganaug)\" in ~/.bashrc "
                    "(zsh_source, fish_source for those shells).")
@click.version_option(__version__, prog_name="ganaug")
def main() -> None:
    """Does adding generated images make a small-data classifier better, which generator helps most, and by how much?

    Every command reads one YAML config; `ganaug init FOLDER` writes one for a folder of photos, and
    `ganaug run` does every stage.

    \b
    Examples:
      ganaug init photos/ -o my.yaml      # a config for photos/<class>/<image>
      ganaug run -c my.yaml --dry-run     # the plan and its time
      ganaug run -c my.yaml               # every stage, then the table
      ganaug report -c my.yaml            # one HTML file with everything
    """
    from .provenance import start_strict

    start_strict(click.get_current_context().invoked_subcommand)  # reproducible: strict pins the CPU math before torch loads


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=str))
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Where to write the config [./<folder name>.yaml].")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.option("--device", "device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto",
              help="Size the generator for this device [auto: a GPU when CUDA sees one].")
def init(folder: str, output: Optional[str], force: bool, device: str) -> None:
    """Read a folder of class subfolders and write a commented config that runs as it is.

    It reads the images' headers (classes, counts, sizes, grayscale or colour, unreadable files) and sizes the
    resolution, the split (from the smallest class), the generator (for the device), the default's six arms and
    5 seeds.

    \b
    Examples:
      ganaug init photos/                 # writes ./photos.yaml
      ganaug init ~/scans -o scans.yaml --device gpu
    """
    from pathlib import Path

    from .stages.init import run_init

    _, summary = run_init(Path(folder), Path(output) if output else None, force=force,
                          gpu=None if device == "auto" else device == "gpu")
    click.echo(summary)


@main.command()
@_config_options()
def split(cfg: Config, force: bool, progress: bool) -> None:
    """Make the small-data split (train / real validation / held-out test) and save its manifest.

    \b
    Examples:
      ganaug split -c my.yaml
      ganaug split -c my.yaml --set split.n_per_class=50
    """
    from .stages import run_split

    run_split(cfg, force=force, progress=progress)
    _save(cfg)


_resume_option = click.option("--resume", is_flag=True,
                              help="Continue an interrupted run from its newest checkpoint (ganaug run does this by itself).")


@main.command("train-gan")
@_config_options()
@_resume_option
def train_gan(cfg: Config, force: bool, progress: bool, resume: bool) -> None:
    """Train the config's GAN on the split's training images (Ctrl-C saves a checkpoint to --resume from).

    \b
    Examples:
      ganaug train-gan -c my.yaml
      ganaug train-gan -c my.yaml --resume                      # after Ctrl-C
      torchrun --nproc_per_node 2 -m ganaug train-gan -c my.yaml # one GAN on two processes
    """
    from .stages import run_train_gan

    run_train_gan(cfg, force=force, progress=progress, resume=resume)
    _save(cfg)


@main.command()
@_config_options(progress=False)
def sample(cfg: Config, force: bool, progress: bool) -> None:
    """Write a labelled synthetic set (tensor file, PNG folder, real-vs-fake grid).

    \b
    Examples:
      ganaug sample -c my.yaml
      ganaug sample -c my.yaml --set sample.n_per_class=500 --force
    """
    from .stages import run_sample

    run_sample(cfg, force=force)
    _save(cfg)


@main.command()
@_config_options(progress=False)
def evaluate(cfg: Config, force: bool, progress: bool) -> None:
    """Score every synthetic set against the real test images: FID, KID, precision/recall, density/coverage, copies.

    \b
    Examples:
      ganaug evaluate -c my.yaml
      ganaug evaluate -c my.yaml --set evaluate.features=inception
    """
    from .stages.evaluate import run_evaluate

    run_evaluate(cfg, force=force)
    _save(cfg)


def _one_arm_or_arms(cfg: Config, data: Optional[str] = None, mix: Optional[str] = None, augment: Optional[str] = None,
                     generator: Optional[str] = None, arm_names: Sequence[str] = (), **_: Any) -> list:
    """The arms `train-clf` trains: the one given by --data/--mix/--augment, the --arm ones, or the config's."""
    if data is not None or mix is not None or augment is not None:
        if arm_names:
            raise ConfigError("--arm picks arms of the config; it cannot be combined with --data/--mix/--augment")
        arm = config.parse_arm_shorthand(data, mix, augment, generator, cfg.generators)
        # The same arm as one the config lists (its keys, not its name)? Then that one: no second copy to train.
        same = [a for a in cfg.all_arms if {**config.to_dict(a), "name": None} == {**config.to_dict(arm), "name": None}]
        return [same[0] if same else arm]
    if generator is not None:
        raise ConfigError("--generator names whose fakes the one arm of --data/--mix uses; give --data or --mix too")
    if arm_names:
        known = {a.name: a for a in cfg.all_arms}
        missing = [n for n in arm_names if n not in known]
        if missing:
            raise ConfigError(f"--arm {missing[0]}: no such arm in the config (arms: {', '.join(known)})")
        return [known[n] for n in arm_names]
    return cfg.all_arms


@main.command("train-clf")
@_config_options(sweep=True, check=_one_arm_or_arms)
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
    """Train classifiers for the config's arms and seeds (or one arm from --data/--mix/--augment).

    \b
    Examples:
      ganaug train-clf -c my.yaml                          # every arm and seed
      ganaug train-clf -c my.yaml --arm real --seed 0
      ganaug train-clf -c my.yaml --mix p_real=0.8 --augment classic
      ganaug train-clf -c my.yaml --sweep mix.p_real=0:1:0.25
    """
    from .stages import experiments, run_train_clf

    arms = _one_arm_or_arms(cfg, data, mix, augment, generator, arm_names)
    for sub in experiments(cfg):  # with a sweep over classifier.steps: every value's sub-experiment
        run_train_clf(sub, arms=arms, seeds=list(seeds) or None, force=force, progress=progress, resume=resume)
    _save(cfg)


@main.command()
@_config_options(sweep=True, force=False, progress=False)
def compare(cfg: Config, force: bool, progress: bool) -> None:
    """Print the verdicts across arms and seeds; write the full table as Markdown, CSV and JSON under compare/.

    \b
    Examples:
      ganaug compare -c my.yaml
      ganaug compare -c my.yaml --set compare.confidence=0.99
    """
    from .stages import compare_all

    click.echo(compare_all(cfg), nl=False)


@main.command()
@_config_options(sweep=True, force=False, progress=False)
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False), help="Where to write [<out_dir>/report.html].")
def report(cfg: Config, force: bool, progress: bool, output: Optional[str]) -> None:
    """Write one self-contained HTML report: config, table, audit, plots and sample grids (no network needed).

    \b
    Examples:
      ganaug report -c my.yaml                  # <out_dir>/report.html
      ganaug report -c my.yaml -o ~/share/my-report.html
    """
    from pathlib import Path

    from .stages import run_report

    click.echo(str(run_report(cfg, Path(output) if output else None)))


@main.command()
@_config_options(progress=False)
@click.option("--what", "what", type=click.Choice(["train", "fakes"]), default="train", show_default=True,
              help="train: the split's training images (only those); fakes: a synthetic set (run `ganaug sample` first).")
@click.option("--format", "fmt", required=True, type=click.Choice(["imagefolder", "zip", "stylegan2-ada"]),
              help="imagefolder: <output>/<class name>/<index>.png; zip: that tree in a zip; stylegan2-ada: the dataset "
                   "zip of NVlabs' dataset_tool.py, for its train.py.")
@click.option("--generator", "generator", default=None, metavar="NAME",
              help="With --what fakes: whose fakes (a name under generators:; default the config's one generator).")
@click.option("--gan-seed", "gan_seed", default=None, type=int, metavar="N",
              help="With --what fakes and gan_seeds: which GAN replicate's fakes (default the first).")
@click.option("--output", "-o", default=None, type=click.Path(),
              help="Where to write [<out_dir>/export/: train/, train.zip or stylegan2-ada.zip; "
                   "fakes[-NAME][-seed-N]/, .zip or -stylegan2-ada.zip]; an existing one only with --force.")
def export(cfg: Config, force: bool, progress: bool, what: str, fmt: str, generator: Optional[str],
           gan_seed: Optional[int], output: Optional[str]) -> None:
    """Write the split's training images, or a synthetic set with its labels, as an image folder or a zip.

    \b
    Examples:
      ganaug export -c my.yaml --what fakes --format imagefolder -o fakes/
      ganaug export -c my.yaml --what fakes --format zip --generator diffusion --gan-seed 1
      ganaug export -c my.yaml --format stylegan2-ada      # the training images for NVlabs' train.py
    """
    from pathlib import Path

    from .stages.export import run_export

    click.echo(str(run_export(cfg, fmt, Path(output) if output else None, what=what, generator=generator,
                              gan_seed=gan_seed, force=force)))


@main.command()
@_config_options(sweep=True)
@click.option("--executor", "executor", type=click.Choice(list(EXECUTORS)), default=None,
              help="Where the cells run: serial (here, the default), local (processes here), ray, slurm "
                   "(settings under executor: in the config, or --set executor.workers=2).")
def run(cfg: Config, force: bool, progress: bool, executor: Optional[str]) -> None:
    """Every stage: split, train-gan, sample, evaluate, train-clf for each arm and seed (each a cell of the
    experiment's graph, on the executor), then compare. A rerun redoes only what is missing.

    \b
    Examples:
      ganaug run -c my.yaml --dry-run           # the plan, memory and time
      ganaug run -c my.yaml
      ganaug run -c my.yaml --executor local --set executor.workers=2
      ganaug run -c my.yaml --sweep split.n_per_class=10,20,50,100
    """
    from .stages import run_all

    if executor is not None:
        cfg.executor.name = executor
        config.validate_executor(cfg.executor)
    click.echo(run_all(cfg, force=force, progress=progress), nl=False)


@main.command("list")
def list_cmd() -> None:
    """List what a config can name: datasets, generators, classifiers, feature extractors, arm kinds,
    augmentations and executors."""
    import shutil
    import textwrap
    from pathlib import Path

    from .data import ARM_KINDS, AUGMENTATIONS
    from .registry import read_registrations

    # The registrations are read from the registering modules' source, not imported, so this runs without torch
    # (tests/test_list.py checks they are the registries' own).
    def registered(folder: str, decorator: str) -> dict:
        out = {}
        for name, meta in read_registrations(Path(__file__).parent / folder, decorator).items():
            out[name] = meta["description"] + ("" if meta.get("offline", True) else " [needs a download]")
        return out

    torchvision = {"<torchvision model>": "Any torchvision classification model name (resnet50, efficientnet_b0, ...): "
                                          "its penultimate features (evaluate.weights: PATH, else torchvision's download)."}
    sections = (("datasets (data.source)", registered("data", "register_dataset")),
                ("generators (gan.name)", registered("gans", "register_gan")),
                ("classifiers (classifier.name)", registered("classifiers", "register_classifier")),
                ("feature extractors (evaluate.features)", {**registered("metrics", "register_features"), **torchvision}),
                ("arm kinds (arms: data, mix)", ARM_KINDS),
                ("augmentations (arms: augment, label_mix)", AUGMENTATIONS),
                ("executors (executor.name)", registered("executors", "register_executor")))
    col = 4 + max(len(name) for _, entries in sections for name in entries)
    width = max(shutil.get_terminal_size().columns, col + 20)
    lines = []
    for title, entries in sections:
        lines.append(f"{title}:")
        for name, text in entries.items():
            lines.append(textwrap.fill(text, width, initial_indent=f"  {name}".ljust(col), subsequent_indent=" " * col,
                                       break_long_words=False, break_on_hyphens=False))
    click.echo("\n".join(lines))  # one write: `ganaug list | head` sees no broken pipe


@main.command("schema")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the schema to this file (atomically) instead of printing it.")
def schema_cmd(output: Optional[str]) -> None:
    """The JSON Schema of a config file: editors complete and check keys with it. A config that starts with
    `# yaml-language-server: $schema=PATH` is checked as it is typed (VS Code's YAML extension, Neovim, ...).

    \b
    Examples:
      ganaug schema -o ganaug.schema.json
      ganaug schema | python -m json.tool | less
    """
    from .config import schema_text

    if output is None:
        click.echo(schema_text(), nl=False)
        return
    from .utils import atomic_write_text

    atomic_write_text(output, schema_text())
    click.echo(f"wrote {output}")


def _save(cfg: Config) -> None:
    from . import distributed
    from .stages.records import save_run_config

    if distributed.is_main():  # under torchrun, rank 0 alone writes
        save_run_config(cfg)


if __name__ == "__main__":  # pragma: no cover
    main()
