"""Stage `compare`: the accuracy table across arms and replicates, with intervals, paired tests, verdicts,
the protocol audit and plots; written as Markdown, CSV, JSON and PNG under `<out_dir>/compare/`.
The rendering of the table (Markdown, terminal, CSV, its notes) is in table.py."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..config import Config, arm_from_dict, sweep_arms, sweep_key, sweep_value
from ..errors import StageError
from ..metrics.stats import (
    bonferroni,
    decide,
    holm,
    mean_ci,
    min_detectable_difference,
    paired_test,
    pairs_needed,
    seeds_to_decide,
    tost_paired,
)
from ..plots import plot_arm_accuracy, plot_confusions, plot_precision_recall, plot_sweep, plot_val_curves
from ..progress import echo
from ..utils import atomic_write_json, atomic_write_text, read_jsonl
from .audit import audit
from .budget import budget_checks, generator_checks, generator_marks
from .costs import arm_costs, render_cost_markdown, summary_line
from .layout import paths
from .predictive import compare_section
from .quality import load_quality, precision_recall_sets, quality_rows, render_quality, render_quality_csv
from .records import clf_fingerprint, command_line, read_record
from .table import render_csv, render_markdown, render_terminal, table_notes, variance_note


def collect_results(cfg: Config) -> tuple[Dict[str, List[Dict[str, Any]]], List[str]]:
    """Finished classifier runs per arm (the config's arms first, then others found on disk, such as
    `train-clf --mix ...` arms), for the config's seeds; and the runs left out: made by another config
    (their fingerprint differs from this config's) or for a seed the config does not list."""
    root = paths(cfg).clf
    names = [a.name for a in cfg.all_arms]
    if root.is_dir():
        names += sorted(d.name for d in root.iterdir() if d.is_dir() and d.name not in names
                        and not d.name.endswith((".partial", ".old")))
    out: Dict[str, List[Dict[str, Any]]] = {}
    stale: List[str] = []
    for name in names:
        runs = []
        for run in sorted((root / name).glob("seed-*")):
            rec = read_record(run)
            if run.name.endswith((".partial", ".old")) or rec is None or not (run / "result.json").is_file():
                continue
            result = json.loads((run / "result.json").read_text())
            arm = arm_from_dict(result["arm_config"])
            # The table counts the config's seeds only, so it can be rebuilt from the config alone.
            if result["seed"] not in cfg.seeds:
                stale.append(f"{name}/{run.name} (seed not in seeds)")
                continue
            if rec.get("fingerprint") != clf_fingerprint(cfg, arm, result["seed"]):
                stale.append(f"{name}/{run.name}")
                continue
            result["_dir"] = str(run)
            runs.append(result)
        if runs:
            out[name] = sorted(runs, key=lambda r: r["seed"])
    return out, stale


def _describe_arm(arm: Dict[str, Any]) -> str:
    if arm["data"] == "mixed":
        mix = arm["mix"]
        if mix.get("p_real") is not None:
            text = f"mixed, p_real={mix['p_real']:g}"
        elif mix.get("balance"):
            text = "real + fakes up to the largest class"
        else:
            text = f"real + {mix['add']} fakes/class"
    else:
        text = arm["data"]
    text += ", oversampled" if arm.get("oversample") else ""
    aug = arm.get("augment") or "none"
    text += {"none": "", "classic": " + classic aug"}.get(aug, f" + {aug}")
    return text + (f" + {arm['label_mix']}" if arm.get("label_mix") else "")


def summarize(cfg: Config, results: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """One row per arm: mean, spread and interval; the paired difference from the baseline arm with its
    interval, paired t, sign and Wilcoxon p-values, the family-corrected p-value; the equivalence tests (TOST)
    against ±compare.equivalence_margin with their (1 - 2 alpha) interval and family-corrected p-value (`tost_*`);
    and a verdict: better, worse, equivalent or inconclusive (with the seeds that would decide).

    The correction's family is the config's arms (its sweep included), always: runs of other arms found on
    disk (`family: "extra"`) are corrected among themselves and never change a configured arm's verdict.
    """
    conf = cfg.compare.confidence
    margin = cfg.compare.equivalence_margin / 100.0  # points to a fraction, as accuracies are
    base_name = cfg.baseline_arm
    base = {r["seed"]: r["test"]["accuracy"] for r in results.get(base_name or "", [])}
    configured = {a.name for a in cfg.all_arms}
    rows = []
    for name, runs in results.items():
        acc = [r["test"]["accuracy"] for r in runs]
        a, f = mean_ci(acc, conf), mean_ci([r["test"]["macro_f1"] for r in runs], conf)
        row: Dict[str, Any] = {
            "arm": name, "data": _describe_arm(runs[0]["arm_config"]), "arm_config": runs[0]["arm_config"],
            "family": "config" if name in configured else "extra",
            "seeds": [r["seed"] for r in runs], "gan_seeds": [r.get("gan_seed") for r in runs],
            "n": len(runs), "acc": acc,
            # An accuracy cannot leave [0, 1]; its t-interval is clipped there.
            "acc_mean": a["mean"], "acc_std": a["std"],
            "acc_ci_low": None if a["ci_low"] is None else max(0.0, a["ci_low"]),
            "acc_ci_high": None if a["ci_high"] is None else min(1.0, a["ci_high"]),
            "f1_mean": f["mean"], "f1_std": f["std"],
            "val_acc_mean": float(np.mean([r["val"]["accuracy"] for r in runs])),
            "is_baseline": name == base_name,
            "generator": runs[0].get("generator") or "", "show_generator": bool(cfg.generators),
        }
        delta: Dict[str, Any] = {k: None for k in ("n", "mean", "std", "ci_low", "ci_high", "t", "df", "p_t", "p_sign",
                                                   "zero_spread", "w", "p_wilcoxon", "wilcoxon_method", "wilcoxon_min_p")}
        tost: Dict[str, Any] = {k: None for k in ("t_lower", "p_lower", "t_upper", "p_upper", "p", "p_sign",
                                                  "confidence", "ci_low", "ci_high", "margin")}
        if base and name != base_name:
            paired = [(r["test"]["accuracy"], base[r["seed"]]) for r in runs if r["seed"] in base]
            if paired:
                delta = paired_test([x for x, _ in paired], [y for _, y in paired], conf)
                tost = tost_paired([x for x, _ in paired], [y for _, y in paired], margin, cfg.compare.alpha)
        row.update({f"delta_{k}": v for k, v in delta.items()})
        row.update({f"tost_{k}": tost[k] for k in ("t_lower", "p_lower", "t_upper", "p_upper", "p", "p_sign",
                                                    "confidence", "ci_low", "ci_high", "margin")})
        # The p-values that enter the corrections: the t-tests', or the sign tests' where t is undefined.
        row["delta_p_family"] = delta["p_t"] if delta["p_t"] is not None else delta["p_sign"]
        row["tost_p_family"] = tost["p"] if tost["p"] is not None else tost["p_sign"]
        rows.append(row)

    # Correct for the number of arms compared with the baseline, within each family.
    adjust = {"holm": holm, "bonferroni": bonferroni, "none": lambda ps: list(ps)}[cfg.compare.correction]
    for family in ("config", "extra"):
        members = [r for r in rows if r["family"] == family]
        for row, p_adj in zip(members, adjust([r["delta_p_family"] for r in members])):
            row["delta_p_adj"] = p_adj
        # Equivalence (TOST) is tested for every arm and corrected over the same arms as the difference.
        for row, p_adj in zip(members, adjust([r["tost_p_family"] for r in members])):
            row["tost_p_adj"] = p_adj
        # What an inconclusive verdict ruled out, and what would decide it: the power of the tests at the family's
        # per-arm level (Holm's first step, alpha / arms).
        m = max(1, sum(1 for r in members if r["delta_p_family"] is not None))
        level = cfg.compare.alpha / (m if cfg.compare.correction != "none" else 1)
        for row in members:
            n, sd = row["delta_n"] or 0, row["delta_std"]
            row["mde"] = min_detectable_difference(sd, n, level, cfg.compare.power) if sd else None
            row["pairs_for_target"] = pairs_needed(cfg.compare.target_difference, sd, level, cfg.compare.power) if sd else None
            row["power_level"] = level
            row["seeds_to_decide"] = seeds_to_decide(sd, margin, level, cfg.compare.power) if sd is not None else None
            if row["is_baseline"]:
                row["verdict"], row["verdict_reason"] = "baseline", ""
            elif not base:
                row["verdict"], row["verdict_reason"] = "no baseline", f"no runs of the baseline arm {base_name!r}"
            else:
                row["verdict"], row["verdict_reason"] = decide(
                    {k[len("delta_"):]: v for k, v in row.items() if k.startswith("delta_")}, row["delta_p_adj"],
                    cfg.compare.alpha, {k[len("tost_"):]: v for k, v in row.items() if k.startswith("tost_")},
                    row["tost_p_adj"], row["seeds_to_decide"])
    return rows


# ----------------------------------------------------------------------------------------------------
# Plots and the sweep.


def sweep_points(cfg: Config, rows: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The swept arms as (value, accuracy) points, with the baseline for reference."""
    if cfg.sweep is None:
        return None
    key = sweep_key(cfg.sweep.key)
    names = {a.name for a in sweep_arms(cfg.sweep)}
    points = [{"arm": r["arm"], "x": sweep_value(r["arm_config"], key), "mean": r["acc_mean"], "ci_low": r["acc_ci_low"],
               "ci_high": r["acc_ci_high"], "values": r["acc"], "n": r["n"], "delta_mean": r["delta_mean"],
               "delta_ci_low": r["delta_ci_low"], "delta_ci_high": r["delta_ci_high"], "verdict": r["verdict"]}
              for r in rows if r["arm"] in names]
    base = next((r for r in rows if r["is_baseline"]), None)
    baseline = None if base is None else {"label": f"{base['arm']} (baseline)", "mean": base["acc_mean"],
                                          "ci_low": base["acc_ci_low"], "ci_high": base["acc_ci_high"]}
    return {"key": key, "augment": cfg.sweep.augment, "points": sorted(points, key=lambda p: p["x"]), "baseline": baseline}


def write_plots(cfg: Config, rows: List[Dict[str, Any]], results: Dict[str, List[Dict[str, Any]]],
                sweep: Optional[Dict[str, Any]], out: Path) -> List[str]:
    """accuracy.png, val_curves.png, confusion.png (and sweep.png) beside the table; returns their names."""
    level = f"{100 * cfg.compare.confidence:g}%"
    written = [plot_arm_accuracy(
        [{"arm": r["arm"], "mean": r["acc_mean"], "ci_low": r["acc_ci_low"], "ci_high": r["acc_ci_high"],
          "values": r["acc"]} for r in rows], out / "accuracy.png", baseline=cfg.baseline_arm,
        title=f"Test accuracy per arm (mean and {level} CI over {max(r['n'] for r in rows)} seeds)")]
    curves = {}
    for name, runs in results.items():
        per_seed = []
        for r in runs:
            f = Path(r["_dir"]) / "metrics.jsonl"
            if f.is_file():
                per_seed.append([(row["step"], row["acc/val"]) for row in read_jsonl(f) if "acc/val" in row])
        if per_seed:
            curves[name] = per_seed
    if curves:
        written.append(plot_val_curves(curves, out / "val_curves.png"))
    classes = list(next(iter(results.values()))[0]["test"].get("per_class_accuracy", {}))
    mats = {name: np.sum([np.asarray(r["test"]["confusion_matrix"]) for r in runs], axis=0)
            for name, runs in results.items() if all("confusion_matrix" in r["test"] for r in runs)}
    if mats and classes:
        written.append(plot_confusions(mats, classes, out / "confusion.png", seeds={a: len(results[a]) for a in mats}))
    if sweep and sweep["points"]:
        label = {"mix.p_real": "p_real: share of real images per batch", "mix.add": "fakes added per class"}[sweep["key"]]
        written.append(plot_sweep(sweep["points"], out / "sweep.png", xlabel=label, baseline=sweep["baseline"],
                                  title=f"Test accuracy against {sweep['key']} (mean, {level} CI, each seed)"))
    return [Path(w).name for w in written]


def _json_safe(obj: Any) -> Any:
    """Strict JSON: an infinite t (identical non-zero differences) is written as its sign in words."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def run_compare(cfg: Config) -> str:
    """Write `<out_dir>/compare/table.{md,csv,json}` (table.md: the full table, its notes and sample quality) and the
    plots; return what the terminal shows (`render_terminal`): the compact table and where the full one is."""
    p = paths(cfg)
    results, stale = collect_results(cfg)
    if not results and stale:
        raise StageError(f"every classifier run under '{p.clf}' was made by another config ({', '.join(stale[:3])}"
                         f"{' ...' if len(stale) > 3 else ''}); rerun `ganaug train-clf --force` or restore the config")
    if not results:
        raise StageError(f"no finished classifier runs under '{p.clf}'; run `{command_line(cfg, 'ganaug train-clf')}` first")
    every = summarize(cfg, results)
    evaluations = load_quality(cfg)
    # Budgets: each arm's seeds, and each generator an arm draws fakes from, still improving at their end?
    budgets = budget_checks(results)
    uses_fakes = any(arm_from_dict(rs[0]["arm_config"]).uses_synthetic for rs in results.values())
    generators = generator_checks(cfg) if uses_fakes or evaluations else {}
    marks = generator_marks(cfg, results, generators)
    for row in every:
        b, g = budgets.get(row["arm"]), marks.get(row["arm"]) or {}
        row["budget_flag"] = b if b is not None and b["flag"] else None
        row["budget_unchecked"] = b["unchecked"] if b is not None else []
        row["generator_flag"], row["generator_unchecked"] = g.get("flag"), g.get("unchecked") or []
    rows = [r for r in every if r["family"] == "config"]
    extra_rows = [r for r in every if r["family"] == "extra"]
    counted = {r["arm"]: results[r["arm"]] for r in rows} or results
    checks = audit(cfg, results) if cfg.compare.audit else []
    sweep = sweep_points(cfg, rows)
    notes = table_notes(cfg, every, counted, stale)
    quality = quality_rows(cfg, evaluations, results, improving=generators)
    out: Path = p.compare
    # Which quality score predicts the gain, across three or more generators (predictive.py).
    predictive, predictive_md, predictive_plot = compare_section(cfg, rows, quality, out)
    md = render_markdown(cfg, rows, notes, checks, extra_rows,
                         render_quality(quality, evaluations) + ([""] + predictive_md if predictive_md else []))
    plots = write_plots(cfg, rows or extra_rows, counted, sweep, out) + predictive_plot
    if evaluations:
        plots.append(plot_precision_recall(precision_recall_sets(evaluations), out / "precision_recall.png").name)
    cost = arm_costs(cfg, results, every)  # what each arm cost, from its cells' records (costs.py)
    atomic_write_text(out / "table.md", f"# {cfg.name}\n\n" + md + render_cost_markdown(cost))
    atomic_write_text(out / "table.csv", render_csv(rows))
    if evaluations:
        atomic_write_text(out / "quality.csv", render_quality_csv(evaluations))
    atomic_write_json(out / "table.json", _json_safe({
        "name": cfg.name, "baseline": cfg.baseline_arm, "confidence": cfg.compare.confidence,
        "alpha": cfg.compare.alpha, "correction": cfg.compare.correction,
        "equivalence_margin_points": cfg.compare.equivalence_margin, "variance": variance_note(cfg, results),
        "rows": rows, "extra_rows": extra_rows, "notes": notes, "sweep": sweep, "audit": checks,
        "quality": quality, "predictive": predictive, "evaluations": evaluations, "generator_budget": list(generators.values()),
        "violations": [c for c in checks if c["status"] == "violation"], "left_out": stale, "plots": plots, "cost": cost,
        "runs": [{k: v for k, v in r.items() if k != "_dir"} for rs in results.values() for r in rs],
    }))
    if any(c["status"] == "violation" for c in checks):
        echo("compare: the protocol audit found violations; they are listed under the table")
    said = summary_line(cost)  # measured, not computed: on stderr, so the table on stdout is the same every run
    if said:
        echo("\n".join(textwrap.wrap(said, 100, subsequent_indent="  ", break_on_hyphens=False)))
    return render_terminal(cfg, rows, notes, checks, variance_note(cfg, results), out / "table.md", extra_rows, quality)
