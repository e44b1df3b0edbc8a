"""The store as a pandas DataFrame (one row per measurement) and its Parquet/CSV export.

The columns are exactly those named in ``docs/contracts.md``; knob columns (``knob_*``) follow the
fixed ones, sorted by name, NaN where a schedule does not have that knob.  When a noisy measurement
was measured again, only its latest attempt is a row.  ``workload_script`` is the operator's TIR
function as TVMScript ('' for workloads stored before schema version 3).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from pathlib import Path

import pandas as pd

from opscope.errors import StoreError
from opscope.store.record import LatencyStats
from opscope.store.sqlite import Store, open_store

COLUMNS = (
    "measurement_id", "workload_key", "op_name", "kind", "dtype", "models", "operator_json", "flops",
    "bytes", "bytes_input", "bytes_weight", "bytes_output", "count", "schedule_id", "schedule_kind",
    "trace_json", "knobs_json", "threads", "pinned", "target", "machine_id", "status", "error",
    "raw_latencies_s", "latency_median_s", "latency_mean_s", "latency_min_s", "latency_std_s", "cv",
    "noisy", "protocol_json", "created_at", "workload_script", "origin_json",
)

_QUERY = """
SELECT m.measurement_id, m.workload_key, w.op_name, w.kind, w.dtype, w.models, w.operator_json,
       w.flops, w.bytes, w.bytes_input, w.bytes_weight, w.bytes_output, w.count, m.schedule_id,
       s.schedule_kind, s.trace_json, s.knobs_json, m.threads, m.pinned, m.target, m.machine_id,
       m.status, m.error, m.raw_latencies_s, m.protocol_json, m.created_at, m.attempt, m.protocol_id,
       w.workload_script, m.origin_json
FROM measurements m
JOIN workloads w ON w.workload_key = m.workload_key
JOIN schedules s ON s.workload_key = m.workload_key AND s.schedule_id = m.schedule_id
ORDER BY m.measurement_id
"""


def _stats(raw: str, noisy_cv: float) -> tuple[float, float, float, float, float, bool]:
    st = LatencyStats.of(json.loads(raw))
    return st.median_s, st.mean_s, st.min_s, st.std_s, st.cv, st.noisy(noisy_cv)


def load_dataframe(path_or_store: str | os.PathLike[str] | Store) -> pd.DataFrame:
    """One row per measurement with the contract's columns (see the module docstring)."""
    if isinstance(path_or_store, Store):
        store, own = path_or_store, False
    else:
        if Path(path_or_store).is_dir():
            raise StoreError(f"store {path_or_store}: is a directory, expected a SQLite file")
        if not Path(path_or_store).is_file():
            raise StoreError(f"store {path_or_store}: no such file")
        store, own = open_store(path_or_store, read_only=True), True
    try:
        frame = pd.read_sql_query(_QUERY, store.connection)
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        first = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
        raise StoreError(f"store {store.path}: cannot read its measurements ({first[-200:]}); "
                         "the file may be damaged: restore it from a copy") from None
    finally:
        if own:
            store.close()
    if len(frame):
        keys = ["workload_key", "schedule_id", "threads", "pinned", "target", "machine_id", "protocol_id"]
        latest = frame.groupby(keys)["attempt"].transform("max")
        frame = frame[frame["attempt"] == latest].reset_index(drop=True)
    stats = [
        _stats(raw, json.loads(proto).get("noisy_cv", 0.05)) if status == "ok" else (math.nan,) * 5 + (False,)
        for raw, proto, status in zip(frame["raw_latencies_s"], frame["protocol_json"], frame["status"])
    ]
    names = ["latency_median_s", "latency_mean_s", "latency_min_s", "latency_std_s", "cv", "noisy"]
    for i, name in enumerate(names):
        frame[name] = [s[i] for s in stats]
    frame["noisy"] = frame["noisy"].astype(bool)
    frame["pinned"] = frame["pinned"].astype(bool)
    knobs = [json.loads(k) for k in frame["knobs_json"]]
    knob_names = sorted({k for d in knobs for k in d})
    out = frame[list(COLUMNS)].copy()
    for name in knob_names:
        values = [d.get(name, math.nan) for d in knobs]
        out["knob_" + name] = pd.Series(values, dtype=object if any(isinstance(v, str) for v in values) else float)
    return out


def export(store_path: str | os.PathLike[str], out: str | os.PathLike[str]) -> int:
    """Write the store's frame to ``out`` (``.parquet`` or ``.csv``); returns the number of rows."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise StoreError(f"export: output {out} must end in .parquet or .csv")
    frame = load_dataframe(store_path)
    if suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    return len(frame)
