"""The whole model: stored schedules replayed into the fused Relax module, built, run in the Relax VM.

A tiny torch MLP (three linear layers, two with the same shape so one kernel runs twice) goes
through the workloads room's import; a hand-written trace (split, parallel, unroll: the
instructions MetaSchedule's CPU rules emit) stands in for a sampled schedule.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("tvm")

from opscope.errors import OpscopeError  # noqa: E402
from opscope.report import whole_model as wm  # noqa: E402
from opscope.targets import load_target, tvm_target  # noqa: E402

# importing the model and building it with TVM takes tens of seconds on a busy 2-core machine
pytestmark = pytest.mark.slow


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(64, 64)
        self.b = torch.nn.Linear(64, 64)
        self.c = torch.nn.Linear(64, 8)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.fixture(scope="module")
def workload():
    from opscope.workloads import load_model

    return load_model(MLP(), example_inputs=(torch.randn(4, 64),))


def twice_op(workload):
    (op,) = [o for o in workload.operators if o.count == 2]
    return op


def sampled_trace(op) -> str:
    """A schedule like MetaSchedule's: tile the loops, parallelise the outer one, unroll an inner one."""
    func = op.prim_func
    sch = tvm.s_tir.Schedule(tvm.ir.load_json(tvm.ir.save_json(func)))
    block = sch.get_sblock("matmul")
    i, j, _k = sch.get_loops(block)
    _io, _ii = sch.split(i, factors=[2, None])
    sch.parallel(_io)
    _jo, ji = sch.split(j, factors=[None, 8])
    sch.unroll(ji)
    return json.dumps(plain(sch.trace.as_json()))


def plain(obj):
    """TVM's JSON-style trace (FFI arrays, strings, IntImm) as plain Python values."""
    if isinstance(obj, (str, int, float)) or obj is None:
        return obj
    if hasattr(obj, "value"):  # IntImm / FloatImm
        return obj.value
    if hasattr(obj, "items"):
        return {str(k): plain(v) for k, v in obj.items()}
    return [plain(x) for x in obj]


def frame_for(workload, op, trace):
    """Store rows: a default measurement for every operator, a faster sampled one for ``op``."""
    rows = []
    for i, o in enumerate(workload.operators):
        rows.append(dict(workload_key=o.key, op_name=o.name, schedule_id="default", schedule_kind="default",
                         trace_json="[]", threads=1, status="ok", latency_median_s=1e-5 * (i + 1),
                         machine_id="m", target="host"))
    rows.append(dict(workload_key=op.key, op_name=op.name, schedule_id="s1", schedule_kind="sampled",
                     trace_json=trace, threads=1, status="ok", latency_median_s=4e-6, machine_id="m",
                     target="host"))
    return pd.DataFrame(rows)


def run_vm(mod, inputs):
    from tvm import relax

    ex = tvm.compile(mod, target=tvm_target(load_target("host")))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(a, tvm.cpu()) for a in inputs])
    out = out[0] if isinstance(out, (list, tuple)) or type(out).__name__ == "Array" else out
    return out.numpy()


def test_replayed_schedule_changes_the_kernel_not_the_result(workload):
    op = twice_op(workload)
    mod = workload.ir_module
    names = wm.function_names(mod, {op.key: op.prim_func})
    assert len(names[op.key]) >= 1
    before = {n: mod[n].script() for n in names[op.key]}
    new = wm.apply_traces(mod, {n: sampled_trace(op) for n in names[op.key]})
    for n in names[op.key]:
        assert "T.parallel" in new[n].script() and "T.parallel" not in before[n]
        assert mod[n].script() == before[n]  # the caller's module is untouched
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal([int(d) for d in p.ty.shape]).astype("float32") for p in mod["main"].params]
    np.testing.assert_allclose(run_vm(new, inputs), run_vm(mod, inputs), rtol=1e-5, atol=1e-5)


def test_a_trace_that_does_not_fit_is_one_clear_error(workload):
    op = twice_op(workload)
    (name, *_rest) = wm.function_names(workload.ir_module, {op.key: op.prim_func})[op.key]
    bad = json.dumps([[["GetSBlock", [], ["no_such_block", "main"], ["b0"]]], []])
    with pytest.raises(OpscopeError, match=f"cannot replay the stored schedule of {name}"):
        wm.apply_traces(workload.ir_module, {name: bad})


def test_whole_model_against_the_sum_of_operators(workload):
    op = twice_op(workload)
    frame = frame_for(workload, op, sampled_trace(op))
    res = wm.measure_whole_model(workload, load_target("host"), frame, threads=1,
                                 predicted={o.key: 2e-5 for o in workload.operators},
                                 protocol=wm.VMProtocol(repeat=3, min_repeat_ms=20, workers=2))
    # 3 repeats in each of 2 measuring processes; the latency is the median of the 6
    assert len(res.raw_latencies_s) == 6 and all(x > 0 for x in res.raw_latencies_s)
    xs = sorted(res.raw_latencies_s)
    assert res.latency_s == pytest.approx((xs[2] + xs[3]) / 2)
    # the sums, by hand: each operator's best latency times its count
    best = {o.key: 1e-5 * (i + 1) for i, o in enumerate(workload.operators)}
    best[op.key] = 4e-6
    assert res.sum_best_s == pytest.approx(sum(o.count * best[o.key] for o in workload.operators))
    assert res.sum_default_s == pytest.approx(sum(o.count * 1e-5 * (i + 1) for i, o in enumerate(workload.operators)))
    assert res.sum_predicted_s == pytest.approx(2e-5 * sum(o.count for o in workload.operators))
    assert res.gap == pytest.approx(res.latency_s / res.sum_best_s - 1)
    assert res.scheduled_ops == 1 and res.measured_ops == res.total_ops == len(workload.operators)
    assert res.unmatched_functions == 0
    assert "gap" in res.summary_line()
    # each kernel's time inside the model, from instrumented runs: every operator is seen
    assert {k for k, _ in res.op_in_model_s} == {o.key for o in workload.operators}
    assert all(t > 0 for _, t in res.kernel_s) and res.kernels_sum_s > 0
    assert res.kernels_sum_s == pytest.approx(sum(o.count * dict(res.op_in_model_s)[o.key]
                                                  for o in workload.operators))


def test_the_model_says_which_parameters_are_inputs(workload):
    # the torch import marks one input (x); the MLP's six weights and biases follow it
    mod = workload.ir_module
    assert wm.data_inputs(mod) == 1 and len(wm.input_specs(mod)) == 7


def test_model_without_relax_module_is_refused():
    from types import SimpleNamespace

    layer_table = SimpleNamespace(name="table", operators=(), ir_module=None)
    with pytest.raises(OpscopeError, match="has no Relax module"):
        wm.measure_whole_model(layer_table, load_target("host"), pd.DataFrame(), threads=1)


def test_compare_reports_the_whole_model(workload, monkeypatch):
    from opscope.report import compare

    monkeypatch.setattr("opscope.report.machine.this_machine", lambda: ("m", {}))
    op = twice_op(workload)
    frame = frame_for(workload, op, sampled_trace(op))
    res = compare(workload, target="host", store=frame, progress=False,
                  protocol=wm.VMProtocol(repeat=3, min_repeat_ms=20))
    assert res.whole_model is not None and res.whole_model.threads == 1
    assert res.summary[2].startswith("whole model (1 thr): end-to-end")
    total = res.frame[res.frame["op"] == "TOTAL"].iloc[0]
    assert total["best_s"] == pytest.approx(res.whole_model.sum_best_s)
    assert not math.isnan(res.whole_model.gap)
    # the table's in-model column comes from the whole-model run; TOTAL sums count x time
    assert res.frame["in_model_s"].notna().all()
    assert total["in_model_s"] == pytest.approx(res.whole_model.kernels_sum_s)
    assert "in model" in res.table_text().splitlines()[0]


def test_a_metaschedule_trace_from_the_collector_replays_into_the_model(workload):
    """The collector's sampled schedules (MetaSchedule design space + postprocessors) replay too."""
    from opscope.collector.ms_sampler import MetaScheduleSampler

    op = twice_op(workload)
    cands = MetaScheduleSampler(tvm_target(load_target("host"))).candidates(op, 1, 0)
    sampled = [c for c in cands if c.schedule_kind == "sampled"]
    assert sampled, "the sampler produced no schedule"
    mod = workload.ir_module
    names = wm.function_names(mod, {op.key: op.prim_func})[op.key]
    new = wm.apply_traces(mod, {n: sampled[0].trace_json for n in names})
    # the replayed kernel is the very module the collector built and measured
    built = tvm.ir.load_json(sampled[0].module_json)["main"]
    import tvm_ffi

    assert tvm_ffi.structural_equal(new[names[0]].without_attr("global_symbol"),
                                    built.without_attr("global_symbol"), map_free_vars=True)
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal([int(d) for d in p.ty.shape]).astype("float32") for p in mod["main"].params]
    np.testing.assert_allclose(run_vm(new, inputs), run_vm(mod, inputs), rtol=1e-5, atol=1e-5)
