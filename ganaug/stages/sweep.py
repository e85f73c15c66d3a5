"""Sweeps over an experiment key (classifier.steps): one sub-experiment per value, then a summary across them.

Each value is a whole experiment of its own in `<out_dir>/sweep/<key>=<value>/`, with every arm of the
config, its own table, correction family, budget check and audit: a verdict at one budget never borrows
strength from another. A key that cannot change the split, the GAN or the samples shares the parent's.
The parent's `compare/` holds the summary: accuracy against the swept value, per arm, with bands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from ..config import EXPERIMENT_SWEEP_KEYS, Config, sweep_experiments, sweep_key
from ..plots import plot_sweep_arms
from ..utils import atomic_write_json, atomic_write_text
from .compare import _json_safe, run_compare
from .exchange import sweep_section as exchange_section
from .layout import paths
from .predictive import sweep_summary_section
from .table import _ci, _correction, _p, audit_lines, pct


def experiments(cfg: Config) -> List[Config]:
    """The configs to train classifiers for: the config itself, or one per value of its experiment sweep."""
    if not cfg.experiment_sweep:
        return [cfg]
    return [sub for _, sub in sweep_experiments(cfg)]


def compare_all(cfg: Config) -> str:
    """`compare` for any config: its own table, or each sub-experiment's and the summary across them."""
    return run_sweep_compare(cfg) if cfg.experiment_sweep else run_compare(cfg)


def run_sweep_compare(cfg: Config) -> str:
    """Compare every sub-experiment, then write the summary to `<out_dir>/compare/` and return it."""
    assert cfg.sweep is not None
    key = sweep_key(cfg.sweep.key)
    level = f"{100 * cfg.compare.confidence:g}%"
    experiments_: List[Dict[str, Any]] = []
    series: Dict[str, List[Dict[str, Any]]] = {}
    head = [key, "arm", "n", "test acc % (mean ± std)", f"{level} CI", f"Δ acc vs {cfg.baseline_arm} (paired)",
            f"{level} CI of Δ", f"p ({_correction(cfg)})", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    audits: List[str] = []
    for value, sub in sweep_experiments(cfg):
        run_compare(sub)
        table = json.loads((paths(sub).compare / "table.json").read_text())
        experiments_.append({"value": value, "out_dir": sub.out_dir, "name": sub.name, "rows": table["rows"],
                             "notes": table["notes"], "audit": table["audit"], "baseline": table["baseline"]})
        for r in table["rows"]:
            series.setdefault(r["arm"], []).append({"x": value, "mean": r["acc_mean"], "ci_low": r["acc_ci_low"],
                                                    "ci_high": r["acc_ci_high"], "values": r["acc"], "n": r["n"]})
            flag = " (budget?)" if r.get("budget_flag") else ""
            delta = (["baseline", "", "", "baseline"] if r["is_baseline"] else
                     [pct(r["delta_mean"], r["delta_std"], signed=True), _ci(r["delta_ci_low"], r["delta_ci_high"], True),
                      _p(r["delta_p_adj"]), r["verdict"] + flag])
            lines.append("| " + " | ".join([f"{value:g}", r["arm"], str(r["n"]), pct(r["acc_mean"], r["acc_std"]),
                                            _ci(r["acc_ci_low"], r["acc_ci_high"])] + delta) + " |")
        said = audit_lines(table["audit"])
        if said and not said[0].startswith("Protocol audit: all"):
            audits += [f"{key}={value:g}: {line}" for line in said[1:]]

    out = paths(cfg).compare
    label = EXPERIMENT_SWEEP_KEYS[key]["label"]
    plot = plot_sweep_arms(series, out / "sweep.png", xlabel=label,
                           title=f"Test accuracy against {key} (mean, {level} CI, each seed)")
    n_checks = sum(len(e["audit"]) for e in experiments_)
    notes = [f"Each value of {key} is an experiment of its own (`{Path(cfg.out_dir) / 'sweep'}/{key}=<value>/`): "
             f"every arm against the baseline {cfg.baseline_arm} at that value, paired over seeds, "
             f"{_correction(cfg)} correction over that value's arms, its own budget check and audit; "
             "each sub-experiment's table.md has the full columns and notes.",
             f"Protocol audit: all {n_checks} checks passed in the {len(experiments_)} sub-experiments." if not audits
             else f"Protocol audit: {len(audits)} finding(s) in the sub-experiments:"] + audits
    # Which quality score predicts the gain, across a generator key's values (predictive.py).
    predictive, predictive_md, predictive_plot = sweep_summary_section(cfg, out)
    # What each arm is worth in real images, on a learning curve (exchange.py).
    exchange, exchange_md, exchange_plot = exchange_section(cfg, experiments_, out)
    md = "\n".join(lines + [""] + notes + ([""] + predictive_md if predictive_md else [])
                   + ([""] + exchange_md if exchange_md else [])) + "\n"
    atomic_write_text(out / "table.md", f"# {cfg.name}: sweep over {key}\n\n" + md)
    atomic_write_json(out / "table.json", _json_safe({
        "name": cfg.name, "sweep": {"key": key, "values": [e["value"] for e in experiments_]}, "baseline": cfg.baseline_arm,
        "experiments": experiments_, "series": series, "notes": notes, "plots": [plot.name] + predictive_plot + exchange_plot,
        "predictive": predictive, "exchange": exchange,
    }))
    return md
