"""A cheap schedule sampler for predictor-guided search, which ranks hundreds of candidates.

The collector's ``MetaScheduleSampler`` builds a new ``TuneContext`` per draw; on this machine one
context took minutes to make under load while generating its design space took milliseconds.  This
sampler makes one context per operator, takes its design spaces once, and for each draw replays a
space's trace *without its decisions* on a schedule seeded with the draw, so every sampling
instruction (tile sizes, compute location, unroll) draws anew; then the space generator's
postprocessors run, as MetaSchedule's own search does when it samples its initial population.
Candidates and knobs are the collector's (``Candidate``, ``extract_knobs``), so a candidate from
here builds, runs and is stored exactly like one from the collector.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from opscope.collector.ms_sampler import operator_module, sampled_candidate
from opscope.collector.roles import Candidate, ScheduleSampler
from opscope.workloads.operator import Operator


def load_tensor_intrinsics() -> None:
    """Import ``tvm.s_tir.tensor_intrin`` (which the first ``TuneContext`` does) at a third of its cost.

    Each of its hundreds of TVMScript functions calls ``inspect.stack()``, which reads the source of
    every frame on the stack; the parser only looks at the third frame's line.  Measured here under
    load: 223 s plain, 70 s with the stack trimmed to source lines for the three innermost frames.
    ``inspect.stack`` is restored afterwards.
    """
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    original = inspect.stack

    def stack(context: int = 1) -> list[inspect.FrameInfo]:
        frame, out, depth = sys._getframe(1), [], 0
        while frame is not None:
            info = inspect.getframeinfo(frame, context if depth < 3 else 0)
            out.append(inspect.FrameInfo(frame, *info, positions=info.positions))
            frame, depth = frame.f_back, depth + 1
        return out

    inspect.stack = stack
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401
    finally:
        inspect.stack = original


class ReplaySampler(ScheduleSampler):
    def __init__(self, target: Any, max_draws_per_trial: int = 4) -> None:
        self.target = target  # a tvm.target.Target
        self.max_draws_per_trial = max_draws_per_trial

    def candidates(self, op: Operator, trials: int, seed: int) -> list[Candidate]:
        import tvm
        from tvm.s_tir import Schedule
        from tvm.s_tir import meta_schedule as ms
        from tvm.s_tir.schedule import ScheduleError, Trace

        load_tensor_intrinsics()
        mod = operator_module(op)
        out = [Candidate(op.key, "default", "default", "[]", (), tvm.ir.save_json(mod))]
        ctx = ms.TuneContext(
            mod=mod, target=self.target,
            space_generator=ms.space_generator.PostOrderApply(
                sch_rules="from-target", postprocs="from-target", mutator_probs="from-target"),
            rand_state=seed, num_threads=1,
        )
        spaces = ctx.generate_design_space()
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
            if not all(p.apply(sch) for p in ctx.space_generator.postprocs):
                continue
            cand = sampled_candidate(op, mod, sch)
            if cand.trace_json in seen:
                continue
            seen.add(cand.trace_json)
            out.append(cand)
        return out
