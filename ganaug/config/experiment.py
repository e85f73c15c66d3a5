"""The whole config: its sections, the generator families told apart by `name`, and the rules that tie keys of
different sections together (checked once the sections are valid each on their own)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Dict, List, Literal, NamedTuple, Optional, Union

from pydantic import BeforeValidator, Discriminator, Field, PrivateAttr, Tag, ValidationError, ValidationInfo, model_validator

from ..classifiers import CLASSIFIERS
from ..data import DATASETS
from ..errors import ConfigError
from ..gans import GANS
from ..gans.schema import GeneratorConfig
from ..metrics.features import check_name
from .base import Int, Invalid, Section, need
from .execution import CheckpointConfig, ExecutorConfig
from .fingerprints import fingerprint, result_config, to_dict
from .sections import (
    ARM_NAME,
    ArmConfig,
    AugmentConfig,
    ClassifierConfig,
    CompareConfig,
    DataConfig,
    EvaluateConfig,
    SampleConfig,
    SplitConfig,
)
from .sweeps import EXPERIMENT_SWEEP_KEYS, MAX_SWEEP_VALUES, SWEEP_KEYS, SweepConfig, sweep_arms, sweep_key, sweep_values


def family_schema(name: str) -> type:
    """The config model a generator family registered (`@register_gan(name, config=...)`)."""
    GANS.check(name, "config key 'gan.name'")
    return GANS.meta(name)["config"]


def default_gan() -> GeneratorConfig:
    return family_schema("cgan")()


def _family_of(v: Any) -> Any:
    """The discriminator of the generator union: a section's `name`, cgan when it has none."""
    if v is None:
        return "cgan"
    if isinstance(v, dict):
        return v.get("name", "cgan")
    return getattr(v, "name", None)


# Every registered family's model, told apart by its name (the JSON Schema's oneOf, an editor's completion).
Generator = Annotated[Union[tuple(Annotated[family_schema(n), Tag(n)] for n in GANS.names())],  # type: ignore[misc]
                      Discriminator(_family_of)]


def _named_keys(v: Any) -> Any:
    return {str(k): x for k, x in v.items()} if isinstance(v, dict) else v  # YAML reads a name like 2 as a number


class Rep(NamedTuple):
    """One trained generator: which of the config's generators (None: the one `gan:`), and its seed (None: gan.seed)."""

    generator: Optional[str] = None
    seed: Optional[int] = None


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class Config(Section):
    """An experiment: the data and its split, the generators, the arms and seeds, and how to judge them."""

    name: str = "experiment"
    """The experiment's name"""
    out_dir: str = "runs/experiment"
    """The run folder: every artefact, record and table of this experiment"""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps"""
    reproducible: Literal["default", "strict"] = "default"
    """default, or strict: x86 CPU math pinned to AVX2 (ATen, oneDNN, oneMKL) so CPUs of different generations print
    the same table; never part of a fingerprint"""
    data: DataConfig = Field(default_factory=DataConfig)
    """The data set the experiment is on."""
    split: SplitConfig = Field(default_factory=SplitConfig)
    """The training, validation and test images drawn from the source."""
    gan: Generator = Field(default_factory=dict, validate_default=True)  # validated: a cgan's keys filled
    """The generator (a family's keys, chosen by its name)"""
    generators: Optional[Annotated[Dict[str, Generator], BeforeValidator(_named_keys)]] = None
    """Several generators, by name; gan: is the one-generator form"""
    sample: SampleConfig = Field(default_factory=SampleConfig)
    """The fakes the arms use: how many, and how they are drawn."""
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    """The network the arms are compared on, and its training budget."""
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    """The settings of the arms' classic augmentation (augment: classic) and label mixing (label_mix)."""
    arms: List[ArmConfig] = Field(default_factory=lambda: [ArmConfig()])
    """The ways of training the classifier, compared with the baseline [one arm, real]"""
    seeds: List[Int] = Field(default_factory=lambda: [0])
    """Classifier seeds: each arm runs once per seed (one replicate per seed and arm) [[0]]"""
    gan_seeds: Optional[List[Int]] = None
    """Independent GANs (and synthetic sets): replicate i (seeds[i]) uses gan_seeds[i % len] [null: one GAN, of
    gan.seed]"""
    sweep: Optional[SweepConfig] = None
    """Extra arms: one per swept value (or one sub-experiment per value of an experiment key)"""
    baseline: Optional[str] = None
    """The arm the others are compared with [null: the first real, unaugmented arm]"""
    compare: CompareConfig = Field(default_factory=CompareConfig)
    """The statistics that compare each arm with the baseline."""
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    """Sample-quality metrics of the synthetic sets."""
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    """Resumable checkpoints of GAN and classifier training."""
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    """Where the experiment's cells run (`ganaug run --executor`)."""
    # Not YAML keys: the run folder whose split, GAN and samples this one reads (a sub-experiment of a sweep over a
    # classifier key shares its parent's, since their fingerprints are the same); the file this config was read from,
    # so messages can name the command to run next.
    _upstream_dir: Optional[str] = PrivateAttr(None)
    _config_path: Optional[str] = PrivateAttr(None)

    @property
    def upstream_dir(self) -> Optional[str]:
        return self._upstream_dir

    @upstream_dir.setter
    def upstream_dir(self, value: Optional[str]) -> None:
        self._upstream_dir = value

    @property
    def config_path(self) -> Optional[str]:
        return self._config_path

    @config_path.setter
    def config_path(self, value: Optional[str]) -> None:
        self._config_path = value

    # ------------------------------------------------------------------------------------------------
    # What the experiment holds.

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

    def sample_of(self, name: Optional[str]) -> SampleConfig:
        """How a generator's fakes are drawn: the sample section, with the generator's own `sample:` keys over it."""
        own = self.gen(name).sample
        return self.sample if not own else SampleConfig.model_validate({**to_dict(self.sample), **own})

    def training_twins(self) -> Dict[str, str]:
        """Each generator's first one with the same training (the same keys but `sample:`): it trains once, for all."""
        first: Dict[str, str] = {}
        return {n: first.setdefault(fingerprint(result_config("gan", g)), n) for n, g in (self.generators or {}).items()}

    def trained_as(self, name: Optional[str]) -> Optional[str]:
        """The generator whose trained model `name` uses (itself, or its first twin)."""
        return None if name is None else self.training_twins()[name]

    @property
    def replicates(self) -> List[Rep]:
        """Every generator to train: each generator once per GAN seed the replicates use."""
        return [Rep(n, g) for n in self.generator_names for g in self.gan_replicates]

    def arm_generator(self, arm: ArmConfig) -> Optional[str]:
        """The generator whose fakes an arm uses (its `generator:`, else the only one)."""
        if arm.generator is not None or not self.generators:
            return arm.generator
        return next(iter(self.generators))

    def rep_of(self, arm: ArmConfig, seed: int) -> Rep:
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

    # ------------------------------------------------------------------------------------------------
    # Rules across sections.

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> "Config":
        need(bool(self.name.strip()), "name", "must not be empty")
        need(bool(self.out_dir.strip()), "out_dir", "must not be empty")
        need("\x00" not in self.out_dir, "out_dir", f"must be a folder path, and {self.out_dir!r} holds a NUL character; "
             "remove it")
        need(bool(_DEVICE.match(self.device)), "device", f"must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        DATASETS.check(self.data.source, "config key 'data.source'")
        self._check_generators(info.context)
        self._check_sample()
        self._check_classifier()
        seen = self._check_arms()
        if self.sweep is not None:
            self._check_sweep(seen)
        self._check_seeds()
        if self.baseline is not None:
            need(self.baseline in seen, "baseline", f"names no arm ('{self.baseline}'); arms are {', '.join(seen)}")
        ev = self.evaluate
        check_name(ev.features)
        if ev.enabled and self.sample.proportions == "balanced" and any(a.uses_synthetic for a in self.all_arms):
            n = max(ev.k_pr, ev.k_dc) + 2
            need(self.sample.n_per_class >= n, "sample.n_per_class",
                 f"is {self.sample.n_per_class}, too few fakes per class for `evaluate` (k = {max(ev.k_pr, ev.k_dc)} "
                 f"nearest neighbours need {n}); raise it, lower evaluate.k_dc, or set evaluate.enabled: false")
        return self

    def _check_generators(self, context: Optional[Dict[str, Any]]) -> None:
        if self.generators is not None:
            need(bool(self.generators), "generators", f"must be a mapping of names to sections, got {self.generators!r}")
            default = type(default_gan()).model_validate({}, context=context)
            need(to_dict(self.gan) == to_dict(default), "gan", "is set beside generators:; give each generator "
                 "under generators: (gan: is the one-generator form)")
            for name in self.generators:
                need(bool(ARM_NAME.match(name)), f"generators.{name}", "must be a folder-safe name (letters, digits, . _ + -)")

    def _check_sample(self) -> None:
        for n in self.generator_names:
            where = "sample" if n is None or not self.gen(n).sample else f"generators.{n}.sample"
            try:
                s = self.sample_of(n)
            except ValidationError as e:
                err = e.errors()[0]
                bad = (err.get("ctx") or {}).get("error")
                if isinstance(bad, Invalid):
                    raise Invalid(f"{where}.{bad.key}", bad.msg) from None
                raise Invalid(where + "".join(f".{x}" for x in err["loc"]), err["msg"]) from None
            family = self.gen(n).name
            if s.mode == "edit":
                can = [f for f in GANS.names() if GANS.meta(f).get("edit")]
                need(bool(GANS.meta(family).get("edit")), f"{where}.mode",
                     f"is edit, which starts each fake from a training image; {family} cannot (a GAN has no encoder or "
                     f"inversion): use sample.mode: noise for it, or a {' or '.join(can)} generator for edits")
                need(not s.invert or family == "diffusion", f"{where}.invert",
                     f"is DDIM inversion, the diffusion model's; {family} encodes its sources itself: leave it out")
        families = {self.gen(n).name for n in self.generator_names}
        for k, meta, what in (("truncation", "truncation", "stylegan2"), ("guidance", "guidance", "diffusion"),
                              ("steps", "guidance", "diffusion")):
            if getattr(self.sample, k) is not None:
                need(any(GANS.meta(f).get(meta) for f in families), f"sample.{k}",
                     f"applies to {what}, and no generator of this config is one; remove it")

    def _check_classifier(self) -> None:
        c = self.classifier
        CLASSIFIERS.check(c.name, "config key 'classifier.name'")
        if c.pretrained or c.weights is not None:
            with_weights = [n for n in CLASSIFIERS.names() if CLASSIFIERS.meta(n).get("imagenet")]
            need(c.name in with_weights, "classifier.pretrained" if c.pretrained else "classifier.weights",
                 f"needs a network with ImageNet weights ({', '.join(with_weights)}), not {c.name}")

    def _check_arms(self) -> set:
        need(len(self.arms) >= 1, "arms", "must list at least one arm")
        seen: set = set()
        for i, arm in enumerate(self.arms):
            if arm.generator is not None:
                known = (f"generators are {', '.join(self.generators)}" if self.generators
                         else "with gan: there is one: leave it out")
                need(self.generators is not None and arm.generator in self.generators, f"arms[{i}].generator",
                     f"names no generator ('{arm.generator}'); {known}")
                need(arm.uses_synthetic, f"arms[{i}].generator",
                     f"applies to arms that use fakes, and arm '{arm.name}' is real only")
            elif self.generators and len(self.generators) > 1 and arm.uses_synthetic:
                raise Invalid(f"arms[{i}].generator", f"must name whose fakes arm '{arm.name}' uses: one of "
                              f"{', '.join(self.generators)}")
            need(arm.name not in seen, f"arms[{i}].name", f"repeats the arm name '{arm.name}'; names must be unique")
            seen.add(arm.name)
            s = self.sample_of(self.arm_generator(arm)) if arm.uses_synthetic else self.sample
            if arm.mix is not None and arm.mix.add is not None and s.proportions == "balanced" and s.per_image is None:
                need(arm.mix.add <= s.n_per_class, f"arms[{i}].mix.add",
                     f"asks for {arm.mix.add} fakes per class but sample.n_per_class makes {s.n_per_class}")
        return seen

    def _check_seeds(self) -> None:
        need(len(self.seeds) >= 1, "seeds", "must list at least one seed")
        need(len(set(self.seeds)) == len(self.seeds), "seeds", f"must not repeat a seed, got {self.seeds}")
        if self.gan_seeds is not None:
            need(len(self.gan_seeds) >= 1, "gan_seeds", "must list at least one seed, or be left out (one GAN, gan.seed)")
            need(len(set(self.gan_seeds)) == len(self.gan_seeds), "gan_seeds", f"must not repeat a seed, got {self.gan_seeds}")
            need(len(self.gan_seeds) <= len(self.seeds), "gan_seeds",
                 f"lists {len(self.gan_seeds)} GANs for {len(self.seeds)} replicates; replicate i uses gan_seeds[i], "
                 "so list at most one per seed")

    def _check_sweep(self, seen: set) -> None:
        """sweep: one key (an arm key, or an experiment key), and with an experiment key an optional inner arm key."""
        sw = self.sweep
        assert sw is not None
        key = sweep_key(sw.key)
        self._check_sweep_values("sweep", sw.values, key)
        if key in EXPERIMENT_SWEEP_KEYS:
            spec = EXPERIMENT_SWEEP_KEYS[key]
            for x in sweep_values(sw):
                need(not spec["integer"] or float(x).is_integer(), "sweep.values", f"must be whole numbers for {key}, got {x:g}")
                need(x >= spec["minimum"], "sweep.values", f"must be {spec['minimum']:g} or more for {key}, got {x:g}")
                if "maximum" in spec:
                    need(x <= spec["maximum"], "sweep.values", f"must be {spec['maximum']:g} or less for {key}, got {x:g}")
            need(sw.augment == "none", "sweep.augment",
                 f"applies to a sweep over an arm key; a sweep over {key} runs every arm as the config has it "
                 "(an inner arm sweep takes its own: sweep.inner.augment)")
            if spec.get("generator"):
                need(not self.generators, "sweep.key", f"is {key}, which sweeps the one generator of gan:; with "
                     "generators: give each value its own generator entry instead")
                field_name = key.split(".", 1)[1]
                owners = [n for n in GANS.names() if field_name in family_schema(n).model_fields]
                need(field_name in type(self.gan).model_fields, "sweep.key",
                     f"is {key}, which gan '{self.gan.name}' does not read (it applies to {', '.join(owners) or 'no family'})")
            if key == "split.n_per_class":
                need(self.split.test_after is None, "split.test_after",
                     "is set by a sweep over split.n_per_class (its largest value, so every value is tested on the same "
                     "images); leave it out")
            if sw.inner is not None:
                inner = sweep_key(sw.inner.key)
                need(inner in SWEEP_KEYS, "sweep.inner.key",
                     f"is {sw.inner.key!r}; the inner key of a two-key sweep is an arm key ({' or '.join(SWEEP_KEYS)})")
                self._check_sweep_values("sweep.inner", sw.inner.values, inner)
                names = {a.name for a in sweep_arms(SweepConfig(key=inner, values=sw.inner.values, augment=sw.inner.augment))}
                clash = sorted(names & seen)
                need(not clash, "sweep.inner", f"makes an arm named '{clash[0] if clash else ''}', which arms already has; "
                     "rename that arm")
            return
        need(sw.inner is None, "sweep.inner", f"applies to a sweep over an experiment key ({', '.join(EXPERIMENT_SWEEP_KEYS)}), "
             f"not over the arm key {key}")
        for arm in self.all_arms[len(self.arms):]:
            need(arm.name not in seen, "sweep", f"makes an arm named '{arm.name}', which arms already has; rename that arm")
            seen.add(arm.name)

    def _check_sweep_values(self, where: str, values: Any, key: str) -> None:
        """The values of a sweep (or of its inner key): parseable, at most the limit, no repeats, in range for an arm key."""
        if isinstance(values, float):
            raise ConfigError(f"config key '{where}.values' is the number {values:g}; YAML reads an unquoted "
                              "0:1:0.1 as a base-60 number, so quote it ('0:1:0.1') or give a list")
        try:
            xs = sweep_values(SweepConfig(key=key, values=values))
        except ConfigError as e:
            raise ConfigError(str(e).replace("'sweep.values'", f"'{where}.values'")) from None
        need(len(xs) <= MAX_SWEEP_VALUES, f"{where}.values", f"gives {len(xs)} values; {MAX_SWEEP_VALUES} at most")
        need(len(set(xs)) == len(xs), f"{where}.values", f"repeats a value: {xs}")
        for x in xs:
            if key == "mix.p_real":
                need(0.0 <= x <= 1.0, f"{where}.values", f"must be shares of real images in [0, 1] for {key}, got {x:g}")
            elif key == "mix.add":
                need(x >= 0 and float(x).is_integer(), f"{where}.values", f"must be whole numbers of fakes per class, got {x:g}")
                if self.sample.proportions == "balanced":
                    need(x <= self.sample.n_per_class, f"{where}.values",
                         f"asks for {x:g} fakes per class but sample.n_per_class makes {self.sample.n_per_class}")


def image_resolution(data: DataConfig) -> Optional[int]:
    """The side of the images the networks see: data.resolution, else the source's own (None if it varies)."""
    return data.resolution or DATASETS.meta(data.source).get("resolution")
