"""The measurement core: timing, reference check, worker processes, protocols, statistics, fingerprint."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from opscope.collector import timing
from opscope.errors import OpscopeError


# -- the reference check -----------------------------------------------------------------------------
def test_tolerance_grows_with_the_output_range_by_the_stated_formula():
    want = np.array([0.0, 5000.0], dtype="float32")
    # |diff| allowed at the zero element: ATOL + ATOL_SCALE * max|want| = 1e-4 + 1e-5 * 5000 = 0.0501
    allowed = timing.ATOL + timing.ATOL_SCALE * 5000.0
    assert allowed == pytest.approx(0.0501)
    inside = np.array([0.05, 5000.0], dtype="float32")
    outside = np.array([0.06, 5000.0], dtype="float32")
    assert timing.compare_outputs([inside], [want]) == ""
    assert timing.compare_outputs([outside], [want]) == "argument 0 differs from the reference (max abs diff 0.06)"
    # integers must match exactly
    assert "argument 1" in timing.compare_outputs([want, np.array([1, 2])], [want, np.array([1, 3])])


def test_random_args_are_seeded_and_typed():
    import tvm

    specs = [((3, 4), "float32"), ((5,), "int32"), ((2,), "bool")]
    a = timing.random_args(specs, 7, tvm.cpu())
    b = timing.random_args(specs, 7, tvm.cpu())
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    f = a[0].numpy()
    assert f.dtype == np.float32 and f.min() >= -1.0 and f.max() < 1.0
    assert a[1].numpy().min() >= 0 and a[1].numpy().max() < 8
    assert a[2].numpy().dtype == np.bool_


@pytest.fixture(scope="module")
def add_kernels():
    """Two compiled vector kernels: z = x + y, and one that writes x - y (a wrong result)."""
    import tvm
    from tvm import te

    n = 1024
    out = {}
    for name in ("add", "sub"):
        x, y = te.placeholder((n,), name="x"), te.placeholder((n,), name="y")
        if name == "add":
            z = te.compute((n,), lambda i: x[i] + y[i], name="z")  # noqa: B023 - used at once
        else:
            z = te.compute((n,), lambda i: x[i] - y[i], name="z")  # noqa: B023 - used at once
        func = te.create_prim_func([x, y, z]).with_attr("global_symbol", "main")
        out[name] = tvm.compile(tvm.IRModule({"main": func}), target="llvm").mod
    return out, [((n,), "float32")] * 3


def test_measure_times_repeats_and_refuses_a_wrong_kernel(add_kernels):
    import tvm

    mods, specs = add_kernels
    protocol = {"warmup": 1, "number": 2, "repeat": 3, "min_repeat_ms": 0, "cooldown_ms": 0, "flush_cache": True}
    ok = timing.measure(mods["add"], specs, protocol, tvm.cpu(), reference=mods["add"])
    assert ok["status"] == "ok" and len(ok["latencies_s"]) == 3 and min(ok["latencies_s"]) > 0
    wrong = timing.measure(mods["sub"], specs, protocol, tvm.cpu(), reference=mods["add"])
    assert wrong["status"] == "wrong_result" and wrong["error"].startswith("argument 2 differs")


def test_serve_answers_each_line_and_turns_errors_into_run_errors():
    import io
    import json

    def handle(req):
        if req["x"] < 0:
            raise ValueError("negative")
        return {"status": "ok", "latencies_s": [req["x"]]}

    out = io.StringIO()
    timing.serve(handle, io.StringIO('{"x": 1}\n\n{"x": -1}\n'), out, {"threads": 3})
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["status"] for r in replies] == ["ok", "run_error"]
    assert replies[1]["error"] == "ValueError: negative"
    assert all(r["threads"] == 3 and r["wall_s"] >= 0 for r in replies)


# -- the worker-process helper -------------------------------------------------------------------------
ECHO = ("import json, sys, time\n"
        "print(json.dumps({'ready': True, 'n': 1}), flush=True)\n"
        "for line in sys.stdin:\n"
        "    req = json.loads(line)\n"
        "    if req.get('die'): sys.exit(5)\n"
        "    time.sleep(req.get('sleep', 0))\n"
        "    print(json.dumps({'echo': req['v']}), flush=True)\n")


def test_line_process_reads_times_out_and_sees_death():
    from opscope.collector.process import EOF, LineProcess

    p = LineProcess([sys.executable, "-c", ECHO], name="echo worker", startup_timeout_s=60)
    try:
        assert p.hello == {"ready": True, "n": 1}
        assert p.ask({"v": 2}, 30) == {"echo": 2}
        assert p.ask({"v": 3, "sleep": 2}, 0.2) is None  # no reply in time
        assert p.read(30) == {"echo": 3}  # it still comes, late
        assert p.ask({"die": True}, 30) is EOF
        assert p.exit_status() == 5
    finally:
        p.kill()


def test_line_process_that_never_says_ready_names_its_stderr():
    from opscope.collector.process import LineProcess, WorkerStartError

    with pytest.raises(WorkerStartError, match="the echo worker did not start: .*no tvm here"):
        LineProcess([sys.executable, "-c", "import sys; sys.exit('no tvm here')"], name="echo worker",
                    startup_timeout_s=60)
    assert issubclass(WorkerStartError, OpscopeError)


def test_worker_env_sets_threads_and_pinning():
    from opscope.collector.process import worker_env

    env = worker_env(3, pinned=False, base={"OMP_NUM_THREADS": "8", "TVM_BIND_THREADS": "1", "A": "b"})
    assert env == {"TVM_NUM_THREADS": "3", "A": "b"}
    assert worker_env(2, pinned=True, base={})["TVM_BIND_THREADS"] == "1"


# -- roles, protocols, statistics, fingerprint ---------------------------------------------------------
def test_role_interfaces_are_explicit():
    from opscope.collector.roles import Builder, Runner

    class B(Builder):
        def build(self, batch):
            return []

    class R(Runner):
        def run(self, batch):
            return []

    assert B().discard([]) is None
    assert R().parallel_slots == 1
    from opscope.collector import registry, roles

    assert registry.Roles is roles.Roles and registry.RoleOptions is roles.RoleOptions


def test_one_protocol_home_with_re_exports():
    from opscope.collector.protocol import Protocol as CollectorProtocol
    from opscope.corun.measure import CorunProtocol as MeasureCorun
    from opscope.report.whole_model import VMProtocol as ReportVM
    from opscope.store.protocol import CorunProtocol, Protocol, VMProtocol

    assert CollectorProtocol is Protocol and MeasureCorun is CorunProtocol and ReportVM is VMProtocol
    with pytest.raises(OpscopeError, match="co-run protocol field 'makespan_repeats' must be an integer >= 1"):
        CorunProtocol(makespan_repeats=0)
    with pytest.raises(OpscopeError, match="whole-model protocol field 'timeout_s' must be > 0"):
        VMProtocol(timeout_s=0)
    with pytest.raises(OpscopeError, match="whole-model protocol field 'workers' must be an integer >= 1"):
        VMProtocol(workers=0)
    with pytest.raises(OpscopeError, match=r"co-run protocol has unknown fields \['windw_s'\]"):
        CorunProtocol.from_dict({"windw_s": 1.0})
    assert CorunProtocol.from_dict(CorunProtocol(window_s=0.2).to_dict()) == CorunProtocol(window_s=0.2)
    assert VMProtocol(number=2, repeat=3).timing() == {"warmup": 0, "number": 2, "repeat": 3, "min_repeat_ms": 100,
                                                        "cooldown_ms": 0, "flush_cache": False}


def test_latency_stats_by_hand():
    from opscope.store.record import LatencyStats

    st = LatencyStats.of([1.0, 2.0, 3.0, 4.0])
    # mean 2.5; sample variance ((1.5^2 + 0.5^2) * 2) / 3 = 5/3
    assert (st.median_s, st.mean_s, st.min_s) == (2.5, 2.5, 1.0)
    assert st.std_s == pytest.approx(math.sqrt(5 / 3))
    assert st.cv == pytest.approx(math.sqrt(5 / 3) / 2.5)
    assert st.noisy(0.5) and not st.noisy(0.52)
    one = LatencyStats.of([2.0])
    assert (one.std_s, one.cv) == (0.0, 0.0)
    empty = LatencyStats.of([])
    assert math.isnan(empty.median_s) and not empty.noisy(0.05)


def test_corun_records_carry_the_stores_machine_id():
    from opscope.collector.machine import fingerprint, host_facts, machine_id
    from opscope.corun.measure import machine_id as corun_machine_id

    assert corun_machine_id() == machine_id(fingerprint())
    facts = host_facts()
    assert {k: fingerprint()[k] for k in ("cpu_model", "cores", "caches", "os", "machine")} == \
        {k: facts[k] for k in ("cpu_model", "cores", "caches", "os", "machine")}


def test_machine_id_hashes_the_same_fields_as_before():
    """Store and dataset ids depend on it: sha256 of the sorted JSON of the seven hashed fields."""
    import hashlib
    import json

    from opscope.collector.machine import machine_id

    fp = {"cpu_model": "AMD EPYC", "cores": 2, "caches": {"L1d": "32K"}, "os": "Linux 6", "machine": "x86_64",
          "tvm_version": "0.27.0.post1", "opscope_version": "0.1.0", "governor": "performance",
          "tvm_target": "llvm -mcpu=znver4", "load_avg_1m": 3.0}
    hashed = {k: fp[k] for k in ("cpu_model", "cores", "caches", "os", "machine", "tvm_version", "opscope_version")}
    want = "m" + hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:15]
    assert machine_id(fp) == want
    assert machine_id(dict(fp, governor="powersave", tvm_target="other", load_avg_1m=9.0)) == want
