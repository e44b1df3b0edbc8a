"""Metrics on small hand-made cases, each value worked out in the comment beside it."""

import math

import numpy as np
import pandas as pd
import pytest

from opscope.predictor.evaluation import metrics


def test_ape_family_by_hand():
    true = np.array([1.0, 2.0, 4.0, 10.0])
    pred = np.array([1.1, 1.0, 4.0, 13.0])
    # APEs: |1.1-1|/1 = 0.1, |1-2|/2 = 0.5, 0, |13-10|/10 = 0.3
    assert metrics.mape(pred, true) == pytest.approx((0.1 + 0.5 + 0.0 + 0.3) / 4)
    assert metrics.median_ape(pred, true) == pytest.approx((0.1 + 0.3) / 2)
    assert metrics.within(pred, true, 0.10) == pytest.approx(2 / 4)  # 0.1 (edge counts) and 0
    assert metrics.within(pred, true, 0.20) == pytest.approx(2 / 4)
    assert metrics.within(pred, true, 0.30) == pytest.approx(3 / 4)


def test_top_k_peak_score_by_hand():
    # task 0: measured 1,2,4 ; predictor ranks the 2 s schedule fastest -> top-1 = 1/2
    # task 1: measured 3,1,2 ; predictor ranks the 1 s schedule fastest -> top-1 = 1
    tasks = np.array([0, 0, 0, 1, 1, 1])
    true = np.array([1.0, 2.0, 4.0, 3.0, 1.0, 2.0])
    pred = np.array([5.0, 0.5, 9.0, 3.0, 1.0, 2.0])
    score, n = metrics.top_k_peak_score(tasks, pred, true, 1)
    assert n == 2
    assert score == pytest.approx((0.5 + 1.0) / 2)
    # top-2: task 0 picks {2 s, 1 s} -> 1; task 1 picks {1 s, 2 s} -> 1
    assert metrics.top_k_peak_score(tasks, pred, true, 2)[0] == pytest.approx(1.0)
    # with k >= task size no task qualifies
    assert metrics.top_k_peak_score(tasks, pred, true, 3)[1] == 0


def test_spearman_within_by_hand():
    tasks = np.array([0, 0, 0, 1, 1, 1])
    true = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    pred = np.array([10.0, 20.0, 30.0, 3.0, 2.0, 1.0])  # task 0 same order (+1), task 1 reversed (-1)
    rho, n = metrics.spearman_within(tasks, pred, true)
    assert n == 2 and rho == pytest.approx(0.0)
    # one swapped pair in 3: d = (0, 1, 1) -> rho = 1 - 6*2/(3*8) = 0.5
    rho, _ = metrics.spearman_within(np.zeros(3, int), np.array([1.0, 3.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    assert rho == pytest.approx(1 - 6 * 2 / (3 * (9 - 1)))


def test_model_totals_weights_by_count_and_uses_default_rows():
    frame = pd.DataFrame({
        "workload_key": ["a", "a", "b"],
        "threads": [1, 1, 1],
        "count": [2, 2, 3],
        "schedule_kind": ["sampled", "default", "default"],
    })
    true = np.array([9.0, 1.0, 2.0])  # a's default: 1 s x2, b: 2 s x3 -> measured total 8
    pred = np.array([9.0, 1.5, 2.0])  # predicted: 1.5x2 + 2x3 = 9
    (row,) = metrics.model_totals(frame, pred, true, "m")
    assert row["measured_s"] == pytest.approx(2 * 1.0 + 3 * 2.0)
    assert row["predicted_s"] == pytest.approx(2 * 1.5 + 3 * 2.0)
    assert row["error"] == pytest.approx(9 / 8 - 1)
    assert row["operators"] == 2


def test_top1_with_tied_predictions_is_the_expectation():
    # a schedule-blind predictor: all four schedules tie; expected top-1 = mean(best / each)
    tasks = np.zeros(4, int)
    true = np.array([1.0, 2.0, 4.0, 4.0])
    score, _ = metrics.top_k_peak_score(tasks, np.ones(4), true, 1)
    assert score == pytest.approx((1 + 0.5 + 0.25 + 0.25) / 4)
    # top-2 over tie orders: P(the 1 s schedule is among 2 of 4 picks) = 1/2, else the best of the
    # others is 2 s with P(2 s picked | 1 s not) = 2/3, else 4 s: 1/2 + 1/2 (2/3 x 1/2 + 1/3 x 1/4)
    score2, _ = metrics.top_k_peak_score(tasks, np.ones(4), true, 2)
    assert score2 == pytest.approx(0.5 + 0.5 * (2 / 3 * 0.5 + 1 / 3 * 0.25), abs=0.05)  # 64 draws


def test_error_parts_split_scale_from_schedules_by_hand():
    # task A (2 rows): predicted 2x and 2x too slow -> scale log 2, schedule error 0 for both;
    # task B (3 rows): ratios 1/2, 1, 2 -> scale (median) log 1 = 0, schedule errors log 2, 0, log 2
    frame = pd.DataFrame({"workload_key": ["a", "a", "b", "b", "b"], "target": "host", "threads": 1})
    true = np.array([1.0, 3.0, 2.0, 4.0, 8.0])
    pred = np.array([2.0, 6.0, 1.0, 4.0, 16.0])
    parts = metrics.error_parts(frame, pred, true)
    ln2 = math.log(2.0)
    assert parts["scale_abs_log"] == pytest.approx((ln2 + 0.0) / 2)  # median of |log 2|, |0|
    assert parts["scale_bias_log"] == pytest.approx(ln2 / 2)
    assert parts["schedule_abs_log"] == pytest.approx(0.0)  # rows: 0, 0, ln2, 0, ln2 -> median 0
    # task A's rows are off by its scale alone, task B's by their schedules alone: APEs left
    # with the scale divided out 0, 0, 1/2, 0, 1 (median 0); with the schedules known 1, 1, 0, 0, 0
    assert parts["median_ape_scale_known"] == pytest.approx(0.0)
    assert parts["median_ape_schedules_known"] == pytest.approx(0.0)
    # deviations from each task's mean log: A measured -+ln3/2, predicted the same; B measured
    # -ln2, 0, ln2, predicted -2 ln2, 0, 2 ln2 -> slope sum(dp dm) / sum(dm^2)
    l3 = math.log(3.0) / 2
    slope = (2 * l3 * l3 + 2 * 2 * ln2 * ln2) / (2 * l3 * l3 + 2 * ln2 * ln2)
    assert parts["schedule_slope"] == pytest.approx(slope)
    parts = metrics.error_parts(frame.iloc[2:].reset_index(drop=True), pred[2:], true[2:])
    assert parts["scale_abs_log"] == pytest.approx(0.0)
    assert parts["schedule_abs_log"] == pytest.approx(ln2)  # rows ln2, 0, ln2 -> median ln2
    assert parts["median_ape_scale_known"] == pytest.approx(0.5)  # APEs 1/2, 0, 1
    assert parts["median_ape_schedules_known"] == pytest.approx(0.0)
    assert parts["schedule_slope"] == pytest.approx(2.0)
    # one row per task: no spread to fit a slope on
    one = metrics.error_parts(frame.iloc[[0, 2]].reset_index(drop=True), pred[[0, 2]], true[[0, 2]])
    assert math.isnan(one["schedule_slope"])
