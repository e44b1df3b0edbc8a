"""The collector on real TVM kernels: end to end, crash and hang injection, wrong results, threads.

One set of real roles (build workers and measuring workers) is shared by the tests of this module,
so TVM is imported by the workers once.
"""

from __future__ import annotations

import json
import os

import pytest

from opscope.collector import Candidate, Protocol, collect
from opscope.collector.registry import make_roles
from opscope.collector.te_ops import add_operator, dense_operator
from opscope.store import load_dataframe
from opscope.targets import load_target
from opscope.workloads.operator import Operator, TensorInfo

pytestmark = pytest.mark.slow

QUICK = Protocol(repeat=3, min_repeat_ms=5)


@pytest.fixture(scope="module")
def roles():
    r = make_roles(load_target("host"))
    yield r
    r.builder.close()
    r.runner.close()


def _fault_op(name: str, packed: str, arg: int | None) -> Operator:
    """``B = A + 1`` that first calls the worker's fault function ``packed``."""
    from tvm.script import tirx as T

    call = T.call_packed(packed, arg) if arg is not None else T.call_packed(packed)

    @T.prim_func(s_tir=True)
    def func(A: T.Buffer((16,), "float32"), B: T.Buffer((16,), "float32")):
        T.evaluate(call)
        for i in range(16):
            with T.sblock("B"):
                vi = T.axis.spatial(16, i)
                B[vi] = A[vi] + T.float32(1)

    from opscope.workloads.extract import structural_key

    return Operator(name=name, kind="elementwise",
                    tensors=(TensorInfo("A", (16,), "float32", "input"), TensorInfo("B", (16,), "float32", "output")),
                    flops=16, key=structural_key(func), prim_func=func)


def test_real_operator_end_to_end(tmp_path, roles):
    op = dense_operator(32, 32, 32)
    db = tmp_path / "r.db"
    recs = collect([op], trials=3, threads=(1,), store=db, roles=roles, protocol=QUICK, progress=False)
    assert [r.schedule_kind for r in recs] == ["default", "sampled", "sampled", "sampled"]
    assert all(r.status == "ok" for r in recs), [(r.status, r.error) for r in recs]
    assert all(len(r.raw_latencies_s) == 3 and 0 < r.median_s < 0.1 for r in recs)
    assert all(r.threads == 1 for r in recs)
    sampled = recs[1]
    knobs = dict(sampled.knobs)
    # the SamplePerfectTile decisions multiply back to each loop's extent
    for var in ("i", "j"):
        prod = 1
        for level in range(4):
            prod *= knobs[f"tile_{var}_{level}"]
        assert prod == 32
    assert knobs["tile_k_0"] * knobs["tile_k_1"] == 32
    assert knobs["loop_order"].split()[:2] == ["i0", "j0"]
    trace = json.loads(sampled.trace_json)
    assert any(inst[0] == "SamplePerfectTile" for inst in trace[0])
    df = load_dataframe(db)
    assert len(df) == 4 and "knob_tile_i_0" in df.columns and df["knob_tile_i_0"].notna().sum() == 3
    # loop knobs: the default function is untouched (its innermost loop is the 32-long reduction); a sampled
    # schedule's parallel loop fuses whole outer tiles of the 32 x 32 output, so its extent divides 1024
    default = dict(recs[0].knobs)
    assert default["parallel_extent"] == 1 and default["main_inner"] == 32 and default["main_vector_len"] == 1
    pars = [dict(r.knobs)["parallel_extent"] for r in recs[1:]]
    assert all(1024 % p == 0 for p in pars) and max(pars) > 1
    # same command: all measured already
    assert collect([op], trials=3, threads=(1,), store=db, roles=roles, protocol=QUICK, progress=False) == []

    # reread-knobs gives back what the collector read, from the stored traces alone
    import sqlite3

    from opscope.collector.reread import reread_knobs

    before = load_dataframe(db).sort_values("measurement_id").reset_index(drop=True)
    with sqlite3.connect(db) as conn:  # knobs as a reader that missed the loop knobs would have stored them
        for sid, knobs_json in conn.execute("SELECT schedule_id, knobs_json FROM schedules").fetchall():
            k = {n: v for n, v in json.loads(knobs_json).items() if not n.startswith("main_")}
            k.update(parallel_extent=1, vector_len=1)
            conn.execute("UPDATE schedules SET knobs_json=? WHERE schedule_id=?", (json.dumps(k), sid))
    assert reread_knobs(str(db)) == {"changed": 4, "unchanged": 0, "skipped": []}
    after = load_dataframe(db).sort_values("measurement_id").reset_index(drop=True)
    knob_cols = [c for c in before.columns if c.startswith("knob_")]
    assert after[knob_cols].equals(before[knob_cols])
    assert reread_knobs(str(db))["unchanged"] == 4


def test_crashing_and_hanging_kernels_are_recorded_and_the_sweep_goes_on(tmp_path, roles):
    crash = _fault_op("crasher", "opscope.fault.abort", None)
    hang = _fault_op("hanger", "opscope.fault.sleep", 600)
    good = add_operator(1024)
    recs = collect([crash, hang, good], trials=0, threads=(1,), store=tmp_path / "r.db", roles=roles,
                   protocol=QUICK, timeout_s=3, progress=False)
    by_op = {r.op.name: r for r in recs}
    assert by_op["crasher"].status == "crash" and "exit status" in by_op["crasher"].error
    assert by_op["hanger"].status == "timeout" and "killed" in by_op["hanger"].error
    assert by_op["add_1024"].status == "ok" and by_op["add_1024"].median_s > 0


class _WrongSampler:
    """The real sampler, with the first sampled schedule replaced by a kernel computing A + 2."""

    def __init__(self, real):
        self.real = real

    def candidates(self, op, trials, seed):
        import tvm

        cands = self.real.candidates(op, trials, seed)
        wrong = add_operator(1024, name="wrong")
        mod = tvm.IRModule({"main": wrong.prim_func.with_attr("global_symbol", "main")})
        text = mod.script().replace("T.float32(1.0)", "T.float32(2.0)")
        bad = tvm.script.from_source(text)
        cands[1] = Candidate(op.key, "swrong", "sampled", "[]", (), tvm.ir.save_json(bad))
        return cands


def test_wrong_kernel_is_caught(tmp_path, roles):
    from opscope.collector.registry import Roles

    wrong_roles = Roles(_WrongSampler(roles.sampler), roles.builder, roles.runner, roles.tvm_target)
    recs = collect([add_operator(1024)], trials=2, threads=(1, 2), store=tmp_path / "r.db",
                   roles=wrong_roles, protocol=QUICK, progress=False)
    status = {(r.schedule_id, r.threads): r.status for r in recs}
    assert status[("swrong", 1)] == status[("swrong", 2)] == "wrong_result"
    assert status[("default", 1)] == "ok"
    assert "differs from the reference" in next(r.error for r in recs if r.schedule_id == "swrong")


def test_thread_count_is_applied(tmp_path, roles):
    """Two threads run a parallel kernel faster than one, unless the machine is too busy to tell."""
    import tvm
    from tvm.s_tir import Schedule

    op = dense_operator(256, 256, 256)
    mod = tvm.IRModule({"main": op.prim_func.with_attr("global_symbol", "main")})
    sch = Schedule(mod)
    i, j, k = sch.get_loops(sch.get_sblock("Y"))
    sch.parallel(i)

    class _Parallel:
        def candidates(self, op_, trials, seed):
            return [Candidate(op_.key, "spar", "sampled", "[]", (), tvm.ir.save_json(sch.mod))]

    from opscope.collector.registry import Roles

    par_roles = Roles(_Parallel(), roles.builder, roles.runner, roles.tvm_target)
    recs = collect([op], trials=1, threads=(1, 2), store=tmp_path / "r.db", roles=par_roles,
                   protocol=Protocol(repeat=7, min_repeat_ms=30, check_first=False), progress=False)
    t = {r.threads: r for r in recs}
    assert set(t) == {1, 2} and all(r.status == "ok" for r in recs)  # the worker reported 2 threads
    speedup = t[1].median_s / t[2].median_s
    load = os.getloadavg()[0]
    if load > 1.0:
        pytest.skip(f"cannot tell: load average {load:.1f} on {os.cpu_count()} cores (speedup seen {speedup:.2f}x)")
    assert speedup > 1.3, f"2 threads only {speedup:.2f}x faster than 1"
