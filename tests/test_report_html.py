"""The HTML report: self-contained, escaped, and working in a real headless browser (Debian's chromium).

The browser tests load the report from a file, with the network features off, and read back the
DOM after a small probe script (added to a copy of the report) has checked that every figure
decoded and has clicked a column header.  Every console message chromium logs counts as a failure.
A control page with a deliberate error proves the console check can fail.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from opscope.report import figures
from opscope.report.html import write_html
from opscope.report.roofline import plot_roofline
from opscope.report.scaling import scaling_frame, turnarounds
from opscope.report.table import MeasuredOp, operator_rows, with_total
from opscope.targets.spec import MemoryLevel, TargetSpec
from opscope.workloads.layer_table import dense_op

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def est(latency, bound="DRAM", attainable=1e10):
    return SimpleNamespace(latency_s=latency, bound=bound, attainable_flops=attainable)


def sample_table():
    ops = [dense_op("fc_a", 4, 128, 128, "float32", "table", "m"),
           dense_op("fc_b", 4, 256, 128, "float32", "table", "m").with_count(3),
           dense_op("fc<script>alert(1)</script>", 4, 64, 64, "float32", "table", "m")]
    measured = {
        ops[0].key: MeasuredOp(2e-4, 1, 1.5e-4, 2, "s1", 4),
        ops[1].key: MeasuredOp(9e-4, 1, 5e-4, 2, "s2", 4),
    }
    cmds = {ops[2].key: "opscope collect --model m --target host --store runs.db --ops fc_c"}
    table = operator_rows(ops, measured, [est(1e-4), est(4e-4), est(3e-5)], None,
                          [1.6e-4, 6e-4, 2e-5], cmds)
    return with_total(table)


def scaling_rows():
    import pandas as pd

    rows = []
    for key, name, lats in (("k1", "fc_a", {1: 3e-4, 2: 1.5e-4}), ("k2", "fc_b", {1: 8e-4, 2: 5e-4})):
        for t, lat in lats.items():
            rows.append(dict(workload_key=key, op_name=name, threads=t, schedule_kind="default",
                             status="ok", latency_median_s=lat))
    return scaling_frame(pd.DataFrame(rows))


def spec():
    return TargetSpec(name="tiny", kind="cpu", frequency_hz=1e9, peak_flops={"float32": 1e11},
                      memory=(MemoryLevel("L1", 32768, 4e11), MemoryLevel("DRAM", None, 1e10)))


@pytest.fixture()
def report(tmp_path):
    table = sample_table()
    sc = scaling_rows()
    ana, meas = figures.roofline_points(table)
    pngs = []
    paths = plot_roofline(spec(), ana, tmp_path / "roofline.png", measured=meas)
    pngs.append((next(p for p in paths if p.suffix == ".png"), "roofline"))
    for fn, name in ((figures.plot_predicted_vs_measured, "pvm"), (figures.plot_layer_bars, "layers")):
        pngs.append((fn(table, tmp_path / f"{name}.png")[0], name))
    pngs.append((figures.plot_thread_scaling(sc, tmp_path / "scaling.png")[0], "scaling"))
    wm = {"latency_s": 1.2e-3, "sum_best_s": 1.65e-3, "gap": 1.2e-3 / 1.65e-3 - 1, "threads": 2}
    path = write_html(tmp_path / "report.html", "opscope compare: m on tiny", "test", ["line 1", "line 2", "line 3"],
                      table, pngs, turnarounds(sc), wm)
    return path


def test_report_is_self_contained_and_escaped(report):
    text = report.read_text()
    assert text.count('src="data:image/png;base64,') == 4
    assert not re.search(r'(src|href)="(https?:)?//', text)  # no network fetches
    assert "<script>alert(1)</script>" not in text and "fc&lt;script&gt;" in text
    assert "opscope collect --model m --target host --store runs.db --ops fc_c" in text
    # one table row per operator plus TOTAL; TOTAL row is marked so sorting keeps it last
    body = text.split('<table class="sortable" id="ops">')[1].split("</table>")[0]
    assert body.count("<tr") == 1 + 4 and body.count('class="total"') == 1
    # the whole-model gap is shown as a percentage
    assert "-27%" in text


def test_figures_draw_nothing_without_data(tmp_path):
    import pandas as pd

    table = sample_table()
    table["predicted_s"] = math.nan
    table["analytical_s"] = math.nan
    assert figures.plot_predicted_vs_measured(table, tmp_path / "x.png") == []
    assert figures.plot_thread_scaling(pd.DataFrame(columns=["threads"]), tmp_path / "y.png") == []


# -- in a real browser -----------------------------------------------------------------------------
_PROBE = """
<script>
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('#figures img');
  var decoded = 0;
  imgs.forEach(function (im) { if (im.complete && im.naturalWidth > 0) decoded++; });
  document.body.setAttribute('data-imgs', imgs.length + '/' + decoded);
  function order() {
    return Array.prototype.map.call(document.querySelectorAll('#ops tbody tr'),
      function (r) { return r.cells[0].textContent; }).join('|');
  }
  var th = Array.prototype.filter.call(document.querySelectorAll('#ops thead th'),
    function (h) { return h.textContent === 'best sched.'; })[0];
  th.click();
  document.body.setAttribute('data-asc', order());
  th.click();
  document.body.setAttribute('data-desc', order());
});
</script>
"""


def run_chromium(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """(DOM after load, console lines) of ``page`` in headless chromium."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, console


browser = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


@pytest.mark.browser
@browser
def test_console_check_catches_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>null.boom;</script></body></html>")
    _dom, console = run_chromium(bad, tmp_path)
    assert any("boom" in line for line in console)


@pytest.mark.browser
@browser
def test_report_in_headless_chromium(report, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", _PROBE + "</body>"))
    dom, console = run_chromium(probed, tmp_path)
    assert console == []
    assert 'data-ready="1"' in dom                       # the report's own script ran to the end
    assert 'data-imgs="4/4"' in dom                      # four figures, all decoded
    asc = re.search(r'data-asc="([^"]*)"', dom).group(1).split("|")
    desc = re.search(r'data-desc="([^"]*)"', dom).group(1).split("|")
    # best: fc_a 0.15 ms < fc_b 0.5 ms; the unmeasured operator sorts after; TOTAL stays last
    assert asc[:2] == ["fc_a", "fc_b"] and asc[-1] == "TOTAL"
    assert desc[:2] == ["fc_b", "fc_a"] and desc[-1] == "TOTAL"
    assert asc[2].startswith("fc&lt;script")  # text content, escaped again by the DOM dump
