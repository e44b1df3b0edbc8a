"""Golden numbers for the analytical model, each computed by hand here with its formula visible.

Two specs: FLAT (a per-dtype peak, no PE array) and PE (4 instances of 16 x 8 PEs at 1 GHz).
"""

from __future__ import annotations

import math

import pytest

from opscope.analytical import AnalysisOptions, analyze_operators, estimate, pe_utilization
from opscope.errors import OpscopeError
from opscope.targets.spec import MemoryLevel, PEArray, TargetSpec
from opscope.workloads.layer_table import attention_op, conv_op, dense_op

FLAT = TargetSpec(name="flat", kind="cpu", frequency_hz=1e9, peak_flops={"float32": 1e12},
                  memory=(MemoryLevel("L1", 1 << 20, 1e12), MemoryLevel("DRAM", None, 1e11)))
PE = TargetSpec(name="pe", kind="accelerator", frequency_hz=1e9, pe_array=PEArray(4, 16, 8),
                memory=(MemoryLevel("SRAM", 1 << 20, 1e12, 1.0), MemoryLevel("DRAM", None, 1e11, 10.0)),
                energy_pj_per_mac=0.5)
PE_PEAK = 2 * 4 * 16 * 8 * 1e9  # 2 FLOP/MAC x PEs x frequency


def dense(b=64, out=128, inp=256):
    return dense_op("fc", b, out, inp, "float32", source="table", model="t")


def test_gemm_flat_peak():
    e = estimate(dense(), FLAT)
    flops = 2 * 64 * 128 * 256
    nbytes = 4 * (64 * 256 + 128 * 256 + 64 * 128)
    assert e.flops_executed == flops
    assert e.compute_s == pytest.approx(flops / 1e12)
    assert e.memory_s["DRAM"] == pytest.approx(nbytes / 1e11)
    assert e.memory_s["L1"] == pytest.approx(nbytes / 1e12)
    assert e.latency_s == pytest.approx(max(flops / 1e12, nbytes / 1e11))
    assert e.bound == "compute"
    assert e.intensity == pytest.approx(flops / nbytes)
    assert e.attainable_flops == pytest.approx(flops / e.latency_s)
    assert e.pe_utilization == 1.0 and e.energy_j is None


def test_gemm_on_pe_array():
    op = dense(b=10, out=20, inp=30)  # GEMM view m=10, n=20, k=30
    e = estimate(op, PE, AnalysisOptions(mapping="none"))  # the GEMM-view model; mappings: test_mapping_*
    # sorted dims a=30, b=20 spatial on the 16 x 8 sides, s=10 streamed
    jobs = math.ceil(30 / 16) * math.ceil(20 / 8)  # 2 * 3 = 6 >= 4 instances
    cycles = math.ceil(jobs / 4) * 10
    util = 10 * 20 * 30 / (cycles * 4 * 16 * 8)
    assert util == pytest.approx(0.5859375)
    assert e.pe_utilization == pytest.approx(util)
    flops = 2 * 10 * 20 * 30
    assert e.compute_s == pytest.approx(flops / (PE_PEAK * util))
    nbytes = 4 * (10 * 30 + 20 * 30 + 10 * 20)
    assert e.memory_s["DRAM"] == pytest.approx(nbytes / 1e11)
    assert e.bound == "DRAM"
    # energy: MACs x 0.5 pJ + bytes at each level x its pJ/B (each tensor once at both levels)
    assert e.energy_j == pytest.approx((flops / 2 * 0.5 + nbytes * 1.0 + nbytes * 10.0) * 1e-12)


def test_one_job_spreads_over_instances_not_capped():
    # a single array-sized job: FRAME would use 1 of 4 instances (utilisation <= 25%)
    util = pe_utilization(1, 16, 8, 5, PEArray(4, 16, 8))
    frame_util = (16 * 8) / (1 * 4 * 16 * 8)
    cycles = math.ceil(5 / (4 // 1))  # the streamed dimension split over the 4 instances
    assert util == pytest.approx(16 * 8 * 5 / (cycles * 4 * 16 * 8))
    assert util == pytest.approx(0.625) and frame_util == 0.25


def test_conv_flat_and_pe():
    op = conv_op("conv", 1, 16, 8, 10, 10, 3, 3, stride=1, padding=1, groups=1, dtype="float32",
                 source="table", model="t")
    flops = 2 * 16 * 8 * 10 * 10 * 3 * 3
    nbytes = 4 * (8 * 10 * 10 + 16 * 8 * 3 * 3 + 16 * 10 * 10)
    e = estimate(op, FLAT)
    assert e.compute_s == pytest.approx(flops / 1e12)
    assert e.memory_s["DRAM"] == pytest.approx(nbytes / 1e11)
    assert e.bound == "compute"
    # GEMM view m = P*Q = 100, n = K = 16, k = C*R*S = 72 -> a=100, b=72, s=16
    jobs = math.ceil(100 / 16) * math.ceil(72 / 8)
    util = 100 * 72 * 16 / (math.ceil(jobs / 4) * 16 * 4 * 16 * 8)
    p = estimate(op, PE)
    assert p.pe_utilization == pytest.approx(util) == pytest.approx(0.87890625)
    assert p.compute_s == pytest.approx(flops / (PE_PEAK * util))


def test_depthwise_conv():
    op = conv_op("dw", 1, 32, 32, 14, 14, 3, 3, stride=1, padding=1, groups=32, dtype="float32",
                 source="table", model="t")
    assert op.kind == "depthwise_conv2d"
    flops = 2 * 32 * 14 * 14 * 9
    nbytes = 4 * (32 * 14 * 14 + 32 * 9 + 32 * 14 * 14)
    e = estimate(op, FLAT)
    assert e.flops_executed == flops
    assert e.memory_s["DRAM"] == pytest.approx(nbytes / 1e11)
    assert e.bound == "DRAM" and e.latency_s == pytest.approx(nbytes / 1e11)
    # GEMM view: batch = 32 channels of (196 x 9) x (9 x 1): a=196, b=9, s=1
    jobs = 32 * math.ceil(196 / 16) * math.ceil(9 / 8)
    util = 32 * 196 * 9 * 1 / (math.ceil(jobs / 4) * 1 * 4 * 16 * 8)
    assert estimate(op, PE).pe_utilization == pytest.approx(util)


def attn_pair(b=1, h=2, s=16, d=8):
    return [attention_op("logit", "logit", b, h, s, s, d, "float32", source="table", model="t"),
            attention_op("attend", "attend", b, h, s, s, d, "float32", source="table", model="t")]


def test_attention_vanilla():
    df = analyze_operators(attn_pair(), FLAT)
    logit, attend = df.iloc[0], df.iloc[1]
    flops = 2 * 1 * 2 * 16 * 16 * 8
    logit_bytes = 4 * (2 * 16 * 8 + 2 * 16 * 8 + 2 * 16 * 16)   # Q, K, scores
    attend_bytes = 4 * (2 * 16 * 16 + 2 * 16 * 8 + 2 * 16 * 8)  # P, V, out
    assert logit.flops == flops and attend.flops == flops
    assert logit.bytes == logit_bytes and attend.bytes == attend_bytes
    assert logit.latency_s == pytest.approx(max(flops / 1e12, logit_bytes / 1e11))


def test_attention_sparse():
    d = 0.25
    df = analyze_operators(attn_pair(), FLAT, AnalysisOptions(attention="sparse", spattn_density=d))
    logit, attend = df.iloc[0], df.iloc[1]
    flops = 2 * 1 * 2 * 16 * 16 * 8
    assert logit.flops_executed == pytest.approx(flops * d)
    assert attend.flops_executed == pytest.approx(flops * d)
    # only the kept scores are written by the logit and read by the attend
    assert logit.bytes == pytest.approx(4 * (2 * 16 * 8 + 2 * 16 * 8 + 2 * 16 * 16 * d))
    assert attend.bytes == pytest.approx(4 * (2 * 16 * 16 * d + 2 * 16 * 8 + 2 * 16 * 8))


def test_attention_lowrank():
    ratio = 0.25
    df = analyze_operators(attn_pair(), FLAT, AnalysisOptions(attention="lowrank", low_rank_ratio=ratio))
    r = math.ceil(16 * ratio)  # 4 projected positions
    rows = {row.op: row for row in df.itertuples()}
    assert set(rows) == {"logit.key_proj", "logit.lowrank_logit", "attend.value_proj", "attend.lowrank_attend", "TOTAL"}
    # projection E (r x N) @ K (N x H*D)
    assert rows["logit.key_proj"].flops == 2 * r * 16 * (2 * 8)
    assert rows["logit.key_proj"].bytes == 4 * (r * 16 + 16 * 16 + r * 16)
    assert rows["logit.lowrank_logit"].flops == 2 * 2 * 16 * r * 8
    assert rows["logit.lowrank_logit"].bytes == 4 * (2 * 16 * 8 + 2 * r * 8 + 2 * 16 * r)
    assert rows["attend.lowrank_attend"].flops == 2 * 2 * 16 * 8 * r
    total = 2 * (2 * r * 16 * 16) + 2 * (2 * 2 * 16 * r * 8)
    assert rows["TOTAL"].flops == total


def test_attention_kernel():
    m_ratio = 2.0
    df = analyze_operators(attn_pair(), FLAT, AnalysisOptions(attention="kernel", m_ratio=m_ratio))
    f = math.ceil(m_ratio * 8)  # 16 random features per head
    rows = {row.op: row for row in df.itertuples()}
    assert set(rows) == {"logit.phi_q", "logit.phi_k", "attend.kv", "attend.qkv", "TOTAL"}
    assert rows["logit.phi_q"].flops == 2 * 2 * 16 * f * 8      # Q (M x D) @ W (D x f), per head
    assert rows["logit.phi_k"].flops == 2 * 2 * 16 * f * 8      # K (N x D) @ W
    assert rows["attend.kv"].flops == 2 * 2 * f * 8 * 16        # phi(K)^T (f x N) @ V (N x D)
    assert rows["attend.qkv"].flops == 2 * 2 * 16 * 8 * f       # phi(Q) (M x f) @ KV (f x D)
    assert rows["attend.kv"].bytes == 4 * (2 * f * 16 + 2 * 16 * 8 + 2 * f * 8)


def test_sparse_frame_semantics():
    op = dense()
    flops = 2 * 64 * 128 * 256
    opts = AnalysisOptions(densities=(0.5, 0.25, 1.0), compress_mem=True, skip_compute=True)
    e = estimate(op, FLAT, opts)
    # skip_compute: MACs x d_a x d_w x d_o (skip_compute_on_noopt_output defaults to True, as in FRAME)
    assert e.flops_executed == pytest.approx(flops * 0.5 * 0.25 * 1.0)
    # compress_mem: each tensor's bytes x its density
    assert e.bytes_moved["DRAM"] == pytest.approx(4 * (64 * 256 * 0.5 + 128 * 256 * 0.25 + 64 * 128 * 1.0))
    # a structured accelerator rounds the executed share up to a multiple of min_density
    s = estimate(op, FLAT, AnalysisOptions(densities=(0.5, 0.25, 1.0), skip_compute=True, min_density=0.5))
    assert s.flops_executed == pytest.approx(flops * math.ceil(0.125 / 0.5) * 0.5)
    assert s.bytes_moved["DRAM"] == 4 * (64 * 256 + 128 * 256 + 64 * 128)  # not compressed
    # on the PE array FRAME shrinks the contraction: k = 256 * 0.5 * 0.25 = 32
    p = estimate(op, PE, opts)
    a, b_, s_ = 128, 64, 32
    util = 64 * 128 * 32 / (math.ceil(math.ceil(a / 16) * math.ceil(b_ / 8) / 4) * s_ * 4 * 16 * 8)
    assert p.pe_utilization == pytest.approx(util)
    assert p.compute_s == pytest.approx(flops / 8 / (PE_PEAK * util))


def test_unmodelled_kind_gets_a_marked_row():
    from opscope.workloads.operator import Operator, TensorInfo

    op = Operator(name="mystery", kind="other", flops=0,
                  tensors=(TensorInfo("x", (1000,), "float32", "input"), TensorInfo("y", (1000,), "float32", "output")))
    df = analyze_operators([op, dense()], FLAT)
    row = df.iloc[0]
    assert not row.modelled and row.bound == "unmodelled"
    assert row.latency_s == pytest.approx(8000 / 1e11)
    assert not df.iloc[-1].modelled


def test_total_row_sums_counts():
    a = dense().with_count(3)
    df = analyze_operators([a, dense(b=1)], FLAT)
    total = df.iloc[-1]
    assert total.op == "TOTAL"
    e1, e2 = estimate(a, FLAT), estimate(dense(b=1), FLAT)
    assert total.latency_s == pytest.approx(3 * e1.latency_s + e2.latency_s)
    assert total.flops == 3 * a.flops + dense(b=1).flops
    assert df.iloc[0].share == pytest.approx(3 * e1.latency_s / total.latency_s)
    for col in ("op", "kind", "count", "flops", "bytes", "intensity", "compute_s", "memory_s", "latency_s",
                "bound", "pe_utilization"):
        assert col in df.columns


def test_dtype_without_peak_is_an_error():
    op = dense_op("fc", 2, 2, 2, "int8", source="table", model="t")
    with pytest.raises(OpscopeError, match="no peak for dtype 'int8'"):
        estimate(op, FLAT)


def test_agrees_with_frame_where_frame_spreads_the_batch(tmp_path):
    """FRAME's own formulas (src/operator_base.py), by hand, for a GEMM with batch 4 on its default system.

    With outer batch = 4 = instances FRAME's mapping and ours coincide, so the numbers must match.
    """
    from opscope.analytical import analyze_model

    p = tmp_path / "bert_gemm.csv"
    p.write_text("M,N,D,H,Z,Z,T\n3072,512,768,1,1,1,3\n")
    row = analyze_model(p, "tpuv4-like", batch_size=4, dtype="bfloat16").iloc[0]
    B, M, N, K = 4, 3072, 512, 768
    num_ops = B * M * N * K                                         # get_num_ops
    left, upper, contract, outer = N, M, K, B                        # GEMM.get_gemms
    a, b, _ = sorted([left, upper, contract], reverse=True)          # mapping: 2 largest spatial
    iters = math.ceil(outer / 4) * math.ceil(a / 128) * math.ceil(b / 128)
    efficiency = outer * a * b / (iters * 4 * 128 * 128)
    op_per_sec = 4 * 128 * 128 * 940e6                               # System with mxu_shape
    compute_time = num_ops * 1 / op_per_sec / efficiency             # bf16 multiplier 1
    elements = B * K * N + M * K + B * M * N                         # input_a, input_w, output
    memory_time = elements * 2 / (900 * 2**30)                       # bf16: 2 bytes, "900 GBsec"
    assert row.compute_s == pytest.approx(compute_time)
    assert row.memory_s == pytest.approx(memory_time)
    assert row.latency_s == pytest.approx(max(compute_time, memory_time))


def test_non_gemm_operator_in_an_odd_dtype_falls_back_with_a_note():
    from opscope.workloads.operator import Operator, TensorInfo

    op = Operator(name="cast", kind="elementwise", flops=1000,
                  tensors=(TensorInfo("x", (1000,), "int64", "input"), TensorInfo("y", (1000,), "float32", "output")))
    e = estimate(op, FLAT)
    assert e.compute_s == pytest.approx(1000 / 1e12)  # float32's peak
    assert any("int64" in n for n in e.notes)
