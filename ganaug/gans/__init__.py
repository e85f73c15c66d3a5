"""GAN families, registered by name. Knows nothing of the CLI or run folders."""

from . import dcgan, diffusion, stylegan2, vae  # noqa: F401  (fill the registry)
from .base import GANS, GanNets, cpu_bf16, gan_kwargs, get_gan, list_gans, register_gan
from .training import train_generator

__all__ = ["GANS", "GanNets", "cpu_bf16", "gan_kwargs", "get_gan", "list_gans", "register_gan", "train_generator"]
