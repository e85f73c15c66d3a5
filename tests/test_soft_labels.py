"""Soft labels of an edited synthetic set: read and checked, carried by every batch, and the classifier's target."""

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
import torch

from ganaug.classifiers import get_classifier
from ganaug.classifiers.train import train_classifier
from ganaug.config import ArmConfig, MixConfig, load_config
from ganaug.data.augment import LabelMix
from ganaug.data.mixing import BatchSource
from ganaug.data.synthetic import SOFT_FILE, load_synthetic, read_soft_labels, save_synthetic
from ganaug.errors import DataError
from ganaug.utils import Stats

from .conftest import tiny_config, write_yaml

K = 3
ARMS = {
    "synthetic": ArmConfig(name="s", data="synthetic"),
    "add": ArmConfig(name="a", data="mixed", mix=MixConfig(add=5)),
    "p_real": ArmConfig(name="p", data="mixed", mix=MixConfig(p_real=0.5)),
}


def pools(size: int = 8):
    """Reals hold values 0..99; fake i holds 100 + i everywhere, so a batch says which fake each image is."""
    g = torch.Generator().manual_seed(0)
    real_y = torch.arange(K).repeat_interleave(10)
    real_x = torch.randint(0, 100, (30, 1, size, size), dtype=torch.uint8, generator=g)
    fake_y = torch.arange(K).repeat(20)
    fake_x = (100 + torch.arange(60)).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, size, size).contiguous()
    s = torch.rand(60, generator=g) * 0.45  # the edit strength: (1 - s) on the hard label, s on the next class
    soft = (1 - s)[:, None] * torch.nn.functional.one_hot(fake_y, K) \
        + s[:, None] * torch.nn.functional.one_hot((fake_y + 1) % K, K)
    return real_x, real_y, fake_x, fake_y, soft.float()


def write_set(folder: Path, soft: Optional[np.ndarray]) -> None:
    _, _, fake_x, fake_y, _ = pools()
    save_synthetic(folder, fake_x, fake_y, ["a", "b", "c"], {} if soft is None else {"soft_labels": SOFT_FILE}, png=False)
    if soft is not None:
        np.save(folder / SOFT_FILE, soft)


def expected_soft(x: torch.Tensor, y: torch.Tensor, is_real: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """One-hot for real images, the fake's own row (found from its pixel value) for fakes."""
    out = torch.nn.functional.one_hot(y, K).float()
    ids = x[:, 0, 0, 0].long() - 100
    out[~is_real] = soft[ids[~is_real]]
    return out


# 1. Reading and checking.


def test_soft_labels_load_memory_mapped_and_sum_to_one(tmp_path: Path) -> None:
    soft = pools()[4].numpy()
    write_set(tmp_path / "soft", soft)
    got = read_soft_labels(tmp_path / "soft")
    assert got is not None and got.dtype == torch.float32 and got.shape == (60, K)
    assert torch.allclose(got.sum(1), torch.ones(60), atol=1e-4) and np.array_equal(got.numpy(), soft)
    write_set(tmp_path / "hard", None)
    assert read_soft_labels(tmp_path / "hard") is None


@pytest.mark.parametrize("bad", ["sum", "range", "shape"])
def test_a_bad_soft_label_file_is_a_one_line_data_error(tmp_path: Path, bad: str) -> None:
    soft = pools()[4].numpy()
    if bad == "sum":
        soft[7] *= 0.9
    elif bad == "range":
        soft[7] = [1.5, -0.5, 0.0]
    else:
        soft = soft[:, :2]
    write_set(tmp_path, soft)
    with pytest.raises(DataError) as e:
        read_soft_labels(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and SOFT_FILE in msg and "--force" in msg
    if bad == "sum":
        assert "sum to 1" in msg


# 2. Batches.


@pytest.mark.parametrize("kind", list(ARMS))
def test_batches_carry_the_fakes_rows_and_one_hot_for_reals(kind: str) -> None:
    real_x, real_y, fake_x, fake_y, soft = pools()
    src = BatchSource(ARMS[kind], real_x, real_y, fake_x, fake_y, K, torch.Generator().manual_seed(0), soft)
    n_fake = n_real = 0
    for _ in range(20):
        x, y, is_real, s = src.next(16)
        assert s is not None and s.dtype == torch.float32 and s.shape == (16, K)
        assert torch.equal(s, expected_soft(x, y, is_real, soft))
        n_fake, n_real = n_fake + int((~is_real).sum()), n_real + int(is_real.sum())
    assert n_fake > 0 and (n_real > 0) == (kind != "synthetic")


@pytest.mark.parametrize("kind", [*ARMS, "balance", "oversample"])
def test_a_set_without_soft_labels_gives_exactly_the_same_batches(kind: str) -> None:
    real_x, real_y, fake_x, fake_y, soft = pools()
    arm = {"balance": ArmConfig(name="b", data="mixed", mix=MixConfig(balance=True)),
           "oversample": ArmConfig(name="o", data="mixed", mix=MixConfig(p_real=0.3), oversample=True)}.get(kind) or ARMS[kind]
    real_x, real_y = (real_x[:18], real_y[:18]) if kind == "balance" else (real_x, real_y)  # an imbalanced real set
    plain = BatchSource(arm, real_x, real_y, fake_x, fake_y, K, torch.Generator().manual_seed(3))
    with_soft = BatchSource(arm, real_x, real_y, fake_x, fake_y, K, torch.Generator().manual_seed(3), soft)
    for _ in range(10):
        (xa, ya, ra, sa), (xb, yb, rb, sb) = plain.next(16), with_soft.next(16)
        assert sa is None and sb is not None
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ra, rb)
    assert torch.equal(plain.gen.get_state(), with_soft.gen.get_state())  # no extra draws


def test_soft_labels_of_the_wrong_shape_are_refused() -> None:
    real_x, real_y, fake_x, fake_y, soft = pools()
    with pytest.raises(DataError, match="soft labels of shape"):
        BatchSource(ARMS["synthetic"], real_x, real_y, fake_x, fake_y, K, torch.Generator(), soft[:-1])


# 3. The loss.


def train(arm: ArmConfig, soft: Optional[torch.Tensor], steps: int, mixer: Any = None,
          log: Optional[List[Dict[str, torch.Tensor]]] = None) -> Dict[str, torch.Tensor]:
    real_x, real_y, fake_x, fake_y, _ = pools()
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the model's initial weights
    batches = BatchSource(arm, real_x, real_y, fake_x, fake_y, K, gen, soft)
    if log is not None:
        draw = batches.next

        def spy_next(n: int):
            out = draw(n)
            log.append({"batch": out})
            return out
        batches.next = spy_next  # type: ignore[method-assign]
    model = get_classifier("small-cnn", resolution=8, channels=1, num_classes=K, width=4)
    out = train_classifier(model, batches=batches, augment=None, mixer=mixer, val_images=real_x[:6],
                           val_labels=real_y[:6], steps=steps, batch_size=12, lr=1e-2, weight_decay=0.0,
                           schedule="constant", eval_every=1000, device=torch.device("cpu"), amp_dtype=None,
                           channels_last=False, generator=gen, stats=Stats(None), progress=False)
    return {k: v.clone() for k, v in out["model"].state_dict().items()}


@pytest.mark.parametrize("kind", ["synthetic", "p_real"])
def test_the_loss_gets_each_fakes_soft_row(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    soft = pools()[4]
    log: List[Dict[str, torch.Tensor]] = []
    real_ce = torch.nn.functional.cross_entropy

    def spy_ce(logits, target, *a, **kw):
        log[-1]["target"] = target.detach().clone()
        return real_ce(logits, target, *a, **kw)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy_ce)
    trained = train(ARMS[kind], soft, 3, log=log)
    assert len(log) == 3
    for step in log:
        x, y, is_real, _ = step["batch"]
        assert step["target"].shape == (12, K) and (~is_real).any()
        assert torch.equal(step["target"], expected_soft(x, y, is_real, soft))  # a fake's target is its soft row
    monkeypatch.undo()
    hard = train(ARMS[kind], None, 3)
    assert any(not torch.equal(trained[k], hard[k]) for k in trained if trained[k].is_floating_point())


def test_mixup_mixes_the_soft_targets_into_rows_that_sum_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    real_x, real_y, fake_x, fake_y, soft = pools()
    x = torch.rand(12, 1, 8, 8)
    for kind in ("mixup", "cutmix"):
        mixed, target = LabelMix(kind, 1.0, K)(x, soft[:12], torch.Generator().manual_seed(1))
        assert target.shape == (12, K) and torch.allclose(target.sum(1), torch.ones(12), atol=1e-5)
        _, hard_target = LabelMix(kind, 1.0, K)(x, fake_y[:12], torch.Generator().manual_seed(1))
        assert not torch.allclose(target, hard_target)  # the soft rows, not the one-hot ones, were mixed
    targets: List[torch.Tensor] = []
    real_ce = torch.nn.functional.cross_entropy

    def spy_ce(logits, target, *a, **kw):
        targets.append(target.detach().clone())
        return real_ce(logits, target, *a, **kw)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy_ce)
    train(ARMS["synthetic"], soft, 2, mixer=LabelMix("mixup", 1.0, K))
    assert len(targets) == 2
    for t in targets:
        assert t.shape == (12, K) and torch.allclose(t.sum(1), torch.ones(12), atol=1e-5)


# 4. The stage: soft labels loaded with the set, and said in result.json only when used.


def test_train_clf_records_soft_labels_only_when_used(tmp_path: Path, image_folder: Path) -> None:
    from ganaug.stages import train_clf as clf_stage
    from ganaug.stages.layout import paths
    from ganaug.stages.split import load_split_data, run_split

    cfg = load_config(write_yaml(tmp_path / "tiny.yaml", tiny_config(tmp_path, image_folder, arms=[
        {"name": "synthetic", "data": "synthetic"}], classifier={"steps": 2, "eval_every": 2})))
    run_split(cfg)
    data, _ = load_split_data(cfg)
    arm = cfg.all_arms[0]
    g = torch.Generator().manual_seed(0)
    fake_y = torch.arange(K).repeat(4)
    fake_x = torch.randint(0, 256, (12, *data.train.images.shape[1:]), dtype=torch.uint8, generator=g)
    soft_np = np.full((12, K), 1 / K, dtype=np.float32)
    folder = tmp_path / "set"
    save_synthetic(folder, fake_x, fake_y, data.classes, {"soft_labels": SOFT_FILE}, png=False)
    np.save(folder / SOFT_FILE, soft_np)
    fx, fy = load_synthetic(folder, tuple(data.train.images.shape[1:]), data.classes)
    results = []
    for soft in (read_soft_labels(folder), None):
        clf_stage._train_one(cfg, arm, 0, data, fx, fy, torch.device("cpu"), False, "", None, soft)
        run = paths(cfg).clf_run(arm.name, 0)
        results.append(json.loads((run / "result.json").read_text()))
        shutil.rmtree(run)
    assert results[0]["soft_labels"] is True
    assert "soft_labels" not in results[1]
