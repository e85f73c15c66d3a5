"""The exchange rate of a learning curve (a sweep over split.n_per_class): what each arm is worth in real images,
read from the sub-experiments' tables as Markdown, HTML and a plot (the numbers: ganaug/metrics/exchange.py)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..config import Config, sweep_key
from ..metrics.exchange import ADDS_FAKES, FAKES_ONLY, NO_FAKES, cells, exchange_rates, reading
from ..plots import plot_exchange

KEY = "split.n_per_class"
TITLE = "What an arm is worth in real images (the exchange rate)"
PLOT = "exchange.png"
CAPTION = ("Left: the real-only learning curve (its measured means and the monotone fit) with each arm's accuracy "
           "moved from its real size n (hollow) to its equivalent real size n* (filled). Right: n* against n with "
           "bootstrap intervals over seeds; above the diagonal the arm is worth more than its real images alone, "
           "below it less than nothing; triangles: beyond the measured sizes")


def applies(cfg: Config) -> bool:
    """A learning curve with a real-only, unaugmented baseline arm to price the other arms against."""
    if cfg.sweep is None or not cfg.experiment_sweep or sweep_key(cfg.sweep.key) != KEY:
        return False
    base = next((a for a in cfg.all_arms if a.name == cfg.baseline_arm), None)
    return base is not None and base.data == "real" and not base.augmented


def _fakes(arm: Dict[str, Any], fakes_per_class: int) -> tuple[str, Optional[int]]:
    """The arm's relation to fakes and the fakes per class one counts: mix.add, or the set's sample.n_per_class that
    a p_real arm's batches (and a fakes-only arm) draw from; none for real arms and for mix.balance."""
    if arm["data"] == "real":
        return NO_FAKES, None
    if arm["data"] == "synthetic":
        return FAKES_ONLY, fakes_per_class
    mix = arm.get("mix") or {}
    if mix.get("add") is not None:
        return ADDS_FAKES, int(mix["add"])
    return ADDS_FAKES, None if mix.get("balance") else fakes_per_class


def exchange_summary(cfg: Config, experiments: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The exchange rate of every arm at every size, from the sweep's sub-experiments (each with `value` and `rows`:
    its table.json rows); None when the sweep is not a learning curve or the baseline ran at fewer than two sizes."""
    if not applies(cfg):
        return None
    base = cfg.baseline_arm
    real: Dict[float, Dict[Any, float]] = {}
    arms: Dict[str, Dict[float, Dict[Any, float]]] = {}
    fakes: Dict[str, Optional[int]] = {}
    kinds: Dict[str, str] = {}
    for e in experiments:
        for r in e["rows"]:
            points = dict(zip(r["seeds"], r["acc"]))
            if r["arm"] == base:
                real[float(e["value"])] = points
                continue
            arms.setdefault(r["arm"], {})[float(e["value"])] = points
            kinds[r["arm"]], fakes[r["arm"]] = _fakes(r["arm_config"], cfg.sample.n_per_class)
    if len(real) < 2 or not arms:
        return None
    ex = exchange_rates(real, arms, fakes, kinds, confidence=cfg.compare.confidence)
    for row in ex["rows"]:
        row["text"] = cells(row, ex["sizes"])
        row["reading"] = reading(row, ex["sizes"])
    ex.update(baseline=base, fakes_per_class=cfg.sample.n_per_class)
    ex["notes"] = _notes(ex)
    return ex


def _notes(ex: Dict[str, Any]) -> List[str]:
    sizes, level = ex["sizes"], f"{100 * ex['confidence']:g}%"
    pooled = [f"{n:g}" for n, m, c in zip(sizes, ex["real_means"], ex["curve"]) if abs(m - c) > 1e-12]
    k = len(ex["seeds"])
    return [
        f"n*: the fewest real images per class at which the real-only arm {ex['baseline']} reaches the arm's mean test "
        f"accuracy, on its curve over the measured sizes ({', '.join(f'{n:g}' for n in sizes)}) made monotone by "
        "isotonic regression (a dip is noise and is pooled with its neighbour) and linear in log(n) between sizes; "
        f"'> {max(sizes):g}' and '< {min(sizes):g}': beyond the measured sizes, where nothing is extrapolated."
        + (f" The measured real curve dips: the fit pools the means at {', '.join(pooled)}." if pooled else ""),
        "n*/n: the arm's worth as a multiple of its real images (for augmentation, the only measure); n* − n: what the "
        "arm adds in real images per class, negative when it is worth less than nothing. Per fake: (n* − n) / fakes per "
        "class for arms that add fakes to the real images, counting mix.add, or for mix.p_real the "
        f"sample.n_per_class = {ex['fakes_per_class']} fakes per class of the set the batches draw from; n* / fakes "
        "per class for fakes-only arms.",
        f"Intervals: {level} percentile bootstrap over seeds ({ex['n_boot']} resamples, RNG seed {ex['boot_seed']}), "
        "paired: each draw of seeds builds the real curve and every arm's mean at every size."
        + (f" With {k} seeds only {ex['distinct_resamples']} distinct resamples exist: the intervals are rough, "
           "and narrower than their level (a percentile bootstrap over few seeds under-covers)."
           if k < 10 else ""),
    ]


def render_markdown(ex: Dict[str, Any]) -> List[str]:
    """The section for table.md: the table, a line per row in words, the notes."""
    level = f"{100 * ex['confidence']:g}%"
    head = ["real / class n", "arm", "fakes / class", "test acc %", "equivalent real / class n*", f"{level} CI",
            "n*/n", "n* − n", "real images per fake", f"{level} CI of per fake"]
    lines = [f"## {TITLE}", "", "| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in ex["rows"]:
        t = r["text"]
        lines.append("| " + " | ".join([f"{r['n']:g}", r["arm"], "-" if not r["fakes"] else f"{r['fakes']:g}",
                                        f"{100 * r['acc']:.2f}", t["n_star"], t["n_star_ci"], t["ratio"], t["gain"],
                                        t["per_fake"], t["per_fake_ci"]]) + " |")
    lines += [""] + [f"- {r['arm']}, {r['reading']}" for r in ex["rows"]]
    return lines + [""] + ex["notes"]


def render_html(ex: Optional[Dict[str, Any]], compare_dir: Path, img: Callable[[Path, str], str]) -> List[str]:
    """The report's section: the plot (drawn by `img`, the report's <figure> maker), the table with each row in words,
    the notes; nothing without an exchange rate."""
    if not ex:
        return []
    level = f"{100 * ex['confidence']:g}%"
    head = ["real / class n", "arm", "fakes / class", "test acc %", f"equivalent real / class n* [{level} CI]", "n*/n",
            "n* − n", f"real images per fake [{level} CI]", "in words"]
    out = [f"<h2>{html.escape(TITLE)}</h2>"]
    if (compare_dir / PLOT).is_file():
        out.append(img(compare_dir / PLOT, CAPTION))
    out.append('<div class="scroll"><table><thead><tr>' + "".join(
        f'<th{" class=wrap" if h == "in words" else ""}>{html.escape(h)}</th>' for h in head) + "</tr></thead><tbody>")
    for r in ex["rows"]:
        t = r["text"]
        worse = r["kind"] != FAKES_ONLY and (r["censored"] == "below" or (r["censored"] is None and r["n_star"] < r["n"]))
        cells_ = [f"{r['n']:g}", r["arm"], "-" if not r["fakes"] else f"{r['fakes']:g}", f"{100 * r['acc']:.2f}",
                  f"{t['n_star']} {t['n_star_ci']}", t["ratio"], t["gain"],
                  "-" if t["per_fake"] == "-" else f"{t['per_fake']} {t['per_fake_ci']}"]
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells_)
                   + f'<td class="wrap{" worse" if worse else ""}">{html.escape(r["reading"])}</td></tr>')
    out.append("</tbody></table></div>")
    out += [f"<p>{html.escape(n)}</p>" for n in ex["notes"]]
    return out


def sweep_section(cfg: Config, experiments: List[Dict[str, Any]],
                  out: Path) -> tuple[Optional[Dict[str, Any]], List[str], List[str]]:
    """For the sweep summary: the exchange rate (or None), its Markdown section and the plot's name, written to `out`."""
    ex = exchange_summary(cfg, experiments)
    if ex is None:
        return None, [], []
    level = f"{100 * ex['confidence']:g}%"
    plot = plot_exchange(ex, out / PLOT, title=f"What each arm is worth in real images per class ({level} bootstrap intervals)")
    return ex, render_markdown(ex), [plot.name]
