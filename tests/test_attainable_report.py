"""The report's attainable columns: library rows beside the best schedule, the whole-model sum of the
kernels as built (like with like), and torch eager end to end."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from opscope.report.table import (
    MeasuredOp,
    operator_rows,
    summarize_measurements,
    summary_numbers,
    with_total,
)
from opscope.report.terminal import summary_lines
from opscope.report.whole_model import WholeModelResult, built_sum_of


def _frame(rows):
    cols = ["workload_key", "schedule_id", "schedule_kind", "threads", "status", "latency_median_s", "noisy"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows])


def test_best_is_over_tvm_schedules_and_the_library_row_sits_beside_it():
    frame = _frame([
        ("k", "default", "default", 1, "ok", 9e-3, False),
        ("k", "s1", "searched", 1, "ok", 3e-3, False),
        ("k", "s2", "searched", 2, "ok", 2e-3, False),
        ("k", "lib:torch-2.13.0", "library", 1, "ok", 1e-3, False),  # faster, but not a TVM schedule
        ("k", "lib:torch-2.13.0", "library", 2, "ok", 0.5e-3, False),
        ("only-lib", "lib:torch-2.13.0", "library", 1, "ok", 1e-3, False),
    ])
    got = summarize_measurements(frame)
    assert set(got) == {"k"}  # library rows alone do not make an operator measured
    assert got["k"].best_s == 2e-3 and got["k"].best_threads == 2 and got["k"].best_schedule_id == "s2"
    assert got["k"].library_s == 0.5e-3  # torch at the best schedule's thread count
    assert summarize_measurements(frame, threads=1)["k"].library_s == 1e-3


def _ops():
    from opscope.workloads.operator import Operator, TensorInfo

    def op(key, count):
        return Operator(name=key, kind="dense", tensors=(TensorInfo("x", (4, 4), "float32", "input"),), flops=128,
                        key=key, count=count)
    return [op("a", 2), op("b", 1), op("c", 1)]


def test_table_and_summary_say_how_far_the_best_is_from_torch():
    ops = _ops()
    measured = {"a": MeasuredOp(3e-3, 1, 2e-3, 1, "s1", 4, library_s=1e-3),
                "b": MeasuredOp(4e-3, 1, 4e-3, 1, "default", 1, library_s=1e-3)}
    est = [SimpleNamespace(latency_s=1e-4, bound="compute", attainable_flops=1e9) for _ in ops]
    table = with_total(operator_rows(ops, measured, est))
    rows = {r["op"]: r for _, r in table.iterrows()}
    assert rows["a"]["best_vs_library"] == pytest.approx(2.0) and rows["b"]["best_vs_library"] == pytest.approx(4.0)
    assert math.isnan(rows["c"]["library_s"])
    # TOTAL: count-weighted sums over the measured operators, 2 x 1 ms + 1 ms torch against 2 x 2 + 4 ms
    assert rows["TOTAL"]["library_s"] == pytest.approx(3e-3)
    assert rows["TOTAL"]["best_vs_library"] == pytest.approx(8e-3 / 3e-3)
    s = summary_numbers(table)
    assert s["best_vs_library_median"] == pytest.approx(3.0) and s["library_operators"] == 2
    line = summary_lines(table)[1]
    assert line.startswith("attainable: the best schedule takes x3.00 torch's time") and "2 operators" in line


def test_the_sum_as_built_counts_each_kernel_as_it_went_into_the_model():
    ops = _ops() + [_ops()[0].__class__(name="d", kind="dense", tensors=(), flops=1, key="d", count=3)]
    best = {"a": MeasuredOp(3e-3, 1, 1e-3, 1, "s1", 4),   # replayed: its best schedule is built
            "b": MeasuredOp(4e-3, 1, 2e-3, 1, "s2", 2)}   # not matched in the module: the default is built
    traces = {"fa": "[...]"}
    names = {"a": ("fa",), "b": ()}
    total, n_meas, n_pred, n_unknown = built_sum_of(ops, best, traces, names, {"c": 5e-3, "d": 1e-3})
    assert (n_meas, n_pred, n_unknown) == (2, 2, 0)
    assert total == pytest.approx(2 * 1e-3 + 1 * 4e-3 + 1 * 5e-3 + 3 * 1e-3)
    total, n_meas, n_pred, n_unknown = built_sum_of(ops, best, traces, names, {"c": 5e-3})
    assert math.isnan(total) and n_unknown == 1
    res = WholeModelResult("m", 2, (0.02, 0.02, 0.02), sum_best_s=3e-3, sum_default_s=7e-3, sum_predicted_s=math.nan,
                           measured_ops=2, total_ops=4, scheduled_ops=1, sum_built_s=total, built_measured_ops=n_meas,
                           built_predicted_ops=n_pred, built_unknown_ops=n_unknown, torch_eager_s=0.01)
    assert math.isnan(res.gap)  # some kernel is neither measured nor predicted: no gap is claimed
    line = res.summary_line()
    assert "not known (2 measured as built, 1 predicted, 1 neither" in line and "no gap" in line
    assert "torch eager 10 ms (TVM x2.00)" in line
    ok = WholeModelResult("m", 2, (0.02,), 3e-3, 7e-3, math.nan, 2, 2, 1, sum_built_s=0.016, built_measured_ops=2)
    assert ok.gap == pytest.approx(0.02 / 0.016 - 1)


def test_torch_eager_times_the_zoo_model_and_notes_what_it_cannot():
    from opscope.report.torch_model import time_torch_model
    from opscope.report.whole_model import VMProtocol

    proto = VMProtocol(repeat=3, min_repeat_ms=5)
    eager, compiled, note = time_torch_model("mlp", {"batch_size": 1, "dtype": "float32", "in_features": 64,
                                                     "hidden": 64, "layers": 2}, 1, proto)
    # an MLP of 64-wide layers: well under a millisecond per inference, far over a microsecond
    assert 1e-6 < eager < 1e-3 and math.isnan(compiled) and note == ""
    eager, _, note = time_torch_model("some.onnx", {}, 1, proto)
    assert math.isnan(eager) and note.startswith("not a zoo model")


def test_the_roofline_marks_torch_at_its_achieved_flops():
    from opscope.report.figures import library_points

    table = pd.DataFrame({"op": ["a", "b", "TOTAL"], "kind": ["dense", "dense", ""], "flops": [2e9, 1e9, 3e9],
                          "intensity": [10.0, 5.0, 7.0], "library_s": [1e-2, math.nan, 1e-2],
                          "measured": [True, True, True]})
    pts = library_points(table)
    assert list(pts["op"]) == ["a"] and pts["flops_per_s"].iloc[0] == pytest.approx(2e9 / 1e-2)


def test_the_layer_figure_sets_default_best_and_torch_side_by_side_when_they_exist():
    from opscope.report.figures import layer_series

    ops = pd.DataFrame({"analytical_s": [1e-3], "default_s": [5e-2], "best_s": [2e-3], "library_s": [1.5e-3],
                        "predicted_s": [math.nan]})
    assert [c for c, _, _ in layer_series(ops)] == ["analytical_s", "default_s", "best_s", "library_s"]
    assert "library_s" not in [c for c, _, _ in layer_series(ops.drop(columns=["library_s"]))]
