"""Options: every given option changes what it should, and one that cannot apply is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from opscope.analytical import (
    AnalysisOptions,
    analyze_model,
    analyze_operators,
    estimate,
    load_densities,
)
from opscope.errors import OpscopeError
from opscope.targets.spec import MemoryLevel, TargetSpec
from opscope.workloads.layer_table import attention_op, dense_op

FLAT = TargetSpec(name="flat", kind="cpu", frequency_hz=1e9, peak_flops={"float32": 1e12},
                  memory=(MemoryLevel("L1", 1 << 20, 1e12), MemoryLevel("DRAM", None, 1e11)))
TABLES = Path(__file__).resolve().parents[1] / "opscope" / "workloads" / "tables"


def cnn_ops():
    return [dense_op(f"fc{i}", 8, 64, 64, "float32", source="table", model="t") for i in range(3)]


@pytest.mark.parametrize("kwargs, what", [
    ({"densities": (0.5, 1, 1)}, "neither compress_mem nor skip_compute"),
    ({"min_density": 0.5}, "skip_compute is off"),
    ({"densities": (0, 1, 1), "compress_mem": True}, "input density must be in"),
    ({"densities": (1, 1), "compress_mem": True}, "three numbers"),
    ({"attention": "flash"}, "unknown attention method"),
    ({"low_rank_ratio": 0.2}, "applies to attention method 'lowrank'"),
    ({"attention": "sparse", "m_ratio": 2}, "applies to attention method 'kernel'"),
    ({"attention": "sparse", "spattn_density": 1.5}, "spattn_density must be in"),
])
def test_options_that_change_nothing_or_are_invalid_are_errors(kwargs, what):
    with pytest.raises(OpscopeError, match=what):
        AnalysisOptions(**kwargs)


@pytest.mark.parametrize("method", ["sparse", "lowrank", "kernel"])
def test_attention_options_on_a_cnn_are_errors(method):
    with pytest.raises(OpscopeError, match="no attention operators"):
        analyze_operators(cnn_ops(), FLAT, AnalysisOptions(attention=method))


def test_every_attention_option_changes_the_result():
    ops = [attention_op("l", "logit", 1, 4, 128, 128, 32, "float32", source="table", model="t"),
           attention_op("a", "attend", 1, 4, 128, 128, 32, "float32", source="table", model="t")]
    base = analyze_operators(ops, FLAT).iloc[-1]
    for opts in (AnalysisOptions(attention="sparse"), AnalysisOptions(attention="lowrank"),
                 AnalysisOptions(attention="kernel")):
        t = analyze_operators(ops, FLAT, opts).iloc[-1]
        assert t.flops_executed != base.flops_executed, opts.attention
    # and each parameter moves its own method
    s1 = analyze_operators(ops, FLAT, AnalysisOptions(attention="sparse", spattn_density=0.1)).iloc[-1]
    s2 = analyze_operators(ops, FLAT, AnalysisOptions(attention="sparse", spattn_density=0.5)).iloc[-1]
    assert s1.flops_executed < s2.flops_executed
    r1 = analyze_operators(ops, FLAT, AnalysisOptions(attention="lowrank", low_rank_ratio=0.1)).iloc[-1]
    r2 = analyze_operators(ops, FLAT, AnalysisOptions(attention="lowrank", low_rank_ratio=0.5)).iloc[-1]
    assert r1.flops < r2.flops
    k1 = analyze_operators(ops, FLAT, AnalysisOptions(attention="kernel", m_ratio=1)).iloc[-1]
    k2 = analyze_operators(ops, FLAT, AnalysisOptions(attention="kernel", m_ratio=4)).iloc[-1]
    assert k1.flops < k2.flops


def test_sparse_attention_acts_without_compress_or_skip():
    # FRAME drops attention sparsity unless compress_mem/skip_compute are on; here it always acts
    op = attention_op("l", "logit", 1, 4, 128, 128, 32, "float32", source="table", model="t")
    dense_ = estimate(op, FLAT)
    sparse = estimate(op, FLAT, AnalysisOptions(attention="sparse", spattn_density=0.25))
    assert sparse.flops_executed == pytest.approx(dense_.flops_executed * 0.25)
    assert sparse.bytes_moved["DRAM"] < dense_.bytes_moved["DRAM"]


def test_lowrank_needs_the_whole_model():
    op = attention_op("l", "logit", 1, 4, 128, 128, 32, "float32", source="table", model="t")
    with pytest.raises(OpscopeError, match="analyze_operators"):
        estimate(op, FLAT, AnalysisOptions(attention="lowrank"))


def test_compress_and_skip_each_change_their_part():
    op = cnn_ops()[0]
    base = estimate(op, FLAT)
    comp = estimate(op, FLAT, AnalysisOptions(densities=(0.5, 0.5, 1.0), compress_mem=True))
    skip = estimate(op, FLAT, AnalysisOptions(densities=(0.5, 0.5, 1.0), skip_compute=True))
    assert comp.bytes_moved["DRAM"] < base.bytes_moved["DRAM"] and comp.flops_executed == base.flops_executed
    assert skip.flops_executed < base.flops_executed and skip.bytes_moved == base.bytes_moved
    noopt = estimate(op, FLAT, AnalysisOptions(densities=(0.5, 0.5, 0.5), skip_compute=True,
                                               skip_compute_on_noopt_output=False))
    withopt = estimate(op, FLAT, AnalysisOptions(densities=(0.5, 0.5, 0.5), skip_compute=True))
    assert noopt.flops_executed == pytest.approx(2 * withopt.flops_executed)


def test_per_layer_densities_from_frame_csv(tmp_path):
    p = tmp_path / "dens.csv"
    p.write_text("I,W,O\n1.0,1.0,1.0\n0.5,0.25,1.0\n1.0,1.0,1.0\n")
    dens = load_densities(p)
    assert dens[1] == (0.5, 0.25, 1.0)
    df = analyze_operators(cnn_ops(), FLAT, AnalysisOptions(layer_densities=dens, skip_compute=True))
    assert df.flops_executed[0] == df.flops[0]
    assert df.flops_executed[1] == pytest.approx(df.flops[1] * 0.5 * 0.25)
    with pytest.raises(OpscopeError, match="3 rows but the model has 2"):
        analyze_operators(cnn_ops()[:2], FLAT, AnalysisOptions(layer_densities=dens, skip_compute=True))


@pytest.mark.parametrize("text, what", [
    ("A,B,C\n1,1,1\n", ":1"),
    ("I,W,O\n1,1\n", ":2: expected 3"),
    ("I,W,O\n1,x,1\n", ":2"),
    ("I,W,O\n1,2,1\n", ":2"),
])
def test_bad_density_files_name_the_line(tmp_path, text, what):
    p = tmp_path / "d.csv"
    p.write_text(text)
    with pytest.raises(OpscopeError, match=f"{p}{what}"):
        load_densities(p)


def test_analyze_model_on_a_layer_table_and_seq_len_error():
    df = analyze_model(TABLES / "vgg16_frame.csv", "tpuv4-like")
    assert len(df) == 17 and df.iloc[-1].op == "TOTAL"
    with pytest.raises(OpscopeError, match="seq_len"):
        analyze_model(str(TABLES / "bert_base_layer_frame.csv"), "tpuv4-like", seq_len=256)
    with pytest.raises(OpscopeError, match="does not exist"):
        analyze_model("missing.csv", "tpuv4-like")
