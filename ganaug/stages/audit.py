"""The protocol audit behind every table: what makes a number trustworthy, checked from the run folder.

Each check reads the artefacts the stages left (the split manifest with its indices and content hashes,
each synthetic set, and the records a stage writes of what it did as it did it: each GAN's and the domain
extractor's `trained_on.json`, the content hash of every image its training code was handed, hashed there;
each classifier's `result.json`, the content hash of every image model selection scored and how many times
it read the test set) and says ok, note, unverified or violation. What was trained or selected on is compared
with the manifest's parts by content, as multisets: indices say what a stage asked for, not what it used.
`compare` prints everything but a pass under the table and records every check in its JSON. Every check can
fail: tests/test_audit_faults.py makes each one fail by injecting its fault where it would happen.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..config import Config
from ..data.images import image_hashes
from ..data.synthetic import EDITS_FILE, TENSOR_FILE, read_synthetic
from .layout import SELECTION, TRAINED_ON, paths

PARTS = ("train", "val", "test")
# The order a check's status is reported in: the worst first.
SEVERITY = {"violation": 0, "unverified": 1, "note": 2, "ok": 3}


def _check(name: str, status: str, detail: str) -> Dict[str, str]:
    return {"check": name, "status": status, "detail": detail}


def _examples(items: List[str], k: int = 3) -> str:
    return ", ".join(items[:k]) + (" ..." if len(items) > k else "")


def audit(cfg: Config, results: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, str]]:
    """Every protocol check on the runs `compare` counts."""
    p = paths(cfg)
    if not p.manifest.is_file():
        return [_check("split manifest", "unverified", f"no manifest at '{p.manifest}'; nothing can be checked")]
    manifest = json.loads(p.manifest.read_text())
    runs = [r for rs in results.values() for r in rs]
    # Each synthetic set (as runs name it, relative to out_dir) and the GAN that made it.
    gan_of = {p.relative(p.samples(rep)): p.gan(rep) for rep in cfg.replicates}
    edits = edit_check(p.root, [r["synthetic_set"] for r in runs if r.get("synthetic_set")], manifest)
    return [split_check(manifest), _synthetic_check(p.root, runs, manifest),
            _gan_check(gan_of, runs, manifest, p.features / TRAINED_ON),
            _budget_check(runs), _selection_check(runs, manifest)] + ([edits] if edits else [])


def split_check(manifest: Dict[str, Any]) -> Dict[str, str]:
    """Train, validation and test share no source image (by index and by id).

    Distinct source images with identical pixels (MNIST has a few) are no leak by ganaug, but they flatter
    every arm alike: their count is a note, not a pass.
    """
    name = "split: train, validation and test are disjoint"
    problems = []
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = sorted(set(manifest[a]["indices"]) & set(manifest[b]["indices"]))
        if shared:
            where = {i: manifest[b]["ids"][manifest[b]["indices"].index(i)] for i in shared[:3]}
            problems.append(f"{a} and {b} share {len(shared)} image index(es) "
                            f"(e.g. {_examples([f'index {i} ({where[i]!r})' for i in shared])})")
        ids = sorted(set(manifest[a]["ids"]) & set(manifest[b]["ids"]))
        if ids and not shared:
            problems.append(f"{a} and {b} share {len(ids)} image id(s) under different indices (e.g. {_examples(ids)})")
    for part in PARTS:
        twice = [i for i, k in Counter(manifest[part]["indices"]).items() if k > 1]
        if twice:
            problems.append(f"{part} lists {len(twice)} index(es) more than once (e.g. index {twice[0]})")
    if problems:
        return _check(name, "violation", "; ".join(problems) + "; redo the split with `ganaug split --force`")
    train_h = set(manifest["train"]["hashes"])
    dups = {part: sum(h in train_h for h in manifest[part]["hashes"]) for part in ("val", "test")}
    dups["test"] += sum(h in set(manifest["val"]["hashes"]) and h not in train_h for h in manifest["test"]["hashes"])
    n = {part: len(manifest[part]["indices"]) for part in PARTS}
    if any(dups.values()):
        said = " and ".join(f"{k} {part} image(s)" for part, k in dups.items() if k)
        return _check(name, "note", f"disjoint by index ({n['train']} train, {n['val']} validation, {n['test']} test); "
                                    f"{said} have identical pixels to an image of an earlier part: distinct images the "
                                    "source holds twice, which flatter every arm alike")
    return _check(name, "ok", f"{n['train']} train, {n['val']} validation, {n['test']} test images; "
                              "no index, id or content shared")


def _not_recorded(runs: List[Dict[str, Any]]) -> List[str]:
    """Runs made before ganaug recorded what model selection scored and how often the test set was read."""
    return [f"{r['arm']} seed {r['seed']}" for r in runs if "validation_hashes" not in r.get("protocol", {})]


def _synthetic_check(root: Path, runs: List[Dict[str, Any]], manifest: Dict[str, Any]) -> Dict[str, str]:
    name = "no synthetic image in validation or test"
    val = Counter(manifest["val"]["hashes"])
    train, held_out = set(manifest["train"]["hashes"]), set(manifest["val"]["hashes"]) | set(manifest["test"]["hashes"])
    parts = {"training": train, "test": set(manifest["test"]["hashes"])}  # where a foreign validation image came from
    problems, notes = [], []
    for r in runs:
        hashes = r.get("protocol", {}).get("validation_hashes")
        if hashes is None:
            continue
        foreign = Counter(hashes) - val
        if foreign:
            where: Counter = Counter()
            for h, k in foreign.items():
                where[_parts_holding(h, parts) or ("repeated validation" if h in val else "")] += k
            said = ", ".join(_images(k, part) if part else f"{k} in no part of the split" for part, k in sorted(where.items()))
            problems.append(f"{r['arm']} seed {r['seed']} validated on {sum(foreign.values())} image(s) that are not "
                            f"the split's validation images ({said})")
    sets = sorted({r["synthetic_set"] for r in runs if r.get("synthetic_set")})
    for rel in sets:
        f = root / rel / TENSOR_FILE
        if not f.is_file():
            problems.append(f"synthetic set '{rel}' is missing, so it cannot be checked")
            continue
        fakes = set(image_hashes(read_synthetic(root / rel)[0]))
        found = fakes & held_out
        copied = found & train  # a held-out image whose pixels are also a training image's: a copy, not a leak
        if found - copied:
            problems.append(f"{len(found - copied)} image(s) of '{rel}' are pixel-identical to validation/test images")
        if copied:
            notes.append(f"{len(copied)} image(s) of '{rel}' are pixel copies of training images that the source also "
                         "holds in validation/test")
    unverified = _not_recorded(runs)
    unrecorded = _unrecorded_sets(runs)
    if problems:
        return _check(name, "violation", "; ".join(problems))
    if unverified or unrecorded:
        said = [f"{len(unverified)} run(s) made by an older ganaug did not record the images they validated on "
                f"({_examples(unverified)}); retrain them (`ganaug train-clf --force`) to audit them"] if unverified else []
        return _check(name, "unverified", "; ".join(said + ([unrecorded] if unrecorded else [])))
    what = f"{len(sets)} synthetic set(s) hashed: none equals a validation or test image" if sets else "no arm used fakes"
    what += "; every run validated on the split's real validation images (content hashes)"
    if notes:
        return _check(name, "note", what + "; but " + "; ".join(notes))
    return _check(name, "ok", what)


def edit_check(root: Path, sets: List[str], manifest: Dict[str, Any]) -> Optional[Dict[str, str]]:
    """Every edit of an edited set (`sample.mode: edit`; `sets` relative to `root`, those without edits.npz skipped)
    started from a training image: its recorded source hash (of the very tensor edited, hashed where it was handed
    to the editor) is a training image's, the one at its recorded index. An edit of a validation or test image would
    leak it into training. None when no set is edited."""
    edited = [rel for rel in sorted(set(sets)) if (root / rel / EDITS_FILE).is_file()]
    if not edited:
        return None
    name = "edits started from training images"
    train = manifest["train"]["hashes"]
    train_h = set(train)
    held_out = {"validation": set(manifest["val"]["hashes"]), "test": set(manifest["test"]["hashes"])}
    problems, n, sources = [], 0, set()
    for rel in edited:
        try:
            with np.load(root / rel / EDITS_FILE) as e:
                hashes, index = [str(h) for h in e["source_hash"]], e["source_index"].tolist()
        except (OSError, ValueError, KeyError) as err:
            problems.append(f"'{rel}/{EDITS_FILE}' cannot be read ({err})")
            continue
        n_fakes = len(read_synthetic(root / rel)[1]) if (root / rel / TENSOR_FILE).is_file() else len(hashes)
        if not len(hashes) == len(index) == n_fakes:
            problems.append(f"'{rel}/{EDITS_FILE}' records {len(hashes)} source hashes and {len(index)} source indices "
                            f"for {n_fakes} fakes")
            continue
        n += len(hashes)
        sources |= set(hashes)
        foreign = Counter(h for h in hashes if h not in train_h)
        if foreign:
            where: Counter = Counter()
            for h, k in foreign.items():
                where[_parts_holding(h, held_out)] += k
            said = ", ".join(_images(k, part) if part else f"{k} whose source is not an image of this split"
                             for part, k in sorted(where.items()))
            problems.append(f"{sum(foreign.values())} of {len(hashes)} edits in '{rel}' started from images that are not "
                            f"training images ({said})")
        moved = sum(1 for k, h in zip(index, hashes) if h in train_h and not (0 <= k < len(train) and train[k] == h))
        if moved:
            problems.append(f"{moved} edit(s) in '{rel}' record a source index that does not hold their source image")
    if problems:
        return _check(name, "violation", "; ".join(problems) + "; sample again (`ganaug sample --force`): edits must "
                                         "start from the split's training images")
    across = f" in {len(edited)} sets" if len(edited) > 1 else ""
    return _check(name, "ok", f"{n} edits of {len(sources)} training images{across}, every source a training image "
                              "(content hashes, each at its recorded index)")


def _unrecorded_sets(runs: List[Dict[str, Any]]) -> str:
    """Runs that trained on fakes without naming their synthetic set (made before ganaug recorded it)."""
    missing = [f"{r['arm']} seed {r['seed']}" for r in runs
               if r["arm_config"]["data"] != "real" and not r.get("synthetic_set")]
    if not missing:
        return ""
    return (f"{len(missing)} run(s) trained on fakes without recording which set ({_examples(missing)}); "
            "made by an older ganaug: retrain them to audit them")


def _parts_holding(h: str, parts: Dict[str, set]) -> str:
    """The parts of the split whose images have content hash `h` ('validation/test' for twins), or ''."""
    return "/".join(name for name, hashes in parts.items() if h in hashes)


def _images(k: int, what: str) -> str:
    return f"{k} {what} image{'' if k == 1 else 's'}"


def _differences(hashes: List[str], manifest: Dict[str, Any]) -> List[str]:
    """How the images a model's training code was handed differ from the split's training part, compared as
    multisets of content hashes; [] when they are the training images, each as often as the split holds it.

    A hash of a training image seen more often than the split holds it is a held-out twin (MNIST holds distinct
    images with identical pixels in several parts) or a repeat: either way not the training part.
    """
    seen, train = Counter(hashes), Counter(manifest["train"]["hashes"])
    held_out = {"validation": set(manifest["val"]["hashes"]), "test": set(manifest["test"]["hashes"])}
    where: Counter = Counter()
    extra = outside = 0
    twins = False
    for h, k in (seen - train).items():
        if h in train:
            extra += k
            twins = twins or bool(_parts_holding(h, held_out))
        elif _parts_holding(h, held_out):
            where[_parts_holding(h, held_out)] += k
        else:
            outside += k
    missing = sum((train - seen).values())
    out = []
    if where:
        parts = ", ".join(f"{k} {part}" for part, k in sorted(where.items(), key=lambda kv: ("test" in kv[0], kv[0])))
        out.append(f"trained on {sum(where.values())} validation/test image(s) ({parts})")
    if extra:
        out.append(f"trained on {extra} more {'copy of a training image' if extra == 1 else 'copies of training images'} "
                   "than the split holds"
                   + (" (pixels that validation/test images share: held-out twins?)" if twins else ""))
    if outside:
        out.append(f"trained on {outside} image(s) not in the split")
    if missing:
        out.append(f"never saw {missing} of the {sum(train.values())} training images")
    return out


def _seen(f: Path) -> Tuple[Optional[List[str]], bool]:
    """The content hashes a `trained_on.json` records of the images handed to training, and whether they were hashed
    where training ran. An older ganaug hashed, in the stage, the tensor the stage then handed to training: still
    evidence of the images (its indices are not), so it is checked the same way and said. None: no hashes at all."""
    seen = json.loads(f.read_text())
    return seen.get("hashes"), "hashed_in" in seen


def _gan_check(gan_of: Dict[str, Path], runs: List[Dict[str, Any]], manifest: Dict[str, Any],
               domain: Path) -> Dict[str, str]:
    """What every GAN (and the domain feature extractor) trained on, from the content hashes its training code
    recorded of the images it was handed, against the split's parts; indices are not evidence."""
    name = "the GAN saw only training images"
    sets = sorted({r["synthetic_set"] for r in runs if r.get("synthetic_set")})
    unknown = "" if sets else _unrecorded_sets(runs)
    if not sets and not domain.is_file():
        return _check(name, "unverified", unknown) if unknown else _check(name, "ok", "no arm used a GAN")
    problems: List[str] = []
    unverified, n, said, older = [unknown] if unknown else [], 0, [], 0
    test_only = set(manifest["test"]["hashes"]) - set(manifest["val"]["hashes"])
    val_h = set(manifest["val"]["hashes"])
    retrain = "made by an older ganaug; retrain to record it"
    for rel in sets:
        gan_dir = gan_of.get(rel)
        if gan_dir is None:
            unverified.append(f"synthetic set '{rel}' belongs to no GAN of this config")
            continue
        f = gan_dir / TRAINED_ON
        if not f.is_file():
            unverified.append(f"'{gan_dir}' has no {TRAINED_ON} ({retrain})")
            continue
        hashes, where = _seen(f)
        if hashes is None:
            unverified.append(f"'{f}' does not hold the content hashes of the images handed to training ({retrain})")
            continue
        n += 1
        older += not where
        wrong = _differences(hashes, manifest)
        if wrong:
            problems.append(f"the GAN in '{gan_dir}' " + " and ".join(wrong))
        chosen = gan_dir / SELECTION
        if chosen.is_file():  # select: best-fid - its snapshot was chosen by FID on these images
            hashes = json.loads(chosen.read_text()).get("val_hashes") or []
            on_test = sum(h in test_only for h in hashes)
            if on_test or not set(hashes) <= val_h:
                problems.append(f"the GAN in '{gan_dir}' chose its snapshot on {on_test or len(set(hashes) - val_h)} "
                                "image(s) that are not validation images")
            else:
                said.append(f"'{gan_dir}' chose its snapshot on the {len(hashes)} validation images")
    if domain.is_file():  # the features of the validation FID (and of `evaluate`)
        hashes, where = _seen(domain)
        older += hashes is not None and not where
        wrong = _differences(hashes, manifest) if hashes is not None else []
        if hashes is None:
            unverified.append(f"the domain feature extractor's '{domain}' does not hold the content hashes of the "
                              f"images handed to training ({retrain})")
        elif wrong:
            problems.append("the domain feature extractor " + " and ".join(wrong))
        else:
            said.append("the domain feature extractor's too" if n else
                        "the domain feature extractor's training images are the split's (content hashes)")
    if problems:
        return _check(name, "violation", "; ".join(problems))
    if unverified:
        return _check(name, "unverified", "; ".join(unverified))
    n_train = len(manifest["train"]["hashes"])
    what = (f"{n} GAN(s): the content hashes of the {n_train} images handed to training are the split's training "
            "images, each as often as the split holds it") if n else "no arm used a GAN"
    if older:
        said.append(f"{older} record(s) written by an older ganaug hashed the tensor its stage handed to training, "
                    "beside the loop rather than in it")
    return _check(name, "ok", what + "".join(f"; {x}" for x in said))


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
    test_only = set(manifest["test"]["hashes"]) - set(manifest["val"]["hashes"])
    for r in runs:
        proto = r.get("protocol", {})
        where = f"{r['arm']} seed {r['seed']}"
        if "validation_hashes" in proto:
            reads = proto.get("test_evaluations")
            if reads != 1:
                problems.append(f"{where} read the test set {reads} times")
            on_test = sum(h in test_only for h in proto["validation_hashes"])
            if on_test:
                problems.append(f"{where} selected its weights on {on_test} test image(s)")
        if r["val"]["n"] != n_val:
            problems.append(f"{where} validated on {r['val']['n']} images, the split has {n_val}")
        if r.get("data_fingerprint") != manifest["fingerprint"]:
            problems.append(f"{where} trained on another split")
        step: Optional[int] = r["val"].get("selected_step")
        if step is None or not 0 < step <= r["budget"]["steps"]:
            problems.append(f"{where} selected step {step} outside its {r['budget']['steps']} steps")
    if problems:
        return _check(name, "violation", "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
    old = _not_recorded(runs)
    if old:
        return _check(name, "unverified", f"{len(old)} run(s) made by an older ganaug did not count their test-set reads "
                                          f"({_examples(old)}); retrain them (`ganaug train-clf --force`) to audit them")
    return _check(name, "ok", f"weights chosen on {n_val} real validation images (content hashes); "
                              "each run read the test set once, to score it")
