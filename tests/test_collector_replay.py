"""A stored trace replays to exactly the module that was built and measured."""

from __future__ import annotations

import pytest

from opscope.collector.ms_sampler import MetaScheduleSampler, replay
from opscope.collector.te_ops import add_operator, dense_operator
from opscope.errors import OpscopeError
from opscope.targets import detect_host, tvm_target


def test_sampled_traces_replay_to_the_built_module_and_are_deterministic():
    import tvm

    op = dense_operator(64, 64, 64)
    target = tvm_target(detect_host())
    sampler = MetaScheduleSampler(target)
    cands = sampler.candidates(op, 3, seed=0)
    assert [c.schedule_kind for c in cands] == ["default", "sampled", "sampled", "sampled"]
    assert len({c.schedule_id for c in cands}) == 4
    for c in cands[1:]:
        tvm.ir.assert_structural_equal(replay(op, c.trace_json, target), tvm.ir.load_json(c.module_json))
    again = sampler.candidates(op, 3, seed=0)
    assert [c.schedule_id for c in again] == [c.schedule_id for c in cands]
    other = sampler.candidates(op, 3, seed=1)
    assert [c.schedule_id for c in other][1:] != [c.schedule_id for c in cands][1:]


def test_a_trace_of_another_operator_does_not_apply():
    op = dense_operator(64, 64, 64)
    target = tvm_target(detect_host())
    trace = MetaScheduleSampler(target).candidates(op, 1, seed=0)[1].trace_json
    with pytest.raises(OpscopeError, match="does not apply"):
        replay(add_operator(64), trace, target)


def test_schedule_ids_ignore_the_postproc_marker():
    from opscope.collector.ms_sampler import schedule_id

    with_marker = '[[["GetSBlock",[],["C","main"],["b0"]],["EnterPostproc",[],[],[]],["X",[],[],[]]],[]]'
    without = '[[["GetSBlock",[],["C","main"],["b0"]],["X",[],[],[]]],[]]'
    assert schedule_id(with_marker) == schedule_id(without)
    assert schedule_id(without) != schedule_id('[[["GetSBlock",[],["D","main"],["b0"]]],[]]')


@pytest.mark.parametrize("kind", ["metaschedule", "replay"])
def test_a_design_space_that_cannot_be_made_leaves_the_default_schedule_and_says_why(monkeypatch, kind):
    from tvm.s_tir import meta_schedule as ms

    from opscope.collector.ms_sampler import ReplaySampler

    class FailingContext:  # as MetaSchedule's rules fail on a conv2d whose ReLU6 epilogue tests isnan
        def __init__(self, **kwargs):
            self.space_generator = kwargs.get("space_generator")

        def generate_design_space(self):
            raise RuntimeError("ScheduleError: An error occurred in the schedule primitive 'reverse-compute-at'.\n"
                               "Error message: The primitive requires all the producer(s) ...")

    monkeypatch.setattr(ms, "TuneContext", FailingContext)
    op = dense_operator(64, 64, 64)
    sampler = (MetaScheduleSampler if kind == "metaschedule" else ReplaySampler)(tvm_target(detect_host()))
    cands = sampler.candidates(op, 3, seed=0)
    assert [c.schedule_kind for c in cands] == ["default"]  # no exception: the default schedule is still measured
    assert sampler.failures[op.key].startswith(f"{op.name}: MetaSchedule's schedule rules failed")
    assert "reverse-compute-at" in sampler.failures[op.key] and "\n" not in sampler.failures[op.key]


def test_a_draw_that_fails_among_good_ones_is_not_reported(monkeypatch):
    from tvm.s_tir import meta_schedule as ms

    real, calls = ms.TuneContext, []

    class Failing:
        def __init__(self, ctx):
            self.space_generator = ctx.space_generator

        def generate_design_space(self):
            raise RuntimeError("ScheduleError: the first draw fails")

    def flaky(**kwargs):  # the first draw's rules fail, the others are MetaSchedule's own
        calls.append(kwargs["rand_state"])
        ctx = real(**kwargs)
        return Failing(ctx) if len(calls) == 1 else ctx

    monkeypatch.setattr(ms, "TuneContext", flaky)
    op = dense_operator(64, 64, 64)
    sampler = MetaScheduleSampler(tvm_target(detect_host()))
    cands = sampler.candidates(op, 2, seed=0)
    assert len(calls) > 1 and [c.schedule_kind for c in cands] == ["default", "sampled", "sampled"]
    assert op.key not in sampler.failures  # sampled schedules were drawn: nothing to say
