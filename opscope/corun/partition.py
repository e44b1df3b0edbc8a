"""Choosing how co-running tasks share a machine's cores.

Each task (one operator or a branch of operators) has a latency curve: its latency when it runs
alone on ``c`` cores.  Three kinds of arrangement are compared:

``sequential``
    the tasks run one after the other, each on all cores: makespan = sum of L_i(N).
``disjoint``
    each task gets its own set of cores (at least one) and they run at the same time:
    makespan = max of L_i(c_i).  Interference through shared caches and memory is ignored here
    (the interference model corrects for it when one is given).
``shared``
    every task uses all cores at once and the operating system time-shares them.  Its makespan
    depends on how much the tasks slow each other down, which a curve cannot tell: it needs
    co-run latencies (measured, or predicted by the interference model), see ``shared_makespan``.

For disjoint sets, ``best_split`` finds the split that minimises the makespan exactly, and
``equilibria`` lists the splits where neither task gains by taking one core from the other.
"Gains" is meant for the pair: moving one core from B to A helps only when A is the bottleneck and
the move lowers the makespan.  With convex (diminishing-returns) curves the equilibrium is the
optimum; with irregular curves (a kernel that is slower on 3 cores than on 2) there can be local
equilibria that are not optimal, which is why the exact search exists beside the local one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from opscope.errors import OpscopeError

ARRANGEMENT_KINDS = ("sequential", "disjoint", "shared")


@dataclass(frozen=True)
class LatencyCurve:
    """Latency (seconds) of one task alone on 1..n cores, as ``(cores, latency)`` pairs."""

    name: str
    points: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        pts = tuple(sorted((int(c), float(t)) for c, t in self.points))
        if not pts:
            raise OpscopeError(f"latency curve {self.name!r}: no points")
        seen: set[int] = set()
        for c, t in pts:
            if c < 1:
                raise OpscopeError(f"latency curve {self.name!r}: core count {c} < 1")
            if not t > 0:
                raise OpscopeError(f"latency curve {self.name!r}: latency {t} at {c} cores is not positive")
            if c in seen:
                raise OpscopeError(f"latency curve {self.name!r}: two latencies for {c} cores")
            seen.add(c)
        object.__setattr__(self, "points", pts)

    @classmethod
    def from_mapping(cls, name: str, latencies: dict[int, float]) -> LatencyCurve:
        return cls(name, tuple(latencies.items()))

    @property
    def max_cores(self) -> int:
        return self.points[-1][0]

    def at(self, cores: int) -> float:
        """Latency on ``cores`` cores; past the last point the last latency holds (no more gain)."""
        if cores < 1:
            raise OpscopeError(f"latency curve {self.name!r}: asked for {cores} cores")
        best = None
        for c, t in self.points:
            if c == cores:
                return t
            if c < cores:
                best = t
        if best is None or cores < self.max_cores:
            raise OpscopeError(f"latency curve {self.name!r}: no latency measured for {cores} cores "
                               f"(has {[c for c, _ in self.points]})")
        return best


@dataclass(frozen=True)
class Split:
    """Disjoint core counts, one per task, and the resulting makespan."""

    cores: tuple[int, ...]
    makespan_s: float


def split_makespan(curves: tuple[LatencyCurve, ...] | list[LatencyCurve], cores: tuple[int, ...]) -> float:
    """Makespan of running the tasks at once on disjoint core counts ``cores`` (no interference)."""
    if len(curves) != len(cores):
        raise OpscopeError(f"{len(curves)} curves but {len(cores)} core counts")
    return max(c.at(n) for c, n in zip(curves, cores))


def compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """All ways to give ``total`` cores to ``parts`` tasks, each at least one, in lexicographic order."""
    if parts < 1 or total < parts:
        return []
    out = []
    for cuts in itertools.combinations(range(1, total), parts - 1):
        bounds = (0, *cuts, total)
        out.append(tuple(bounds[i + 1] - bounds[i] for i in range(parts)))
    return out


def _check(curves, total_cores: int) -> None:
    if len(curves) < 2:
        raise OpscopeError(f"a partition needs at least two tasks, got {len(curves)}")
    if total_cores < len(curves):
        raise OpscopeError(f"{len(curves)} tasks cannot each get a core out of {total_cores}")


def best_split(curves, total_cores: int) -> Split:
    """The disjoint split with the smallest makespan (exact; ties go to the most balanced split).

    Dynamic programming over tasks: ``best[i][c]`` is the smallest makespan of the first ``i``
    tasks on ``c`` cores, so the cost is O(tasks x cores^2) instead of enumerating every split.
    """
    curves = tuple(curves)
    _check(curves, total_cores)
    n = len(curves)
    inf = float("inf")
    # best[i][c] = (makespan, spread, split) for the first i tasks using exactly c cores
    best: list[dict[int, tuple[float, float, tuple[int, ...]]]] = [{0: (0.0, 0.0, ())}]
    for i in range(n):
        layer: dict[int, tuple[float, float, tuple[int, ...]]] = {}
        for used, (ms, _spread, split) in best[i].items():
            remaining_tasks = n - i - 1
            for take in range(1, total_cores - used - remaining_tasks + 1):
                cand_split = (*split, take)
                cand = (max(ms, curves[i].at(take)), max(cand_split) - min(cand_split), cand_split)
                c = used + take
                if c not in layer or cand[:2] < layer[c][:2]:
                    layer[c] = cand
        best.append(layer)
    ms, _, split = best[n].get(total_cores, (inf, 0.0, ()))
    return Split(split, ms)


def _moves(cores: tuple[int, ...]):
    """Every one-core transfer between two tasks that leaves each with at least one core."""
    for i, j in itertools.permutations(range(len(cores)), 2):
        if cores[j] > 1:
            moved = list(cores)
            moved[i] += 1
            moved[j] -= 1
            yield tuple(moved)


def is_equilibrium(curves, cores: tuple[int, ...], rel_tol: float = 0.0) -> bool:
    """True when no one-core transfer lowers the makespan by more than ``rel_tol`` (relative)."""
    curves = tuple(curves)
    here = split_makespan(curves, cores)
    return all(split_makespan(curves, m) >= here * (1.0 - rel_tol) for m in _moves(cores))


def equilibria(curves, total_cores: int, rel_tol: float = 0.0) -> list[Split]:
    """Every disjoint split that is an equilibrium (see the module docstring), best first."""
    curves = tuple(curves)
    _check(curves, total_cores)
    found = [Split(c, split_makespan(curves, c)) for c in compositions(total_cores, len(curves))
             if is_equilibrium(curves, c, rel_tol)]
    return sorted(found, key=lambda s: (s.makespan_s, max(s.cores) - min(s.cores)))


def equilibrium_search(curves, total_cores: int, start: tuple[int, ...] | None = None) -> Split:
    """Local search: from ``start`` (default an even split) move single cores while the makespan drops.

    This is what a runtime would do online, one core at a time; it stops at an equilibrium, which
    may be worse than ``best_split`` when the curves are irregular.
    """
    curves = tuple(curves)
    _check(curves, total_cores)
    n = len(curves)
    if start is None:
        base, extra = divmod(total_cores, n)
        start = tuple(base + (1 if i < extra else 0) for i in range(n))
    if sum(start) != total_cores or min(start) < 1:
        raise OpscopeError(f"start split {start} does not give {total_cores} cores to {n} tasks")
    cores = tuple(start)
    here = split_makespan(curves, cores)
    while True:
        best_move = min(_moves(cores), key=lambda m: split_makespan(curves, m), default=None)
        if best_move is None or split_makespan(curves, best_move) >= here:
            return Split(cores, here)
        cores, here = best_move, split_makespan(curves, best_move)


def shared_makespan(alone_s: tuple[float, ...] | list[float], corun_s: tuple[float, ...] | list[float]) -> float:
    """Makespan of running each task once while all share the cores.

    ``alone_s[i]`` is task i's latency alone on all cores, ``corun_s[i]`` its latency while all the
    others run beside it.  Progress-rate model: while m tasks run, task i advances at the rate
    1/T_i(m); when one finishes, the rest speed up.  T_i(k) is the co-run latency with all k
    tasks, T_i(1) the alone latency, and in between the slowdown is interpolated linearly in the
    number of co-runners (exact for two tasks).  For two tasks with T_A <= T_B this is
    T_A + (1 - T_A / T_B) * L_B.
    """
    alone = [float(x) for x in alone_s]
    corun = [float(x) for x in corun_s]
    k = len(alone)
    if k != len(corun) or k == 0:
        raise OpscopeError(f"shared makespan: {len(alone)} alone latencies vs {len(corun)} co-run latencies")
    if min(alone + corun) <= 0:
        raise OpscopeError("shared makespan: latencies must be positive")

    def latency(i: int, m: int) -> float:
        if k == 1:
            return alone[i]
        slow = corun[i] / alone[i]
        return alone[i] * (1.0 + (slow - 1.0) * (m - 1) / (k - 1))

    remaining = [1.0] * k  # fraction of each task still to do
    running = set(range(k))
    clock = 0.0
    while running:
        m = len(running)
        rates = {i: 1.0 / latency(i, m) for i in running}
        step = min(remaining[i] / rates[i] for i in running)
        clock += step
        for i in list(running):
            remaining[i] -= rates[i] * step
            if remaining[i] <= 1e-12:
                running.discard(i)
    return clock


@dataclass(frozen=True)
class Slot:
    """The resources one task gets: core ids, TVM thread count, and whether threads are pinned."""

    cores: tuple[int, ...]
    threads: int
    pinned: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "cores", tuple(int(c) for c in self.cores))
        if not self.cores:
            raise OpscopeError("a slot needs at least one core")
        if self.threads < 1:
            raise OpscopeError(f"a slot needs at least one thread, got {self.threads}")

    def to_dict(self) -> dict:
        return {"cores": list(self.cores), "threads": self.threads, "pinned": self.pinned}

    @classmethod
    def from_dict(cls, d: dict) -> Slot:
        return cls(tuple(d["cores"]), int(d["threads"]), bool(d["pinned"]))


@dataclass(frozen=True)
class Arrangement:
    """How a set of tasks is run: the kind and one slot per task (sequential: one slot for all)."""

    kind: str
    slots: tuple[Slot, ...]

    def __post_init__(self) -> None:
        if self.kind not in ARRANGEMENT_KINDS:
            raise OpscopeError(f"arrangement kind {self.kind!r} not in {ARRANGEMENT_KINDS}")
        if self.kind == "disjoint":
            used = [c for s in self.slots for c in s.cores]
            if len(used) != len(set(used)):
                raise OpscopeError(f"disjoint arrangement reuses cores: {used}")

    @property
    def label(self) -> str:
        if self.kind == "sequential":
            return f"sequential({len(self.slots[0].cores)}c)"
        if self.kind == "shared":
            return f"shared({len(self.slots[0].cores)}c x{len(self.slots)})"
        return "split(" + "+".join(str(len(s.cores)) for s in self.slots) + ")"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "slots": [s.to_dict() for s in self.slots]}

    @classmethod
    def from_dict(cls, d: dict) -> Arrangement:
        return cls(d["kind"], tuple(Slot.from_dict(s) for s in d["slots"]))


def disjoint_arrangement(split: tuple[int, ...], cores: tuple[int, ...]) -> Arrangement:
    """Contiguous core ids for a split: split (2, 1) of cores (0, 1, 2) gives {0,1} and {2}."""
    if sum(split) > len(cores):
        raise OpscopeError(f"split {split} needs {sum(split)} cores, only {len(cores)} given")
    slots, at = [], 0
    for n in split:
        slots.append(Slot(tuple(cores[at:at + n]), n, True))
        at += n
    return Arrangement("disjoint", tuple(slots))


def all_arrangements(n_tasks: int, cores: tuple[int, ...]) -> list[Arrangement]:
    """Sequential on all cores, every disjoint split, and all tasks sharing all cores."""
    cores = tuple(cores)
    full = Slot(cores, len(cores), True)
    out = [Arrangement("sequential", (full,))]
    out += [disjoint_arrangement(s, cores) for s in compositions(len(cores), n_tasks)]
    out.append(Arrangement("shared", tuple(Slot(cores, len(cores), False) for _ in range(n_tasks))))
    return out


@dataclass(frozen=True)
class Choice:
    """The predicted makespan of every arrangement considered and the one chosen."""

    predicted: tuple[tuple[Arrangement, float], ...]

    @property
    def chosen(self) -> Arrangement:
        return min(self.predicted, key=lambda p: p[1])[0]

    @property
    def chosen_makespan_s(self) -> float:
        return min(p[1] for p in self.predicted)

    def predicted_for(self, arrangement: Arrangement) -> float | None:
        for a, t in self.predicted:
            if a == arrangement:
                return t
        return None


def choose_arrangement(curves, cores: tuple[int, ...], shared_corun_s: tuple[float, ...] | None = None,
                       predict_corun=None) -> Choice:
    """Predict every arrangement's makespan from the curves and pick the smallest.

    Sequential: sum of L_i(N).  Disjoint and shared: ``shared_makespan`` of the alone latencies on
    each slot's core count and the co-run latencies.  Co-run latencies come from
    ``predict_corun(arrangement, alone)`` (e.g. the interference model) when given; otherwise a
    disjoint slot runs as fast as alone (no interference) and a shared arrangement is
    work-conserving time sharing (each task n times slower, i.e. no better than sequential).
    ``shared_corun_s`` fixes the shared arrangement's co-run latencies directly.  With more
    tasks than cores there is no disjoint arrangement.
    """
    curves = tuple(curves)
    n, total = len(curves), len(cores)
    if n < 2:
        raise OpscopeError(f"a partition needs at least two tasks, got {n}")
    alone_full = tuple(c.at(total) for c in curves)
    predicted = []
    for arr in all_arrangements(n, cores):
        if arr.kind == "sequential":
            t = sum(alone_full)
        else:
            alone = tuple(c.at(len(s.cores)) for c, s in zip(curves, arr.slots))
            if arr.kind == "shared" and shared_corun_s is not None:
                corun = tuple(shared_corun_s)
            elif predict_corun is not None:
                corun = tuple(predict_corun(arr, alone))
            elif arr.kind == "shared":
                corun = tuple(a * n for a in alone)
            else:
                corun = alone
            t = shared_makespan(alone, corun)
        predicted.append((arr, t))
    return Choice(tuple(predicted))
