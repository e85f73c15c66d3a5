"""Stage `compare`: the accuracy table across arms and seeds, as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..config import Config, arm_from_dict
from ..errors import StageError
from ..utils import atomic_write_json, atomic_write_text
from .common import clf_fingerprint, paths, read_record


def collect_results(cfg: Config) -> tuple[Dict[str, List[Dict[str, Any]]], List[str]]:
    """Finished classifier runs per arm (the config's arms first, then others found on disk), and the
    runs left out because another config made them (their fingerprint differs from this config's)."""
    root = paths(cfg).clf
    names = [a.name for a in cfg.arms]
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
            if rec.get("fingerprint") != clf_fingerprint(cfg, arm, result["seed"]):
                stale.append(f"{name}/{run.name}")
                continue
            runs.append(result)
        if runs:
            out[name] = sorted(runs, key=lambda r: r["seed"])
    return out, stale


def _mean_std(xs: List[float]) -> tuple[float, Optional[float]]:
    a = np.asarray(xs, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else None)


def _describe_arm(arm: Dict[str, Any]) -> str:
    if arm["data"] == "mixed":
        mix = arm["mix"]
        text = f"mixed, p_real={mix['p_real']:g}" if mix.get("p_real") is not None else f"real + {mix['add']} fakes/class"
    else:
        text = arm["data"]
    return text + (" + classic aug" if arm.get("augment") == "classic" else "")


def summarize(cfg: Config, results: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """One row per arm: means, spreads and the paired difference from the baseline arm."""
    base_name = cfg.baseline_arm
    base = {r["seed"]: r["test"]["accuracy"] for r in results.get(base_name or "", [])}
    rows = []
    for name, runs in results.items():
        acc = [r["test"]["accuracy"] for r in runs]
        f1 = [r["test"]["macro_f1"] for r in runs]
        acc_m, acc_s = _mean_std(acc)
        f1_m, f1_s = _mean_std(f1)
        row: Dict[str, Any] = {
            "arm": name, "data": _describe_arm(runs[0]["arm_config"]), "seeds": [r["seed"] for r in runs],
            "n": len(runs), "acc_mean": acc_m, "acc_std": acc_s, "f1_mean": f1_m, "f1_std": f1_s,
            "val_acc_mean": _mean_std([r["val"]["accuracy"] for r in runs])[0],
            "delta_mean": None, "delta_std": None, "delta_n": 0,
        }
        if base and name != base_name:
            diffs = [r["test"]["accuracy"] - base[r["seed"]] for r in runs if r["seed"] in base]
            if diffs:
                row["delta_mean"], row["delta_std"] = _mean_std(diffs)
                row["delta_n"] = len(diffs)
        rows.append(row)
    return rows


def _pct(m: Optional[float], s: Optional[float], signed: bool = False) -> str:
    if m is None:
        return "-"
    text = f"{100 * m:+.2f}" if signed else f"{100 * m:.2f}"
    return text + (f" ± {100 * s:.2f}" if s is not None else "")


def render_markdown(cfg: Config, rows: List[Dict[str, Any]], results: Dict[str, List[Dict[str, Any]]],
                    stale: List[str]) -> str:
    base = cfg.baseline_arm
    head = ["arm", "training data", "seeds", "test acc % (mean ± std)", "macro-F1 %", f"Δ acc vs {base} (paired)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        delta = "baseline" if r["arm"] == base else _pct(r["delta_mean"], r["delta_std"], signed=True)
        lines.append(f"| {r['arm']} | {r['data']} | {r['n']} | {_pct(r['acc_mean'], r['acc_std'])} | "
                     f"{_pct(r['f1_mean'], r['f1_std'])} | {delta} |")
    any_run = next(iter(results.values()))[0]
    lines += [
        "",
        f"Test set: {any_run['test']['n']} real images, scored once per run; model selection on "
        f"{any_run['val']['n']} real validation images; every run {any_run['budget']['steps']} steps of "
        f"{any_run['budget']['batch_size']} images. Spread is over classifier seeds (one GAN).",
    ]
    if stale:
        lines.append(f"Left out, made by another config: {', '.join(stale[:8])}{' ...' if len(stale) > 8 else ''}.")
    return "\n".join(lines) + "\n"


def render_csv(rows: List[Dict[str, Any]]) -> str:
    buf = io.StringIO()
    cols = ["arm", "data", "n", "acc_mean", "acc_std", "f1_mean", "f1_std", "delta_mean", "delta_std", "delta_n",
            "val_acc_mean"]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r[k] is None else r[k]) for k in cols})
    return buf.getvalue()


def run_compare(cfg: Config) -> str:
    """Write `<out_dir>/compare/table.{md,csv,json}` and return the Markdown table."""
    p = paths(cfg)
    results, stale = collect_results(cfg)
    if not results and stale:
        raise StageError(f"every classifier run under '{p.clf}' was made by another config ({', '.join(stale[:3])}"
                         f"{' ...' if len(stale) > 3 else ''}); rerun `ganaug train-clf --force` or restore the config")
    if not results:
        raise StageError(f"no finished classifier runs under '{p.clf}'; run `ganaug train-clf --config ...` first")
    rows = summarize(cfg, results)
    md = render_markdown(cfg, rows, results, stale)
    out: Path = p.compare
    atomic_write_text(out / "table.md", f"# {cfg.name}\n\n" + md)
    atomic_write_text(out / "table.csv", render_csv(rows))
    atomic_write_json(out / "table.json", {"name": cfg.name, "baseline": cfg.baseline_arm, "rows": rows, "left_out": stale})
    return md
