"""Schedule sampler from MetaSchedule's design space, plus TVM's default schedule as baseline.

The default schedule is the operator's PrimFunc as it comes (TVM's default lowering for llvm).
Sampled schedules: for draw ``i`` a ``TuneContext`` with ``rand_state = seed * 100003 + i`` and
``PostOrderApply(sch_rules="from-target", postprocs="from-target")`` generates the design spaces
with random decisions (tile sizes, compute location, unroll); draw ``i`` takes space
``i % len(spaces)``, the space generator's postprocessors are applied (parallelise, vectorise,
unroll, decompose reductions), and the schedule is kept if they all succeed and its trace is new.
The same operator, target and seed always give the same candidates in the same order.

``ReplaySampler`` is the cheap variant for ranking hundreds of candidates (``opscope tune``): one
``TuneContext`` per operator, its design spaces taken once, and each draw replays a space's trace
*without its decisions* on a schedule seeded with the draw, so every sampling instruction draws
anew; then the same postprocessors and the same acceptance (all postprocessors succeed, trace new).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from typing import Any

from opscope.collector.knobs import extract_knobs, loop_knobs
from opscope.collector.roles import Candidate, ScheduleSampler
from opscope.errors import OpscopeError
from opscope.workloads.operator import Operator


def _fast_stack(context: int = 1) -> list[inspect.FrameInfo]:
    """``inspect.stack`` without source lookups (which scan ``sys.modules`` for every frame)."""
    frame = sys._getframe(1)
    out = []
    while frame is not None:
        code = frame.f_code
        out.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name, None, None))
        frame = frame.f_back
    return out


def import_tensor_intrinsics() -> None:
    """Import ``tvm.s_tir.tensor_intrin`` (which ``TuneContext`` needs) quickly.

    That package parses a few hundred TVMScript functions at import, each calling
    ``inspect.stack()``, whose source lookups took minutes on a busy 2-core machine.  None of those
    functions is defined in a class, so the source context is not needed: the import runs with a
    stack walker that skips it.  The patch is undone straight after.
    """
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    original = inspect.stack
    inspect.stack = _fast_stack
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401
    finally:
        inspect.stack = original


def _plain(x: Any) -> Any:
    """A trace's JSON form with TVM scalars turned into Python numbers."""
    if isinstance(x, (list, tuple)) or type(x).__name__ in ("Array", "List"):
        return [_plain(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if hasattr(x, "value"):
        return x.value
    return str(x)


def trace_to_json(trace: Any) -> str:
    return json.dumps(_plain(trace.as_json()), separators=(",", ":"))


def _split_postproc(trace: list) -> tuple[list, int]:
    """(instructions, index where the postprocessors' part starts; len if none).

    Traces carry an ``EnterPostproc`` marker; older ones (before the marker was written) start
    their postprocessor part where RewriteParallelVectorizeUnroll does: a ``GetSBlock`` followed
    by ``Unannotate``.
    """
    insts = trace[0]
    for i, inst in enumerate(insts):
        if inst[0] == "EnterPostproc":
            return insts, i
    for i in range(len(insts) - 1):
        if insts[i][0] == "GetSBlock" and insts[i + 1][0] == "Unannotate":
            return insts, i
    return insts, len(insts)


def sampled_candidate(op: Operator, mod: Any, sch: Any) -> Candidate:
    """The candidate for a sampled schedule ``sch`` of ``op`` (whose unscheduled module is ``mod``)."""
    import tvm

    trace_json = trace_to_json(sch.trace)
    knobs = extract_knobs(sch.trace, mod, sch.mod.script())
    return Candidate(op.key, schedule_id(trace_json), "sampled", trace_json, tuple(sorted(knobs.items())),
                     tvm.ir.save_json(sch.mod))


def default_candidate(op: Operator, mod: Any) -> Candidate:
    """The operator under TVM's default lowering; its knobs are the loop knobs of the unscheduled function
    (no parallel or vectorized loop: ``parallel_extent`` 1, ``main_inner`` its innermost loop)."""
    import tvm

    knobs = loop_knobs(mod.script())
    return Candidate(op.key, "default", "default", "[]", tuple(sorted(knobs.items())), tvm.ir.save_json(mod))


def schedule_id(trace_json: str) -> str:
    """``s`` + hash of the trace without its ``EnterPostproc`` marker (ids stay those of traces
    stored before the marker was written)."""
    trace = json.loads(trace_json)
    if trace and trace[0] and any(inst[0] == "EnterPostproc" for inst in trace[0]):
        trace = [[inst for inst in trace[0] if inst[0] != "EnterPostproc"], trace[1]]
        trace_json = json.dumps(trace, separators=(",", ":"))
    return "s" + hashlib.sha256(trace_json.encode()).hexdigest()[:16]


def operator_module(op: Operator) -> Any:
    """The operator's PrimFunc as an IRModule with one function ``main``."""
    import tvm

    if op.prim_func is None:
        raise OpscopeError(f"operator {op.name!r} has no TIR PrimFunc (layer-table operators cannot be measured)")
    func = op.prim_func
    if isinstance(func, tvm.IRModule):
        func = func["main"] if "main" in [g.name_hint for g in func.get_global_vars()] else func.functions.values()[0]
    func = func.with_attr("global_symbol", "main")
    return tvm.IRModule({"main": func})


def _space_failure(op: Operator, exc: BaseException) -> str:
    """One line saying why MetaSchedule could not make a design space for ``op``."""
    lines = str(exc).splitlines() or [""]
    first = next((ln.strip() for ln in lines if "Error" in ln), lines[0].strip())
    first = first.removeprefix(f"{type(exc).__name__}: ")  # TVM's messages start with their own type
    return (f"{op.name}: MetaSchedule's schedule rules failed on this operator ({type(exc).__name__}: "
            f"{first[:200]}); only TVM's default schedule is measured")


class MetaScheduleSampler(ScheduleSampler):
    def __init__(self, target: Any, max_draws_per_trial: int = 4):
        self.target = target  # a tvm.target.Target
        self.max_draws_per_trial = max_draws_per_trial
        #: per operator key, why no sampled schedule could be drawn (the sweep says so)
        self.failures: dict[str, str] = {}

    def default_candidate(self, op: Operator) -> Candidate:
        return default_candidate(op, operator_module(op))

    def candidates(self, op: Operator, trials: int, seed: int) -> list[Candidate]:
        from tvm.s_tir import meta_schedule as ms

        import_tensor_intrinsics()
        mod = operator_module(op)
        out = [default_candidate(op, mod)]
        seen: set[str] = set()
        error: Exception | None = None
        for draw in range(max(trials, 0) * self.max_draws_per_trial):
            if len(out) > trials:
                break
            ctx = ms.TuneContext(
                mod=mod, target=self.target,
                space_generator=ms.space_generator.PostOrderApply(
                    sch_rules="from-target", postprocs="from-target", mutator_probs="from-target"),
                rand_state=seed * 100003 + draw, num_threads=1,
            )
            try:
                spaces = ctx.generate_design_space()
            except (RuntimeError, ValueError) as exc:  # a schedule rule that cannot apply (ScheduleError, TVMError)
                error = exc
                continue
            if not spaces:
                break
            sch = spaces[draw % len(spaces)]
            sch.enter_postproc()
            _accept(op, mod, sch, ctx.space_generator.postprocs, seen, out)
        if error is not None and len(out) == 1:  # every draw failed: only the default schedule is left
            self.failures[op.key] = _space_failure(op, error)
        return out


def _accept(op: Operator, mod: Any, sch: Any, postprocs: Any, seen: set[str], out: list[Candidate]) -> None:
    """Append ``sch`` to ``out`` when every postprocessor accepts it and its trace is new."""
    if not all(p.apply(sch) for p in postprocs):
        return
    cand = sampled_candidate(op, mod, sch)
    if cand.trace_json not in seen:
        seen.add(cand.trace_json)
        out.append(cand)


class ReplaySampler(ScheduleSampler):
    """One design-space generation per operator, decisions re-drawn per sample (module docstring)."""

    def __init__(self, target: Any, max_draws_per_trial: int = 4) -> None:
        self.target = target  # a tvm.target.Target
        self.max_draws_per_trial = max_draws_per_trial
        #: per operator key, why no sampled schedule could be drawn (the sweep says so)
        self.failures: dict[str, str] = {}

    def candidates(self, op: Operator, trials: int, seed: int) -> list[Candidate]:
        from tvm.s_tir import Schedule
        from tvm.s_tir import meta_schedule as ms
        from tvm.s_tir.schedule import ScheduleError, Trace

        import_tensor_intrinsics()
        mod = operator_module(op)
        out = [default_candidate(op, mod)]
        if trials <= 0:
            return out
        ctx = ms.TuneContext(
            mod=mod, target=self.target,
            space_generator=ms.space_generator.PostOrderApply(
                sch_rules="from-target", postprocs="from-target", mutator_probs="from-target"),
            rand_state=seed, num_threads=1,
        )
        try:
            spaces = ctx.generate_design_space()
        except (RuntimeError, ValueError) as exc:  # a schedule rule that cannot apply (ScheduleError, TVMError)
            self.failures[op.key] = _space_failure(op, exc)
            return out
        if not spaces:
            return out
        bare = [Trace(s.trace.insts, {}) for s in spaces]
        seen: set[str] = set()
        for draw in range(max(trials, 0) * self.max_draws_per_trial):
            if len(out) > trials:
                break
            sch = Schedule(mod, seed=(seed * 100003 + draw) % (2**31 - 1) + 1)
            try:
                bare[draw % len(bare)].apply_to_schedule(sch, remove_postproc=True)
            except (ScheduleError, RuntimeError, ValueError):
                continue  # a draw the space's own checks reject
            _accept(op, mod, sch, ctx.space_generator.postprocs, seen, out)
        return out


def replay(op: Operator, trace_json: str, target: Any) -> Any:
    """The scheduled IRModule a stored trace describes (``replay_schedule``'s module)."""
    return replay_schedule(op, trace_json, target).mod


def replay_schedule(op: Operator, trace_json: str, target: Any) -> Any:
    """The schedule a stored trace describes: its sampling part replayed (decisions included), then
    the target's postprocessors, as MetaSchedule replays its tuning records."""
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.schedule import Trace

    import_tensor_intrinsics()
    mod = operator_module(op)
    trace = json.loads(trace_json)
    insts, cut = _split_postproc(trace)
    head = [insts[:cut], [d for d in trace[1] if d[0] < cut]]
    sch = Schedule(mod)
    try:
        Trace.apply_json_to_schedule(head, sch)
        ctx = ms.TuneContext(mod=mod, target=target, space_generator=ms.space_generator.PostOrderApply(
            sch_rules="from-target", postprocs="from-target", mutator_probs="from-target"), num_threads=1)
        sch.enter_postproc()
        ok = all(p.apply(sch) for p in ctx.space_generator.postprocs)
    except Exception as exc:  # TVM raises its own error types for a trace that does not fit
        raise OpscopeError(f"operator {op.name!r}: the trace does not apply: {str(exc).splitlines()[0]}") from None
    if not ok:
        raise OpscopeError(f"operator {op.name!r}: a postprocessor rejects the replayed schedule")
    return sch
