"""Measuring one operator's schedules: the steps ``collect`` runs for each operator.

``Progress`` is the collection's progress line; ``Job`` one (schedule, thread count, attempt);
``OperatorRun`` plans the builds, builds (optionally one batch ahead), routes each built schedule
(build error, the checked first schedule, or pending), measures what is pending and stores every
result; ``run_built`` measures built artifacts on the collection's runners (replicas in turn).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from opscope.collector.registry import Roles
from opscope.collector.roles import Built, Candidate, RunJob, RunResult, arg_specs
from opscope.store.protocol import Protocol
from opscope.store.record import Record
from opscope.store.sqlite import Store
from opscope.workloads.operator import Operator


@dataclass
class Progress:
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
class Job:
    cand: Candidate
    threads: int
    attempt: int


def run_built(ctx: dict[str, Any], items: Sequence[tuple[str, int]], args: Any, timeout_s: float,
               reference: str = "") -> list[RunResult]:
    """Measure (artifact, threads) pairs; each replica runner measures the whole batch in turn, so a
    schedule's measuring processes time it at different moments."""
    protocol: Protocol = ctx["protocol"]
    batch = [RunJob(a, args, t, protocol, timeout_s, reference, ctx["pinned"]) for a, t in items]
    if not batch:
        return []
    rounds = [rn.run(batch) for rn in ctx["runners"]]
    return [merge(results) for results in zip(*rounds)]


def op_args(op: Operator) -> Any:
    func = op.prim_func
    if func is not None and hasattr(func, "functions"):
        func = func["main"]
    return arg_specs(func) if func is not None else ()


def make_record(op: Operator, job: Job, res: RunResult, ctx: dict[str, Any]) -> Record:
    lat = res.latencies_s if res.status == "ok" else ()
    return Record(
        op=op, schedule_id=job.cand.schedule_id, schedule_kind=job.cand.schedule_kind,
        trace_json=job.cand.trace_json, knobs=job.cand.knobs,
        threads=res.threads if res.status == "ok" and res.threads else job.threads,
        target=ctx["target"], machine_id=ctx["machine_id"], protocol=ctx["protocol"], status=res.status,
        error=res.error, raw_latencies_s=lat, pinned=ctx["pinned"], attempt=job.attempt,
    )


def measure_op(op: Operator, cands: list[Candidate], jobs: list[Job], roles: Roles, st: Store,
                ctx: dict[str, Any], timeout_s: float, batch_size: int, overlap: bool,
                prog: Progress, written: list[Record]) -> None:
    """Build and measure ``jobs`` of one operator, appending each stored record to ``written``.

    Raises ``TimeUp`` between batches once the collection's deadline has passed (builds left unmeasured
    are discarded; what was measured is stored).
    """
    run = OperatorRun(op, jobs, roles, st, ctx, timeout_s, prog, written)
    run.measure(run.plan(cands, batch_size), overlap)


class OperatorRun:
    """The steps of measuring one operator's jobs: plan the builds, build (optionally one batch
    ahead), route each built schedule (build error, the checked first schedule, or pending),
    measure what is pending, store every result, discard the artifacts."""

    def __init__(self, op: Operator, jobs: list[Job], roles: Roles, st: Store, ctx: dict[str, Any],
                 timeout_s: float, prog: Progress, written: list[Record]):
        self.op, self.jobs, self.roles, self.st, self.ctx = op, jobs, roles, st, ctx
        self.timeout_s, self.prog, self.written = timeout_s, prog, written
        self.args = op_args(op)
        # A runner with several boards (RPC farm) measures that many jobs at once; everything else gets
        # one job per call, so a collection killed mid-way loses at most the measurements in flight.
        self.slots = max(1, int(roles.runner.parallel_slots))
        self.check_id = ""  # the schedule whose first run is compared with the default's output
        self.reference = ""  # the default build's artifact
        self.wrong: dict[str, RunResult] = {}  # schedule id -> its wrong result, shared by its thread counts
        self.pending: list[tuple[Built, Job]] = []

    def plan(self, cands: list[Candidate], batch_size: int) -> list[list[Candidate]]:
        """The build batches: every candidate with a job, and the default first when it is the
        reference of the checked schedule."""
        wanted = {j.cand.schedule_id for j in self.jobs}
        to_build = [c for c in cands if c.schedule_id in wanted]
        first_sampled = next((c for c in cands if c.schedule_kind == "sampled"), None)
        if self.ctx["protocol"].check_first and first_sampled is not None and first_sampled in to_build:
            self.check_id = first_sampled.schedule_id
            if cands[0] not in to_build:
                to_build.insert(0, cands[0])  # the default build is the reference
        return [to_build[i:i + batch_size] for i in range(0, len(to_build), batch_size)]

    def record(self, job: Job, res: RunResult) -> None:
        rec = make_record(self.op, job, res, self.ctx)
        if self.st.add(rec) is not None:
            self.written.append(rec)
        self.prog.add(rec)

    def run_jobs(self, items: list[tuple[Built, Job]], ref: str = "") -> list[RunResult]:
        return run_built(self.ctx, [(b.artifact, j.threads) for b, j in items], self.args, self.timeout_s, ref)

    def flush(self) -> None:
        """Measure what is pending, ``slots`` jobs per call, in build order."""
        for k in range(0, len(self.pending), self.slots):
            chunk = self.pending[k:k + self.slots]
            fresh = iter(self.run_jobs([(b, j) for b, j in chunk if b.candidate.schedule_id not in self.wrong]))
            for b, j in chunk:
                self.record(j, self.wrong.get(b.candidate.schedule_id) or next(fresh))
        self.pending.clear()

    def route(self, built: list[Built]) -> None:
        """Each built schedule's jobs: a build error is recorded, the checked schedule runs against
        the reference at once, the rest waits in ``pending``."""
        for b in built:
            if b.candidate.schedule_kind == "default" and b.ok:
                self.reference = b.artifact
            for j in (j for j in self.jobs if j.cand.schedule_id == b.candidate.schedule_id):
                if not b.ok:
                    self.flush()
                    self.record(j, RunResult("build_error", error=b.error))
                elif b.candidate.schedule_id == self.check_id and self.reference:
                    self.flush()
                    self.check_id = ""  # the first run of the checked schedule compares with the default
                    res = self.run_jobs([(b, j)], self.reference)[0]
                    if res.status == "wrong_result":
                        self.wrong[b.candidate.schedule_id] = res
                    self.record(j, res)
                else:
                    self.pending.append((b, j))

    def measure(self, batches: list[list[Candidate]], overlap: bool) -> None:
        builder = self.roles.builder
        pool = ThreadPoolExecutor(1, thread_name_prefix="opscope-build") if overlap else None
        kept: list[Built] = []  # the reference, deleted last
        ahead = None
        stopped = False
        try:
            for i, batch in enumerate(batches):
                if pool is not None:
                    built = (ahead or pool.submit(builder.build, batch)).result()
                    ahead = pool.submit(builder.build, batches[i + 1]) if i + 1 < len(batches) else None
                else:
                    built = builder.build(batch)
                self.route(built)
                self.flush()
                kept += [b for b in built if b.artifact == self.reference]
                builder.discard([b for b in built if b.artifact != self.reference])
                if past(self.ctx["deadline"]) and i + 1 < len(batches):
                    stopped = True
                    break
        finally:
            builder.discard(kept)
            if ahead is not None:
                ahead.cancel()
                if not ahead.cancelled():
                    builder.discard(ahead.result())
            if pool is not None:
                pool.shutdown()
        if stopped:
            raise TimeUp


class TimeUp(Exception):
    """The collection's time limit has passed (raised at a measurement boundary)."""


def past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def merge(results: Sequence[RunResult]) -> RunResult:
    """One result from each replica's: their latencies in turn when all are ok, else the first failure."""
    if len(results) == 1:
        return results[0]
    bad = next((r for r in results if r.status != "ok"), None)
    if bad is not None:
        return bad
    first = results[0]
    return RunResult("ok", latencies_s=tuple(x for r in results for x in r.latencies_s), threads=first.threads,
                     wall_s=sum(r.wall_s for r in results))
