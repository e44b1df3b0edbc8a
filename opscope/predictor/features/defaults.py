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

import functools
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


def _default_knobs(script: object, operator_json: object) -> dict[str, float] | None:
    """The knobs of TVM's default lowering of an operator (module docstring); None where they cannot be told."""
    if isinstance(script, str) and script.strip():
        return dict(_script_knobs(script))
    knobs = _operator_knobs(str(operator_json))
    return None if knobs is None else dict(knobs)


@functools.lru_cache(maxsize=4096)
def _script_knobs(script: str) -> tuple[tuple[str, float], ...]:
    from opscope.collector.knobs import loop_knobs

    return tuple((f"knob_{k}", float(v)) for k, v in loop_knobs(script).items())


@functools.lru_cache(maxsize=4096)
def _operator_knobs(operator_json: str) -> tuple[tuple[str, float], ...] | None:
    from opscope.collector.knobs import loop_knobs

    try:
        op = Operator.from_dict(json.loads(operator_json))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not op.loops:
        return None
    # no script: the knobs of a function without parallel, vectorized or unrolled loops, and the
    # operator's innermost loop as the main block's
    knobs = {f"knob_{k}": float(v) for k, v in loop_knobs("").items()}
    return tuple({**knobs, "knob_main_inner": float(op.loops[-1][1])}.items())


def default_twins(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(the twin rows, per frame row the position of its twin or -1): see the module docstring."""
    default = _is_default(frame)
    index = np.full(len(frame), -1, dtype=np.int64)
    want = np.flatnonzero(~default)
    if not len(want):  # a frame of default rows (the twins themselves): nothing to hash
        return frame.iloc[:0].copy(), index
    codes = _keys(frame)
    firsts = pd.Series(want).groupby(codes[want]).first()
    rows = firsts.to_numpy()
    # only the first row of each key: a whole column of TVMScript as Python strings costs more than the rest
    scripts = frame["workload_script"].iloc[rows].to_numpy(dtype=object) if "workload_script" in frame else None
    ops = frame["operator_json"].iloc[rows].to_numpy(dtype=object)
    knobs, kept, position = [], [], {}
    for j, (code, r) in enumerate(firsts.items()):
        k = _default_knobs(scripts[j] if scripts is not None else None, ops[j])
        if k is None:
            continue
        position[code] = len(kept)
        kept.append(int(r))
        knobs.append(k)
    if not kept:
        return frame.iloc[:0].copy(), index
    twins = frame.iloc[kept].reset_index(drop=True)
    knob_cols = [c for c in frame.columns if str(c).startswith("knob_")]
    values = pd.DataFrame(knobs)
    cleared = {c: (values[c].to_numpy(dtype=float) if c in values else np.full(len(twins), np.nan)) for c in knob_cols}
    new = {c: values[c].to_numpy(dtype=float) for c in values.columns if c not in cleared}
    twins = twins.drop(columns=knob_cols).assign(**cleared, **new)
    twins["schedule_kind"] = "default"
    for col, value in (("schedule_id", "default"), ("trace_json", "[]")):
        if col in twins.columns:
            twins[col] = value
    index[want] = pd.Series(codes[want]).map(position).fillna(-1).to_numpy(dtype=np.int64)
    return twins, index
