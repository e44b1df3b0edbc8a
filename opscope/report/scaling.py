"""Thread scaling: how an operator's latency changes with the number of threads.

From a store frame (``opscope.store.load_dataframe``) this builds, for each operator measured at
more than one thread count, the speed-up curve ``latency(t_min) / latency(t)`` and the
*turnaround point*: the thread count after which adding threads no longer buys at least
``min_gain`` (5% by default) of further latency.  The latency at a thread count is the best
(lowest median) over the schedules measured there, so a curve shows what the hardware can give,
not one schedule's luck; the default schedule's own curve is kept beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

#: Columns of the frame returned by :func:`scaling_frame`.
SCALING_COLUMNS = (
    "workload_key", "op", "threads", "best_s", "default_s", "speedup", "default_speedup", "efficiency",
)


@dataclass(frozen=True)
class Turnaround:
    """Where more threads stop helping one operator.

    ``threads`` is the thread count after which no larger count improves the latency by at least
    ``min_gain``; ``reached`` is False when the last measured count still helped (the curve has not
    turned within the measured range).
    """

    workload_key: str
    op: str
    threads: int
    speedup: float
    reached: bool
    measured_threads: tuple[int, ...]


def _ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["status"] == "ok"]
    return rows[rows["latency_median_s"].notna() & (rows["latency_median_s"] > 0)]


def scaling_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (operator, thread count) with the best and default latency and the speed-ups.

    Speed-ups are relative to the smallest thread count measured for that operator; efficiency is
    speed-up divided by the thread ratio.  Operators measured at a single thread count are left out.
    """
    ok = _ok_rows(frame)
    if ok.empty:
        return pd.DataFrame(columns=list(SCALING_COLUMNS))
    out = []
    for key, rows in ok.groupby("workload_key", sort=False):
        threads = sorted(int(t) for t in rows["threads"].unique())
        if len(threads) < 2:
            continue
        name = str(rows["op_name"].iloc[0])
        best = rows.groupby("threads")["latency_median_s"].min()
        default_rows = rows[rows["schedule_kind"] == "default"]
        default = default_rows.groupby("threads")["latency_median_s"].min()
        t0 = threads[0]
        base_best = float(best.loc[t0])
        base_default = float(default.loc[t0]) if t0 in default.index else math.nan
        for t in threads:
            b = float(best.loc[t])
            d = float(default.loc[t]) if t in default.index else math.nan
            out.append({
                "workload_key": key,
                "op": name,
                "threads": t,
                "best_s": b,
                "default_s": d,
                "speedup": base_best / b,
                "default_speedup": base_default / d if not math.isnan(d) else math.nan,
                "efficiency": (base_best / b) / (t / t0),
            })
    return pd.DataFrame(out, columns=list(SCALING_COLUMNS))


def turnaround(curve: pd.DataFrame, min_gain: float = 0.05) -> Turnaround:
    """The turnaround point of one operator's curve (rows of :func:`scaling_frame` for one key).

    Walking the thread counts in order, the turnaround is the first count ``t`` such that no
    larger count has a latency below ``latency(t) * (1 - min_gain)``.
    """
    if not 0 <= min_gain < 1:
        raise ValueError(f"min_gain must be in [0, 1), got {min_gain}")
    rows = curve.sort_values("threads")
    threads = [int(t) for t in rows["threads"]]
    lat = [float(x) for x in rows["best_s"]]
    speed = [float(x) for x in rows["speedup"]]
    chosen = len(threads) - 1
    for i in range(len(threads)):
        later = lat[i + 1:]
        if not later or min(later) >= lat[i] * (1.0 - min_gain):
            chosen = i
            break
    return Turnaround(
        workload_key=str(rows["workload_key"].iloc[0]),
        op=str(rows["op"].iloc[0]),
        threads=threads[chosen],
        speedup=speed[chosen],
        reached=chosen < len(threads) - 1,
        measured_threads=tuple(threads),
    )


def turnarounds(scaling: pd.DataFrame, min_gain: float = 0.05) -> list[Turnaround]:
    """The turnaround point of every operator in a :func:`scaling_frame`."""
    return [turnaround(rows, min_gain) for _, rows in scaling.groupby("workload_key", sort=False)]
