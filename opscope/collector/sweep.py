"""``collect``: sample schedules, build, measure under each thread count, write every record.

For each operator: the sampler gives the default schedule and ``trials`` sampled ones; what the
store already holds for this (target, machine, protocol, pinning) is skipped; the rest is built in
batches by the builder and measured by the runner, one job per thread count, and each result is
written to the store at once (one transaction per record).  The first sampled schedule of each
operator is checked against the default build on random inputs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from opscope.collector.machine import fingerprint, machine_id
from opscope.collector.protocol import Protocol
from opscope.collector.registry import RoleOptions, Roles, make_roles
from opscope.collector.roles import Built, Candidate, RunJob, RunResult, arg_specs
from opscope.errors import OpscopeError
from opscope.store.record import LatencyStats, Record
from opscope.store.sqlite import Store, open_store
from opscope.workloads.operator import Operator


def parse_threads(threads: str | int | Sequence[int]) -> tuple[int, ...]:
    """``"1,2"``, ``"all"``, ``4`` or ``(1, 2)`` -> thread counts; "all" is every logical CPU."""
    if isinstance(threads, int):
        items: list[Any] = [threads]
    elif isinstance(threads, str):
        items = [t.strip() for t in threads.split(",") if t.strip()]
    else:
        items = list(threads)
    out: list[int] = []
    for t in items:
        if t == "all":
            n = os.cpu_count() or 1
        else:
            try:
                n = int(t)
            except (TypeError, ValueError):
                raise OpscopeError(f"threads: {t!r} is not a positive integer or 'all'") from None
        if n < 1:
            raise OpscopeError(f"threads: {n} must be >= 1")
        if n not in out:
            out.append(n)
    if not out:
        raise OpscopeError("threads: no thread count given")
    return tuple(out)


def select_operators(model_or_ops: Any, ops: Sequence[str] | str | None = None,
                     max_ops: int | None = None) -> list[Operator]:
    """The operators to measure: a zoo/ONNX model name, a ``Workload`` or operators.

    ``ops`` keeps operators whose kind (or name) is listed; ``max_ops`` keeps that many, taking
    the heaviest (FLOPs times count in the model) of each kind in turn, so that a few operators
    still cover the model's kinds.
    """
    if isinstance(model_or_ops, str):
        from opscope.workloads import load_model

        operators = list(load_model(model_or_ops).operators)
    elif hasattr(model_or_ops, "operators"):
        operators = list(model_or_ops.operators)
    elif isinstance(model_or_ops, Operator):
        operators = [model_or_ops]
    else:
        operators = list(model_or_ops)
    bad = [o for o in operators if not isinstance(o, Operator)]
    if bad:
        raise OpscopeError(f"expected operators, got {type(bad[0]).__name__}")
    if ops:
        wanted = [s.strip() for s in ops.split(",")] if isinstance(ops, str) else list(ops)
        operators = [o for o in operators if o.kind in wanted or o.name in wanted]
        if not operators:
            raise OpscopeError(f"--ops: no operator of kind or name {', '.join(wanted)}")
    if max_ops is not None:
        by_kind: dict[str, list[Operator]] = {}
        for o in sorted(operators, key=lambda o: -o.flops * o.count):
            by_kind.setdefault(o.kind, []).append(o)
        picked: list[Operator] = []
        while len(picked) < max_ops and any(by_kind.values()):
            for kind in sorted(by_kind, key=lambda k: -by_kind[k][0].flops * by_kind[k][0].count if by_kind[k] else 0):
                if by_kind[kind] and len(picked) < max_ops:
                    picked.append(by_kind[kind].pop(0))
        operators = picked
    return operators


@dataclass
class _Progress:
    total: int
    enabled: bool
    done: int = 0
    failed: int = 0
    noisy: int = 0
    skipped: int = 0
    t0: float = field(default_factory=time.monotonic)
    op: str = ""

    def add(self, rec: Record) -> None:
        self.done += 1
        self.failed += rec.status != "ok"
        self.noisy += rec.noisy
        self.show()

    def show(self, final: bool = False) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.t0
        left = self.total - self.done - self.skipped
        eta = elapsed / self.done * left if self.done else float("nan")
        eta_s = "--:--" if eta != eta else f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
        line = (f"[{self.done + self.skipped}/{self.total}] measured {self.done} failed {self.failed} "
                f"noisy {self.noisy} skipped {self.skipped} elapsed {elapsed:.0f}s ETA {eta_s} {self.op[:40]}")
        print("\r" + line.ljust(110), end="\n" if final else "", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _Job:
    cand: Candidate
    threads: int
    attempt: int


def _record(op: Operator, job: _Job, res: RunResult, ctx: dict[str, Any]) -> Record:
    lat = res.latencies_s if res.status == "ok" else ()
    return Record(
        op=op, schedule_id=job.cand.schedule_id, schedule_kind=job.cand.schedule_kind,
        trace_json=job.cand.trace_json, knobs=job.cand.knobs,
        threads=res.threads if res.status == "ok" and res.threads else job.threads,
        target=ctx["target"], machine_id=ctx["machine_id"], protocol=ctx["protocol"], status=res.status,
        error=res.error, raw_latencies_s=lat, pinned=ctx["pinned"], attempt=job.attempt,
    )


def _plan(cands: list[Candidate], threads: tuple[int, ...], done: dict, remeasure_cv: float | None) -> list[_Job]:
    """The jobs still to run; with ``remeasure_cv``, also those whose latest result is that noisy."""
    jobs = []
    for cand in cands:
        for t in threads:
            prev = done.get((cand.schedule_id, t))
            if prev is None:
                jobs.append(_Job(cand, t, 0))
            elif remeasure_cv is not None and prev[0] == "ok":
                if LatencyStats.of(json.loads(prev[1])).noisy(remeasure_cv):
                    jobs.append(_Job(cand, t, prev[2] + 1))
    return jobs


def collect(model_or_ops: Any, target: str = "host", trials: int = 32, threads: Any = (1, 2),
            store: str | os.PathLike[str] | Store = "runs.db", ops: Any = None, seed: int = 0,
            timeout_s: float = 10.0, flush_cache: bool = False, protocol: Protocol | None = None,
            progress: bool = True, max_ops: int | None = None, remeasure_noisy: bool = False,
            pinned: bool = False, batch_size: int = 8, overlap: bool = False,
            roles: Roles | None = None, rpc: Any = None, max_minutes: float | None = None) -> list[Record]:
    """Measure operators under sampled schedules and thread counts; returns the records written.

    ``max_minutes`` stops cleanly at a measurement boundary once that much time has passed (what was
    measured is in the store; the same call again resumes).  With ``protocol.workers`` > 1 every
    measurement is taken by that many separate measuring processes, one after the other over the batch,
    so that each schedule is timed by different processes at different times.

    ``overlap`` builds the next batch while the current one is measured (faster, but on a small
    machine the compiler then competes with the kernel being timed).  ``roles`` replaces the
    target's sampler/builder/runner (tests use the fake twins).  ``rpc`` (an
    ``opscope.collector.rpc.RpcConfig``) names the tracker and key for board targets; without it they
    come from the environment and the spec.
    """
    from opscope.targets import load_target

    if trials < 0:
        raise OpscopeError(f"trials must be >= 0, got {trials}")
    if timeout_s <= 0:
        raise OpscopeError(f"timeout must be > 0 seconds, got {timeout_s}")
    if max_minutes is not None and not max_minutes > 0:
        raise OpscopeError(f"max_minutes must be > 0, got {max_minutes}")
    spec = load_target(target)
    thread_counts = parse_threads(threads)
    protocol = protocol or Protocol(flush_cache=flush_cache)
    if flush_cache and not protocol.flush_cache:
        raise OpscopeError("collect: flush_cache=True contradicts the protocol given (flush_cache=False)")
    operators = select_operators(model_or_ops, ops, max_ops)
    own_roles = roles is None
    roles = roles or make_roles(spec, RoleOptions(rpc=rpc))
    runners = [roles.runner] + [roles.runner.replica() for _ in range(protocol.workers - 1)]
    st = store if isinstance(store, Store) else open_store(store)
    fp = fingerprint()
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
    ctx = {"target": spec.name, "machine_id": machine_id(fp), "protocol": protocol, "pinned": pinned,
           "runners": runners, "deadline": deadline}
    st.add_machine(ctx["machine_id"], fp)
    prog = _Progress(total=len(operators) * (trials + 1) * len(thread_counts), enabled=progress)
    written: list[Record] = []
    try:
        seen: set[str] = set()
        for op in operators:
            if _past(deadline):
                raise _TimeUp
            if op.key in seen:  # an operator shared by several models is measured once
                st.note_models(op.key, op.models)
                prog.skipped += (trials + 1) * len(thread_counts)
                continue
            seen.add(op.key)
            prog.op = op.name
            prog.show()
            cands = roles.sampler.candidates(op, trials, seed)
            st.note_models(op.key, op.models)
            done = st.measured(op.key, spec.name, ctx["machine_id"], protocol.protocol_id, pinned)
            jobs = _plan(cands, thread_counts, done, protocol.noisy_cv if remeasure_noisy else None)
            prog.skipped += len(cands) * len(thread_counts) - len(jobs)
            prog.total += (len(cands) - trials - 1) * len(thread_counts)
            if jobs:
                _measure_op(op, cands, jobs, roles, st, ctx, timeout_s, batch_size, overlap, prog, written)
        prog.show(final=True)
    except _TimeUp:
        prog.show(final=True)
        if progress:
            print(f"collect: stopped at the {max_minutes:g}-minute limit with {len(written)} new measurements "
                  "stored; run the same command again to go on", file=sys.stderr, flush=True)
    finally:
        for extra in runners[1:]:
            extra.close()
        if own_roles:
            roles.builder.close()
            roles.runner.close()
        if not isinstance(store, Store):
            st.close()
    return written


def _measure_op(op: Operator, cands: list[Candidate], jobs: list[_Job], roles: Roles, st: Store,
                ctx: dict[str, Any], timeout_s: float, batch_size: int, overlap: bool,
                prog: _Progress, written: list[Record]) -> None:
    """Build and measure ``jobs`` of one operator, appending each stored record to ``written``.

    Raises ``_TimeUp`` between batches once the collection's deadline has passed (builds left unmeasured
    are discarded; what was measured is stored).
    """
    protocol: Protocol = ctx["protocol"]
    func = op.prim_func
    if func is not None and hasattr(func, "functions"):
        func = func["main"]
    args = arg_specs(func) if func is not None else ()
    to_build = [c for c in cands if any(j.cand.schedule_id == c.schedule_id for j in jobs)]
    first_sampled = next((c for c in cands if c.schedule_kind == "sampled"), None)
    check_id = ""
    if protocol.check_first and first_sampled is not None and first_sampled in to_build:
        check_id = first_sampled.schedule_id
        if cands[0] not in to_build:
            to_build.insert(0, cands[0])  # the default build is the reference
    batches = [to_build[i:i + batch_size] for i in range(0, len(to_build), batch_size)]
    stopped = False
    reference = ""
    builder = roles.builder
    pool = ThreadPoolExecutor(1, thread_name_prefix="opscope-build") if overlap else None
    kept: list[Built] = []
    ahead = None
    runner = roles.runner
    # A runner with several boards (RPC farm) measures that many jobs at once; everything else gets
    # one job per call, so a collection killed mid-way loses at most the measurements in flight.
    slots = max(1, int(getattr(runner, "parallel_slots", 1)))

    def run_jobs(items: list[tuple[Built, _Job]], ref: str = "") -> list[RunResult]:
        batch = [RunJob(b.artifact, args, j.threads, protocol, timeout_s, ref, ctx["pinned"]) for b, j in items]
        if not batch:
            return []
        # each replica measures the whole chunk in turn: a schedule's processes time it at different moments
        rounds = [rn.run(batch) for rn in ctx["runners"]]
        return [_merge(results) for results in zip(*rounds)]

    def record_result(j: _Job, res: RunResult) -> None:
        rec = _record(op, j, res, ctx)
        if st.add(rec) is not None:
            written.append(rec)
        prog.add(rec)

    wrong: dict[str, RunResult] = {}  # schedule id -> its wrong result, shared by its thread counts
    pending: list[tuple[Built, _Job]] = []

    def flush() -> None:  # measure what is pending, `slots` jobs per call, in build order
        for k in range(0, len(pending), slots):
            chunk = pending[k:k + slots]
            fresh = iter(run_jobs([(b, j) for b, j in chunk if b.candidate.schedule_id not in wrong]))
            for b, j in chunk:
                record_result(j, wrong.get(b.candidate.schedule_id) or next(fresh))
        pending.clear()

    for i, batch in enumerate(batches):
        if pool is not None:
            built = (ahead or pool.submit(builder.build, batch)).result()
            ahead = pool.submit(builder.build, batches[i + 1]) if i + 1 < len(batches) else None
        else:
            built = builder.build(batch)
        for b in built:
            if b.candidate.schedule_kind == "default" and b.ok:
                reference = b.artifact
            for j in (j for j in jobs if j.cand.schedule_id == b.candidate.schedule_id):
                if not b.ok:
                    flush()
                    record_result(j, RunResult("build_error", error=b.error))
                elif b.candidate.schedule_id == check_id and reference:
                    flush()
                    check_id = ""  # the first run of the checked schedule compares with the default
                    res = run_jobs([(b, j)], reference)[0]
                    if res.status == "wrong_result":
                        wrong[b.candidate.schedule_id] = res
                    record_result(j, res)
                else:
                    pending.append((b, j))
        flush()
        discard = getattr(builder, "discard", None)
        if discard is not None:
            keep = [b for b in built if b.artifact == reference]
            kept += keep
            discard([b for b in built if b.artifact != reference])
        if _past(ctx["deadline"]) and i + 1 < len(batches):
            stopped = True
            break
    discard = getattr(builder, "discard", None)
    if discard is not None:
        discard(kept)
    if ahead is not None:
        ahead.cancel()
        if not ahead.cancelled() and discard is not None:
            discard(ahead.result())
    if pool is not None:
        pool.shutdown()
    if stopped:
        raise _TimeUp


class _TimeUp(Exception):
    """The collection's time limit has passed (raised at a measurement boundary)."""


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _merge(results: Sequence[RunResult]) -> RunResult:
    """One result from each replica's: their latencies in turn when all are ok, else the first failure."""
    if len(results) == 1:
        return results[0]
    bad = next((r for r in results if r.status != "ok"), None)
    if bad is not None:
        return bad
    first = results[0]
    return RunResult("ok", latencies_s=tuple(x for r in results for x in r.latencies_s), threads=first.threads,
                     wall_s=sum(r.wall_s for r in results))
