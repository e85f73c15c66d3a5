"""What each arm cost: the cost every cell recorded (`cost.measure`, kept in its `stage.json`), charged to the arms.

An arm is charged its own classifier runs and an equal share of each upstream cell it needs: the split (shared by
every arm) and, for an arm that uses fakes, the train-gan, sample and evaluate cells of the generator replicate(s)
its seeds draw from and the domain features cell, each divided among the arms that use it. Every cell is charged
once: the arms' costs and what no arm uses add up to the cells' total. The costs come from the run folder's records,
so they cover cells made by earlier invocations and are the same whenever `compare` is run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..config import Config, arm_from_dict
from ..cost import ADDITIVE, PEAKS
from ..utils import atomic_write_json
from .layout import STAGE_FILE, paths
from .records import read_record

SECTION = "## What it cost"  # the heading of table.md's cost section, its last
SAME_SECONDS = 3.0  # an arm within this many wall seconds of the baseline costs the same: no extra time


def record_cost(folder: Path, spent: Dict[str, Any]) -> None:
    """Add what a cell cost to the stage record it has just written (and to a classifier run's result.json)."""
    rec = read_record(folder)
    if rec is None:
        return
    atomic_write_json(folder / STAGE_FILE, {**rec, "cost": spent})
    result = folder / "result.json"
    if rec.get("stage") == "classifier" and result.is_file():
        atomic_write_json(result, {**json.loads(result.read_text()), "cost": spent})


# ----------------------------------------------------------------------------------------------------
# Charging the cells to the arms.


def _cell(folder: Path, kind: str, root: Any) -> Optional[Dict[str, Any]]:
    """A finished cell and its cost; a record made before costs were recorded (or by a stage command run by hand)
    gives its wall seconds alone, from the record's `seconds`."""
    rec = read_record(folder)
    if rec is None:
        return None
    cost = rec.get("cost") or {"wall_seconds": float(rec.get("seconds") or 0.0), "unmeasured": True}
    return {"id": root.relative(folder), "kind": kind, "cost": cost, "users": []}


def _add(acc: Dict[str, Any], cost: Dict[str, Any], share: float) -> None:
    for k in ADDITIVE:
        if k == "wall_seconds" or cost.get(k) is not None:
            acc[k] += share * (cost.get(k) or 0.0)
        elif cost.get("unmeasured"):
            acc["unknown"].add(k)
    for k in PEAKS:
        if cost.get(k) is not None:
            acc[k] = max(acc[k] or 0.0, cost[k])
    acc["unmeasured"] += bool(cost.get("unmeasured"))
    acc["process_peak"] |= cost.get("peak_rss_of") == "process"


def _empty() -> Dict[str, Any]:
    return {**{k: 0.0 for k in ADDITIVE}, **{k: None for k in PEAKS}, "unknown": set(), "unmeasured": 0,
            "process_peak": False}


def _finish(acc: Dict[str, Any]) -> Dict[str, Any]:
    out = {k: (None if k in acc["unknown"] else round(acc[k], 3)) for k in ADDITIVE}
    return {**out, **{k: acc[k] for k in PEAKS}, "unmeasured_cells": acc["unmeasured"],
            "process_peak": acc["process_peak"]}


def arm_costs(cfg: Config, results: Dict[str, List[Dict[str, Any]]], rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Each arm's cost (its runs and its shares of the upstream cells), the cells no arm uses, and the total; with
    the extra minutes over the baseline and the points gained per extra hour (from the rows' paired Δ)."""
    p = paths(cfg)
    upstream: Dict[str, Dict[str, Any]] = {}

    def up(folder: Path, kind: str) -> Optional[str]:
        c = _cell(folder, kind, p)
        if c is None:
            return None
        upstream.setdefault(c["id"], c)
        return c["id"]

    split_id = up(p.split, "split")
    features_id = up(p.features, "features")
    rep_cells: Dict[Any, List[str]] = {}
    for rep in cfg.replicates:
        got = [up(f(rep), kind) for f, kind in ((p.gan, "train-gan"), (p.samples, "sample"), (p.evaluate, "evaluate"))]
        rep_cells[rep] = [c for c in got if c is not None]

    own: Dict[str, List[Dict[str, Any]]] = {}
    for name, runs in results.items():
        own[name] = []
        for r in runs:
            c = _cell(Path(r["_dir"]), "train-clf", p)
            if c is not None:
                own[name].append(c)
            needs = [split_id]
            arm = arm_from_dict(r["arm_config"])
            if arm.uses_synthetic:
                needs += rep_cells.get(cfg.rep_of(arm, r["seed"]), []) + [features_id]
            for cid in needs:
                if cid is not None and name not in upstream[cid]["users"]:
                    upstream[cid]["users"].append(name)

    arms: List[Dict[str, Any]] = []
    for name in results:
        acc = _empty()
        for c in own[name]:
            _add(acc, c["cost"], 1.0)
        shared: Dict[int, List[str]] = {}
        for c in upstream.values():
            if name in c["users"]:
                _add(acc, c["cost"], 1.0 / len(c["users"]))
                shared.setdefault(len(c["users"]), []).append(c["kind"])
        arms.append({"arm": name, "n": len(results[name]), "runs": len(own[name]), **_finish(acc),
                     "shared": [{"by": k, "kinds": kinds} for k, kinds in sorted(shared.items(), reverse=True)]})

    unused = _empty()
    unused_ids = [c["id"] for c in upstream.values() if not c["users"]]
    for c in upstream.values():
        if not c["users"]:
            _add(unused, c["cost"], 1.0)
    every = _empty()
    for c in list(upstream.values()) + [c for cs in own.values() for c in cs]:
        _add(every, c["cost"], 1.0)
    cells = len(upstream) + sum(len(cs) for cs in own.values())
    out = {"arms": arms, "unassigned": {"cells": unused_ids, **_finish(unused)},
           "total": {"cells": cells, **_finish(every)}, "baseline": None, "upstream_elsewhere": bool(cfg.upstream_dir)}
    _gains(cfg, out, rows)
    return out


def _gains(cfg: Config, out: Dict[str, Any], rows: List[Dict[str, Any]]) -> None:
    """Extra wall seconds over the baseline (its cost scaled to the arm's number of seeds), Δ in points, and points
    per extra hour; then the two arms the summary line names."""
    by_row = {r["arm"]: r for r in rows}
    base = next((a for a in out["arms"] if a["arm"] == cfg.baseline_arm), None)
    out["baseline"] = base["arm"] if base else None
    for a in out["arms"]:
        row = by_row.get(a["arm"], {})
        arm = arm_from_dict(row["arm_config"]) if row.get("arm_config") else None
        a["uses_fakes"] = arm is not None and arm.uses_synthetic
        a["classic"] = _is_classic(row.get("arm_config"))
        a["augmented"] = arm is not None and arm.augmented
        a["extra_seconds"] = a["delta_points"] = a["points_per_extra_hour"] = None
        if base is None or a is base:
            continue
        a["extra_seconds"] = round(a["wall_seconds"] - base["wall_seconds"] * a["n"] / max(1, base["n"]), 3)
        if row.get("delta_mean") is not None:
            a["delta_points"] = 100 * row["delta_mean"]
            if a["extra_seconds"] >= SAME_SECONDS:
                a["points_per_extra_hour"] = a["delta_points"] / (a["extra_seconds"] / 3600)
    # The fakes on their own, set against classic augmentation: fake-using arms without augmentation where there are
    # any (an arm with both would credit the fakes with the augmentation's gain).
    fakes = [a for a in out["arms"] if a["uses_fakes"] and a["delta_points"] is not None]
    plain = [a for a in fakes if not a["augmented"]]
    out["fakes_plain"] = bool(plain)
    fakes = plain or fakes
    out["best_fakes"] = max(fakes, key=lambda a: a["delta_points"])["arm"] if fakes else None
    out["fake_arms"] = len(fakes)
    out["classic"] = next((a["arm"] for a in out["arms"] if a["classic"] and a["delta_points"] is not None), None)


def _is_classic(arm: Optional[Dict[str, Any]]) -> bool:
    """The real images with classic augmentation and nothing else."""
    return bool(arm) and arm["data"] == "real" and arm.get("augment") == "classic" and not arm.get("label_mix") \
        and not arm.get("oversample")


# ----------------------------------------------------------------------------------------------------
# As text: the summary line, the Markdown section, the HTML table.


def _minutes(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    m = seconds / 60
    return f"{m:.0f}" if abs(m) >= 10 else f"{m:.1f}" if abs(m) >= 0.1 else f"{m:.2f}"


def _for(seconds: float) -> str:
    """'for 31 min', 'for 0 extra minutes', 'for 2.5 min less'."""
    if abs(seconds) < SAME_SECONDS:
        return "for 0 extra minutes"
    return f"for {_minutes(seconds)} min" if seconds > 0 else f"for {_minutes(-seconds)} min less"


def _memory(mib: Optional[float]) -> str:
    if mib is None:
        return "-"
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def _shared_by(a: Dict[str, Any]) -> str:
    """'2 runs; split shared by 5 arms; train-gan, sample, evaluate, features shared by 3 arms'."""
    parts = [f"{a['runs']} run{'s' if a['runs'] != 1 else ''}"]
    for s in a["shared"]:
        counts: Dict[str, int] = {}
        for kind in s["kinds"]:
            counts[kind] = counts.get(kind, 0) + 1
        kinds = ", ".join(k + (f" x{n}" if n > 1 else "") for k, n in counts.items())
        parts.append(f"{kinds} shared by {s['by']} arms" if s["by"] > 1 else f"{kinds} (its own)")
    return "; ".join(parts)


def summary_line(cost: Dict[str, Any]) -> Optional[str]:
    """'fakes (mixed-0.5): +0.40 points for 31 min; classic augmentation (real-aug): +2.50 points for 0 extra
    minutes', against the baseline's cost; None without a baseline or an arm to name."""
    arms = {a["arm"]: a for a in cost["arms"]}
    said = []
    if cost.get("best_fakes"):
        a = arms[cost["best_fakes"]]
        which = a["arm"] + (f", best of {cost['fake_arms']} fake-using arms"
                            + (" without augmentation" if cost.get("fakes_plain") else "") if cost["fake_arms"] > 1 else "")
        by = max((s["by"] for s in a["shared"] if "train-gan" in s["kinds"]), default=1)
        which += f", generator shared by {by}" if by > 1 else ""
        said.append(f"fakes ({which}): {a['delta_points']:+.2f} points {_for(a['extra_seconds'])}")
    if cost.get("classic"):
        a = arms[cost["classic"]]
        said.append(f"classic augmentation ({a['arm']}): {a['delta_points']:+.2f} points {_for(a['extra_seconds'])}")
    if not said:
        return None
    return f"Cost vs {cost['baseline']} (wall minutes, all seeds): " + "; ".join(said) + "."


def _head(cost: Dict[str, Any]) -> Tuple[List[str], bool]:
    gpu = any(a["gpu_seconds"] for a in cost["arms"])
    base = cost["baseline"] or "baseline"
    return (["arm", "wall min", "CPU min"] + (["GPU min", "peak GPU memory"] if gpu else [])
            + ["peak memory", f"extra min vs {base}", "Δ points", "points per extra hour", "charged"]), gpu


def _per_hour(a: Dict[str, Any]) -> str:
    pph, more = a["points_per_extra_hour"], a["extra_seconds"]
    if pph is not None:
        return f"{pph:+,.0f}" if abs(pph) >= 100 else f"{pph:+.2f}"
    return "no extra time" if more is not None and more < SAME_SECONDS else "-"


def _cells(a: Dict[str, Any], gpu: bool, base: Optional[str]) -> List[str]:
    if a["arm"] == base:
        extra = ["baseline", "baseline", "-"]
    else:
        more = a["extra_seconds"]
        extra = [("+" if (more or 0) > 0 else "") + _minutes(more),
                 "-" if a["delta_points"] is None else f"{a['delta_points']:+.2f}", _per_hour(a)]
    return ([a["arm"], _minutes(a["wall_seconds"]), _minutes(a["cpu_seconds"])]
            + ([_minutes(a["gpu_seconds"]), _memory(a["peak_gpu_mib"])] if gpu else [])
            + [_memory(a["peak_rss_mib"])] + extra + [_shared_by(a)])


def cost_notes(cost: Dict[str, Any]) -> List[str]:
    """What the cost table's numbers are, then what it leaves out or could not measure."""
    base = cost["baseline"]
    t = cost["total"]
    notes = [
        "Each arm is charged its classifier runs (all its seeds) and an equal share of each upstream cell it needs: the "
        "split (shared by every arm) and, for an arm that uses fakes, the train-gan, sample and evaluate cells of the "
        "generator replicate(s) its seeds draw from and the domain features cell, each divided among the arms that "
        "use it. Wall minutes are each cell's own, summed (cells that ran side by side both count); CPU minutes include "
        "the cells' child processes; peak memory is the largest peak resident memory of any cell the arm needs. A cell "
        "on a GPU held it for its wall time: GPU minutes are occupancy, not kernel time."
        + (f" Extra minutes: an arm's wall minutes minus {base}'s (scaled to the arm's number of seeds); points per "
           "extra hour: Δ (the paired mean difference, in points) over those extra hours (none for an arm within "
           f"{SAME_SECONDS:g} s of the baseline's cost, or cheaper)." if base else ""),
        f"All {t['cells']} cells together: {_minutes(t['wall_seconds'])} wall min, {_minutes(t['cpu_seconds'])} CPU min"
        + (f", {_minutes(t['gpu_seconds'])} GPU min" if t["gpu_seconds"] else "")
        + " (the arms' rows" + (" and the cells no arm uses" if cost["unassigned"]["cells"] else "") + " add up to it).",
    ]
    u = cost["unassigned"]
    if u["cells"]:
        notes.append(f"Charged to no arm here ({_minutes(u['wall_seconds'])} wall min): {', '.join(u['cells'])}, which "
                     "no compared arm's runs use.")
    if t["unmeasured_cells"]:
        notes.append(f"{t['unmeasured_cells']} cell(s) were made before ganaug recorded costs, or by a stage command run "
                     "outside `ganaug run`: their wall minutes are their records' seconds; their CPU time and memory are "
                     "unknown (-).")
    if t["process_peak"]:
        notes.append("Some peaks are a whole process's (its memory's high-water mark could not be reset per cell).")
    if cost["upstream_elsewhere"]:
        notes.append("The split and the generators are shared with the sweep's other values: each value's table "
                     "charges them in full.")
    return notes


def render_cost_markdown(cost: Dict[str, Any]) -> str:
    """table.md's last section: the cost table, the summary line and what the numbers are."""
    head, gpu = _head(cost)
    lines = ["", SECTION, "", "| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(_cells(a, gpu, cost["baseline"])) + " |" for a in cost["arms"]]
    line = summary_line(cost)
    return "\n".join(lines + [""] + [x for n in ([line] if line else []) + cost_notes(cost) for x in (n, "")])


def cost_html(cost: Optional[Dict[str, Any]]) -> List[str]:
    """The report's cost section: the same table and notes."""
    if not cost or not cost.get("arms"):
        return []
    head, gpu = _head(cost)
    out = ['<div class="scroll"><table><thead><tr>'
           + "".join(f'<th{" class=wrap" if h == "charged" else ""}>{html.escape(h)}</th>' for h in head)
           + "</tr></thead><tbody>"]
    for a in cost["arms"]:
        cells = _cells(a, gpu, cost["baseline"])
        out.append(f'<tr class="{"baseline" if a["arm"] == cost["baseline"] else ""}">'
                   + "".join(f'<td{" class=wrap" if i == len(cells) - 1 else ""}>{html.escape(c)}</td>'
                             for i, c in enumerate(cells)) + "</tr>")
    out.append("</tbody></table></div>")
    line = summary_line(cost)
    return (["<h2>What it cost</h2>", "\n".join(out)] + ([f"<p><b>{html.escape(line)}</b></p>"] if line else [])
            + [f"<p>{html.escape(n)}</p>" for n in cost_notes(cost)])
