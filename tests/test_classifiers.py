"""Classifiers: every registered model at several sizes; the loop keeps a fixed budget and selects on validation."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganaug.classifiers import get_classifier, list_classifiers
from ganaug.classifiers.train import predict, train_classifier
from ganaug.config import ArmConfig
from ganaug.data.mixing import BatchSource
from ganaug.metrics import classification_report
from ganaug.utils import Stats, read_jsonl

from .conftest import pattern


@pytest.mark.parametrize("resolution", [8, 16, 28, 32])
@pytest.mark.parametrize("name", list_classifiers())
def test_models_give_logits_per_class(name: str, resolution: int) -> None:
    net = get_classifier(name, resolution=resolution, channels=3, num_classes=5, width=4)
    with torch.no_grad():
        assert net(torch.randn(2, 3, resolution, resolution)).shape == (2, 5)


def patterns(n_per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    x = np.stack([pattern(c, rng) for c in range(3) for _ in range(n_per_class)])[:, None]
    return torch.from_numpy(x), torch.arange(3).repeat_interleave(n_per_class)


def test_training_learns_keeps_the_budget_and_selects_on_validation(tmp_path: Path) -> None:
    train_x, train_y = patterns(10, 0)
    val_x, val_y = patterns(10, 1)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = get_classifier("small-cnn", resolution=16, channels=1, num_classes=3, width=8)
    batches = BatchSource(ArmConfig(), train_x, train_y, None, None, 3, gen)
    out = train_classifier(model, batches=batches, augment=None, val_images=val_x, val_labels=val_y, steps=60,
                           batch_size=16, lr=3e-3, weight_decay=0.0, schedule="cosine", eval_every=20,
                           device=torch.device("cpu"), amp_dtype=None, channels_last=False, generator=gen,
                           stats=Stats(tmp_path / "m.jsonl"), progress=False)
    rows = read_jsonl(tmp_path / "m.jsonl")
    assert [r["step"] for r in rows] == [20, 40, 60]
    assert out["seen"] == {"real": 60 * 16, "fake": 0}  # exactly the step budget
    best = max(rows, key=lambda r: (r["acc/val"], r["step"]))
    assert out["best_step"] == best["step"] and out["best_val_acc"] == best["acc/val"]
    pred = predict(out["model"], val_x, device=torch.device("cpu"), amp_dtype=None)
    assert float((pred == val_y).float().mean()) == pytest.approx(out["best_val_acc"])  # the selected weights
    assert out["best_val_acc"] > 0.8  # the patterns are easy; chance is 1/3


def test_classification_report_matches_definitions() -> None:
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    p = torch.tensor([0, 1, 1, 1, 2, 0])
    r = classification_report(y, p, ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": 0.5}
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # F1 per class: a 0.5, b 0.8, c 2/3
    assert r["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6).flatmap(lambda k: st.tuples(
    st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=40))))
def test_classification_report_is_scikit_learns(case) -> None:
    """The report's numpy arithmetic gives scikit-learn's numbers, absent classes and empty predictions included."""
    from sklearn.metrics import confusion_matrix, f1_score

    k, pairs = case
    t, p = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    r = classification_report(torch.from_numpy(t), torch.from_numpy(p), [str(i) for i in range(k)])
    assert r["confusion_matrix"] == confusion_matrix(t, p, labels=list(range(k))).tolist()
    assert r["macro_f1"] == pytest.approx(f1_score(t, p, labels=list(range(k)), average="macro", zero_division=0),
                                          abs=1e-12)


def test_foreach_adamw_trains_what_the_per_parameter_loop_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The classifier's AdamW uses torch's foreach kernels: the weights after training are the loop's (torch's CPU
    default), bit for bit, so no result changes."""
    from .test_gans import _without_foreach

    def train() -> dict:
        train_x, train_y = patterns(10, 0)
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        model = get_classifier("small-cnn", resolution=16, channels=1, num_classes=3, width=8)
        out = train_classifier(model, batches=BatchSource(ArmConfig(), train_x, train_y, None, None, 3, gen), augment=None,
                               val_images=train_x, val_labels=train_y, steps=12, batch_size=8, lr=3e-3, weight_decay=5e-4,
                               schedule="cosine", eval_every=12, device=torch.device("cpu"), amp_dtype=None,
                               channels_last=True, generator=gen, stats=Stats(None), progress=False)
        return {k: v.clone() for k, v in out["model"].state_dict().items()}

    fast = train()
    _without_foreach(monkeypatch)
    slow = train()
    assert all(torch.equal(fast[k], slow[k]) for k in fast)
