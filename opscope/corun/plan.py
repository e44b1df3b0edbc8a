"""A model's independent branches: measure their curves, choose an arrangement, measure them all.

``corun_model(model, target="host")`` is what ``opscope corun`` runs:

1. the fused Relax module of the model (``opscope.workloads.load_model``); its fork-join regions;
2. per region, one task per branch (the branch's kernels compiled with a default parallel
   schedule);
3. every arrangement (sequential, each disjoint split, shared) measured for real
   (``measure_corun``), in ``rounds`` interleaved rounds so that drift on a busy machine hits all
   of them alike; records go to the store when one is given;
4. each task's latency curve (alone on 1..N cores) from the alone phases of those records, and
   from the curves (plus, when given, the interference model's validated co-run latencies) the
   predicted makespan of every arrangement; ``choose_safe`` keeps sequential unless an
   arrangement's gain exceeds the prediction's held-out error.  The co-run phases are not used
   for the choice, so the chosen arrangement can be compared fairly with the measured best.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opscope.corun.branches import Region, find_regions
from opscope.corun.chooser import Decision, choose_safe, model_estimate, model_sequential
from opscope.corun.kernels import build_kernel
from opscope.corun.measure import CorunProtocol, CorunRecord, Task, measure_corun
from opscope.corun.partition import Arrangement, Choice, LatencyCurve, all_arrangements
from opscope.corun.worker import WorkerPool, progress
from opscope.errors import OpscopeError


@dataclass(frozen=True)
class RegionResult:
    """One region: its tasks, curves, the decision made and the measured arrangements (all rounds)."""

    region: Region
    tasks: tuple[Task, ...]
    curves: tuple[LatencyCurve, ...]
    decision: Decision
    records: tuple[CorunRecord, ...]

    @property
    def choice(self) -> Choice:
        """The predicted makespan of every arrangement."""
        return self.decision.choice

    @property
    def chosen(self) -> Arrangement:
        return self.decision.chosen

    def makespans(self, arrangement: Arrangement) -> tuple[float, ...]:
        """Every makespan measured for ``arrangement``, over all rounds."""
        return tuple(t for r in self.records if r.arrangement == arrangement and r.status == "ok"
                     for t in r.makespan_s)

    def measured(self, arrangement: Arrangement) -> float | None:
        xs = self.makespans(arrangement)
        return statistics.median(xs) if xs else None

    @property
    def sequential_s(self) -> float | None:
        return self.measured(next(a for a, _ in self.choice.predicted if a.kind == "sequential"))

    @property
    def chosen_measured_s(self) -> float | None:
        return self.measured(self.decision.chosen)

    @property
    def best(self) -> tuple[Arrangement, float] | None:
        ok = [(a, self.measured(a)) for a, _ in self.choice.predicted]
        ok = [(a, t) for a, t in ok if t is not None]
        return min(ok, key=lambda x: x[1]) if ok else None


def fused_module(model: str, batch_size: int = 1, params: dict[str, Any] | None = None):
    """(fused Relax module, operators) of ``model`` through ``opscope.workloads.load_model``."""
    try:
        from opscope.workloads import load_model
    except ImportError:
        raise OpscopeError("model import (opscope.workloads.load_model) is not available in this build") from None
    wl = load_model(model, batch_size=batch_size, **(params or {}))
    if wl.ir_module is None:
        raise OpscopeError(f"model {model!r} has no Relax graph (a layer table cannot be co-run)")
    return wl.ir_module, tuple(wl.operators)


def _operator_for(func, operators):
    """(key, Operator JSON) of the model's operator whose PrimFunc is ``func``; (\"\", None) if none.

    The key is the workloads room's structural key of the standalone PrimFunc, i.e. the store's
    ``workload_key``, so co-run records join with the store's measurements.
    """
    try:
        from opscope.workloads.extract import standalone, structural_key
    except ImportError:
        return "", None
    key = structural_key(standalone(func))
    for op in operators:
        if op.key == key:
            return key, json.dumps(op.to_dict(), sort_keys=True, default=str)
    return key, None


def region_tasks(mod, region: Region, target, kernel_dir: str | Path, operators=()) -> tuple[Task, ...]:
    """One task per branch, its kernels compiled (cached by content under ``kernel_dir``)."""
    tasks = []
    for i, br in enumerate(region.branches):
        kernels = []
        for fname in br.funcs:
            func = mod[fname]
            key, op_json = _operator_for(func, operators)
            kernels.append(build_kernel(func, fname, target, kernel_dir, key=key, operator_json=op_json))
        tasks.append(Task(f"b{i}:{'>'.join(br.funcs)}", tuple(kernels)))
    return tuple(tasks)


def curves_from_records(tasks: tuple[Task, ...], records) -> tuple[LatencyCurve, ...]:
    """Each task's alone latency per core count, pooled over the records' alone phases.

    Every arrangement measures its tasks alone on their own slot first: the sequential one on all
    cores, each disjoint split on its share.  So the curves come for free, and from the same
    rounds as the co-runs (drift on a shared machine hits both alike).
    """
    samples: list[dict[int, list[float]]] = [{} for _ in tasks]
    for rec in records:
        if rec.status != "ok":
            continue
        for i, m in enumerate(rec.members):
            samples[i].setdefault(len(m.cores), []).extend(m.alone_s)
    return tuple(LatencyCurve(t.name, tuple((c, statistics.median(v)) for c, v in sorted(s.items()) if v))
                 for t, s in zip(tasks, samples))


def plan_region(region: Region, tasks: tuple[Task, ...], pool: WorkerPool, protocol: CorunProtocol,
                interference=None, label: str = "", rounds: int = 3, show=progress) -> RegionResult:
    """Measure every arrangement ``rounds`` times, interleaved; curves from the alone phases;
    choose from the curves (and the interference model) alone, never from the co-run phases."""
    if rounds < 1:
        raise OpscopeError(f"rounds must be >= 1, got {rounds}")
    arrangements = [a for a in all_arrangements(len(tasks), pool.cores)
                    if a.kind == "sequential" or len(tasks) <= pool.n]
    records = []
    for r in range(rounds):
        for arr in arrangements:
            show(f"  round {r + 1}/{rounds}: {arr.label}")
            records.append(measure_corun(tasks, arr, pool, protocol, label=label))
    curves = curves_from_records(tasks, records)
    if any(not c.points for c in curves):
        raise OpscopeError(f"region {region.describe()}: every measurement failed: "
                           + "; ".join(sorted({r.error for r in records if r.error})))
    return RegionResult(region, tasks, curves, decide(tasks, curves, pool.cores, interference), tuple(records))


def decide(tasks: tuple[Task, ...], curves: tuple[LatencyCurve, ...], cores: tuple[int, ...],
           interference=None) -> Decision:
    """``choose_safe`` with the interference model's validated estimates (sequential without one)."""
    if interference is None:
        return choose_safe(curves, cores)
    return choose_safe(curves, cores, model_estimate(interference, tasks), model_sequential(interference))


def corun_model(model: str, target: str = "host", store: str | Path | None = None, max_regions: int = 3,
                protocol: CorunProtocol | None = None, interference=None, cores: tuple[int, ...] | None = None,
                batch_size: int = 1, params: dict[str, Any] | None = None, kernel_dir: str | Path | None = None,
                rounds: int = 3, show=progress) -> list[RegionResult]:
    """Find ``model``'s branches and measure them; see the module docstring."""
    from opscope.targets import load_target, tvm_target

    spec = load_target(target)
    if spec.kind != "cpu":
        raise OpscopeError(f"co-run measures on this machine's CPU cores; target {target!r} is a {spec.kind}")
    if max_regions < 1:
        raise OpscopeError(f"max_regions must be >= 1, got {max_regions}")
    protocol = protocol or CorunProtocol()
    show(f"importing {model} ...")
    mod, operators = fused_module(model, batch_size, params)
    regions = find_regions(mod)
    if not regions:
        raise OpscopeError(f"model {model!r} has no independent branches (no fork-join region in its graph)")
    regions = regions[:max_regions]
    tgt = tvm_target(spec)
    kdir = Path(kernel_dir) if kernel_dir else Path(tempfile.mkdtemp(prefix="opscope-corun-"))
    tasks_per_region = []
    for i, region in enumerate(regions):
        show(f"building region {i + 1}/{len(regions)}: {region.describe()}")
        tasks_per_region.append(region_tasks(mod, region, tgt, kdir, operators))
    n_workers = max(len(t) for t in tasks_per_region)
    show(f"starting {n_workers} measuring workers ...")
    results = []
    with WorkerPool(n_workers, cores, spin_count=protocol.spin_count) as pool:
        if len(pool.cores) < 2:
            raise OpscopeError("co-running needs at least two cores")
        for i, (region, tasks) in enumerate(zip(regions, tasks_per_region)):
            show(f"region {i + 1}/{len(regions)}")
            results.append(plan_region(region, tasks, pool, protocol, interference, f"{model}:region{i + 1}",
                                       rounds, show))
    if store is not None:
        from opscope.corun.table import save_corun

        save_corun(store, [r for res in results for r in res.records])
    return results


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.3f}"


def format_region(i: int, res: RegionResult) -> str:
    """A plain-text block: branches, curves, every arrangement predicted vs measured, the verdict."""
    lines = [f"region {i}: fork {res.region.fork} -> join {res.region.join} (x{res.region.count} in the model)"]
    for t, c in zip(res.tasks, res.curves):
        pts = "  ".join(f"{n}c {t_ * 1e3:.3f}" for n, t_ in c.points)
        lines.append(f"  branch {t.name}   alone ms: {pts}")
    lines.append(f"  {'arrangement':<18} {'predicted ms':>12} {'measured ms':>12} {'min ms':>9}  note")
    chosen = res.decision.chosen
    best = res.best
    for arr, pred in res.choice.predicted:
        recs = [r for r in res.records if r.arrangement == arr]
        xs = res.makespans(arr)
        failed = [r for r in recs if r.status != "ok"]
        if not recs:
            meas, mn, note = None, None, "not measured (more tasks than workers)"
        elif not xs:
            meas, mn, note = None, None, f"{failed[0].status}: {failed[0].error}"
        else:
            meas, mn = statistics.median(xs), min(xs)
            cv = statistics.stdev(xs) / statistics.mean(xs) if len(xs) > 1 else 0.0
            note = (f"noisy (cv {cv:.2f})" if cv > 0.2 else "") + (f" {len(failed)} failed" if failed else "")
        tags = [x for x, on in (("chosen", arr == chosen), ("measured best", best and arr == best[0])) if on]
        lines.append(f"  {arr.label:<18} {_ms(pred):>12} {_ms(meas):>12} {_ms(mn):>9}  "
                     f"{', '.join(tags + ([note.strip()] if note.strip() else []))}")
    seq = res.sequential_s
    cm = res.chosen_measured_s
    verdict = (f"  chosen {chosen.label}: predicted {_ms(res.decision.chosen_predicted_s)} ms, "
               f"measured {_ms(cm)} ms")
    if seq and cm:
        verdict += f"; sequential {_ms(seq)} ms ({seq / cm:.2f}x)"
    if best and cm:
        verdict += f"; measured best {best[0].label} {_ms(best[1])} ms (chosen/best {cm / best[1]:.2f})"
    lines.append(verdict)
    lines.append(f"  why: {res.decision.reason}")
    return "\n".join(lines)
