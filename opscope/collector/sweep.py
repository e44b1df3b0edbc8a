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
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from opscope.collector.machine import fingerprint, machine_id
from opscope.collector.operator_run import Job, Progress, TimeUp, measure_op, past
from opscope.collector.phases import library_rows, make_library_runner, search_rows
from opscope.collector.protocol import Protocol
from opscope.collector.registry import RoleOptions, Roles, make_roles
from opscope.collector.roles import Candidate
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


class NoMatchingOperators(OpscopeError):
    """``--ops`` kept no operator of a model."""


def select_from_models(names: Sequence[str], load: Any, ops: Sequence[str] | str | None = None,
                       max_ops: int | None = None, quiet: bool = False) -> list[Operator]:
    """``select_operators`` over several models (``load(name)`` gives each one's workload): a model with
    no operator of the ``ops`` kinds is skipped and said so, and it is an error only when none has any."""
    import sys

    out: list[Operator] = []
    skipped = []
    for name in names:
        if not quiet:
            print(f"loading {name} ...", file=sys.stderr, flush=True)
        try:
            out += select_operators(load(name), ops, max_ops)
        except NoMatchingOperators:
            if len(names) == 1:
                raise
            skipped.append(name)
            print(f"{name}: no operator of kind or name {ops}; skipped", file=sys.stderr)
    if names and skipped and len(skipped) == len(names):
        raise NoMatchingOperators(f"--ops: no operator of kind or name {ops} in {', '.join(names)}")
    return out


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
            raise NoMatchingOperators(f"--ops: no operator of kind or name {', '.join(wanted)}")
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


def _plan(cands: list[Candidate], threads: tuple[int, ...], done: dict, remeasure_cv: float | None,
          remeasure_before: datetime | None = None) -> list[Job]:
    """The jobs still to run; with ``remeasure_cv``, also those whose latest result is that noisy; with
    ``remeasure_before``, also every one whose latest ok result was taken before that moment."""
    jobs = []
    for cand in cands:
        for t in threads:
            prev = done.get((cand.schedule_id, t))
            if prev is None:
                jobs.append(Job(cand, t, 0))
            elif prev[0] == "ok" and (
                    (remeasure_cv is not None and LatencyStats.of(json.loads(prev[1])).noisy(remeasure_cv))
                    or (remeasure_before is not None and _taken_before(prev[3], remeasure_before))):
                jobs.append(Job(cand, t, prev[2] + 1))
    return jobs


def parse_moment(text: str, what: str = "--remeasure-before") -> datetime:
    """An ISO 8601 moment (``2026-12-01T09:20``, ``...+00:00``, ``...Z``); without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise OpscopeError(f"{what} {text!r}: not an ISO 8601 date and time (e.g. 2026-12-01T09:20 or "
                           "2026-12-01T09:20+00:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _taken_before(created_at: str, moment: datetime) -> bool:
    try:
        return parse_moment(created_at, "created_at") < moment
    except OpscopeError:
        return True  # a row without a readable time cannot show it was taken after the moment


def collect(model_or_ops: Any, target: str = "host", trials: int = 32, threads: Any = (1, 2),
            store: str | os.PathLike[str] | Store = "runs.db", ops: Any = None, seed: int = 0,
            timeout_s: float = 10.0, flush_cache: bool = False, protocol: Protocol | None = None,
            progress: bool = True, max_ops: int | None = None, remeasure_noisy: bool = False,
            remeasure_before: Any = None, pinned: bool = False, batch_size: int = 8, overlap: bool = False,
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

    ``remeasure_noisy`` measures again every ok measurement whose latest attempt is noisy, and
    ``remeasure_before`` (a datetime or ISO 8601 text) every one whose latest attempt was taken before
    that moment (measured on a machine that was busy then); each adds a new attempt, the old rows stay.

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
    if remeasure_before is not None and not isinstance(remeasure_before, datetime):
        remeasure_before = parse_moment(remeasure_before)
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
    lib = make_library_runner(spec, library, roles, library_runner, progress)
    own_roles = roles is None
    roles = roles or make_roles(spec, RoleOptions(rpc=rpc))
    runners = [roles.runner] + [roles.runner.replica() for _ in range(protocol.workers - 1)]
    st = store if isinstance(store, Store) else open_store(store)
    fp = fingerprint()
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
    ctx = {"target": spec.name, "machine_id": machine_id(fp), "protocol": protocol, "pinned": pinned,
           "runners": runners, "deadline": deadline, "progress": progress}
    st.add_machine(ctx["machine_id"], fp)
    prog = Progress(total=len(operators) * (trials + 1) * len(thread_counts), enabled=progress)
    written: list[Record] = []
    try:
        seen: set[str] = set()
        for op in operators:
            if past(deadline):
                raise TimeUp
            if op.key in seen:  # an operator shared by several models is measured once
                st.note_models(op.key, op.models)
                prog.skipped += (trials + 1) * len(thread_counts)
                continue
            seen.add(op.key)
            prog.op = op.name
            prog.show()
            cands = roles.sampler.candidates(op, 0 if search else trials, seed)
            failure = getattr(roles.sampler, "failures", {}).get(op.key)
            if failure and progress:
                print(f"\ncollect: {failure}", file=sys.stderr, flush=True)
            st.note_models(op.key, op.models)
            done = st.measured(op.key, spec.name, ctx["machine_id"], protocol.protocol_id, pinned)
            jobs = _plan(cands, thread_counts, done, protocol.noisy_cv if remeasure_noisy else None,
                         remeasure_before)
            prog.skipped += len(cands) * len(thread_counts) - len(jobs)
            if not search:
                prog.total += (len(cands) - trials - 1) * len(thread_counts)
            if jobs:
                measure_op(op, cands, jobs, roles, st, ctx, timeout_s, batch_size, overlap, prog, written)
            if lib is not None:
                lib = library_rows(op, lib, thread_counts, st, ctx, timeout_s, done, prog, written)
            if search:
                search_rows(op, cands[0], thread_counts, roles, st, ctx, search_config, timeout_s, prog, written)
        prog.show(final=True)
    except TimeUp:
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
