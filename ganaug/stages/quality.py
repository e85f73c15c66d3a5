"""The generator-quality table beside the accuracy table: one row per synthetic set, from `evaluate`, and the
floor the real training images reach against the same test images at the same sample size."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, List, Optional

import numpy as np

from ..config import Config, Rep
from ..metrics.copies import describe_to_source
from .budget import BUDGET_TAIL, generator_checks
from .layout import paths
from .records import EVALUATE, up_to_date

QUALITY_COLUMNS = ["set", "gan_seed", "features", "n_fake", "n_real", "fid", "kid", "kid_std", "kid_subset_size",
                   "precision", "recall", "density", "coverage", "copies_pixels", "copies_features", "copy_flag",
                   "class_consistency", "cas"]


def rep_tag(rep: Rep, family: Optional[str] = None) -> str:
    """' (vae)', ' (GAN seed 3)', ' (vae, GAN seed 3)' or ''."""
    bits = ([f"{rep.generator}: {family}" if family else rep.generator] if rep.generator is not None else []) + (
        [f"GAN seed {rep.seed}"] if rep.seed is not None else [])
    return f" ({', '.join(bits)})" if bits else ""


def load_quality(cfg: Config) -> List[Dict[str, Any]]:
    """Each synthetic set's evaluation made by this config (others are left out, as stale classifier runs are)."""
    out = []
    for rep in cfg.replicates:
        f = paths(cfg).evaluate(rep) / "quality.json"
        if f.is_file() and up_to_date(cfg, EVALUATE, rep):
            out.append(json.loads(f.read_text()))
    return out


def quality_rows(cfg: Config, evaluations: List[Dict[str, Any]],
                 results: Dict[str, List[Dict[str, Any]]],
                 improving: Optional[Dict[Rep, Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """One row per synthetic set, then the real-training-set floor (from the first evaluation: it is the same).

    `still_improving`: the set's generator's budget check when it was still improving at its end (`improving`:
    `budget.generator_checks`, computed here when not given), else None."""
    if improving is None:
        improving = generator_checks(cfg, [Rep(e.get("generator"), e["gan_seed"]) for e in evaluations]) if evaluations else {}
    cas: Dict[Optional[str], List[float]] = {}
    real_acc: List[float] = []
    for runs in results.values():
        for r in runs:
            cfg_arm = r["arm_config"]
            if cfg_arm["data"] == "synthetic" and cfg_arm.get("augment", "none") == "none":
                cas.setdefault(r.get("synthetic_set"), []).append(r["test"]["accuracy"])
            if r["arm"] == cfg.baseline_arm:
                real_acc.append(r["test"]["accuracy"])
    rows = []
    for e in evaluations:
        o = e["overall"]["fake"]
        if o is None:
            continue
        rows.append({"set": e["synthetic_set"], "gan_seed": e["gan_seed"], "generator": e.get("generator"),
                     "family": e.get("family"), "features": e["features"], "n_fake": o["n_fake"],
                     "n_real": o["n_real"], **{k: o[k] for k in ("fid", "kid", "kid_std", "kid_subset_size", "precision",
                                                                 "recall", "density", "coverage")},
                     "copies_pixels": e["copies"]["pixels"]["overall"]["share"],
                     "copies_features": e["copies"]["features"]["overall"]["share"],
                     **copy_columns(e["copies"]),
                     "class_consistency": e["class_consistency"]["overall"],
                     "cas": float(np.mean(cas[e["synthetic_set"]])) if cas.get(e["synthetic_set"]) else None,
                     "kept": (e.get("filter") or {}).get("rate_total"), "floor": False,
                     "still_improving": _improving(improving, Rep(e.get("generator"), e["gan_seed"]))})
    if evaluations:
        e = evaluations[0]
        for kind, label in (("floor", "real held-out images (the floor)"), ("train", "real training images")):
            f = e["overall"].get(kind)
            if f is None:
                continue
            rows.append({"set": label, "gan_seed": None, "features": e["features"], "n_fake": f["n_fake"],
                         "n_real": f["n_real"], **{k: f[k] for k in ("fid", "kid", "kid_std", "kid_subset_size", "precision",
                                                                     "recall", "density", "coverage")},
                         "copies_pixels": None, "copies_features": None, "copy_flag": False, "copy_fired": [],
                         "copy_classes": [], "copies_ratio": None,
                         "class_consistency": e["class_consistency"]["reference_val_accuracy"] if kind == "floor" else None,
                         "cas": (float(np.mean(real_acc)) if real_acc else None) if kind == "floor" else None, "floor": True})
    return rows


def copy_columns(copies: Dict[str, Any]) -> Dict[str, Any]:
    """The copy check's flag, what fired it and the flagged classes (an evaluation made before the flag was a
    corrected test reads its old per-space flags)."""
    if "flag" not in copies:
        return {"copy_flag": copies["pixels"]["overall"]["flag"] or copies["features"]["overall"]["flag"],
                "copy_fired": [], "copy_classes": [], "copies_ratio": None}
    classes = sorted({c for space in ("pixels", "features") for c in copies[space].get("flagged_classes", [])})
    return {"copy_flag": copies["flag"], "copy_fired": copies["fired"], "copy_classes": classes,
            "copies_ratio": copies["pixels"]["ratio"]["share"]}


def _f(v: Optional[float], fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _improving(checks: Dict[Rep, Dict[str, Any]], rep: Rep) -> Optional[Dict[str, Any]]:
    c = checks.get(rep)
    return c if c is not None and c["flag"] else None


def _improving_note(rows: List[Dict[str, Any]]) -> str:
    """What 'still improving' beside an FID means, and the key that lengthens each such generator."""
    marked = [r for r in rows if r.get("still_improving")]
    if not marked:
        return ""
    said = "; ".join(dict.fromkeys(f"{c['label']}: its {'validation FID' if c['metric'] == 'fid/val' else c['metric']}, "
                                   f"p = {c['p']:.3g}" + f"; lengthen it with `{c['command']}`"
                                   for c in (r["still_improving"] for r in marked)))
    return (f" Still improving: the generator's validation FID (the VAE's and diffusion model's training loss when no FID "
            f"was computed) over its last {100 * BUDGET_TAIL:g}% of training was lower than over as many readings just "
            f"before, beyond its own runs' noise (one-sided paired t-test over its GAN seeds, or with fewer than 3 its "
            f"slope against its readings' scatter): its fakes, and the arms that use them, may be the budget's ({said}).")


def render_quality(rows: List[Dict[str, Any]], evaluations: List[Dict[str, Any]]) -> List[str]:
    """The quality table in Markdown, with what its numbers are."""
    if not rows:
        return []
    e = next(x for x in evaluations if x["overall"]["fake"] is not None)
    filtered = any(r.get("kept") is not None for r in rows)
    head = ["synthetic set", "n", "FID", "KID x 1000", "precision", "recall", "density", "coverage", "copies (pixels)",
            "copies (features)", "class consistency %", "CAS %"] + (["filter kept %"] if filtered else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        name = r["set"] + rep_tag(Rep(r.get("generator"), r["gan_seed"]), r.get("family"))
        copies = [_f(r["copies_pixels"], "{:.1%}"), _f(r["copies_features"], "{:.1%}")]
        if r["copy_flag"]:
            named = r.get("copy_classes") or []
            copies[0] += " COPIES?" + (f" (classes {', '.join(named[:4])}{' ...' if len(named) > 4 else ''})" if named else "")
        fid = f"{r['fid']:.2f}" + (" still improving" if r.get("still_improving") else "")
        lines.append("| " + " | ".join([name, str(r["n_fake"]), fid, f"{1000 * r['kid']:.2f} ± {1000 * r['kid_std']:.2f}",
                                        _f(r["precision"]), _f(r["recall"]), _f(r["density"]), _f(r["coverage"]), *copies,
                                        _f(r["class_consistency"], "{:.1%}").rstrip("%"),
                                        _f(r["cas"], "{:.2%}").rstrip("%")]
                                + ([_f(r.get("kept"), "{:.1%}").rstrip("%")] if filtered else [])) + " |")
    q = e["copies"]["pixels"]["overall"]["quantile"]
    cp = e["copies"]
    o = e["overall"]["fake"]
    domain = e["features"] == "domain"
    notes = [
        f"Sample quality in {e['features_description']}: each row scores n images (the fakes a random {o['n_fake']}), as "
        "many per class in every row (the fewest of the class's training images, half its test images and its fakes), "
        f"against {o['n_real']} other real test images (the reference). "
        + (f"Left out of every row, their test images too few to hold out a floor: {', '.join(e['n']['classes_without_floor'])}. "
           if e["n"].get("classes_without_floor") else "")
        + (f"The floor is {e['n']['held_out']} other real test images against the same reference: what a perfect generator "
           "would reach at this sample size (FID, KID and precision/recall are biased at small n). " if e["overall"]["floor"]
           else "The test set is too small to hold out a floor beside the reference (it needs k + 2 images per class on "
           "each side). ")
        + ("The real training images are scored too, but the domain extractor was trained on them, so they sit closer to "
           "their classes than any unseen image does: their row is not a floor in these features. " if domain else
           "The real training images' row is a second floor. ")
        + f"KID is the unbiased MMD with the cubic kernel, over "
        f"{o['kid_subsets']} subsets of {o['kid_subset_size']}; precision/recall with k = {o['k_pr']} "
        f"(Kynkaanniemi et al. 2019), density/coverage with k = {o['k_dc']} (Naeem et al. 2020).",
        f"Copies: each fake's nearest training image after alignment (shifts of up to {cp.get('shift', 0)} pixels"
        + (", mirrored too" if cp.get("mirror") else "") + "), over every training image; the columns give the share of "
        f"fakes nearer to it than all but {q:.0%} of the real test images are (so about {q:.0%} for a generator that does "
        "not copy). COPIES? when any of the field's criteria says so after Holm's correction over the criteria, spaces and "
        f"classes (false-alarm rate at most {cp.get('alpha', 0.05):g}): that share (beta-binomial test), Gu et al.'s ratio "
        "test (nearest training image nearer than 1/3 of the second nearest, against the test images' own share) and "
        "Meehan et al.'s C_T (per class, the fakes' distances against the test images'); the flagged classes are named. "
        + "".join(f"{r['set']}{rep_tag(Rep(r.get('generator'), r['gan_seed']), r.get('family'))}: "
                  f"{'; '.join(r['copy_fired'][:6])}. " for r in rows if r.get("copy_fired"))
        + "Class consistency: the "
        "share of fakes that the domain classifier (trained on the real training images only) labels as their class; "
        "in the floor's row, that classifier's accuracy on the real validation images. CAS: test accuracy of the "
        "classifier trained on that set alone (the synthetic arm); for the floor, of the baseline arm."
        + (" Filter kept: the share of drawn fakes the domain classifier gave their class with at least "
           "sample.filter.min_confidence (per class in the set's samples/stage.json); a filtered set's class "
           "consistency is high by construction (the same classifier chose it)." if filtered else "")
        + _improving_note(rows) + _edits_note(evaluations),
    ]
    return ["Sample quality of each synthetic set:", ""] + lines + [""] + notes


def _edits_note(evaluations: List[Dict[str, Any]]) -> str:
    """Edited sets: their own sources left out of the copy check, and how near the edits stay to them."""
    edited = [e for e in evaluations if e["copies"].get("to_source")]
    if not edited:
        return ""
    return (" Edits (sample.mode: edit): each edit's own source image is left out of its copy check (an edit is meant "
            "to resemble it), so the copies columns judge it against the other training images; its pixel distance "
            "to its source (aligned, as the copy check measures), by strength (median; 10th percentile; share nearer "
            "than the copy threshold; median to the nearest other training image): "
            + " / ".join(f"'{e['synthetic_set']}': {describe_to_source(e['copies']['to_source'])}" for e in edited)
            + ".")


def render_quality_csv(evaluations: List[Dict[str, Any]]) -> str:
    """Every number, overall and per class, for every set and its floor."""
    buf = io.StringIO()
    cols = ["set", "gan_seed", "class", "kind", "n_fake", "n_real", "fid", "kid", "kid_std", "kid_subset_size",
            "precision", "recall", "density", "coverage", "copies_pixels", "copies_features", "class_consistency"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for e in evaluations:
        parts = [("all", e["overall"])] + list(e["per_class"].items())
        for cls, part in parts:
            for kind in ("fake", "floor", "train"):
                s = part.get(kind)
                if s is None:
                    continue
                row = {"set": e["synthetic_set"], "gan_seed": e["gan_seed"], "class": cls, "kind": kind,
                       **{k: s[k] for k in cols if k in s}}
                if kind == "fake":
                    copies = {space: e["copies"][space]["overall"] if cls == "all" else e["copies"][space]["per_class"][cls]
                              for space in ("pixels", "features")}
                    cc = e["class_consistency"]
                    row.update(copies_pixels=copies["pixels"]["share"], copies_features=copies["features"]["share"],
                               class_consistency=cc["overall"] if cls == "all" else cc["per_class"][cls])
                w.writerow(row)
    return buf.getvalue()


def precision_recall_sets(evaluations: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """What the precision-recall plot draws: each set overall and per class, then the floor."""
    def points(e: Dict[str, Any], kind: str) -> List[tuple]:
        return [(v[kind]["precision"], v[kind]["recall"]) for v in e["per_class"].values() if v[kind] is not None]

    out = [{"label": e["synthetic_set"] + rep_tag(Rep(e.get("generator"), e["gan_seed"]), e.get("family")),
            "precision": e["overall"]["fake"]["precision"], "recall": e["overall"]["fake"]["recall"],
            "per_class": points(e, "fake")} for e in evaluations]
    if evaluations and evaluations[0]["overall"].get("floor"):
        f = evaluations[0]["overall"]["floor"]
        out.append({"label": "real held-out images (floor)", "precision": f["precision"], "recall": f["recall"],
                    "per_class": points(evaluations[0], "floor"), "floor": True})
    return out
