"""The bundled default's wall time, before and after: this checkout against another commit, side by side.

    python scripts/bench_default.py --before <commit> [--config configs/mnist5k-cgan.yaml] [--runs 1]

Checks the other commit out into a temporary git worktree, then runs `ganaug run -c CONFIG` from scratch (its
run folder removed first) in each tree as whole processes, alternating this tree, the other, this, ... (the
pairing timer of scripts/pairing.py), and prints min / median / max wall seconds of each and the ratio
before / after within each pair. Each tree runs its own code and writes its run folder into a temporary folder
(never the config's own); the tables each printed are left in the logs, and whether they are the same is said at
the end. A run takes minutes: one pair is the default. Never imported by the package.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairing import pair, report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def command(tree: Path, config: str, out_dir: Path) -> list:
    """Run the default from scratch with `tree`'s code, into `out_dir` (removed first; the config's own run folder
    is not touched)."""
    script = (f"import os, shutil, sys; os.chdir({str(tree)!r}); shutil.rmtree({str(out_dir)!r}, ignore_errors=True); "
              f"sys.path.insert(0, {str(tree)!r}); "
              "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in str(f)]; "  # this tree's ganaug only
              f"from ganaug.cli import main; main(['run', '-c', {config!r}, '--set', 'out_dir={out_dir}'])")
    return [sys.executable, "-c", script]


def table_of(log: str, out_dir: Path) -> str:
    """The verdicts a run printed on stdout, its own run folder's name taken out (the two write to two folders)."""
    return Path(log).read_text(errors="replace").replace(str(out_dir), "RUN").strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the commit to compare against (a hash, tag or branch)")
    ap.add_argument("--config", default="configs/mnist5k-cgan.yaml")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--logs", type=Path, default=None)
    args = ap.parse_args()
    before = Path(tempfile.mkdtemp(prefix="ganaug-before-"))
    added = subprocess.run(["git", "worktree", "add", "--detach", "-f", str(before), args.before], cwd=ROOT,
                           capture_output=True, text=True)
    if added.returncode:
        print(f"error: --before '{args.before}' is not a commit git can check out here "
              f"({(added.stderr.strip().splitlines() or ['?'])[-1]}); give a hash, tag or branch", file=sys.stderr)
        raise SystemExit(2)
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=before, capture_output=True, text=True,
                             check=True).stdout.strip()
        here = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        runs = Path(tempfile.mkdtemp(prefix="ganaug-default-runs-"))
        result = pair(command(ROOT, args.config, runs / "after"), command(before, args.config, runs / "before"),
                      runs=args.runs, warmup=args.warmup, log_dir=args.logs)
        report(result, f"after ({here}, this tree)", f"before ({rev})")
        same = table_of(result["a"]["stdout"][-1], runs / "after") == table_of(result["b"]["stdout"][-1],
                                                                             runs / "before")
        print(f"the two printed {'the same' if same else 'different'} tables (stdout of the last pair: "
              f"{result['a']['stdout'][-1]}, {result['b']['stdout'][-1]})")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    main()
