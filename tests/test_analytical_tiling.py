"""Tiling-aware data movement: reuse analysis by hand, capacity, double buffering, bad tilings."""

from __future__ import annotations

import pytest

from opscope.analytical import AnalysisOptions, estimate
from opscope.errors import OpscopeError
from opscope.targets.spec import MemoryLevel, TargetSpec
from opscope.workloads.layer_table import conv_op, matmul_op

KB = 1024


def spec(l1=64 * KB, l2=1024 * KB):
    return TargetSpec(name="t", kind="cpu", frequency_hz=1e9, peak_flops={"float32": 1e12},
                      memory=(MemoryLevel("L1", l1, 4e11), MemoryLevel("L2", l2, 2e11), MemoryLevel("DRAM", None, 1e11)))


def mm():
    return matmul_op("mm", 1, 64, 64, 64, "float32", "t")  # A, B, C: 16 KiB each


COMPULSORY = 3 * 64 * 64 * 4


def test_no_tiles_each_tensor_moves_once():
    e = estimate(mm(), spec())
    assert e.bytes_moved == {"L1": COMPULSORY, "L2": COMPULSORY, "DRAM": COMPULSORY}


def test_reuse_analysis_by_hand():
    # L1 holds m=32, n=32, k=64 tiles; loop order b, m, n, k (k innermost, 1 tile)
    e = estimate(mm(), spec(), tiles={"L1": {"m": 32, "n": 32}})
    a = 2 * (32 * 64 * 4)          # A(m,k): n is the innermost tiled loop and A ignores it -> loaded per m tile
    b = (2 * 2) * (32 * 64 * 4)    # B(n,k): reloaded for every (m, n) tile
    c = (2 * 2) * (32 * 32 * 4)    # C(m,n): each tile written once, no revisits
    assert e.bytes_moved["L1"] == COMPULSORY        # compute reads L1: compulsory
    assert e.bytes_moved["L2"] == a + b + c         # L1 is filled from L2
    assert e.bytes_moved["DRAM"] == a + b + c       # L2 untiled: passes the traffic through


def test_split_reduction_revisits_outputs():
    e = estimate(mm(), spec(), tiles={"L1": {"m": 32, "n": 32, "k": 16}})
    a = (4 * 2 * 2) * (32 * 16 * 4)
    b = (4 * 2 * 2) * (32 * 16 * 4)
    c = (2 * 2) * (32 * 32 * 4)    # k innermost and C ignores k: the output tile stays while k runs
    assert e.bytes_moved["L2"] == a + b + c


def test_outputs_revisited_when_the_reduction_is_not_innermost():
    # conv loop order n, k, c, p, q, r, s: tiling c (a reduction) and p puts c outside p
    op = conv_op("c", 1, 8, 4, 16, 16, 3, 3, stride=1, padding=1, groups=1, dtype="float32", source="table", model="t")
    e = estimate(op, spec(), tiles={"L1": {"c": 2, "p": 8}})
    out_tile = 8 * 8 * 16 * 4                     # k=8, p=8, q=16 floats
    loads = 2 * 2                                 # p tiles x c tiles (the output depends on p, not c)
    distinct = 2
    out = out_tile * (loads + (loads - distinct))  # written on every visit, read back after the first
    in_tile = 2 * ((8 - 1) + 3) * ((16 - 1) + 3)   # c=2 channels, 10 halo rows, 18 cols
    inp = 4 * in_tile * (4 * 16 * 16 * 4) / (4 * 18 * 18)
    weight = 8 * 4 * 9 * 4                        # p innermost and ignored by weights: loaded per c tile = once
    assert e.bytes_moved["L2"] == pytest.approx(inp + weight + out)


def test_full_tiles_are_compulsory():
    e = estimate(mm(), spec(), tiles={"L1": {"m": 64, "n": 64, "k": 64}})
    assert e.bytes_moved["L2"] == COMPULSORY


def test_conv_halo():
    op = conv_op("c", 1, 8, 4, 16, 16, 3, 3, stride=1, padding=1, groups=1, dtype="float32", source="table", model="t")
    # L1 holds p=8 output rows (two row tiles), everything else whole
    e = estimate(op, spec(), tiles={"L1": {"p": 8}})
    in_rows = (8 - 1) * 1 + 3                     # halo: 10 input rows per 8 output rows
    full_rows = (16 - 1) * 1 + 3                  # 18 rows of the padded input for the whole layer
    inp = 4 * 16 * 16 * 4 * (2 * in_rows) / full_rows
    # order n,k,c,p,q,r,s: p is the only tiled loop and weights ignore it -> stay resident: loaded once
    weight = 8 * 4 * 9 * 4
    out = 8 * 16 * 16 * 4
    assert e.bytes_moved["L2"] == pytest.approx(inp + weight + out)


def test_overflow_gets_no_reuse_credit_and_double_buffer_needs_twice_the_space():
    tiles = {"L1": {"m": 16, "n": 16, "k": 16}, "L2": {"m": 64, "n": 64, "k": 64}}
    fits = estimate(mm(), spec(), tiles=tiles)
    assert fits.bytes_moved["DRAM"] == COMPULSORY and not fits.notes
    # L2 tiles take 48 KiB, 96 KiB double-buffered: a 64 KiB L2 cannot hold them
    small = estimate(mm(), spec(l1=8 * KB, l2=64 * KB), tiles=tiles)
    assert small.bytes_moved["DRAM"] == small.bytes_moved["L2"] > COMPULSORY
    assert any("L2" in n for n in small.notes)
    single = estimate(mm(), spec(l1=8 * KB, l2=64 * KB), tiles=tiles, options=AnalysisOptions(double_buffer=False))
    assert single.bytes_moved["DRAM"] == COMPULSORY
    # without double buffering nothing overlaps: compute + every level's time
    assert single.latency_s == pytest.approx(single.compute_s + sum(single.memory_s.values()))
    assert fits.latency_s == pytest.approx(max(fits.compute_s, *fits.memory_s.values()))


@pytest.mark.parametrize("tiles, what", [
    ({"L9": {"m": 2}}, "unknown memory level 'L9'"),
    ({"DRAM": {"m": 2}}, "outermost"),
    ({"L1": {"z": 2}}, "no loop 'z'"),
    ({"L1": {"m": 0}}, "1..64"),
    ({"L1": {"m": 65}}, "1..64"),
    ({"L1": {"m": 32}, "L2": {"m": 16}}, "larger than the tile outside it"),
])
def test_bad_tilings_are_errors(tiles, what):
    with pytest.raises(OpscopeError, match=what):
        estimate(mm(), spec(), tiles=tiles)


def test_analyze_operators_takes_tiles_per_operator():
    from opscope.analytical import analyze_operators

    df = analyze_operators([mm()], spec(), tiles={"mm": {"L1": {"m": 32, "n": 32}}})
    one = estimate(mm(), spec(), tiles={"L1": {"m": 32, "n": 32}})
    assert df.iloc[0]["bytes_L2"] == one.bytes_moved["L2"] > COMPULSORY
    with pytest.raises(OpscopeError, match="unknown operator"):
        analyze_operators([mm()], spec(), tiles={"nope": {"L1": {"m": 2}}})
