"""Command `export`: the split's training images, or a synthetic set, in another tool's dataset format."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from PIL import Image

from ..config import Config, Rep
from ..data.synthetic import folder_name, read_synthetic
from ..errors import ConfigError, DataError
from ..gans.official import official_resolution, write_dataset_zip
from ..progress import echo
from .layout import paths
from .records import SAMPLES, SPLIT, require_stage, up_to_date
from .split import load_split_data, run_split

EXPORT_FORMATS = ("imagefolder", "zip", "stylegan2-ada")
EXPORT_WHAT = ("train", "fakes")
CHUNK = 1024  # images turned into PNGs at a time (a synthetic set is memory-mapped, not read whole)


def run_export(cfg: Config, fmt: str = "stylegan2-ada", out: Optional[Path] = None, *, what: str = "train",
               generator: Optional[str] = None, gan_seed: Optional[int] = None, force: bool = False) -> Path:
    """Write the split's training images (`what="train"`, only those) or a synthetic set (`"fakes"`) as `fmt`.

    imagefolder: `<out>/<class name>/<index>.png` (torchvision's ImageFolder layout), `zip`: the same tree in a zip;
    stylegan2-ada: the zip NVlabs' dataset_tool.py makes, for `train.py --data=... --cond=1`, labels the class
    indices (names in the printed legend). Fakes carry their hard labels (the class each was drawn for). The
    output is written beside itself under a temporary name and renamed into place, so an error or Ctrl-C leaves
    nothing half-written; an existing one is replaced only with `force`.

    Args:
        generator: with `what="fakes"`, the name under `generators:` (default: the config's one generator).
        gan_seed: with `what="fakes"` and `gan_seeds`, which GAN replicate (default: the first).
    """
    # Check everything before any work.
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format '{fmt}' is unknown; use one of {', '.join(EXPORT_FORMATS)}")
    if what not in EXPORT_WHAT:
        raise ConfigError(f"--what '{what}' is unknown; use train (the split's training images) or fakes")
    if what == "train" and (generator is not None or gan_seed is not None):
        raise ConfigError("--generator and --gan-seed pick a synthetic set; give them with --what fakes")
    rep = _rep(cfg, generator, gan_seed) if what == "fakes" else None
    path = Path(out) if out is not None else default_output(cfg, fmt, rep)
    if rep is not None:
        require_stage(cfg, SAMPLES, rep)  # no fakes yet: one line naming `ganaug sample -c <the config>`
    _check_output(cfg, path, force)

    # Load the images.
    if rep is None:
        if not up_to_date(cfg, SPLIT):  # no split yet: make it (the export needs to know which images are training images)
            run_split(cfg)
        data, _ = load_split_data(cfg)
        images, labels, classes = data.train.images, data.train.labels, list(data.classes)
        kind = "training images"
    else:
        images, labels, meta = read_synthetic(paths(cfg).samples(rep))
        classes = list(meta["classes"])
        if labels.dim() == 2:  # class probabilities: the hard label is the likeliest class
            labels = labels.argmax(1)
        labels = labels.to(torch.int64)
        kind = "fakes" + (f" of generator '{rep.generator}'" if rep.generator else "") + (
            f" (GAN seed {rep.seed})" if rep.seed is not None else "")

    folders = [folder_name(c) for c in classes]
    if fmt != "stylegan2-ada" and len(set(folders)) != len(folders):
        raise DataError(f"class names {classes} give the same folder name twice ({', '.join(folders)}); rename the classes")

    # Write.
    with _staged(path, folder=fmt == "imagefolder") as tmp:
        if fmt == "stylegan2-ada":
            write_dataset_zip(images, labels, tmp)
        elif fmt == "zip":
            with open(tmp, "wb") as f:
                with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:  # PNGs: already compressed
                    for name, png in _pngs(images, labels, folders):
                        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same images, same bytes
                        info.external_attr = 0o644 << 16
                        zf.writestr(info, png)
                f.flush()
                os.fsync(f.fileno())
        else:
            for name in folders:
                (tmp / name).mkdir()
            for name, png in _pngs(images, labels, folders):
                (tmp / name).write_bytes(png)

    c, h, w = (int(s) for s in images.shape[1:])
    counts = torch.bincount(labels, minlength=len(classes)).tolist()
    per_class = f"{counts[0]} per class" if len(set(counts)) == 1 else ", ".join(map(str, counts)) + " per class"
    side = official_resolution(h) if fmt == "stylegan2-ada" else h
    echo(f"export: {len(labels)} {kind} ({per_class}, {len(classes)} classes) of {c}x{h}x{w}"
         f"{f', resized to {side}x{side} (the official loader needs a power of two)' if side != h else ''} -> {path}")
    if fmt == "stylegan2-ada":
        shown = ", ".join(f"{i} = {name}" for i, name in enumerate(classes[:20]))
        echo(f"export: labels {shown}{', ...' if len(classes) > 20 else ''}")
    return path


def default_output(cfg: Config, fmt: str, rep: Optional[Rep]) -> Path:
    """`<out_dir>/export/`: train/ or train.zip (stylegan2-ada.zip), fakes[-NAME][-seed-N]/ or .zip (...-stylegan2-ada.zip)."""
    base = "train" if rep is None else "-".join(
        ["fakes"] + ([rep.generator] if rep.generator else []) + ([f"seed-{rep.seed}"] if rep.seed is not None else []))
    name = {"imagefolder": base, "zip": f"{base}.zip",
            "stylegan2-ada": "stylegan2-ada.zip" if rep is None else f"{base}-stylegan2-ada.zip"}[fmt]
    return paths(cfg).root / "export" / name


def _rep(cfg: Config, generator: Optional[str], gan_seed: Optional[int]) -> Rep:
    """The generator replicate whose synthetic set to export."""
    names = list(cfg.generators or {})
    if generator is None and len(names) > 1:
        raise ConfigError(f"the config has {len(names)} generators ({', '.join(names)}); "
                          "pick the one whose fakes to export with --generator NAME")
    if generator is None:
        generator = names[0] if names else None
    elif generator not in names:
        raise ConfigError(f"--generator {generator}: " + (f"no such generator under generators: ({', '.join(names)})"
                          if names else "the config has one gan:, not several generators:; leave --generator out"))
    seeds = cfg.gan_replicates  # [None]: the one GAN of gan.seed
    if gan_seed is None or gan_seed in seeds:
        return Rep(generator, seeds[0] if gan_seed is None else gan_seed)
    own = cfg.gen(generator).seed
    if seeds == [None] and gan_seed == own:
        return Rep(generator, None)
    known = f"gan seed {own} (the config sets no gan_seeds)" if seeds == [None] else \
        "gan seeds " + ", ".join(map(str, seeds))
    raise ConfigError(f"--gan-seed {gan_seed}: the config trains {known}; pick one of those")


def _check_output(cfg: Config, path: Path, force: bool) -> None:
    """An existing output is replaced only with --force, and never when it is (or holds) part of the run folder."""
    if not (path.exists() or path.is_symlink()):
        return
    if not force:
        raise ConfigError(f"'{path}' already exists; give --force to replace it, or -o another path")
    root, target = paths(cfg).root.resolve(), path.resolve()
    if target == root or target in root.parents or (root in target.parents and root / "export" not in target.parents):
        raise ConfigError(f"--output '{path}' would replace the run folder or part of it; "
                          f"write under '{paths(cfg).root / 'export'}' or outside the run folder")


def _pngs(images: torch.Tensor, labels: torch.Tensor, folders: Sequence[str]) -> Iterator[Tuple[str, bytes]]:
    """('<class folder>/<index>.png', PNG bytes) for each image, numbered within its class in set order."""
    counts = torch.bincount(labels, minlength=len(folders)).tolist()
    digits = max(5, len(str(max(counts, default=1) - 1)))  # five, as the sample stage's PNG tree, or what it takes
    seen: List[int] = [0] * len(folders)
    for start in range(0, len(images), CHUNK):
        arrays = images[start:start + CHUNK].permute(0, 2, 3, 1).contiguous().numpy()
        for arr, y in zip(arrays, labels[start:start + CHUNK].tolist()):
            buf = io.BytesIO()
            Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buf, format="png")
            yield f"{folders[y]}/{seen[y]:0{digits}d}.png", buf.getvalue()
            seen[y] += 1


@contextlib.contextmanager
def _staged(path: Path, folder: bool) -> Iterator[Path]:
    """A temporary file (or folder) beside `path` to write into; when the block ends it takes `path`'s place (an
    existing one is removed only then). An error or Ctrl-C removes it and leaves `path` as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if folder:
            tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; give it a plain mkdir's permissions
        else:
            tmp.chmod(0o666 & ~_umask())
        if (path.exists() or path.is_symlink()) and (path.is_dir() or folder):  # a folder cannot be renamed over
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
