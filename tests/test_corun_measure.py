"""Co-run measurement of two tiny operators in real worker processes, with records in the store."""

from __future__ import annotations

import os

import pytest

from opscope.corun.kernels import KernelSpec, build_kernel
from opscope.corun.measure import CorunProtocol, Task, measure_corun
from opscope.corun.partition import Arrangement, Slot, all_arrangements
from opscope.corun.table import corun_frame, load_corun, save_corun
from opscope.corun.worker import WorkerPool

pytestmark = pytest.mark.slow  # starting two TVM worker processes takes ~10-30 s on 2 busy cores

CORES = tuple(sorted(os.sched_getaffinity(0)))
PROTOCOL = CorunProtocol(warmup=1, window_s=0.05, window_factor=4.0, min_iters=3, makespan_repeats=5)


def _tiny_kernels(tmp_dir):
    from tvm import te

    from opscope.targets import load_target, tvm_target

    n = 48
    a = te.placeholder((n, n), name="A")
    b = te.placeholder((n, n), name="B")
    k = te.reduce_axis((0, n), name="k")
    mm = te.create_prim_func([a, b, te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")])
    x = te.placeholder((1 << 15,), name="X")
    y = te.placeholder((1 << 15,), name="Y")
    add = te.create_prim_func([x, y, te.compute((1 << 15,), lambda i: x[i] + y[i], name="Z")])
    target = tvm_target(load_target("host"))
    return build_kernel(mm, "matmul48", target, tmp_dir), build_kernel(add, "add32k", target, tmp_dir)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if len(CORES) < 2:
        pytest.skip("co-run tests need at least two cores")
    tmp = tmp_path_factory.mktemp("corun")
    kernels = _tiny_kernels(tmp / "kernels")
    with WorkerPool(2, CORES[:2]) as pool:
        yield pool, kernels, tmp


def test_worker_threads_follow_the_slot(setup):
    pool, _, _ = setup
    pool.configure(0, (CORES[1],), 1, True)
    # every thread of the worker (Python's and TVM's pool) may only run on the slot's core
    aff = pool.affinity(0)
    assert len(aff) >= 2  # the main thread and at least one TVM pool thread
    assert all(set(cores) == {CORES[1]} for cores in aff.values()), aff
    pool.configure(0, CORES[:2], 2, False)
    assert all(set(cores) == set(CORES[:2]) for cores in pool.affinity(0).values())


def test_tasks_start_together_however_long_their_warm_up(setup):
    pool, (mm, add), _ = setup
    pool.load(0, mm)
    pool.load(1, add)
    pool.configure(0, (CORES[0],), 1, True)
    pool.configure(1, (CORES[1],), 1, True)
    slow, fast = [mm.key] * 3, [add.key]  # worker 0's chain: three matmuls; worker 1's: one tiny add
    one = pool.loop({0: slow, 1: fast}, 0, 0.0, 5)
    gap_s = 3000 * (min(b - a for a, b in one[0].stamps) - min(b - a for a, b in one[1].stamps))
    # 3000 warm-up runs each: started as soon as each was warm, the two would start gap_s apart
    assert gap_s > 0.02, gap_s
    loops = pool.loop({0: slow, 1: fast}, 3000, 0.02, 3)
    assert abs(loops[0].stamps[0][0] - loops[1].stamps[0][0]) < 0.005
    once = pool.once({0: slow, 1: fast}, 3000, 3)
    for r in range(3):
        assert abs(once[0].stamps[r][0] - once[1].stamps[r][0]) < 0.005


def test_corun_all_arrangements_and_store_round_trip(setup):
    pool, (mm, add), tmp = setup
    tasks = [Task("matmul", (mm,)), Task("add", (add,))]
    records = [measure_corun(tasks, arr, pool, PROTOCOL, label="tiny")
               for arr in all_arrangements(2, CORES[:2])]
    kinds = [r.arrangement.kind for r in records]
    assert kinds == ["sequential", "disjoint", "shared"]
    for rec in records:
        assert rec.status == "ok", rec.error
        assert len(rec.makespan_s) == PROTOCOL.makespan_repeats
        assert [m.task for m in rec.members] == ["matmul", "add"]
        assert all(len(m.alone_s) >= PROTOCOL.min_iters for m in rec.members)
    seq, split, shared = records
    assert seq.members[0].together_s == () and seq.members[0].slowdown is None
    # the partition is part of the record: split gives each task one core of its own
    assert [m.cores for m in split.members] == [(CORES[0],), (CORES[1],)]
    assert [m.cores for m in shared.members] == [CORES[:2], CORES[:2]]
    for rec in (split, shared):
        for m in rec.members:
            assert len(m.together_s) >= 1 and m.slowdown > 0
    # a co-run round lasts at least as long as the shortest single iteration of its slowest task
    assert split.makespan_median_s >= 0.5 * max(min(m.alone_s) for m in split.members)

    db = tmp / "runs.db"
    from opscope.store import open_store

    open_store(db).close()  # the co-run tables live beside the store's own tables
    ids = save_corun(db, records)
    assert len(ids) == 3
    back = load_corun(db)
    assert [r.arrangement for r in back] == [r.arrangement for r in records]
    assert [r.makespan_s for r in back] == [r.makespan_s for r in records]
    assert [m.together_s for m in back[2].members] == [m.together_s for m in shared.members]
    with open_store(db) as store:  # the co-run tables are the store's own, at its version
        assert store.version == 5
    frame = corun_frame(db)
    assert len(frame) == 5  # two members in each of the two co-running records, one sequential run
    assert frame["pair_id"].nunique() == 1
    assert set(frame["shared"]) == {0, 1}
    assert list(frame["kind"]).count("sequential") == 1


def test_a_broken_kernel_becomes_a_run_error_record(setup, tmp_path):
    pool, (mm, _), _ = setup
    bogus = tmp_path / "not_a_library.so"
    bogus.write_text("this is not a shared library")
    bad = KernelSpec("broken", "kbroken", str(bogus), (((4,), "float32"),))
    arr = Arrangement("disjoint", (Slot((CORES[0],), 1), Slot((CORES[1],), 1)))
    rec = measure_corun([Task("ok", (mm,)), Task("bad", (bad,))], arr, pool, PROTOCOL)
    assert rec.status == "run_error"
    assert rec.makespan_s == ()
    assert "worker 1" in rec.error
    # the pool is still usable afterwards
    again = measure_corun([Task("ok", (mm,)), Task("ok2", (mm,))], arr, pool, PROTOCOL)
    assert again.status == "ok"


def test_plan_region_rounds_curves_and_choice(setup):
    from opscope.corun.branches import Branch, Region
    from opscope.corun.plan import format_region, plan_region

    pool, (mm, add), _ = setup
    region = Region("x", "j", (Branch(("a",), ("matmul48",)), Branch(("b",), ("add32k",))))
    tasks = (Task("matmul", (mm,)), Task("add", (add,)))
    res = plan_region(region, tasks, pool, PROTOCOL, rounds=2, show=lambda _m: None)
    assert len(res.records) == 2 * 3  # rounds x (sequential, split, shared)
    assert all(r.status == "ok" for r in res.records)
    # the curves come from the alone phases: 1 core (split) and 2 cores (sequential and shared)
    for curve in res.curves:
        assert [c for c, _ in curve.points] == [1, 2]
    # prediction without an interference model: sequential = sum of the 2-core latencies
    seq_pred = next(t for a, t in res.choice.predicted if a.kind == "sequential")
    assert seq_pred == pytest.approx(sum(c.at(2) for c in res.curves))
    split_pred = next(t for a, t in res.choice.predicted if a.kind == "disjoint")
    assert split_pred == pytest.approx(max(c.at(1) for c in res.curves))
    assert len(res.makespans(res.choice.chosen)) == 2 * PROTOCOL.makespan_repeats
    assert res.best is not None and res.best[1] == min(res.measured(a) for a, _ in res.choice.predicted)
    text = format_region(1, res)
    assert "chosen" in text and "measured best" in text and "split(1+1)" in text


def test_protocol_and_pool_must_agree_on_spinning(setup):
    from opscope.errors import OpscopeError

    pool, (mm, add), _ = setup
    arr = Arrangement("disjoint", (Slot((CORES[0],), 1), Slot((CORES[1],), 1)))
    with pytest.raises(OpscopeError, match="spin_count 0 differs"):
        measure_corun([Task("a", (mm,)), Task("b", (add,))], arr, pool, CorunProtocol(spin_count=0))
