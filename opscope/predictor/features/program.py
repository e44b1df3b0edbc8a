"""Program features of the scheduled TIR: MetaSchedule's ``PerStoreFeature`` (as TenSet uses them).

For each row the operator's function (``workload_script``, the store's TVMScript of it) is scheduled
with the row's trace and MetaSchedule extracts 164 numbers per buffer store: arithmetic counts by
type, vectorisation, unrolling and parallelisation of the loops around the store, the bytes, reuse
and strides of every buffer it touches, arithmetic intensity curves, allocation sizes.  A store is a
row of that matrix; rows become one vector as the sum and the maximum over the stores (``p_sum_*``,
``p_max_*``).  Computed once per (workload, schedule) and cached for the process (about 3 ms each).

A row whose function or trace cannot be rebuilt (a dataset stored before schema version 3, a trace
this TVM cannot replay) gets NaN features; ``skipped`` says which and why.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

#: numbers MetaSchedule's PerStoreFeature gives per store (extract_workload=False)
N_PER_STORE = 164
COLUMNS = tuple(f"p_{agg}_{i}" for agg in ("sum", "max") for i in range(N_PER_STORE))

_CACHE: dict[tuple[str, str], np.ndarray] = {}
_MODULES: dict[str, Any] = {}


def _module(key: str, script: str) -> Any:
    if key not in _MODULES:
        from opscope.store.sqlite import workload_module

        _MODULES[key] = workload_module(script)
    return _MODULES[key]


def _extract(mod: Any, trace_json: str | None, target: Any) -> np.ndarray:
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.schedule import Trace

    sch = Schedule(mod)
    steps = json.loads(trace_json) if isinstance(trace_json, str) and trace_json.strip() else []
    if steps:
        Trace.apply_json_to_schedule(steps, sch)
    args = ms.arg_info.ArgInfo.from_prim_func(sch.mod["main"])
    ctx = ms.TuneContext(mod=mod, target=target, num_threads=1)
    feats = ms.feature_extractor.PerStoreFeature(extract_workload=False).extract_from(
        ctx, [ms.MeasureCandidate(sch, args)])[0].numpy()
    if feats.size == 0:
        return np.zeros(2 * N_PER_STORE)
    return np.concatenate([feats.sum(axis=0), feats.max(axis=0)])


def program_features(frame: pd.DataFrame, target: Any = None) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """(rows, 328) program features of each row's scheduled function, and the (workload, reason) skipped.

    ``target`` is a ``tvm.target.Target`` (default: this host's).
    """
    if target is None:
        from opscope.targets import load_target, tvm_target

        target = tvm_target(load_target("host"))
    out = np.full((len(frame), len(COLUMNS)), np.nan)
    skipped: list[tuple[str, str]] = []
    if "workload_script" not in frame:
        return out, [("*", "the frame has no workload_script column (a dataset from before store schema 3)")]
    keys = frame["workload_key"].astype(str).to_numpy()
    sids = frame["schedule_id"].astype(str).to_numpy()
    scripts = frame["workload_script"].to_numpy()
    traces = frame["trace_json"].to_numpy() if "trace_json" in frame else np.full(len(frame), None)
    bad: set[str] = set()
    for i in range(len(frame)):
        cache_key = (keys[i], sids[i])
        if cache_key not in _CACHE and keys[i] not in bad:
            script = scripts[i]
            if not isinstance(script, str) or not script:
                bad.add(keys[i])
                skipped.append((keys[i], "stored without its TIR (workload_script is empty)"))
                continue
            try:
                _CACHE[cache_key] = _extract(_module(keys[i], script), traces[i], target)
            except Exception as exc:  # TVM's errors (parse, replay, extraction): the row gets NaN, with why
                skipped.append((keys[i], f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:160]}"
                                if str(exc).strip() else type(exc).__name__))
                continue
        if cache_key in _CACHE:
            out[i] = _CACHE[cache_key]
    return out, skipped
