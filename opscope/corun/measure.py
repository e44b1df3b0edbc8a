"""Co-run measurement: tasks run alone and together under an arrangement; one record per run.

A *task* is a chain of compiled kernels run one after the other (one operator, or a branch of a
model).  ``measure_corun(tasks, arrangement, pool)`` does, for a ``disjoint`` or ``shared``
arrangement with one worker per task:

1. alone: each worker in turn, on its own slot (cores, threads, pinning), loops its task for a
   window while the others are idle: the per-iteration latencies alone;
2. together: all workers warm up, start at one moment and loop their tasks for the same window; only the
   iterations that lie entirely inside the time when all of them were running count: the
   per-iteration latencies together; slowdown = median together / median alone;
3. makespan: ``makespan_repeats`` rounds of: all start at one moment, each runs its task once;
   the round's makespan is the last end minus the first start (stamps from the system-wide
   monotonic clock).

For ``sequential`` one worker with the single slot measures each task alone, then the chain of
all tasks once per round (the makespan).  Timing includes the Python call of each kernel
(a few microseconds), and caches are warm (kernels are run back to back, no flush).
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from dataclasses import dataclass, field

from opscope.corun.kernels import KernelSpec
from opscope.corun.partition import Arrangement, LatencyCurve
from opscope.corun.worker import LoopResult, WorkerError, WorkerPool
from opscope.errors import OpscopeError
from opscope.store.protocol import CorunProtocol
from opscope.store.record import LatencyStats

__all__ = ["CorunProtocol", "CorunRecord", "MemberResult", "Task", "machine_id", "measure_corun", "measure_curve"]

STATUSES = ("ok", "run_error", "crash")
#: coefficient of variation above which a makespan series is flagged noisy
NOISY_CV = 0.2


@dataclass(frozen=True)
class Task:
    """A chain of kernels run in order; the unit that gets a slot."""

    name: str
    kernels: tuple[KernelSpec, ...]

    def __post_init__(self) -> None:
        if not self.kernels:
            raise OpscopeError(f"task {self.name!r} has no kernels")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k.key for k in self.kernels)

    @property
    def flops(self) -> float:
        return sum(k.features["flops"] for k in self.kernels)

    @property
    def bytes(self) -> float:
        return sum(k.features["bytes"] for k in self.kernels)


def _median(xs) -> float | None:
    return statistics.median(xs) if xs else None


@dataclass(frozen=True)
class MemberResult:
    """One task's part of a co-run record."""

    task: str
    kernel_keys: tuple[str, ...]
    kernel_names: tuple[str, ...]
    cores: tuple[int, ...]
    threads: int
    pinned: bool
    flops: float
    bytes: float
    alone_s: tuple[float, ...]
    #: empty for the sequential arrangement (nothing ran beside it)
    together_s: tuple[float, ...] = ()

    @property
    def alone_median_s(self) -> float | None:
        return _median(self.alone_s)

    @property
    def together_median_s(self) -> float | None:
        return _median(self.together_s)

    @property
    def slowdown(self) -> float | None:
        a, t = self.alone_median_s, self.together_median_s
        return t / a if a and t else None

    def to_dict(self) -> dict:
        return {"task": self.task, "kernel_keys": list(self.kernel_keys), "kernel_names": list(self.kernel_names),
                "cores": list(self.cores), "threads": self.threads, "pinned": self.pinned, "flops": self.flops,
                "bytes": self.bytes, "alone_s": list(self.alone_s), "together_s": list(self.together_s)}

    @classmethod
    def from_dict(cls, d: dict) -> MemberResult:
        return cls(d["task"], tuple(d["kernel_keys"]), tuple(d["kernel_names"]), tuple(d["cores"]),
                   int(d["threads"]), bool(d["pinned"]), float(d["flops"]), float(d["bytes"]),
                   tuple(d["alone_s"]), tuple(d["together_s"]))


@functools.lru_cache(maxsize=1)
def machine_id() -> str:
    """This machine's id in the store (``opscope.collector.machine``), so co-run records and the
    store's measurements of the same machine carry the same id."""
    from opscope.collector.machine import fingerprint
    from opscope.collector.machine import machine_id as fingerprint_id

    return fingerprint_id(fingerprint())


@dataclass(frozen=True)
class CorunRecord:
    """One co-run measurement: the arrangement, each member's latencies and the makespans."""

    arrangement: Arrangement
    members: tuple[MemberResult, ...]
    makespan_s: tuple[float, ...]
    protocol: CorunProtocol
    status: str = "ok"
    error: str = ""
    label: str = ""
    machine_id: str = ""
    created_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise OpscopeError(f"co-run record: status {self.status!r} not in {STATUSES}")
        if self.status == "ok" and not self.makespan_s:
            raise OpscopeError("co-run record: status ok but no makespan measured")
        if any(t <= 0 for t in self.makespan_s):
            raise OpscopeError("co-run record: non-positive makespan")

    @property
    def makespan_median_s(self) -> float | None:
        return _median(self.makespan_s)

    @property
    def makespan_cv(self) -> float | None:
        if len(self.makespan_s) < 2:
            return None
        return LatencyStats.of(self.makespan_s).cv

    @property
    def noisy(self) -> bool:
        cv = self.makespan_cv
        return cv is not None and cv > NOISY_CV

    @property
    def sequential_estimate_s(self) -> float | None:
        """Sum of the members' alone medians (what running them one after the other costs)."""
        xs = [m.alone_median_s for m in self.members]
        return sum(xs) if xs and all(x is not None for x in xs) else None


# -- measuring ------------------------------------------------------------------------------

def _latencies(res: LoopResult) -> list[float]:
    return [t1 - t0 for t0, t1 in res.stamps]


def _overlap_latencies(results: list[LoopResult]) -> list[list[float]]:
    """Per worker, the latencies of the iterations inside the window where all were running."""
    start = max(r.stamps[0][0] for r in results)
    end = min(r.stamps[-1][1] for r in results)
    out = []
    for r in results:
        inside = [t1 - t0 for t0, t1 in r.stamps if t0 >= start and t1 <= end]
        out.append(inside)
    return out


def _member(task: Task, slot, alone, together=()) -> MemberResult:
    return MemberResult(task.name, task.keys, tuple(k.name for k in task.kernels), slot.cores, slot.threads,
                        slot.pinned, task.flops, task.bytes, tuple(alone), tuple(together))


def measure_corun(tasks: list[Task] | tuple[Task, ...], arrangement: Arrangement, pool: WorkerPool,
                  protocol: CorunProtocol | None = None, label: str = "") -> CorunRecord:
    """Measure ``tasks`` under ``arrangement`` with ``pool``'s workers; failures become records."""
    protocol = protocol or CorunProtocol()
    tasks = tuple(tasks)
    mid = machine_id()
    if arrangement.kind == "sequential":
        if len(arrangement.slots) != 1:
            raise OpscopeError("a sequential arrangement has exactly one slot")
    elif len(arrangement.slots) != len(tasks):
        raise OpscopeError(f"{len(tasks)} tasks but {len(arrangement.slots)} slots in {arrangement.label}")
    if protocol.spin_count != pool.spin_count:
        raise OpscopeError(f"protocol spin_count {protocol.spin_count} differs from the worker pool's "
                           f"{pool.spin_count} (start the pool with the protocol's value)")
    if arrangement.kind != "sequential" and pool.n < len(tasks):
        raise OpscopeError(f"{len(tasks)} tasks need {len(tasks)} workers, the pool has {pool.n}")
    try:
        if arrangement.kind == "sequential":
            return _measure_sequential(tasks, arrangement, pool, protocol, label, mid)
        return _measure_together(tasks, arrangement, pool, protocol, label, mid)
    except WorkerError as exc:
        status = "crash" if "died" in str(exc) else "run_error"
        members = tuple(_member(t, arrangement.slots[min(i, len(arrangement.slots) - 1)], ())
                        for i, t in enumerate(tasks))
        return CorunRecord(arrangement, members, (), protocol, status, str(exc).splitlines()[0], label, mid)


def _alone(pool: WorkerPool, i: int, task: Task, protocol: CorunProtocol) -> list[float]:
    ids = list(task.keys)
    lat = _latencies(pool.loop({i: ids}, protocol.warmup, protocol.window_s, protocol.min_iters)[i])
    window = max(protocol.window_s, protocol.window_factor * statistics.median(lat))
    if window > protocol.window_s * 1.5:  # slow task: measure again over a long enough window
        lat = _latencies(pool.loop({i: ids}, 0, window, protocol.min_iters)[i])
    return lat


def measure_curve(task: Task, pool: WorkerPool, cores: tuple[int, ...], protocol: CorunProtocol | None = None,
                  worker: int = 0) -> tuple[LatencyCurve, dict[int, tuple[float, ...]]]:
    """``task`` alone on the first 1, 2, ... len(cores) cores (pinned, one thread per core).

    Returns the curve of median latencies and the raw latencies per core count.
    """
    protocol = protocol or CorunProtocol()
    for k in task.kernels:
        pool.load(worker, k)
    raw = {}
    for c in range(1, len(cores) + 1):
        pool.configure(worker, tuple(cores[:c]), c, True)
        raw[c] = tuple(_alone(pool, worker, task, protocol))
    return LatencyCurve(task.name, tuple((c, statistics.median(v)) for c, v in raw.items())), raw


def _measure_sequential(tasks, arrangement, pool, protocol, label, mid) -> CorunRecord:
    slot = arrangement.slots[0]
    for t in tasks:
        for k in t.kernels:
            pool.load(0, k)
    pool.configure(0, slot.cores, slot.threads, slot.pinned)
    members = tuple(_member(t, slot, _alone(pool, 0, t, protocol)) for t in tasks)
    chain = [k for t in tasks for k in t.keys]
    res = pool.once({0: chain}, protocol.warmup, protocol.makespan_repeats)[0]
    return CorunRecord(arrangement, members, tuple(_latencies(res)), protocol, "ok", "", label, mid)


def _measure_together(tasks, arrangement, pool, protocol, label, mid) -> CorunRecord:
    k = len(tasks)
    for i, (t, slot) in enumerate(zip(tasks, arrangement.slots)):
        for kern in t.kernels:
            pool.load(i, kern)
        pool.configure(i, slot.cores, slot.threads, slot.pinned)
    alone = [_alone(pool, i, t, protocol) for i, t in enumerate(tasks)]
    window = max(protocol.window_s, protocol.window_factor * max(statistics.median(a) for a in alone))
    loops = pool.loop({i: list(t.keys) for i, t in enumerate(tasks)}, protocol.warmup, window, protocol.min_iters)
    together = _overlap_latencies([loops[i] for i in range(k)])
    note = ""
    for i, tog in enumerate(together):
        if not tog:  # should not happen with the stretched window; keep the data and say so
            together[i] = _latencies(loops[i])
            note = f"task {tasks[i].name!r}: no iteration fully inside the common window"
    once = pool.once({i: list(t.keys) for i, t in enumerate(tasks)}, protocol.warmup, protocol.makespan_repeats)
    makespans = []
    for r in range(protocol.makespan_repeats):
        starts = [once[i].stamps[r][0] for i in range(k)]
        ends = [once[i].stamps[r][1] for i in range(k)]
        makespans.append(max(ends) - min(starts))
    members = tuple(_member(t, s, a, tog) for t, s, a, tog in zip(tasks, arrangement.slots, alone, together))
    return CorunRecord(arrangement, members, tuple(makespans), protocol, "ok", note, label, mid)


def record_to_json(rec: CorunRecord) -> str:
    return json.dumps({"arrangement": rec.arrangement.to_dict(), "members": [m.to_dict() for m in rec.members],
                       "makespan_s": list(rec.makespan_s), "protocol": rec.protocol.to_dict(),
                       "status": rec.status, "error": rec.error, "label": rec.label,
                       "machine_id": rec.machine_id, "created_at": rec.created_at}, sort_keys=True)


def record_from_json(text: str) -> CorunRecord:
    d = json.loads(text)
    return CorunRecord(Arrangement.from_dict(d["arrangement"]),
                       tuple(MemberResult.from_dict(m) for m in d["members"]), tuple(d["makespan_s"]),
                       CorunProtocol.from_dict(d["protocol"]), d["status"], d["error"], d["label"], d["machine_id"],
                       d["created_at"])
