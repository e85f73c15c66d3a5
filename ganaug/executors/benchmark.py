"""The benchmark: a few timed steps of the config's classifier, domain extractor and generator, through their own
training loops, at their batch sizes on random tensors of the data's shape; each cell's seconds from them, scaled to the
configured steps. Cached per machine, device and threads in `<out_dir>/logs/benchmark.json` and this user's cache."""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import progress
from .makespan import Shape
from .workload import Guess, Sizes, planned_steps

BENCH_FILE = "benchmark.json"
BENCH_VERSION = 1
BENCH_BUDGET = 4.0  # seconds of benchmark in all, split between what is timed
# Seconds a cell takes besides its loop (loading the split, building, saving), measured on this project's 2-core CPU
# with the quick config in `local` workers.
OVERHEAD = {"split": 1.0, "features": 1.0, "train-gan": 2.0, "sample": 1.0, "evaluate": 3.0, "train-clf": 1.0}


class _Enough(Exception):
    pass


class _Timer(progress.Sink):
    """Times a loop's steps through its bar: from the end of its first step (warm-up) on; stops it (by raising from
    the bar) after `most` steps or `budget` seconds."""

    def __init__(self, budget: float, most: int):
        self.budget, self.most = budget, most
        self.times: List[Tuple[float, float]] = []
        self.bar: Any = None

    def report(self, bar: Any, final: bool = False) -> None:
        if final:
            return
        if bar is not self.bar:  # a new loop (a per-class GAN's next class): time it afresh
            self.bar, self.times = bar, []
        self.times.append((time.perf_counter(), float(bar.n)))
        timed = self.times[1:]
        if len(timed) >= 2 and (timed[-1][1] - timed[0][1] >= self.most or timed[-1][0] - timed[0][0] >= self.budget):
            raise _Enough

    def per_step(self) -> Optional[float]:
        """The median step (a pause for a validation pass or another process's burst counts once, if at all)."""
        timed = self.times[1:]
        per = sorted((b[0] - a[0]) / (b[1] - a[1]) for a, b in zip(timed, timed[1:]) if b[1] > a[1])
        if not per:
            return None
        mid = len(per) // 2
        return per[mid] if len(per) % 2 else (per[mid - 1] + per[mid]) / 2


def _time_loop(run: Callable[[], Any], budget: float, most: int = 8) -> Optional[float]:
    timer = _Timer(budget, most)
    with progress.reporting_to(timer):
        try:
            run()
        except _Enough:
            pass
    return timer.per_step()


def _time_forward(fn: Callable[[int], Any], n: int) -> float:
    """Seconds per image of `fn(n)` (one warm-up call on a few images first)."""
    fn(min(n, 4))
    t = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t) / n


def _bench_classifier(name: str, kwargs: Dict[str, Any], sizes: Sizes, batch_size: int, augment: Any, mixer: Any,
                      amp: str, channels_last: str, device: Any, budget: float) -> Dict[str, Optional[float]]:
    import torch

    from ..classifiers import get_classifier
    from ..classifiers.train import predict, train_classifier
    from ..config import arm_from_dict
    from ..data.mixing import BatchSource
    from ..utils import Stats, autocast_dtype, use_channels_last

    c, h, w = sizes.shape
    k = max(sizes.classes, 2)
    n = batch_size * 4
    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
    y = torch.arange(n) % k
    gen = torch.Generator().manual_seed(0)
    model = get_classifier(name, **kwargs)
    amp_dtype, cl = autocast_dtype(amp, device), use_channels_last(channels_last, device)
    batches = BatchSource(arm_from_dict({"name": "benchmark", "data": "real"}), x, y, None, None, k, gen)
    step = _time_loop(lambda: train_classifier(
        model, batches=batches, augment=augment, mixer=mixer, val_images=x[:k], val_labels=y[:k], steps=10_000,
        batch_size=batch_size, lr=1e-3, weight_decay=0.0, schedule="constant", eval_every=10**9, device=device,
        amp_dtype=amp_dtype, channels_last=cl, generator=gen, stats=Stats(None), progress=False), budget)
    fwd = _time_forward(lambda m: predict(model, x[:m], device=device, amp_dtype=amp_dtype, channels_last=cl),
                        min(n, 256))
    return {"step": step, "fwd": fwd}


def _bench_gan(sub: Any, generator: Optional[str], sizes: Sizes, device: Any, budget: float) -> Dict[str, Optional[float]]:
    import torch

    from ..config import Rep
    from ..gans import cpu_bf16, gan_kwargs, get_gan, train_generator
    from ..gans.training import generate
    from ..stages.sample import sampler_kwargs
    from ..utils import Stats, autocast_dtype, use_channels_last

    g = sub.gen(generator)
    c, h, w = sizes.shape
    k = max(sizes.classes, 2)
    nets = get_gan(g.name, **gan_kwargs(g, resolution=h, channels=c, num_classes=k))
    batch = getattr(g, "batch_size", None) or 32
    n = batch * 12 * (k if getattr(g, "per_class", False) else 1)
    images = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
    labels = torch.arange(n) % k
    common = dict(images=images, labels=labels, num_classes=k, epochs=1, kimg=None, batch_size=batch, lr=g.lr,
                  betas=(g.betas[0], g.betas[1]), ema_kimg=g.ema_kimg, mirror=g.mirror, device=device,
                  amp_dtype=autocast_dtype(g.amp, device, cpu_bf16(g)), generator=torch.Generator().manual_seed(0),
                  stats=Stats(None),
                  grid_dir=None, grid_every=g.grid_every, progress=False, checkpointer=None, resume=None, evaluator=None,
                  eval_every=None, select=None)
    step = _time_loop(lambda: train_generator(nets, g, channels_last=use_channels_last(g.channels_last, device),
                                              **common), budget)
    G = nets.G.to(device)
    g_kwargs = sampler_kwargs(sub, Rep(generator, None))
    b = min(sub.sample.batch_size, 256)

    def draw(m: int) -> Any:
        with torch.no_grad():
            return generate(G, torch.randn(m, G.z_dim).to(device), (torch.arange(m) % k).to(device), batch_size=b,
                            **g_kwargs)

    return {"step": step, "fwd": _time_forward(draw, b)}


def _bench_mac(device: Any) -> float:
    """Seconds per multiply-add of a float32 matrix product (the nearest-neighbour searches of `evaluate`)."""
    import torch

    a, b = torch.randn(512, 256, device=device), torch.randn(2048, 256, device=device)
    a @ b.T
    t = time.perf_counter()
    for _ in range(3):
        a @ b.T
    return (time.perf_counter() - t) / (3 * 512 * 2048 * 256)


# Keys that change a loop's length or numbers but not the time of one of its steps.
_NOT_TIMING = {"epochs", "kimg", "seed", "lr", "grid_every", "eval_every", "select", "snap", "steps", "weight_decay",
               "schedule"}


def _key(*parts: Any) -> str:
    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in sorted(x.items()) if k not in _NOT_TIMING}
        return x

    return hashlib.sha256(json.dumps([strip(p) for p in parts], default=str).encode()).hexdigest()[:16]


def _bench_cache(cfg: Any) -> List[Path]:
    """Where benchmarks are kept: the run folder's logs once it exists, and this user's cache (so dry runs of a run
    folder not made yet are instant too, and write nothing there)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ganaug"
    out = [base / BENCH_FILE]
    if Path(cfg.out_dir).is_dir():
        out.insert(0, Path(cfg.out_dir) / "logs" / BENCH_FILE)
    return out


def _load_cache(files: List[Path]) -> Dict[str, Any]:
    merged: Dict[str, Any] = {}
    for f in reversed(files):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("version") == BENCH_VERSION:
            merged.update(data.get("results", {}))
    return merged


def _save_cache(files: List[Path], results: Dict[str, Any]) -> None:
    """Add `results` to each cache file that lacks one of them."""
    from ..utils import atomic_write_json

    for f in files:
        old = _load_cache([f])
        if all(old.get(k) == v for k, v in results.items()):
            continue
        try:
            atomic_write_json(f, {"version": BENCH_VERSION, "results": {**old, **results}})
        except OSError:
            pass


class Benchmark:
    """The timed steps a config's cells need, each measured once per machine, device and threads (cached)."""

    def __init__(self, cfg: Any, shape: Shape):
        import torch

        from .. import __version__
        from ..utils import resolve_device

        self.cfg, self.shape = cfg, shape
        self.device = resolve_device(cfg.device)
        self.where = [socket.gethostname(), os.cpu_count(), str(self.device), torch.__version__, __version__]
        self.files = _bench_cache(cfg)
        self.cached = _load_cache(self.files)
        self.todo: Dict[str, Callable[[float], Dict[str, Optional[float]]]] = {}
        self.results: Dict[str, Dict[str, Optional[float]]] = {}
        self.seconds = 0.0
        self.ran = 0

    def want(self, key: str, fn: Callable[[float], Dict[str, Optional[float]]]) -> str:
        old = self.cached.get(key)
        # A time measured while other work held the cores is measured again once they are free.
        if old is not None and not (_busy(old.get("load")) and not _busy(_load())):
            self.results[key] = old
        else:
            self.todo.setdefault(key, fn)
        return key

    def classifier(self, sub: Any, arm: Any, sizes: Sizes) -> str:
        from ..classifiers import imagenet_kwargs

        c = sub.classifier
        threads = self.shape.clf_threads
        kwargs = {"resolution": sizes.shape[1], "channels": sizes.shape[0], "num_classes": max(sizes.classes, 2),
                  "width": c.width, **imagenet_kwargs(c)}
        key = _key("clf", self.where, threads, sizes.shape, sizes.classes, vars(c), arm.augment, arm.label_mix,
                   vars(sub.augment) if arm.augment else None)

        def run(budget: float) -> Dict[str, Optional[float]]:
            from ..data.augment import LabelMix
            from ..stages.train_clf import make_augment
            from ..utils import torch_threads

            mixer = (LabelMix(arm.label_mix, getattr(sub.augment, f"{arm.label_mix}_alpha") or 1.0,
                              max(sizes.classes, 2)) if arm.label_mix is not None else None)
            with torch_threads(threads):
                return _bench_classifier(c.name, kwargs, sizes, c.batch_size, make_augment(sub, arm), mixer, c.amp,
                                         c.channels_last, self.device, budget)

        return self.want(key, run)

    def domain(self, sub: Any, sizes: Sizes) -> str:
        d = sub.evaluate.domain
        threads = self.shape.gen_threads
        kwargs = {"resolution": sizes.shape[1], "channels": sizes.shape[0], "num_classes": max(sizes.classes, 2),
                  "width": d.width}
        key = _key("domain", self.where, threads, sizes.shape, sizes.classes, vars(d))

        def run(budget: float) -> Dict[str, Optional[float]]:
            from ..utils import torch_threads

            with torch_threads(threads):
                return _bench_classifier("small-cnn", kwargs, sizes, d.batch_size, None, None, "off", "off",
                                         self.device, budget)

        return self.want(key, run)

    def gan(self, sub: Any, generator: Optional[str], sizes: Sizes) -> Optional[str]:
        g = sub.gen(generator)
        if getattr(g, "impl", None) == "official":
            return None  # NVlabs' code in a subprocess: not timed here
        threads = self.shape.gen_threads
        trained = {k: v for k, v in vars(g).items() if k != "sample"}  # generators that differ only in sampling: one
        key = _key("gan", self.where, threads, sizes.shape, sizes.classes, trained, sub.sample.batch_size)

        def run(budget: float) -> Dict[str, Optional[float]]:
            from ..utils import torch_threads

            with torch_threads(threads):
                return _bench_gan(sub, generator, sizes, self.device, budget)

        return self.want(key, run)

    def mac(self) -> str:
        threads = self.shape.gen_threads
        key = _key("mac", self.where, threads)

        def run(budget: float) -> Dict[str, Optional[float]]:
            from ..utils import torch_threads

            with torch_threads(threads):
                return {"mac": _bench_mac(self.device)}

        return self.want(key, run)

    def run(self) -> None:
        """Time what is not cached, within BENCH_BUDGET seconds in all, leaving every random stream and the thread
        count as they were; keep the results (in the run folder's logs too, once it exists)."""
        if not self.todo:
            _save_cache(self.files, self.results)
            return
        from ..utils import preserve_rng

        started = time.perf_counter()
        budget = max(0.2, BENCH_BUDGET / len(self.todo) * 0.6)
        with preserve_rng():
            for key, fn in self.todo.items():
                load = _load()
                try:
                    self.results[key] = {**fn(budget), "load": load}
                except Exception:  # noqa: BLE001 - an estimate must never stop a run or a dry run
                    self.results[key] = {"load": load}
                self.ran += 1
        self.seconds = time.perf_counter() - started
        _save_cache(self.files, self.results)
        self.todo = {}

    def get(self, key: Optional[str], what: str) -> Optional[float]:
        v = self.results.get(key or "", {}).get(what)
        return float(v) if v is not None else None

    def busy(self) -> Optional[float]:
        """The highest load average any result in use was measured at, when it exceeded the cores."""
        loads = [r.get("load") for r in self.results.values() if _busy(r.get("load"))]
        return max(loads) if loads else None


def _load() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 1)
    except (OSError, AttributeError):  # pragma: no cover - not on Linux or macOS
        return None


def _busy(load: Optional[float]) -> bool:
    """Other work held more than the cores (1-minute load average) while this measured."""
    from .base import available_cores

    return load is not None and load > available_cores() + 0.5


def benchmark_seconds(cell: Any, sizes: Sizes, bench: Benchmark, keys: Dict[str, Any]) -> Guess:
    """A cell's seconds from the benchmark's per-step and per-image times and the config's counts."""
    from ..memory import png_seconds

    sub, kind = cell.sub, cell.kind
    over = OVERHEAD[kind]
    if kind == "split":
        return Guess(over, "guess")
    steps = planned_steps(cell, sizes)
    n_fake = sub.sample.n_per_class * sizes.classes
    if kind == "train-clf":
        c = sub.classifier
        step, fwd = bench.get(keys["clf"], "step"), bench.get(keys["clf"], "fwd")
        if step is None or fwd is None or steps is None:
            return Guess(None, "unknown")
        evals = math.ceil(steps / max(c.eval_every, 1)) + 1
        return Guess(over + steps * step + (evals * sizes.n_val + sizes.n_test) * fwd, "benchmark")
    if kind == "features":
        step, fwd = bench.get(keys["domain"], "step"), bench.get(keys["domain"], "fwd")
        if step is None or fwd is None or steps is None:
            return Guess(None, "unknown")
        return Guess(over + steps * step + sizes.n_val * fwd, "benchmark")
    if kind == "train-gan":
        step = bench.get(keys.get("gan"), "step")
        if step is None or steps is None:
            return Guess(None, "unknown")
        return Guess(over + steps * step, "benchmark")
    if kind == "sample":
        fwd = bench.get(keys.get("gan"), "fwd")
        if fwd is None:
            return Guess(None, "unknown")
        return Guess(over + n_fake * fwd + (png_seconds(n_fake) if sub.sample.png else 0.0), "benchmark")
    if kind == "evaluate":
        e = sub.evaluate
        fwd, mac = bench.get(keys["domain"], "fwd"), bench.get(keys["mac"], "mac")
        if e.features != "domain" or fwd is None or mac is None:
            return Guess(None, "unknown")
        from ..metrics.copies import max_shift

        c, h, w = sizes.shape
        shift = max_shift(e.copy_shift, h)
        views = ((2 * shift + 1) ** 2 + 1) * (2 if e.copy_mirror else 1)
        pixels = c * (h - 2 * shift) * (w - 2 * shift)
        feats = 4 * e.domain.width
        cap = e.max_images or 10**12
        fake, test, train = min(n_fake, cap), min(sizes.n_test, cap), sizes.n_train
        search = (fake + test) * train * views * (pixels + feats)
        prdc = (test * test + fake * fake + test * fake) * feats * 2
        return Guess(over + (fake + test + train * views + sizes.n_val) * fwd + (search + prdc) * mac, "benchmark")
    return Guess(None, "unknown")
