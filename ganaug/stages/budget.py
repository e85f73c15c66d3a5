"""Budget adequacy: was a classifier arm, or a generator, still improving when its budget ran out?

One rule for both, on the run's own curve (the classifier's real-validation accuracy every `eval_every` steps; a
generator's validation FID every `eval_every` epochs, or the loss the VAE and the diffusion model minimise, every
epoch):

- per run, its **rise**: the mean of its last m readings in the last 20% of its length (the tail) minus the mean
  of the m readings just before the tail, m the smaller of the two counts, so both sides average as many readings
  (no max-of-many bias). For FID and losses, lower is better: the rise is the fall.
- over seeds (3 or more): a one-sided t-test of the runs' rises against zero (scipy's `ttest_1samp`, alternative
  "greater") at `BUDGET_ALPHA`. Each seed is compared with itself, so seeds at different levels do not hide a rise
  they share; the t-test's noise is the rises' own spread over seeds, which is what a flat curve would show.
  Rises all equal (no spread to test against): flagged when they exceed `floor` (for accuracy, the binomial
  standard error of one validation reading, sqrt(p (1 - p) / n_val)).
- with 1 or 2 runs: each run on its own: the least-squares slope over its 2m compared readings, against the scatter
  of those readings about the line (for accuracy, at least a reading's binomial standard error; then normal, else
  Student-t with 2m - 2 degrees of freedom), one-sided; flagged when every run's p-value is below
  `BUDGET_ALPHA ** (1 / runs)`, i.e. the largest p to the power of the number of runs (the combined p-value
  reported) is below `BUDGET_ALPHA`: a flat, independent pair is flagged at rate `BUDGET_ALPHA`.

A curve with no reading in the tail, or none before it, is not skipped: it comes back as unchecked, with the
reason and what to set, and `compare` names it under the table.

Learning-rate schedules: the classifier anneals its learning rate to zero at its last step by default (`classifier.
schedule: cosine`, see `classifiers/train.py`), and the last 20% of a cosine schedule runs at under a tenth of the
peak rate; accuracy often climbs there as the noise of large steps dies down, even in a run that has learnt all it
will. The check compares each seed with its own earlier readings under the same schedule, so such an annealing bump
is flagged as "still improving" like any other late rise: it cannot tell the two apart from one budget. The remedy
is the same for both: a longer budget (which anneals later) tells whether the verdict moves, and the note names the
sweep that runs it. The generators train at a constant learning rate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats as st

from ..config import Config, Rep, arm_from_dict
from ..errors import ConfigError
from ..utils import read_jsonl
from .layout import paths

BUDGET_TAIL = 0.2  # the last part of a budget looked at
BUDGET_ALPHA = 0.05  # the false-alarm rate of a flat curve, over seeds or per run
MIN_SEEDS_FOR_T = 3  # fewer runs: each run's own slope against its own readings' scatter
# The loss each likelihood family minimises, in its metrics.jsonl (gans/vae.py, gans/diffusion.py): their curve
# when no validation FID was computed. A GAN's losses (a game's) say nothing of whether it is still improving.
LIKELIHOOD_LOSSES = ("loss/total", "loss/diffusion")


# ----------------------------------------------------------------------------------------------------
# The statistics: pure functions of readings.


def reading_se(p: float, n: int) -> float:
    """Binomial standard error of an accuracy p measured on n images."""
    p = min(max(p, 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / max(1, n))


def window_stats(curve: Sequence[Tuple[float, float]], end: float, tail: float = BUDGET_TAIL,
                 lower_is_better: bool = False, what: str = "reading", unit: str = "step") -> Dict[str, Any]:
    """A run's readings [(position, value)] over a run of length `end`, against its last `tail` share.

    Returns its rise (tail mean minus the mean of as many readings just before the tail, signed so that an
    improvement is positive), the window's least-squares slope (same sign), the readings' scatter about that line
    and its degrees of freedom; or {"unchecked": reason} when the tail or the part before it holds no reading.
    """
    cut = (1.0 - tail) * end
    pts = sorted((float(x), float(v)) for x, v in curve if v is not None and math.isfinite(float(v)))
    head = [p for p in pts if p[0] <= cut]
    late = [p for p in pts if p[0] > cut]
    where = f"{unit} {cut:g} (the last {100 * tail:g}% of {end:g} {unit}s starts after it)"
    if not late:
        return {"unchecked": f"no {what} after {where}", "cut": cut}
    if not head:
        return {"unchecked": f"no {what} at or before {where}", "cut": cut}
    m = min(len(head), len(late))
    window = head[-m:] + late[-m:]
    sign = -1.0 if lower_is_better else 1.0
    x = np.array([p[0] for p in window])
    y = sign * np.array([p[1] for p in window])
    rise = float(y[m:].mean() - y[:m].mean())
    sxx = float(((x - x.mean()) ** 2).sum())
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / sxx) if sxx > 0 else 0.0
    df = len(window) - 2
    resid = y - (y.mean() + slope * (x - x.mean()))
    sd = float(math.sqrt((resid ** 2).sum() / df)) if df > 0 else None
    return {"rise": rise, "m": m, "head_mean": float(np.mean([p[1] for p in head[-m:]])),
            "tail_mean": float(np.mean([p[1] for p in late[-m:]])), "level": float(np.mean([p[1] for p in window])),
            "slope": slope, "sxx": sxx, "sd": sd, "df": df, "cut": cut}


def run_p(s: Dict[str, Any], floor: float = 0.0) -> Optional[float]:
    """One run's one-sided p-value for an improving slope over its compared readings, against their scatter about
    the line (at least `floor`, then with normal tails); None when there is no scatter to judge by (one reading
    each side and no floor)."""
    if s["sxx"] <= 0:
        return None
    sd, df = s["sd"], s["df"]
    if sd is None or sd < floor:
        if floor <= 0:
            return None
        sd, df = floor, math.inf
    se = sd / math.sqrt(s["sxx"])
    if se == 0:  # readings exactly on a line
        return 0.0 if s["slope"] > 0 else 1.0
    z = s["slope"] / se
    return float(st.norm.sf(z) if math.isinf(df) else st.t.sf(z, df))


def budget_test(stats: Sequence[Dict[str, Any]], floor: float = 0.0, alpha: float = BUDGET_ALPHA) -> Dict[str, Any]:
    """Whether runs of one arm (or generator) were still improving: their `window_stats` -> flag, test, p-value.

    3 or more runs: one-sided t-test of their rises against 0 ("t"), or, rises all equal, rise > floor ("equal").
    Fewer: every run's own slope p-value below alpha ** (1 / runs) ("per-run"); runs without one are listed in
    `no_p` (by index) and left out.
    """
    rises = [float(s["rise"]) for s in stats]
    out: Dict[str, Any] = {"n": len(rises), "rises": rises, "mean_rise": float(np.mean(rises)) if rises else None,
                           "alpha": alpha, "floor": floor, "flag": False, "p": None, "test": None, "no_p": []}
    if not rises:
        return out
    if len(rises) >= MIN_SEEDS_FOR_T:
        if max(rises) - min(rises) <= 1e-9:  # no spread to test against
            out.update(test="equal", flag=bool(rises[0] > floor))
        else:
            p = float(st.ttest_1samp(rises, 0.0, alternative="greater").pvalue)
            out.update(test="t", p=p, flag=bool(p < alpha))
        return out
    ps = [run_p(s, floor) for s in stats]
    out["no_p"] = [i for i, p in enumerate(ps) if p is None]
    kept = [p for p in ps if p is not None]
    if kept:
        p = max(kept) ** len(kept)
        out.update(test="per-run", p=p, flag=bool(p < alpha), n=len(kept),
                   rises=[r for r, q in zip(rises, ps) if q is not None])
        out["mean_rise"] = float(np.mean(out["rises"]))
    else:
        out.update(n=0, rises=[], mean_rise=None)
    return out


# ----------------------------------------------------------------------------------------------------
# Classifier arms.


def budget_checks(results: Dict[str, List[Dict[str, Any]]], alpha: float = BUDGET_ALPHA) -> Dict[str, Dict[str, Any]]:
    """Every arm's budget check on its seeds' real-validation accuracy (each run folder's metrics.jsonl).

    Per arm: `flag`, `n` (seeds checked), `gain` (mean rise), `p`, `test`, `alpha`, `se` (a reading's binomial
    standard error at the arm's level), `readings` (m, per side, fewest over seeds), `seeds_best_in_tail`,
    `tail_from_step`, `steps`, and `unchecked`: [{seed, reason}] for the seeds whose curve could not be checked.
    """
    out = {}
    for name, runs in results.items():
        checked, unchecked, in_tail = [], [], 0
        for r in runs:
            steps = r["budget"]["steps"]
            f = Path(r["_dir"]) / "metrics.jsonl" if r.get("_dir") else None
            if f is None or not f.is_file():
                unchecked.append({"seed": r["seed"], "reason": "no metrics.jsonl in its run folder"})
                continue
            curve = [(row["step"], row["acc/val"]) for row in read_jsonl(f) if "acc/val" in row]
            s = window_stats(curve, steps, what="validation reading", unit="step")
            if "unchecked" in s:
                hint = "; set classifier.eval_every to at most steps / 10 for two readings each side"
                unchecked.append({"seed": r["seed"], "reason": s["unchecked"] + hint})
                continue
            checked.append((r, s))
            in_tail += r["val"]["selected_step"] > s["cut"]
        level = float(np.mean([s["level"] for _, s in checked])) if checked else 0.0
        se = reading_se(level, runs[0]["val"]["n"])
        test = budget_test([s for _, s in checked], floor=se, alpha=alpha)
        steps = runs[0]["budget"]["steps"]
        out[name] = {"flag": test["flag"], "n": test["n"], "gain": test["mean_rise"], "p": test["p"], "test": test["test"],
                     "alpha": alpha, "se": se, "rises": test["rises"], "seeds": [r["seed"] for r, _ in checked],
                     "readings": min((s["m"] for _, s in checked), default=0), "seeds_best_in_tail": int(in_tail),
                     "tail_from_step": int((1.0 - BUDGET_TAIL) * steps), "steps": steps, "unchecked": unchecked}
    return out


def budget_flags(results: Dict[str, List[Dict[str, Any]]], alpha: float = BUDGET_ALPHA) -> Dict[str, Dict[str, Any]]:
    """The arms whose real-validation accuracy was still rising over the last 20% of their steps (`budget_checks`
    of the flagged arms): such an arm's verdict may be the budget's, not the data's."""
    return {name: c for name, c in budget_checks(results, alpha).items() if c["flag"]}


# ----------------------------------------------------------------------------------------------------
# Generators.


def generator_curve(rows: List[Dict[str, Any]]) -> Tuple[Optional[str], List[Tuple[float, float]], float, str]:
    """A generator's metrics.jsonl rows -> (what is read, [(position, value)], the run's end, the unit).

    Its validation FID when there is one (gan.eval_every), else the loss a likelihood family minimises; a per-class
    GAN's classes (rows with "class", each class's epochs counted from 1) averaged epoch by epoch.
    """
    metric = "fid/val" if any("fid/val" in r for r in rows) else next(
        (k for k in LIKELIHOOD_LOSSES if any(k in r for r in rows)), None)
    unit = next((u for u in ("epoch", "kimg", "step") if rows and all(u in r for r in rows)), "epoch")
    end = max((float(r[unit]) for r in rows if unit in r), default=0.0)
    by_x: Dict[float, List[float]] = {}
    for r in rows:
        if metric is not None and metric in r and unit in r and r[metric] is not None:
            by_x.setdefault(float(r[unit]), []).append(float(r[metric]))
    return metric, [(x, float(np.mean(v))) for x, v in sorted(by_x.items())], end, unit


def length_key(cfg: Config, rep: Rep) -> Tuple[str, Any, str]:
    """The key that lengthens a generator's training (its kimg when it is set, else its epochs), its value, and
    the command that tries longer ones."""
    g = cfg.gen(rep.generator)
    prefix = "gan" if rep.generator is None else f"generators.{rep.generator}"
    field = "kimg" if g.kimg is not None else "epochs"
    value = g.kimg if g.kimg is not None else g.epochs
    more = [f"{k * value:g}" for k in (1, 2, 4)]
    if rep.generator is None:
        command = f"ganaug run -c CONFIG --sweep gan.{field}={','.join(more)}"
    else:
        command = f"ganaug run -c CONFIG --set {prefix}.{field}={more[1]}"
    return f"{prefix}.{field}", value, command


def generator_label(cfg: Config, rep: Rep) -> str:
    """'the GAN (cgan)', 'the generator vae (vae) of seed 3'."""
    g = cfg.gen(rep.generator)
    name = "the GAN" if rep.generator is None else f"the generator {rep.generator}"
    return f"{name} ({g.name})" + (f" of seed {rep.seed}" if rep.seed is not None else "")


def generator_checks(cfg: Config, reps: Optional[Sequence[Rep]] = None,
                     alpha: float = BUDGET_ALPHA) -> Dict[Rep, Dict[str, Any]]:
    """Each trained generator's budget check (every one of `cfg.replicates`, or those of `reps`).

    Per rep: `flag` (still improving), `unchecked` (a reason, or None), `metric`, `mean_fall` (the mean over its
    generator's GAN seeds of the fall over the tail, in the metric's units), `p`, `test`, `n` (runs in the test),
    `readings`, `tail_from`, `unit`, `key`/`value`/`command` (what lengthens it) and `label`. The runs of one
    generator (its GAN seeds) are tested together, as a classifier arm's seeds are.
    """
    reps = list(cfg.replicates if reps is None else reps)
    out: Dict[Rep, Dict[str, Any]] = {}
    by_generator: Dict[Optional[str], List[Tuple[Rep, Dict[str, Any]]]] = {}
    for rep in reps:
        g = cfg.gen(rep.generator)
        key, value, command = length_key(cfg, rep)
        prefix = key.rsplit(".", 1)[0]
        base = {"generator": rep.generator, "gan_seed": rep.seed, "family": g.name, "label": generator_label(cfg, rep),
                "key": key, "value": value, "command": command, "flag": False, "unchecked": None, "metric": None,
                "mean_fall": None, "p": None, "test": None, "n": 0, "alpha": alpha}
        out[rep] = base
        f = paths(cfg).gan(rep) / "metrics.jsonl"
        if not f.is_file():
            base["unchecked"] = "no metrics.jsonl in its folder (ganaug train-gan writes one)"
            continue
        metric, curve, end, unit = generator_curve(read_jsonl(f))
        base.update(metric=metric, unit=unit)
        if metric is None:
            base["unchecked"] = (f"no validation FID in its metrics.jsonl, and a GAN's losses do not say whether it "
                                 f"still improves; set {prefix}.eval_every (epochs between validation FIDs) to at most "
                                 f"a tenth of its length")
            continue
        s = window_stats(curve, end, lower_is_better=True, what=f"{metric} reading", unit=unit)
        if "unchecked" in s:
            base["unchecked"] = s["unchecked"] + (f"; set {prefix}.eval_every to at most a tenth of its length"
                                                  if metric == "fid/val" else "")
            continue
        base.update(readings=s["m"], tail_from=s["cut"], end=end, head_mean=s["head_mean"], tail_mean=s["tail_mean"])
        by_generator.setdefault(rep.generator, []).append((rep, s))
    for runs in by_generator.values():
        test = budget_test([s for _, s in runs], floor=0.0, alpha=alpha)
        for i, (rep, s) in enumerate(runs):
            if i in test["no_p"]:
                what = out[rep]["metric"]
                out[rep]["unchecked"] = (f"one {what} reading each side of {s['cut']:g}: too few to tell a fall from "
                                         f"noise in one run; set {out[rep]['key'].rsplit('.', 1)[0]}.eval_every to at "
                                         "most a tenth of its length, or train 3 or more gan_seeds")
                continue
            out[rep].update(flag=test["flag"], p=test["p"], test=test["test"], n=test["n"], mean_fall=test["mean_rise"])
    return out


def generator_marks(cfg: Config, results: Dict[str, List[Dict[str, Any]]],
                    checks: Dict[Rep, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Per arm that draws fakes: {"flag": the still-improving checks of the generators it uses (None if none),
    "unchecked": the checks of those that could not be checked}."""
    out = {}
    for name, runs in results.items():
        arm = arm_from_dict(runs[0]["arm_config"])
        if not arm.uses_synthetic:
            continue
        reps = []
        for r in runs:
            try:
                rep = cfg.rep_of(arm, r["seed"])
            except ConfigError:  # a seed this config does not list
                continue
            if rep in checks and rep not in reps:
                reps.append(rep)
        flagged = [checks[rep] for rep in reps if checks[rep]["flag"]]
        out[name] = {"flag": {"generators": flagged, "of": len(reps)} if flagged else None,
                     "unchecked": [checks[rep] for rep in reps if checks[rep]["unchecked"]]}
    return out
