"""The keys every generator family shares, and those of the families trained against a discriminator.

Each family's model (beside its builder) extends one of these and names itself (`name: Literal["vae"]`); the
config's `gan:` is the union of them, told apart by `name`. A family's keys left out (None) are filled when the
model is validated, from the family's defaults (a preset) at the images' resolution, which the loader passes as
validation context, so the saved config.yaml holds every number used.
"""

from __future__ import annotations

from typing import Annotated, Any, Dict, List, Literal, Optional

from pydantic import ValidationInfo, model_validator

from ..config.base import Float, Int, Invalid, Section, Switch, need
from .augment import AUGPIPES, DIFFAUGMENT_OPS


def _family_json(schema: Dict[str, Any], cls: type) -> None:
    """In the JSON Schema, `name` is required except for the default family (cgan), so an editor tells families
    apart: a section without `name` is a cgan."""
    default = cls.model_fields["name"].default  # type: ignore[attr-defined]
    if default != "cgan" and "name" in schema.get("properties", {}):
        schema.setdefault("required", []).append("name")


class GeneratorConfig(Section):
    """The keys every generator family reads; each family's schema (beside its builder in `gans/`) extends it.

    Keys left out (None) are filled from the family's defaults (a preset) when the config is loaded, so the
    saved config.yaml holds every number used.
    """

    model_config = {**Section.model_config, "json_schema_extra": _family_json}

    name: str = "cgan"
    """The generator family (`ganaug list`): cgan (conditional DCGAN), dcgan, stylegan2 (native), stylegan2-ada
    (native with ADA on, or impl: official), vae or diffusion [cgan]"""
    epochs: Int = 100
    """Training length in passes over the training images (kimg replaces it)"""
    kimg: Optional[Float] = None
    """Training length in thousands of real images shown (to D, in a GAN), replacing epochs; each class's, if
    per_class"""
    batch_size: Optional[Int] = None
    """Training batch size [dcgan, cgan, vae, diffusion: 64; stylegan2: from the preset]"""
    lr: Optional[Float] = None
    """Adam's learning rate [dcgan, cgan: 0.0002; vae: 0.001; diffusion: 0.0005; stylegan2: from the preset]"""
    betas: Optional[List[Float]] = None
    """Adam's betas [dcgan, cgan: [0.5, 0.999]; vae, diffusion: [0.9, 0.999]; stylegan2: from the preset]"""
    ema_kimg: Optional[Float] = None
    """Half-life of the generator's moving average (G_ema), in thousands of images; 0: off [dcgan, cgan, vae,
    diffusion: 10; stylegan2: from the preset]"""
    mirror: bool = False
    """x-flip real images at random (only for data whose classes survive a flip)"""
    seed: Int = 0
    """Seed of the generator's training (gan_seeds, when set, gives each replicate's instead)"""
    eval_every: Optional[Int] = None
    """Epochs between FID/KID of G_ema on the real validation images (domain features; in metrics.jsonl and
    training.png) [null: none]"""
    sample: Optional[Dict[str, Any]] = None
    """This generator's own keys of the sample section ({mode: edit, strength: 0.5}); generators whose other keys
    are the same train once and share the trained model"""
    select: Optional[Literal["last", "best-fid"]] = None
    """last or best-fid: keep the last G_ema, or the one of lowest validation FID (needs eval_every) [last]"""
    grid_every: Int = 10
    """Epochs between fixed-noise sample grids"""
    amp: Annotated[Literal["auto", "bf16", "off"], Switch] = "auto"
    """Mixed precision: auto (bfloat16 autocast on CUDA, and for cgan and dcgan on CPUs with native bfloat16;
    float32 elsewhere), bf16 or off (see the Performance guide)"""
    channels_last: Annotated[Literal["auto", "on", "off"], Switch] = "auto"
    """The channels_last memory format: auto (on for CPU and CUDA), on or off (see the Performance guide)"""

    @model_validator(mode="before")
    @classmethod
    def _other_families_keys_unset(cls, v: Any) -> Any:
        if isinstance(v, dict):  # null: another family's key, unset (a config written for several families)
            keys = {f.alias or n for n, f in cls.model_fields.items()}
            return {k: x for k, x in v.items() if k in keys or x is not None}
        return v

    @model_validator(mode="after")
    def _resolve_and_check(self, info: ValidationInfo) -> "GeneratorConfig":
        if info.context is None:  # built in code, not loaded: a plain record of keys (the loader resolves and checks)
            return self
        self.resolve(info.context.get("resolution"))
        self.check()
        return self

    def resolve(self, resolution: Optional[int]) -> None:
        """Fill the keys left out from the family's defaults (only None keys: a config that says nothing about a
        family's extras keeps the fingerprint it had before they existed)."""
        from .base import GANS

        defaults = GANS.meta(self.name).get("defaults") if self.name in GANS else None
        if defaults is not None:
            for k, v in defaults(self, resolution).items():
                if k in type(self).model_fields and getattr(self, k) is None:
                    setattr(self, k, v)

    def check(self) -> None:
        """The checks every family shares; a family adds its own by extending this."""
        for k in ("epochs", "batch_size", "z_dim", "grid_every", "eval_every"):
            v = getattr(self, k, None)
            need(v is None or v >= 1, k, f"must be 1 or more, got {v}")
        for k in ("batch_size", "lr", "betas", "ema_kimg") + (("z_dim",) if "z_dim" in type(self).model_fields else ()):
            need(getattr(self, k) is not None, k, f"has no default for gan '{self.name}'; set it")
        assert self.lr is not None and self.betas is not None and self.ema_kimg is not None
        need(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        need(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "betas",
             f"must be two numbers in [0, 1), got {self.betas}")
        need(self.ema_kimg >= 0, "ema_kimg", f"must be 0 (off) or more, got {self.ema_kimg}")
        if self.kimg is not None:
            need(self.kimg > 0, "kimg", f"must be positive (thousands of images), got {self.kimg}")
        if self.eval_every is not None:
            need(getattr(self, "impl", None) != "official", "eval_every", "is not available with impl: official (its own "
                 "metrics run there); remove it, or use the native stylegan2")
        need(self.select != "best-fid" or self.eval_every is not None, "select",
             "is best-fid, which needs {key}.eval_every (epochs between validation FIDs), e.g. {key}.eval_every: 10")


# What D's inputs go through: the defaults of each augmentation, and which kinds read each key.
AUGMENT_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "ada": {"augment_p": 0.0, "ada_target": 0.6, "ada_interval": 4, "ada_kimg": 500.0, "augpipe": "bgc"},
    "fixed": {"augpipe": "bgc"},
    "diffaugment": {"augment_p": 1.0, "diffaugment": "color,translation,cutout"},
}
AUGMENT_KEYS = {
    "augment_p": ("ada", "fixed", "diffaugment"),
    "augpipe": ("ada", "fixed"),
    "ada_target": ("ada",),
    "ada_interval": ("ada",),
    "ada_kimg": ("ada",),
    "diffaugment": ("diffaugment",),
}


class GanConfig(GeneratorConfig):
    """The keys of the families trained against a discriminator: the latent, and what D's inputs go through."""

    z_dim: Optional[Int] = None
    """The latent's size [dcgan, cgan: 64; stylegan2: from the preset]"""
    augment: Optional[Literal["ada", "diffaugment", "fixed", "none"]] = None
    """What every image D sees goes through, in every GAN family: ada, fixed, diffaugment or none [none; ada for
    stylegan2-ada]"""
    augment_p: Optional[Float] = None
    """fixed: the probability (required); ada: where p starts [0]; diffaugment: per op [1]"""
    ada_target: Optional[Float] = None
    """ada: the target of r_t = E[sign(D(real))] [0.6]"""
    ada_interval: Optional[Int] = None
    """ada: minibatches between adjustments of p [4]"""
    ada_kimg: Optional[Float] = None
    """ada: thousands of images over which p can go from 0 to 1 [500]"""
    augpipe: Optional[str] = None
    """ada, fixed: the operations: bgc, bg, blit, geom or color [bgc]"""
    diffaugment: Optional[str] = None
    """diffaugment: its policy, ops separated by commas [color,translation,cutout]"""

    def resolve(self, resolution: Optional[int]) -> None:
        super().resolve(resolution)
        for k, v in AUGMENT_DEFAULTS.get(self.augment or "none", {}).items():
            if getattr(self, k) is None:
                setattr(self, k, v)

    def check(self) -> None:
        super().check()
        aug = self.augment or "none"
        need(aug != "fixed" or self.augment_p is not None, "augment_p", "must be set for augment: fixed (e.g. 0.2)")
        for k, kinds in AUGMENT_KEYS.items():
            if getattr(self, k) is not None and aug not in kinds:
                raise Invalid(k, f"only applies with {{key}}.augment: {' or '.join(kinds)}, and {{key}}.augment is {aug}; "
                              "remove it or change {key}.augment")
        if self.augment_p is not None:
            need(0 <= self.augment_p <= 1, "augment_p", f"must be a probability in [0, 1], got {self.augment_p}")
        if self.ada_target is not None:
            need(0 < self.ada_target < 1, "ada_target", f"must be in (0, 1), e.g. 0.6, got {self.ada_target}")
        if self.ada_kimg is not None:
            need(self.ada_kimg > 0, "ada_kimg", f"must be positive, got {self.ada_kimg}")
        if self.ada_interval is not None:
            need(self.ada_interval >= 1, "ada_interval", f"must be 1 or more, got {self.ada_interval}")
        if self.augpipe is not None:
            need(self.augpipe in AUGPIPES, "augpipe", f"must be one of {', '.join(AUGPIPES)}, got {self.augpipe!r}")
        if self.diffaugment is not None:
            bad = [t for t in self.diffaugment.split(",") if t.strip() not in DIFFAUGMENT_OPS]
            need(not bad and self.diffaugment.strip() != "", "diffaugment",
                 f"must list some of {', '.join(DIFFAUGMENT_OPS)} separated by commas, got {self.diffaugment!r}")
