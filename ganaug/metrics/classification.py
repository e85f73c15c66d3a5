"""Accuracy, macro-F1, per-class accuracy and the confusion matrix (scikit-learn's definitions)."""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score


def classification_report(y_true: torch.Tensor, y_pred: torch.Tensor, classes: List[str]) -> Dict[str, Any]:
    t, p = y_true.cpu().numpy(), y_pred.cpu().numpy()
    labels = list(range(len(classes)))
    cm = confusion_matrix(t, p, labels=labels)
    support = cm.sum(axis=1)
    per_class = np.divide(np.diag(cm), support, out=np.zeros(len(labels)), where=support > 0)
    return {
        "n": int(len(t)),
        "accuracy": float((t == p).mean()),
        "macro_f1": float(f1_score(t, p, labels=labels, average="macro", zero_division=0)),
        "per_class_accuracy": {c: float(a) for c, a in zip(classes, per_class)},
        "confusion_matrix": cm.tolist(),
    }
