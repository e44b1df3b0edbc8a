"""`opscope analyze`, `opscope targets` and the roofline figure, end to end on layer tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from opscope.analytical import analyze_model
from opscope.cli import main
from opscope.errors import OpscopeError
from opscope.report.roofline import plot_roofline
from opscope.targets import load_target

TABLES = Path(__file__).resolve().parents[1] / "opscope" / "workloads" / "tables"
VGG = str(TABLES / "vgg16_frame.csv")


def test_analyze_prints_slowest_first_and_writes_files(tmp_path, capsys):
    out_csv, out_pq, plot = tmp_path / "t.csv", tmp_path / "t.parquet", tmp_path / "fig" / "roof.png"
    assert main(["analyze", "--model", VGG, "--target", "tpuv4-like", "--out", str(out_csv), "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    body = [ln for ln in text.splitlines() if ln.startswith("vgg16_frame.")]
    shares = [float(ln.split()[-1].rstrip("%")) for ln in body]
    assert shares == sorted(shares, reverse=True) and len(body) == 16
    assert body[0].startswith("vgg16_frame.14.FC")  # the 25088 x 4096 FC: 400 MB of weights off-chip
    assert "TOTAL" in text
    df = pd.read_csv(out_csv)
    expected = analyze_model(VGG, "tpuv4-like")
    assert list(df.columns) == list(expected.columns)
    assert df["latency_s"].iloc[-1] == pytest.approx(expected["latency_s"].iloc[-1])
    assert (tmp_path / "fig" / "roof.png").stat().st_size > 1000
    assert (tmp_path / "fig" / "roof.svg").read_text().lstrip().startswith("<?xml")
    assert main(["analyze", "--model", VGG, "--target", "tpuv4-like", "--out", str(out_pq)]) == 0
    assert pd.read_parquet(out_pq)["op"].iloc[-1] == "TOTAL"


def test_analyze_options_reach_the_model(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["analyze", "--model", VGG, "--target", "tpuv4-like", "--density", "0.5", "0.5", "1",
                 "--skip-compute", "--compress-mem", "--out", str(out)]) == 0
    sparse = pd.read_csv(out)
    dense = analyze_model(VGG, "tpuv4-like")
    assert sparse["flops_executed"].iloc[-1] == pytest.approx(dense["flops_executed"].iloc[-1] * 0.25)
    assert sparse["bytes"].iloc[-1] < dense["bytes"].iloc[-1]


@pytest.mark.parametrize("argv, what", [
    (["--target", "nope"], "unknown target 'nope'"),
    (["--target", "tpuv4-like", "--attention", "lowrank"], "no attention operators"),
    (["--target", "tpuv4-like", "--density", "0.5", "1", "1"], "neither compress_mem nor skip_compute"),
    (["--target", "tpuv4-like", "--out", "x.txt"], ".csv or .parquet"),
])
def test_analyze_user_errors_are_one_line(capsys, argv, what):
    assert main(["analyze", "--model", VGG, *argv]) == 2
    err = capsys.readouterr().err
    assert what in err and "Traceback" not in err


def test_targets_command_lists_specs(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in ("tpuv4-like", "h100", "h200", "eyeriss-like", "pynq-accel", "host"):
        assert name in out
    assert "4 x 128 x 128" in out and "123.2 TFLOP/s" in out


def test_roofline_with_measured_points(tmp_path):
    spec = load_target("h100")
    ana = pd.DataFrame({"op": ["a", "b", "TOTAL"], "kind": ["dense", "conv2d", ""],
                        "intensity": [0.5, 200.0, 10.0], "flops_per_s": [1e12, 5e13, 1e13]})
    meas = pd.DataFrame({"op": ["a", "b"], "kind": ["dense", "conv2d"], "intensity": [0.5, 200.0],
                         "flops_per_s": [4e11, 2e13]})
    paths = plot_roofline(spec, ana, tmp_path / "r.svg", measured=meas, title="t")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.exists() for p in paths)
    svg = paths[1].read_text()
    assert "dense (measured)" in svg
    with pytest.raises(OpscopeError, match="lacks column"):
        plot_roofline(spec, ana.drop(columns="kind"), tmp_path / "x.png")
