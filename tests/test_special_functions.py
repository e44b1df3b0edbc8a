"""Special functions in fused epilogues: counting the calls, their time, and the learned predictor's use of it."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from opscope.predictor import make_predictor
from opscope.predictor.evaluation.synthetic import TARGET, synthetic_frame, synthetic_spec
from opscope.predictor.features.build import threads_used
from opscope.predictor.features.estimates import SpecCache
from opscope.predictor.features.special import (
    KEEP,
    NOMINAL_CYCLES,
    calls_from_name,
    calls_in_script,
    seconds_per_call,
    special_calls,
    special_seconds,
    without_special,
)

SCRIPT = """@T.prim_func
def main(A: T.Buffer((T.int64(1), T.int64(96), T.int64(48), T.int64(48)), "float32")):
    for nn, ff, yy, xx, rc in T.grid(T.int64(1), T.int64(96), T.int64(48), T.int64(48), T.int64(16)):
        with T.sblock("conv2d_nchw"):
            conv[v_nn, v_ff, v_yy, v_xx] = conv[v_nn, v_ff, v_yy, v_xx] + pad[v_nn, v_rc, v_yy, v_xx]
    for i0, i1, i2, i3 in T.grid(T.int64(1), T.int64(96), T.int64(48), T.int64(48)):
        with T.sblock("compute"):
            compute[v_i0, v_i1, v_i2, v_i3] = T.sigmoid(conv[v_i0, v_i1, v_i2, v_i3])
    for i, j in T.grid(2, 3):
        with T.sblock("gelu"):
            out[i, j] = T.erf(x[i, j]) * T.erf(y[i, j])
"""


def test_calls_in_script_golden():
    # sigmoid once per element of the 1 x 96 x 48 x 48 nest; erf twice per element of the 2 x 3 nest;
    # the convolution's own 16-deep nest calls nothing
    assert calls_in_script(SCRIPT) == {"sigmoid": 1 * 96 * 48 * 48, "erf": 2 * (2 * 3)}
    assert calls_in_script("for i in T.grid(8):\n    y[i] = T.max(x[i], T.float32(0))") == {}


def test_calls_from_name_golden():
    op = json.dumps({"tensors": [["x", [1, 16, 48, 48], "float32", "input"],
                                 ["y", [1, 96, 48, 48], "float32", "output"]]})
    assert calls_from_name("fused_conv2d6_add4_tir_sigmoid3_multiply3", op) == {"sigmoid": 96 * 48 * 48}
    assert calls_from_name("fused_conv2d2_add1_divide_erf_add2_multiply", op) == {"erf": 96 * 48 * 48}
    # a word that starts like a function is not a call of it; no output tensor, no count
    assert calls_from_name("fused_conv2d_experimental_add", op) == {}
    assert calls_from_name("fused_matmul_exp", "not json") == {}


def _rows(**cols) -> pd.DataFrame:
    base = {"kind": "conv2d", "op_name": "fused_conv2d", "operator_json": "{}", "workload_script": SCRIPT,
            "target": "spec-probed", "threads": 1}
    return pd.DataFrame([{**base, **c} for c in cols.get("rows", [{}])])


def test_special_seconds_golden():
    probed = replace(synthetic_spec(), name="spec-probed", extra={"special_ns": {"sigmoid": 2.0, "erf": 10.0}})
    plain = replace(synthetic_spec(), name="spec-plain", frequency_hz=2.0e9)
    specs = SpecCache({"spec-probed": probed, "spec-plain": plain})
    frame = _rows(rows=[{}, {"threads": 2}, {"kind": "softmax"}, {"target": "spec-plain"}])
    used = np.array([1.0, 2.0, 1.0, 1.0])
    got = special_seconds(frame, specs, used)
    probed_s = (96 * 48 * 48 * 2.0 + 12 * 10.0) * 1e-9  # the probe's ns per call; tanh/exp not called
    plain_s = 96 * 48 * 48 * NOMINAL_CYCLES["sigmoid"] / 2.0e9 + 12 * NOMINAL_CYCLES["erf"] / 2.0e9
    np.testing.assert_allclose(got, [probed_s, probed_s / 2, 0.0, plain_s])
    # a probe that did not time a function leaves that one nominal
    assert seconds_per_call(specs, "spec-probed")["tanh"] == pytest.approx(NOMINAL_CYCLES["tanh"] / probed.frequency_hz)
    # rows without a script fall back to the name: 1 x 8 x 4 x 4 outputs, one sigmoid each
    op = json.dumps({"tensors": [["y", [1, 8, 4, 4], "float32", "output"]]})
    named = _rows(rows=[{"workload_script": None, "op_name": "fused_conv2d_add_tir_sigmoid", "operator_json": op}])
    assert special_calls(named) == [{"sigmoid": 128}]
    np.testing.assert_allclose(special_seconds(named, specs, np.ones(1)), [128 * 2.0e-9])


def test_without_special_keeps_a_tenth():
    np.testing.assert_allclose(without_special(np.array([10.0, 10.0, 4.0]), np.array([3.0, 20.0, 0.0])),
                               [7.0, KEEP * 10.0, 4.0])


@pytest.mark.parametrize("name", ["xgboost", "calibrated"])
def test_learned_predictor_adds_the_term_and_learns_without_it(name):
    frame = synthetic_frame(seed=0, models=3, per_model=4, schedules=4)
    specs = {TARGET: replace(synthetic_spec(), extra={"special_ns": {"sigmoid": 50.0}})}
    convs = (frame["kind"] == "conv2d").to_numpy()
    script = "for i, j in T.grid(100, 10):\n    y[i, j] = T.sigmoid(x[i, j])\n"
    with_calls = frame.assign(workload_script=np.where(convs, script, None))
    used = threads_used(frame, frame["threads"].to_numpy(dtype=float))
    term = np.where(convs, 1000 * 50e-9 / used, 0.0)
    assert (term[convs] > 0.2 * frame["latency_min_s"].to_numpy()[convs]).any()  # a term that matters
    # the same machine, its conv rows now also paying 1000 sigmoid calls each
    slower = with_calls.assign(latency_min_s=frame["latency_min_s"] + term)
    # (no default-relative members: their default twins read the script's loops, which the plain rows lack)
    kw = {"n_estimators": 60, "specs": specs, **({"nn_weight": 0.0, "relative_weight": 0.0} if name == "xgboost" else {})}
    plain = make_predictor(name, **kw).fit(frame, frame["latency_min_s"].to_numpy())
    learned = make_predictor(name, **kw).fit(slower, slower["latency_min_s"].to_numpy())
    # the term is taken out before learning, so both learn the same thing (up to the labels' rounding,
    # which moves a tree's split by a hair), and put back in predicting; without the first, the conv
    # rows would come out a term (over 20% of some) too slow
    np.testing.assert_allclose(learned.predict(slower), plain.predict(frame) + term, rtol=0.01)
    np.testing.assert_allclose(plain.predict(with_calls) - plain.predict(frame), term, rtol=1e-6, atol=1e-12)
