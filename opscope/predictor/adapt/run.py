"""``adapt`` on a live machine: probe, candidates, choose, measure, fit, save.

``adapt_machine`` is what ``opscope adapt`` runs:

1. the machine's spec: the nominal ``target`` spec and its ``<target>-measured`` twin, read when
   ``opscope probe`` wrote one, else probed now (this machine's CPU only; the spec is written to the
   user spec directory as ``opscope probe`` does).  A probe that cannot run (a target measured
   elsewhere, a spec without cache levels to size the working sets, a probe error) falls back to the
   nominal spec and says so in the result and in the saved predictor's metadata;
2. candidates: every operator x (default + ``trials`` sampled schedules) x thread count, as store-format
   rows without a latency (``candidate_frame``);
3. ``select_measurements`` picks ``budget`` of them (all of them, said so, when there are fewer);
4. the collector measures the picks (``collect`` with a sampler that returns just the picked
   schedules; local, RPC or any other roles the target's registry gives), into ``store``;
5. ``AdaptedPredictor`` is fitted on the measured rows and saved with ``save_adapted``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from opscope.errors import OpscopeError, PredictorError
from opscope.predictor.adapt.correction import AdaptedPredictor, Selection, save_adapted, select_measurements
from opscope.predictor.frames import operator_frame, read_frame
from opscope.predictor.models.persist import load_predictor
from opscope.targets.spec import TargetSpec
from opscope.workloads.operator import Operator


@dataclass(frozen=True)
class MachineSpecs:
    """The new machine's nominal spec, its measured twin (None when not measured) and where it came from."""

    nominal: TargetSpec
    measured: TargetSpec | None
    source: str  # "read <name>-measured" | "probed now" | "nominal: <why>"

    def specs(self) -> dict[str, TargetSpec]:
        out = {self.nominal.name: self.nominal}
        if self.measured is not None:
            out[f"{self.nominal.name}-measured"] = self.measured
        return out


@dataclass(frozen=True)
class AdaptResult:
    out: Path
    machine: MachineSpecs
    selection: Selection
    candidates: int
    measured: int
    correction: str
    seconds: dict[str, float]
    #: (workload key, schedule id, threads) of each chosen measurement, in the order chosen
    chosen: tuple[tuple[str, str, int], ...] = ()


def machine_specs(target: str, probe: bool = True, gemm_n: int = 512,
                  run_probe: Callable[..., Any] | None = None, say: Callable[[str], None] | None = None
                  ) -> MachineSpecs:
    """The specs ``adapt`` uses for ``target`` (see the module docstring)."""
    from opscope.collector.registry import roles_module
    from opscope.targets import load_target, save_target, user_spec_dir

    nominal = load_target(target)
    try:
        return MachineSpecs(nominal, load_target(f"{nominal.name}-measured"), f"read {nominal.name}-measured")
    except OpscopeError:
        pass
    if not probe:
        return MachineSpecs(nominal, None, "nominal: probing was turned off")
    if nominal.kind != "cpu" or roles_module(nominal) is not None:
        return MachineSpecs(nominal, None, f"nominal: {nominal.name} is not this machine's CPU, which is all "
                                           "the probe measures here (probe it there and copy its -measured spec)")
    if not any(lv.size_bytes for lv in nominal.memory[:-1]):
        return MachineSpecs(nominal, None, f"nominal: {nominal.name} has no cache level with a size to probe")
    from opscope.collector import probe as probe_mod

    try:
        result = (run_probe or probe_mod.run_probe)(nominal, gemm_n, say)
        measured = replace(probe_mod.measured_spec(nominal, result), name=f"{nominal.name}-measured")
    except (OpscopeError, RuntimeError, OSError, ValueError, KeyError, ZeroDivisionError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return MachineSpecs(nominal, None, f"nominal: the probe failed ({first})")
    save_target(measured, user_spec_dir() / f"{measured.name}.toml")
    return MachineSpecs(nominal, measured, "probed now")


def candidate_frame(ops: Sequence[Operator], candidates: dict[str, list[Any]], threads: Sequence[int],
                    target: str) -> pd.DataFrame:
    """Store-format rows (no latency) for every operator x candidate schedule x thread count."""
    rows = []
    for op in ops:
        for t in threads:
            base = operator_frame([op], target, int(t)).iloc[0].to_dict()
            for cand in candidates[op.key]:
                knobs = dict(cand.knobs)
                row = {**base, "schedule_id": cand.schedule_id, "schedule_kind": cand.schedule_kind,
                       "trace_json": cand.trace_json, "knobs_json": json.dumps(knobs, sort_keys=True, default=str)}
                row.update({f"knob_{k}": v for k, v in knobs.items()})
                rows.append(row)
    if not rows:
        raise OpscopeError("adapt: no candidate measurements (no operators, schedules or thread counts)")
    return pd.DataFrame(rows)


def _chosen_sampler(picked: dict[str, list[Any]]):
    from opscope.collector.roles import ScheduleSampler

    class Chosen(ScheduleSampler):
        """The schedules chosen to measure, per operator (collect measures exactly these)."""

        def candidates(self, op: Operator, trials: int, seed: int) -> list[Any]:
            return list(picked.get(op.key, []))

    return Chosen()


def adapt_machine(predictor: str | Path, ops: Sequence[Operator], out: str | Path, budget: int,
                  store: str | Path, target: str = "host", trials: int = 8, threads: Sequence[int] = (1, 2),
                  seed: int = 0, probe: bool = True, gemm_n: int = 512, correction: str = "blend",
                  label: str = "latency_min_s", protocol: Any = None, timeout_s: float = 10.0,
                  roles: Any = None, run_probe: Callable[..., Any] | None = None,
                  say: Callable[[str], None] | None = None) -> AdaptResult:
    """Adapt the saved predictor ``predictor`` to the machine ``target`` (see the module docstring)."""
    from opscope.collector import collect
    from opscope.collector.machine import fingerprint, machine_id
    from opscope.collector.registry import make_roles
    from opscope.collector.roles import Roles

    say = say or (lambda msg: None)
    if budget < 1:
        raise OpscopeError(f"adapt: --budget must be at least 1, got {budget}")
    if trials < 0:
        raise OpscopeError(f"adapt: --trials must be >= 0, got {trials}")
    out = Path(out)
    if out.exists() and not (out / "metadata.json").is_file() and any(out.iterdir()):
        raise OpscopeError(f"adapt: --out {out} is a folder with other files; give a new or a predictor folder")
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    machine = machine_specs(target, probe, gemm_n, run_probe, say)
    specs = machine.specs()
    seconds["probe"] = time.perf_counter() - t0
    say(f"machine spec: {machine.source}")
    base = load_predictor(predictor, specs=specs)  # a schema from other feature code is refused here
    from opscope.predictor.models.persist import read_metadata

    base.base_training_ = read_metadata(predictor).get("training")

    own = roles is None
    roles = roles or make_roles(machine.nominal)
    try:
        t1 = time.perf_counter()
        cands: dict[str, list[Any]] = {}
        for op in ops:
            if trials == 0 and hasattr(roles.sampler, "default_candidate"):
                cands[op.key] = [roles.sampler.default_candidate(op)]  # no schedule sampling needed
            else:
                cands[op.key] = roles.sampler.candidates(op, trials, seed)
        pool = candidate_frame(ops, cands, threads, machine.nominal.name)
        selection = select_measurements(base, pool, budget, specs, seed)
        if selection.note:
            say(selection.note)
        seconds["choose"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        picked = pool.iloc[list(selection.indices)]
        by_id = {(c.op_key, c.schedule_id): c for cs in cands.values() for c in cs}
        # one collection per set of thread counts, so that each chosen schedule is built once
        thread_sets: dict[tuple[str, str], set[int]] = {}
        for key, sid, t in picked[["workload_key", "schedule_id", "threads"]].itertuples(index=False):
            thread_sets.setdefault((key, sid), set()).add(int(t))
        groups: dict[tuple[int, ...], dict[str, list[Any]]] = {}
        for (key, sid), ts in thread_sets.items():
            groups.setdefault(tuple(sorted(ts)), {}).setdefault(key, []).append(by_id[(key, sid)])
        for ts, chosen in groups.items():
            run_ops = [op for op in ops if op.key in chosen]
            collect(run_ops, target=target, trials=max(len(v) for v in chosen.values()), threads=ts, store=store,
                    seed=seed, timeout_s=timeout_s, protocol=protocol, progress=False,
                    roles=Roles(_chosen_sampler(chosen), roles.builder, roles.runner, roles.tvm_target))
        seconds["measure"] = time.perf_counter() - t2
    finally:
        if own:
            roles.builder.close()
            roles.runner.close()
    t3 = time.perf_counter()
    here = machine_id(fingerprint())
    frame = read_frame(store, label=label)
    wanted = set(zip(picked["workload_key"], picked["schedule_id"], picked["threads"].astype(int)))
    keep = [(k, s, int(t)) in wanted and m == here
            for k, s, t, m in zip(frame["workload_key"], frame["schedule_id"], frame["threads"], frame["machine_id"])]
    rows = frame[keep].reset_index(drop=True)
    if rows.empty:
        raise PredictorError(f"adapt: none of the {len(picked)} chosen measurements succeeded (see {store})")
    pred = AdaptedPredictor(base, correction=correction, specs=specs, seed=seed).fit(rows, rows[label].to_numpy())
    seconds["fit"] = time.perf_counter() - t3
    seconds["total"] = time.perf_counter() - t0
    adaptation = {
        "target": machine.nominal.name, "machine_id": here, "spec_source": machine.source,
        "probe_fell_back": machine.measured is None, "budget": budget, "candidates": len(pool),
        "chosen": len(selection.indices), "measured_ok": len(rows), "selection_note": selection.note,
        "correction": pred.chosen_, "cv_median_ape": getattr(pred, "cv_errors_", None), "seconds": seconds,
        "base_predictor": str(predictor), "trials": trials, "threads": [int(t) for t in threads],
    }
    save_adapted(pred, out, training=rows, label=label, adaptation=adaptation)
    from opscope.targets import save_target

    save_target(machine.measured or machine.nominal, out / "machine.toml")
    chosen = tuple((str(k), str(s), int(t)) for k, s, t in
                   picked[["workload_key", "schedule_id", "threads"]].itertuples(index=False))
    return AdaptResult(out, machine, selection, len(pool), len(rows), pred.chosen_, seconds, chosen)
