"""Time a StyleGAN2 training step, native (ganaug) and, given the official repository, NVlabs' own networks.

    python scripts/bench_stylegan2.py                                  # every preset at 16, 32 and 64 px
    python scripts/bench_stylegan2.py --presets small --resolutions 32 --augment ada
    python scripts/bench_stylegan2.py --official /path/to/stylegan2-ada-pytorch --presets small,auto

One step = G forward, D on augmented reals and fakes with its backward and Adam step, then G's
non-saturating step, plus the lazy R1 pass every 16 steps amortised (its own time divided by 16), as in
training. The official networks run with the same sizes, batch, augmentation-off and R1 settings through
their own StyleGAN2Loss (path-length regularisation off on both sides); on CUDA they use the official
preset's fp16 layers and custom ops, on a CPU their reference ops. Printed: ms per step, images per second
and the official/native time ratio (above 1: native is faster). Never imported by the package.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from ganaug.gans import get_gan
from ganaug.gans.augment import build_augment
from ganaug.gans.stylegan2 import PRESETS, preset_values
from ganaug.utils import resolve_device


def _time(fn: Callable[[], None], steps: int, device: torch.device) -> float:
    """Median seconds per call after one warm-up call."""
    fn()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def native_step(v: Dict, res: int, channels: int, classes: int, device: torch.device, augment: str):
    nets = get_gan("stylegan2", resolution=res, channels=channels, num_classes=classes, **{
        k: v[k] for k in ("z_dim", "w_dim", "channel_base", "channel_max", "mapping_layers", "mbstd_group",
                          "style_mixing")})
    G, D = nets.G.to(device).train(), nets.D.to(device).train()
    pipe = build_augment(None if augment == "none" else augment, p=0.2, augpipe="bgc",
                         diffaugment="color,translation,cutout")
    aug = (lambda x: pipe(x)) if pipe is not None else (lambda x: x)
    if pipe is not None:
        pipe.to(device)
    opt_G = torch.optim.Adam(G.parameters(), lr=v["lr"], betas=(0.0, 0.99))
    opt_D = torch.optim.Adam(D.parameters(), lr=v["lr"], betas=(0.0, 0.99))
    bs = v["batch_size"]
    real = torch.randn(bs, channels, res, res, device=device).clamp(-1, 1)
    y = torch.randint(0, classes, (bs,), device=device)

    def main() -> None:
        z = torch.randn(bs, v["z_dim"], device=device)
        fake = G(z, y)
        loss_D = F.softplus(-D(aug(real), y)).mean() + F.softplus(D(aug(fake.detach()), y)).mean()
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()
        loss_G = F.softplus(-D(aug(fake), y)).mean()
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()

    def r1() -> None:
        x = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(D(aug(x), y).sum(), x, create_graph=True)
        loss = grad.square().sum(dim=[1, 2, 3]).mean() * (v["r1_gamma"] / 2) * 16
        opt_D.zero_grad(set_to_none=True)
        loss.backward()
        opt_D.step()

    return main, r1


def official_step(repo: Path, v: Dict, res: int, channels: int, classes: int, device: torch.device):
    sys.path.insert(0, str(repo))
    from training.loss import StyleGAN2Loss  # type: ignore[import-not-found]
    from training.networks import Discriminator, Generator  # type: ignore[import-not-found]

    cuda = device.type == "cuda"
    common = dict(c_dim=classes, img_resolution=res, img_channels=channels)
    G = Generator(z_dim=v["z_dim"], w_dim=v["w_dim"], **common, mapping_kwargs={"num_layers": v["mapping_layers"]},
                  synthesis_kwargs={"channel_base": v["channel_base"], "channel_max": v["channel_max"],
                                    "num_fp16_res": 4 if cuda else 0, "conv_clamp": 256 if cuda else None})
    D = Discriminator(**common, channel_base=v["channel_base"], channel_max=v["channel_max"],
                      num_fp16_res=4 if cuda else 0, conv_clamp=256 if cuda else None,
                      epilogue_kwargs={"mbstd_group_size": v["mbstd_group"]})
    G, D = G.to(device).train().requires_grad_(False), D.to(device).train().requires_grad_(False)
    loss = StyleGAN2Loss(device=device, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, augment_pipe=None,
                         style_mixing_prob=v["style_mixing"], r1_gamma=v["r1_gamma"], pl_weight=0)
    opt_G = torch.optim.Adam(G.parameters(), lr=v["lr"], betas=(0.0, 0.99))
    opt_D = torch.optim.Adam(D.parameters(), lr=v["lr"], betas=(0.0, 0.99))
    bs = v["batch_size"]
    real = torch.randn(bs, channels, res, res, device=device).clamp(-1, 1)
    c = F.one_hot(torch.randint(0, classes, (bs,)), classes).float().to(device)

    def phase(name: str, module: torch.nn.Module, opt: torch.optim.Optimizer, gain: float) -> None:
        module.requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        z = torch.randn(bs, v["z_dim"], device=device)
        loss.accumulate_gradients(phase=name, real_img=real, real_c=c, gen_z=z, gen_c=c, sync=True, gain=gain)
        module.requires_grad_(False)
        opt.step()

    def main() -> None:
        phase("Gmain", G, opt_G, 1)
        phase("Dmain", D, opt_D, 1)

    def r1() -> None:
        phase("Dreg", D, opt_D, 16)

    return main, r1


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--resolutions", default="16,32,64")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--augment", default="none", choices=["none", "ada", "diffaugment"],
                    help="native only: time the augmentation too (ada at p = 0.2, bgc)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--official", type=Path, default=None, help="a checkout of NVlabs/stylegan2-ada-pytorch")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{args.channels} channels, {args.classes} classes, augment {args.augment}")
    print(f"{'preset':7} {'res':>4} {'batch':>5} {'native ms':>10} {'img/s':>7}"
          + (f" {'official ms':>12} {'img/s':>7} {'official/native':>16}" if args.official else ""))
    for preset in args.presets.split(","):
        for res in map(int, args.resolutions.split(",")):
            v = preset_values(preset, res)
            bs = v["batch_size"]
            torch.manual_seed(0)
            m, r = native_step(v, res, args.channels, args.classes, device, args.augment)
            t_native = _time(m, args.steps, device) + _time(r, max(1, args.steps // 2), device) / 16
            line = f"{preset:7} {res:>4} {bs:>5} {t_native * 1000:>10.0f} {bs / t_native:>7.1f}"
            if args.official:
                torch.manual_seed(0)
                m, r = official_step(args.official, v, res, args.channels, args.classes, device)
                t_off = _time(m, args.steps, device) + _time(r, max(1, args.steps // 2), device) / 16
                line += f" {t_off * 1000:>12.0f} {bs / t_off:>7.1f} {t_off / t_native:>16.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
