"""The default loop nest's reduction walk: cache lines and cache-set pressure, golden by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from opscope.predictor.evaluation.synthetic import TARGET, synthetic_frame, synthetic_spec
from opscope.predictor.features.build import build_features, fit_schema
from opscope.predictor.features.estimates import SpecCache
from opscope.predictor.features.walk import COLUMNS, MAX_STEPS, walk_features, walk_of_script


def gemm(m: int, n: int, k: int, transposed: bool = False) -> str:
    """A default GEMM as TE writes it; the weight is [K, N] (read down a column) or [N, K]."""
    w_shape = f"T.int64({n}), T.int64({k})" if transposed else f"T.int64({k}), T.int64({n})"
    w_read = "W[v_j, v_k]" if transposed else "W[v_k, v_j]"
    return f"""@T.prim_func(s_tir=True)
def main(A: T.Buffer((T.int64({m}), T.int64({k})), "float32"), W: T.Buffer(({w_shape}), "float32"), C: T.Buffer((T.int64({m}), T.int64({n})), "float32")):
    for i, j, k in T.grid(T.int64({m}), T.int64({n}), T.int64({k})):
        with T.sblock("matmul"):
            v_i, v_j, v_k = T.axis.remap("SSR", [i, j, k])
            T.reads(A[v_i, v_k], {w_read})
            T.writes(C[v_i, v_j])
            C[v_i, v_j] = C[v_i, v_j] + A[v_i, v_k] * {w_read}
"""


def test_gemm_down_a_power_of_two_column_golden():
    lines, l1, l2 = walk_of_script(gemm(32, 512, 2048))
    # A's row: 2048 floats = 8192 B = 128 lines; W's column: 2048 steps of 512 * 4 = 2048 B (32 lines)
    assert lines == pytest.approx(math.log2(128 + 2048))
    # W's lines are 0, 32, 64, ...: in 1024 sets they fall on 1024 / 32 = 32 sets, 2048 / 32 = 64 each;
    # in 64 sets on 64 / 32 = 2 sets, 1024 each (A's 128 contiguous lines: 1 per L2 set, 2 per L1 set)
    assert l2 == pytest.approx(math.log2(2048 / 32))
    assert l1 == pytest.approx(math.log2(2048 / 2))


def test_gemm_with_transposed_weight_reads_rows_golden():
    lines, l1, l2 = walk_of_script(gemm(32, 512, 2048, transposed=True))
    # both reads are contiguous: 128 lines each, 2 per L1 set and 1 per L2 set
    assert (lines, l1, l2) == pytest.approx((math.log2(256), math.log2(2), 0.0))


def test_gemm_with_an_odd_stride_spreads_over_the_sets():
    # N = 464: a 1856 B (29-line) stride, coprime with 1024 sets: 5696 lines fill all sets, ceil(5696 / 1024)
    _, _, l2 = walk_of_script(gemm(8, 464, 5696))
    assert l2 == pytest.approx(math.log2(math.ceil(5696 / 1024)))


CONV = """@T.prim_func(s_tir=True)
def main(x: T.Buffer((T.int64(1), T.int64(4), T.int64(4), T.int64(4)), "float32"), 8_e3_weight: T.Buffer((T.int64(8), T.int64(4), T.int64(3), T.int64(3)), "float32")):
    pad_temp = T.sblock_alloc_buffer((T.int64(1), T.int64(4), T.int64(6), T.int64(6)))
    for i0, i1, i2, i3 in T.grid(T.int64(1), T.int64(4), T.int64(6), T.int64(6)):
        with T.sblock("pad_temp"):
            v_i0, v_i1, v_i2, v_i3 = T.axis.remap("SSSS", [i0, i1, i2, i3])
            T.reads(x[v_i0, v_i1, v_i2 - T.int64(1), v_i3 - T.int64(1)])
    for nn, ff, yy, xx, rc, ry, rx in T.grid(T.int64(1), T.int64(8), T.int64(4), T.int64(4), T.int64(4), T.int64(3), T.int64(3)):
        with T.sblock("conv2d_nchw"):
            v_nn, v_ff, v_yy, v_xx, v_rc, v_ry, v_rx = T.axis.remap("SSSSRRR", [nn, ff, yy, xx, rc, ry, rx])
            T.reads(pad_temp[v_nn, v_rc, v_yy + v_ry, v_xx + v_rx], 8_e3_weight[v_ff, v_rc, v_ry, v_rx])
"""


def test_convolution_walk_golden():
    # pad_temp[0, rc, ry, rx] at (36 rc + 6 ry + rx) * 4 bytes: rc = 0 spans bytes 0-59 (line 0),
    # rc = 1 bytes 144-203 (lines 2, 3), rc = 2 288-347 (4, 5), rc = 3 432-491 (6, 7): 7 lines; the
    # weight's 36 contiguous floats (ff = 0) 144 bytes: lines 0-2; no set holds two lines of one buffer
    assert walk_of_script(CONV) == pytest.approx((math.log2(7 + 3), 0.0, 0.0))


def test_unreadable_walks_are_none():
    assert walk_of_script("") is None
    # no reduction block
    assert walk_of_script(CONV.split("    for nn")[0]) is None
    # the reduction loop not innermost
    assert walk_of_script(gemm(4, 4, 4).replace("for i, j, k in", "for i, k, j in")) is None
    # a read of a buffer the script does not declare
    assert walk_of_script(gemm(4, 4, 4).replace("T.reads(A[v_i, v_k]", "T.reads(Q[v_i, v_k]")) is None
    # a walk too long to enumerate
    assert walk_of_script(gemm(1, 16, MAX_STEPS + 1)) is None


def test_walk_features_per_row():
    frame = pd.DataFrame({"workload_script": [gemm(32, 512, 2048), None, gemm(32, 512, 2048), "not a script"]})
    out = walk_features(frame)
    assert out.shape == (4, len(COLUMNS))
    assert out[0] == pytest.approx(walk_of_script(gemm(32, 512, 2048)))
    assert np.array_equal(out[0], out[2])
    assert np.isnan(out[1]).all() and np.isnan(out[3]).all()


def test_features_carry_the_walk():
    frame = synthetic_frame(models=1, per_model=2, schedules=2).assign(workload_script=gemm(32, 512, 2048))
    feats = build_features(frame, fit_schema(frame), SpecCache({TARGET: synthetic_spec()}))
    cols = [feats.columns.index(c) for c in COLUMNS]
    assert feats.X[:, cols] == pytest.approx(np.tile(walk_of_script(gemm(32, 512, 2048)), (len(frame), 1)))
    # without a script: NaN
    feats = build_features(frame.drop(columns="workload_script"), fit_schema(frame), SpecCache({TARGET: synthetic_spec()}))
    assert np.isnan(feats.X[:, cols]).all()


class _Func:
    """Stands in for a TIR PrimFunc: what ``operator_frame`` and the store read of one."""

    def __init__(self, text: str) -> None:
        self.text = text

    def script(self) -> str:
        return self.text


def test_operator_frame_carries_the_script_features_read():
    from dataclasses import replace

    from opscope.predictor.evaluation.synthetic import synthetic_operators
    from opscope.predictor.frames import operator_frame
    from opscope.store.sqlite import workload_script

    op = replace(synthetic_operators(seed=0, models=1, per_model=1)[0], prim_func=_Func(gemm(32, 512, 2048)))
    frame = operator_frame([op], TARGET)
    # the text the store keeps for the operator, so a model's unmeasured operators get the walk their
    # measured twins were trained with (without it every d_ feature was NaN)
    assert frame["workload_script"].tolist() == [workload_script(op)] == [gemm(32, 512, 2048)]
    walk = walk_features(frame)[0]
    assert walk == pytest.approx(walk_of_script(gemm(32, 512, 2048)))
    bare = operator_frame([replace(op, prim_func=None)], TARGET)
    assert bare["workload_script"].tolist() == [""] and np.isnan(walk_features(bare)).all()
