"""Which quality score predicts the gain: across the generators of one experiment (`generators:`), or across the
sub-experiments of a sweep over a generator key (gan.epochs, gan.kimg, gan.lr), the rank correlation between each
synthetic set's quality scores and each fake-using arm kind's Δ accuracy; as Markdown, a scatter plot per score
(predictive.png beside the table) and HTML for the report. Nothing is shown with fewer than 3 generators."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..config import EXPERIMENT_SWEEP_KEYS, Config, arm_from_dict, sweep_experiments, sweep_key
from ..metrics.predictive import EXACT_MAX_N, EXPLORATORY_BELOW, MIN_GENERATORS, PERMUTATIONS, SCORES, predictive_table
from ..plots import plot_predictive
from .layout import paths

PLOT = "predictive.png"
HEADING = "Which quality score predicts the gain"

Section = Optional[Dict[str, Any]]


def arm_kind(arm_config: Dict[str, Any]) -> str:
    """What an arm does with the fakes, whoever made them: its config without its name and generator."""
    return json.dumps({k: v for k, v in arm_config.items() if k not in ("name", "generator")}, sort_keys=True)


def generator_scores(quality: List[Dict[str, Any]]) -> Dict[Optional[str], Dict[str, Optional[float]]]:
    """Each generator's quality scores (compare's quality rows, the floors left out), averaged over its GAN seeds."""
    sets: Dict[Optional[str], List[Dict[str, Any]]] = {}
    for q in quality:
        if not q.get("floor"):
            sets.setdefault(q.get("generator"), []).append(q)
    out: Dict[Optional[str], Dict[str, Optional[float]]] = {}
    for gen, qs in sets.items():
        out[gen] = {}
        for s in SCORES:
            values = [float(q[s.key]) for q in qs if q.get(s.key) is not None]
            out[gen][s.key] = float(np.mean(values)) if values else None
    return out


def arm_points(rows: List[Dict[str, Any]], quality: List[Dict[str, Any]], label: Callable[[Optional[str]], str]
               ) -> List[Dict[str, Any]]:
    """One point per fake-using arm of compare's rows: its kind, Δ accuracy and its generator's scores."""
    scores = generator_scores(quality)
    points = []
    for r in rows:
        if r["is_baseline"] or r.get("family", "config") != "config" or not arm_from_dict(r["arm_config"]).uses_synthetic:
            continue
        gen = r.get("generator") or None
        points.append({"kind": arm_kind(r["arm_config"]), "kind_label": r["data"], "arm": r["arm"], "generator": label(gen),
                       "delta": r["delta_mean"], "scores": scores.get(gen, {})})
    return points


def _section(points: List[Dict[str, Any]], generators: List[str], said: str, baseline: Optional[str]) -> Section:
    """The table's rows and what they were computed over; None with fewer than MIN_GENERATORS generators or no rows."""
    if len(generators) < MIN_GENERATORS:
        return None
    rows = predictive_table(points)
    if not rows:
        return None
    # Two kinds that read alike (e.g. differing only in a key the description leaves out) get their arms' names.
    labels: Dict[str, set] = {}
    for r in rows:
        labels.setdefault(r["kind_label"], set()).add(r["kind"])
    for r in rows:
        if len(labels[r["kind_label"]]) > 1:
            r["kind_label"] += f" ({', '.join(sorted({p['arm'] for p in r['points']}))})"
    return {"generators": generators, "said": said, "baseline": baseline, "rows": rows,
            "exact_max_n": EXACT_MAX_N, "permutations": PERMUTATIONS}


def experiment_section(cfg: Config, rows: List[Dict[str, Any]], quality: List[Dict[str, Any]]) -> Section:
    """Across the generators of one experiment (`generators:`)."""
    if not cfg.generators:
        return None
    names = list(cfg.generators)
    return _section(arm_points(rows, quality, lambda g: g or "-"), names,
                    f"the {len(names)} generators ({', '.join(names)})", cfg.baseline_arm)


def sweep_section(cfg: Config) -> Section:
    """Across the sub-experiments of a sweep over a generator key, each value's generator one point."""
    if cfg.sweep is None or not cfg.experiment_sweep:
        return None
    key = sweep_key(cfg.sweep.key)
    if not EXPERIMENT_SWEEP_KEYS[key].get("generator"):
        return None
    points: List[Dict[str, Any]] = []
    values: List[str] = []
    for value, sub in sweep_experiments(cfg):
        f = paths(sub).compare / "table.json"
        if not f.is_file():
            continue
        table = json.loads(f.read_text())
        values.append(f"{value:g}")
        points += arm_points(table["rows"], table.get("quality") or [], lambda g, v=value: f"{v:g}")
    return _section(points, values, f"the {len(values)} generators of the sweep ({key} = {', '.join(values)})",
                    cfg.baseline_arm)


# ----------------------------------------------------------------------------------------------------
# As text, plot and HTML.


def _num(v: Optional[float], fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def _p(r: Dict[str, Any]) -> str:
    if r["p"] is None:
        return "-"
    return ("<0.001" if r["p"] < 0.001 else f"{r['p']:.3f}") + f" ({r['method']})"


def _gain(r: Dict[str, Any]) -> str:
    return {True: "yes", False: "no (the reverse)", None: "-"}[r["better_gain"]]


def table_head() -> List[str]:
    return ["arm kind", "score", "n", "Spearman ρ", "p (two-sided)", "better score → bigger gain?", "note"]


def table_cells(r: Dict[str, Any]) -> List[str]:
    direction = "higher" if r["higher_is_better"] else "lower"
    note = [f"exploratory (n < {EXPLORATORY_BELOW})"] if r["exploratory"] else []
    note += ["undefined: the score or the gain is the same for every generator"] if r["rho"] is None else []
    return [r["kind_label"], f"{r['label']} ({direction} is better)", str(r["n"]), _num(r["rho"], "{:+.2f}"), _p(r),
            _gain(r), "; ".join(note)]


def _ordered(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each kind's rows, the strongest correlation first (an undefined one last)."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    return sorted(rows, key=lambda r: (kinds.index(r["kind"]), r["rho"] is None, -abs(r["rho"] or 0.0)))


def notes(section: Dict[str, Any]) -> List[str]:
    """What the table's numbers are."""
    n_max = max(r["n"] for r in section["rows"])
    return [
        f"Spearman's ρ over {section['said']}, between each synthetic set's quality score (averaged over its GAN seeds) "
        f"and each fake-using arm kind's mean Δ test accuracy against {section['baseline']}; arms of one kind differ "
        "only in whose fakes they use. Ties take average ranks. p is two-sided: the share of the pairings of the "
        "scores with a reordering of the Δs whose |ρ| is at least as large, over every reordering for n ≤ "
        f"{section['exact_max_n']} (exact), else over {section['permutations']:,} seeded random ones (permutation). "
        "A lower-is-better score (FID, KID, copies) that predicts the gain has a negative ρ: the last column reads ρ in "
        "each score's direction. CAS is the synthetic arm's own accuracy, so against that arm it agrees by construction.",
        f"Exploratory below {EXPLORATORY_BELOW} generators: the smallest two-sided p then is 2/n! (1/3 with 3, 1/12 with "
        "4), so no ranking of so few can be told from chance at 0.05; a row is a hint to test with more generators. "
        f"The p-values are not corrected for the {sum(r['p'] is not None for r in section['rows'])} rows with one: "
        "read them as a ranking of the scores"
        + (", and every row here is exploratory." if n_max < EXPLORATORY_BELOW else "."),
    ]


def render_markdown(section: Section) -> List[str]:
    """The table in Markdown with its notes and plot; [] when there is none."""
    if not section:
        return []
    head = table_head()
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in _ordered(section["rows"])]
    return [f"{HEADING} (Δ accuracy against each score: {PLOT}):", ""] + lines + [""] + notes(section)


def write_plot(section: Section, out: Path) -> List[str]:
    """predictive.png in `out`: a scatter plot per score; returns its name ([] when there is no section)."""
    if not section:
        return []
    return [plot_predictive(section["rows"], out / PLOT, baseline=section["baseline"],
                            title=f"Δ test accuracy against each quality score, over {section['said']}").name]


def render_html(section: Section, folder: Path, img: Callable[[Path, str], str]) -> List[str]:
    """The report's section: heading, table, notes and the plot (`img(path, caption)` embeds it); [] without one."""
    if not section:
        return []
    head = table_head()
    body = ['<div class="scroll"><table><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>"]
    for r in _ordered(section["rows"]):
        cells = table_cells(r)
        body.append("<tr>" + "".join(f'<td{" class=wrap" if i in (0, 6) else ""}>{html.escape(c)}</td>'
                                     for i, c in enumerate(cells)) + "</tr>")
    body.append("</tbody></table></div>")
    parts = [f"<h2>{HEADING}</h2>", "\n".join(body)] + [f"<p>{html.escape(n)}</p>" for n in notes(section)]
    if (folder / PLOT).is_file():
        parts.append(img(folder / PLOT, "Δ test accuracy against each quality score: one point per generator (labelled), "
                                        "one colour per arm kind, its ρ in the panel; a lower-is-better score's axis is "
                                        "reversed, so better is always to the right"))
    return parts


def compare_section(cfg: Config, rows: List[Dict[str, Any]], quality: List[Dict[str, Any]], out: Path
                    ) -> Tuple[Section, List[str], List[str]]:
    """For compare: the section, its Markdown lines and the plot written to `out`."""
    section = experiment_section(cfg, rows, quality)
    return section, render_markdown(section), write_plot(section, out)


def sweep_summary_section(cfg: Config, out: Path) -> Tuple[Section, List[str], List[str]]:
    """For a sweep's summary: the section across its sub-experiments, its Markdown lines and the plot in `out`."""
    section = sweep_section(cfg)
    return section, render_markdown(section), write_plot(section, out)
