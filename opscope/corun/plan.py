"""A model's independent branches: measure their curves, choose an arrangement, measure them all.

``corun_model(model, target="host")`` is what ``opscope corun`` runs:

1. the fused Relax module of the model (``opscope.workloads.load_model``); its fork-join regions;
2. per region, one task per branch (the branch's kernels compiled with a default parallel
   schedule), each task's latency curve alone on 1..N cores;
3. the predicted makespan of every arrangement (sequential, each disjoint split, shared), from the
   curves and, when given, the interference model's co-run latencies; the smallest is chosen;
4. every arrangement measured for real (``measure_corun``), so the chosen one can be compared with
   the sequential one and with the measured best; records go to the store when one is given.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opscope.corun.branches import Region, find_regions
from opscope.corun.kernels import build_kernel
from opscope.corun.measure import CorunProtocol, CorunRecord, MemberResult, Task, measure_corun, measure_curve
from opscope.corun.partition import Arrangement, Choice, LatencyCurve, all_arrangements, choose_arrangement
from opscope.corun.worker import WorkerPool, progress
from opscope.errors import OpscopeError


@dataclass(frozen=True)
class RegionResult:
    """One region: its tasks, curves, the choice made and the measured arrangements."""

    region: Region
    tasks: tuple[Task, ...]
    curves: tuple[LatencyCurve, ...]
    choice: Choice
    records: tuple[CorunRecord, ...]

    def measured(self, arrangement: Arrangement) -> float | None:
        for r in self.records:
            if r.arrangement == arrangement and r.status == "ok":
                return r.makespan_median_s
        return None

    @property
    def sequential_s(self) -> float | None:
        return self.measured(next(a for a, _ in self.choice.predicted if a.kind == "sequential"))

    @property
    def chosen_measured_s(self) -> float | None:
        return self.measured(self.choice.chosen)

    @property
    def best(self) -> tuple[Arrangement, float] | None:
        ok = [(r.arrangement, r.makespan_median_s) for r in self.records if r.status == "ok"]
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


def _operator_json(func, operators) -> str | None:
    """The Operator whose PrimFunc is ``func`` (structural equality), as JSON, if there is one."""
    import tvm

    for op in operators:
        if op.prim_func is not None and tvm.ir.structural_equal(op.prim_func, func):
            return json.dumps(op.to_dict(), sort_keys=True, default=str)
    return None


def region_tasks(mod, region: Region, target, kernel_dir: str | Path, operators=()) -> tuple[Task, ...]:
    """One task per branch, its kernels compiled (cached by content under ``kernel_dir``)."""
    tasks = []
    for i, br in enumerate(region.branches):
        kernels = []
        for fname in br.funcs:
            func = mod[fname]
            kernels.append(build_kernel(func, fname, target, kernel_dir, operator_json=_operator_json(func, operators)))
        tasks.append(Task(f"b{i}:{'>'.join(br.funcs)}", tuple(kernels)))
    return tuple(tasks)


def interference_predictor(model):
    """A ``predict_corun(arrangement, alone)`` for ``choose_arrangement`` from a fitted model."""
    import pandas as pd

    from opscope.corun.table import member_rows

    def predict(tasks: tuple[Task, ...]):
        def fn(arr: Arrangement, alone: tuple[float, ...]) -> tuple[float, ...]:
            members = tuple(MemberResult(t.name, t.keys, tuple(k.name for k in t.kernels), s.cores, s.threads,
                                         s.pinned, t.flops, t.bytes, (a,), ()) for t, s, a in zip(tasks, arr.slots, alone))
            frame = pd.DataFrame(member_rows(members, arr, require_together=False))
            return tuple(float(x) for x in model.predict(frame))
        return fn
    return predict


def plan_region(region: Region, tasks: tuple[Task, ...], pool: WorkerPool, protocol: CorunProtocol,
                interference=None, label: str = "", show=progress) -> RegionResult:
    """Curves, choice, and every arrangement measured, for one region's tasks."""
    cores = pool.cores
    curves = []
    for t in tasks:
        show(f"  curve of {t.name} on 1..{len(cores)} cores")
        curves.append(measure_curve(t, pool, cores, protocol)[0])
    predict = interference_predictor(interference)(tasks) if interference is not None else None
    choice = choose_arrangement(curves, cores, predict_corun=predict)
    records = []
    for arr in all_arrangements(len(tasks), cores):
        if arr.kind != "sequential" and len(tasks) > pool.n:
            continue
        show(f"  measuring {arr.label}")
        records.append(measure_corun(tasks, arr, pool, protocol, label=label))
    return RegionResult(region, tasks, tuple(curves), choice, tuple(records))


def corun_model(model: str, target: str = "host", store: str | Path | None = None, max_regions: int = 3,
                protocol: CorunProtocol | None = None, interference=None, cores: tuple[int, ...] | None = None,
                batch_size: int = 1, params: dict[str, Any] | None = None, kernel_dir: str | Path | None = None,
                show=progress) -> list[RegionResult]:
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
    with WorkerPool(n_workers, cores) as pool:
        if len(pool.cores) < 2:
            raise OpscopeError("co-running needs at least two cores")
        for i, (region, tasks) in enumerate(zip(regions, tasks_per_region)):
            show(f"region {i + 1}/{len(regions)}")
            results.append(plan_region(region, tasks, pool, protocol, interference, f"{model}:region{i + 1}", show))
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
    chosen = res.choice.chosen
    best = res.best
    for arr, pred in res.choice.predicted:
        rec = next((r for r in res.records if r.arrangement == arr), None)
        if rec is None:
            meas, mn, note = None, None, "not measured (more tasks than workers)"
        elif rec.status != "ok":
            meas, mn, note = None, None, f"{rec.status}: {rec.error}"
        else:
            meas, mn = rec.makespan_median_s, min(rec.makespan_s)
            note = "noisy" if rec.noisy else ""
        tags = [x for x, on in (("chosen", arr == chosen), ("measured best", best and arr == best[0])) if on]
        lines.append(f"  {arr.label:<18} {_ms(pred):>12} {_ms(meas):>12} {_ms(mn):>9}  {', '.join(tags + ([note] if note else []))}")
    seq = res.sequential_s
    cm = res.chosen_measured_s
    verdict = f"  chosen {chosen.label}: predicted {_ms(res.choice.chosen_makespan_s)} ms, measured {_ms(cm)} ms"
    if seq and cm:
        verdict += f"; sequential {_ms(seq)} ms ({seq / cm:.2f}x)"
    if best and cm:
        verdict += f"; measured best {best[0].label} {_ms(best[1])} ms (chosen/best {cm / best[1]:.2f})"
    lines.append(verdict)
    return "\n".join(lines)
