"""The protocol audit behind every table: what makes a number trustworthy, checked from the run folder.

Each check reads the artefacts the stages left (the split manifest with its content hashes, each GAN's
`trained_on.json`, each synthetic set, each classifier's `result.json`) and says ok, violation or
unverified. `compare` prints the violations under the table and records every check in its JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import torch

from ..config import Config
from ..data.images import image_hashes
from .common import TRAINED_ON, paths


def _check(name: str, status: str, detail: str) -> Dict[str, str]:
    return {"check": name, "status": status, "detail": detail}


def _hashes(manifest: Dict[str, Any], part: str) -> Set[str]:
    return set(manifest[part]["hashes"])


def audit(cfg: Config, results: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, str]]:
    """Every protocol check on the runs `compare` counts."""
    p = paths(cfg)
    if not p.manifest.is_file():
        return [_check("split manifest", "unverified", f"no manifest at '{p.manifest}'; nothing can be checked")]
    manifest = json.loads(p.manifest.read_text())
    train, val, test = (_hashes(manifest, k) for k in ("train", "val", "test"))
    # Identical images the source itself holds twice (MNIST has a few) are reported, not blamed on a stage.
    source_dups = (train | val) & test | (train & val)
    runs = [r for rs in results.values() for r in rs]
    checks = [_split_check(val, test, train, source_dups)]
    checks.append(_synthetic_check(p.root, runs, val | test, source_dups))
    # Each synthetic set (as runs name it, relative to out_dir) and the GAN that made it.
    gan_of = {p.samples(g).relative_to(p.root).as_posix(): p.gan(g) for g in cfg.gan_replicates}
    checks.append(_gan_check(gan_of, runs, train, val | test, source_dups))
    checks.append(_budget_check(runs))
    checks.append(_selection_check(runs, manifest))
    return checks


def _split_check(val: Set[str], test: Set[str], train: Set[str], source_dups: Set[str]) -> Dict[str, str]:
    name = "split: train, validation and test are disjoint"
    if source_dups:
        return _check(name, "ok", f"disjoint by index; {len(source_dups)} image(s) occur in the source more than once "
                                  "and land in two parts (identical pixels, not a leak by ganaug)")
    return _check(name, "ok", f"{len(train)} train, {len(val)} validation, {len(test)} test images; no content shared")


def _synthetic_check(root: Path, runs: List[Dict[str, Any]], held_out: Set[str], source_dups: Set[str]) -> Dict[str, str]:
    name = "no synthetic image in validation or test"
    problems = []
    for r in runs:
        if r.get("protocol", {}).get("validation_synthetic_images", 0) != 0:
            problems.append(f"{r['arm']} seed {r['seed']} validated on synthetic images")
    sets = sorted({r["synthetic_set"] for r in runs if r.get("synthetic_set")})
    unknown = _unrecorded_sets(runs)
    for rel in sets:
        f = root / rel / "samples.pt"
        if not f.is_file():
            problems.append(f"synthetic set '{rel}' is missing, so it cannot be checked")
            continue
        images = torch.load(f, map_location="cpu", weights_only=True)["images"]
        found = (set(image_hashes(images)) & held_out) - source_dups
        if found:
            problems.append(f"{len(found)} image(s) of '{rel}' are pixel-identical to validation/test images")
    if problems:
        return _check(name, "violation", "; ".join(problems))
    if unknown:
        return _check(name, "unverified", unknown)
    what = f"{len(sets)} synthetic set(s) hashed: none equals a validation or test image" if sets else "no arm used fakes"
    return _check(name, "ok", what + "; every run validated on real images only")


def _unrecorded_sets(runs: List[Dict[str, Any]]) -> str:
    """Runs that trained on fakes without naming their synthetic set (made before ganaug recorded it)."""
    missing = [f"{r['arm']} seed {r['seed']}" for r in runs
               if r["arm_config"]["data"] != "real" and not r.get("synthetic_set")]
    if not missing:
        return ""
    return (f"{len(missing)} run(s) trained on fakes without recording which set ({', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}); made by an older ganaug: retrain them to audit them")


def _gan_check(gan_of: Dict[str, Path], runs: List[Dict[str, Any]], train: Set[str], held_out: Set[str],
               source_dups: Set[str]) -> Dict[str, str]:
    name = "the GAN saw only training images"
    sets = sorted({r["synthetic_set"] for r in runs if r.get("synthetic_set")})
    if not sets:
        unknown = _unrecorded_sets(runs)
        return _check(name, "unverified", unknown) if unknown else _check(name, "ok", "no arm used a GAN")
    problems, unverified, n = [], [], 0
    for rel in sets:
        gan_dir = gan_of.get(rel)
        if gan_dir is None:
            unverified.append(f"synthetic set '{rel}' belongs to no GAN of this config")
            continue
        f = gan_dir / TRAINED_ON
        if not f.is_file():
            unverified.append(f"'{gan_dir}' has no {TRAINED_ON}")
            continue
        seen = json.loads(f.read_text())["hashes"]
        n += 1
        outside = [h for h in seen if h not in train]
        leaked = [h for h in seen if h in held_out and h not in source_dups]
        if leaked:
            problems.append(f"the GAN in '{gan_dir}' trained on {len(leaked)} validation/test image(s)")
        elif outside:
            problems.append(f"the GAN in '{gan_dir}' trained on {len(outside)} image(s) not in the split's training set")
    if problems:
        return _check(name, "violation", "; ".join(problems))
    if unverified:
        return _check(name, "unverified", "; ".join(unverified) + " (made by an older ganaug; retrain to record it)")
    return _check(name, "ok", f"{n} GAN(s): every image they trained on is a training image (content hashes)")


def _budget_check(runs: List[Dict[str, Any]]) -> Dict[str, str]:
    name = "every arm had the same step budget"
    budgets = {(r["budget"]["steps"], r["budget"]["batch_size"]) for r in runs}
    shown = {(r["budget"]["steps"] * r["budget"]["batch_size"]) for r in runs}
    seen = {sum(r.get("seen", {}).values()) for r in runs}
    if len(budgets) > 1:
        per = sorted({f"{r['arm']}: {r['budget']['steps']} x {r['budget']['batch_size']}" for r in runs})
        return _check(name, "violation", "runs differ in steps x batch size: " + ", ".join(per[:6]))
    if seen and seen != shown:
        return _check(name, "violation", f"runs saw {sorted(seen)} training images, expected {sorted(shown)}")
    steps, batch = next(iter(budgets))
    return _check(name, "ok", f"{len(runs)} runs, each {steps} steps of {batch} images")


def _selection_check(runs: List[Dict[str, Any]], manifest: Dict[str, Any]) -> Dict[str, str]:
    name = "model selection never used the test set"
    problems: List[str] = []
    n_val = sum(manifest["counts"]["val"].values())
    for r in runs:
        proto = r.get("protocol", {})
        where = f"{r['arm']} seed {r['seed']}"
        if proto.get("model_selection") != "real validation set":
            problems.append(f"{where} selected weights on {proto.get('model_selection')!r}")
        if proto.get("test_evaluations") != 1:
            problems.append(f"{where} scored the test set {proto.get('test_evaluations')} times")
        if r["val"]["n"] != n_val:
            problems.append(f"{where} validated on {r['val']['n']} images, the split has {n_val}")
        if r.get("data_fingerprint") != manifest["fingerprint"]:
            problems.append(f"{where} trained on another split")
        step: Optional[int] = r["val"].get("selected_step")
        if step is None or not 0 < step <= r["budget"]["steps"]:
            problems.append(f"{where} selected step {step} outside its {r['budget']['steps']} steps")
    if problems:
        return _check(name, "violation", "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
    return _check(name, "ok", f"weights chosen on {n_val} real validation images; test scored once per run")
