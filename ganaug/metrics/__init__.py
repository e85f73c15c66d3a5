"""Metrics: classification scores and summaries across replicates."""

from .classification import classification_report

__all__ = ["classification_report"]
