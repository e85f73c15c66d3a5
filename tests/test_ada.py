"""ADA's augmentation pipe, its p controller, and DiffAugment: behaviour on tiny batches."""

import pytest
import torch

from ganaug.gans.augment import (
    AUGMENT_OPS,
    AUGPIPES,
    DIFFAUGMENT_OPS,
    AdaController,
    AugmentPipe,
    DiffAugment,
    build_augment,
)

BGC_OPS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
           "brightness", "contrast", "lumaflip", "hue", "saturation")
# Ops whose parameter is continuous: at p=1 they change every sample (the others may draw the identity).
CONTINUOUS_OPS = ("scale", "rotate", "aniso", "xfrac", "brightness", "contrast", "hue", "saturation")


def images(n: int = 16, c: int = 3, size: int = 16, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, size, size, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)


def changed(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which samples differ from the input at all."""
    return (out != x).flatten(1).any(dim=1)


def test_bgc_enables_all_twelve_ops() -> None:
    assert set(AUGPIPES["bgc"]) == set(BGC_OPS) and all(w == 1 for w in AUGPIPES["bgc"].values())
    assert AugmentPipe(**AUGPIPES["bgc"]).ops() == list(BGC_OPS) == list(AUGMENT_OPS)
    assert set(AUGPIPES["bg"]) == set(AUGPIPES["blit"]) | set(AUGPIPES["geom"])
    assert set(AUGPIPES["bgc"]) == set(AUGPIPES["bg"]) | set(AUGPIPES["color"])
    assert AugmentPipe().ops() == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", BGC_OPS)
def test_op_alone_keeps_shape_and_dtype_and_changes_images(op: str, channels: int, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    x = images(c=channels, dtype=dtype)
    out = AugmentPipe(**{op: 1}, p=1.0)(x)
    assert out.shape == x.shape and out.dtype == dtype and torch.isfinite(out).all()
    if channels == 1 and op in ("hue", "saturation"):
        assert torch.equal(out, x)  # gray has no hue or saturation
    elif op in CONTINUOUS_OPS:
        assert changed(out, x).all()
    else:
        assert changed(out, x).any()


@pytest.mark.parametrize("op", BGC_OPS)
def test_op_alone_is_differentiable(op: str) -> None:
    torch.manual_seed(0)
    x = images(n=8, c=3).requires_grad_(True)
    w = images(n=8, c=3, seed=1)  # a random weighting, so the gradient is not the trivial all-ones
    (AugmentPipe(**{op: 1}, p=1.0)(x) * w).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(AUGPIPES))
def test_p_zero_is_exactly_the_input(name: str) -> None:
    x = images(c=3).requires_grad_(True)
    out = AugmentPipe(**AUGPIPES[name], p=0.0)(x)
    assert torch.equal(out, x)
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("op", BGC_OPS)
def test_samples_an_op_does_not_choose_are_bit_identical(op: str) -> None:
    torch.manual_seed(0)
    x = images(n=64, c=3)
    x[0, 0, 0, 0] = -0.0  # a sign of zero a matrix product with the identity could lose
    out = AugmentPipe(**{op: 1}, p=0.5)(x)
    same = ~changed(out, x)
    assert 0 < same.sum() < 64
    assert torch.equal(out[same].view(-1).view(torch.int32), x[same].view(-1).view(torch.int32))


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 16, 28, 32, 64])
def test_bgc_any_size_channels_and_batch(size: int, channels: int, batch: int) -> None:
    torch.manual_seed(size)
    pipe = AugmentPipe(**AUGPIPES["bgc"], p=1.0)
    x = images(n=batch, c=channels, size=size)
    with torch.no_grad():
        out = pipe(x)
    assert out.shape == x.shape and not out.requires_grad and torch.isfinite(out).all()
    x.requires_grad_(True)
    out = pipe(x)
    out.square().sum().backward()
    assert out.shape == x.shape and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_xflip_and_rotate90_are_pixel_exact() -> None:
    torch.manual_seed(0)
    x = images(n=32, c=3)
    out = AugmentPipe(xflip=1, p=1.0)(x)
    assert all(torch.equal(o, xi) or torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x))
    out = AugmentPipe(rotate90=1, p=1.0)(x)
    seen = {next(k for k in range(4) if torch.equal(o, torch.rot90(xi, k, (1, 2)))) for o, xi in zip(out, x)}
    assert seen == {0, 1, 2, 3}


def test_integer_translation_moves_whole_pixels_and_reflects_at_borders() -> None:
    torch.manual_seed(0)
    x = images(n=32, c=1, size=16)
    out = AugmentPipe(xint=1, p=1.0)(x)
    assert changed(out, x).any()
    for o, xi in zip(out, x):
        assert torch.isin(o, xi).all()  # every pixel is some input pixel: no blending, no zero fill


def test_geometric_ops_leave_no_black_borders() -> None:
    # A constant image stays constant under any warp only if the outside is filled by reflection.
    torch.manual_seed(0)
    x = torch.full((32, 3, 16, 16), 0.7)
    out = AugmentPipe(**AUGPIPES["bg"], p=1.0)(x)
    assert torch.allclose(out, x, atol=1e-5)


def test_gray_colour_ops_are_luma_affine_maps() -> None:
    torch.manual_seed(0)
    x = images(n=32, c=1)
    out = AugmentPipe(brightness=1, p=1.0)(x)
    shift = (out - x).flatten(1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6) and shift[:, 0].abs().min() > 0
    out = AugmentPipe(contrast=1, p=1.0)(x)
    gain = (out / x).flatten(1)
    assert torch.allclose(gain, gain[:, :1].expand_as(gain), rtol=1e-4) and (gain[:, 0] > 0).all()
    out = AugmentPipe(lumaflip=1, p=1.0)(x)
    flipped = torch.tensor([torch.allclose(o, -xi, atol=1e-6) for o, xi in zip(out, x)])
    assert flipped.any() and torch.equal(out[~flipped], x[~flipped])


def test_hue_and_saturation_keep_luma_and_hue_keeps_chroma() -> None:
    torch.manual_seed(0)
    x = images(n=16, c=3)
    for op in ("hue", "saturation"):
        out = AugmentPipe(**{op: 1}, p=1.0)(x)
        assert torch.allclose(out.mean(dim=1), x.mean(dim=1), atol=1e-5), op
    out = AugmentPipe(hue=1, p=1.0)(x)
    chroma = lambda t: (t - t.mean(dim=1, keepdim=True)).norm(dim=1)
    assert torch.allclose(chroma(out), chroma(x), atol=1e-5)  # a rotation about the gray axis


def test_seeded_runs_are_reproducible() -> None:
    pipe = AugmentPipe(**AUGPIPES["bgc"], p=0.7)
    x = images(n=16, c=3)
    torch.manual_seed(3)
    a = pipe(x)
    torch.manual_seed(3)
    b = pipe(x)
    c = pipe(x)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_p_is_a_buffer_saved_with_the_state_dict() -> None:
    pipe = AugmentPipe(**AUGPIPES["bgc"], p=0.25)
    state = pipe.state_dict()
    assert state["p"].dtype == torch.float32 and state["p"].ndim == 0 and float(state["p"]) == 0.25
    fresh = AugmentPipe(**AUGPIPES["bgc"])
    fresh.load_state_dict(state)
    assert float(fresh.p) == 0.25


def test_gradients_match_finite_differences() -> None:
    x = images(n=2, c=3, size=8, dtype=torch.float64).requires_grad_(True)
    for module in (AugmentPipe(**AUGPIPES["bgc"], p=1.0), DiffAugment(p=1.0)):
        def fn(t: torch.Tensor, module=module) -> torch.Tensor:
            torch.manual_seed(0)  # the same draw on every call gradcheck makes
            return module(t)

        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("op", DIFFAUGMENT_OPS)
def test_diffaugment_op_keeps_shape_and_dtype_is_differentiable_and_changes_images(op: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    x = images(c=3, dtype=dtype).requires_grad_(True)
    w = images(c=3, dtype=dtype, seed=1)
    out = DiffAugment(op)(x)
    assert out.shape == x.shape and out.dtype == dtype
    assert changed(out, x).any()
    (out * w).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("op", DIFFAUGMENT_OPS)
def test_diffaugment_p_zero_is_exactly_the_input_and_p_half_leaves_some_alone(op: str) -> None:
    torch.manual_seed(0)
    x = images(n=64, c=3)
    assert torch.equal(DiffAugment(op, p=0.0)(x), x)
    same = ~changed(DiffAugment(op, p=0.5)(x), x)
    assert 0 < same.sum() < 64


def test_diffaugment_translation_shifts_by_up_to_an_eighth_with_zero_fill() -> None:
    torch.manual_seed(0)
    x = torch.ones(64, 1, 16, 16)
    out = DiffAugment("translation")(x)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    zero_rows = (out == 0).all(dim=3).sum(dim=(1, 2))
    zero_cols = (out == 0).all(dim=2).sum(dim=(1, 2))
    assert zero_rows.max() == 2 and zero_cols.max() == 2  # 16 / 8
    assert (out.sum(dim=(1, 2, 3)) == (16 - zero_rows) * (16 - zero_cols)).all()  # one zero frame, no holes


def test_diffaugment_cutout_zeroes_a_half_size_rectangle() -> None:
    torch.manual_seed(0)
    x = torch.ones(64, 1, 16, 16)
    out = DiffAugment("cutout")(x)
    holes = (out == 0).sum(dim=(1, 2, 3))
    assert holes.max() == 8 * 8 and (holes > 0).all()
    rows = (out == 0).any(dim=3).sum(dim=(1, 2))
    cols = (out == 0).any(dim=2).sum(dim=(1, 2))
    assert torch.equal(holes, rows * cols)  # a rectangle, clipped at the border


def test_diffaugment_policy_is_checked() -> None:
    assert DiffAugment(" color , cutout").policy == ("color", "cutout")
    with pytest.raises(ValueError, match="translation"):
        DiffAugment("color,zoom")
    with pytest.raises(ValueError):
        DiffAugment("")


def test_ada_p_rises_by_exact_steps_on_every_interval_and_stops_at_one() -> None:
    pipe = AugmentPipe(**AUGPIPES["bgc"])
    ada = AdaController(pipe, target=0.6, interval=4, kimg=1.0)
    step = 32 * 4 / 1000
    results = []
    for i in range(1, 41):
        ada.accumulate(torch.ones(32))
        results.append(ada.update(32))
        if i % 4:
            assert results[-1] is None
        else:
            assert results[-1] == 1.0
            assert float(pipe.p) == pytest.approx(min(i // 4 * step, 1.0), abs=1e-6)
    assert float(pipe.p) == 1.0


def test_ada_p_falls_below_target_and_stops_at_zero() -> None:
    pipe = AugmentPipe(**AUGPIPES["bgc"], p=0.3)
    ada = AdaController(pipe, target=0.6, interval=4, kimg=1.0)
    ps = []
    for _ in range(40):
        ada.accumulate(torch.tensor([2.0, -1.0, -3.0, 0.5]))  # r_t = 0 < 0.6
        if ada.update(32) is not None:
            ps.append(float(pipe.p))
    assert ps[:2] == pytest.approx([0.3 - 0.128, 0.3 - 0.256], abs=1e-6)
    assert ps[2:] == [0.0] * 8


def test_ada_r_t_averages_signs_over_the_interval() -> None:
    pipe = AugmentPipe(**AUGPIPES["bgc"], p=0.5)
    ada = AdaController(pipe, target=0.6, interval=2, kimg=500.0)
    ada.accumulate(torch.tensor([[1.0], [1.0]]))
    assert ada.update(64) is None
    ada.accumulate(torch.tensor([[1.0], [-1.0]]))
    assert ada.update(64) == 0.5  # three of four positive, one negative
    assert float(pipe.p) == pytest.approx(0.5 - 64 * 2 / 500_000, abs=1e-7)
    ada.accumulate(torch.full((4,), 0.3))
    ada.accumulate(torch.tensor([1.0, 1.0, -1.0, 1.0, -1.0, 1.0]))  # r_t = 0.6: on target, p stays
    before = float(pipe.p)
    assert ada.update(64) is None and ada.update(64) == pytest.approx(0.6) and float(pipe.p) == before


def test_ada_state_dict_resumes_mid_interval() -> None:
    pipe = AugmentPipe(**AUGPIPES["bgc"], p=0.5)
    ada = AdaController(pipe, interval=4, kimg=1.0)
    for _ in range(2):
        ada.accumulate(torch.ones(8))
        ada.update(8)
    resumed = AdaController(pipe, interval=4, kimg=1.0)
    resumed.load_state_dict(ada.state_dict())
    resumed.accumulate(torch.ones(8))
    assert resumed.update(8) is None
    resumed.accumulate(-torch.ones(8))
    assert resumed.update(8) == pytest.approx(0.5)  # the two saved steps count: 24 of 32 signs positive
    assert float(pipe.p) == pytest.approx(0.5 - 8 * 4 / 1000)


def test_build_augment() -> None:
    assert build_augment(None) is None and build_augment("none") is None
    ada = build_augment("ada", p=None, augpipe="bgc")
    assert isinstance(ada, AugmentPipe) and ada.ops() == list(BGC_OPS) and float(ada.p) == 0.0
    fixed = build_augment("fixed", p=0.2, augpipe="blit")
    assert fixed.ops() == ["xflip", "rotate90", "xint"] and float(fixed.p) == pytest.approx(0.2)
    diff = build_augment("diffaugment", diffaugment="translation,cutout")
    assert isinstance(diff, DiffAugment) and diff.policy == ("translation", "cutout") and float(diff.p) == 1.0
    with pytest.raises(ValueError, match="bgc"):
        build_augment("ada", augpipe="bgcfnc")
    with pytest.raises(ValueError, match="diffaugment"):
        build_augment("mixup")
