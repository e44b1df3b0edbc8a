"""Each row's operator under TVM's default schedule: the anchor of default-relative prediction.

A sampled schedule's latency is learned twice: as log latency, and as log(latency / latency of the
same operator under TVM's default schedule, at the same threads, on the same target).  The second
view leaves the operator's scale to the default schedule, which the learned models predict best
(median APE 0.06 on the operators of models never seen, against 0.2 for sampled schedules), and its
training labels are ratios of two measurements of one run, so a run that ran slower as a whole
moves them less.

- ``measured_default_log(frame, y)``: for training, per row the log of the median measured default
  latency of the row's operator at its threads, target and pinning (NaN for default rows and for
  rows whose operator has no default measurement in the frame).
- ``default_twins(frame)``: for prediction, one default-schedule row per distinct (operator,
  target, threads, pinning) of the frame's other rows, carrying the loop knobs the collector
  records for TVM's default lowering (``opscope.collector.knobs.loop_knobs`` of the unscheduled
  function: read from the row's ``workload_script`` when it has one, else from the operator's
  loops: no parallel or vectorized loop, the innermost loop's extent).  Rows whose default knobs
  cannot be told (no script, an operator without loops) get no twin.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from opscope.workloads.operator import Operator

#: the columns that make two rows the same operator on the same machine state
KEY = ("operator_json", "target", "threads", "pinned")


def _keys(frame: pd.DataFrame) -> np.ndarray:
    key = pd.DataFrame({c: (frame[c].astype(str) if c in frame else "") for c in KEY})
    return pd.factorize(pd.util.hash_pandas_object(key, index=False).to_numpy())[0]


def _is_default(frame: pd.DataFrame) -> np.ndarray:
    if "schedule_kind" not in frame:
        return np.ones(len(frame), dtype=bool)
    return (frame["schedule_kind"].astype(str) == "default").to_numpy()


def measured_default_log(frame: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """Per non-default row, log of the median measured default latency of its key (module docstring)."""
    codes, default = _keys(frame), _is_default(frame)
    logs = pd.Series(np.log(np.asarray(y, dtype=float))[default]).groupby(codes[default]).median()
    out = np.array(pd.Series(codes).map(logs), dtype=float)
    out[default] = np.nan
    return out


def _default_knobs(row: pd.Series) -> dict[str, float] | None:
    from opscope.collector.knobs import loop_knobs

    script = row.get("workload_script")
    if isinstance(script, str) and script.strip():
        return {f"knob_{k}": float(v) for k, v in loop_knobs(script).items()}
    try:
        op = Operator.from_dict(json.loads(str(row["operator_json"])))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not op.loops:
        return None
    # no script: the knobs of a function without parallel, vectorized or unrolled loops, and the
    # operator's innermost loop as the main block's
    knobs = {f"knob_{k}": float(v) for k, v in loop_knobs("").items()}
    return {**knobs, "knob_main_inner": float(op.loops[-1][1])}


def default_twins(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(the twin rows, per frame row the position of its twin or -1): see the module docstring."""
    default = _is_default(frame)
    index = np.full(len(frame), -1, dtype=np.int64)
    want = np.flatnonzero(~default)
    if not len(want):  # a frame of default rows (the twins themselves): nothing to hash
        return frame.iloc[:0].copy(), index
    codes = _keys(frame)
    firsts = pd.Series(want).groupby(codes[want]).first()
    knob_cols = [c for c in frame.columns if str(c).startswith("knob_")]
    rows, position = [], {}
    for code, r in firsts.items():
        row = frame.iloc[int(r)]
        knobs = _default_knobs(row)
        if knobs is None:
            continue
        twin = row.copy()
        twin[knob_cols] = np.nan
        for k, v in knobs.items():
            twin[k] = v
        twin["schedule_kind"] = "default"
        for col, value in (("schedule_id", "default"), ("trace_json", "[]")):
            if col in twin.index:
                twin[col] = value
        position[code] = len(rows)
        rows.append(twin)
    if not rows:
        return frame.iloc[:0].copy(), index
    twins = pd.DataFrame(rows).reset_index(drop=True)
    for c in knob_cols:  # numeric knob columns stay numeric (the row copies made them objects)
        if pd.api.types.is_numeric_dtype(frame[c]):
            twins[c] = pd.to_numeric(twins[c], errors="coerce")
    index[want] = pd.Series(codes[want]).map(position).fillna(-1).to_numpy(dtype=np.int64)
    return twins, index
