"""Stage `train-gan` for `gan.impl: official`: NVlabs' stylegan2-ada-pytorch on the split's training images.

Official training is long and must survive interruptions, but a stage builds in `<gan>.partial/`, which
`building` removes on a failure and on the next start. So the official run lives beside it, in
`<gan>.official/`: the dataset zip, train.py's run folders and snapshots, ganaug's metrics.jsonl and
train.log. Running the stage again goes on from the newest complete snapshot there (see
`gans.official.run_official_training`). When training is done the stage is built as any other (checkpoint.pt,
network-final.pkl, metrics.jsonl, training.png, trained_on.json, stage.json) and `<gan>.official/` is
moved in as `<gan>/official/`. A `<gan>.official/` made by another config, or any with --force, is removed
and training starts over.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any, List

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..checkpoint import save_checkpoint
from ..config import Config, Rep, to_dict
from ..data.images import image_hashes
from ..gans.official import check_repo, official_resolution, require_training_env, run_official_training, write_dataset_zip
from ..plots import plot_gan_metrics
from ..progress import echo
from ..utils import atomic_write_json, file_sha256, read_jsonl
from .layout import TRAINED_ON, paths
from .records import GAN, building, output_hashes, start_stage, trained_on, write_record
from .split import load_split_data

STATE_FILE = "ganaug-stage.json"  # in <gan>.official/: the fingerprint of the config the run belongs to


def official_dir(gan_dir: Path) -> Path:
    """Where an official run lives until the stage is done: `<gan>.official/` beside the gan folder."""
    return gan_dir.with_name(gan_dir.name + ".official")


def check_official_env(g: Any) -> Path:
    """The checkout named by gan.repo, once it and this machine (CUDA, packages) can train; else a one-line error."""
    repo = check_repo(g.repo)
    require_training_env(g.gpus or 1)
    return repo


def train_official(cfg: Config, rep: Rep, force: bool, progress: bool) -> Path:
    """Train (or go on training) the official StyleGAN2-ADA; write the gan folder; return checkpoint.pt's path."""
    p = paths(cfg)
    todo = start_stage(cfg, GAN, force, rep)
    if todo is None:
        return p.gan_checkpoint(rep)
    fp, config = todo
    started = time.time()
    g = cfg.gen(rep.generator)
    repo = check_official_env(g)

    # Load data: the training part of the split, nothing else.
    data, manifest = load_split_data(cfg)
    c, h, w = (int(s) for s in data.train.images.shape[1:])
    n, num_classes = len(data.train.labels), len(data.classes)
    seed = g.seed if rep.seed is None else rep.seed
    kimg = g.kimg if g.kimg is not None else g.epochs * n / 1000  # as the native loop: kimg replaces epochs
    total_kimg = max(1, math.ceil(kimg))

    # The official run folder: kept across interruptions, started over for another config or --force.
    gan_dir = p.gan(rep)
    work = official_dir(gan_dir)
    state = _read_json(work / STATE_FILE)
    if work.exists() and (force or state.get("fingerprint") != fp):
        why = "--force" if force else "it was made by another config"
        echo(f"train-gan: removing the official run in {work} ({why})")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(work / STATE_FILE, {"fingerprint": fp, "config": config})
    data_zip = write_dataset_zip(data.train.images, data.train.labels, work / "dataset.zip")
    # What train.py will read, hashed from the zip as written (for the audit), before it starts.
    handed = zip_hashes(data_zip, data.train.images)
    side = official_resolution(h)
    echo(f"train-gan: official stylegan2-ada (cfg {g.preset or 'auto'}) seed {seed} on {n} images ({c}x{h}x{w}"
         f"{f', trained at {side}x{side}' if side != h else ''}), {total_kimg} kimg, augment {g.augment or 'none'}, "
         f"{g.gpus or 1} GPU{'s' if (g.gpus or 1) > 1 else ''}; official output in {work}")

    # Train.
    result = run_official_training(
        g, repo=repo, data_zip=data_zip, outdir=work, seed=seed, kimg=total_kimg, conditional=True,
        metrics_path=work / "metrics.jsonl", log_path=work / "train.log", progress=progress,
    )
    if result.resumed_from is not None:
        echo(f"train-gan: went on from {result.resumed_from}")

    # The stage folder: a record of the run, the final snapshot and the official folder.
    cur_nimg = int(round(result.kimg * 1000))
    step = cur_nimg // g.batch_size if g.batch_size else 0  # minibatches, counted from the images shown
    rows = read_jsonl(work / "metrics.jsonl") if (work / "metrics.jsonl").is_file() else []
    with building(gan_dir) as out:
        shutil.copyfile(result.pkl, out / "network-final.pkl")
        if rows:
            shutil.copyfile(work / "metrics.jsonl", out / "metrics.jsonl")
        save_checkpoint(out / "checkpoint.pt", {
            "kind": "gan",
            "name": g.name,
            "impl": "official",
            "pkl": "network-final.pkl",  # beside checkpoint.pt
            "repo": str(repo),
            "kwargs": {"resolution": h, "channels": c, "num_classes": num_classes},
            "state_dict": {},  # the networks are in the official pickle
            "optimizer": {},
            "augment": {"all": {"p": result.augment_p}} if result.augment_p is not None else {},
            "step": step,
            "cur_nimg": cur_nimg,
            "rng": {},
            "config": to_dict(cfg),
            "data_fingerprint": manifest["fingerprint"],
            "classes": data.classes,
            "shape": [c, h, w],
            "snapshot": str(result.pkl.relative_to(work)),  # where it came from, under official/
            # As the native path: which config made it, and the hash of the pickle (which runs code when loaded).
            "fingerprint": fp,
            "stage_config": config,
            "pkl_sha256": file_sha256(out / "network-final.pkl"),
        })
        # What the GAN saw, image by image (the dataset zip's images), for the protocol audit in `compare`.
        atomic_write_json(out / TRAINED_ON, trained_on(handed, manifest, "stages.official (the dataset zip)"))
        plot_gan_metrics(rows, out / "training.png", title=f"{g.name} (official) seed {seed}: losses and D outputs")
        write_record(out, "gan", fp, config, started, {"steps": step, "kimg": result.kimg, "seed": seed,
                                                       "impl": "official",
                                                       **output_hashes(out, "checkpoint.pt", "network-final.pkl")})
    (work / STATE_FILE).unlink(missing_ok=True)
    work.rename(gan_dir / "official")

    last = rows[-1] if rows else {}
    stats = ", ".join(f"{k} {last[k]:.3f}" for k in ("loss/G", "loss/D", "D(x)", "D(G(z))", "augment/p") if k in last)
    echo(f"train-gan: {result.kimg:g} kimg in {time.time() - started:.0f}s{'; last tick ' + stats if stats else ''} "
         f"-> {p.gan_checkpoint(rep)}")
    return p.gan_checkpoint(rep)


def zip_hashes(data_zip: Path, images: torch.Tensor, chunk: int = 1024) -> List[str]:
    """The content hash of each image the official train.py reads from `data_zip` (dataset.json's order), for the
    audit: its PNGs decoded and hashed. Where the zip holds them upscaled (a side that is not a power of two), an
    image that is exactly the upscale of the image handed to the zip at its place gets that image's hash (the
    split's hashes are at the data's side); any other gets its own, as decoded, which is in no part of the split."""
    side = int(images.shape[-1])
    out: List[str] = []
    with zipfile.ZipFile(data_zip) as zf:
        names = [name for name, _ in json.loads(zf.read("dataset.json"))["labels"]]
        for start in range(0, len(names), chunk):
            decoded = torch.stack([_decode_png(zf.read(name)) for name in names[start:start + chunk]])
            if decoded.shape[-1] == side:
                out += image_hashes(decoded)
                continue
            handed = images[start:start + len(decoded)]
            # As write_dataset_zip scales them up: the same chunks, the same interpolation.
            upscaled = F.interpolate(handed.float(), size=decoded.shape[-2:], mode="bilinear", align_corners=False,
                                     antialias=True).round_().clamp_(0, 255).to(torch.uint8)
            handed_h = image_hashes(handed)
            for i, (img, h) in enumerate(zip(decoded, image_hashes(decoded))):
                out.append(handed_h[i] if i < len(handed) and torch.equal(img, upscaled[i]) else h)
    return out


def _decode_png(data: bytes) -> torch.Tensor:
    """One PNG of the dataset zip -> uint8 (C, H, W)."""
    arr = np.array(Image.open(io.BytesIO(data)))
    return torch.from_numpy(np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def official_pkl(ckpt_path: Path, ckpt: dict) -> Path:
    """The snapshot an official checkpoint names, relative to the checkpoint's folder."""
    pkl = Path(ckpt["pkl"])
    return pkl if pkl.is_absolute() else Path(ckpt_path).parent / pkl
