"""Classic augmentation: per-sample parameters, and torchvision's own resampling image by image."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from ganaug.config import AugmentConfig
from ganaug.data.augment import AffineParams, ClassicAugment, affine


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 16), (1, 9)])
def test_batched_affine_matches_torchvision_per_image(channels: int, size: int) -> None:
    g = torch.Generator().manual_seed(0)
    n = 16
    x = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    p = AffineParams(
        angle=torch.rand(n, generator=g) * 40 - 20,
        translate=torch.randint(-3, 4, (n, 2), generator=g).float(),
        scale=torch.rand(n, generator=g) * 0.4 + 0.8,
    )
    ours = affine(x, p)
    for i in range(n):
        ref = TF.affine(x[i], angle=float(p.angle[i]), translate=[int(p.translate[i, 0]), int(p.translate[i, 1])],
                        scale=float(p.scale[i]), shear=[0.0, 0.0])
        # Nearest-neighbour lookups may land on the other side of a pixel boundary by float rounding.
        assert (ours[i] != ref).float().mean() < 0.002, i


def test_each_sample_gets_its_own_parameters() -> None:
    aug = ClassicAugment(AugmentConfig(), hflip=False)
    one = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    one[..., 8:20, 12:16] = 255
    out = aug(one.expand(32, -1, -1, -1).contiguous(), torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == (32, 1, 28, 28)
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 25  # one parameter set per batch would give one image


def test_deterministic_given_the_generator() -> None:
    aug = ClassicAugment(AugmentConfig(contrast=0.3), hflip=True)
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_flips_only_where_classes_allow_them() -> None:
    still = AugmentConfig(degrees=0, translate=0, scale=[1.0, 1.0], brightness=0)
    x = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(ClassicAugment(still, hflip=False)(x, torch.Generator()), x)  # identity for digits
    out = ClassicAugment(still, hflip=True)(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    assert 16 < int(flipped.sum()) < 48 and torch.equal(out[~flipped], x[~flipped])


def test_brightness_scales_per_sample_within_range() -> None:
    cfg = AugmentConfig(degrees=0, translate=0, scale=[1.0, 1.0], brightness=0.2)
    x = torch.full((200, 1, 4, 4), 100, dtype=torch.uint8)
    out = ClassicAugment(cfg, hflip=False)(x, torch.Generator().manual_seed(0)).float()
    assert out.min() >= 80 and out.max() <= 120 and out[:, 0, 0, 0].std() > 5
