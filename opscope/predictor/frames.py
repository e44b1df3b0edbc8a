"""Measurement frames as the predictors see them.

Predictors work on frames in the store's column format (``docs/contracts.md``): one row per
measurement.  This module reads such a frame from a store, a Parquet or a CSV file, checks that the
columns a predictor needs are there (naming the file and the missing columns when they are not),
keeps the rows that measured successfully, and builds frames for operators that were never
measured (``operator_frame``), so that a predictor can predict a whole model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from opscope.errors import PredictorError
from opscope.workloads.operator import Operator

#: Columns every predictor reads; the label is ``latency_median_s``.
REQUIRED_COLUMNS = ("workload_key", "kind", "operator_json", "threads", "target")
LABEL = "latency_median_s"
#: the latency statistics a predictor may learn (the minimum is the least disturbed on a busy machine)
LABELS = ("latency_median_s", "latency_min_s", "latency_mean_s")


def read_frame(source: str | Path | pd.DataFrame, *, ok_only: bool = True, label: str = LABEL) -> pd.DataFrame:
    """Load measurements from a ``.db`` store, ``.parquet`` or ``.csv`` file (or pass a frame).

    With ``ok_only`` only rows with status ``ok`` and a positive finite ``label`` are kept.
    """
    if isinstance(source, pd.DataFrame):
        frame, where = source, "the frame"
    else:
        path = Path(source)
        where = str(path)
        if not path.exists():
            raise PredictorError(f"{path}: no such file")
        suffix = path.suffix.lower()
        try:
            if suffix == ".parquet" or path.is_dir():
                frame = pd.read_parquet(path)
            elif suffix == ".csv":
                frame = pd.read_csv(path)
            else:
                from opscope.store import load_dataframe

                frame = load_dataframe(path)
        except PredictorError:
            raise
        except (OSError, ValueError, ImportError) as exc:
            raise PredictorError(f"{path}: cannot read measurements ({exc})") from exc
    check_columns(frame, where)
    if not isinstance(source, pd.DataFrame) and not Path(source).is_dir():
        from opscope.predictor.features.compiled import load_sidecar

        load_sidecar(source)  # the compiled kernels' counts, when the data has them beside it
    if label not in LABELS:
        raise PredictorError(f"label {label!r} is not a latency column; use one of {', '.join(LABELS)}")
    if ok_only:
        frame = ok_rows(frame, label)
    return frame.reset_index(drop=True)


def check_columns(frame: pd.DataFrame, where: str = "the frame", label: str | None = None) -> None:
    need = list(REQUIRED_COLUMNS) + ([label] if label else [])
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise PredictorError(f"{where}: missing column(s) {', '.join(missing)} (store format, docs/contracts.md)")


def ok_rows(frame: pd.DataFrame, label: str = LABEL) -> pd.DataFrame:
    """Rows that measured successfully with a usable latency, TVM schedules only: a library row
    (``schedule_kind == "library"``) times torch, not a schedule, and is no training data."""
    keep = pd.Series(True, index=frame.index)
    if "status" in frame.columns:
        keep &= frame["status"] == "ok"
    if "schedule_kind" in frame.columns:
        keep &= frame["schedule_kind"] != "library"
    if label in frame.columns:
        lat = pd.to_numeric(frame[label], errors="coerce")
        keep &= np.isfinite(lat) & (lat > 0)
    return frame[keep].reset_index(drop=True)


def labels(frame: pd.DataFrame, label: str = LABEL) -> np.ndarray:
    """Measured latency in seconds (``label``: median by default); a clear error when absent."""
    check_columns(frame, label=label)
    y = pd.to_numeric(frame[label], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(y) & (y > 0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise PredictorError(
            f"row {first}: {label}={frame[label].iloc[first]!r} is not a positive latency "
            f"({int(bad.sum())} such rows; keep status 'ok' rows only)"
        )
    return y


def model_names(frame: pd.DataFrame) -> pd.Series:
    """The ``models`` column as tuples of names (empty tuple when absent)."""
    if "models" not in frame.columns:
        return pd.Series([()] * len(frame), index=frame.index)
    return frame["models"].map(_split_models)


def _split_models(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(m.strip() for m in value.split(",") if m.strip())
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(str(m) for m in value)
    return ()


def operator_frame(ops: Iterable[Operator], target: str, threads: int = 1) -> pd.DataFrame:
    """A frame in the store's format for operators never measured (default schedule, no label).

    On a CPU target an operator with TIR gets the loop knobs of its unscheduled function, as the
    collector records them for default schedules (TVM's default CPU lowering adds no loop)."""
    from opscope.collector.knobs import loop_knobs
    from opscope.store.sqlite import workload_script

    cpu = _is_cpu(target)
    rows = []
    for op in ops:
        script = workload_script(op)
        knobs = loop_knobs(script) if cpu and script else {}
        rows.append(
            {
                "workload_key": op.key,
                "op_name": op.name,
                "kind": op.kind,
                "dtype": op.dtype,
                "models": ",".join(op.models),
                "operator_json": json.dumps(op.to_dict(), default=str),
                "flops": op.flops,
                "bytes": op.bytes,
                "bytes_input": op.bytes_of("input"),
                "bytes_weight": op.bytes_of("weight"),
                "bytes_output": op.bytes_of("output"),
                "count": op.count,
                "schedule_id": "default",
                "schedule_kind": "default",
                "trace_json": None,
                "knobs_json": json.dumps(knobs, sort_keys=True),
                "threads": int(threads),
                "pinned": False,
                "target": target,
                "status": "ok",
                # the unscheduled TIR, as the store keeps it: features read the default loop nest from it
                "workload_script": script,
                **{f"knob_{k}": v for k, v in knobs.items()},
            }
        )
    if not rows:
        raise PredictorError("operator_frame: no operators given")
    return pd.DataFrame(rows)


def _is_cpu(target: str) -> bool:
    from opscope.errors import OpscopeError
    from opscope.targets import load_target

    try:
        return load_target(target).kind == "cpu"
    except (OpscopeError, OSError):
        return False

