"""The one place config is read, merged (defaults -> YAML -> --set a.b=v), typed and validated.

A config becomes a tree of dataclasses before any work starts. Unknown keys, wrong types and values out
of range are ConfigErrors that name the key; nothing downstream re-checks what is checked here.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, NamedTuple, Optional, Sequence, Union

import yaml

from .errors import ConfigError

# ----------------------------------------------------------------------------------------------------
# The schema. Field defaults are the defaults; `metadata={"key": ...}` renames a field in YAML.


@dataclass
class DataConfig:
    source: str = "mnist-5k"
    root: Optional[str] = None  # folder of an imagefolder source, or where torchvision sets live
    resolution: Optional[int] = None  # None: the source's own size (imagefolder needs one)
    channels: Optional[int] = None  # 1 or 3; None: the source's own
    bad_images: Literal["error", "skip"] = "error"  # imagefolder: stop at, or skip and list, unreadable files
    label_regex: Optional[str] = None  # imagefolder: labels from file names (group 'label' or the first group)
    download: bool = True  # torchvision sets: try to download when the files are missing
    intensity: Optional[Literal["dtype", "minmax", "percentile"]] = None  # 16/32-bit images to 0..255: by type [dtype]
    workers: Optional[int] = None  # imagefolder: decoding processes [min(4, CPUs)]
    cache: Optional[str] = None  # imagefolder: where decoded tensors are kept [<run folder>/cache]
    max_image_pixels: Optional[int] = None  # imagefolder: Pillow's decompression-bomb limit [Pillow's, 89,478,485]


@dataclass
class ShrinkConfig:
    class_: Union[int, str] = field(default=0, metadata={"key": "class"})  # class index or name
    keep: float = 0.1  # fraction of that class's training images kept


@dataclass
class SplitConfig:
    n_per_class: Optional[int] = None  # N random training images per class (the default, 100)
    first_per_class: Optional[int] = None  # the first N per class in source order
    fraction: Optional[float] = None  # this fraction of every class
    val_per_class: int = 50  # real validation images per class, for model selection
    test_per_class: Optional[int] = None  # None: every image left over (or the official test set)
    test_after: Optional[int] = None  # test images come after this many training images per class [n_per_class]
    official_test: bool = True  # use the source's own test partition as the test pool when it has one
    shrink: Optional[ShrinkConfig] = None
    seed: int = 0


@dataclass
class GeneratorConfig:
    """The keys every generator family reads; each family's schema (beside its builder in `gans/`) extends it.

    Keys left out (None) are filled from the family's defaults (a preset) when the config is loaded, so the
    saved config.yaml holds every number used.
    """

    name: str = "cgan"
    epochs: int = 100
    kimg: Optional[float] = None  # length in thousands of real images seen (each class's, if per_class)
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    betas: Optional[List[float]] = None  # Adam's
    ema_kimg: Optional[float] = None  # half-life of the generator's moving average, in thousands of images; 0: off
    mirror: bool = False  # x-flip real images at random (only for data whose classes survive a flip)
    seed: int = 0
    eval_every: Optional[int] = None  # epochs between FID/KID of G_ema on the validation images (domain features)
    select: Optional[Literal["last", "best-fid"]] = None  # keep the last G_ema (default) or the one of lowest val FID
    grid_every: int = 10  # epochs between fixed-noise sample grids
    amp: Literal["auto", "bf16", "off"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"


@dataclass
class GanConfig(GeneratorConfig):
    """The keys of the families trained against a discriminator: the latent, and what D's inputs go through."""

    z_dim: Optional[int] = None
    augment: Optional[Literal["ada", "diffaugment", "fixed", "none"]] = None  # what D's inputs go through
    augment_p: Optional[float] = None  # fixed: the probability; ada: where p starts (0); diffaugment: per op (1)
    ada_target: Optional[float] = None  # ada: the target of r_t = E[sign(D(real))]
    ada_interval: Optional[int] = None  # ada: minibatches between adjustments of p
    ada_kimg: Optional[float] = None  # ada: thousands of images over which p can go from 0 to 1
    augpipe: Optional[str] = None  # ada/fixed: the operations (bgc, bg, blit, geom, color)
    diffaugment: Optional[str] = None  # diffaugment: its policy, e.g. color,translation,cutout


def family_schema(name: str) -> type:
    """The config schema a generator family registered (`@register_gan(name, config=...)`)."""
    from .gans import GANS

    GANS.check(name, "config key 'gan.name'")
    return GANS.meta(name).get("config", GanConfig)


def default_gan() -> GeneratorConfig:
    return family_schema("cgan")()


class Rep(NamedTuple):
    """One trained generator: which of the config's generators (None: the one `gan:`), and its seed (None: gan.seed)."""

    generator: Optional[str] = None
    seed: Optional[int] = None


@dataclass
class FilterConfig:
    """Keep only the fakes the domain classifier (trained on real training images) gives their own label with at
    least this confidence, sampling more until each class has n_per_class (at most max_draws times as many)."""

    min_confidence: float = 0.9
    max_draws: float = 10.0


@dataclass
class SampleConfig:
    n_per_class: int = 1000
    proportions: Literal["balanced", "real"] = "balanced"  # real: in the training set's class proportions
    seed: int = 0
    batch_size: int = 500
    png: bool = True  # also write an ImageFolder tree of PNGs
    grid_per_class: int = 8
    truncation: Optional[float] = None  # stylegan2: psi toward the class's mean w (1 or None: none)
    guidance: Optional[float] = None  # diffusion: classifier-free guidance scale (0: unconditional, 1: conditional) [1.5]
    steps: Optional[int] = None  # diffusion: DDIM steps [20]
    filter: Optional["FilterConfig"] = None  # keep only fakes a classifier of real images recognises
    chunk_size: Optional[int] = None  # images generated and written at a time [16384]; changes no image


@dataclass
class ClassifierConfig:
    name: str = "small-cnn"
    steps: int = 3000
    batch_size: int = 128
    lr: float = 0.001
    weight_decay: float = 0.0005
    width: int = 32
    schedule: Literal["cosine", "constant"] = "cosine"
    eval_every: int = 100  # steps between validation passes (real validation images only)
    amp: Literal["auto", "bf16", "off"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    pretrained: bool = False  # start from ImageNet weights (torchvision's, or the family's local file) and fine-tune
    weights: Optional[str] = None  # a local ImageNet weights file (state_dict) to start from instead
    input_size: Optional[int] = None  # with ImageNet weights: images are resized to this side [224]


@dataclass
class AugmentConfig:
    """Classic augmentation, drawn per sample."""

    hflip: Optional[bool] = None  # None: the source's default (no flips for digits)
    degrees: float = 10.0
    translate: float = 0.1  # fraction of the image size
    scale: List[float] = field(default_factory=lambda: [0.9, 1.1])
    brightness: float = 0.2
    contrast: float = 0.0
    mixup_alpha: Optional[float] = None  # arms with label_mix: mixup: lambda ~ Beta(alpha, alpha) [1.0, torchvision's]
    cutmix_alpha: Optional[float] = None  # label_mix: cutmix [1.0]


AUGMENT_KINDS = ("none", "classic", "trivialaugment", "randaugment", "autoaugment")


@dataclass
class MixConfig:
    p_real: Optional[float] = None  # each batch sample stays real with this probability, else a fake of its class
    add: Optional[int] = None  # this many fakes per class added to the real training set
    balance: bool = False  # fakes added to each class up to the largest class's real count (imbalanced data)


@dataclass
class ArmConfig:
    name: str = "real"
    data: Literal["real", "synthetic", "mixed"] = "real"
    mix: Optional[MixConfig] = None
    # classic: flips/affine/colour drawn per sample; or torchvision's policies, drawn per sample
    augment: Literal["none", "classic", "trivialaugment", "randaugment", "autoaugment"] = "none"
    label_mix: Optional[Literal["mixup", "cutmix"]] = None  # MixUp or CutMix of images and labels, per sample
    generator: Optional[str] = None  # with several generators: whose fakes (the name under generators:)
    oversample: bool = False  # draw training images class-balanced (random oversampling of small classes)

    @property
    def uses_synthetic(self) -> bool:
        return self.data != "real"

    @property
    def augmented(self) -> bool:
        return self.augment != "none" or self.label_mix is not None


@dataclass
class SweepConfig:
    """A grid over one key, drawn as accuracy against it with confidence bands.

    An arm key (mix.p_real, mix.add) adds one arm per value to the experiment. An experiment key
    (classifier.steps) makes one sub-experiment per value, with all the config's arms, in
    `<out_dir>/sweep/<key>=<value>/`: each its own table, correction family and audit.
    """

    key: str = "mix.p_real"  # mix.p_real, mix.add (arms), or an experiment key (split.n_per_class, gan.epochs, ...)
    values: Union[List[float], str, float] = "0:1:0.1"  # a list, or 'start:stop:step' (quoted in YAML; stop included)
    augment: Literal["none", "classic"] = "none"  # classic augmentation on every swept arm
    inner: Optional["InnerSweepConfig"] = None  # an experiment sweep: an arm sweep inside each sub-experiment


@dataclass
class InnerSweepConfig:
    """The second key of a two-key sweep: an arm key swept inside every sub-experiment (one curve per value)."""

    key: str = "mix.p_real"
    values: Union[List[float], str, float] = "0:1:0.25"
    augment: Literal["none", "classic"] = "none"


@dataclass
class CompareConfig:
    """How `compare` turns replicates into a verdict."""

    confidence: float = 0.95  # level of every interval
    alpha: float = 0.05  # significance level of the verdicts, after the correction
    correction: Literal["holm", "bonferroni", "none"] = "holm"  # for the number of arms compared with the baseline
    audit: bool = True  # check the protocol (no fakes in val/test, GAN saw only train images, equal budgets ...)
    power: float = 0.8  # a "no detectable difference" says what difference it would have caught with this power
    target_difference: float = 0.01  # ... and how many seeds this difference in accuracy (1 point) would need


@dataclass
class DomainConfig:
    """The domain feature extractor: a small CNN trained on the real training split only (no selection)."""

    steps: int = 800
    width: int = 16  # features are 4 x width wide
    batch_size: int = 64
    lr: float = 0.002
    seed: int = 0


@dataclass
class EvaluateConfig:
    """Sample quality of every synthetic set against the real test images (`ganaug evaluate`)."""

    enabled: bool = True  # `run` evaluates every synthetic set it makes
    features: str = "domain"  # domain, inception, or a torchvision model name (resnet50, efficientnet_b0, ...)
    inception_weights: Optional[str] = None  # the TorchScript inception-2015-12-05.pt (else the usual caches)
    weights: Optional[str] = None  # a torchvision extractor's local weights file (else torchvision downloads them)
    max_images: Optional[int] = None  # at most this many images per real set (and so per fake set); a CPU cap
    kid_subsets: int = 100
    k_pr: int = 3  # nearest neighbours for precision and recall (Kynkaanniemi et al.)
    k_dc: int = 5  # for density and coverage (Naeem et al.)
    copy_quantile: float = 0.05  # a fake is 'close' when nearer a training image than all but this share of test images
    copy_shift: int = 2  # the copy search aligns every shift of up to this many pixels (ADA's and DiffAugment's copies)
    copy_mirror: Optional[bool] = None  # ... and mirrored images; None: when the generator's training could flip
    copy_ratio: float = 1 / 3  # Gu et al.: memorised when the nearest training image is this much nearer than the second
    copy_alpha: float = 0.01  # the copy flag's false-alarm rate (Holm over every criterion, space and class)
    closest_pairs: int = 16  # fake / nearest-training-image pairs drawn in closest.png
    seed: int = 0
    domain: DomainConfig = field(default_factory=DomainConfig)


@dataclass
class CheckpointConfig:
    """Resumable checkpoints of GAN and classifier training (they never change a result, so no fingerprint
    includes them): every `every_steps` optimizer steps and every `every_minutes`, whichever comes first."""

    every_steps: Optional[int] = 1000  # None: only on the time interval
    every_minutes: Optional[float] = 10.0  # None: only every every_steps
    keep: int = 2  # the newest K are kept; older ones are deleted after a new one is safely on disk


@dataclass
class SlurmConfig:
    """Slurm jobs through submitit: the sbatch settings of every cell's job (the run folder must be on a file
    system the compute nodes share: cells read their inputs from it and write their folders into it)."""

    partition: Optional[str] = None
    time_min: int = 60  # each cell's wall-time limit
    mem_gb: Optional[float] = 8.0
    gpus_per_node: Optional[int] = None  # default: executor.gpus rounded up
    account: Optional[str] = None
    qos: Optional[str] = None
    setup: List[str] = field(default_factory=list)  # shell lines before each cell (module load, conda activate)
    array_parallelism: Optional[int] = None  # at most this many cells of one array job at once
    cluster: Optional[Literal["slurm", "local", "debug"]] = None  # submitit's: None finds Slurm; local runs jobs here
    poll_seconds: float = 10.0


@dataclass
class ExecutorConfig:
    """Where the experiment's cells run (`ganaug run --executor`). Never part of a fingerprint. A CPU cell's numbers
    depend on its torch threads (torch's CPU kernels split their sums by thread), so each cell's threads come from
    here, the same in every executor: the table does not depend on where it ran."""

    name: str = "serial"  # serial, local (processes here), ray, slurm
    workers: Optional[int] = None  # local: processes [cores // clf_threads]; ray: the CPUs of a local Ray [cores]
    threads: Optional[int] = None  # torch threads of the split, features, GAN, sample and evaluate cells [this machine's
    #   cores; executor.cpus on a Ray cluster or Slurm]
    clf_threads: int = 1  # torch threads of each classifier run, in every executor and in `ganaug train-clf`
    address: Optional[str] = None  # ray: a cluster's address, or auto; None starts a local Ray
    cpus: int = 1  # ray / slurm: CPUs per cell
    gpus: float = 0.0  # ray / slurm: GPUs per generator cell
    clf_gpus: Optional[float] = None  # per classifier cell; a fraction (0.25) packs several on one GPU [gpus]
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


@dataclass
class Config:
    name: str = "experiment"
    out_dir: str = "runs/experiment"
    device: str = "auto"  # auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps
    reproducible: Literal["default", "strict"] = "default"  # strict: x86 CPU math pinned to AVX2 (ATen, oneDNN,
    #   oneMKL) so CPUs of different generations print the same table; never part of a fingerprint (provenance.py)
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    gan: GeneratorConfig = field(default_factory=default_gan)
    generators: Optional[Dict[str, GeneratorConfig]] = None  # several generators, by name; gan: is the one-generator form
    sample: SampleConfig = field(default_factory=SampleConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    arms: List[ArmConfig] = field(default_factory=lambda: [ArmConfig()])
    seeds: List[int] = field(default_factory=lambda: [0])
    gan_seeds: Optional[List[int]] = None  # independent GANs; replicate i (seeds[i]) uses gan_seeds[i % len]
    sweep: Optional[SweepConfig] = None  # extra arms: one per swept value
    baseline: Optional[str] = None  # arm the others are compared with; None: the first real, unaugmented arm
    compare: CompareConfig = field(default_factory=CompareConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    # Not a YAML key: the run folder whose split, GAN and samples this one reads (a sub-experiment of a sweep
    # over a classifier key shares its parent's, since their fingerprints are the same).
    upstream_dir: Optional[str] = field(default=None, metadata={"internal": True})
    # Not a YAML key: the file this config was read from, so messages can name the command to run next.
    config_path: Optional[str] = field(default=None, metadata={"internal": True})

    @property
    def all_arms(self) -> List[ArmConfig]:
        """The listed arms, then the sweep's (an experiment sweep adds sub-experiments, not arms)."""
        if self.sweep is None or sweep_key(self.sweep.key) in EXPERIMENT_SWEEP_KEYS:
            return list(self.arms)
        return list(self.arms) + sweep_arms(self.sweep)

    @property
    def experiment_sweep(self) -> bool:
        return self.sweep is not None and sweep_key(self.sweep.key) in EXPERIMENT_SWEEP_KEYS

    def gan_seed_of(self, seed: int) -> Optional[int]:
        """The GAN a classifier replicate uses: None with one GAN (gan.seed), else its gan_seeds entry."""
        if not self.gan_seeds:
            return None
        if seed not in self.seeds:
            raise ConfigError(f"seed {seed} is not in seeds {self.seeds}; with gan_seeds, a replicate's GAN is "
                              "given by its position in seeds, so add it there")
        return self.gan_seeds[self.seeds.index(seed) % len(self.gan_seeds)]

    @property
    def generator_names(self) -> List[Optional[str]]:
        """The generators to train: [None] for the one `gan:`, else the names under `generators:`."""
        return [None] if not self.generators else list(self.generators)

    def gen(self, name: Optional[str]) -> GeneratorConfig:
        return self.gan if name is None else self.generators[name]  # type: ignore[index]

    @property
    def replicates(self) -> List[Rep]:
        """Every generator to train: each generator once per GAN seed the replicates use."""
        return [Rep(n, g) for n in self.generator_names for g in self.gan_replicates]

    def arm_generator(self, arm: "ArmConfig") -> Optional[str]:
        """The generator whose fakes an arm uses (its `generator:`, else the only one)."""
        if arm.generator is not None or not self.generators:
            return arm.generator
        return next(iter(self.generators))

    def rep_of(self, arm: "ArmConfig", seed: int) -> Rep:
        """The generator replicate an arm's run with this classifier seed draws its fakes from."""
        return Rep(self.arm_generator(arm), self.gan_seed_of(seed))

    @property
    def gan_replicates(self) -> List[Optional[int]]:
        """Every GAN to train: [None] for the one GAN of gan.seed, else the gan seeds the replicates use."""
        if not self.gan_seeds:
            return [None]
        return sorted({self.gan_seed_of(s) for s in self.seeds})  # type: ignore[type-var]

    @property
    def baseline_arm(self) -> Optional[str]:
        if self.baseline is not None:
            return self.baseline
        for arm in self.arms:
            if arm.data == "real" and not arm.augmented:
                return arm.name
        return None


# ----------------------------------------------------------------------------------------------------
# Sweeps: one arm per value of an arm key.

SWEEP_KEYS = {"mix.p_real": "p_real", "mix.add": "add"}
# Keys outside the arms: one sub-experiment per value. `shares_upstream`: the key cannot change the split,
# the GAN or the samples, so every sub-experiment reads the parent's.
EXPERIMENT_SWEEP_KEYS: Dict[str, Dict[str, Any]] = {
    "classifier.steps": {"integer": True, "minimum": 1, "shares_upstream": True, "label": "classifier steps (the budget)"},
    "split.n_per_class": {"integer": True, "minimum": 1, "shares_upstream": False, "label": "real training images per class"},
    "split.fraction": {"integer": False, "minimum": 1e-9, "maximum": 1.0, "shares_upstream": False,
                       "label": "share of the pool used for training"},
    "gan.epochs": {"integer": True, "minimum": 1, "shares_upstream": False, "generator": True, "label": "generator epochs"},
    "gan.kimg": {"integer": False, "minimum": 1e-9, "shares_upstream": False, "generator": True,
                 "label": "generator training length (kimg)"},
    "gan.lr": {"integer": False, "minimum": 1e-12, "shares_upstream": False, "generator": True,
               "label": "generator learning rate"},
}
_MAX_SWEEP_VALUES = 200


def sweep_key(key: str) -> str:
    """The canonical key: an experiment key as written, or the arm key for 'classifier.mix.p_real',
    'arm.mix.p_real', 'mix.p_real' or 'p_real'."""
    k = key.strip()
    if k in EXPERIMENT_SWEEP_KEYS:
        return k
    for prefix in ("classifier.", "arms.", "arm."):
        if k.startswith(prefix):
            k = k[len(prefix):]
    if k in ("p_real", "add"):
        k = "mix." + k
    if k not in SWEEP_KEYS:
        raise ConfigError(f"config key 'sweep.key' is {key!r}; a sweep varies an arm key ({' or '.join(SWEEP_KEYS)}, "
                          f"also written classifier.mix.p_real) or an experiment key ({', '.join(EXPERIMENT_SWEEP_KEYS)})")
    return k


def sweep_dir_name(key: str, value: float) -> str:
    return f"{key}={value:g}"


def sweep_experiments(cfg: "Config") -> List[tuple[float, "Config"]]:
    """(value, config) per value of an experiment sweep: the config with the key set, no sweep, its own out_dir."""
    assert cfg.sweep is not None and cfg.experiment_sweep
    key = sweep_key(cfg.sweep.key)
    spec = EXPERIMENT_SWEEP_KEYS[key]
    out = []
    for x in sweep_values(cfg.sweep):
        value: Any = int(round(x)) if spec["integer"] else x
        data = to_dict(cfg)
        inner = cfg.sweep.inner
        data["sweep"] = None if inner is None else {"key": inner.key, "values": inner.values, "augment": inner.augment}
        data["out_dir"] = str(Path(cfg.out_dir) / "sweep" / sweep_dir_name(key, x))
        data["name"] = f"{cfg.name} [{key}={x:g}]"
        if key == "split.n_per_class":  # the other ways of sizing the training part give way to the swept one;
            # the test images start after the largest value's training images, so every value scores the same ones
            data["split"].update(fraction=None, first_per_class=None, test_after=int(max(sweep_values(cfg.sweep))))
        elif key == "split.fraction":
            data["split"].update(n_per_class=None, first_per_class=None)
        apply_override(data, key.split("."), value)
        sub = config_from_dict(data)
        sub.upstream_dir = cfg.upstream_dir or cfg.out_dir if spec["shares_upstream"] else None
        out.append((x, sub))
    return out


def sweep_values(sweep: SweepConfig) -> List[float]:
    """The swept values: a list as given, or 'start:stop:step' with the stop included."""
    v = sweep.values
    if isinstance(v, float):
        return [v]
    if isinstance(v, list):
        out = [float(x) for x in v]
    else:
        text = v.strip()
        try:
            if ":" in text:
                start, stop, step = (float(t) for t in text.split(":"))
                if step <= 0 or stop < start:
                    raise ValueError
                n = int(round((stop - start) / step))
                if n + 1 > _MAX_SWEEP_VALUES:  # before building the list: '0:1:1e-9' would be a billion values
                    raise ConfigError(f"config key 'sweep.values' is {v!r}, which gives {n + 1} values; "
                                      f"{_MAX_SWEEP_VALUES} at most, so raise the step or narrow the range")
                out = [round(start + i * step, 10) for i in range(n + 1)]
                out = [x for x in out if x <= stop + 1e-9]
            else:
                out = [float(t) for t in text.split(",") if t.strip()]
        except (ValueError, OverflowError):  # OverflowError: an infinite start, stop or step
            raise ConfigError(f"config key 'sweep.values' is {v!r}; write 'start:stop:step' with step > 0 and "
                              "stop >= start (e.g. '0:1:0.1'), a comma list, or a YAML list") from None
    if not out:
        raise ConfigError("config key 'sweep.values' is empty; give at least one value")
    return out


def sweep_arms(sweep: SweepConfig) -> List[ArmConfig]:
    """The arms a sweep adds, named '<key>-<value>' (plus '-aug' with classic augmentation)."""
    key = sweep_key(sweep.key)
    short = SWEEP_KEYS[key]
    arms = []
    for x in sweep_values(sweep):
        mix = MixConfig(p_real=x) if short == "p_real" else MixConfig(add=int(round(x)))
        name = f"{short}-{x:g}" if short == "p_real" else f"{short}-{int(round(x))}"
        arms.append(ArmConfig(name=name + ("-aug" if sweep.augment == "classic" else ""), data="mixed", mix=mix,
                              augment=sweep.augment))
    return arms


def sweep_value(arm: Dict[str, Any], key: str) -> Optional[float]:
    """The value of a swept key in an arm's plain-data form (a result.json's arm_config)."""
    mix = arm.get("mix") or {}
    v = mix.get(SWEEP_KEYS[sweep_key(key)])
    return None if v is None else float(v)


# ----------------------------------------------------------------------------------------------------
# Dict <-> dataclass conversion with key-naming errors.


def _yaml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _join(prefix: str, key: Union[str, int]) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Union:
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, List):
        return "a list"
    if origin in (dict, Dict):
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return _TYPE_WORDS.get(tp, getattr(tp, "__name__", str(tp)))


def _owners(key: str) -> List[str]:
    """The generator families whose schema has `key`."""
    from .gans import GANS

    return [n for n in GANS.names() if key in {_yaml_key(f) for f in dataclasses.fields(family_schema(n))}]


class _Coerce:
    """Turns plain YAML data into the schema's dataclasses, naming the key of the first mismatch."""

    def __init__(self, where: Dict[str, str]):
        self.where = where  # key -> where it was set (file or --set), for messages

    def _origin(self, key: str) -> str:
        for k, src in self.where.items():  # set at this key, above it, or (an unknown key) below it by --set
            if k and (key == k or key.startswith(k + ".") or key.startswith(k + "[") or k.startswith(key + ".")):
                return f" (from {src})"
        return f" (in {self.where['']})" if "" in self.where else ""

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"config key '{key}' {msg}{self._origin(key)}")

    def dataclass(self, cls: type, value: Any, key: str) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(key or "<top level>", f"must be a mapping of keys to values, got {value!r}")
        fields = {_yaml_key(f): f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        hints = typing.get_type_hints(cls)
        if issubclass(cls, GeneratorConfig):
            value = {k: v for k, v in value.items() if k in fields or v is not None}  # null: another family's key, unset
        for k in value:
            if k not in fields:
                full = _join(key, str(k))
                owners = _owners(str(k)) if issubclass(cls, GeneratorConfig) else []
                if owners:
                    raise ConfigError(f"config key '{full}' applies to {', '.join(owners)}, not {value.get('name', 'cgan')}"
                                      f"{self._origin(full)}; remove it, or set {_join(key, 'name')} to one of those")
                close = difflib.get_close_matches(str(k), list(fields), n=3)
                hint = (
                    f"; did you mean {' or '.join(repr(_join(key, c)) for c in close)}?"
                    if close
                    else f"; known keys here: {', '.join(fields)}"
                )
                err = ConfigError(f"unknown config key '{full}'{self._origin(full)}{hint}")
                raise err
        kwargs = {}
        for yk, f in fields.items():
            if yk in value:
                kwargs[f.name] = self.value(hints[f.name], value[yk], _join(key, yk))
        return cls(**kwargs)

    def value(self, tp: Any, v: Any, key: str) -> Any:
        origin = typing.get_origin(tp)
        if origin is Union:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if v is None:
                if len(args) < len(typing.get_args(tp)):
                    return None
                raise self.fail(key, f"must be {_describe(tp)}, not empty")
            errors = []
            for a in args:
                try:
                    return self.value(a, v, key)
                except ConfigError as e:
                    errors.append(e)
            if len(args) == 1:
                raise errors[0]
            raise self.fail(key, f"must be {_describe(tp)}, got {v!r}")
        if origin is Literal:
            choices = typing.get_args(tp)
            if v not in choices:
                close = difflib.get_close_matches(str(v), [str(c) for c in choices], n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise self.fail(key, f"must be one of {', '.join(repr(c) for c in choices)}, got {v!r}{hint}")
            return v
        if origin in (list, List):
            (item_tp,) = typing.get_args(tp)
            if not isinstance(v, (list, tuple)):
                hint = f"; write a list in brackets: [{v}]" if isinstance(v, str) and "," in v else ""
                raise self.fail(key, f"must be a list, got {v!r}{hint}")
            return [self.value(item_tp, x, _join(key, i)) for i, x in enumerate(v)]
        if origin in (dict, Dict):
            _, item_tp = typing.get_args(tp)
            if not isinstance(v, dict) or not v:
                raise self.fail(key, f"must be a mapping of names to sections, got {v!r}")
            return {str(k): self.value(item_tp, x, _join(key, str(k))) for k, x in v.items()}
        if tp is GeneratorConfig:  # a family's own schema, chosen by its name
            name = v.get("name", "cgan") if isinstance(v, dict) else "cgan"
            if not isinstance(name, str):
                raise self.fail(_join(key, "name"), f"must be a generator family's name, got {name!r}")
            from .gans import GANS

            GANS.check(name, f"config key '{_join(key, 'name')}'")
            return self.dataclass(family_schema(name), v, key)
        if dataclasses.is_dataclass(tp):
            return self.dataclass(tp, v, key)
        if tp is bool:
            if isinstance(v, bool):
                return v
        elif tp is int:
            if isinstance(v, int) and not isinstance(v, bool):
                return v
            if isinstance(v, float) and v.is_integer():
                return int(v)
        elif tp is float:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
            if isinstance(v, str):  # PyYAML reads 2e-4 (no dot) as a string
                try:
                    return float(v)
                except ValueError:
                    pass
        elif tp is str:
            if isinstance(v, str):
                return v
        else:  # pragma: no cover - schema types are all handled above
            raise TypeError(f"unsupported schema type {tp!r}")
        raise self.fail(key, f"must be {_describe(tp)}, got {v!r} ({type(v).__name__})")


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain data with YAML key names, ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj):
        return {_yaml_key(f): to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if not f.metadata.get("internal")}
    if isinstance(obj, (list, tuple)):
        return [to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _canonical(obj: Any) -> Any:
    """Plain data without the keys that are off (None or false), so a key added later with an off default
    leaves every earlier fingerprint, and the runs they identify, valid."""
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in obj.items() if v is not None and v is not False}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    return obj


# Keys that cannot change a stage's result: how often grids or snapshots are written, whether a missing data
# set may be downloaded. A fingerprint hashes them at their default, like the keys a family does not read.
COSMETIC_KEYS = {"gan": ("grid_every", "snap"), "data": ("download", "workers", "cache", "max_image_pixels"), "classifier": (),
                 "sample": ("chunk_size",),
                 "evaluate": ("enabled", "closest_pairs")}


def _pinned(obj: Any, unused: Sequence[str]) -> Dict[str, Any]:
    """A config section as plain data with `unused` keys at their schema default (so they change no hash).

    Pinning rather than dropping keeps every fingerprint made before a key was known to be unused as it was,
    and with it the run folders it identifies.
    """
    defaults = {_yaml_key(f): (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)  # type: ignore[misc]
                for f in dataclasses.fields(obj) if not f.metadata.get("internal")}
    return {k: (to_dict(defaults[k]) if k in unused else v) for k, v in to_dict(obj).items()}


# The gan section as one flat schema held it before each family had its own: every fingerprint made then hashed
# all of these keys. A family's section is hashed on top of them, so a family that lacks a key hashes its old
# default, and those fingerprints (and the run folders they name) stay valid.
LEGACY_GAN_KEYS: Dict[str, Any] = {
    "name": "cgan", "preset": None, "impl": None, "repo": None, "epochs": 100, "kimg": None, "batch_size": None,
    "z_dim": None, "lr": None, "betas": None, "width": 64, "channel_base": None, "channel_max": None, "w_dim": None,
    "mapping_layers": None, "mbstd_group": None, "r1_gamma": None, "r1_interval": None, "style_mixing": None,
    "per_class": False, "d_cond": "concat", "ema_kimg": None, "augment": None, "augment_p": None, "ada_target": None,
    "ada_interval": None, "ada_kimg": None, "augpipe": None, "diffaugment": None, "mirror": False, "gpus": None,
    "snap": None, "seed": 0, "eval_every": None, "select": None, "grid_every": 10, "amp": "auto", "channels_last": "auto",
}


def result_config(section: str, obj: Any) -> Dict[str, Any]:
    """A config section as its stage's fingerprint sees it: only the keys that can change the result."""
    unused = list(COSMETIC_KEYS.get(section, ()))
    if section == "gan":
        if obj.select in (None, "last"):  # evaluating during training only watches; it changes the result when it selects
            unused += ["eval_every", "select"]
        return {**LEGACY_GAN_KEYS, **{k: (LEGACY_GAN_KEYS.get(k) if k in unused else v) for k, v in to_dict(obj).items()}}
    if section == "classifier":
        from .classifiers import CLASSIFIERS

        unused += list(CLASSIFIERS.meta(obj.name).get("ignores", ()))
    return _pinned(obj, unused)


def fingerprint(obj: Any) -> str:
    """A short stable hash of plain data or a dataclass tree (keys that are off do not count)."""
    blob = json.dumps(_canonical(to_dict(obj)), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------
# Reading and overriding.


def _yaml_value_error(e: Exception) -> str:
    """A short reason for an error PyYAML raised outside its own YAMLError."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e).strip("'\"") or type(e).__name__


def read_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a YAML mapping; a missing file or malformed YAML is a ConfigError with line and column."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist; pass an existing YAML file (see configs/)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file '{p}' cannot be read: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file '{p}' is not valid YAML{where}: {problem}; fix the file") from None
    except Exception as e:  # PyYAML's constructors raise plain errors for bad tagged scalars (2001-13-01, !!int x)
        raise ConfigError(f"config file '{p}' is not valid YAML: a value cannot be read ({_yaml_value_error(e)}); "
                          "fix the file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping of keys to values, not {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[Union[str, int]], Any]:
    """'a.b=value' -> (['a', 'b'], value), the value read as YAML ('seeds=[0,1,2]' gives a list)."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}' must look like key=value (e.g. --set gan.epochs=10)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set '{text}' has an empty key; write it like gan.epochs=10")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set '{text}': the value '{raw}' is not valid YAML; quote it or fix the brackets") from None
    except Exception as e:  # bad tagged scalars: 2001-13-01, !!int x
        raise ConfigError(f"--set '{text}': the value '{raw}' cannot be read ({_yaml_value_error(e)}); "
                          "quote it to keep it a string") from None
    # ASCII digits only: '²'.isdigit() is true but int('²') fails.
    path: list[Union[str, int]] = [int(p) if p.isascii() and p.isdigit() else p for p in key.split(".")]
    return path, value


def _key_text(path: Sequence[Union[str, int]]) -> str:
    out = ""
    for p in path:
        out = _join(out, p)
    return out


def apply_override(data: Dict[str, Any], path: Sequence[Union[str, int]], value: Any) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or not 0 <= part < len(node):
                raise ConfigError(f"--set {_key_text(path)}: index {part} is outside the list of {len(node)}")
            if node[part] is None:
                node[part] = {}
            if not isinstance(node[part], (dict, list)):  # seeds.0.x: seeds[0] is a number
                raise ConfigError(f"--set {_key_text(path)}: '{_key_text(path[:i + 1])}' holds a value, not a section")
            node = node[part]
            continue
        if isinstance(part, int):
            raise ConfigError(f"--set {_key_text(path)}: '{_key_text(path[:i])}' is not a list")
        child = node.get(part)
        if child is None:
            if part == "arms" and isinstance(nxt, int):
                child = [dataclasses.asdict(a) for a in Config().arms]
            else:
                child = {}
            node[part] = child
        if not isinstance(child, (dict, list)):
            raise ConfigError(f"--set {_key_text(path)}: '{_key_text(path[:i + 1])}' holds a value, not a section")
        node = child
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or not 0 <= last < len(node):
            raise ConfigError(f"--set {_key_text(path)}: index {last} is outside the list of {len(node)}")
        node[last] = value
    else:
        node[last] = value


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults -> YAML file -> `--set` overrides, typed and validated."""
    data = read_yaml(path) if path is not None else {}
    where = {"": str(path)} if path is not None else {}
    for text in overrides:
        keypath, value = parse_override(text)
        apply_override(data, keypath, value)
        where[_key_text(keypath)] = f"--set {text}"
    cfg = _Coerce(where).dataclass(Config, data, "")
    validate(cfg)
    cfg.config_path = str(path) if path is not None else None
    return cfg


def config_from_dict(data: Dict[str, Any]) -> Config:
    """A validated Config from plain data (a saved config.yaml or a checkpoint's copy)."""
    cfg = _Coerce({}).dataclass(Config, data, "")
    validate(cfg)
    return cfg


def arm_from_dict(data: Dict[str, Any]) -> ArmConfig:
    """An ArmConfig from plain data (a result.json's copy)."""
    arm = _Coerce({}).dataclass(ArmConfig, data, "arm")
    validate_arm(arm, "arm")
    return arm


def save_config(cfg: Config, path: Union[str, Path]) -> None:
    from .utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


# ----------------------------------------------------------------------------------------------------
# Validation of values and of keys that depend on each other.

_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"config key '{key}' {msg}")


def validate_arm(arm: ArmConfig, key: str) -> None:
    _need(bool(_ARM_NAME.match(arm.name)), f"{key}.name",
          f"must be a folder-safe name (letters, digits, . _ + -), got {arm.name!r}")
    if arm.data == "mixed":
        _need(arm.mix is not None, f"{key}.mix", "is needed for data: mixed; give p_real: P or add: K")
        assert arm.mix is not None
        _need(sum((arm.mix.p_real is not None, arm.mix.add is not None, arm.mix.balance)) == 1, f"{key}.mix",
              "must set exactly one of p_real (per-sample replacement), add (fakes per class) or balance: true "
              "(fakes up to the largest class)")
        if arm.mix.p_real is not None:
            _need(0.0 <= arm.mix.p_real <= 1.0, f"{key}.mix.p_real",
                  f"must be between 0 and 1 (the share of real images per batch), got {arm.mix.p_real}")
        if arm.mix.add is not None:
            _need(arm.mix.add >= 0, f"{key}.mix.add", f"must be 0 or more fakes per class, got {arm.mix.add}")
    else:
        _need(arm.mix is None, f"{key}.mix", f"only applies to data: mixed, but this arm has data: {arm.data}")


def validate(cfg: Config) -> None:
    """Range and cross-key checks; each error names its key."""
    from .classifiers import CLASSIFIERS
    from .data import DATASETS
    from .gans import GANS

    _need(bool(cfg.name.strip()), "name", "must not be empty")
    _need(bool(cfg.out_dir.strip()), "out_dir", "must not be empty")
    _need("\x00" not in cfg.out_dir, "out_dir", f"must be a folder path, and {cfg.out_dir!r} holds a NUL character; "
          "remove it")
    _need(bool(_DEVICE.match(cfg.device)), "device", f"must be auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    _need(cfg.reproducible in ("default", "strict"), "reproducible", f"must be default or strict, got {cfg.reproducible!r}")

    d = cfg.data
    DATASETS.check(d.source, "config key 'data.source'")
    if d.resolution is not None:
        _need(4 <= d.resolution <= 1024, "data.resolution", f"must be between 4 and 1024 pixels, got {d.resolution}")
    if d.channels is not None:
        _need(d.channels in (1, 3), "data.channels", f"must be 1 (grayscale) or 3 (RGB), got {d.channels}")
    for k in ("workers", "cache", "max_image_pixels"):
        if getattr(d, k) is not None:
            _need(d.source == "imagefolder", f"data.{k}", f"applies to source imagefolder, not {d.source}")
    if d.workers is not None:
        _need(d.workers >= 1, "data.workers", f"must be 1 or more processes, got {d.workers}")
    if d.max_image_pixels is not None:
        _need(d.max_image_pixels >= 1, "data.max_image_pixels", f"must be a positive number of pixels, got {d.max_image_pixels}")
    if d.label_regex is not None:
        _need(d.source == "imagefolder", "data.label_regex", f"applies to source imagefolder, not {d.source}")
        try:
            groups = re.compile(d.label_regex).groups
        except (re.error, OverflowError, RecursionError) as e:  # OverflowError: a{99999999999}
            raise ConfigError(f"config key 'data.label_regex' is not a valid regular expression ({e}); fix the pattern") from None
        _need(groups >= 1, "data.label_regex", "needs a group that captures the label, e.g. '^\\d+_(\\d)_' "
              "or '(?P<label>...)'")

    s = cfg.split
    modes = [k for k in ("n_per_class", "first_per_class", "fraction") if getattr(s, k) is not None]
    _need(len(modes) <= 1, "split", f"sets {' and '.join(modes)}; choose one way to pick the training images")
    for k in ("n_per_class", "first_per_class"):
        if getattr(s, k) is not None:
            _need(getattr(s, k) >= 1, f"split.{k}", f"must be 1 or more, got {getattr(s, k)}")
    if s.fraction is not None:
        _need(0.0 < s.fraction <= 1.0, "split.fraction", f"must be in (0, 1], got {s.fraction}")
    _need(s.val_per_class >= 1, "split.val_per_class",
          f"must be 1 or more: model selection needs real validation images, got {s.val_per_class}")
    if s.test_per_class is not None:
        _need(s.test_per_class >= 1, "split.test_per_class", f"must be 1 or more, got {s.test_per_class}")
    if s.test_after is not None:
        _need(s.first_per_class is None and s.fraction is None, "split.test_after",
              "applies to a random split of n_per_class images per class, not to first_per_class or fraction")
        n = s.n_per_class or 100
        _need(s.test_after >= n, "split.test_after", f"must be at least split.n_per_class ({n}), got {s.test_after}")
    if s.shrink is not None:
        _need(0.0 < s.shrink.keep <= 1.0, "split.shrink.keep",
              f"must be the fraction of the class kept, in (0, 1], got {s.shrink.keep}")

    if cfg.generators is not None:
        _need(to_dict(cfg.gan) == to_dict(default_gan()), "gan", "is set beside generators:; give each generator under "
              "generators: (gan: is the one-generator form)")
        for name in cfg.generators:
            _need(bool(_ARM_NAME.match(name)), f"generators.{name}", "must be a folder-safe name (letters, digits, . _ + -)")
    for name in cfg.generator_names:
        g = cfg.gen(name)
        GANS.check(g.name, f"config key '{'gan' if name is None else f'generators.{name}'}.name'")
        resolve_gan(cfg, g)
        validate_gan(g, "gan" if name is None else f"generators.{name}")
    families = {cfg.gen(n).name for n in cfg.generator_names}

    sm = cfg.sample
    _need(sm.n_per_class >= 1, "sample.n_per_class", f"must be 1 or more, got {sm.n_per_class}")
    _need(sm.batch_size >= 1, "sample.batch_size", f"must be 1 or more, got {sm.batch_size}")
    _need(sm.grid_per_class >= 1, "sample.grid_per_class", f"must be 1 or more, got {sm.grid_per_class}")
    if sm.chunk_size is not None:
        _need(sm.chunk_size >= 16 and sm.chunk_size % 16 == 0, "sample.chunk_size",
              f"must be a multiple of 16 (16 or more), got {sm.chunk_size}")
    for k, meta, what in (("truncation", "truncation", "stylegan2"), ("guidance", "guidance", "diffusion"),
                          ("steps", "guidance", "diffusion")):
        if getattr(sm, k) is not None:
            _need(any(GANS.meta(f).get(meta) for f in families), f"sample.{k}",
                  f"applies to {what}, and no generator of this config is one; remove it")
    if sm.truncation is not None:
        _need(0 <= sm.truncation <= 1, "sample.truncation", f"must be psi in [0, 1] (1: none), got {sm.truncation}")
    if sm.guidance is not None:
        _need(sm.guidance >= 0, "sample.guidance", f"must be 0 (unconditional) or more, got {sm.guidance}")
    if sm.steps is not None:
        _need(1 <= sm.steps <= 10_000, "sample.steps", f"must be between 1 and 10000 DDIM steps, got {sm.steps}")
    if sm.filter is not None:
        _need(0 < sm.filter.min_confidence < 1, "sample.filter.min_confidence",
              f"must be a probability in (0, 1), e.g. 0.9, got {sm.filter.min_confidence}")
        _need(sm.filter.max_draws >= 1, "sample.filter.max_draws",
              f"must be 1 or more (times the images kept), got {sm.filter.max_draws}")

    c = cfg.classifier
    CLASSIFIERS.check(c.name, "config key 'classifier.name'")
    for k in ("steps", "batch_size", "width", "eval_every"):
        _need(getattr(c, k) >= 1, f"classifier.{k}", f"must be 1 or more, got {getattr(c, k)}")
    _need(c.lr > 0, "classifier.lr", f"must be positive, got {c.lr}")
    _need(c.weight_decay >= 0, "classifier.weight_decay", f"must be 0 or more, got {c.weight_decay}")
    if c.pretrained or c.weights is not None:
        with_weights = [n for n in CLASSIFIERS.names() if CLASSIFIERS.meta(n).get("imagenet")]
        _need(c.name in with_weights, "classifier.pretrained" if c.pretrained else "classifier.weights",
              f"needs a network with ImageNet weights ({', '.join(with_weights)}), not {c.name}")
    if c.weights is not None:
        _need(Path(c.weights).expanduser().is_file(), "classifier.weights",
              f"names '{c.weights}', which does not exist; point it at a state_dict of {c.name}'s ImageNet weights")
    if c.input_size is not None:
        _need(c.pretrained or c.weights is not None, "classifier.input_size",
              "applies to networks started from ImageNet weights (classifier.pretrained or classifier.weights)")
        _need(16 <= c.input_size <= 512, "classifier.input_size", f"must be between 16 and 512 pixels, got {c.input_size}")

    a = cfg.augment
    _need(0 <= a.degrees <= 180, "augment.degrees", f"must be in [0, 180], got {a.degrees}")
    _need(0 <= a.translate < 1, "augment.translate", f"must be a fraction of the size in [0, 1), got {a.translate}")
    _need(len(a.scale) == 2 and 0 < a.scale[0] <= a.scale[1], "augment.scale",
          f"must be [low, high] with 0 < low <= high, got {a.scale}")
    _need(0 <= a.brightness < 1, "augment.brightness", f"must be in [0, 1), got {a.brightness}")
    _need(0 <= a.contrast < 1, "augment.contrast", f"must be in [0, 1), got {a.contrast}")
    for k in ("mixup_alpha", "cutmix_alpha"):
        if getattr(a, k) is not None:
            _need(getattr(a, k) > 0, f"augment.{k}", f"must be positive, got {getattr(a, k)}")

    _need(len(cfg.arms) >= 1, "arms", "must list at least one arm")
    seen = set()
    for i, arm in enumerate(cfg.arms):
        validate_arm(arm, f"arms[{i}]")
        if arm.generator is not None:
            known = f"generators are {', '.join(cfg.generators)}" if cfg.generators else "with gan: there is one: leave it out"
            _need(cfg.generators is not None and arm.generator in cfg.generators, f"arms[{i}].generator",
                  f"names no generator ('{arm.generator}'); {known}")
            _need(arm.uses_synthetic, f"arms[{i}].generator",
                  f"applies to arms that use fakes, and arm '{arm.name}' is real only")
        elif cfg.generators and len(cfg.generators) > 1 and arm.uses_synthetic:
            raise ConfigError(f"config key 'arms[{i}].generator' must name whose fakes arm '{arm.name}' uses: one of "
                              f"{', '.join(cfg.generators)}")
        _need(arm.name not in seen, f"arms[{i}].name", f"repeats the arm name '{arm.name}'; names must be unique")
        seen.add(arm.name)
        if arm.mix is not None and arm.mix.add is not None and cfg.sample.proportions == "balanced":
            _need(arm.mix.add <= cfg.sample.n_per_class, f"arms[{i}].mix.add",
                  f"asks for {arm.mix.add} fakes per class but sample.n_per_class makes {cfg.sample.n_per_class}")
    if cfg.sweep is not None:
        _validate_sweep(cfg, seen)
    validate_executor(cfg.executor)
    _need(len(cfg.seeds) >= 1, "seeds", "must list at least one seed")
    _need(len(set(cfg.seeds)) == len(cfg.seeds), "seeds", f"must not repeat a seed, got {cfg.seeds}")
    if cfg.gan_seeds is not None:
        _need(len(cfg.gan_seeds) >= 1, "gan_seeds", "must list at least one seed, or be left out (one GAN, gan.seed)")
        _need(len(set(cfg.gan_seeds)) == len(cfg.gan_seeds), "gan_seeds", f"must not repeat a seed, got {cfg.gan_seeds}")
        _need(len(cfg.gan_seeds) <= len(cfg.seeds), "gan_seeds",
              f"lists {len(cfg.gan_seeds)} GANs for {len(cfg.seeds)} replicates; replicate i uses gan_seeds[i], "
              "so list at most one per seed")
    cmp = cfg.compare
    _need(0.5 <= cmp.confidence < 1.0, "compare.confidence", f"must be in [0.5, 1), e.g. 0.95, got {cmp.confidence}")
    _need(0.0 < cmp.alpha < 0.5, "compare.alpha", f"must be in (0, 0.5), e.g. 0.05, got {cmp.alpha}")
    _need(0.5 <= cmp.power < 1.0, "compare.power", f"must be in [0.5, 1), e.g. 0.8, got {cmp.power}")
    _need(0.0 < cmp.target_difference < 1.0, "compare.target_difference",
          f"must be an accuracy difference in (0, 1), e.g. 0.01 for one point, got {cmp.target_difference}")
    if cfg.baseline is not None:
        _need(cfg.baseline in seen, "baseline", f"names no arm ('{cfg.baseline}'); arms are {', '.join(seen)}")
    ev = cfg.evaluate
    from .metrics.features import check_name

    check_name(ev.features)
    for k in ("kid_subsets", "k_pr", "k_dc", "closest_pairs"):
        _need(getattr(ev, k) >= 1, f"evaluate.{k}", f"must be 1 or more, got {getattr(ev, k)}")
    if ev.max_images is not None:
        need = max(ev.k_pr, ev.k_dc) + 2
        _need(ev.max_images >= need, "evaluate.max_images", f"must be at least {need} (for k nearest neighbours), "
              f"got {ev.max_images}")
    if ev.enabled and cfg.sample.proportions == "balanced" and any(a.uses_synthetic for a in cfg.all_arms):
        need = max(ev.k_pr, ev.k_dc) + 2
        _need(cfg.sample.n_per_class >= need, "sample.n_per_class",
              f"is {cfg.sample.n_per_class}, too few fakes per class for `evaluate` (k = {max(ev.k_pr, ev.k_dc)} nearest "
              f"neighbours need {need}); raise it, lower evaluate.k_dc, or set evaluate.enabled: false")
    _need(0 < ev.copy_quantile < 0.5, "evaluate.copy_quantile", f"must be in (0, 0.5), e.g. 0.05, got {ev.copy_quantile}")
    _need(0 <= ev.copy_shift <= 8, "evaluate.copy_shift", f"must be a number of pixels from 0 to 8, e.g. 2, got {ev.copy_shift}")
    _need(0 < ev.copy_ratio < 1, "evaluate.copy_ratio", f"must be in (0, 1), e.g. 0.333, got {ev.copy_ratio}")
    _need(0 < ev.copy_alpha < 0.5, "evaluate.copy_alpha", f"must be in (0, 0.5), e.g. 0.01, got {ev.copy_alpha}")
    for k in ("steps", "width", "batch_size"):
        _need(getattr(ev.domain, k) >= 1, f"evaluate.domain.{k}", f"must be 1 or more, got {getattr(ev.domain, k)}")
    _need(ev.domain.lr > 0, "evaluate.domain.lr", f"must be positive, got {ev.domain.lr}")
    if ev.inception_weights is not None:
        _need(Path(ev.inception_weights).expanduser().is_file(), "evaluate.inception_weights",
              f"names '{ev.inception_weights}', which does not exist; point it at the TorchScript inception-2015-12-05.pt")
    if ev.weights is not None:
        _need(ev.features not in ("domain", "inception"), "evaluate.weights",
              f"is for a torchvision extractor, not {ev.features}" + ("; use evaluate.inception_weights"
                                                                     if ev.features == "inception" else ""))
    ck = cfg.checkpoint
    if ck.every_steps is not None:
        _need(ck.every_steps >= 1, "checkpoint.every_steps", f"must be 1 or more (or null), got {ck.every_steps}")
    if ck.every_minutes is not None:
        _need(ck.every_minutes > 0 and math.isfinite(ck.every_minutes), "checkpoint.every_minutes",
              f"must be a positive number of minutes (or null), got {ck.every_minutes}")
    _need(ck.keep >= 1, "checkpoint.keep", f"must be 1 or more, got {ck.keep}")


_AUGMENT_DEFAULTS = {
    "ada": {"augment_p": 0.0, "ada_target": 0.6, "ada_interval": 4, "ada_kimg": 500.0, "augpipe": "bgc"},
    "fixed": {"augpipe": "bgc"},
    "diffaugment": {"augment_p": 1.0, "diffaugment": "color,translation,cutout"},
}


_AUGMENT_KEYS = {  # which gan.augment kinds use each key
    "augment_p": ("ada", "fixed", "diffaugment"),
    "augpipe": ("ada", "fixed"),
    "ada_target": ("ada",),
    "ada_interval": ("ada",),
    "ada_kimg": ("ada",),
    "diffaugment": ("diffaugment",),
}


def image_resolution(cfg: Config) -> Optional[int]:
    """The side of the images the networks see: data.resolution, else the source's own (None if it varies)."""
    from .data import DATASETS

    return cfg.data.resolution or DATASETS.meta(cfg.data.source).get("resolution")


def resolve_gan(cfg: Config, g: Optional[GeneratorConfig] = None) -> None:
    """Fill a generator's keys left out from its family's defaults (a preset) and its augmentation's.

    Only keys that are None are filled, so a config that says nothing about a family's extras keeps the
    fingerprint it had before they existed.
    """
    from .gans import GANS

    g = cfg.gan if g is None else g
    defaults = GANS.meta(g.name).get("defaults")
    if defaults is not None:
        for k, v in defaults(g, image_resolution(cfg)).items():
            if getattr(g, k, None) is None and hasattr(g, k):
                setattr(g, k, v)
    if isinstance(g, GanConfig):
        for k, v in _AUGMENT_DEFAULTS.get(g.augment or "none", {}).items():
            if getattr(g, k) is None:
                setattr(g, k, v)


def _validate_sweep(cfg: Config, seen: set) -> None:
    """sweep: one key (an arm key, or an experiment key), and with an experiment key an optional inner arm key."""
    assert cfg.sweep is not None
    sw = cfg.sweep
    key = sweep_key(sw.key)
    _sweep_values_ok(cfg, "sweep", sw.values, key)
    if key in EXPERIMENT_SWEEP_KEYS:
        spec = EXPERIMENT_SWEEP_KEYS[key]
        for x in sweep_values(sw):
            _need(not spec["integer"] or float(x).is_integer(), "sweep.values", f"must be whole numbers for {key}, got {x:g}")
            _need(x >= spec["minimum"], "sweep.values", f"must be {spec['minimum']:g} or more for {key}, got {x:g}")
            if "maximum" in spec:
                _need(x <= spec["maximum"], "sweep.values", f"must be {spec['maximum']:g} or less for {key}, got {x:g}")
        _need(sw.augment == "none", "sweep.augment",
              f"applies to a sweep over an arm key; a sweep over {key} runs every arm as the config has it "
              "(an inner arm sweep takes its own: sweep.inner.augment)")
        if spec.get("generator"):
            _need(not cfg.generators, "sweep.key", f"is {key}, which sweeps the one generator of gan:; with generators: "
                  "give each value its own generator entry instead")
            field_name = key.split(".", 1)[1]
            owners = _owners(field_name)
            _need(field_name in {_yaml_key(f) for f in dataclasses.fields(cfg.gan)}, "sweep.key",
                  f"is {key}, which gan '{cfg.gan.name}' does not read (it applies to {', '.join(owners) or 'no family'})")
        if key == "split.n_per_class":
            _need(cfg.split.test_after is None, "split.test_after",
                  "is set by a sweep over split.n_per_class (its largest value, so every value is tested on the same "
                  "images); leave it out")
        if sw.inner is not None:
            inner = sweep_key(sw.inner.key)
            _need(inner in SWEEP_KEYS, "sweep.inner.key",
                  f"is {sw.inner.key!r}; the inner key of a two-key sweep is an arm key ({' or '.join(SWEEP_KEYS)})")
            _sweep_values_ok(cfg, "sweep.inner", sw.inner.values, inner)
            names = {a.name for a in sweep_arms(SweepConfig(key=inner, values=sw.inner.values, augment=sw.inner.augment))}
            clash = sorted(names & seen)
            _need(not clash, "sweep.inner", f"makes an arm named '{clash[0] if clash else ''}', which arms already has; "
                  "rename that arm")
        return
    _need(sw.inner is None, "sweep.inner", f"applies to a sweep over an experiment key ({', '.join(EXPERIMENT_SWEEP_KEYS)}), "
          f"not over the arm key {key}")
    for arm in cfg.all_arms[len(cfg.arms):]:
        _need(arm.name not in seen, "sweep", f"makes an arm named '{arm.name}', which arms already has; rename that arm")
        seen.add(arm.name)


def _sweep_values_ok(cfg: Config, where: str, values: Any, key: str) -> None:
    """The values of a sweep (or of its inner key): parseable, at most the limit, no repeats, in range for an arm key."""
    if isinstance(values, float):
        raise ConfigError(f"config key '{where}.values' is the number {values:g}; YAML reads an unquoted "
                          "0:1:0.1 as a base-60 number, so quote it ('0:1:0.1') or give a list")
    try:
        xs = sweep_values(SweepConfig(key=key, values=values))
    except ConfigError as e:
        raise ConfigError(str(e).replace("'sweep.values'", f"'{where}.values'")) from None
    _need(len(xs) <= _MAX_SWEEP_VALUES, f"{where}.values", f"gives {len(xs)} values; {_MAX_SWEEP_VALUES} at most")
    _need(len(set(xs)) == len(xs), f"{where}.values", f"repeats a value: {xs}")
    for x in xs:
        if key == "mix.p_real":
            _need(0.0 <= x <= 1.0, f"{where}.values", f"must be shares of real images in [0, 1] for {key}, got {x:g}")
        elif key == "mix.add":
            _need(x >= 0 and float(x).is_integer(), f"{where}.values", f"must be whole numbers of fakes per class, got {x:g}")
            if cfg.sample.proportions == "balanced":
                _need(x <= cfg.sample.n_per_class, f"{where}.values",
                      f"asks for {x:g} fakes per class but sample.n_per_class makes {cfg.sample.n_per_class}")


EXECUTORS = ("serial", "local", "ray", "slurm")


def validate_executor(e: ExecutorConfig) -> None:
    _need(e.name in EXECUTORS, "executor.name", f"is {e.name!r}; choose one of {', '.join(EXECUTORS)}")
    for k in ("workers", "threads", "clf_threads"):
        v = getattr(e, k)
        _need(v is None or v >= 1, f"executor.{k}", f"must be 1 or more, got {v}")
    _need(e.cpus >= 1, "executor.cpus", f"must be 1 or more, got {e.cpus}")
    _need(e.gpus >= 0 and math.isfinite(e.gpus), "executor.gpus", f"must be 0 or more, got {e.gpus}")
    _need(e.clf_gpus is None or (e.clf_gpus >= 0 and math.isfinite(e.clf_gpus)), "executor.clf_gpus",
          f"must be 0 or more, got {e.clf_gpus}")
    _need(e.address is None or e.name == "ray", "executor.address", f"applies to executor ray, not {e.name}")
    sl = e.slurm
    _need(sl.time_min >= 1, "executor.slurm.time_min", f"must be 1 minute or more, got {sl.time_min}")
    _need(sl.mem_gb is None or sl.mem_gb > 0, "executor.slurm.mem_gb", f"must be positive, got {sl.mem_gb}")
    _need(sl.poll_seconds > 0, "executor.slurm.poll_seconds", f"must be positive, got {sl.poll_seconds}")
    _need(sl.array_parallelism is None or sl.array_parallelism >= 1, "executor.slurm.array_parallelism",
          f"must be 1 or more, got {sl.array_parallelism}")
    for i, line in enumerate(sl.setup):
        _need("\n" not in line, f"executor.slurm.setup[{i}]", "must be one shell line; give several lines as several entries")


def validate_gan(g: GeneratorConfig, key: str = "gan") -> None:
    """The checks every family shares, the adversarial families' (augmentation), then the family's own."""
    from .gans import GANS

    def need(cond: bool, k: str, msg: str) -> None:
        _need(cond, f"{key}.{k}", msg)

    for k in ("epochs", "batch_size", "z_dim", "grid_every", "eval_every"):
        v = getattr(g, k, None)
        need(v is None or v >= 1, k, f"must be 1 or more, got {v}")
    for k in ("batch_size", "lr", "betas", "ema_kimg") + (("z_dim",) if hasattr(g, "z_dim") else ()):
        need(getattr(g, k) is not None, k, f"has no default for gan '{g.name}'; set it")
    need(g.lr > 0, "lr", f"must be positive, got {g.lr}")
    need(len(g.betas) == 2 and all(0.0 <= b < 1.0 for b in g.betas), "betas", f"must be two numbers in [0, 1), got {g.betas}")
    need(g.ema_kimg >= 0, "ema_kimg", f"must be 0 (off) or more, got {g.ema_kimg}")
    if g.kimg is not None:
        need(g.kimg > 0, "kimg", f"must be positive (thousands of images), got {g.kimg}")
    if g.eval_every is not None:
        need(getattr(g, "impl", None) != "official", "eval_every", "is not available with impl: official (its own metrics "
             "run there); remove it, or use the native stylegan2")
    need(g.select != "best-fid" or g.eval_every is not None, "select",
         f"is best-fid, which needs {key}.eval_every (epochs between validation FIDs), e.g. {key}.eval_every: 10")
    if isinstance(g, GanConfig):
        _validate_augment(g, key)
    check = GANS.meta(g.name).get("validate")
    if check is not None:
        check(g, key)


def _validate_augment(g: GanConfig, key: str) -> None:
    aug = g.augment or "none"
    _need(aug != "fixed" or g.augment_p is not None, f"{key}.augment_p", "must be set for augment: fixed (e.g. 0.2)")
    for k, kinds in _AUGMENT_KEYS.items():
        if getattr(g, k) is not None and aug not in kinds:
            raise ConfigError(f"config key '{key}.{k}' only applies with {key}.augment: {' or '.join(kinds)}, and "
                              f"{key}.augment is {aug}; remove it or change {key}.augment")
    if g.augment_p is not None:
        _need(0 <= g.augment_p <= 1, f"{key}.augment_p", f"must be a probability in [0, 1], got {g.augment_p}")
    if g.ada_target is not None:
        _need(0 < g.ada_target < 1, f"{key}.ada_target", f"must be in (0, 1), e.g. 0.6, got {g.ada_target}")
    if g.ada_kimg is not None:
        _need(g.ada_kimg > 0, f"{key}.ada_kimg", f"must be positive, got {g.ada_kimg}")
    if g.ada_interval is not None:
        _need(g.ada_interval >= 1, f"{key}.ada_interval", f"must be 1 or more, got {g.ada_interval}")
    if g.augpipe is not None:
        from .gans.augment import AUGPIPES

        _need(g.augpipe in AUGPIPES, f"{key}.augpipe", f"must be one of {', '.join(AUGPIPES)}, got {g.augpipe!r}")
    if g.diffaugment is not None:
        from .gans.augment import DIFFAUGMENT_OPS

        bad = [t for t in g.diffaugment.split(",") if t.strip() not in DIFFAUGMENT_OPS]
        _need(not bad and g.diffaugment.strip() != "", f"{key}.diffaugment",
              f"must list some of {', '.join(DIFFAUGMENT_OPS)} separated by commas, got {g.diffaugment!r}")


def parse_arm_shorthand(data: Optional[str], mix: Optional[str], augment: Optional[str],
                        generator: Optional[str] = None, generators: Optional[Dict[str, Any]] = None) -> ArmConfig:
    """The arm that `train-clf --data D --mix p_real=P|add=K --augment classic [--generator NAME]` describes."""
    flags = " ".join(f for f in (data and f"--data {data}", mix and f"--mix {mix}",
                                 augment and f"--augment {augment}") if f)
    raw: Dict[str, Any] = {}
    if mix is not None:
        path, value = parse_override(mix)
        if len(path) != 1 or path[0] not in ("p_real", "add", "balance"):
            raise ConfigError(f"--mix '{mix}' must be p_real=P (0..1), add=K (fakes per class) or balance=true")
        raw["mix"] = {path[0]: value}
        if data not in (None, "mixed"):
            raise ConfigError(f"--mix needs --data mixed (or no --data), got --data {data}")
        data = "mixed"
    raw["data"] = data or "real"
    if augment is not None:
        raw["augment"] = augment
    try:
        arm = _Coerce({}).dataclass(ArmConfig, raw, "arm")
        if arm.mix is not None:
            m = arm.mix
            base = f"mixed-p{m.p_real:g}" if m.p_real is not None else f"real+{m.add}" if m.add is not None else "real+balance"
        else:
            base = arm.data
        arm.name = base + {"none": "", "classic": "-aug"}.get(arm.augment, f"-{arm.augment}")
        validate_arm(arm, "arm")
    except ConfigError as e:
        raise ConfigError(f"{flags}: " + str(e).replace("config key 'arm.mix.", "'").replace("config key 'arm.", "'")) from None
    if generator is not None or (generators and len(generators) > 1 and arm.uses_synthetic):
        names = ", ".join(generators or {}) or "none: this config has one gan:"
        if not arm.uses_synthetic:
            raise ConfigError(f"--generator {generator}: {flags or '--data real'} uses no fakes; leave --generator out")
        if generator is None or not generators or generator not in generators:
            raise ConfigError(f"{flags}: --generator must name whose fakes the arm uses (generators: {names})"
                              + (f", got {generator!r}" if generator is not None else ""))
        arm.generator, arm.name = generator, f"{arm.name}-{generator}"
    elif generators and arm.uses_synthetic:
        arm.generator = next(iter(generators))
    return arm
