"""Time one GAN training step and one classifier step per precision setting on this device.

    python scripts/bench_steps.py [--device auto] [--resolution 28] [--repeats 20]

Prints milliseconds per step for float32 and bfloat16 autocast, each with and without channels_last,
for the cgan (width 32 and 64, batch 64) and the small-cnn (width 16, batch 64). `amp: auto` and
`channels_last: auto` in configs follow what this measured on the machines we had; run it to check yours.
Never imported by the package.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ganaug.classifiers import get_classifier
from ganaug.gans import get_gan
from ganaug.gans.training import frozen
from ganaug.utils import autocast, resolve_device


def timed(step, repeats: int, device: torch.device) -> float:
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats * 1000


def gan_step(width: int, res: int, device: torch.device, dtype, channels_last: bool):
    nets = get_gan("cgan", resolution=res, channels=1, num_classes=10, z_dim=64, width=width)
    mem = torch.channels_last if channels_last else torch.contiguous_format
    G, D = nets.G.to(device, memory_format=mem), nets.D.to(device, memory_format=mem)
    opt_G = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    real = torch.randn(64, 1, res, res, device=device).contiguous(memory_format=mem)
    y = torch.randint(0, 10, (64,), device=device)

    def step():
        z = torch.randn(64, 64, device=device)
        with autocast(device, dtype):
            fake = G(z, y)
            loss_D = F.softplus(-D(real, y).float()).mean() + F.softplus(D(fake.detach(), y).float()).mean()
        opt_D.zero_grad()
        loss_D.backward()
        opt_D.step()
        with frozen(D):  # as the training loop's G step: no gradient for D's weights
            with autocast(device, dtype):
                loss_G = F.softplus(-D(fake, y).float()).mean()
            opt_G.zero_grad()
            loss_G.backward()
        opt_G.step()

    return step


def clf_step(width: int, res: int, device: torch.device, dtype, channels_last: bool):
    mem = torch.channels_last if channels_last else torch.contiguous_format
    net = get_classifier("small-cnn", resolution=res, channels=1, num_classes=10, width=width)
    net = net.to(device, memory_format=mem)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.randn(64, 1, res, res, device=device).contiguous(memory_format=mem)
    y = torch.randint(0, 10, (64,), device=device)

    def step():
        with autocast(device, dtype):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resolution", type=int, default=28)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"resolution {args.resolution}, batch 64; ms per step (lower is better)")
    print(f"{'network':18s} {'fp32':>8s} {'fp32+CL':>8s} {'bf16':>8s} {'bf16+CL':>8s}  bf16+CL speed-up")
    for label, make, width in (("cgan w32", gan_step, 32), ("cgan w64", gan_step, 64),
                               ("small-cnn w16", clf_step, 16), ("small-cnn w32", clf_step, 32)):
        ms = []
        for dtype in (None, torch.bfloat16):
            for cl in (False, True):
                torch.manual_seed(0)
                ms.append(timed(make(width, args.resolution, device, dtype, cl), args.repeats, device))
        print(f"{label:18s} " + " ".join(f"{m:8.1f}" for m in ms) + f"  {ms[0] / ms[3]:.2f}x")


if __name__ == "__main__":
    main()
