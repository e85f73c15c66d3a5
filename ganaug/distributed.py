"""One model on several processes: PyTorch DistributedDataParallel under torchrun.

`torchrun --nproc_per_node N -m ganaug train-gan|train-clf -c CONFIG` starts N processes (ranks) that train
one model together. The config's batch_size stays the GLOBAL batch: every rank draws the same global batch
indices, noise and augmentations from the run's seeded generators (so every random stream, and the state a
checkpoint saves, is the same at any world size), then trains on its own contiguous slice of it (`shard`);
DDP averages the gradients, which for per-sample-mean losses is the global batch's mean gradient. Rank 0
alone holds the run lock and writes the stages; the other ranks train beside it (cli.py's `_save` still has
every rank rewrite the top-level config.yaml, with the same bytes, while rank 0 holds the lock).

Layers that couple the samples of a batch see the global batch too: BatchNorm's statistics (`GlobalBatchNorm`,
SyncBatchNorm on CUDA), dropout masks (`GlobalDropout`), per-sample noise (`draw`), batch means (`batch_mean`)
and StyleGAN2's minibatch standard deviation (`gather_grad`). So several processes train the model one process
trains, to float rounding.

Without torchrun (WORLD_SIZE unset or 1) every function here is a no-op, and training is exactly as before.
"""

from __future__ import annotations

import atexit
import inspect
import os
import sys
from typing import Any, Callable, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError

try:
    import torch.distributed as dist

    AVAILABLE = dist.is_available()
except ImportError:  # pragma: no cover - a torch built without distributed
    AVAILABLE = False


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not a whole number; torchrun sets it, "
                          "so run under torchrun or unset it") from None


def world() -> int:
    """How many processes train the model (torchrun's WORLD_SIZE; 1 without torchrun)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    """This process's place among them, 0 .. world() - 1 (torchrun's RANK; 0 without torchrun)."""
    return _env_int("RANK", 0) if world() > 1 else 0


def local_rank() -> int:
    """This process's place on its machine (torchrun's LOCAL_RANK): the CUDA device it uses."""
    return _env_int("LOCAL_RANK", 0) if world() > 1 else 0


def is_main() -> bool:
    """Rank 0: the one process that writes the run folder, prints progress and evaluates."""
    return rank() == 0


def active() -> bool:
    """Whether several processes train together (and the process group is up)."""
    return world() > 1 and AVAILABLE and dist.is_initialized()


def init(device: str = "auto") -> None:
    """Join torchrun's process group when WORLD_SIZE > 1 (gloo for CPU tensors, NCCL for CUDA ones); else nothing.

    `device`: the config's. Training on CUDA, each process uses device LOCAL_RANK. Safe to call more than once.
    """
    if world() == 1:
        return
    if not AVAILABLE:
        raise ConfigError(f"WORLD_SIZE is {world()} but this torch build has no torch.distributed; "
                          "run ganaug without torchrun")
    if device.startswith("cuda:"):
        raise ConfigError(f"device {device} would put every process on one GPU; under torchrun set device: cuda "
                          "(or auto), and each process takes the GPU of its LOCAL_RANK")
    if dist.is_initialized():
        return
    if torch.cuda.is_available() and device in ("auto", "cuda"):
        if local_rank() >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank()} but this machine has {torch.cuda.device_count()} CUDA "
                              "device(s); give torchrun --nproc_per_node at most that many")
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"  # NCCL for the model on the GPU, gloo for CPU tensors (device: cpu)
    else:
        backend = "gloo"
    dist.init_process_group(backend)
    atexit.register(finish)


def finish() -> None:
    """Leave the process group (registered by `init` to run at exit). A process that exits with the group still up
    can abort in its teardown ("terminate called without an active exception"). No barrier: a rank leaving on an
    error must not wait for the others."""
    if active():
        dist.destroy_process_group()


def exit_together(code: int = 0) -> None:
    """End a process that got to the end with the others (training done, or stopped after the same step as every
    rank): wait for them, leave the group, flush, and exit with `code` here, skipping the interpreter's teardown.
    There, gloo's threads abort a process now and then ("terminate called without an active exception", SIGABRT:
    3 of about 150 launches of 2 processes that trained a DDP model on 2 busy CPUs), which torchrun reports as a
    failed process, with a traceback, after a run that went well. Without a group, nothing: the caller goes on.
    Not for a rank leaving on an error (the others may never get to the barrier)."""
    if not active():
        return
    barrier()
    finish()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def barrier() -> None:
    """Wait until every rank gets here (e.g. until rank 0 has written what the others read next)."""
    if active():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (any picklable value)."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Make `module`'s parameters and buffers (BatchNorm statistics too) rank 0's, in place."""
    if not active():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is true on any (e.g. a stop request that reached one process first)."""
    if not active():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _collective_device(like: Optional[torch.device] = None) -> torch.device:
    """Where small tensors for collectives live: `like`'s device where the process group serves it, else the
    CPU under gloo, the GPU under NCCL alone."""
    backend = str(dist.get_backend())
    if like is not None and (like.type == "cpu" and "gloo" in backend or like.type == "cuda" and "nccl" in backend):
        return like
    return torch.device("cpu") if "gloo" in backend else torch.device("cuda", torch.cuda.current_device())


@torch.no_grad()
def mean(*values: torch.Tensor) -> List[torch.Tensor]:
    """Per-slice scalars averaged over the ranks: the global batch's value for per-sample means of equal slices."""
    if not active():
        return list(values)
    t = torch.stack([v.detach().float().mean() for v in values])
    t = t.to(_collective_device(t.device))
    dist.all_reduce(t)
    t = t / world()
    return list(t.to(values[0].device).unbind())


@torch.no_grad()
def gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's slice, concatenated in rank order: the global batch's tensor (no gradient)."""
    if not active():
        return x
    parts = [torch.empty_like(x) for _ in range(world())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def _bounds(n: int) -> tuple[int, int]:
    per = n // world()
    return rank() * per, (rank() + 1) * per


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (indices, images, labels, noise): rows [r*B/W, (r+1)*B/W)."""
    if world() == 1:
        return batch
    n = len(batch)
    if n % world():
        raise ValueError(f"a global batch of {n} cannot be split evenly over {world()} processes")
    lo, hi = _bounds(n)
    return batch[lo:hi]


def draw(sample: Callable[[int], torch.Tensor], n: int) -> torch.Tensor:
    """`sample(m)` draws m rows (noise, timesteps, masks); this rank's n of the global batch's world() * n rows.

    Every rank draws the whole global batch's rows, so the random stream advances as on one process and each
    rank's rows are those one process would give them.
    """
    return shard(sample(n * world())) if world() > 1 else sample(n)


class _AllReduceSum(torch.autograd.Function):
    """The sum of every rank's tensor, on every rank. Its gradient is the sum of the ranks' gradients: itself again,
    so it differentiates twice (R1 through a synced layer)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.device = x.device
        t = x.detach().clone().contiguous().to(_collective_device(x.device))
        dist.all_reduce(t)
        return t.to(ctx.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _AllReduceSum.apply(grad)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Every rank's `x` summed, differentiably (each rank's gradient sums the ranks' gradients of the result)."""
    return _AllReduceSum.apply(x) if active() else x


def gather_grad(x: torch.Tensor) -> torch.Tensor:
    """`gather` with a gradient: every rank's slice, in rank order; the gradient of each rank's slice sums what every
    rank's loss passes back to it. (The slice placed at its rows of a zero global batch, summed over the ranks.)"""
    if not active():
        return x
    n = len(x) * world()
    lo, hi = _bounds(n)
    return all_reduce_sum(torch.cat([x.new_zeros((lo,) + x.shape[1:]), x, x.new_zeros((n - hi,) + x.shape[1:])]))


def batch_mean(x: torch.Tensor) -> torch.Tensor:
    """x.mean(0) over the global batch's rows (equal slices), the same value on every rank. Its gradient is this
    rank's rows' part, scaled as DDP's average of the ranks' gradients expects: so f(batch_mean(x)), f nonlinear
    (e.g. free bits' clamp), has one process's gradient."""
    local = x.mean(0)
    if not active():
        return local
    total = all_reduce_sum(local.detach()) / world()
    return total + (local - local.detach()) if x.requires_grad else total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (1d, 2d or 3d) whose training statistics are the global batch's, on gloo (CPU) as on NCCL.

    Training: the per-channel mean and then the (biased) variance of the whole global batch, each a sum over the
    ranks (`all_reduce_sum`, differentiable: the backward sums the gradient terms of the statistics over the ranks,
    as nn.SyncBatchNorm's does); the running statistics move as nn.BatchNorm's would on the global batch (the
    unbiased variance). Two passes, not E[x^2] - E[x]^2: no cancellation. Eval mode, or one process: nn.BatchNorm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected a batch of at least 2 dimensions (N, C, ...), got {x.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not active() or not (self.training or self.running_mean is None):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        view = [1, -1] + [1] * (x.dim() - 2)  # per channel, broadcast over (N, C, ...)
        xf = x.float()
        sums = all_reduce_sum(torch.cat([xf.sum(dims), xf.new_tensor([x.numel() // x.shape[1]])]))
        count = sums[-1].detach()  # values per channel in the global batch
        mean = sums[:-1] / count  # (C,)
        xc = xf - mean.view(view)
        var = all_reduce_sum(xc.square().sum(dims)) / count  # (C,), biased: what normalises
        out = xc * (var + self.eps).rsqrt().view(view)
        if self.affine:
            out = out * self.weight.view(view) + self.bias.view(view)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * (count / (count - 1)) * m)
        return out.to(x.dtype)


def global_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm a `GlobalBatchNorm` holding the very same parameters and buffers (the
    optimizer's, the state_dict's names): in place below the top; returns the top (new if it is a BatchNorm)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new._parameters, new._buffers = module._parameters, module._buffers
        return new.train(module.training)
    for name, child in module.named_children():
        setattr(module, name, global_batchnorm(child))
    return module


def per_sample(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, global_size: int) -> torch.Tensor:
    """`fn` (a random per-sample op, e.g. ADA's pipe) on this rank's rows as it acts on them within the global batch.

    The slice is placed at its rows of a zero-filled global batch, so `fn` draws the global batch's random
    numbers (and every rank advances the RNG alike); this rank's rows of the result come back, gradients
    flowing through them. Costs `fn` on world() times the rows.
    """
    if world() == 1:
        return fn(x)
    lo, hi = _bounds(global_size)
    full = torch.cat([x.new_zeros((lo,) + x.shape[1:]), x, x.new_zeros((global_size - hi,) + x.shape[1:])])
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        full = full.contiguous(memory_format=torch.channels_last)  # x's layout: random fills follow memory order
    return fn(full)[lo:hi]


class GlobalDropout(nn.Module):
    """nn.Dropout whose mask is drawn for the whole global batch, this rank's rows kept: the mask one process draws."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return per_sample(lambda t: F.dropout(t, self.p, training=True), x, len(x) * world())


def _global_dropout(module: nn.Module) -> None:
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, GlobalDropout(child.p))
        else:
            _global_dropout(child)


def wrap(model: nn.Module, device: Optional[torch.device] = None) -> nn.Module:
    """`model` in DistributedDataParallel (the model itself on one process); train through it, save `model`.

    Dropout (nn.Dropout) layers become `GlobalDropout`, in place: their masks, like every other per-sample draw,
    are the global batch's, so the random streams advance as on one process (other stochastic layers, e.g.
    EfficientNet's drop-connect, draw per slice).

    BatchNorm layers normalise with the global batch's statistics, as on one process: on CUDA as nn.SyncBatchNorm
    (its fused kernels), elsewhere (gloo, CPU) as `GlobalBatchNorm`; their running statistics are then alike on
    every rank. (The model's own modules are converted, so build G_ema and such copies before wrapping.)
    """
    if world() == 1:
        return model
    init()
    from torch.nn.parallel import DistributedDataParallel as DDP

    # Buffers synced once, at the start (every rank starts from rank 0's), not before every forward: they move
    # alike on every rank after.
    params = inspect.signature(DDP.__init__).parameters
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    _global_dropout(model)
    if device is not None and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DDP(model, device_ids=[index], **no_sync)
    return DDP(global_batchnorm(model), **no_sync)


def require_divisible(batch_size: int, key: str) -> None:
    """A global batch must split evenly over the processes."""
    w = world()
    if w > 1 and batch_size % w:
        raise ConfigError(f"{key} {batch_size} is not divisible by the world size {w} (torchrun --nproc_per_node); "
                          f"the batch is global and each process trains on {key} / {w} of it: set {key} to a "
                          f"multiple of {w}")
