"""The report in a real browser: headless Chromium lays out the report of a tiny finished run (arms with long names)
at 1280 and 800 px, and every verdict must be on screen without scrolling; the terminal's compact table fits in
120 columns and the full table is in compare/table.md; closest.png is a legible grid, not a strip."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ganaug.cli import main
from ganaug.config import load_config
from ganaug.stages import run_compare, run_report
from ganaug.stages.evaluate import closest_pairs_grid

from .conftest import finished_run

LONG_ARMS = [
    {"name": "real-images-only-the-reference", "data": "real"},
    {"name": "synthetic-images-only-from-the-conditional-gan", "data": "synthetic"},
    {"name": "half-real-half-synthetic-in-every-batch-p0.5", "data": "mixed", "mix": {"p_real": 0.5}},
    {"name": "real-images-with-classic-augmentation", "data": "real", "augment": "classic"},
]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(not CHROMIUM and not os.environ.get("GANAUG_REQUIRE_CHROMIUM"),
                                    reason="no Chromium here")

# Run after the page has loaded (images included): for every table with a "verdict" column, each of that column's
# cells (header too) as laid out, with the part of the page it can be seen in: the viewport, narrowed by every
# ancestor that clips or scrolls its overflow. Also the page's own width and every image's box.
MEASURE = """
<script>
window.addEventListener('load', () => {
  const vw = document.documentElement.clientWidth;
  const seen = (el) => {
    let left = 0, right = vw;
    for (let a = el.parentElement; a; a = a.parentElement) {
      if (a === document.body || a === document.documentElement) continue;
      if (getComputedStyle(a).overflowX !== 'visible') {
        const b = a.getBoundingClientRect();
        left = Math.max(left, b.left); right = Math.min(right, b.right);
      }
    }
    return [left, right];
  };
  const cells = [];
  for (const table of document.querySelectorAll('table')) {
    const head = [...table.querySelectorAll('thead th')];
    const col = head.findIndex(th => th.textContent.trim() === 'verdict');
    if (col < 0) continue;
    for (const c of [head[col], ...[...table.querySelectorAll('tbody tr')].map(tr => tr.children[col])]) {
      const r = c.getBoundingClientRect(), [left, right] = seen(c);
      cells.push({text: c.textContent.trim(), left: r.left, right: r.right, seen_left: left, seen_right: right,
                  scroll_width: c.scrollWidth, client_width: c.clientWidth});
    }
  }
  const images = [...document.querySelectorAll('img')].map(i => {
    const r = i.getBoundingClientRect(); return {left: r.left, right: r.right, width: r.width};
  });
  const out = document.createElement('script');
  out.type = 'application/json'; out.id = 'measured';
  out.textContent = JSON.stringify({viewport: vw, inner_width: innerWidth, page_width: document.documentElement.scrollWidth,
                                    cells, images});
  document.body.appendChild(out);
});
</script>
"""


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run (a GAN, its fakes evaluated, three seeds) whose arms have long names."""
    return finished_run(tmp_path_factory.mktemp("render"), LONG_ARMS)


def measure(page: Path, width: int, tmp_path: Path) -> Dict[str, Any]:
    """Lay `page` out in headless Chromium at `width` px and return what MEASURE found."""
    probe = tmp_path / f"probe-{width}.html"
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-quic",
                          "--no-first-run", "--disable-background-networking", "--disable-component-update",
                          "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                          f"--window-size={width},2000", "--virtual-time-budget=5000", "--dump-dom", probe.resolve().as_uri()],
                         check=True, capture_output=True, text=True, timeout=120)
    found = re.search(r'<script type="application/json" id="measured">(.*?)</script>', out.stdout, re.S)
    assert found, out.stdout[-2000:]
    return json.loads(found.group(1))


# .ci/run installs Debian's chromium and sets GANAUG_REQUIRE_CHROMIUM=1, so in CI these tests run or fail.
@needs_chromium
@pytest.mark.parametrize("width", [1280, 800])
def test_every_verdict_is_on_screen_without_scrolling(long_run: Path, tmp_path: Path, width: int) -> None:
    assert CHROMIUM, "GANAUG_REQUIRE_CHROMIUM is set but no chromium is on PATH"
    cfg = load_config(long_run, [f"out_dir={load_config(long_run).out_dir}"])
    page = run_report(cfg, tmp_path / "report.html")
    m = measure(page, width, tmp_path)
    assert m["inner_width"] == width  # the window size took
    arms = [a["name"] for a in LONG_ARMS]
    tables = [c for c in m["cells"] if c["text"] == "verdict"]
    assert len(tables) >= 2  # the Verdicts table and the result in full
    assert len(m["cells"]) == len(tables) * (1 + len(arms))
    for c in m["cells"]:
        assert c["text"], c  # a verdict is written in every row
        assert 0 <= c["left"] and c["right"] <= m["viewport"], (width, c)  # inside the window
        assert c["seen_left"] <= c["left"] and c["right"] <= c["seen_right"] + 0.5, (width, c)  # not scrolled away
        assert c["scroll_width"] <= c["client_width"], (width, c)  # its text not cut inside the cell
    # The page itself never scrolls sideways: a table too wide scrolls in its own box; images fit.
    assert m["page_width"] <= m["viewport"], (width, m["page_width"])
    assert m["images"] and all(0 <= i["left"] and i["right"] <= m["viewport"] + 0.5 for i in m["images"]), m["images"]


def _columns(lines: List[str]) -> List[List[Dict[str, str]]]:
    """The terminal tables as rows of {column: text}: columns sit under the dashes line, a row goes on over the next
    lines while its accuracy cell is empty; an arm name's pieces join as written, other cells' with spaces."""
    tables = []
    for i, line in enumerate(lines):
        if not re.fullmatch(r"-+( {2,}-+)+", line):
            continue
        spans = [m.span() for m in re.finditer(r"-+", line)]
        names = [lines[i - 1][a:b if k < len(spans) - 1 else None].strip() for k, (a, b) in enumerate(spans)]
        rows: List[Dict[str, List[str]]] = []
        for row in lines[i + 1:]:
            if not row.strip():
                break
            cells = [row[a:spans[k + 1][0] if k < len(spans) - 1 else None].strip() for k, (a, _) in enumerate(spans)]
            if cells[1] or not rows:
                rows.append({n: [] for n in names})
            for n, c in zip(names, cells):
                if c:
                    rows[-1][n].append(c)
        tables.append([{n: ("" if n == "arm" else " ").join(v) for n, v in r.items()} for r in rows])
    return tables


def test_the_terminal_shows_the_compact_table_and_table_md_the_full_one(long_run: Path) -> None:
    cfg = load_config(long_run)
    said = run_compare(cfg)
    lines = said.splitlines()
    assert max(map(len, lines)) <= 120, max(lines, key=len)
    full = (Path(cfg.out_dir) / "compare" / "table.md").read_text()
    table = json.loads((Path(cfg.out_dir) / "compare" / "table.json").read_text())
    (rows,) = _columns(lines)
    assert [r["arm"] for r in rows] == [a["name"] for a in LONG_ARMS]  # long names wrapped, never cut
    for r, want in zip(rows, table["rows"]):
        acc = f"{100 * want['acc_mean']:.2f} ± {100 * want['acc_std']:.2f}"
        assert acc in r.values() and want["verdict"] in " ".join(r.values()), (r, want)
        assert f"| {want['arm']} |" in full and acc in full  # every column of the full table is in table.md
    for r in rows[1:]:
        delta = next(v for k, v in r.items() if k.startswith("Δ"))
        assert re.fullmatch(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", delta), delta
    assert "p (Holm)" in full and "macro-F1" in full and "Sample quality" in full
    assert "p (Holm)" not in said and str(Path(cfg.out_dir) / "compare" / "table.md") in said
    # `ganaug compare` and `ganaug run` print it so.
    for cmd in (["compare", "-c", str(long_run)], ["run", "-c", str(long_run)]):
        r = CliRunner().invoke(main, cmd)
        assert r.exit_code == 0, r.output
        assert max(len(x) for x in r.stdout.splitlines()) <= 120 and said.splitlines()[0] in r.stdout


@pytest.mark.parametrize("k, size", [(1, 8), (3, 16), (16, 16), (16, 28), (7, 64), (40, 28)])
def test_closest_pairs_are_a_legible_grid(k: int, size: int) -> None:
    fakes = torch.randint(0, 256, (k, 1, size, size), dtype=torch.uint8)
    train = torch.randint(0, 256, (k, 1, size, size), dtype=torch.uint8)
    grid = closest_pairs_grid(fakes, train)
    assert grid.dtype == torch.uint8 and grid.shape[0] == 1
    h, w = grid.shape[1:]
    assert h >= 48 and w >= 96  # no thumbnail-sized strip
    if k >= 3:
        assert 0.25 <= h / w <= 1.5, (k, size, h, w)
    scale = max(1, -(-64 // size))  # small images drawn at least 64 px, pixel for pixel (nearest)
    tile = fakes[0, 0].repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    t = scale * size
    assert any(torch.equal(grid[0, y:y + t, x:x + t], tile) for y in range(16) for x in range(16))  # first, top left


def test_the_runs_closest_pairs_png_is_not_a_strip(long_run: Path) -> None:
    png = Path(load_config(long_run).out_dir) / "evaluate" / "closest.png"
    with Image.open(png) as im:
        w, h = im.size
    assert w >= 300 and h >= 100 and 0.25 <= h / w <= 1.5, (w, h)
