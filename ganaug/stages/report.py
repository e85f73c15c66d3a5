"""Stage `report`: one self-contained HTML file (images embedded, no network) with the config, the table,
the audit, the plots and the sample grids of a run folder."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from PIL import Image

from ..config import Config, Rep, sweep_experiments, to_dict
from ..errors import StageError
from ..plots import plot_gan_metrics
from ..progress import echo
from ..utils import atomic_write_text, read_jsonl
from .costs import cost_html
from .exchange import render_html as exchange_html
from .layout import paths
from .predictive import render_html as predictive_html
from .quality import rep_tag
from .sweep import compare_all
from .table import EXTRA_HEADING, pct, table_cells, table_head

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;
     padding:0 1em;color:#222;line-height:1.45;overflow-wrap:break-word}
h1{margin-bottom:.1em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#666;font-size:.9em} .scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.84em;margin:.6em 0}
table.verdicts{font-size:.95em}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:right;white-space:nowrap}
th{background:#f3f3f3;white-space:normal;vertical-align:bottom;min-width:3em}
td:first-child,th:first-child,td.verdict,th.verdict,td.wrap,th.wrap{text-align:left}
td:first-child,th:first-child{position:sticky;left:0;z-index:1}
td:first-child{background:#fff;white-space:normal;overflow-wrap:anywhere;min-width:6em;max-width:16em}
td.verdict{white-space:normal;min-width:7em} td.wrap{white-space:normal;min-width:7em} td.wrap.num{text-align:right}
.nw{white-space:nowrap}
tr.baseline td{background:#f7f7ff}
.better{color:#0a7a2f;font-weight:600} .worse{color:#b3261e;font-weight:600} .nodiff{color:#555}
.ok{color:#0a7a2f} .violation{color:#b3261e;font-weight:700} .unverified{color:#a86b00;font-weight:600}
img{max-width:100%;height:auto}
figure{margin:1em 0} figure img{border:1px solid #eee}
img.grid{image-rendering:pixelated} figcaption{color:#555;font-size:.9em}
pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.85em}
@media (max-width:900px){body{margin:1em auto;padding:0 .6em} table{font-size:.75em} th,td{padding:.25em .3em}
  table.verdicts{font-size:.85em}}
"""


def _img(path: Path, caption: str, scale: int = 1, pixelated: bool = False) -> str:
    """A figure with the PNG inline; sample grids are drawn `scale` times larger, pixel for pixel (and never wider
    than the page: the browser then shrinks them, `pixelated` keeps their pixels square)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = ' class="grid"' if pixelated or scale > 1 else ""
    if scale > 1:
        with Image.open(path) as im:
            size += f' width="{im.width * scale}" height="{im.height * scale}"'
    return (f'<figure><img{size} alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _verdict_class(v: str) -> str:
    """better / worse (with or without a budget flag after it), else the grey of everything else."""
    return {"better": "better", "worse": "worse"}.get(v.split(" (")[0], "nodiff")


def _verdict_first(cells: List[str]) -> List[str]:
    """A row of the full table with its verdict (last) moved beside the arm's name, where no window hides it."""
    return [cells[0], cells[-1]] + cells[1:-1]


def _table(cfg: Config, rows: List[Dict[str, Any]]) -> str:
    """The full table: the arm, its verdict, then every number; wider than the window, it scrolls in its own box
    with the arm's name held at the left."""
    head = _verdict_first(table_head(cfg))
    wrap = {head.index("training data")}
    out = ['<div class="scroll"><table class="full"><thead><tr>'
           + "".join(f'<th{" class=verdict" if i == 1 else " class=wrap" if i in wrap else ""}>{html.escape(h)}</th>'
                     for i, h in enumerate(head))
           + "</tr></thead><tbody>"]
    for r in rows:
        arm, verdict, *cells = _verdict_first(table_cells(r))
        out.append(f'<tr class="{"baseline" if r["is_baseline"] else ""}"><td>{html.escape(arm)}</td>'
                   f'<td class="verdict {_verdict_class(verdict)}">{html.escape(verdict)}</td>'
                   + "".join(f'<td{" class=wrap" if i in wrap else ""}>{html.escape(c)}</td>'
                             for i, c in enumerate(cells, start=2)) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _verdicts(cfg: Config, rows: List[Dict[str, Any]]) -> str:
    """The first thing read: each arm's verdict and its paired difference, narrow enough for any window."""
    head = ["arm", "verdict", f"Δ acc vs {cfg.baseline_arm} (paired), {100 * cfg.compare.confidence:g}% CI",
            "test acc % (mean ± std)", "training data"]
    out = ['<div class="scroll"><table class="verdicts"><thead><tr>'
           + "".join(f'<th{ {"verdict": " class=verdict", "training data": " class=wrap"}.get(h, "")}>{html.escape(h)}</th>'
                     for h in head)
           + "</tr></thead><tbody>"]
    for r in rows:
        cells = table_cells(r)
        verdict = cells[-1]
        # The difference and its interval may sit on two lines; neither breaks inside.
        at = table_head(cfg).index(f"Δ acc vs {cfg.baseline_arm} (paired)")
        delta = "baseline" if r["is_baseline"] else (f'<span class="nw">{html.escape(cells[at])}</span> '
                                                     f'<span class="nw">{html.escape(cells[at + 1])}</span>')
        data = r["data"] + (f" ({r['generator']})" if r.get("generator") else "")
        out.append(f'<tr class="{"baseline" if r["is_baseline"] else ""}"><td>{html.escape(r["arm"])}</td>'
                   f'<td class="verdict {_verdict_class(verdict)}">{html.escape(verdict)}</td>'
                   f'<td class="wrap num">{delta}</td>'
                   f"<td>{html.escape(pct(r['acc_mean'], r['acc_std']))}</td>"
                   f'<td class="wrap">{html.escape(data)}</td></tr>')
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _quality(cfg: Config, table: Dict[str, Any]) -> List[str]:
    """The generator-quality table, the precision-recall plot, per-class numbers and the closest pairs."""
    from .quality import render_quality

    rows, evaluations = table.get("quality") or [], table.get("evaluations") or []
    if not rows:
        return []
    md = render_quality(rows, evaluations)
    lines = [line for line in md if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    body = ['<div class="scroll"><table><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>"]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        body.append("<tr>" + "".join(f'<td class="{"worse wrap" if "COPIES?" in c else ""}">{html.escape(c)}</td>'
                                     for c in cells) + "</tr>")
    body.append("</tbody></table></div>")
    parts = ["<h2>Sample quality</h2>", "\n".join(body)]
    parts += [f"<p>{html.escape(n)}</p>" for n in md[len(lines) + 3:] if n]
    p = paths(cfg)
    if (p.compare / "precision_recall.png").is_file():
        parts.append(_img(p.compare / "precision_recall.png", "Precision against recall: each synthetic set overall "
                          "(large marks) and per class (small), beside the floor: real held-out test images (the "
                          "square). Both axes share one range, zoomed to the points when they sit away from 0 or 1; "
                          "the plot's title then says where the axes run."))
    for e in evaluations:
        tag = rep_tag(Rep(e.get("generator"), e["gan_seed"]), e.get("family"))
        head = ["class", "FID", "floor FID", "precision", "recall", "density", "coverage", "copies (pixels)",
                "class consistency"]
        trs = []
        for cls, v in e["per_class"].items():
            f, fl = v["fake"], v["floor"]
            trs.append("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in [
                cls, "-" if f is None else f"{f['fid']:.2f}", "-" if fl is None else f"{fl['fid']:.2f}",
                *("-" if f is None else f"{f[k]:.3f}" for k in ("precision", "recall", "density", "coverage")),
                f"{e['copies']['pixels']['per_class'][cls]['share']:.1%}",
                f"{e['class_consistency']['per_class'][cls]:.1%}"]) + "</tr>")
        parts.append(f"<details><summary>Per class{html.escape(tag)}</summary><div class=\"scroll\"><table><thead><tr>"
                     + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>" + "".join(trs)
                     + "</tbody></table></div></details>")
        closest = p.evaluate(Rep(e.get("generator"), e["gan_seed"])) / "closest.png"
        if closest.is_file():
            parts.append(_img(closest, f"The fakes nearest to a training image (in pixels){tag}, nearest first, row by row: "
                                       "each fake (left) beside that training image as it matched (right)", pixelated=True))
    return parts


def _runs_table(runs: List[Dict[str, Any]]) -> str:
    head = ["arm", "seed", "GAN seed", "val acc %", "selected step", "test acc %", "macro-F1 %", "train s"]
    out = ['<div class="scroll"><table><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in runs:
        cells = [r["arm"], str(r["seed"]), "-" if r.get("gan_seed") is None else str(r["gan_seed"]),
                 f"{100 * r['val']['accuracy']:.2f}", str(r["val"]["selected_step"]), f"{100 * r['test']['accuracy']:.2f}",
                 f"{100 * r['test']['macro_f1']:.2f}", f"{r.get('train_seconds', 0):.0f}"]
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


LOSSES = {"vae": "the negative ELBO, its reconstruction term and the KL term, in nats per image",
          "diffusion": "the denoising objective, the mean squared error of the predicted noise (or v)"}


def _gan_sections(cfg: Config) -> List[str]:
    """Training curves (drawn now when an older run lacks them), the last fixed-noise grid and the
    real-vs-synthetic grid of each GAN."""
    p = paths(cfg)
    parts: List[str] = []
    for rep in cfg.replicates:
        gan_dir, samples_dir = p.gan(rep), p.samples(rep)
        g = cfg.gen(rep.generator)
        tag = rep_tag(rep, g.name)
        if cfg.generators:
            parts.append(f"<h3>{html.escape(rep.generator or '')} ({html.escape(g.name)})"
                         + (f", GAN seed {rep.seed}" if rep.seed is not None else "") + "</h3>")
        if (gan_dir / "metrics.jsonl").is_file():
            curve = gan_dir / "training.png"
            if not curve.is_file():
                plot_gan_metrics(read_jsonl(gan_dir / "metrics.jsonl"), curve, title=f"{g.name}{tag}")
            losses = LOSSES.get(g.name, "a GAN's generator and discriminator, with D's mean output on real images D(x) "
                                        "and on fakes D(G(z))")
            parts.append(_img(curve, f"Training{tag}: the losses ({losses}), against thousands of images shown"
                                     + ("; FID on the validation images" if getattr(g, "eval_every", None) else "")))
        grids = sorted((gan_dir / "grids").glob("*.png")) if (gan_dir / "grids").is_dir() else []
        if grids:
            parts.append(_img(grids[-1], f"Fixed-noise samples from the moving-average generator at the end of training{tag} "
                                         f"({grids[-1].name})", scale=2))
        if (samples_dir / "grid.png").is_file():
            parts.append(_img(samples_dir / "grid.png", f"Real (left half of each row) and synthetic (right half) images, "
                                                        f"one row per class{tag}", scale=2))
    return parts


def _audit(checks: List[Dict[str, str]]) -> str:
    if not checks:
        return "<p>The audit is off (compare.audit: false).</p>"
    return "<ul>" + "".join(f'<li><span class="{c["status"]}">{html.escape(c["status"])}</span> — <b>'
                            f'{html.escape(c["check"])}</b>: {html.escape(c["detail"])}</li>' for c in checks) + "</ul>"


def _sweep_body(cfg: Config, table: Dict[str, Any]) -> List[str]:
    """A sweep over an experiment key: the accuracy-against-value plot, then each value's table and audit."""
    p = paths(cfg)
    key = table["sweep"]["key"]
    body = [_img(p.compare / "sweep.png", f"Test accuracy against {key}, per arm: mean, confidence band, each seed"),
            "".join(f"<p>{html.escape(n)}</p>" for n in table["notes"])]
    body += predictive_html(table.get("predictive"), p.compare, _img)
    body += exchange_html(table.get("exchange"), p.compare, _img)
    for e in table["experiments"]:
        sub = next(s for v, s in sweep_experiments(cfg) if v == e["value"])
        body += [f"<h2>{html.escape(key)} = {e['value']:g}</h2>", _table(sub, e["rows"]),
                 "".join(f"<p>{html.escape(n)}</p>" for n in e["notes"]), "<h3>Protocol audit</h3>", _audit(e["audit"])]
        curves = paths(sub).compare / "val_curves.png"
        if curves.is_file():
            body.append(_img(curves, f"Validation accuracy over steps at {key} = {e['value']:g}"))
    return body


def run_report(cfg: Config, output: Optional[Path] = None) -> Path:
    """Refresh the comparison, then write `<out_dir>/report.html` (or `output`)."""
    p = paths(cfg)
    compare_all(cfg)
    table = json.loads((p.compare / "table.json").read_text())
    from .. import __version__

    body = [
        f"<h1>{html.escape(cfg.name)}</h1>",
        f'<p class="meta">ganaug {__version__} · run folder <code>{html.escape(str(p.root))}</code> · written '
        f"{time.strftime('%Y-%m-%d %H:%M')} · baseline <b>{html.escape(str(table['baseline']))}</b></p>",
    ]
    if "experiments" in table:
        body += _sweep_body(cfg, table)
    else:
        body += ["<h2>Verdicts</h2>", _verdicts(cfg, table["rows"]),
                 "<h2>Result in full</h2>", _table(cfg, table["rows"]),
                 "".join(f"<p>{html.escape(n)}</p>" for n in table["notes"]),
                 "<h2>Protocol audit</h2>", _audit(table["audit"])]
        if table.get("extra_rows"):
            body += [f"<h3>{html.escape(EXTRA_HEADING)}</h3>", _table(cfg, table["extra_rows"])]
        body += _quality(cfg, table)
        body += predictive_html(table.get("predictive"), p.compare, _img)
        body += cost_html(table.get("cost"))
    body.append("<h2>Plots</h2>")
    captions = {"accuracy.png": "Test accuracy per arm: each seed (faint), the mean and its confidence interval",
                "sweep.png": "Test accuracy against the swept value, with the confidence band; the baseline for reference",
                "val_curves.png": "Validation accuracy (real images only) over optimizer steps, mean and range over seeds",
                "confusion.png": "Confusion matrices on the test set: each arm's seeds summed, rows normalised to %; "
                                 "n is the test images per seed"}
    for name in ["sweep.png", "accuracy.png", "val_curves.png", "confusion.png"]:  # precision_recall.png: above
        if name in table["plots"] and "experiments" not in table:
            body.append(_img(p.compare / name, captions[name]))
    gan = _gan_sections(cfg)
    if gan:
        body += ["<h2>The generators and their samples</h2>"] + gan
    runs = table["runs"] if "runs" in table else [
        r for e in table["experiments"] for r in json.loads((Path(e["out_dir"]) / "compare" / "table.json").read_text())["runs"]]
    body += ["<h2>Every run</h2>", _runs_table(runs),
             "<h2>Config</h2>", f"<pre>{html.escape(yaml.safe_dump(to_dict(cfg), sort_keys=False))}</pre>"]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'

            f"<title>{html.escape(cfg.name)} · ganaug report</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    out = output or p.root / "report.html"
    try:
        atomic_write_text(out, page)
    except OSError as e:
        raise StageError(f"cannot write the report to '{out}' ({e.strerror or e}); choose another path with -o") from None
    echo(f"report: wrote {out} ({len(page) / 1e6:.1f} MB, self-contained)")
    return out
