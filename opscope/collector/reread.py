"""Read the loop knobs of stored schedules again from their traces (``opscope reread-knobs``).

Knobs are read when a schedule is sampled.  When the reader changes (a knob it missed, a new one),
the stored traces and TIR hold everything needed to read them again: each schedule's workload is
parsed from its ``workload_script``, the trace replayed onto it, and the loop knobs
(``opscope.collector.knobs.loop_knobs``) of the scheduled function replace the stored ones.  Every other
knob, the schedule ids and the measurements are left as they were.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from opscope.collector.knobs import loop_knobs


def schedule_script(workload_module: Any, schedule_kind: str, trace_json: str) -> str:
    """TVMScript of ``workload_module`` under a stored schedule (the default one: as it is)."""
    from tvm.s_tir import Schedule
    from tvm.s_tir.schedule import Trace

    sch = Schedule(workload_module)
    steps = json.loads(trace_json) if trace_json and trace_json.strip() else []
    if schedule_kind != "default" and steps:
        Trace.apply_json_to_schedule(steps, sch)
    return sch.mod.script()


def reread_knobs(path: str, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Replace the loop knobs of every default and sampled schedule in the store at ``path``.

    Returns counts (``changed``, ``unchanged``) and ``skipped``: (workload, schedule, reason) for
    schedules whose workload has no stored TIR or whose trace does not replay.  Each update is its
    own transaction, so an interrupted run leaves every schedule either as it was or done.
    """
    from opscope.store import open_store
    from opscope.store.sqlite import workload_module

    out: dict[str, Any] = {"changed": 0, "unchanged": 0, "skipped": []}
    with open_store(path) as store:
        conn = store.connection
        rows = conn.execute(
            "SELECT s.workload_key, s.schedule_id, s.schedule_kind, s.trace_json, s.knobs_json, w.workload_script "
            "FROM schedules s JOIN workloads w ON w.workload_key = s.workload_key "
            "WHERE s.schedule_kind IN ('default', 'sampled') ORDER BY s.workload_key").fetchall()
        modules: dict[str, Any] = {}
        for i, (key, sid, kind, trace, knobs_json, script) in enumerate(rows):
            if progress is not None:
                progress(i, len(rows))
            if kind == "default" and (trace or "").strip() not in ("", "[]"):
                # a default that is itself a schedule (CUDA's dlight): its loops are not the function's
                out["skipped"].append((key, sid, f"default schedule {trace.strip()[:40]} is not TVM's plain lowering"))
                continue
            try:
                if key not in modules:
                    modules[key] = workload_module(script)
                new = loop_knobs(schedule_script(modules[key], kind, trace))
            except Exception as exc:  # TVM's parse and replay errors: that schedule is skipped, with why
                out["skipped"].append((key, sid, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:160]}"
                                       if str(exc).strip() else type(exc).__name__))
                continue
            old = json.loads(knobs_json) if knobs_json else {}
            merged = {**old, **new}
            if merged == old:
                out["unchanged"] += 1
                continue
            conn.execute("UPDATE schedules SET knobs_json = ? WHERE workload_key = ? AND schedule_id = ?",
                         (json.dumps(dict(sorted(merged.items()))), key, sid))
            out["changed"] += 1
    return out
