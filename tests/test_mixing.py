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
        x, y, is_real = src.next(64)
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
    x, y, is_real = src.next(len(src.y))  # one epoch: every pooled image once
    assert int((~is_real).sum()) == 12 and int(is_real.sum()) == 30
    with pytest.raises(DataError, match="adds 25 fakes per class but class 0 has 20"):
        source(ArmConfig(name="a", data="mixed", mix=MixConfig(add=25)))


def test_real_and_synthetic_arms() -> None:
    x, y, is_real = source(ArmConfig(name="r", data="real")).next(50)
    assert bool(is_real.all()) and bool((x < 100).all())
    x, y, is_real = source(ArmConfig(name="s", data="synthetic")).next(50)
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
