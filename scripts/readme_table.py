"""Copy the bundled default's table from its run folder into the README, so its numbers are regenerated, not
retyped: the main table and its notes from `<run>/compare/table.md` (the budget check's long notes stay there),
between the README's `<!-- default-table -->` markers.

    ganaug run -c configs/mnist5k-cgan.yaml && python scripts/readme_table.py [runs/mnist5k-cgan]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- default-table -->", "<!-- /default-table -->"
LONG_NOTES = ("Budget check", "Generator budget check")  # in the run's table.md, with a pointer here


def table_block(run: Path) -> str:
    text = (run / "compare" / "table.md").read_text()
    lines = text.split("\n\n", 1)[1].splitlines()  # after the title
    out = []
    for line in lines:
        if line.startswith("Sample quality") or line.startswith("## "):
            break
        if line.startswith(LONG_NOTES):
            continue
        out.append(line)
    body = "\n".join(out).strip()
    if "(budget?)" in body:
        body += (f"\n(budget?): still improving on validation at the end of its steps; the budget check's notes are in "
                 f"`{run.relative_to(ROOT) if run.is_relative_to(ROOT) else run}/compare/table.md`.")
    return body


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "runs" / "mnist5k-cgan").resolve()
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        sys.exit(f"error: README.md has no {START} ... {END} block; add the markers around the default's table")
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: f"{START}\n{table_block(run)}\n{END}", text,
                 flags=re.S)
    readme.write_text(new)
    print(f"README.md: the default's table from {run}/compare/table.md")


if __name__ == "__main__":
    main()
