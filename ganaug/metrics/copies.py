"""Copies (memorisation): does a generator hand back its training images, shifted or mirrored?

Every fake is matched with its nearest training image after alignment: the training images are searched
under every shift of up to `shift` pixels and, where the generator's training could flip, mirrored (the
copies ADA, DiffAugment and `gan.mirror` make). Real held-out (test) images are matched the same way: they
are what a generator that does not copy would look like. Three criteria from the field, each a test:

- **the quantile rule**: the share of fakes nearer their training image than the k-th nearest of the m test
  images (k = quantile x m). When fakes are drawn like unseen real images, the number below that order
  statistic is beta-binomial (n, k, m - k + 1) exactly (the test images' own sampling noise included), so the
  p-value of the observed count is exact; per class too, with the class's own test images;
- **the ratio test** of Gu et al. (2023): a fake whose nearest training image is closer than `ratio` (1/3)
  of its second nearest is memorised; its share is compared with the test images' share (Fisher's exact
  test, one-sided);
- **C_T** of Meehan et al. (2020): per class (the cells), the Mann-Whitney z of the fakes' distances against
  the test images' distances, averaged with the test images' weights; about N(0, sum w^2) for a generator
  that does not copy, well below 0 for one that copies (its one-sided p).

The flag comes from Holm's correction over every p-value of a set (both spaces, every criterion, every
class): a generator that does not copy is flagged with probability at most `alpha`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

Transform = Tuple[int, int, bool]  # (dy, dx, mirrored)


def transforms(shift: int, mirror: bool) -> List[Transform]:
    """The alignments searched: every shift in [-shift, shift]^2, each also mirrored when `mirror`; identity first."""
    out = [(0, 0, False)] + [(dy, dx, False) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)
                             if (dy, dx) != (0, 0)]
    return out + [(dy, dx, True) for dy, dx, _ in out] if mirror else out


def apply(images: torch.Tensor, t: Transform) -> torch.Tensor:
    """images (N, C, H, W) shifted by (dy, dx) pixels (edges replicated, as a translation's padding would) and
    mirrored left-right when asked."""
    dy, dx, flip = t
    x = images.flip(-1) if flip else images
    if dy == 0 and dx == 0:
        return x
    s = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    p = F.pad(x.float(), (s, s, s, s), mode="replicate").to(x.dtype)  # (N, C, H + 2s, W + 2s)
    return p[..., s - dy:s - dy + h, s - dx:s - dx + w]


@dataclass
class Neighbours:
    """Per query: the distance to its nearest and second-nearest training image (each at its best alignment),
    which training image is nearest, and under which transform."""

    d1: torch.Tensor
    d2: torch.Tensor
    index: torch.Tensor
    transform: torch.Tensor  # index into the transforms list

    @property
    def ratio(self) -> torch.Tensor:
        return self.d1 / self.d2.clamp_min(1e-12)


@torch.no_grad()
def nearest_two(query: torch.Tensor, views: Callable[[int], torch.Tensor], n_views: int, chunk: int = 1024,
                budget_bytes: int = 1 << 27, exclude: Optional[torch.Tensor] = None) -> Neighbours:
    """The two nearest distinct reference images of each query row, each reference taken at its nearest view.

    Each view is made once per pass over the queries (a pass holds as many queries as their running minima fit in
    `budget_bytes`); squared distances come from one matrix product per view and chunk (|q|^2 + |r|^2 - 2 q.r),
    and the two chosen pairs' distances are then computed exactly, so a verbatim copy reads 0.

    Args:
        query: (Q, D) float.
        views: t -> (N, D) float, the reference images under transform t (the same N images in every view).
        n_views: how many views.
        exclude: (Q,) per query, a reference index left out of its search (an edit's own source), -1 for none.
    """
    q = query.reshape(len(query), -1).float()
    if len(q) == 0:
        empty = torch.zeros(0)
        return Neighbours(empty, empty, empty.long(), empty.long())
    n_ref = len(views(0))
    if exclude is not None and (exclude.shape != (len(q),) or bool((exclude >= n_ref).any())):
        raise ValueError(f"exclude must be ({len(q)},) reference indices below {n_ref} (-1: none), "
                         f"got {tuple(exclude.shape)} up to {int(exclude.max()) if len(exclude) else None}")
    span = max(chunk, budget_bytes // max(1, 6 * n_ref))
    out: List[Tuple[torch.Tensor, ...]] = []
    for i in range(0, len(q), span):
        block = q[i:i + span]
        norms = (block * block).sum(1, keepdim=True)  # (span, 1)
        best = torch.full((len(block), n_ref), math.inf)  # running minimum over views of each squared distance
        which = torch.zeros((len(block), n_ref), dtype=torch.int16)  # ... and its view
        for t in range(n_views):
            r = views(t)  # (N, D)
            r_norms = (r * r).sum(1)[None, :]
            for j in range(0, len(block), chunk):
                d2 = torch.addmm(norms[j:j + chunk] + r_norms, block[j:j + chunk], r.T, alpha=-2.0)  # (chunk, N)
                b = best[j:j + chunk]
                which[j:j + chunk].masked_fill_(d2 < b, t)
                torch.minimum(b, d2, out=b)
        if exclude is not None:  # each query's own reference is not a candidate
            ex = exclude[i:i + span].long()
            rows = torch.nonzero(ex >= 0).flatten()
            best[rows, ex[rows]] = math.inf
        k = min(2, n_ref)
        _, idx = torch.topk(best, k, dim=1, largest=False)  # (span, k)
        del best
        view = which.gather(1, idx).long()
        exact = torch.empty(idx.shape, dtype=torch.float32)
        for t in view.unique().tolist():
            rows, cols = (view == t).nonzero(as_tuple=True)
            exact[rows, cols] = (block[rows] - views(t)[idx[rows, cols]]).norm(dim=1)
        if exclude is not None:  # under 3 references topk can hand a left-out one back: it stays out
            exact[idx == ex[:, None]] = math.inf
        order = exact.argsort(dim=1)  # the exact distances decide which of the two is nearest
        exact, idx, view = exact.gather(1, order), idx.gather(1, order), view.gather(1, order)
        d2nd = exact[:, 1] if k == 2 else torch.full_like(exact[:, 0], math.inf)
        out.append((exact[:, 0], d2nd, idx[:, 0], view[:, 0]))
    return Neighbours(*(torch.cat(parts) for parts in zip(*out)))


def interior(images: torch.Tensor, border: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C * (H - 2 border) * (W - 2 border)) float: the part no shift of up to `border` pixels
    fills. What a shift brings in at the edge (zeros, a reflection, a wrap-around) is the generator's or augmentation's
    choice, so pixel distances leave that band out, for fakes, test images and training images alike."""
    h, w = images.shape[-2:]
    return images[..., border:h - border, border:w - border].reshape(len(images), -1).float()


def max_shift(shift: int, size: int) -> int:
    """The shift searched: the one asked for, at most an eighth of the image (ADA's largest integer translation)."""
    return max(0, min(shift, size // 8))


def pixel_views(images: torch.Tensor, ts: Sequence[Transform], border: int) -> Callable[[int], torch.Tensor]:
    """The training images' interiors, as float, under each transform (made when asked: they are cheap)."""
    return lambda t: interior(apply(images, ts[t]), border)


def feature_views(images: torch.Tensor, ts: Sequence[Transform], extractor: Callable[[torch.Tensor], torch.Tensor]
                  ) -> Callable[[int], torch.Tensor]:
    """The training images' features under each transform (extracted once each)."""
    cache = [extractor(apply(images, t).contiguous()) for t in ts]
    return lambda t: cache[t]


# ----------------------------------------------------------------------------------------------------
# The criteria: each a function of distances, with its p-value under "the fakes are drawn like unseen images".


def quantile_test(d_fake: torch.Tensor, d_test: torch.Tensor, quantile: float) -> Dict[str, Any]:
    """The share of fakes nearer than the k-th nearest test image (k = max(1, floor(quantile x m))), and the exact
    one-sided p-value of that count: beta-binomial (n, k, m - k + 1) when fakes are exchangeable with test images."""
    from scipy.stats import betabinom

    n, m = len(d_fake), len(d_test)
    if n == 0 or m == 0:
        return {"share": None, "n": n, "m": m, "threshold": None, "expected": None, "quantile": quantile, "p": None}
    k = max(1, int(math.floor(quantile * m)))
    tau = float(torch.sort(d_test.double()).values[k - 1])
    x = int((d_fake.double() < tau).sum())
    p = float(betabinom.sf(x - 1, n, k, m - k + 1))
    return {"share": x / n, "n": n, "m": m, "k": k, "threshold": tau, "expected": k / (m + 1), "quantile": quantile,
            "p": min(1.0, max(0.0, p))}


def ratio_test(r_fake: torch.Tensor, r_test: torch.Tensor, ratio: float) -> Dict[str, Any]:
    """Gu et al.'s criterion: the share of fakes whose nearest training image is nearer than `ratio` of the second
    nearest, against the test images' share (Fisher's exact test, one-sided: more among the fakes)."""
    from scipy.stats import fisher_exact

    n, m = len(r_fake), len(r_test)
    if n == 0 or m == 0:
        return {"share": None, "baseline": None, "n": n, "m": m, "ratio": ratio, "p": None}
    x, y = int((r_fake < ratio).sum()), int((r_test < ratio).sum())
    p = float(fisher_exact([[x, n - x], [y, m - y]], alternative="greater")[1])
    return {"share": x / n, "baseline": y / m, "n": n, "m": m, "ratio": ratio, "p": p}


def ct_test(d_fake: torch.Tensor, y_fake: torch.Tensor, d_test: torch.Tensor, y_test: torch.Tensor,
            min_per_cell: int = 5) -> Dict[str, Any]:
    """Meehan et al.'s C_T with the classes as cells: per cell the Mann-Whitney z of the fakes' distances against
    the test images' (negative: the fakes sit closer to the training set), averaged with the test images' share
    of the cell as weight. Cells with fewer than `min_per_cell` fakes or test images are left out."""
    from scipy.stats import mannwhitneyu, norm

    zs, ws = [], []
    for c in torch.unique(y_test).tolist():
        a, b = d_fake[y_fake == c].double().numpy(), d_test[y_test == c].double().numpy()
        if len(a) < min_per_cell or len(b) < min_per_cell:
            continue
        u = mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").statistic  # pairs with the fake farther
        n, m = len(a), len(b)
        zs.append((u - n * m / 2) / math.sqrt(n * m * (n + m + 1) / 12))
        ws.append(m)
    if not zs:
        return {"ct": None, "cells": 0, "p": None}
    w = np.asarray(ws, dtype=float) / sum(ws)
    ct = float(np.dot(w, zs))
    sd = float(np.sqrt(np.sum(w ** 2)))
    return {"ct": ct, "cells": len(zs), "p": float(norm.cdf(ct / sd))}


def criteria(near_fake: Neighbours, y_fake: torch.Tensor, near_test: Neighbours, y_test: torch.Tensor,
             classes: Sequence[str], quantile: float, ratio: float) -> Dict[str, Any]:
    """Every criterion of one space, overall and (the quantile rule) per class."""
    return {"overall": quantile_test(near_fake.d1, near_test.d1, quantile),
            "ratio": ratio_test(near_fake.ratio, near_test.ratio, ratio),
            "ct": ct_test(near_fake.d1, y_fake, near_test.d1, y_test),
            "per_class": {name: quantile_test(near_fake.d1[y_fake == c], near_test.d1[y_test == c], quantile)
                          for c, name in enumerate(classes)},
            "n_fakes": len(y_fake), "n_test": len(y_test)}


def _entries(spaces: Dict[str, Dict[str, Any]]) -> List[Tuple[str, Dict[str, Any]]]:
    """Every test of every space, named, in a fixed order."""
    out = []
    for space, c in spaces.items():
        out += [(f"{space}: quantile", c["overall"]), (f"{space}: ratio", c["ratio"]), (f"{space}: C_T", c["ct"])]
        out += [(f"{space}: class {name}", v) for name, v in c["per_class"].items()]
    return out


def decide(spaces: Dict[str, Dict[str, Any]], alpha: float) -> Dict[str, Any]:
    """Holm over every p-value of a set's spaces; marks each test `p_holm` and `flag`, and says which fired."""
    from .stats import holm

    entries = _entries(spaces)
    adjusted = holm([e.get("p") for _, e in entries])
    fired = []
    for (name, e), p in zip(entries, adjusted):
        e["p_holm"] = p
        e["flag"] = p is not None and p < alpha
        if e["flag"]:
            fired.append(name)
    for c in spaces.values():
        c["flagged_classes"] = [name for name, v in c["per_class"].items() if v["flag"]]
    return {"flag": bool(fired), "fired": fired, "alpha": alpha, "tests": sum(p is not None for p in adjusted)}


def mirror_allowed(gen_cfg: Any) -> bool:
    """Could the generator's training have shown it mirrored images? `mirror`, or an augmentation pipeline that
    flips (ADA's and the fixed pipeline's 'b' group holds x-flips)."""
    if getattr(gen_cfg, "mirror", False):
        return True
    aug = getattr(gen_cfg, "augment", None)
    return aug in ("ada", "fixed") and "b" in (getattr(gen_cfg, "augpipe", None) or "bgc")


def describe(c: Dict[str, Any]) -> str:
    """'9.8% (quantile), 6.1% (ratio; test 0.2%), C_T -4.1' for one space."""
    o, r, ct = c["overall"], c["ratio"], c["ct"]
    bits = [f"{100 * o['share']:.1f}% below the test images' {100 * o['quantile']:g}% quantile",
            f"{100 * r['share']:.1f}% by the ratio test (test images {100 * r['baseline']:.1f}%)"]
    if ct.get("ct") is not None:
        bits.append(f"C_T {ct['ct']:+.2f}")
    return ", ".join(bits)



# ----------------------------------------------------------------------------------------------------
# One set's check over its spaces, and edits (`sample.mode: edit`): an edit is meant to resemble its own source.


@dataclass
class Space:
    """One space of a set's copy check: the fakes and test images as rows (Q, D) and (M, D) with their labels, the
    training images' views, and per fake the training image left out of its search (an edit's own source index, -1
    for none; None: nothing left out)."""

    fakes: torch.Tensor
    y_fake: torch.Tensor
    test: torch.Tensor
    y_test: torch.Tensor
    views: Callable[[int], torch.Tensor]
    n_views: int
    n_train: int
    exclude: Optional[torch.Tensor] = None


def check(spaces: Dict[str, Space], classes: Sequence[str], quantile: float, ratio: float, alpha: float
          ) -> Tuple[Dict[str, Any], Dict[str, Tuple[Neighbours, Neighbours]]]:
    """Every criterion of every space and Holm's flag over them all; also each space's neighbours (fakes, test)."""
    near = {name: (nearest_two(s.fakes, s.views, s.n_views, exclude=s.exclude), nearest_two(s.test, s.views, s.n_views))
            for name, s in spaces.items()}
    out: Dict[str, Any] = {name: criteria(nf, spaces[name].y_fake, nt, spaces[name].y_test, classes, quantile, ratio)
                           | {"n_train": spaces[name].n_train, "transforms": spaces[name].n_views}
                           for name, (nf, nt) in near.items()}
    return {**out, **decide(out, alpha)}, near


@torch.no_grad()
def own_distance(query: torch.Tensor, sources: torch.Tensor, ts: Sequence[Transform], border: int,
                 chunk: int = 4096) -> torch.Tensor:
    """Row by row, each query image's pixel distance to its own source at their best alignment: the copy check's
    distance (interiors, every transform of `ts`), so a verbatim copy reads 0. query, sources (Q, C, H, W) -> (Q,)."""
    out = torch.full((len(query),), math.inf)
    for i in range(0, len(query), chunk):
        q, src = interior(query[i:i + chunk], border), sources[i:i + chunk]
        for t in ts:
            torch.minimum(out[i:i + chunk], (q - interior(apply(src, t), border)).norm(dim=1), out=out[i:i + chunk])
    return out


def to_source(d_source: torch.Tensor, strength: torch.Tensor, others: torch.Tensor,
              threshold: Optional[float]) -> Dict[str, Dict[str, Any]]:
    """How close edits stay to their own sources, per strength ('0.5'): `d_source` (Q,) each edit's distance to its
    source and `others` (Q,) to its nearest *other* training image (both the copy check's pixel distance);
    `threshold` the copy check's (the test images' quantile distance; None: no test images). Per strength: n, the
    median and 10th percentile distance to the source, the share nearer to it than the threshold, and the median
    distance to the nearest other training image."""
    out: Dict[str, Dict[str, Any]] = {}
    for s in sorted(set(strength.tolist())):
        d = d_source[strength == s].double()
        out[f"{s:g}"] = {"n": len(d), "median": float(d.median()), "p10": float(torch.quantile(d, 0.1)),
                         "within_threshold": None if threshold is None else float((d < threshold).double().mean()),
                         "other_median": float(others[strength == s].double().median())}
    return out


def describe_to_source(summary: Dict[str, Dict[str, Any]]) -> str:
    """'0.5: 812 (p10 640; 3% within the threshold; others 1530)' per strength, joined by '; '."""
    def share(v: Optional[float]) -> str:
        return "n/a" if v is None else f"{100 * v:.0f}%"

    return "; ".join(f"{k}: {v['median']:.0f} (p10 {v['p10']:.0f}; {share(v['within_threshold'])} within the "
                     f"threshold; others {v['other_median']:.0f})" for k, v in summary.items())
