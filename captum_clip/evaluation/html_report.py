"""One self-contained HTML page comparing the methods of a run: ``OUT_DIR/report.html``.

It reads what ``captum-clip evaluate`` writes (``results.json`` with ``methods``, ``results.png``) and what
``captum-clip benchmark`` writes (``results.json`` with ``rows``, or ``results.csv`` in folders from before it had
a JSON), and the example maps of ``OUT_DIR/examples/`` (:mod:`.records`) where the run kept some. The page has the
metrics table (sortable by a click on a header; random-weights rows set apart), the bar chart, a grid of
images x methods x queries with each map over its image and the ground truth outlined, and the command and
versions that made it. Everything is inline (images as data URIs, CSS and a little JavaScript), so the page opens
offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .benchmark import RANDOM_WEIGHTS, method_label
from .records import Example, load_examples
from .reports import metric_directions

REPORT_NAME = "report.html"
#: Colour maps of the overlays: one for maps of one sign, a diverging one (centred on zero) for signed maps.
CMAP, SIGNED_CMAP = "viridis", "RdBu_r"
ALPHA = 0.5
@dataclass
class Column:
    """A metric column: its name and the better direction (``"↑"``, ``"↓"`` or ``""`` when unknown)."""

    name: str
    arrow: str = ""


@dataclass
class Row:
    """A method row: its key, display label, cells ``{metric: (value, standard error or None)}``."""

    key: str
    label: str
    cells: Dict[str, Tuple[float, Optional[float]]]
    #: Its random-weights row lies within one standard error of it on the main metric (evaluate only).
    flagged: bool = False

    @property
    def random(self) -> bool:
        return self.key.endswith(RANDOM_WEIGHTS)


@dataclass
class Results:
    """What the page shows, from either command's output."""

    kind: str
    title: str
    subtitle: str
    columns: List[Column]
    rows: List[Row]
    provenance: Dict[str, Any] = field(default_factory=dict)
    main_metric: Optional[str] = None
    #: ``{"category", "message", "count"}`` of the warnings the run collected (:func:`.records.collected_warnings`).
    warnings: List[Dict[str, Any]] = field(default_factory=list)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _arrow(higher: Optional[bool]) -> str:
    return "" if higher is None else ("↑" if higher else "↓")


def _from_evaluate(results: Dict[str, Any]) -> Results:
    main = results.get("config", {}).get("main_metric")
    columns = [Column(name, _arrow(higher)) for name, higher in metric_directions(results).items()]
    rows = []
    for key, metrics in results["methods"].items():
        cells = {c.name: (_number(metrics[c.name]), metrics.get(f"{c.name}_stderr")) for c in columns
                 if c.name in metrics}
        rows.append(Row(key, method_label(key), cells, bool(metrics.get("random_weights_within_stderr"))))
    title = f"{results['protocol']} on {results['dataset']}"
    subtitle = (f"split {results.get('split') or 'all'}, model {results.get('model')} "
                f"({results.get('pretrained') or 'no checkpoint'}): {results.get('n_images')} images, "
                f"{results.get('n_queries')} queries; value ± bootstrap standard error over images")
    return Results("evaluate", title, subtitle, columns, rows, results.get("provenance", {}), main)


def _from_benchmark(rows: List[Dict[str, Any]], title: str, provenance: Dict[str, Any]) -> Results:
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    higher = {r["metric"]: r.get("higher_is_better") for r in rows}
    columns = [Column(m, _arrow(higher[m] if isinstance(higher[m], bool) else
                                {"True": True, "False": False}.get(str(higher[m])))) for m in metrics]
    table = []
    for key in dict.fromkeys(r["method"] for r in rows):
        cells = {r["metric"]: (_number(r["mean"]), _number(r.get("sem"))) for r in rows if r["method"] == key}
        table.append(Row(key, method_label(key), cells))
    return Results("benchmark", "benchmark", title or "Quantus metrics on held-out scenes; mean ± standard error",
                   columns, table, provenance)


def read_results(out_dir) -> Results:
    """The table and provenance of an ``evaluate`` or ``benchmark`` output folder.

    Raises:
        FileNotFoundError: a folder with neither ``results.json`` nor ``results.csv``.
        ValueError: a ``results.json`` that is not one of theirs (truncated, another program's).
    """
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            if "methods" in stored:
                results = _from_evaluate(stored)
            else:
                results = _from_benchmark(stored["rows"], stored.get("title", ""), stored.get("provenance", {}))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path} is not the results.json of captum-clip evaluate or benchmark ({error!r}); "
                             "rerun the command that writes it.") from None
        results.warnings = list(stored.get("warnings", []))
        return results
    if (out_dir / "results.csv").is_file():  # a benchmark folder written before results.json existed
        with (out_dir / "results.csv").open(newline="") as handle:
            return _from_benchmark(list(csv.DictReader(handle)), "", {})
    raise FileNotFoundError(f"{out_dir} has no results.json or results.csv: run captum-clip evaluate or "
                            "captum-clip benchmark with --out-dir there first.")


# ------------------------------------------------------------------------------------------------ pictures

def _data_uri(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    picture = Image.fromarray(pixels)
    # Small scenes stay exact (PNG); photographs at 224 px and up are far smaller as JPEG at no visible cost.
    if pixels.shape[0] * pixels.shape[1] > 160 * 160:
        picture.save(buffer, format="JPEG", quality=88)
        kind = "jpeg"
    else:
        picture.save(buffer, format="PNG", optimize=True)
        kind = "png"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _file_uri(path: Path) -> Optional[str]:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _gradient(cmap: str, stops: int = 11) -> str:
    from matplotlib import colormaps

    colours = colormaps[cmap](np.linspace(0, 1, stops))[:, :3]
    parts = [f"rgb({r * 255:.0f},{g * 255:.0f},{b * 255:.0f}) {100 * k / (stops - 1):.0f}%"
             for k, (r, g, b) in enumerate(colours)]
    return f"linear-gradient(to right, {', '.join(parts)})"


def _scale(maps: np.ndarray, signed: bool, outlier_perc: float) -> Tuple[float, float]:
    """``(vmin, vmax)``: one colour range over a method's maps of one image, shown as the CLI's figures show that
    method (its ``signed_maps`` and ``display_outlier_perc``, stored with the example)."""
    from ..viz import display_range

    return display_range(maps[np.isfinite(maps)], signed=signed, outlier_perc=outlier_perc)


# ------------------------------------------------------------------------------------------------ the page

_CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d8dce4; --accent: #2f5fd0; --random: #f1efe9; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0;
       background: #fafbfc; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; }
h3 { font-size: 14px; margin: 0 0 6px; font-weight: 600; }
.subtitle, .note { color: var(--muted); margin: 0 0 8px; }
table.metrics { border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
table.metrics th, table.metrics td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: right;
                                     white-space: nowrap; font-variant-numeric: tabular-nums; }
table.metrics th:first-child, table.metrics td:first-child { text-align: left; }
table.metrics thead th { cursor: pointer; user-select: none; background: #eef1f6; position: relative;
                         padding-right: 22px; }
table.metrics thead th:hover { background: #e2e7f0; }
table.metrics thead th::after { content: "⇅"; position: absolute; right: 6px; color: #9aa3b2; font-size: 12px; }
table.metrics thead th[aria-sort="ascending"]::after { content: "▲"; color: var(--accent); }
table.metrics thead th[aria-sort="descending"]::after { content: "▼"; color: var(--accent); }
table.metrics th.main { color: var(--accent); }
tr.random td { background: repeating-linear-gradient(135deg, var(--random), var(--random) 6px, #fff 6px,
               #fff 12px); color: var(--muted); font-style: italic; }
.err { color: var(--muted); font-size: 12px; } .missing { color: #b0b6c2; }
.tag { display: inline-block; font-size: 11px; font-style: normal; border: 1px solid #c9c3b4; border-radius: 3px;
       padding: 0 4px; margin-left: 6px; background: #fff; }
figure.chart { margin: 16px 0; } figure.chart img { max-width: 100%; border: 1px solid var(--line);
                                                     background: #fff; cursor: zoom-in; }
.legend { display: flex; gap: 28px; flex-wrap: wrap; align-items: center; margin: 8px 0 16px;
          color: var(--muted); font-size: 13px; }
.bar { display: inline-block; width: 120px; height: 10px; border-radius: 2px; vertical-align: middle;
       border: 1px solid #bbb; margin: 0 6px; }
.outline-swatch { display: inline-block; width: 18px; height: 14px; border: 2px solid #fff;
                  outline: 1px solid #888; background: #777; vertical-align: middle; margin-right: 6px; }
.example { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px;
           margin-bottom: 16px; overflow-x: auto; }
.pair { display: flex; gap: 16px; align-items: flex-start; }
figure.input { margin: 26px 0 0; text-align: center; color: var(--muted); font-size: 12px; }
figure.input img { width: 128px; height: 128px; cursor: zoom-in; display: block; }
table.grid { border-collapse: collapse; }
table.grid th, table.grid td { padding: 3px 6px; vertical-align: middle; text-align: center; font-size: 12px; }
table.grid th.method { text-align: left; font-weight: 600; min-width: 170px; }
table.grid tr.random th.method { color: var(--muted); font-style: italic; }
table.grid tr.random img { outline: 2px dashed #c9c3b4; outline-offset: -2px; }
table.grid .range { display: block; font-weight: 400; color: var(--muted); font-size: 11px; white-space: nowrap; }
table.grid .range .bar { width: 70px; height: 8px; margin: 0 4px; }
table.grid img { width: 128px; height: 128px; cursor: zoom-in; display: block; }
img.px { image-rendering: pixelated; }
td.empty { color: #b0b6c2; width: 128px; }
pre#command { background: #1d2330; color: #e8ecf3; padding: 10px 12px; border-radius: 4px; overflow-x: auto;
              white-space: pre-wrap; word-break: break-all; }
table.versions td { padding: 2px 14px 2px 0; font-family: ui-monospace, monospace; font-size: 13px; }
table.warnings td { padding: 2px 12px 2px 0; vertical-align: top; font-size: 13px; }
table.warnings td:last-child { font-family: ui-monospace, monospace; white-space: pre-wrap; }
#lightbox { position: fixed; inset: 0; background: rgba(12, 15, 22, .82); display: flex; align-items: center;
            justify-content: center; z-index: 10; cursor: zoom-out; }
#lightbox[hidden] { display: none; }
#lightbox figure { margin: 0; text-align: center; }
#lightbox img { width: min(80vw, 80vh); height: auto; max-height: 80vh; object-fit: contain; background: #fff; }
#lightbox img.wide { width: auto; max-width: 90vw; }
#lightbox figcaption { color: #eef; margin-top: 8px; font-size: 14px; }
"""

_JS = """
(function () {
  function key(row, column) {
    var cell = row.cells[column];
    if (cell.dataset.value === undefined) return cell.textContent.trim().toLowerCase();
    var value = parseFloat(cell.dataset.value);
    return isNaN(value) ? null : value;
  }
  document.querySelectorAll("table.sortable thead th").forEach(function (header, column) {
    header.tabIndex = 0;
    function sort() {
      var table = header.closest("table"), body = table.tBodies[0];
      var ascending = header.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, column), y = key(b, column);
        if (x === null || y === null) return (x === null) - (y === null);  // missing values last either way
        var order = typeof x === "number" ? x - y : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    }
    header.addEventListener("click", sort);
    header.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
  });
  var box = document.getElementById("lightbox"), big = document.getElementById("lightbox-image"),
      caption = document.getElementById("lightbox-caption");
  function close() { box.hidden = true; big.removeAttribute("src"); }
  document.querySelectorAll("img[data-zoom]").forEach(function (image) {
    image.addEventListener("click", function () {
      big.src = image.src;
      big.className = image.classList.contains("chart-image") ? "wide" : (image.classList.contains("px") ? "px" : "");
      caption.textContent = image.alt;
      box.hidden = false;
    });
  });
  box.addEventListener("click", close);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });
})();
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _format(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "nan"


def _table(results: Results) -> str:
    head = ["<th scope='col'>method</th>"]
    for column in results.columns:
        main = " class='main'" if column.name == results.main_metric else ""
        head.append(f"<th scope='col'{main}>{_e(column.name)}{(' ' + column.arrow) if column.arrow else ''}</th>")
    body = []
    for row in results.rows:
        cells = [f"<td>{_e(row.label)}{' †' if row.flagged else ''}"
                 f"{'<span class=tag>sanity</span>' if row.random else ''}</td>"]
        for column in results.columns:
            if column.name not in row.cells:
                cells.append("<td data-value='' class='missing'>—</td>")
                continue
            value, error = row.cells[column.name]
            error_text = (f" <span class='err'>± {_format(error)}</span>"
                          if error is not None and math.isfinite(error) else "")
            data = repr(float(value)) if math.isfinite(value) else ""
            cells.append(f"<td data-value='{data}'>{_format(value)}{error_text}</td>")
        body.append(f"<tr class='{'random' if row.random else 'trained'}' data-key='{_e(row.key)}'>"
                    + "".join(cells) + "</tr>")
    return ("<table id='metrics-table' class='metrics sortable'><thead><tr>" + "".join(head) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def _example(example: Example) -> Tuple[str, int]:
    """One image's block of the grid, and how many overlays it has."""
    from ..viz import overlay_rgb

    queries = example.queries
    # Scenes of 64 px are enlarged for display: square pixels, not a blur.
    small = " px" if max(example.image.shape[:2]) < 128 else ""
    lines = ["<tr><th class='method'>method <span class='range'>colour range of the row</span></th>"
             + "".join(f"<th scope='col'>{_e(q)}</th>" for q in queries) + "</tr>"]
    count = 0
    for key, maps in example.maps.items():
        signed, outlier_perc = example.display.get(key, (False, 0.0))
        vmin, vmax = _scale(maps, signed, outlier_perc)
        cmap = SIGNED_CMAP if signed else CMAP
        label = method_label(key)
        cells = []
        for q, query in enumerate(queries):
            if not np.isfinite(maps[q]).all():
                cells.append("<td class='empty'>no map</td>")
                continue
            pixels = overlay_rgb(example.image, maps[q], vmin, vmax, cmap=cmap, alpha=ALPHA, outline=example.gt[q])
            cells.append(f"<td><img class='overlay{small}' data-zoom src='{_data_uri(pixels)}' "
                         f"alt='{_e(example.stem)}: {_e(label)}, {_e(query)}' "
                         f"title='{_e(label)} — {_e(query)}'></td>")
            count += 1
        scale = (f"<span class='range'>{vmin:.3g}<span class='bar' style='background:{_gradient(cmap)}'></span>"
                 f"{vmax:.3g}</span>")
        row_class = "random" if key.endswith(RANDOM_WEIGHTS) else "trained"
        lines.append(f"<tr class='{row_class}' data-key='{_e(key)}'><th class='method'>{_e(label)}{scale}</th>"
                     + "".join(cells) + "</tr>")
    block = (f"<div class='example' data-stem='{_e(example.stem)}'><h3>{_e(example.stem)}</h3>"
             f"<div class='pair'><figure class='input'><img class='input{small}' data-zoom "
             f"src='{_data_uri(example.image)}' alt='{_e(example.stem)}: input'><figcaption>input</figcaption>"
             f"</figure><table class='grid'>{''.join(lines)}</table></div></div>")
    return block, count


def _examples(examples: List[Example], kind: str) -> str:
    if not examples:
        how = ("--examples N (or --report) on captum-clip evaluate" if kind == "evaluate" else
               "--report on captum-clip benchmark")
        return (f"<p class='note' id='no-examples'>This run kept no maps, so there is no image grid (run it with "
                f"{_e(how)}; protocols without maps, such as mutual-mi and convis-ood, have none).</p>")
    blocks = [_example(example)[0] for example in examples]
    legend = (f"<div class='legend'><span>low<span class='bar' style='background:{_gradient(CMAP)}'></span>high"
              f"</span><span>signed maps: −<span class='bar' style='background:{_gradient(SIGNED_CMAP)}'></span>+"
              f"</span><span><span class='outline-swatch'></span>ground truth outline</span>"
              f"<span>one colour range per method and image (the numbers beside each row); click an image to "
              f"enlarge it</span></div>")
    return legend + "<div id='grid'>" + "".join(blocks) + "</div>"


def _provenance(provenance: Dict[str, Any]) -> str:
    if not provenance:
        return "<p class='note' id='command'>The command and versions were not recorded (an older run).</p>"
    command = provenance.get("command") or shlex.join(provenance.get("argv", []))
    versions = "".join(f"<tr><td>{_e(name)}</td><td>{_e(version or 'not installed')}</td></tr>"
                       for name, version in provenance.get("versions", {}).items())
    return f"<pre id='command'>{_e(command)}</pre><table class='versions' id='versions'>{versions}</table>"


def _warnings(entries: List[Dict[str, Any]]) -> str:
    if not entries:
        return ""
    rows = "".join(f"<tr><td>{entry['count']}</td><td>{_e(entry['category'])}</td><td>{_e(entry['message'])}</td></tr>"
                   for entry in entries)
    return ("<section id='warnings'><h2>Warnings</h2><p class='note'>Raised during the run (Quantus's among them), "
            "collected here instead of interrupting the progress bar.</p><table class='warnings'><thead><tr>"
            f"<th>count</th><th>category</th><th>message</th></tr></thead><tbody>{rows}</tbody></table></section>")


def render_report(out_dir) -> str:
    """The page of ``out_dir`` as a string (see :func:`write_report`)."""
    out_dir = Path(out_dir)
    results = read_results(out_dir)
    examples = load_examples(out_dir)
    chart = _file_uri(out_dir / "results.png")
    notes = []
    if any(row.random for row in results.rows):
        notes.append("Hatched rows (<em>random weights</em>, tagged <em>sanity</em>) are the sanity check: the same method "
                     "on a copy of the model whose vision tower has seeded random weights.")
    if any(row.flagged for row in results.rows):
        notes.append(f"† its random-weights row lies within one standard error of it on {_e(results.main_metric)}.")
    figure = (f"<figure class='chart'><img class='chart-image' data-zoom src='{chart}' alt='bar chart of the "
              f"metrics'></figure>" if chart else "")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(results.title)} — captum-clip report</title><style>{_CSS}</style></head><body><main>"
        f"<header><h1>{_e(results.title)}</h1><p class='subtitle'>{_e(results.subtitle)}</p></header>"
        "<section id='metrics'><h2>Metrics</h2><p class='note'>Click a column header to sort by it.</p>"
        f"{_table(results)}" + "".join(f"<p class='note'>{n}</p>" for n in notes) + figure + "</section>"
        f"<section id='examples'><h2>Maps</h2>{_examples(examples, results.kind)}</section>"
        f"{_warnings(results.warnings)}"
        f"<section id='provenance'><h2>Command and versions</h2>{_provenance(results.provenance)}</section>"
        "</main><div id='lightbox' hidden><figure><img id='lightbox-image' alt=''>"
        "<figcaption id='lightbox-caption'></figcaption></figure></div>"
        f"<script>{_JS}</script></body></html>\n")


def write_report(out_dir) -> Path:
    """Write ``OUT_DIR/report.html`` from an ``evaluate`` or ``benchmark`` output folder.

    Args:
        out_dir: the folder the run wrote (``results.json`` or ``results.csv``; ``examples/`` if it kept maps).

    Returns:
        The page's path.

    Raises:
        FileNotFoundError: a folder without results.
        ValueError: results or example files that cannot be read (named in the message).
    """
    path = Path(out_dir) / REPORT_NAME
    path.write_text(render_report(out_dir), encoding="utf-8")
    return path
