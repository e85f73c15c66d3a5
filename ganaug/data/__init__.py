"""Data: sources, splits, synthetic sets, mixed batches and classic augmentation. Knows nothing of models.

The names below load on first use (PEP 562), so a worker process that imports only `ganaug.data.decode`
(Pillow and NumPy) does not pay for torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"ImageSet": "images", "to_float": "images", "to_uint8": "images", "DATASETS": "sources",
            "list_datasets": "sources", "load_dataset": "sources", "register_dataset": "sources"}

__all__ = sorted(_EXPORTS)

# What an arm trains on (arms: data, mix), for `ganaug list`; mixing.py draws the batches.
ARM_KINDS = {
    "real": "The real training images only (the baseline the other arms are compared with).",
    "synthetic": "The fakes only, in shuffled epochs (train on fake, test on real: the classification accuracy score).",
    "mixed p_real=P": "Each batch sample stays real with probability P, else becomes a fake of its class (mix: {p_real: P}).",
    "mixed add=K": "K fakes per class added to the real training set (mix: {add: K}).",
    "mixed balance": "Fakes added to each class up to the largest class's real count, for imbalanced data "
                     "(mix: {balance: true}).",
}

# An arm's augmentation (arms: augment, one of config.AUGMENT_KINDS; and label_mix), for `ganaug list`; augment.py.
AUGMENTATIONS = {
    "none": "No augmentation: the training images as they are.",
    "classic": "Flips, rotation, translation, scale and brightness/contrast, drawn per sample (keys under augment:).",
    "trivialaugment": "torchvision's TrivialAugmentWide policy, one draw per image.",
    "randaugment": "torchvision's RandAugment policy, one draw per image.",
    "autoaugment": "torchvision's AutoAugment policy (the ImageNet one), one draw per image.",
    "mixup": "MixUp (label_mix: mixup): each image and its label blended with the next in the batch, "
             "lambda ~ Beta(alpha, alpha) (augment.mixup_alpha).",
    "cutmix": "CutMix (label_mix: cutmix): a box of the next image in the batch pasted in, labels mixed by its area "
              "(augment.cutmix_alpha).",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
