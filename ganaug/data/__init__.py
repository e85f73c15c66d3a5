"""Data: sources, splits, synthetic sets, mixed batches and classic augmentation. Knows nothing of models."""

from .images import ImageSet, to_float, to_uint8
from .sources import DATASETS, list_datasets, load_dataset, register_dataset

__all__ = ["DATASETS", "ImageSet", "list_datasets", "load_dataset", "register_dataset", "to_float", "to_uint8"]
