"""The rows ``collect`` takes beside the sampled schedules: torch's library rows and the
evolutionary search of each operator (``opscope.collector.library``, ``opscope.collector.search``).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

from opscope.collector.operator_run import Job, Progress, TimeUp, make_record, op_args, past, run_built
from opscope.collector.registry import Roles
from opscope.collector.roles import Built, Candidate, RunJob, RunResult
from opscope.store.protocol import Protocol
from opscope.store.record import Record
from opscope.store.sqlite import Store
from opscope.workloads.operator import Operator


def make_library_runner(spec: Any, library: bool, roles: Roles | None, given: Any, progress: bool) -> Any:
    """The runner for library rows, or None when they do not apply here (say why once)."""
    from opscope.collector.library import LibraryRunner, torch_version
    from opscope.collector.registry import roles_module

    if not library:
        return None
    if given is not None:
        return given
    module = roles_module(spec)
    if roles is not None or module not in (None, "opscope.collector.cuda"):
        return None  # library rows time this machine's CPU or GPU: only for targets measured here
    if torch_version() is None:
        if progress:
            print("collect: torch is not installed here: no library rows (pip install torch to add them)",
                  file=sys.stderr, flush=True)
        return None
    if module == "opscope.collector.cuda":
        from opscope.collector.cuda import have_gpu

        if not have_gpu():
            return None  # the kernels themselves are built here and measured where the GPU is
        return LibraryRunner("cuda")
    return LibraryRunner()


def library_rows(op: Operator, runner: Any, thread_counts: tuple[int, ...], st: Store, ctx: dict[str, Any],
                  timeout_s: float, done: dict, prog: Progress, written: list[Record]) -> Any:
    """Time ``op`` in torch at each thread count not stored yet; returns the runner (None once it
    could not start: the rest of the collection goes on without library rows)."""
    from opscope.collector.library import LIBRARY, case_json, library_case, library_schedule_id, torch_version
    from opscope.collector.process import WorkerStartError

    case = library_case(op)
    if case is None:
        return runner  # no library covers this kind: no row, not an error
    version = torch_version() or "unknown"
    sid = library_schedule_id(version)
    protocol: Protocol = ctx["protocol"]
    for t in thread_counts:
        if (sid, t) in done:
            continue
        try:
            res = runner.run([RunJob(case_json(case), (), t, protocol, timeout_s, "", ctx["pinned"])])[0]
        except WorkerStartError as exc:
            print(f"collect: no library rows: {exc}", file=sys.stderr, flush=True)
            return None
        backend = runner.backend(t, ctx["pinned"])
        rec = Record(op=op, schedule_id=sid, schedule_kind="library", trace_json="[]", knobs=(),
                     threads=res.threads if res.status == "ok" and res.threads else t, target=ctx["target"],
                     machine_id=ctx["machine_id"], protocol=protocol, status=res.status, error=res.error,
                     raw_latencies_s=res.latencies_s if res.status == "ok" else (), pinned=ctx["pinned"],
                     origin={"library": LIBRARY, "version": version, "backend": backend, "call": case["op"]})
        if st.add(rec) is not None:
            written.append(rec)
    return runner


def search_rows(op: Operator, default: Candidate, thread_counts: tuple[int, ...], roles: Roles, st: Store,
               ctx: dict[str, Any], config: Any, timeout_s: float, prog: Progress, written: list[Record]) -> None:
    """The evolutionary search of ``op`` at each thread count, every tried schedule stored."""
    from opscope.collector.search import search_operator

    protocol: Protocol = ctx["protocol"]
    args = op_args(op)
    reference = ""
    ref_built: list[Built] = []
    if protocol.check_first:
        ref_built = roles.builder.build([default])
        reference = ref_built[0].artifact if ref_built and ref_built[0].ok else ""
    try:
        for t in thread_counts:
            if past(ctx["deadline"]):
                raise TimeUp

            def measure(built: list[Built], ref: str, t: int = t) -> list[RunResult]:
                return run_built(ctx, [(b.artifact, t) for b in built], args, timeout_s, ref)

            def store(cand: Candidate, res: RunResult, origin: dict, t: int = t) -> None:
                rec = replace(make_record(op, Job(cand, t, 0), res, ctx), origin=tuple(sorted(origin.items())))
                if st.add(rec) is not None:
                    written.append(rec)
                prog.add(rec)

            history = st.history(op.key, ctx["target"], ctx["machine_id"], protocol.protocol_id, t, ctx["pinned"])
            outcome = search_operator(op, t, config, tvm_target=roles.tvm_target, target_name=ctx["target"],
                                      builder=roles.builder, history=history, measure=measure, store=store,
                                      reference=reference, deadline=ctx["deadline"], progress=ctx["progress"])
            prog.skipped += min(outcome.resumed, config.trials)
            prog.total += max(0, outcome.resumed - config.trials)
            if outcome.stopped:
                raise TimeUp
    finally:
        if ref_built:
            roles.builder.discard(ref_built)
