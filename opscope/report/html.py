"""The comparison as one self-contained HTML file.

Figures are inlined as base64 PNG (``data:`` URIs), the style and the few lines of script that sort
the table are inline too: the file opens offline and can be mailed as is.  Every cell carries its
raw value in ``data-v`` so sorting is numeric where the column is numeric.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from opscope.report.scaling import Turnaround
from opscope.report.table import TOTAL
from opscope.report.terminal import fmt_flops, fmt_pct, fmt_share, fmt_time, sort_slowest_first

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em;margin-bottom:0}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:4px}.summary{background:#f6f8fa;padding:10px 14px;border-radius:6px}
.summary p{margin:4px 0}figure{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}
figure img{width:620px;max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
table{border-collapse:collapse;font-size:.82em}th,td{padding:3px 8px;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}th{background:#f0f0f0;cursor:pointer;
position:sticky;top:0;white-space:nowrap}th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}
tr.total td{font-weight:bold;border-top:2px solid #999}tr.unmeasured td{color:#888}
code{background:#f3f3f3;padding:1px 4px;border-radius:3px;font-size:.9em}
"""

# Click a header to sort by it (again to reverse); the TOTAL row stays last.
_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = table.querySelectorAll('thead th');
  heads.forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc');
      heads.forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var fixed = rows.filter(function (r) { return r.classList.contains('total'); });
      rows = rows.filter(function (r) { return !r.classList.contains('total'); });
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute('data-v'), y = b.cells[col].getAttribute('data-v');
        var nx = parseFloat(x), ny = parseFloat(y);
        var c;
        if (isNaN(nx) && isNaN(ny)) { c = x.localeCompare(y); }
        else if (isNaN(nx)) { return 1; }
        else if (isNaN(ny)) { return -1; }
        else { c = nx - ny; }
        return asc ? c : -c;
      });
      rows.concat(fixed).forEach(function (r) { body.appendChild(r); });
    });
  });
});
document.body.setAttribute('data-ready', '1');
"""

#: (column, header, formatter) of the HTML table
_TABLE = (
    ("op", "operator", str), ("kind", "kind", str), ("count", "count", lambda v: f"{int(v)}"),
    ("flops", "FLOP", fmt_flops), ("intensity", "FLOP/B", lambda v: f"{v:.3g}"),
    ("analytical_s", "analytical", fmt_time), ("analytical_measured_s", "analytical (measured peaks)", fmt_time),
    ("default_s", "default sched.", fmt_time), ("best_s", "best sched.", fmt_time),
    ("best_threads", "threads", lambda v: f"{int(v)}"), ("in_model_s", "in model", fmt_time),
    ("predicted_s", "predicted", fmt_time),
    ("analytical_err", "err analytical", fmt_pct), ("predicted_err", "err predicted", fmt_pct),
    ("bound", "bound", str), ("achieved_flops", "achieved FLOP/s", fmt_flops),
    ("roofline_share", "of roofline", fmt_share),
)


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _cell(v: object, fmt) -> str:
    if _missing(v) or v == "":
        return '<td class="n" data-v="">-</td>'
    raw = html.escape(str(v), quote=True)
    cls = ' class="n"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
    return f'<td{cls} data-v="{raw}">{html.escape(fmt(v))}</td>'


def table_html(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in _TABLE)
    rows = []
    for _, r in sort_slowest_first(table).iterrows():
        cls = "total" if r["op"] == TOTAL else ("" if r["measured"] else "unmeasured")
        cells = "".join(_cell(r[c], f) for c, _, f in _TABLE)
        rows.append(f'<tr class="{cls}">{cells}</tr>')
    return (f'<table class="sortable" id="ops"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def image_html(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = html.escape(caption)
    return (f'<figure><img alt="{cap}" src="data:image/png;base64,{data}">'
            f"<figcaption>{cap}</figcaption></figure>")


def _turnaround_html(turns: Sequence[Turnaround]) -> str:
    if not turns:
        return "<p>No operator was measured at more than one thread count.</p>"
    rows = []
    for t in turns:
        where = f"{t.threads}" if t.reached else f"not reached (still improving at {t.measured_threads[-1]})"
        rows.append(f"<tr><td>{html.escape(t.op)}</td><td class='n' data-v='{t.threads}'>{html.escape(where)}</td>"
                    f"<td class='n' data-v='{t.speedup}'>{t.speedup:.2f}x</td>"
                    f"<td>{html.escape(', '.join(str(x) for x in t.measured_threads))}</td></tr>")
    return ('<table class="sortable" id="turnaround"><thead><tr><th>operator</th><th>turnaround (threads)</th>'
            f'<th>speed-up there</th><th>measured threads</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _unmeasured_html(table: pd.DataFrame) -> str:
    ops = table[(table["op"] != TOTAL) & (~table["measured"].astype(bool))]
    if ops.empty:
        return "<p>Every operator has measurements.</p>"
    items = "".join(f"<li>{html.escape(str(r['op']))}: <code>{html.escape(str(r['collect_cmd']))}</code></li>"
                    for _, r in ops.iterrows())
    return f"<ul id='unmeasured'>{items}</ul>"


def write_html(path: Path, title: str, subtitle: str, summary: Sequence[str], table: pd.DataFrame,
               figures: Sequence[tuple[Path, str]], turnarounds: Sequence[Turnaround],
               whole_model: dict | None = None) -> Path:
    """Write the report; ``figures`` are (PNG path, caption) pairs, inlined in that order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figs = "".join(image_html(p, cap) for p, cap in figures)
    summ = "".join(f"<p>{html.escape(line)}</p>" for line in summary)
    wm = ""
    if whole_model:
        items = "".join(f"<tr><td>{html.escape(k)}</td><td class='n' data-v='{html.escape(str(v))}'>"
                        f"{html.escape(_fmt_any(k, v))}</td></tr>" for k, v in whole_model.items()
                        if k != "raw_latencies_s")
        wm = f"<h2>Whole model</h2><table id='whole-model'><tbody>{items}</tbody></table>"
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>
<body><h1>{html.escape(title)}</h1><p class="sub">{html.escape(subtitle)}</p>
<div class="summary">{summ}</div>
<h2>Figures</h2><div id="figures">{figs}</div>{wm}
<h2>Operators</h2><p class="sub">Click a column header to sort. Times are per call; TOTAL sums
count &times; time over the measured operators. Errors are estimate / measured &minus; 1.</p>
{table_html(table)}
<h2>Not measured yet</h2>{_unmeasured_html(table)}
<h2>Thread scaling</h2>{_turnaround_html(turnarounds)}
<script>{_SCRIPT}</script></body></html>
"""
    path.write_text(doc, encoding="utf-8")
    return path


def _fmt_any(key: str, v: object) -> str:
    if isinstance(v, float):
        if key.endswith("_s"):
            return fmt_time(v)
        if "gap" in key:
            return fmt_pct(v)
        return f"{v:.4g}"
    return str(v)
