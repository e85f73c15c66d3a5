"""Stage `train-gan`: a GAN on the split's training images only."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .. import cost, distributed
from ..checkpoint import cpu_state, load_checkpoint, save_checkpoint
from ..config import Config, GanConfig, Rep, to_dict
from ..errors import CheckpointError, ConfigError
from ..gans import GANS, cpu_bf16, gan_kwargs, get_gan, train_generator
from ..gans.official import load_official_generator
from ..plots import plot_gan_metrics
from ..progress import echo
from ..utils import (
    Stats,
    atomic_write_json,
    autocast_dtype,
    catch_stop,
    file_sha256,
    in_config_threads,
    preserve_rng,
    read_jsonl,
    resolve_device,
    rng_state,
    seed_everything,
    use_channels_last,
)
from .layout import SELECTION, TRAINED_ON, paths
from .official import official_pkl, train_official
from .records import (
    GAN,
    building,
    make_checkpointer,
    output_hashes,
    partial_of,
    resume_point,
    start_stage,
    trained_on,
    write_record,
)
from .split import load_split_data


@in_config_threads
def run_train_gan(cfg: Config, force: bool = False, progress: bool = True, resume: bool = False,
                  reps: Optional[Sequence[Rep]] = None) -> List[Path]:
    """Train every generator of the config (each once per entry of gan_seeds), or those of `reps`, and write
    checkpoint.pt, metrics.jsonl, plots and grids.

    `resume`: continue an interrupted run from its newest checkpoint (without it, one is an error).
    Under torchrun, one model on all the processes (`distributed`): rank 0 writes, the others only train.
    """
    reps = cfg.replicates if reps is None else reps
    # A generator whose training is another's (they differ only in `sample:`) trains once, as that one.
    reps = list(dict.fromkeys(Rep(cfg.trained_as(r.generator), r.seed) for r in reps))
    for rep in reps:
        check_world(cfg, rep)
    return [_train_one(cfg, rep, force, progress and distributed.is_main(), resume) for rep in reps]


def single_process(cfg: Config, rep: Rep) -> Optional[str]:
    """Why `rep`'s generator cannot train on several processes (its family's loop is not DDP, or the official
    code), as the start of a sentence; None where it can."""
    g = cfg.gen(rep.generator)
    key = "gan" if rep.generator is None else f"generators.{rep.generator}"
    official = getattr(g, "impl", None) == "official"
    if not official and GANS.meta(g.name).get("ddp"):
        return None
    return f"{key}.name {g.name}{' (impl: official)' if official else ''} trains on one process"


def several_families() -> str:
    """The families whose training loop runs on several processes (DDP), for the errors that name them."""
    return ", ".join(n for n in GANS.names() if GANS.meta(n).get("ddp"))


def check_world(cfg: Config, rep: Rep) -> None:
    """Under torchrun: only a family whose loop runs in DDP, and a global batch that splits over the processes."""
    if distributed.world() == 1:
        return
    why = single_process(cfg, rep)
    if why:
        raise ConfigError(f"{why}; drop torchrun (families that train on several: {several_families()})")
    key = "gan" if rep.generator is None else f"generators.{rep.generator}"
    distributed.require_divisible(cfg.gen(rep.generator).batch_size, f"{key}.batch_size")


def describe(rep: Rep) -> str:
    """'the GAN', 'the generator 'vae'', with ' of seed 3' where gan_seeds train several."""
    return ((f"the generator '{rep.generator}'" if rep.generator is not None else "the GAN")
            + (f" of seed {rep.seed}" if rep.seed is not None else ""))


def _train_one(cfg: Config, rep: Rep, force: bool, progress: bool, resume: bool) -> Path:
    g = cfg.gen(rep.generator)
    if getattr(g, "impl", None) == "official":  # NVlabs' code in a subprocess (stages/official.py)
        return train_official(cfg, rep, force, progress)
    p = paths(cfg)
    main = distributed.is_main()  # the one process that writes and prints (always, without torchrun)
    say = echo if main else (lambda msg: None)
    todo = start_stage(cfg, GAN, force, rep, quiet=not main)
    if todo is None:
        return p.gan_checkpoint(rep)
    fp, config = todo
    started = time.time()
    ckpt = resume_point(p.gan(rep), fp, config, "gan", resume=resume, force=force, what=f"the training of {describe(rep)}",
                        command=GAN.command)

    # Load data: the training part of the split, nothing else.
    with cost.phase("load"):
        data, manifest = load_split_data(cfg)
    if ckpt is not None and ckpt["data_fingerprint"] != manifest["fingerprint"]:
        raise CheckpointError(f"checkpoint '{ckpt['path']}' was trained on another split; "
                              f"rerun `{GAN.command}` with --force to start over on this one")
    c, h, w = data.train.images.shape[1:]
    num_classes = len(data.classes)

    # Build networks.
    with cost.phase("build"):
        device = resolve_device(cfg.device)
        seed = g.seed if rep.seed is None else rep.seed
        generator = seed_everything(seed)
        kwargs = gan_kwargs(g, resolution=h, channels=c, num_classes=num_classes)
        nets = get_gan(g.name, **kwargs)
        amp_dtype = autocast_dtype(g.amp, device, cpu_bf16(g))
        channels_last = use_channels_last(g.channels_last, device)
    sizes = f"G {sum(t.numel() for t in nets.G.parameters()) / 1e6:.2f}M" + (
        f" / D {sum(t.numel() for t in nets.D.parameters()) / 1e6:.2f}M" if nets.D is not None else "")
    augment = getattr(g, "augment", None)
    say(f"train-gan: {g.name}{' per class' if getattr(g, 'per_class', False) else ''}"
         f"{f' ({rep.generator})' if rep.generator else ''} seed {seed} on {len(data.train.labels)} images "
         f"({c}x{h}x{w}), {sizes} parameters, {f'{g.kimg:g} kimg' if g.kimg else f'{g.epochs} epochs'}"
         f"{f', D augmentation {augment}' if isinstance(g, GanConfig) and augment not in (None, 'none') else ''}"
         f", device {device}{', bf16' if amp_dtype else ''}"
         f"{f', {distributed.world()} processes' if distributed.world() > 1 else ''}")
    if ckpt is not None:
        say(f"train-gan: resuming from {ckpt['path']} (step {ckpt['step']}, {ckpt['cur_nimg'] / 1000:g} kimg)")

    # Train, saving resumable checkpoints as configured; Ctrl-C / SIGTERM saves one and stops.
    with preserve_rng(), cost.phase("build"):  # building the evaluator (a network) must not move the GAN's streams
        evaluator, val_hashes = (make_evaluator(cfg, data, device) if g.eval_every and main else (None, None))
    meta = {"kind": "gan", "name": g.name, "kwargs": kwargs, "config": to_dict(cfg),
            "data_fingerprint": manifest["fingerprint"], "fingerprint": fp, "stage_config": config,
            "classes": data.classes, "shape": [int(c), int(h), int(w)], "generator": rep.generator}
    # Under torchrun rank 0 alone writes; the other ranks train beside it (their checkpointer only joins stops).
    folder = building(p.gan(rep), resume=ckpt is not None) if main else contextlib.nullcontext(partial_of(p.gan(rep)))
    # The stats stream (metrics.jsonl and TensorBoard's event files) is closed before the folder is renamed.
    with folder as out, catch_stop() as stop, Stats(out / "metrics.jsonl" if main else None) as stats:
        checkpointer = make_checkpointer(cfg, out, stop, meta)
        common = dict(images=data.train.images, labels=data.train.labels, num_classes=num_classes, epochs=g.epochs,
                      kimg=g.kimg, batch_size=g.batch_size, lr=g.lr, betas=(g.betas[0], g.betas[1]), ema_kimg=g.ema_kimg,
                      mirror=g.mirror, device=device, amp_dtype=amp_dtype, generator=generator, stats=stats,
                      grid_dir=out / "grids" if main else None, grid_every=g.grid_every, progress=progress,
                      checkpointer=checkpointer, resume=ckpt, evaluator=evaluator, eval_every=g.eval_every,
                      select=g.select)
        result = train_generator(nets, g, channels_last=channels_last, **common)  # the family's loop
        if not main:  # the networks are rank 0's now; wait until it has written the stage
            distributed.barrier()
            return p.gan_checkpoint(rep)
        # Which snapshot was kept, and on which images it was chosen (the audit: never a test image).
        with cost.phase("write"):  # the checkpoint, what the GAN saw, its plot and record
            selection = {"kind": g.select or "last", "pairs": result["selection"], "val_hashes": val_hashes}
            save_checkpoint(out / "checkpoint.pt", {
                **meta,
                "state_dict": {k: cpu_state(result[k]) if result[k] is not None else {} for k in ("G", "D", "G_ema")},
                "optimizer": result["optimizer"],
                "augment": result["augment"],
                "step": result["step"],
                "cur_nimg": result["cur_nimg"],
                "rng": rng_state(),
                "selection": selection,
            })
            # What the GAN saw, image by image (hashed where its loop was handed them), and what chose its snapshot,
            # for the protocol audit in `compare`.
            atomic_write_json(out / TRAINED_ON, trained_on(result["trained_hashes"], manifest, "gans.train_generator"))
            if g.select == "best-fid":
                atomic_write_json(out / SELECTION, selection)
            plot_gan_metrics(read_jsonl(out / "metrics.jsonl"), out / "training.png",
                             title=f"{g.name}{f' ({rep.generator})' if rep.generator else ''} seed {seed}: training")
            write_record(out, "gan", fp, config, started, {"steps": result["step"], "kimg": result["cur_nimg"] / 1000,
                                                           "seed": seed, **output_hashes(out, "checkpoint.pt"),
                                                           "selection": {k: v for k, v in selection.items() if k != "val_hashes"},
                                                           "resumed_from_step": ckpt["step"] if ckpt is not None else None,
                                                           "world_size": distributed.world(),
                                                           "precision": "bfloat16" if amp_dtype is not None else "float32",
                                                           "channels_last": channels_last})
    distributed.barrier()  # the other ranks go on once the stage is whole
    last = stats.last
    seconds = time.time() - started
    nimg = result["cur_nimg"] - (ckpt["cur_nimg"] if ckpt is not None else 0)  # trained by this process
    p_end = "".join(f", augment p {a['p']:.3f}" for a in result["augment"].values())
    tick = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith(("loss/", "D(")))
    echo(f"train-gan: {result['step']} steps ({result['cur_nimg'] / 1000:g} kimg) in {seconds:.0f}s "
         f"({nimg / max(seconds, 1e-9):.1f} img/s); last tick {tick}{p_end} -> {p.gan_checkpoint(rep)}")
    return p.gan_checkpoint(rep)


def make_evaluator(cfg: Config, data: Any, device: Any) -> Tuple[Callable[[nn.Module, Optional[int]], Dict[str, float]],
                                                                 List[str]]:
    """FID and KID of a generator against the real validation images, in the domain features (trained on the
    training images only); and the content hashes of the validation images it compares with."""
    from ..data.images import image_hashes, to_uint8
    from ..gans.training import generate
    from ..metrics.features import build_domain
    from ..metrics.quality import fid, kid
    from .features import domain_checkpoint

    extractor = build_domain(cfg.evaluate, device=device, domain_checkpoint=domain_checkpoint(cfg))
    val_f, val_y = extractor(data.val.images), data.val.labels

    def evaluate(G: nn.Module, cls: Optional[int]) -> Dict[str, float]:
        y = val_y if cls is None else val_y[val_y == cls]  # a conditional G: the validation set's classes
        z = torch.randn(len(y), G.z_dim, generator=torch.Generator().manual_seed(cfg.evaluate.seed))
        cond = y.to(device) if cls is None and getattr(G, "conditional", False) else None
        fake = extractor(to_uint8(generate(G, z.to(device), cond)))
        real = val_f if cls is None else val_f[val_y == cls]
        return {"fid/val": fid(real, fake), "kid/val": kid(real, fake, subsets=10, seed=cfg.evaluate.seed)["kid"]}

    return evaluate, image_hashes(data.val.images)


def load_generator(path: Path) -> Tuple[nn.Module, Dict[str, Any]]:
    """The moving-average generator from a GAN checkpoint, rebuilt without the original config file."""
    hint = "train one with `ganaug train-gan -c CONFIG`"
    ckpt = load_checkpoint(path, "gan", hint)
    if ckpt.get("impl") == "official":  # G_ema of the official snapshot beside the checkpoint
        pkl = official_pkl(path, ckpt)
        # A pickle runs code when it is loaded: open only the file train-gan recorded.
        if ckpt.get("pkl_sha256") is not None and (not pkl.is_file() or file_sha256(pkl) != ckpt["pkl_sha256"]):
            raise CheckpointError(f"'{pkl}' changed on disk since `ganaug train-gan` wrote it (its content hash differs "
                                  f"from the one '{path}' records); restore it, or rerun `ganaug train-gan --force`")
        return load_official_generator(pkl, ckpt["repo"], **ckpt["kwargs"]), ckpt
    GANS.check(ckpt["name"], f"checkpoint '{path}' gan name")
    G = get_gan(ckpt["name"], **ckpt["kwargs"]).G
    try:
        G.load_state_dict(ckpt["state_dict"]["G_ema"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint '{path}' does not fit a {ckpt['name']} generator "
                              f"({str(e).splitlines()[0][:100]}); {hint}") from None
    return G.eval().requires_grad_(False), ckpt
