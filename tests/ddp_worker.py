"""Run by tests/test_ddp.py, on one process or under torchrun, with networks without BatchNorm: the one layer
whose numbers depend on how the batch is split on the CPU (see ganaug.distributed.wrap), so that several
processes must reproduce one to float rounding.

    python -m torch.distributed.run --nproc_per_node 2 --standalone tests/ddp_worker.py loops OUT_FILE
    python -m torch.distributed.run --nproc_per_node 2 --standalone tests/ddp_worker.py cli train-gan -c CONFIG
    python -m torch.distributed.run --nproc_per_node 2 --standalone tests/ddp_worker.py bn OUT_FILE

`loops`: both training loops; rank 0 saves the trained weights to OUT_FILE, every rank its own to
OUT_FILE.rankN, with the batch sizes its networks saw. `cli`: the ganaug command line, with a `cgan-nobn`
GAN and a `small-cnn-nobn` classifier registered beside the others. `bn`: `batchnorm` below, every rank saving
to OUT_FILE.rankN.
"""

from __future__ import annotations

import sys
from typing import Dict, List

import torch
import torch.nn as nn

from ganaug import distributed
from ganaug.classifiers.models import SmallCNN
from ganaug.classifiers.train import train_classifier
from ganaug.config import ArmConfig, AugmentConfig
from ganaug.data.augment import ClassicAugment, LabelMix
from ganaug.data.mixing import BatchSource
from ganaug.gans import get_gan
from ganaug.gans.training import AugmentSettings, train_gan
from ganaug.utils import Stats, seed_everything


def without_batchnorm(net: nn.Module) -> nn.Module:
    """Every BatchNorm an identity: the one layer whose numbers depend on how the batch is split."""
    for name, child in net.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, nn.Identity())
        else:
            without_batchnorm(child)
    return net


def batch_sizes(net: nn.Module) -> List[int]:
    """A list that fills with the batch size of every forward of `net`'s first layer (its hook)."""
    seen: List[int] = []
    first = next(m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)))
    first.register_forward_hook(lambda m, inp, out: seen.append(int(inp[0].shape[0])))
    return seen


def data(n: int = 24, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images of 3 classes (a bright row, column or diagonal on noise)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 60, (n, 1, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 3
    for i in range(n):
        k = 2 + i % (size - 4)
        if y[i] == 0:
            x[i, 0, k] = 230
        elif y[i] == 1:
            x[i, 0, :, k] = 230
        else:
            x[i, 0].diagonal().fill_(230)
    return x, y


def main(out: str) -> None:
    distributed.init()
    images, labels = data()
    result: Dict[str, object] = {"world": distributed.world()}

    # The cGAN: mirror, ADA (its controller moves p every step) and a G_ema, 12 steps of a global batch of 8.
    generator = seed_everything(0)
    nets = get_gan("cgan", resolution=16, channels=1, num_classes=3, z_dim=8, width=8)
    nets = nets._replace(G=without_batchnorm(nets.G), D=without_batchnorm(nets.D))
    seen_G, seen_D = batch_sizes(nets.G), batch_sizes(nets.D)
    gan = train_gan(nets, images=images, labels=labels, num_classes=3, epochs=4, batch_size=8, lr=2e-3,
                    betas=(0.5, 0.99), ema_kimg=0.01, device=torch.device("cpu"), amp_dtype=None, channels_last=False,
                    generator=generator, stats=Stats(None), mirror=True, progress=False,
                    augment=AugmentSettings(kind="ada", ada_target=0.2, ada_interval=1, ada_kimg=0.2))
    result["gan"] = {k: {n: t.clone() for n, t in gan[k].state_dict().items()} for k in ("G", "D", "G_ema")}
    result["ada_p"] = float(gan["augment"]["all"]["p"])
    result["seen_G"], result["seen_D"] = seen_G[:3], seen_D[:3]

    # The classifier: classic augmentation, MixUp and dropout on the global batch, 10 steps of a global batch of 12.
    generator = seed_everything(0)
    model = without_batchnorm(SmallCNN(16, 1, 3, width=4, dropout=0.3))
    seen_clf = batch_sizes(model)
    batches = BatchSource(ArmConfig(name="real", data="real"), images, labels, None, None, 3, generator)
    clf = train_classifier(model, batches=batches, augment=ClassicAugment(AugmentConfig(), hflip=False),
                           mixer=LabelMix("mixup", 1.0, 3), val_images=images[:9], val_labels=labels[:9], steps=10,
                           batch_size=12, lr=3e-3, weight_decay=0.0, schedule="cosine", eval_every=5,
                           device=torch.device("cpu"), amp_dtype=None, channels_last=False, generator=generator,
                           stats=Stats(None), progress=False)
    result["clf"] = {n: t.clone() for n, t in clf["model"].state_dict().items()}
    result["seen_clf"] = seen_clf[:2]
    result["best_step"] = clf["best_step"]
    torch.save(result, f"{out}.rank{distributed.rank()}")
    if distributed.is_main():
        torch.save(result, out)


def batchnorm_inputs(n: int = 8) -> Dict[str, torch.Tensor]:
    """A global batch (n, 3, 5, 5), an upstream gradient for it and BatchNorm2d's affine parameters, all seeded."""
    g = torch.Generator().manual_seed(3)
    return {"x": torch.randn(n, 3, 5, 5, generator=g) * 2 + 1, "grad": torch.randn(n, 3, 5, 5, generator=g),
            "weight": torch.rand(3, generator=g) + 0.5, "bias": torch.randn(3, generator=g)}


def batchnorm(out: str) -> Dict[str, torch.Tensor]:
    """nn.BatchNorm2d on this rank's slice of `batchnorm_inputs` (as `distributed.wrap` converts it: GlobalBatchNorm
    under torchrun): two training steps, then eval mode; outputs, input gradients, parameter gradients and running
    statistics. On one process, plain nn.BatchNorm2d on the whole batch."""
    distributed.init()
    inp = batchnorm_inputs()
    bn = distributed.global_batchnorm(nn.BatchNorm2d(3, momentum=0.3))
    with torch.no_grad():
        bn.weight.copy_(inp["weight"])
        bn.bias.copy_(inp["bias"])
    result: Dict[str, torch.Tensor] = {}
    for i in range(2):
        x = distributed.shard(inp["x"] * (1 + i)).clone().requires_grad_(True)
        y = bn(x)
        (y * distributed.shard(inp["grad"])).sum().backward()
        result.update({f"y{i}": y.detach(), f"dx{i}": x.grad})
    result.update(dweight=bn.weight.grad, dbias=bn.bias.grad, running_mean=bn.running_mean.clone(),
                  running_var=bn.running_var.clone(), eval=bn.eval()(distributed.shard(inp["x"])).detach())
    torch.save(result, f"{out}.rank{distributed.rank()}")
    return result


def register_nobn() -> None:
    """`cgan-nobn` and `small-cnn-nobn`: cgan and small-cnn without their BatchNorm layers."""
    from ganaug.classifiers import register_classifier
    from ganaug.gans import GanNets, register_gan
    from ganaug.gans.dcgan import CganConfig, build_cgan, dcgan_defaults, dcgan_kwargs

    @register_gan("cgan-nobn", config=CganConfig, defaults=dcgan_defaults, kwargs=dcgan_kwargs, ddp=True)
    def build_cgan_nobn(**kwargs: object) -> GanNets:
        """cgan without BatchNorm (tests)."""
        nets = build_cgan(**kwargs)  # type: ignore[arg-type]
        return nets._replace(G=without_batchnorm(nets.G), D=without_batchnorm(nets.D))

    @register_classifier("small-cnn-nobn")
    def build_small_cnn_nobn(*, resolution: int, channels: int, num_classes: int, width: int = 32) -> nn.Module:
        """small-cnn without BatchNorm (tests)."""
        return without_batchnorm(SmallCNN(resolution, channels, num_classes, width))


if __name__ == "__main__":
    if sys.argv[1] == "loops":
        main(sys.argv[2])
    elif sys.argv[1] == "bn":
        batchnorm(sys.argv[2])
    else:
        register_nobn()
        from ganaug.cli import main as cli

        cli(sys.argv[2:], prog_name="ganaug")
