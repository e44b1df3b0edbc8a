"""The interference model: the held-out split keeps pairs apart, and the model learns a known law."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opscope.corun.interference import InterferenceModel, evaluate_interference, pair_split
from opscope.corun.measure import MemberResult
from opscope.corun.partition import Arrangement, Slot
from opscope.corun.table import member_rows
from opscope.errors import PredictorError


def _member(key: str, cores, alone: float, together: float, nbytes: float, flops: float) -> MemberResult:
    return MemberResult(key, (key,), (key,), tuple(cores), len(cores), True, flops, nbytes, (alone,), (together,))


@functools.cache
def _cached(n_ops: int, seed: int) -> pd.DataFrame:
    return synthetic_frame(n_ops, seed)


def synthetic_frame(n_ops: int = 10, seed: int = 0) -> pd.DataFrame:
    """Every unordered pair of ``n_ops`` made-up operators, co-run split and shared.

    The law: sharing cores doubles latency; on split cores a task slows down by its partner's
    bandwidth demand (bytes / alone latency, in GB/s) x 0.05.  Pairs appear in both orders.
    """
    rng = np.random.default_rng(seed)
    ops = [(f"op{i}", float(rng.uniform(1e-4, 1e-2)), float(rng.uniform(1e4, 1e7)), float(rng.uniform(1e5, 1e9)))
           for i in range(n_ops)]
    rows = []
    split = Arrangement("disjoint", (Slot((0,), 1), Slot((1,), 1)))
    shared = Arrangement("shared", (Slot((0, 1), 2, False), Slot((0, 1), 2, False)))
    for i in range(n_ops):
        for j in range(i + 1, n_ops):
            a, b = ops[i], ops[j]
            if (i + j) % 2:  # store some pairs in the other order: the pair must stay one group
                a, b = b, a
            bw_a, bw_b = a[2] / a[1] / 1e9, b[2] / b[1] / 1e9
            members = (_member(a[0], (0,), a[1], a[1] * (1 + 0.05 * bw_b), a[2], a[3]),
                       _member(b[0], (1,), b[1], b[1] * (1 + 0.05 * bw_a), b[2], b[3]))
            rows += member_rows(members, split, run_id=len(rows))
            members = (_member(a[0], (0, 1), a[1], 2 * a[1], a[2], a[3]),
                       _member(b[0], (0, 1), b[1], 2 * b[1], b[2], b[3]))
            rows += member_rows(members, shared, run_id=len(rows))
    return pd.DataFrame(rows)


def test_pair_id_is_order_free():
    frame = synthetic_frame(4)
    # 4 ops -> 6 unordered pairs, each with 2 arrangements x 2 members = 4 rows
    assert frame["pair_id"].nunique() == 6
    assert (frame.groupby("pair_id").size() == 4).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 9), st.floats(0.05, 0.9), st.integers(0, 10_000))
def test_split_holds_out_whole_pairs(n_ops, fraction, seed):
    frame = _cached(n_ops, 1)
    tr, te = pair_split(frame, fraction, seed)
    assert len(tr) > 0 and len(te) > 0
    assert len(tr) + len(te) == len(frame) and not set(tr) & set(te)
    train_pairs = set(frame.iloc[tr]["pair_id"])
    test_pairs = set(frame.iloc[te]["pair_id"])
    assert not train_pairs & test_pairs
    # and a test pair of tasks is absent from training in either order of its members
    def task_pairs(rows):
        return {frozenset(g["task"]) for _, g in rows.groupby("run_id")}

    assert not task_pairs(frame.iloc[tr]) & task_pairs(frame.iloc[te])


def test_split_needs_two_pairs():
    frame = synthetic_frame(2)
    with pytest.raises(PredictorError, match="at least 2 distinct pairs"):
        pair_split(frame)


def test_model_learns_the_shared_core_doubling_and_beats_no_interference():
    frame = synthetic_frame(12)
    result = evaluate_interference(frame, InterferenceModel(learner="xgboost", n_estimators=150), seeds=(0, 1))
    by = result[result["kind"] == "all"].groupby("method")["mape"].mean()
    # no interference is 50% off on shared rows (2x) and a little off on split rows
    assert by["no_interference"] > 25
    assert by["model_xgboost"] < 10
    assert by["model_xgboost"] < by["median_slowdown"]


def test_save_load_round_trip(tmp_path):
    frame = synthetic_frame(6)
    m = InterferenceModel(learner="xgboost", n_estimators=30).fit(frame)
    m.save(tmp_path / "im")
    back = InterferenceModel.load(tmp_path / "im")
    np.testing.assert_allclose(back.predict(frame), m.predict(frame), rtol=1e-6)
    lin = InterferenceModel(learner="linear").fit(frame)
    lin.save(tmp_path / "lin")
    np.testing.assert_allclose(InterferenceModel.load(tmp_path / "lin").predict(frame), lin.predict(frame))
    assert not list(tmp_path.rglob("*.pkl"))


def test_unfitted_and_bad_input_errors(tmp_path):
    with pytest.raises(PredictorError, match="not fitted"):
        InterferenceModel().predict(synthetic_frame(3))
    with pytest.raises(PredictorError, match="lacks columns"):
        InterferenceModel().fit(pd.DataFrame({"slowdown": [1.0, 2.0], "alone_s": [1.0, 1.0]}))
    with pytest.raises(PredictorError, match="unknown interference learner"):
        InterferenceModel(learner="svm").fit(synthetic_frame(3))
    with pytest.raises(PredictorError, match="cannot read"):
        InterferenceModel.load(tmp_path)


def test_held_out_operators_never_train_on_that_operator():
    from opscope.corun.interference import operator_split, pair_keys

    frame = synthetic_frame(5)
    tr, te = operator_split(frame, "op2")
    assert all("op2" in pair_keys(p) for p in frame.iloc[te]["pair_id"])
    assert not any("op2" in pair_keys(p) for p in frame.iloc[tr]["pair_id"])
    # 5 operators, no self pairs: op2 is in 4 of the 10 pairs, 4 rows each
    assert len(te) == 4 * 4
    ev = evaluate_interference(frame, InterferenceModel(learner="linear"), split="operators")
    assert sorted(ev["fold"].unique()) == [f"op{i}" for i in range(5)]


def test_contention_features_by_hand():
    from opscope.corun.contention import MemoryHierarchy, contention_features

    mem = MemoryHierarchy(("L1", "L2", "L3", "DRAM"), (64e3, 1e6, 8e6, math.inf), (100e9, 50e9, 20e9, 10e9), "t")
    a = _member("a", (0,), 1e-3, 1.2e-3, 2e6, 1e6)      # 2 MB: lives in L3; demand 2 MB / 1 ms = 2 GB/s
    b = _member("b", (1,), 4e-3, 4.4e-3, 40e6, 1e6)     # 40 MB: DRAM; demand 40 MB / 4 ms = 10 GB/s
    split = Arrangement("disjoint", (Slot((0,), 1), Slot((1,), 1)))
    f = contention_features(pd.DataFrame(member_rows((a, b), split)), mem)
    row = f.iloc[0]  # task a beside b
    assert (row["level"], row["partner_level"]) == (2, 3)
    assert row["bw_util"] == pytest.approx(2e9 / 20e9)              # its demand over L3's bandwidth, 1 core
    assert row["partner_bw_util"] == pytest.approx(10e9 / 10e9)     # b saturates DRAM alone
    assert row["shared_bw_util"] == pytest.approx((2e9 + 10e9) / 10e9)  # both reach DRAM at most
    assert row["ws_ratio"] == pytest.approx(math.log2(42e6 / 8e6))
    assert row["oversubscription"] == 1.0 and row["threads_per_core"] == 1.0
    assert row["overlap"] == pytest.approx(math.log(4.0))
    shared = Arrangement("shared", (Slot((0, 1), 2, False), Slot((0, 1), 2, False)))
    a2 = _member("a", (0, 1), 1e-3, 2e-3, 2e6, 1e6)
    b2 = _member("b", (0, 1), 4e-3, 8e-3, 40e6, 1e6)
    g = contention_features(pd.DataFrame(member_rows((a2, b2), shared)), mem).iloc[0]
    assert g["oversubscription"] == pytest.approx((2 + 2) / 2)  # 4 threads on 2 cores
    assert g["bw_util"] == pytest.approx(2e9 / (20e9 * 2))


def test_a_method_is_used_only_where_it_beat_both_baselines():
    from opscope.corun.interference import HeldOutError

    m = InterferenceModel(learner="linear").fit(synthetic_frame(6))
    m.validation_ = [HeldOutError("model", "disjoint", (0.05, 0.06)), HeldOutError("no_interference", "disjoint", (0.1,)),
                     HeldOutError("median_slowdown", "disjoint", (0.2,)),
                     HeldOutError("model", "shared", (0.5, 0.6)), HeldOutError("no_interference", "shared", (0.4,)),
                     HeldOutError("median_slowdown", "shared", (0.3, 0.35))]
    assert m._methods() == {"disjoint": "model", "shared": "median_slowdown"}
    # 90th percentile of (0.05, 0.06) by linear interpolation: 0.05 + 0.9 * 0.01
    assert m.validation("disjoint", "model").bound == pytest.approx(0.059)


def test_saved_model_keeps_its_validation(tmp_path):
    frame = synthetic_frame(6)
    m = InterferenceModel(learner="linear").fit(frame)
    m.save(tmp_path / "m")
    back = InterferenceModel.load(tmp_path / "m")
    (pred, bound, methods), (pred0, bound0, methods0) = back.estimate(frame), m.estimate(frame)
    np.testing.assert_allclose(pred, pred0)
    np.testing.assert_allclose(bound, bound0)
    assert methods == methods0
    assert back.method_ == m.method_ and back.summary() == m.summary()


def test_the_linear_learner_does_not_extend_its_line_past_the_training_range():
    from opscope.corun.interference import FEATURES, _Linear

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(40, len(FEATURES)))
    y = 0.5 * x[:, 0]
    lin = _Linear(1.0, [0]).fit(x, y)
    far, edge = x[:1].copy(), x[:1].copy()
    far[0, 0], edge[0, 0] = 1e6, x[:, 0].max()
    assert lin.predict(far)[0] == pytest.approx(lin.predict(edge)[0])
    assert lin.predict(edge)[0] > lin.predict(x[np.argmin(x[:, 0])][None, :])[0]  # it did learn the slope
