"""Training batches for one classifier arm: real, synthetic, or a mix of the two.

Every arm draws `batch_size` images per optimizer step, so all arms get the same budget. Validation
and test never pass through here: they are real images only.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from ..config.sections import ArmConfig
from ..errors import DataError


class EpochSampler:
    """Index batches over n items: a fresh seeded permutation each epoch; batches run across epoch ends."""

    def __init__(self, n: int, generator: torch.Generator):
        if n == 0:
            raise DataError("cannot draw batches from an empty training set")
        self.n, self.gen = n, generator
        self._perm = torch.randperm(n, generator=generator)
        self._pos = 0

    def next(self, batch_size: int) -> torch.Tensor:
        out = []
        need = batch_size
        while need > 0:
            if self._pos == self.n:
                self._perm = torch.randperm(self.n, generator=self.gen)
                self._pos = 0
            take = min(need, self.n - self._pos)
            out.append(self._perm[self._pos:self._pos + take])
            self._pos += take
            need -= take
        return torch.cat(out)

    def state_dict(self) -> Dict[str, Any]:
        """The data-order position: this epoch's permutation and how far into it we are."""
        return {"perm": self._perm.clone(), "pos": self._pos}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if len(state["perm"]) != self.n:
            raise DataError(f"the saved data order covers {len(state['perm'])} images but the training set has {self.n}")
        self._perm, self._pos = state["perm"].clone(), int(state["pos"])


class ClassBalancedSampler:
    """Index batches drawn with replacement so every class is equally likely (random oversampling)."""

    def __init__(self, labels: torch.Tensor, num_classes: int, generator: torch.Generator):
        counts = torch.bincount(labels, minlength=num_classes).double()
        if len(labels) == 0:
            raise DataError("cannot draw batches from an empty training set")
        present = int((counts > 0).sum())
        self.weights = 1.0 / (counts[labels] * present)  # each present class sums to 1 / present
        self.gen = generator

    def next(self, batch_size: int) -> torch.Tensor:
        return torch.multinomial(self.weights, batch_size, replacement=True, generator=self.gen)

    def state_dict(self) -> Dict[str, Any]:
        return {}  # independent draws: the generator's state is all there is

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


class BatchSource:
    """Draws (images uint8, labels, is_real, soft) batches for an arm.

    - real: shuffled epochs over the real training set;
    - synthetic: shuffled epochs over the fakes (train on fake, test on real);
    - mixed with p_real: a real batch in which every sample is replaced, with probability 1 - p_real,
      by a random fake of the same class;
    - mixed with add: K random fakes per class joined to the real set, shuffled epochs over the union;
    - mixed with balance: as add, with each class topped up to the largest class's real count.
    With `oversample`, images are drawn class-balanced (with replacement) instead of in shuffled epochs.
    `fake_soft` (N, C) float, aligned with the fakes (an edited set's soft labels): every batch then also carries
    soft targets (B, C), one-hot for real images and the fake's row for fakes; without it `soft` is None and the
    batches are exactly those drawn without it (no extra draws). The labels stay the hard ones.
    """

    def __init__(
        self,
        arm: ArmConfig,
        real_x: torch.Tensor,
        real_y: torch.Tensor,
        fake_x: Optional[torch.Tensor],
        fake_y: Optional[torch.Tensor],
        num_classes: int,
        generator: torch.Generator,
        fake_soft: Optional[torch.Tensor] = None,
    ):
        self.arm, self.gen, self.num_classes = arm, generator, num_classes
        self.p_real: Optional[float] = None
        # Soft targets: `soft_rows` (the fakes' rows) and, per pooled image, its row there (-1: a real image, one-hot).
        self.soft_rows: Optional[torch.Tensor] = None
        self.soft_index: Optional[torch.Tensor] = None
        if fake_soft is not None and arm.data != "real":
            if fake_y is None or tuple(fake_soft.shape) != (len(fake_y), num_classes):
                raise DataError(f"arm '{arm.name}': soft labels of shape {tuple(fake_soft.shape)} do not match "
                                f"{None if fake_y is None else len(fake_y)} fakes of {num_classes} classes; "
                                "sample again with --force")
            self.soft_rows = fake_soft
        if arm.data != "real":
            if fake_x is None or fake_y is None:
                raise DataError(f"arm '{arm.name}' needs synthetic images; run `ganaug sample` first")
            if fake_x.shape[1:] != real_x.shape[1:] or fake_x.dtype != real_x.dtype:
                raise DataError(
                    f"arm '{arm.name}': synthetic images are {tuple(fake_x.shape[1:])} {fake_x.dtype} but real ones "
                    f"are {tuple(real_x.shape[1:])} {real_x.dtype}; sample again from a GAN trained on this split"
                )
        if arm.data == "real":
            x, y, is_real = real_x, real_y, torch.ones(len(real_y), dtype=torch.bool)
        elif arm.data == "synthetic":
            assert fake_x is not None and fake_y is not None
            x, y, is_real = fake_x, fake_y, torch.zeros(len(fake_y), dtype=torch.bool)
            if self.soft_rows is not None:
                self.soft_index = torch.arange(len(fake_y))
        else:
            assert arm.mix is not None and fake_x is not None and fake_y is not None
            if arm.mix.p_real is not None:
                self.p_real = arm.mix.p_real
                x, y, is_real = real_x, real_y, torch.ones(len(real_y), dtype=torch.bool)
                self._fakes_by_class(fake_x, fake_y, num_classes)
                if self.soft_rows is not None:
                    self.soft_index = torch.full((len(real_y),), -1, dtype=torch.int64)
            else:
                real_counts = torch.bincount(real_y, minlength=num_classes)
                if arm.mix.balance:
                    want = (real_counts.max() - real_counts).tolist()
                else:
                    want = [int(arm.mix.add or 0)] * num_classes
                keep = []
                for c, k in enumerate(want):
                    idx = torch.nonzero(fake_y == c).flatten()
                    if len(idx) < k:
                        raise DataError(
                            f"arm '{arm.name}' adds {k} fakes to class {c} but the synthetic set has {len(idx)} of it; "
                            "raise sample.n_per_class" + ("" if arm.mix.balance else " or lower mix.add")
                        )
                    keep.append(idx[torch.randperm(len(idx), generator=generator)[:k]])
                sel = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.int64)
                x = torch.cat([real_x, fake_x[sel]])
                y = torch.cat([real_y, fake_y[sel]])
                is_real = torch.cat([torch.ones(len(real_y), dtype=torch.bool), torch.zeros(len(sel), dtype=torch.bool)])
                if self.soft_rows is not None:
                    self.soft_index = torch.cat([torch.full((len(real_y),), -1, dtype=torch.int64), sel])
        self.x, self.y, self.is_real = x, y, is_real
        self.sampler = ClassBalancedSampler(y, num_classes, generator) if arm.oversample else EpochSampler(len(y), generator)

    def _fakes_by_class(self, fake_x: torch.Tensor, fake_y: torch.Tensor, num_classes: int) -> None:
        # The fakes grouped by class through an index, not a copy: a memory-mapped set stays shared between runs.
        self.fake_order = torch.argsort(fake_y, stable=True)
        self.fake_x, self.fake_y = fake_x, fake_y[self.fake_order]
        counts = torch.bincount(self.fake_y, minlength=num_classes)
        empty = torch.nonzero(counts == 0).flatten().tolist()
        if empty:
            raise DataError(f"arm '{self.arm.name}': no synthetic images of class(es) {empty}; sample every class")
        self.fake_start = torch.cumsum(counts, 0) - counts
        self.fake_count = counts

    def next(self, batch_size: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """(x uint8 (B, C, H, W), y hard labels (B,), is_real (B,), soft targets (B, K) float or None)."""
        idx = self.sampler.next(batch_size)
        x, y, is_real = self.x[idx], self.y[idx], self.is_real[idx]
        soft = None
        if self.soft_rows is not None:
            assert self.soft_index is not None
            soft = torch.nn.functional.one_hot(y, self.num_classes).float()  # (B, K): real images
            rows = self.soft_index[idx]
            fake = rows >= 0
            if fake.any():
                soft[fake] = self.soft_rows[rows[fake]].float()
        if self.p_real is not None and self.p_real < 1.0:
            # Per sample: keep the real image with probability p_real, else a random fake of its class.
            replace = torch.rand(len(idx), generator=self.gen) >= self.p_real
            if replace.any():
                ys = y[replace]
                u = torch.rand(len(ys), generator=self.gen)
                pick = self.fake_start[ys] + (u * self.fake_count[ys]).long().clamp_max(self.fake_count[ys] - 1)
                x = x.clone()
                x[replace] = self.fake_x[self.fake_order[pick]]
                is_real = is_real.clone()
                is_real[replace] = False
                if soft is not None:
                    assert self.soft_rows is not None
                    soft[replace] = self.soft_rows[self.fake_order[pick]].float()
        return x, y, is_real, soft

    def state_dict(self) -> Dict[str, Any]:
        """Where the batches are: the sampler's position and the generator that draws orders and replacements."""
        return {"sampler": self.sampler.state_dict(), "generator": self.gen.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.gen.set_state(state["generator"])
