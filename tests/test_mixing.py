"""Mixed batches: the real share matches p_real, fakes keep their class, add=K joins K per class."""

import pytest
import torch

from ganaug.config import ArmConfig, MixConfig
from ganaug.data.mixing import BatchSource, EpochSampler
from ganaug.errors import DataError

K = 3


def pools():
    """Real images hold values 0..99, fakes 200 + class, so a batch tells which is which."""
    g = torch.Generator().manual_seed(0)
    real_y = torch.arange(K).repeat_interleave(10)
    real_x = torch.randint(0, 100, (30, 1, 4, 4), dtype=torch.uint8, generator=g)
    fake_y = torch.arange(K).repeat(20)  # interleaved on purpose
    fake_x = (200 + fake_y).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    return real_x, real_y, fake_x, fake_y


def source(arm: ArmConfig, seed: int = 0) -> BatchSource:
    return BatchSource(arm, *pools(), num_classes=K, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("p_real", [0.0, 0.25, 0.8, 1.0])
def test_share_of_real_images_matches_p_real(p_real: float) -> None:
    src = source(ArmConfig(name="m", data="mixed", mix=MixConfig(p_real=p_real)))
    n_real = n = 0
    for _ in range(2000):
        x, y, is_real, _ = src.next(64)
        # The flag tells the truth: real pixels are < 100, fakes are 200 + their label.
        assert torch.equal(is_real, x[:, 0, 0, 0] < 100)
        fake = ~is_real
        assert torch.equal(x[fake, 0, 0, 0].long() - 200, y[fake]), "a fake replaced a real image of another class"
        n_real += int(is_real.sum())
        n += len(y)
    # 128,000 draws: the binomial standard error is at most 0.0014.
    assert abs(n_real / n - p_real) < 0.006


def test_higher_p_real_gives_more_real_images() -> None:
    shares = []
    for p in (0.2, 0.5, 0.9):
        src = source(ArmConfig(name="m", data="mixed", mix=MixConfig(p_real=p)))
        shares.append(sum(int(src.next(32)[2].sum()) for _ in range(200)) / (200 * 32))
    assert shares[0] < shares[1] < shares[2]


def test_labels_of_mixed_batches_follow_the_real_draw() -> None:
    # Replacement keeps the class balance of the real set: each class ~1/3 of the labels.
    src = source(ArmConfig(name="m", data="mixed", mix=MixConfig(p_real=0.3)))
    counts = torch.zeros(K)
    for _ in range(300):
        counts += torch.bincount(src.next(30)[1], minlength=K)
    assert torch.allclose(counts / counts.sum(), torch.full((K,), 1 / K), atol=1e-6)  # epochs cover the set exactly


def test_add_k_per_class_joins_the_real_set() -> None:
    src = source(ArmConfig(name="a", data="mixed", mix=MixConfig(add=4)))
    assert len(src.y) == 30 + 4 * K
    assert torch.bincount(src.y[~src.is_real], minlength=K).tolist() == [4, 4, 4]
    x, y, is_real, _ = src.next(len(src.y))  # one epoch: every pooled image once
    assert int((~is_real).sum()) == 12 and int(is_real.sum()) == 30
    with pytest.raises(DataError, match="adds 25 fakes to class 0 but the synthetic set has 20 of it"):
        source(ArmConfig(name="a", data="mixed", mix=MixConfig(add=25)))


def test_real_and_synthetic_arms() -> None:
    x, y, is_real, _ = source(ArmConfig(name="r", data="real")).next(50)
    assert bool(is_real.all()) and bool((x < 100).all())
    x, y, is_real, _ = source(ArmConfig(name="s", data="synthetic")).next(50)
    assert not bool(is_real.any()) and bool((x >= 200).all())


def test_synthetic_arm_without_or_with_mismatched_fakes() -> None:
    real_x, real_y, fake_x, fake_y = pools()
    gen = torch.Generator()
    with pytest.raises(DataError, match="needs synthetic images"):
        BatchSource(ArmConfig(name="s", data="synthetic"), real_x, real_y, None, None, K, gen)
    with pytest.raises(DataError, match="synthetic images are"):
        BatchSource(ArmConfig(name="s", data="synthetic"), real_x, real_y, fake_x[:, :, :2], fake_y, K, gen)
    with pytest.raises(DataError, match="synthetic images are"):
        BatchSource(ArmConfig(name="s", data="synthetic"), real_x, real_y, fake_x.float(), fake_y, K, gen)


def test_epoch_sampler_visits_every_item_once_per_epoch() -> None:
    s = EpochSampler(10, torch.Generator().manual_seed(1))
    first = torch.cat([s.next(3) for _ in range(3)] + [s.next(1)])
    assert sorted(first.tolist()) == list(range(10))
    assert len(s.next(25)) == 25


def imbalanced():
    """Class 0 holds 20 real images, classes 1 and 2 hold 4 each."""
    real_x, _, fake_x, fake_y = pools()
    real_y = torch.tensor([0] * 20 + [1] * 4 + [2] * 4)
    return real_x[:28], real_y, fake_x, fake_y


def test_balance_tops_every_class_up_to_the_largest() -> None:
    real_x, real_y, fake_x, fake_y = imbalanced()
    arm = ArmConfig(name="b", data="mixed", mix=MixConfig(balance=True))
    src = BatchSource(arm, real_x, real_y, fake_x, fake_y, num_classes=K, generator=torch.Generator().manual_seed(0))
    assert torch.bincount(src.y, minlength=K).tolist() == [20, 20, 20]
    assert torch.bincount(src.y[~src.is_real], minlength=K).tolist() == [0, 16, 16]
    with pytest.raises(DataError, match="adds 16 fakes to class 1 but the synthetic set has 3"):
        keep = torch.cat([torch.nonzero(fake_y == c).flatten()[:3] for c in range(K)])
        BatchSource(arm, real_x, real_y, fake_x[keep], fake_y[keep], num_classes=K, generator=torch.Generator())


def test_oversampling_draws_classes_equally() -> None:
    real_x, real_y, _, _ = imbalanced()
    counts = torch.zeros(K)
    for oversample in (False, True):
        arm = ArmConfig(name="o", data="real", oversample=oversample)
        src = BatchSource(arm, real_x, real_y, None, None, num_classes=K, generator=torch.Generator().manual_seed(0))
        counts = torch.zeros(K)
        for _ in range(300):
            _, y, is_real, _ = src.next(64)
            assert is_real.all()
            counts += torch.bincount(y, minlength=K)
        share = counts / counts.sum()
        # 19,200 draws: oversampled, each class 1/3 (standard error 0.0034); otherwise the real 20/28, 4/28, 4/28.
        want = torch.tensor([1 / 3] * 3) if oversample else torch.tensor([20 / 28, 4 / 28, 4 / 28])
        assert torch.allclose(share, want, atol=0.02), (oversample, share)
