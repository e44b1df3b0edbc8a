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
from dataclasses import dataclass, field, replace
from typing import Any

from opscope.collector.machine import fingerprint, machine_id
from opscope.collector.protocol import Protocol
from opscope.collector.registry import RoleOptions, Roles, make_roles
from opscope.collector.roles import Built, Candidate, RunJob, RunResult, arg_specs
from opscope.collector.search import SEARCHES, SearchConfig
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


def _run_built(ctx: dict[str, Any], items: Sequence[tuple[str, int]], args: Any, timeout_s: float,
               reference: str = "") -> list[RunResult]:
    """Measure (artifact, threads) pairs; each replica runner measures the whole batch in turn, so a
    schedule's measuring processes time it at different moments."""
    protocol: Protocol = ctx["protocol"]
    batch = [RunJob(a, args, t, protocol, timeout_s, reference, ctx["pinned"]) for a, t in items]
    if not batch:
        return []
    rounds = [rn.run(batch) for rn in ctx["runners"]]
    return [_merge(results) for results in zip(*rounds)]


def _op_args(op: Operator) -> Any:
    func = op.prim_func
    if func is not None and hasattr(func, "functions"):
        func = func["main"]
    return arg_specs(func) if func is not None else ()


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
            roles: Roles | None = None, rpc: Any = None, max_minutes: float | None = None,
            search: str | None = None, search_config: Any = None, library: bool = True,
            library_runner: Any = None) -> list[Record]:
    """Measure operators under sampled schedules and thread counts; returns the records written.

    ``search="evolutionary"`` measures, instead of ``trials`` sampled schedules, ``trials`` schedules
    of an evolutionary search per operator and thread count (``opscope.collector.search``;
    ``search_config`` a ``SearchConfig`` for its other settings).  ``library`` also times each
    operator a library covers in torch at every thread count (``schedule_kind = "library"``,
    ``opscope.collector.library``); it applies when the target runs on this machine's CPUs and the
    roles are the target's own (``library_runner`` replaces the torch runner, for tests).

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
    if search is not None and search not in SEARCHES:
        raise OpscopeError(f"--search {search!r}: expected one of {', '.join(SEARCHES)}")
    if search is not None:
        search_config = replace(search_config or SearchConfig(seed=seed), trials=trials) if trials else None
        if search_config is None:
            raise OpscopeError("--search needs --trials >= 1 (the schedules to search per operator)")
    lib = _library_runner(spec, library, roles, library_runner, progress)
    own_roles = roles is None
    roles = roles or make_roles(spec, RoleOptions(rpc=rpc))
    runners = [roles.runner] + [roles.runner.replica() for _ in range(protocol.workers - 1)]
    st = store if isinstance(store, Store) else open_store(store)
    fp = fingerprint()
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
    ctx = {"target": spec.name, "machine_id": machine_id(fp), "protocol": protocol, "pinned": pinned,
           "runners": runners, "deadline": deadline, "progress": progress}
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
            cands = roles.sampler.candidates(op, 0 if search else trials, seed)
            st.note_models(op.key, op.models)
            done = st.measured(op.key, spec.name, ctx["machine_id"], protocol.protocol_id, pinned)
            jobs = _plan(cands, thread_counts, done, protocol.noisy_cv if remeasure_noisy else None)
            prog.skipped += len(cands) * len(thread_counts) - len(jobs)
            if not search:
                prog.total += (len(cands) - trials - 1) * len(thread_counts)
            if jobs:
                _measure_op(op, cands, jobs, roles, st, ctx, timeout_s, batch_size, overlap, prog, written)
            if lib is not None:
                lib = _library_rows(op, lib, thread_counts, st, ctx, timeout_s, done, prog, written)
            if search:
                _search_op(op, cands[0], thread_counts, roles, st, ctx, search_config, timeout_s, prog, written)
        prog.show(final=True)
    except _TimeUp:
        prog.show(final=True)
        if progress:
            print(f"collect: stopped at the {max_minutes:g}-minute limit with {len(written)} new measurements "
                  "stored; run the same command again to go on", file=sys.stderr, flush=True)
    finally:
        if lib is not None and library_runner is None:
            lib.close()
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
    run = _OperatorRun(op, jobs, roles, st, ctx, timeout_s, prog, written)
    run.measure(run.plan(cands, batch_size), overlap)


class _OperatorRun:
    """The steps of measuring one operator's jobs: plan the builds, build (optionally one batch
    ahead), route each built schedule (build error, the checked first schedule, or pending),
    measure what is pending, store every result, discard the artifacts."""

    def __init__(self, op: Operator, jobs: list[_Job], roles: Roles, st: Store, ctx: dict[str, Any],
                 timeout_s: float, prog: _Progress, written: list[Record]):
        self.op, self.jobs, self.roles, self.st, self.ctx = op, jobs, roles, st, ctx
        self.timeout_s, self.prog, self.written = timeout_s, prog, written
        self.args = _op_args(op)
        # A runner with several boards (RPC farm) measures that many jobs at once; everything else gets
        # one job per call, so a collection killed mid-way loses at most the measurements in flight.
        self.slots = max(1, int(roles.runner.parallel_slots))
        self.check_id = ""  # the schedule whose first run is compared with the default's output
        self.reference = ""  # the default build's artifact
        self.wrong: dict[str, RunResult] = {}  # schedule id -> its wrong result, shared by its thread counts
        self.pending: list[tuple[Built, _Job]] = []

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

    def record(self, job: _Job, res: RunResult) -> None:
        rec = _record(self.op, job, res, self.ctx)
        if self.st.add(rec) is not None:
            self.written.append(rec)
        self.prog.add(rec)

    def run_jobs(self, items: list[tuple[Built, _Job]], ref: str = "") -> list[RunResult]:
        return _run_built(self.ctx, [(b.artifact, j.threads) for b, j in items], self.args, self.timeout_s, ref)

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
                if _past(self.ctx["deadline"]) and i + 1 < len(batches):
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
            raise _TimeUp


def _library_runner(spec: Any, library: bool, roles: Roles | None, given: Any, progress: bool) -> Any:
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


def _library_rows(op: Operator, runner: Any, thread_counts: tuple[int, ...], st: Store, ctx: dict[str, Any],
                  timeout_s: float, done: dict, prog: _Progress, written: list[Record]) -> Any:
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


def _search_op(op: Operator, default: Candidate, thread_counts: tuple[int, ...], roles: Roles, st: Store,
               ctx: dict[str, Any], config: Any, timeout_s: float, prog: _Progress, written: list[Record]) -> None:
    """The evolutionary search of ``op`` at each thread count, every tried schedule stored."""
    from opscope.collector.search import search_operator

    protocol: Protocol = ctx["protocol"]
    args = _op_args(op)
    reference = ""
    ref_built: list[Built] = []
    if protocol.check_first:
        ref_built = roles.builder.build([default])
        reference = ref_built[0].artifact if ref_built and ref_built[0].ok else ""
    try:
        for t in thread_counts:
            if _past(ctx["deadline"]):
                raise _TimeUp

            def measure(built: list[Built], ref: str, t: int = t) -> list[RunResult]:
                return _run_built(ctx, [(b.artifact, t) for b in built], args, timeout_s, ref)

            def store(cand: Candidate, res: RunResult, origin: dict, t: int = t) -> None:
                rec = _record(op, _Job(cand, t, 0), res, ctx)
                rec = replace(rec, origin=tuple(sorted(origin.items())))
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
                raise _TimeUp
    finally:
        if ref_built:
            roles.builder.discard(ref_built)


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
