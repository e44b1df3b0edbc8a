"""Thread scaling: speed-up curves and turnaround points, from store rows with known latencies."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from opscope.report.scaling import scaling_frame, turnaround, turnarounds


def rows(spec):
    """spec: list of (key, op, schedule_kind, threads, median, status)."""
    return pd.DataFrame([dict(workload_key=k, op_name=o, schedule_kind=sk, threads=t, latency_median_s=m,
                              status=st) for k, o, sk, t, m, st in spec])


def test_speedup_is_best_over_schedules_relative_to_fewest_threads():
    frame = rows([
        ("a", "conv", "default", 1, 8.0, "ok"), ("a", "conv", "sampled", 1, 6.0, "ok"),
        ("a", "conv", "default", 2, 4.0, "ok"), ("a", "conv", "sampled", 2, 3.5, "ok"),
        ("a", "conv", "sampled", 4, 2.0, "ok"),
        ("a", "conv", "sampled", 4, 0.1, "run_error"),     # failures are not latencies
        ("b", "relu", "default", 1, 1.0, "ok"),            # one thread count only: no curve
    ])
    sc = scaling_frame(frame)
    assert set(sc["workload_key"]) == {"a"}
    a = sc.set_index("threads")
    assert list(a.index) == [1, 2, 4]
    assert a.loc[2, "speedup"] == pytest.approx(6.0 / 3.5)
    assert a.loc[4, "speedup"] == pytest.approx(6.0 / 2.0)
    assert a.loc[4, "efficiency"] == pytest.approx((6.0 / 2.0) / 4)
    assert a.loc[2, "default_speedup"] == pytest.approx(8.0 / 4.0)
    assert math.isnan(a.loc[4, "default_speedup"])        # default not measured at 4 threads


def test_turnaround_where_more_threads_stop_helping():
    frame = rows([("k", "mm", "sampled", t, lat, "ok")
                  for t, lat in ((1, 10.0), (2, 5.2), (4, 3.0), (8, 2.95), (16, 3.4))])
    t = turnaround(scaling_frame(frame))
    # from 4 threads on nothing is 5% faster than 3.0 (2.95 > 2.85): turnaround at 4
    assert t.threads == 4 and t.reached
    assert t.speedup == pytest.approx(10.0 / 3.0)
    assert t.measured_threads == (1, 2, 4, 8, 16)
    # with no tolerance the minimum wins
    assert turnaround(scaling_frame(frame), min_gain=0.0).threads == 8


def test_turnaround_not_reached_when_the_last_count_still_helps():
    frame = rows([("k", "mm", "sampled", 1, 2.0, "ok"), ("k", "mm", "sampled", 2, 1.0, "ok")])
    (t,) = turnarounds(scaling_frame(frame))
    assert t.threads == 2 and not t.reached


def test_slowdown_at_two_threads_turns_at_one():
    frame = rows([("k", "tiny", "default", 1, 1.0, "ok"), ("k", "tiny", "default", 2, 1.3, "ok")])
    t = turnaround(scaling_frame(frame))
    assert t.threads == 1 and t.reached and t.speedup == pytest.approx(1.0)


def test_bad_tolerance_is_refused():
    frame = rows([("k", "x", "default", 1, 1.0, "ok"), ("k", "x", "default", 2, 0.5, "ok")])
    with pytest.raises(ValueError, match="min_gain"):
        turnaround(scaling_frame(frame), min_gain=1.5)
