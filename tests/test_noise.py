"""The noise floor from measurements taken by two worker processes, and the naive rate baseline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from opscope.predictor.evaluation.noise import between_runs, noise_floor, worker_latencies
from opscope.predictor.models.baseline import RateBaseline


def _rows(pairs, workers=2, repeat=3):
    proto = json.dumps({"workers": workers, "repeat": repeat})
    rows = []
    for i, (a, b) in enumerate(pairs):
        raw = [a, a * 1.05, a * 1.1][:repeat] + [b, b * 1.05, b * 1.1][:repeat]
        rows.append({"workload_key": "w", "target": "host", "threads": 1, "schedule_id": f"s{i}",
                     "raw_latencies_s": json.dumps(raw[: workers * repeat]), "protocol_json": proto,
                     "latency_min_s": min(a, b)})
    return pd.DataFrame(rows)


def test_worker_latencies_split_the_raw_repeats_by_worker():
    lat = worker_latencies(_rows([(1e-3, 1.2e-3)]), "latency_min_s")
    assert lat[0].tolist() == pytest.approx([1e-3, 1.2e-3])
    med = worker_latencies(_rows([(1e-3, 1.2e-3)]), "latency_median_s")
    assert med[0].tolist() == pytest.approx([1.05e-3, 1.26e-3])
    single = worker_latencies(_rows([(1e-3, 1e-3)], workers=1), "latency_min_s")
    assert np.isnan(single).all()  # one worker: no floor to read


def test_noise_floor_is_worker_two_predicting_worker_one():
    # APE of predicting a by b: |b / a - 1| = 0.2, 0.0, 0.5, 0.1
    frame = _rows([(1.0, 1.2), (2.0, 2.0), (1.0, 1.5), (3.0, 3.3)])
    floor = noise_floor(frame)
    assert floor["median_ape"] == pytest.approx((0.1 + 0.2) / 2)
    assert floor["within20"] == pytest.approx(3 / 4)  # 0.2, 0.0, 0.1 (0.2 counts as within)
    # worker 2's fastest is s0 (1.2); worker 1 measured s0 at 1.0, its best: top-1 = 1.0 / 1.0
    assert floor["top1"] == pytest.approx(1.0)
    assert noise_floor(_rows([(1.0, 1.0)], workers=1)) == {}


def test_between_runs_matches_schedules():
    a = _rows([(1.0, 1.0), (2.0, 2.0)])
    b = a.assign(latency_min_s=[1.5, 2.0])
    assert between_runs(a, b)["median_ape"] == pytest.approx(0.25)  # APEs 0.5 and 0.0


def test_rate_baseline_predicts_flops_over_the_median_rate():
    train = pd.DataFrame({"kind": ["dense"] * 3 + ["conv2d"], "threads": [1, 1, 1, 1],
                          "schedule_kind": ["sampled"] * 4, "flops": [1e9, 2e9, 4e9, 1e9],
                          "status": "ok", "latency_median_s": [1.0, 1.0, 1.0, 0.5],
                          "workload_key": ["a", "b", "c", "d"], "operator_json": "{}", "target": "host"})
    base = RateBaseline().fit(train)
    test = pd.DataFrame({"kind": ["dense", "conv2d", "pool"], "threads": [1, 2, 1],
                         "schedule_kind": ["sampled", "sampled", "default"], "flops": [6e9, 4e9, 2e9]})
    # dense: median of 1, 2, 4 GFLOP/s = 2 -> 3 s; conv2d at 2 threads unseen -> its kind's 2 GFLOP/s -> 2 s;
    # pool never seen -> all rows' median rate (1, 2, 4, 2 GFLOP/s -> 2) -> 1 s
    assert base.predict(test).tolist() == pytest.approx([3.0, 2.0, 1.0])


def test_between_runs_rescaled_removes_the_runs_speed_ratio_only():
    a = _rows([(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)])
    # run b is 2x slower on every schedule, and the third one 1.2 x 2 slower still
    b = a.assign(latency_min_s=[2.0, 4.0, 9.6])
    raw = between_runs(a, b)
    assert raw["median_ape"] == pytest.approx(1.0)  # APEs 1.0, 1.0, 1.4
    scaled = between_runs(a, b, rescale=True)
    assert scaled["scale"] == pytest.approx(2.0)  # median of b / a = 2, 2, 2.4
    assert scaled["median_ape"] == pytest.approx(0.0)  # APEs 0, 0, 0.2 after dividing by 2
    assert scaled["within10"] == pytest.approx(2 / 3)
    assert between_runs(a, b.assign(schedule_id="other"), rescale=True) == {}
