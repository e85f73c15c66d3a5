"""The comparison table as text: Markdown (table.md), the terminal's compact table and CSV, with the notes that say
what its numbers are (protocol, variance, tests, budget checks, what was left out) and the protocol audit's lines."""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..config import Config, Rep
from ..metrics.stats import MIN_PAIRS, equivalent_label, min_pairs_for
from ..provenance import machines_note
from .audit import SEVERITY
from .budget import BUDGET_ALPHA, BUDGET_TAIL, MIN_SEEDS_FOR_T
from .quality import rep_tag
from .records import read_record


def variance_note(cfg: Config, results: Dict[str, List[Dict[str, Any]]]) -> str:
    """Which sources of variance the spread includes."""
    n = max(len(r) for r in results.values())
    if not cfg.gan_seeds or not any(r.get("gan_seed") is not None for rs in results.values() for r in rs):
        return f"Spread is over {n} classifier seeds with one GAN: GAN-to-GAN variance is not included (set gan_seeds)."
    k = len(cfg.gan_replicates)
    if k == len(cfg.seeds):
        return (f"Spread is over {n} replicates, each with its own classifier seed and its own independently trained "
                "GAN: it includes GAN-to-GAN variance.")
    return (f"Spread is over {n} classifier seeds sharing {k} independently trained GANs (replicate i uses "
            f"gan_seeds[i mod {k}]): it includes part of the GAN-to-GAN variance.")


def pct(m: Optional[float], s: Optional[float] = None, signed: bool = False) -> str:
    if m is None:
        return "-"
    text = f"{100 * m:+.2f}" if signed else f"{100 * m:.2f}"
    return text + (f" ± {100 * s:.2f}" if s is not None else "")


def _ci(lo: Optional[float], hi: Optional[float], signed: bool = False) -> str:
    if lo is None or hi is None:
        return "-"
    fmt = "{:+.2f}" if signed else "{:.2f}"
    return f"[{fmt.format(100 * lo)}, {fmt.format(100 * hi)}]"


def _p(p: Optional[float]) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _correction(cfg: Config) -> str:
    return {"holm": "Holm", "bonferroni": "Bonferroni", "none": "uncorrected"}[cfg.compare.correction]


def table_head(cfg: Config) -> List[str]:
    level = f"{100 * cfg.compare.confidence:g}%"
    return ["arm"] + (["generator"] if cfg.generators else []) + [
        "training data", "n", "test acc % (mean ± std)", f"{level} CI", "macro-F1 %",
        f"Δ acc vs {cfg.baseline_arm} (paired)", f"{level} CI of Δ", "p (t)", "p (Wilcoxon)",
        f"p ({_correction(cfg)})", f"{100 * (1 - 2 * cfg.compare.alpha):g}% CI of Δ (TOST)",
        f"p equiv. ({_correction(cfg)})", "verdict"]


def table_cells(row: Dict[str, Any]) -> List[str]:
    """One row of the table as text, the same in Markdown and HTML."""
    if row["is_baseline"]:
        delta = ["baseline", "", "", "", "", "", "", "baseline"]
    else:
        flag = (" (budget?)" if row.get("budget_flag") else "") + (" (generator budget?)" if row.get("generator_flag") else "")
        delta = [pct(row["delta_mean"], row["delta_std"], signed=True), _ci(row["delta_ci_low"], row["delta_ci_high"], True),
                 _p(row["delta_p_t"]), _p(row["delta_p_wilcoxon"]), _p(row["delta_p_adj"]),
                 _ci(row.get("tost_ci_low"), row.get("tost_ci_high"), True), _p(row.get("tost_p_adj")),
                 row["verdict"] + flag]
    generator = [row["generator"] or "-"] if row.get("show_generator") else []
    return [row["arm"]] + generator + [row["data"], str(row["n"]), pct(row["acc_mean"], row["acc_std"]),
            _ci(row["acc_ci_low"], row["acc_ci_high"]), pct(row["f1_mean"], row["f1_std"])] + delta


def _arms(n: int) -> str:
    return f"{n} arm" if n == 1 else f"{n} arms"


def _points(x: float) -> str:
    """'1 point', '0.5 points'."""
    return f"{x:.3g} point{'s' if x != 1 else ''}"


def verdict_note(cfg: Config, tested: int) -> str:
    """What the four verdicts mean, the equivalence margin and why, and the correction over `tested` arms."""
    c, alpha, margin = cfg.compare, cfg.compare.alpha, cfg.compare.equivalence_margin
    default = type(c).model_fields["equivalence_margin"].default
    why = ("the default: 2-3 times the seed-to-seed spread of the paired differences in the default experiment "
           "(0.3-0.5 points), so a few seeds can show it, and below the few points the field reports for GAN "
           "augmentation on small data" if margin == default else
           f"set by this config (the default, {_points(default)}, is 2-3 times the default experiment's seed-to-seed "
           "spread and below the gains the field reports)")
    corrected = ("without correction for the number of arms" if c.correction == "none" else
                 f"after {_correction(cfg)} correction over {_arms(tested)} (the config's)")
    return (f"Verdicts: better or worse when the paired t-test is significant {corrected}, at alpha = {alpha:g}; "
            f"otherwise {equivalent_label(margin / 100)} when two one-sided paired t-tests (TOST) put Δ inside "
            f"±{_points(margin)}, after the same correction (p equiv.; "
            f"uncorrected, that is the {100 * (1 - 2 * alpha):g}% CI of Δ (TOST) lying inside ±{margin:.3g}), else "
            f"inconclusive: too few seeds for the spread to tell either, with how many would decide. The margin "
            f"(compare.equivalence_margin, the smallest effect of interest) is {_points(margin)}, {why}.")


def _inconclusive_said(cfg: Config, r: Dict[str, Any]) -> str:
    """One inconclusive arm: the seeds that would show equivalence if there were no difference, and what it could
    have detected (the minimal detectable difference) with the seeds it has."""
    n, need, margin = r["delta_n"], r.get("seeds_to_decide"), _points(cfg.compare.equivalence_margin)
    if r.get("delta_zero_spread"):
        said = f"{r['arm']}: the same result on all {n} seeds"
        return said + (f"; {need} would show equivalence within ±{margin} by the exact sign tests" if need else "")
    if need is None:
        said = f"{r['arm']}: more than 10,000 seeds would be needed to show equivalence within ±{margin}"
    elif need > n:
        said = f"{r['arm']}: {need} seeds would show equivalence within ±{margin} if the true Δ were 0"
    else:
        near = "beyond" if abs(r["delta_mean"]) >= cfg.compare.equivalence_margin / 100 else "too near"
        said = (f"{r['arm']}: its {n} seeds would show equivalence within ±{margin} if the true Δ were 0, but its Δ of "
                f"{100 * r['delta_mean']:+.2f} points is {near} the margin")
    target = 100 * cfg.compare.target_difference
    if r.get("mde") is not None:
        said += f"; it could have detected |Δ| ≥ {100 * r['mde']:.2f} points with its {n} seeds"
        said += f", and {_points(target)} would need {r['pairs_for_target']} seeds" if r.get("pairs_for_target") else ""
    return said


def table_notes(cfg: Config, rows: List[Dict[str, Any]], results: Dict[str, List[Dict[str, Any]]],
                stale: List[str]) -> List[str]:
    """What the table's numbers are: the protocol, the variance included, the tests, the budget checks (from the
    rows' budget_flag, budget_unchecked, generator_flag and generator_unchecked), what was left out."""
    any_run = next(iter(results.values()))[0]
    alpha = cfg.compare.alpha
    configured = [r for r in rows if r["family"] == "config"]
    notes = [
        f"Test set: {any_run['test']['n']} real images, scored once per run; model selection on "
        f"{any_run['val']['n']} real validation images; every run {any_run['budget']['steps']} steps of "
        f"{any_run['budget']['batch_size']} images. {variance_note(cfg, results)}",
        f"Δ is the per-seed difference from {cfg.baseline_arm} (same seed, same split); intervals are Student-t "
        f"(accuracy's clipped to [0, 100]); p (t) is the paired t-test, p (Wilcoxon) the signed-rank test, both "
        f"two-sided; a verdict needs at least {MIN_PAIRS} pairs and differences that are not all the same.",
        verdict_note(cfg, sum(1 for r in configured if r["delta_p_family"] is not None)),
    ]
    mins = {r["delta_n"]: r["delta_wilcoxon_min_p"] for r in rows if r["delta_wilcoxon_min_p"] is not None}
    low = {n: p for n, p in mins.items() if p >= alpha}
    if low:
        n, p = min(low.items())
        notes.append(f"With {n} pairs the Wilcoxon test cannot go below p = {p:.3f}: it needs at least "
                     f"{min_pairs_for(alpha)} pairs to reach {alpha:g}.")
    undecided = [r for r in configured if r["verdict"].startswith("undecided")]
    if undecided:
        notes.append("Undecided: " + "; ".join(f"{r['arm']}: {r['verdict_reason']}" for r in undecided) + ".")
    inconclusive = [r for r in configured if r["verdict"].startswith("inconclusive")]
    if inconclusive:
        level, power = inconclusive[0]["power_level"], cfg.compare.power
        notes.append(f"Inconclusive: what would decide it, and what it rules out, at {100 * power:g}% power (tests at "
                     f"{level:.3g}, alpha over the family's arms, given each arm's observed spread): "
                     + "; ".join(_inconclusive_said(cfg, r) for r in inconclusive) + ".")
    notes += budget_notes(cfg, configured)
    other_seed = [x for x in stale if x.endswith("(seed not in seeds)")]
    other_config = [x for x in stale if x not in other_seed]
    if other_seed:
        seeds = sorted({int(x.split("/seed-")[1].split()[0]) for x in other_seed})
        notes.append(f"Left out: {len(other_seed)} run(s) for seeds this config does not list "
                     f"({', '.join(map(str, seeds))}).")
    if other_config:
        notes.append(f"Left out, made by another config: {', '.join(other_config[:8])}"
                     f"{' ...' if len(other_config) > 8 else ''}.")
    machines = machines_note([read_record(Path(r["_dir"])) for rs in results.values() for r in rs if "_dir" in r])
    notes += [machines] if machines else []
    return notes


def _seeds(seeds: List[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"


def _p_is(p: Optional[float]) -> str:
    """'p = 0.012', 'p < 0.001'."""
    text = _p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _budget_said(f: Dict[str, Any]) -> str:
    """One flagged arm's numbers: seeds, mean rise, the test and its p-value."""
    rise = f"{100 * f['gain']:+.2f} points"
    if f["test"] == "equal":
        return (f"{f['n']} seeds each {rise}, more than a validation reading's standard error {100 * f['se']:.2f}; "
                f"best step in the tail for {f['seeds_best_in_tail']}")
    test = "one-sided paired t-test over seeds" if f["test"] == "t" else "each seed's own slope, combined"
    return (f"{f['n']} seed{'s' if f['n'] != 1 else ''}, mean rise {rise}, {test} {_p_is(f['p'])}; best step in the "
            f"tail for {f['seeds_best_in_tail']}")


def budget_notes(cfg: Config, configured: List[Dict[str, Any]]) -> List[str]:
    """The budget checks' notes: classifier arms still improving at the end of their steps (budget?), seeds whose
    curve could not be checked, and arms whose generator was still improving at its end (generator budget?)."""
    notes = []
    flagged = [r for r in configured if r.get("budget_flag")]
    if flagged:
        f0 = flagged[0]["budget_flag"]
        steps = f0["steps"]
        said = "; ".join(f"{r['arm']} ({_budget_said(r['budget_flag'])})" for r in flagged)
        annealing = (" The learning rate anneals to zero over these steps (classifier.schedule: cosine), so part of a "
                     "late rise can be the annealing's rather than the budget's: the check compares each seed with its "
                     "own earlier readings and cannot tell the two apart; a longer budget, which anneals later, is the "
                     "test for both." if cfg.classifier.schedule == "cosine" else "")
        notes.append(
            f"Budget check (budget?): still improving on real validation at the end of the budget: {said}. A seed's "
            f"rise is the mean of its last validation readings in the last {100 * BUDGET_TAIL:g}% of the {steps} steps "
            f"(after step {f0['tail_from_step']}) minus the mean of as many readings just before; an arm is flagged "
            f"when its seeds' rises are above zero by a one-sided paired t-test at {BUDGET_ALPHA:g} (rises all equal: "
            f"when they exceed a validation reading's binomial standard error; with fewer than {MIN_SEEDS_FOR_T} seeds: "
            f"when each seed's least-squares slope over those readings, one-sided against their scatter about it (at "
            f"least that standard error), has p below {BUDGET_ALPHA:g}^(1/seeds)).{annealing} A "
            f"longer budget may change these verdicts; test it with "
            f"`ganaug run -c CONFIG --sweep classifier.steps={steps},{2 * steps},{4 * steps}`.")
    short: Dict[str, List[Tuple[str, int]]] = {}
    for r in configured:
        for u in r.get("budget_unchecked") or []:
            short.setdefault(u["reason"], []).append((r["arm"], u["seed"]))
    if short:
        said = "; ".join(", ".join(f"{arm} {_seeds([s for a, s in who if a == arm])}" for arm in dict.fromkeys(a for a, _ in who))
                         + f": {reason}" for reason, who in short.items())
        notes.append(f"Budget check not possible for {said}. Those seeds are left out of it.")
    marked = [r for r in configured if r.get("generator_flag")]
    seen: Dict[Tuple[Any, Any], Tuple[Dict[str, Any], List[str]]] = {}
    for r in marked:
        for c in r["generator_flag"]["generators"]:
            seen.setdefault((c["generator"], c["gan_seed"]), (c, []))[1].append(r["arm"])
    for c, arms in seen.values():
        what = "validation FID" if c["metric"] == "fid/val" else f"training loss ({c['metric']})"
        test = ({"t": f"one-sided paired t-test over its {c['n']} GAN seeds", "equal": f"its {c['n']} GAN seeds alike",
                 "per-run": "its least-squares slope over those readings against their scatter, one-sided"}[c["test"]])
        notes.append(
            f"Generator budget check (generator budget?): {', '.join(dict.fromkeys(arms))}: generator still improving: "
            f"this verdict may be the budget's. The {what} of {c['label']} was still falling at the end of its "
            f"training: over its last {100 * BUDGET_TAIL:g}% ({c['unit']}s after {c['tail_from']:g}) it averaged "
            f"{c['mean_fall']:.3g} lower than over as many readings just before ({test}, {_p_is(c['p'])}, alpha "
            f"{c['alpha']:g}). Lengthen it ({c['key']} is {c['value']:g}) and compare: `{c['command']}`.")
    missing: Dict[str, str] = {}
    for r in configured:
        for c in (r.get("generator_unchecked") or []):
            missing.setdefault(c["label"], c["unchecked"])
    if missing:
        notes.append("Generator budget check not possible for " + "; ".join(f"{k}: {v}" for k, v in missing.items())
                     + ".")
    return notes


def audit_lines(checks: List[Dict[str, str]]) -> List[str]:
    """One line when every check passed; else how many passed, then one line per check that did not."""
    bad = sorted((c for c in checks if c["status"] != "ok"), key=lambda c: SEVERITY[c["status"]])
    if not checks:
        return []
    if not bad:
        return [f"Protocol audit: all {len(checks)} checks passed ({'; '.join(c['check'] for c in checks)})."]
    return ([f"Protocol audit: {len(checks) - len(bad)} of {len(checks)} checks passed."]
            + [f"PROTOCOL {c['status'].upper()}: {c['check']}: {c['detail']}" for c in bad])


EXTRA_HEADING = ("Other runs found on disk (arms this config does not list, e.g. from `train-clf --mix`): not part of "
                 "the configured arms' correction family; corrected among themselves.")


def _markdown_rows(cfg: Config, rows: List[Dict[str, Any]]) -> List[str]:
    head = table_head(cfg)
    return (["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
            + ["| " + " | ".join(table_cells(r)) + " |" for r in rows])


def render_markdown(cfg: Config, rows: List[Dict[str, Any]], notes: List[str], checks: List[Dict[str, str]],
                    extra_rows: Optional[List[Dict[str, Any]]] = None, quality: Optional[List[str]] = None) -> str:
    lines = _markdown_rows(cfg, rows) + [""] + notes + audit_lines(checks)
    if quality:
        lines += [""] + quality
    if extra_rows:
        lines += ["", EXTRA_HEADING, ""] + _markdown_rows(cfg, extra_rows)
    return "\n".join(lines) + "\n"


TERMINAL_WIDTH = 100  # columns the terminal's text keeps within (a path longer than that is never cut)
TERMINAL_NOTES = ("Undecided", "Left out")  # the notes that are warnings, printed on the terminal too


def _terminal_head(cfg: Config) -> List[str]:
    base = cfg.baseline_arm or "baseline"
    return ["arm", "test acc %", f"Δ vs {base if len(base) <= 12 else 'baseline'} [{100 * cfg.compare.confidence:g}% CI]",
            "verdict"]


def _terminal_cells(row: Dict[str, Any]) -> List[str]:
    """arm, accuracy ± std, the paired difference with its interval, the verdict (with its flags)."""
    verdict = table_cells(row)[-1]
    if row["is_baseline"]:
        delta = "baseline"
    elif row["delta_mean"] is None:
        delta = "-"
    else:
        delta = f"{pct(row['delta_mean'], signed=True)} {_ci(row['delta_ci_low'], row['delta_ci_high'], True)}"
    return [row["arm"], pct(row["acc_mean"], row["acc_std"]), delta, verdict]


def text_table(head: List[str], rows: List[List[str]], width: int = TERMINAL_WIDTH) -> List[str]:
    """An aligned plain-text table within `width` columns: a dashes line under the header, two spaces between columns.
    Too wide, the first column (names, broken after a hyphen, else anywhere) and the last (words) wrap onto the next
    lines, the rest of the row left blank there; the numbers in between never wrap."""
    sizes = [max(len(x) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(head)]
    least = [max(len(head[0]), 12), None, None, max(len(head[-1]), 12)] if len(head) == 4 else [None] * len(head)
    while sum(sizes) + 2 * (len(sizes) - 1) > width:
        can = [i for i, m in enumerate(least) if m is not None and sizes[i] > m]
        if not can:
            break
        sizes[max(can, key=lambda i: sizes[i])] -= 1

    def wrap(text: str, i: int) -> List[str]:
        if len(text) <= sizes[i]:
            return [text]
        return textwrap.wrap(text, sizes[i], break_on_hyphens=i == 0, break_long_words=True) or [""]

    def line(cells: List[str]) -> str:
        return "  ".join(c.ljust(n) for c, n in zip(cells, sizes)).rstrip()

    out = [line(head), "  ".join("-" * n for n in sizes)]
    for r in rows:
        pieces = [wrap(c, i) for i, c in enumerate(r)]
        for k in range(max(map(len, pieces))):
            out.append(line([p[k] if k < len(p) else "" for p in pieces]))
    return out


def render_terminal(cfg: Config, rows: List[Dict[str, Any]], notes: List[str], checks: List[Dict[str, str]],
                    variance: str, table_md: Path, extra_rows: Optional[List[Dict[str, Any]]] = None,
                    quality: Optional[List[Dict[str, Any]]] = None) -> str:
    """What `compare` and `run` print: each arm's accuracy, its paired difference from the baseline with the interval
    and the verdict, in about 100 columns; what they are in a few lines; the audit and the warnings; and where the full
    table (every column, the notes, sample quality) is."""
    shown = rows or extra_rows or []
    lines = text_table(_terminal_head(cfg), [_terminal_cells(r) for r in shown]) if shown else []
    said = [f"test acc %: mean ± std over {max(r['n'] for r in shown)} seeds. {variance}"] if shown else []
    if rows and cfg.baseline_arm:
        tested = sum(1 for r in rows if r["delta_p_family"] is not None)
        said.append(f"Δ: each seed's accuracy minus {cfg.baseline_arm}'s on the same seed, in points, with its "
                    f"{100 * cfg.compare.confidence:g}% interval; verdict: paired t-test, else equivalence within "
                    f"±{_points(cfg.compare.equivalence_margin)} by two one-sided tests (TOST), else inconclusive; "
                    f"{_correction(cfg)} correction over {_arms(tested)}, alpha {cfg.compare.alpha:g}.")
    verdicts = " ".join(table_cells(r)[-1] for r in shown + (extra_rows or []))
    if "(budget?)" in verdicts:
        said.append("(budget?): still improving on validation at the end of its steps: a longer budget may change the "
                    "verdict.")
    if "(generator budget?)" in verdicts:
        said.append("(generator budget?): the generator its fakes came from was still improving at its end.")
    bad = [c for c in checks if c["status"] != "ok"]
    if checks:
        said += audit_lines(checks) if bad else [f"Protocol audit: all {len(checks)} checks passed."]
    said += [n for n in notes if n.startswith(TERMINAL_NOTES)]
    for q in quality or []:
        if q.get("copy_flag"):
            named = q.get("copy_classes") or []
            said.append(f"Sample quality: {q['set']}{rep_tag(Rep(q.get('generator'), q['gan_seed']), q.get('family'))}: "
                        "COPIES? (fakes nearer the training images than real test images are" + (
                            f"; classes {', '.join(named)}" if named else "") + ").")
    # Wrapped to the width, but an audit's violation stays one line (its paths whole, found by grep).
    out = lines + [""] + [x for s in said for x in (
        [s] if s.startswith("PROTOCOL ") else
        textwrap.wrap(s, TERMINAL_WIDTH, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False))]
    if rows and extra_rows:
        out += ["", "Other runs found on disk (arms this config does not list), corrected among themselves:", ""]
        out += text_table(_terminal_head(cfg), [_terminal_cells(r) for r in extra_rows])
    out += [""] + textwrap.wrap(f"Full table (intervals, macro-F1, p-values), its notes and sample quality: {table_md}",
                                TERMINAL_WIDTH, break_on_hyphens=False, break_long_words=False)
    return "\n".join(out) + "\n"


CSV_COLUMNS = ["arm", "generator", "data", "n", "acc_mean", "acc_std", "acc_ci_low", "acc_ci_high", "f1_mean", "f1_std",
               "delta_n", "delta_mean", "delta_std", "delta_ci_low", "delta_ci_high", "delta_t", "delta_p_t",
               "delta_p_sign", "delta_p_wilcoxon", "delta_wilcoxon_method", "delta_p_adj", "tost_margin", "tost_confidence",
               "tost_ci_low", "tost_ci_high", "tost_p_lower", "tost_p_upper", "tost_p", "tost_p_sign", "tost_p_adj",
               "seeds_to_decide", "verdict", "val_acc_mean", "family"]


def render_csv(rows: List[Dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in CSV_COLUMNS})
    return buf.getvalue()

