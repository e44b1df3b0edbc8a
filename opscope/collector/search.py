"""Evolutionary schedule search: MetaSchedule's ``EvolutionarySearch`` driving opscope's builder,
runner and store.

For one operator and one thread count, a ``TuneContext`` holds the operator's design spaces
(``PostOrderApply`` with the target's rules, postprocessors and mutators) and MetaSchedule's
evolutionary strategy; each round the strategy proposes ``per_round`` schedules (mutations of the
best measured ones, ranked by the cost model, with an epsilon of random ones), opscope builds them
with the collector's builder, measures them with its runner under the collection's protocol, and
writes each as a store row (``schedule_kind = "searched"``, origin ``{"search": "evolutionary",
"round": r, "cost_model": ...}``) before the strategy and the cost model hear the results.  So a
crash, timeout or wrong result is a record as in ``collect``, and every tried schedule is data.

Resume: what the store already holds for this operator, target, machine, protocol and thread count
seeds the search (sampled and searched schedules, replayed from their traces, go into the
strategy's database and train the cost model), and searched rows already there count against
``trials``: the same command after a kill (even SIGKILL) goes on where the store stops.

Correctness: each schedule that becomes the best so far is run a second time against the default
schedule's output on random inputs (the timing core's check) before it is stored; one that
differs is stored as ``wrong_result`` and never counts as the best.

Cost models: ``xgb`` (MetaSchedule's ``XGBModel`` on its per-store features, trained online from
the first round), ``random``, the directory of a saved opscope predictor (``PredictorCostModel``:
the predictor's latency for each candidate, from the candidate's knobs, used as trained), or
``DIR+xgb``: the predictor ranks until an online ``XGBModel`` has ``online_after`` (32) successful
measurements of this operator, then that model ranks.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opscope.collector.roles import Built, Candidate, RunResult
from opscope.errors import OpscopeError
from opscope.store.record import LatencyStats
from opscope.workloads.operator import Operator

SEARCHES = ("evolutionary",)
BUILTIN_COST_MODELS = ("xgb", "random")


@dataclass(frozen=True)
class SearchConfig:
    """``trials`` searched schedules measured per operator and thread count, ``per_round`` per round;
    ``population`` is the evolutionary population; ``cost_model`` one of ``xgb``, ``random`` or a
    saved predictor's directory."""

    trials: int = 64
    per_round: int = 16
    population: int = 256
    cost_model: str = "xgb"
    seed: int = 0
    eps_greedy: float = 0.05
    #: with ``DIR+xgb``: successful measurements after which the online model ranks
    online_after: int = 32

    def __post_init__(self) -> None:
        for name, low in (("trials", 1), ("per_round", 1), ("population", 8), ("online_after", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise OpscopeError(f"search {name} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= self.eps_greedy <= 1.0:
            raise OpscopeError(f"search eps_greedy must be in [0, 1], got {self.eps_greedy!r}")
        if self.cost_model not in BUILTIN_COST_MODELS and not os.path.isdir(_predictor_spec(self.cost_model)[0]):
            raise OpscopeError(f"--cost-model {self.cost_model!r}: expected xgb, random, the directory of a "
                               "saved predictor (opscope train --out DIR), or DIR+xgb")

    @property
    def cost_model_name(self) -> str:
        if self.cost_model in BUILTIN_COST_MODELS:
            return self.cost_model
        return "predictor+xgb" if _predictor_spec(self.cost_model)[1] else "predictor"


@dataclass
class SearchOutcome:
    """What one search did: trials measured now, before (resumed), and the best found."""

    op_name: str
    threads: int
    measured: int = 0
    resumed: int = 0
    rounds: int = 0
    best_s: float = math.nan
    best_schedule_id: str = ""
    #: best so far after each measured trial (this run only), for search-efficiency figures
    curve: list[float] = field(default_factory=list)
    stopped: bool = False


def _median(lat: Sequence[float]) -> float:
    return LatencyStats.of(lat).median_s


class PredictorCostModel:
    """An opscope predictor as MetaSchedule's cost model: score = 1 / predicted latency."""

    def __init__(self, predictor: Any, op: Operator, target: str, threads: int, mod: Any,
                 online: Any = None, online_after: int = 32):
        self.predictor, self.op, self.target, self.threads, self.mod = predictor, op, target, threads, mod
        #: with an online model (MetaSchedule's XGBModel), it learns from every result and ranks in
        #: the predictor's place once it has ``online_after`` successful measurements
        self.online, self.online_after, self.seen = online, online_after, 0

    def make(self) -> Any:
        import numpy as np
        from tvm.ir.utils import derived_object
        from tvm.s_tir import meta_schedule as ms

        from opscope.collector.knobs import extract_knobs
        from opscope.collector.ms_sampler import schedule_id, trace_to_json
        from opscope.predictor.search import candidates_frame

        outer = self

        @derived_object
        class _Model(ms.cost_model.PyCostModel):
            def load(self, path: str) -> None:
                pass

            def save(self, path: str) -> None:
                pass

            def update(self, context, candidates, results) -> None:
                if outer.online is not None:  # the trained predictor itself is used as it is
                    outer.online.update(context, candidates, results)
                    outer.seen += sum(1 for r in results if r.run_secs is not None)

            def predict(self, context, candidates) -> np.ndarray:
                if not len(candidates):
                    return np.zeros(0)
                if outer.online is not None and outer.seen >= outer.online_after:
                    return np.asarray(outer.online.predict(context, candidates), dtype=float)
                cands = []
                for c in candidates:  # knobs and trace only: the module is not needed to predict
                    trace_json = trace_to_json(c.sch.trace)
                    knobs = extract_knobs(c.sch.trace, outer.mod, c.sch.mod.script())
                    cands.append(Candidate(outer.op.key, schedule_id(trace_json), "searched", trace_json,
                                           tuple(sorted(knobs.items())), ""))
                pred = outer.predictor.predict(candidates_frame(outer.op, cands, outer.target, outer.threads))
                pred = np.asarray(pred, dtype=float)
                return np.where(np.isfinite(pred) & (pred > 0), 1.0 / np.maximum(pred, 1e-12), 0.0)

        return _Model()


def _cost_model(config: SearchConfig, op: Operator, target_name: str, threads: int, mod: Any) -> Any:
    from tvm.s_tir import meta_schedule as ms

    if config.cost_model == "random":
        return ms.cost_model.RandomModel(seed=config.seed)
    if config.cost_model == "xgb":
        return ms.cost_model.XGBModel(num_warmup_samples=min(16, config.per_round),
                                      num_tuning_cores=os.cpu_count() or 1, verbose_eval=10 ** 9)
    from opscope.predictor.models.persist import load_predictor

    path, online = _predictor_spec(config.cost_model)
    xgb = (ms.cost_model.XGBModel(num_warmup_samples=0, num_tuning_cores=os.cpu_count() or 1, verbose_eval=10 ** 9)
           if online else None)
    return PredictorCostModel(load_predictor(path), op, target_name, threads, mod, online=xgb,
                              online_after=config.online_after).make()


def _predictor_spec(cost_model: str) -> tuple[str, bool]:
    """(predictor directory, whether an online XGBoost model takes over): ``DIR`` or ``DIR+xgb``."""
    if cost_model.endswith("+xgb"):
        return cost_model[: -len("+xgb")], True
    return cost_model, False


def _runner_result(res: RunResult) -> Any:
    from tvm.s_tir import meta_schedule as ms

    if res.status == "ok" and res.latencies_s:
        return ms.runner.RunnerResult(run_secs=[float(x) for x in res.latencies_s], error_msg=None)
    return ms.runner.RunnerResult(run_secs=None, error_msg=f"{res.status}: {res.error}"[:300] or res.status)


def search_operator(
    op: Operator, threads: int, config: SearchConfig, *, tvm_target: Any, target_name: str, builder: Any,
    history: list[dict], measure: Callable[[list[Built], str], list[RunResult]],
    store: Callable[[Candidate, RunResult, dict], None], reference: str = "",
    deadline: float | None = None, progress: bool = True,
) -> SearchOutcome:
    """Search ``op``'s schedules at ``threads`` (see the module docstring).

    ``history``: the store's rows for this operator at these threads (``Store.history``);
    ``measure(built, reference)``: run the built candidates (checked against ``reference`` when it is
    given) and return their results; ``store(candidate, result, origin)``: write one record.
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from opscope.collector.ms_sampler import (
        import_tensor_intrinsics,
        operator_module,
        replay_schedule,
        sampled_candidate,
    )

    import_tensor_intrinsics()
    mod = operator_module(op)
    out = SearchOutcome(op.name, threads)
    searched = [h for h in history if h["schedule_kind"] == "searched"
                and h["origin"].get("search") == "evolutionary"]
    out.resumed = len(searched)
    remaining = config.trials - len(searched)
    ok_prior = [h for h in history if h["status"] == "ok" and h["schedule_kind"] in ("sampled", "searched")]
    known = {h["schedule_id"]: h for h in history}
    for h in ok_prior:
        lat = _median(h["raw_latencies_s"])
        if lat < (out.best_s if out.best_s == out.best_s else math.inf):
            out.best_s, out.best_schedule_id = lat, h["schedule_id"]
    if remaining <= 0:
        return out
    first_round = 1 + max((int(h["origin"].get("round", 0)) for h in searched), default=0)
    func = mod["main"]
    args_info = ArgInfo.from_prim_func(func)
    ctx = ms.TuneContext(
        mod=mod, target=tvm_target,
        space_generator=ms.space_generator.PostOrderApply(
            sch_rules="from-target", postprocs="from-target", mutator_probs="from-target"),
        search_strategy=ms.search_strategy.EvolutionarySearch(
            population_size=config.population, init_min_unmeasured=max(8, config.population // 4),
            eps_greedy=config.eps_greedy),
        task_name=op.name, rand_state=config.seed * 1000003 + threads * 7919 + first_round,
        num_threads=os.cpu_count() or 1,
    )
    db = ms.database.MemoryDatabase()
    workload = db.commit_workload(mod)
    cost_model = _cost_model(config, op, target_name, threads, mod)
    prior_cands, prior_results = [], []
    for h in ok_prior:
        try:
            sch = replay_schedule(op, h["trace_json"], tvm_target)
        except OpscopeError:
            continue  # a trace stored by another TVM version may not apply: it just does not seed
        db.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, [float(x) for x in h["raw_latencies_s"]],
                                                         tvm_target, args_info))
        prior_cands.append(ms.MeasureCandidate(sch, args_info))
        prior_results.append(ms.runner.RunnerResult(run_secs=[float(x) for x in h["raw_latencies_s"]], error_msg=None))
    if prior_cands and config.cost_model == "xgb":
        cost_model.update(ctx, prior_cands, prior_results)
    # Proposals the store already holds are reused, not measured, and do not count: the strategy gets
    # a larger budget and the loop stops itself once ``remaining`` new schedules are stored.
    ctx.pre_tuning(max_trials=remaining * 4 + config.per_round, num_trials_per_iter=min(config.per_round, remaining),
                   design_spaces=ctx.generate_design_space(), database=db, cost_model=cost_model)
    best = out.best_s if out.best_s == out.best_s else math.inf
    rnd = first_round
    try:
        while out.measured < remaining:
            if deadline is not None and time.monotonic() >= deadline:
                out.stopped = True
                break
            t0 = time.monotonic()
            proposed = ctx.generate_measure_candidates()
            if proposed is None or not len(proposed):
                break
            cands = [replace(sampled_candidate(op, mod, m.sch), schedule_kind="searched") for m in proposed]
            results: list[RunResult | None] = [None] * len(cands)
            fresh = []
            for i, c in enumerate(cands):
                prev = known.get(c.schedule_id)
                if prev is not None:  # measured before (a sampled schedule, or an earlier round): reuse it
                    results[i] = RunResult(prev["status"], tuple(prev["raw_latencies_s"]), threads=threads)
                elif out.measured + len(fresh) < remaining:
                    fresh.append(i)
                else:  # past the trial budget: told to the strategy as not measured
                    results[i] = RunResult("run_error", error="not measured: the trial budget is spent",
                                           threads=threads)
            t1 = time.monotonic()
            built = builder.build([cands[i] for i in fresh]) if fresh else []
            t2 = time.monotonic()
            # one measurement per call, stored before the next starts: a kill loses at most the one in flight
            for i, b in zip(fresh, built):
                res = measure([b], "")[0] if b.ok else RunResult("build_error", error=b.error, threads=threads)
                if res.status == "ok" and _median(res.latencies_s) < best and reference:
                    res = measure([b], reference)[0]  # a new best is checked against the default first
                if res.status == "ok" and _median(res.latencies_s) < best:
                    best = _median(res.latencies_s)
                    out.best_s, out.best_schedule_id = best, cands[i].schedule_id
                results[i] = res
                store(cands[i], res, {"search": "evolutionary", "round": rnd, "cost_model": config.cost_model_name})
                known[cands[i].schedule_id] = {"status": res.status, "raw_latencies_s": list(res.latencies_s)}
                out.measured += 1
                out.curve.append(best)
            builder.discard(built)
            rr = [_runner_result(r) for r in results]
            for m, r in zip(proposed, results):
                if r.status == "ok":
                    db.commit_tuning_record(ms.database.TuningRecord(m.sch.trace, workload,
                                                                     [float(x) for x in r.latencies_s],
                                                                     tvm_target, args_info))
            ctx.notify_runner_results(proposed, rr)
            cost_model.update(ctx, proposed, rr)
            out.rounds += 1
            if progress:
                print(f"[search {op.name[:40]} t={threads}] round {rnd}: {len(fresh)} measured "
                      f"({len(cands) - len(fresh)} known), {out.measured + out.resumed}/{config.trials}; best "
                      f"{best * 1e6:.1f} us; propose {t1 - t0:.1f}s build {t2 - t1:.1f}s measure "
                      f"{time.monotonic() - t2:.1f}s", file=sys.stderr, flush=True)
            rnd += 1
    finally:
        ctx.post_tuning()
    return out
