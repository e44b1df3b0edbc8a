"""The noise floor: how well one measurement of a schedule predicts another measurement of it.

No predictor can beat its labels.  A measurement taken with ``Protocol.workers`` >= 2 holds the
repeats of each worker process in turn (``repeat`` each); worker 1's latency used as a "prediction" of
worker 2's is the oracle predictor, and its scores (median APE, within +-20 %, top-1 ...) are the floor
to report beside every accuracy figure.  Two frames of the same schedules measured in separate
collections give the same comparison between runs (``between_runs``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from opscope.errors import PredictorError
from opscope.predictor.evaluation.metrics import accuracy_table

#: how a worker's repeats become one latency, per label column
_REDUCE = {"latency_min_s": np.min, "latency_median_s": np.median, "latency_mean_s": np.mean}


def worker_latencies(frame: pd.DataFrame, label: str = "latency_min_s") -> np.ndarray:
    """(rows, workers) latency of each worker process, reduced like ``label``; NaN where not measured so."""
    if label not in _REDUCE:
        raise PredictorError(f"noise floor: label {label!r} must be one of {', '.join(_REDUCE)}")
    reduce = _REDUCE[label]
    rows = []
    for raw, proto in zip(frame["raw_latencies_s"], frame["protocol_json"]):
        p = json.loads(proto) if isinstance(proto, str) else {}
        workers, repeat = int(p.get("workers", 1)), int(p.get("repeat", 0))
        lat = json.loads(raw) if isinstance(raw, str) else []
        if workers < 2 or repeat < 1 or len(lat) != workers * repeat:
            rows.append([np.nan, np.nan])
            continue
        rows.append([float(reduce(lat[w * repeat:(w + 1) * repeat])) for w in range(2)])
    return np.asarray(rows, dtype=float).reshape(len(rows), 2)


def noise_floor(frame: pd.DataFrame, label: str = "latency_min_s") -> dict[str, float]:
    """The oracle's scores: worker 2's latency predicting worker 1's, on rows measured by >= 2 workers.

    Returns ``accuracy_table``'s metrics (empty dict when no row has two workers).
    """
    if frame.empty or "raw_latencies_s" not in frame or "protocol_json" not in frame:
        return {}
    lat = worker_latencies(frame, label)
    keep = np.isfinite(lat).all(axis=1) & (lat > 0).all(axis=1)
    if not keep.any():
        return {}
    sub = frame[keep].reset_index(drop=True)
    return accuracy_table(sub, lat[keep, 1], lat[keep, 0])


def between_runs(a: pd.DataFrame, b: pd.DataFrame, label: str = "latency_min_s",
                 rescale: bool = False) -> dict[str, float]:
    """Run ``b``'s latency predicting run ``a``'s, over the (workload, schedule, threads) both measured.

    With ``rescale``, ``b`` is first divided by the runs' speed ratio, the median of ``b / a`` over
    those rows (returned as ``scale``): what is left is the disagreement that no single factor for
    the whole run, such as a faster host of the same instance type, explains.
    """
    keys = ["workload_key", "schedule_id", "threads"]
    both = a.merge(b[keys + [label]], on=keys, suffixes=("", "_b"))
    if both.empty:
        return {}
    pred, true = both[f"{label}_b"].to_numpy(float), both[label].to_numpy(float)
    if not rescale:
        return accuracy_table(both, pred, true)
    scale = float(np.exp(np.median(np.log(pred / true))))
    return {**accuracy_table(both, pred / scale, true), "scale": scale}
