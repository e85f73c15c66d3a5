"""How long an experiment will take, before and while it runs.

Each cell's seconds come from the run folder's records where it has them (`logs/run.json`, the cells' `stage.json`:
the same cell, else cells of its arm or kind, scaled by their steps), else from a short benchmark on this device (a
few timed steps of the config's classifier, domain extractor and generator, through their own training loops, at
their batch sizes on random tensors of the data's shape, scaled to the configured steps; cached in
`<out_dir>/logs/benchmark.json`). The run's time is then the cells scheduled as the executor runs them: as many at
once as their threads fit in its capacity (and its workers), each after its inputs. While the run goes, `Eta` puts
the durations measured so far first and reads the running cells' progress files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from .. import progress
from ..progress import fmt_seconds
from .base import admits, cell_cost

BENCH_FILE = "benchmark.json"
BENCH_VERSION = 1
BENCH_BUDGET = 4.0  # seconds of benchmark in all, split between what is timed
# Seconds a cell takes besides its loop (loading the split, building, saving), measured on this project's 2-core CPU
# with the quick config in `local` workers.
OVERHEAD = {"split": 1.0, "features": 1.0, "train-gan": 2.0, "sample": 1.0, "evaluate": 3.0, "train-clf": 1.0}
# Per-class image counts of the registered sources (all partitions), for a guess before the split exists.
SOURCE_SIZES = {"digits": (10, 180), "mnist-5k": (10, 500), "mnist": (10, 7000), "fashion-mnist": (10, 7000),
                "cifar10": (10, 6000), "cifar100": (100, 600)}
GRAY = {"digits", "mnist-5k", "mnist", "fashion-mnist"}


@dataclass
class Guess:
    """A cell's seconds and where they came from: records, benchmark, guess, this run, done (what it took), or unknown."""

    seconds: Optional[float]
    source: str

    def text(self) -> str:
        if self.source == "done":
            return f"took {fmt_seconds(self.seconds)}" if self.seconds is not None else "done"
        if self.seconds is None:
            return "no estimate"
        return f"~{fmt_seconds(self.seconds)} ({self.source})"


# ----------------------------------------------------------------------------------------------------
# The executor's parallelism.


@dataclass
class Shape:
    """How an executor runs cells at once: `capacity` CPUs filled by each cell's threads (None: no limit, a cluster
    queues them), at most `slots` cells (serial 1, local its workers)."""

    name: str
    capacity: Optional[int]
    slots: Optional[int]
    gen_threads: int
    clf_threads: int

    @classmethod
    def of_config(cls, cfg: Any) -> "Shape":
        from . import EXECUTORS

        capacity, slots, gen = EXECUTORS.get(cfg.executor.name, "config key 'executor.name'").planned(cfg)
        return cls(cfg.executor.name, capacity, slots, gen, cfg.executor.clf_threads)

    @classmethod
    def of_executor(cls, ex: Any) -> "Shape":
        return cls(ex.name, ex.capacity, ex.slots, ex.gen_threads(), ex.cfg.executor.clf_threads)

    def threads(self, kind: str) -> int:
        return self.clf_threads if kind == "train-clf" else self.gen_threads

    def cost(self, kind: str) -> int:
        return cell_cost(self.threads(kind), self.capacity)

    def describe(self) -> str:
        if self.slots == 1:
            return f"{self.name}: one cell at a time"
        if not self.capacity:
            return f"{self.name}: every ready cell at once (the cluster's queue not counted)"
        gen, clf = self.cost("train-gan"), self.cost("train-clf")
        at_once = max(1, self.capacity // max(clf, 1))
        if self.slots:
            at_once = min(at_once, self.slots)
        gen_at_once = max(1, self.capacity // max(gen, 1))
        if self.slots:
            gen_at_once = min(gen_at_once, self.slots)
        return (f"{self.name}: {at_once} classifier cell(s) at a time on {self.capacity} cores"
                f"{f' ({self.slots} workers)' if self.slots else ''}, "
                f"other cells {'one' if gen_at_once == 1 else gen_at_once} at a time ({self.gen_threads} "
                f"thread{'s' if self.gen_threads > 1 else ''} each)")


def makespan(cells: List[Any], seconds: Dict[str, float], shape: Shape, done: Iterable[str] = (),
             running: Optional[Dict[str, float]] = None, gone: Iterable[str] = ()) -> float:
    """Seconds until the last cell ends when the cells not `done` run as the scheduler runs them: in the graph's
    order once their inputs are done, while their threads fit the capacity (one always runs), at most `slots` at
    once. `running`: cells already running, with their seconds left; `gone`: failed cells (what needs them never runs)."""
    kind = {c.id: c.kind for c in cells}
    finished = set(done)
    gone = set(gone)
    active: Dict[str, float] = dict(running or {})
    used = sum(shape.cost(kind.get(i, "train-clf")) for i in active)
    pending = [c for c in cells if c.id not in finished and c.id not in active and c.id not in gone]
    queue: List[Any] = []
    now = 0.0
    while pending or queue or active:
        for c in list(pending):
            if all(d in finished for d in c.deps):
                queue.append(c)
                pending.remove(c)
        while queue:
            cost = shape.cost(queue[0].kind)
            if not admits(bool(active), used, cost, shape.capacity, len(active), shape.slots):
                break
            c = queue.pop(0)
            active[c.id] = now + max(0.0, seconds.get(c.id, 0.0))
            used += cost
        if not active:
            break  # what is left waits on a failed cell
        i = min(active, key=lambda k: active[k])
        now = active.pop(i)
        used -= shape.cost(kind.get(i, "train-clf"))
        finished.add(i)
    return now


# ----------------------------------------------------------------------------------------------------
# What a cell has to do: its steps and the data's sizes.


@dataclass
class Sizes:
    shape: Tuple[int, int, int]
    classes: int
    n_train: int
    n_val: int
    n_test: int
    exact: bool  # from the split's manifest; else guessed from the config and the source


def data_sizes(sub: Any) -> Sizes:
    """The split's sizes from its manifest, or, before the split exists, a guess from the config and the source."""
    from ..memory import shape_and_classes
    from ..stages.common import paths

    info = shape_and_classes(paths(sub))
    if info is not None:
        (c, h, w), k, n_train, m = info
        counts = m.get("counts", {})
        return Sizes((int(c), int(h), int(w)), int(k), int(n_train), int(sum(counts.get("val", {}).values())),
                     int(sum(counts.get("test", {}).values())), True)
    from ..data import DATASETS

    d, s = sub.data, sub.split
    meta = DATASETS.meta(d.source) if d.source in DATASETS.names() else {}
    side = d.resolution or meta.get("resolution") or 32
    channels = d.channels or (1 if d.source in GRAY else 3)
    classes, per_class = SOURCE_SIZES.get(d.source, (0, 0))
    if not classes and d.root and Path(d.root).is_dir():  # a folder of class folders
        folders = [f for f in os.scandir(d.root) if f.is_dir() and not f.name.startswith(".")]
        classes = len(folders) if not d.label_regex else 10
        files = sum(sum(1 for x in os.scandir(f.path) if x.is_file()) for f in folders)
        per_class = files // max(classes, 1)
    classes, per_class = classes or 10, per_class or 500
    if s.n_per_class or s.first_per_class:
        n = s.n_per_class or s.first_per_class
    elif s.fraction:
        n = int(s.fraction * max(0, per_class - s.val_per_class))
    else:
        n = 100
    n = min(n, max(1, per_class - s.val_per_class))
    test = s.test_per_class or max(1, per_class - n - s.val_per_class)
    return Sizes((channels, side, side), classes, n * classes, s.val_per_class * classes, test * classes, False)


def planned_steps(cell: Any, sizes: Optional[Sizes]) -> Optional[float]:
    """The length of a cell's loop in the unit its bar counts (optimizer steps; kimg for the official StyleGAN2)."""
    sub = cell.sub
    if sub is None:
        return None
    if cell.kind == "train-clf":
        return float(sub.classifier.steps)
    if cell.kind == "features":
        return float(sub.evaluate.domain.steps)
    if cell.kind == "train-gan":
        g = sub.gen(cell.spec.get("generator"))
        if getattr(g, "impl", None) == "official":
            return float(g.kimg) if g.kimg else None
        if sizes is None:
            return None
        # As the loops count: epochs of ceil(n / batch) steps, or ceil(kimg * 1000 / batch); per class, each class's.
        batch = getattr(g, "batch_size", None) or 32
        pairs = sizes.classes if getattr(g, "per_class", False) else 1
        n = sizes.n_train / pairs
        per_pair = math.ceil(g.kimg * 1000 / batch) if g.kimg else g.epochs * max(1, math.ceil(n / batch))
        return float(pairs * per_pair)
    return None


# ----------------------------------------------------------------------------------------------------
# Records of earlier runs in the run folder.


def _group(cell_id: str) -> str:
    """Cells that take alike: an arm's seeds, a generator's seeds."""
    return re.sub(r"(^|/)seed-\d+$", "", cell_id)


@dataclass
class Obs:
    id: str
    kind: str
    seconds: float
    steps: Optional[float]


def _record_steps(kind: str, rec: Dict[str, Any]) -> Optional[float]:
    try:
        if kind == "train-clf":
            return float(rec["config"]["classifier"]["steps"])
        if kind == "features":
            return float(rec["config"]["domain"]["steps"])
        if kind == "train-gan" and rec.get("steps"):
            return float(rec["steps"])
    except (KeyError, TypeError, ValueError):
        pass
    return None


def read_records(out_dir: str | Path, cells: List[Any]) -> List[Obs]:
    """Every cell's seconds the run folder remembers: the last `run`'s (logs/run.json, a worker's whole time), and
    each cell folder's stage record (the stage's own time) for cells that run did not make."""
    out: Dict[str, Obs] = {}
    kinds = {c.id: c.kind for c in cells}
    try:
        last = json.loads((Path(out_dir) / "logs" / "run.json").read_text())
    except (OSError, ValueError):
        last = {}
    for t in last.get("cells", []) if isinstance(last, dict) else []:
        if t.get("ok") and t.get("seconds") is not None and t.get("id"):
            out[t["id"]] = Obs(t["id"], t.get("kind") or kinds.get(t["id"], "?"), float(t["seconds"]), t.get("steps"))
    from ..stages.common import read_record

    for c in cells:
        if c.id in out:
            continue
        rec = read_record(c.folder)
        if rec and rec.get("seconds") is not None and not rec.get("resumed_from_step"):
            out[c.id] = Obs(c.id, c.kind, float(rec["seconds"]), _record_steps(c.kind, rec))
    return list(out.values())


def _scaled(obs: List[Obs], steps: Optional[float]) -> Optional[float]:
    """The median of the observations, each scaled to `steps` where both step counts are known."""
    vals = sorted(o.seconds * (steps / o.steps if steps and o.steps else 1.0) for o in obs)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def from_observations(cell: Any, obs: List[Obs], steps: Optional[float]) -> Optional[float]:
    """The cell's own observation, else its group's (an arm's other seeds), else its kind's."""
    for same in (lambda o: o.id == cell.id, lambda o: _group(o.id) == _group(cell.id), lambda o: o.kind == cell.kind):
        picked = [o for o in obs if same(o)]
        if picked:
            return _scaled(picked, steps)
    return None


# ----------------------------------------------------------------------------------------------------
# The benchmark: a few timed steps of each network through its own training loop.


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
    from ..gans import gan_kwargs, get_gan, train_generator
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
                  amp_dtype=autocast_dtype(g.amp, device), generator=torch.Generator().manual_seed(0), stats=Stats(None),
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
        key = _key("gan", self.where, threads, sizes.shape, sizes.classes, vars(g), sub.sample.batch_size)

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


def _benchmark_seconds(cell: Any, sizes: Sizes, bench: Benchmark, keys: Dict[str, Any]) -> Guess:
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


# ----------------------------------------------------------------------------------------------------
# Putting it together.


@dataclass
class Plan:
    cells: Dict[str, Guess]  # every cell's (done: what it took)
    total: Optional[float]  # the run's wall seconds, scheduled as the executor would
    shape: Shape
    unknown: int  # cells to run without an estimate (counted as 0 s in the total)
    sizes_exact: bool
    bench_seconds: float
    bench_ran: int
    bench_file: Optional[Path]
    bench_load: Optional[float] = None  # the load average of a benchmark measured on a busy machine

    def sources(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for g in self.cells.values():
            if g.source != "done":
                out[g.source] = out.get(g.source, 0) + 1
        return out

    def line(self) -> str:
        """One line: the run's time, how the executor runs the cells, and where the numbers came from."""
        todo = sum(self.sources().values())
        if not todo:
            return "nothing to run"
        by = ", ".join(f"{n} from {s}" for s, n in self.sources().items())
        bench = ""
        if self.bench_ran:
            bench = f"; benchmark {self.bench_seconds:.1f}s here, kept in {self.bench_file}"
        elif self.sources().get("benchmark"):
            bench = f"; benchmark from {self.bench_file}"
        if bench and self.bench_load is not None:
            from .base import available_cores

            bench += f" (measured while other work held the cores: load {self.bench_load:g} on {available_cores()})"
        unknown = f" (+ {self.unknown} cell(s) without an estimate)" if self.unknown else ""
        guessed = "" if self.sizes_exact else "; data sizes guessed until the split exists"
        return (f"about {fmt_seconds(self.total)}{unknown} for {todo} cell(s) ({self.shape.describe()}); "
                f"per cell: {by}{bench}{guessed}")


def estimate(cfg: Any, cells: List[Any], states: Dict[str, str], shape: Optional[Shape] = None,
             benchmark: bool = True) -> Plan:
    """Each cell's seconds (records of this run folder first, else the benchmark) and the run's, for `states`
    (a cell's state: done, to run, resume (step N), differs)."""
    shape = shape or Shape.of_config(cfg)
    obs = read_records(cfg.out_dir, cells)
    sizes_of: Dict[str, Sizes] = {}
    bench = Benchmark(cfg, shape) if benchmark else None
    keys: Dict[str, Dict[str, Any]] = {}
    out: Dict[str, Guess] = {}
    todo = []

    def sizes(cell: Any) -> Sizes:
        from ..stages.common import paths

        where = str(paths(cell.sub).split)
        if where not in sizes_of:
            sizes_of[where] = data_sizes(cell.sub)
        return sizes_of[where]

    by_id = {o.id: o for o in obs}
    for c in cells:
        state = states.get(c.id, "to run")
        if state == "done":
            o = by_id.get(c.id)
            out[c.id] = Guess(o.seconds if o else None, "done")
            continue
        todo.append(c)
        seconds = from_observations(c, obs, planned_steps(c, sizes(c)) if c.sub is not None else None)
        if seconds is not None:
            out[c.id] = Guess(seconds, "records")
        elif bench is not None and c.sub is not None:
            sz = sizes(c)
            k: Dict[str, Any] = {}
            if c.kind == "train-clf":
                from ..config import arm_from_dict

                k["clf"] = bench.classifier(c.sub, arm_from_dict(c.spec["arm"]), sz)
            if c.kind in ("features", "evaluate"):
                k["domain"] = bench.domain(c.sub, sz)
            if c.kind in ("train-gan", "sample"):
                k["gan"] = bench.gan(c.sub, c.spec.get("generator"), sz)
            if c.kind == "evaluate":
                k["mac"] = bench.mac()
            keys[c.id] = k
        else:
            out[c.id] = Guess(None, "unknown")
    if bench is not None:
        bench.run()
        for c in todo:
            if c.id in keys:
                out[c.id] = _benchmark_seconds(c, sizes(c), bench, keys[c.id])
    for c in todo:  # an interrupted training cell continues from its checkpoint: only what is left
        m = re.match(r"resume \(step (\d+)\)", states.get(c.id, ""))
        steps = planned_steps(c, sizes(c)) if c.sub is not None else None
        if m and steps and out[c.id].seconds is not None:
            out[c.id] = Guess(out[c.id].seconds * max(0.0, 1 - int(m.group(1)) / steps), out[c.id].source)
    done = [c.id for c in cells if states.get(c.id) == "done"]
    seconds = {i: g.seconds or 0.0 for i, g in out.items()}
    total = makespan(cells, seconds, shape, done=done)
    unknown = sum(1 for c in todo if out[c.id].seconds is None)
    exact = all(s.exact for s in sizes_of.values())
    return Plan(out, total, shape, unknown, exact, bench.seconds if bench else 0.0, bench.ran if bench else 0,
                bench.files[0] if bench else None, bench.busy() if bench else None)


# ----------------------------------------------------------------------------------------------------
# While the run goes.


class Eta:
    """The run's time left: finished cells' seconds in this run (per arm or kind, scaled by steps) first, else the
    estimate the run started with; running cells from their progress files (their rate so far), else their estimate
    less the time they have run."""

    def __init__(self, cells: List[Any], shape: Shape, prior: Optional[Plan] = None):
        self.cells = cells
        self.shape = shape
        self.prior = prior.cells if prior is not None else {}
        self.steps: Dict[str, Optional[float]] = {}
        self._plan_steps()
        self.seen: List[Obs] = []

    def _plan_steps(self) -> None:
        """Each cell's loop length (from the split's manifest once it exists: a GAN's steps follow its images)."""
        from ..stages.common import paths

        sizes_of: Dict[str, Optional[Sizes]] = {}
        for c in self.cells:
            try:
                where = str(paths(c.sub).split) if c.sub is not None else ""
                if where not in sizes_of:
                    sizes_of[where] = data_sizes(c.sub) if c.sub is not None else None
                self.steps[c.id] = planned_steps(c, sizes_of[where])
            except Exception:  # noqa: BLE001 - only an estimate
                self.steps[c.id] = None

    def finished(self, cell: Any, seconds: Optional[float]) -> None:
        if cell.kind == "split":
            self._plan_steps()
        if seconds is not None:
            self.seen.append(Obs(cell.id, cell.kind, float(seconds), self.steps.get(cell.id)))

    def cell(self, cell: Any) -> Guess:
        s = from_observations(cell, self.seen, self.steps.get(cell.id))
        if s is not None:
            return Guess(s, "this run")
        return self.prior.get(cell.id) or Guess(None, "unknown")

    def left(self, done: Set[str], running: Dict[str, Tuple[float, Optional[Dict[str, Any]]]],
             gone: Iterable[str] = ()) -> Tuple[Optional[float], str]:
        """(seconds left, the source most of them came from); None while some cell to run has no estimate at all."""
        weight: Dict[str, float] = {}
        seconds: Dict[str, float] = {}
        unknown = False
        now: Dict[str, float] = {}
        for c in self.cells:
            if c.id in done:
                continue
            g = self.cell(c)
            if c.id in running:
                elapsed, record = running[c.id]
                left = progress.seconds_left(record)
                if left is None:
                    left = max(1.0, (g.seconds or 0.0) - elapsed) if g.seconds is not None else None
                    src = g.source
                else:
                    src = "progress"
                if left is None:
                    unknown = True
                    left = 0.0
                now[c.id] = left
                weight[src] = weight.get(src, 0.0) + left
                continue
            if g.seconds is None:
                unknown = True
            seconds[c.id] = g.seconds or 0.0
            weight[g.source] = weight.get(g.source, 0.0) + (g.seconds or 0.0)
        total = makespan(self.cells, seconds, self.shape, done=done, running=now, gone=gone)
        source = max(weight, key=lambda k: weight[k]) if weight else ""
        return (None if unknown and total == 0 else total), source

    def text(self, done: Set[str], running: Dict[str, Tuple[float, Optional[Dict[str, Any]]]],
             gone: Iterable[str] = ()) -> str:
        gone = set(gone)
        if all(c.id in done or c.id in gone for c in self.cells):
            return ""
        left, source = self.left(done, running, gone)
        if left is None:
            return ""
        return f"about {fmt_seconds(left)} left" + (f" ({source})" if source else "")
