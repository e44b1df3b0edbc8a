"""Searched schedules and library rows: the cases torch times, the callable timer, the evolutionary
search through opscope's roles (fakes for the builder and runner, TVM for the proposals), resume,
and one real search and one real torch timing of a small dense."""

from __future__ import annotations

import json
import time

import pytest

from opscope.collector import Protocol, collect
from opscope.collector.library import case_json, library_case
from opscope.collector.roles import Roles, RunJob, RunResult
from opscope.collector.search import SearchConfig
from opscope.collector.timing import time_callable
from opscope.errors import OpscopeError
from opscope.store import load_dataframe
from opscope.workloads.operator import Operator, TensorInfo
from tests.fakes import FakeBuilder, FakeRunner, FakeSampler

QUICK = Protocol(repeat=3, min_repeat_ms=5)


def _conv(name="fused_conv2d_add_relu", groups=1, padding=(1, 1), kind="conv2d") -> Operator:
    c = 8
    return Operator(name=name, kind=kind, attrs=(("dilation", (1, 1)), ("groups", groups), ("kernel", (3, 3)),
                                                 ("padding", padding), ("stride", (2, 2))),
                    tensors=(TensorInfo("x", (1, c, 16, 16), "float32", "input"),
                             TensorInfo("w", (c, c // groups, 3, 3), "float32", "weight"),
                             TensorInfo("b", (1, c, 1, 1), "float32", "weight"),
                             TensorInfo("y", (1, c, 8, 8), "float32", "output")),
                    flops=2 * 8 * 8 * 8 * (c // groups) * 9)


def _dense(w_shape=(64, 32)) -> Operator:
    return Operator(name="fused_matmul_add", kind="dense",
                    tensors=(TensorInfo("x", (4, 64), "float32", "input"), TensorInfo("w", w_shape, "float32", "weight"),
                             TensorInfo("b", (32,), "float32", "weight"), TensorInfo("y", (4, 32), "float32", "output")),
                    flops=2 * 4 * 64 * 32)


def test_library_cases_name_the_torch_call_or_none():
    case = library_case(_conv())
    assert case == {"op": "conv2d", "x": [1, 8, 16, 16], "w": [8, 8, 3, 3], "bias": True, "stride": [2, 2],
                    "padding": [1, 1], "dilation": [1, 1], "groups": 1, "act": "relu", "dtype": "float32",
                    "out": [1, 8, 8, 8]}
    dw = library_case(_conv("fused_conv2d1_tir_clip", groups=8, kind="depthwise_conv2d"))
    assert (dw["groups"], dw["w"], dw["act"]) == (8, [8, 1, 3, 3], "relu6")
    assert library_case(_conv(padding=(1, 1, 0, 0))) is None  # asymmetric: torch's conv2d cannot pad so
    assert library_case(_conv(padding=(1, 2, 1, 2)))["padding"] == [1, 2]
    # dense weights stored (K, N) or (N, K): the case always says (K, N)
    assert library_case(_dense((64, 32)))["w"] == [64, 32]
    assert library_case(_dense((32, 64)))["w"] == [64, 32]
    assert library_case(_dense((16, 16))) is None
    ew = Operator(name="add", kind="elementwise", tensors=(TensorInfo("a", (8,), "float32", "input"),), flops=8)
    assert library_case(ew) is None
    pool = Operator(name="max_pool2d", kind="pool",
                    attrs=(("kernel", (3, 3)), ("padding", (1, 1)), ("pool", "max"), ("stride", (2, 2))),
                    tensors=(TensorInfo("x", (1, 4, 8, 8), "float32", "input"),
                             TensorInfo("y", (1, 4, 4, 4), "float32", "output")), flops=0)
    assert library_case(pool)["op"] == "max_pool2d"
    ints = Operator(name="q", kind="dense", tensors=(TensorInfo("x", (4, 64), "int8", "input"),
                                                     TensorInfo("w", (64, 32), "int8", "weight")), flops=1)
    assert library_case(ints) is None  # float cases only


def test_time_callable_grows_number_to_the_minimum_repeat_time():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.001)

    lat = time_callable(fn, {"warmup": 1, "number": 1, "repeat": 3, "min_repeat_ms": 10})
    assert len(lat) == 3
    assert all(0.0009 < x < 0.005 for x in lat), lat  # one call sleeps 1 ms
    # 2 warm-up calls (1 discarded + warmup), then each kept repeat ran >= 10 calls of ~1 ms
    assert len(calls) >= 2 + 3 * 8


class _LibRunner(FakeRunner):
    """Library jobs: latency from the case's FLOP-ish size; records which cases it saw."""

    def backend(self, threads, pinned=False):
        return "fake"

    def run(self, batch):
        out = []
        for job in batch:
            self.jobs.append(job)
            case = json.loads(job.artifact)
            out.append(RunResult("ok", (1e-4 / job.threads,) * job.protocol.repeat, threads=job.threads)
                       if case["op"] else RunResult("run_error"))
        return out


def _roles(**kw) -> Roles:
    return Roles(FakeSampler(), FakeBuilder(), FakeRunner(**kw), None)


def test_collect_stores_library_rows_at_each_thread_count_once(tmp_path):
    db = tmp_path / "l.db"
    ew = Operator(name="add", kind="elementwise", tensors=(TensorInfo("a", (8,), "float32", "input"),), flops=8,
                  key="ew")
    lib = _LibRunner()
    recs = collect([_dense(), ew], trials=1, threads=(1, 2), store=db, roles=_roles(), progress=False,
                   library_runner=lib, protocol=QUICK)
    library = [r for r in recs if r.schedule_kind == "library"]
    assert [(r.op.name, r.threads) for r in library] == [("fused_matmul_add", 1), ("fused_matmul_add", 2)]
    assert dict(library[0].origin)["library"] == "torch" and dict(library[0].origin)["call"] == "linear"
    assert library[1].median_s == pytest.approx(1e-4 / 2)
    again = collect([_dense(), ew], trials=1, threads=(1, 2), store=db, roles=_roles(), progress=False,
                    library_runner=lib, protocol=QUICK)
    assert again == [] and len(lib.jobs) == 2  # resumed: nothing timed twice
    df = load_dataframe(db)
    assert sorted(df["schedule_kind"].unique()) == ["default", "library", "sampled"]


def test_library_rows_are_not_training_data():
    import pandas as pd

    from opscope.predictor.frames import ok_rows

    frame = pd.DataFrame({"status": ["ok", "ok", "ok"], "schedule_kind": ["default", "library", "searched"],
                          "latency_median_s": [1e-3, 5e-4, 8e-4]})
    assert list(ok_rows(frame)["schedule_kind"]) == ["default", "searched"]


def test_no_torch_means_one_line_and_no_library_rows(tmp_path, monkeypatch, capsys):
    import opscope.collector.library as library

    monkeypatch.setattr(library, "torch_version", lambda: None)
    from opscope.collector.phases import make_library_runner
    from opscope.targets import load_target

    assert make_library_runner(load_target("host"), True, None, None, progress=True) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch is not installed" in err[0]


def test_search_config_refuses_bad_values(tmp_path):
    with pytest.raises(OpscopeError, match="trials"):
        SearchConfig(trials=0)
    with pytest.raises(OpscopeError, match="cost-model"):
        SearchConfig(cost_model="no/such/dir")
    with pytest.raises(OpscopeError, match="search"):
        collect([_dense()], trials=2, threads=(1,), store=tmp_path / "x.db", roles=_roles(), search="annealing",
                progress=False)


def _target():
    from opscope.targets import load_target, tvm_target

    return tvm_target(load_target("host"))


class _Interrupt(FakeRunner):
    """Measures ``left`` jobs, then the collection is 'killed' (an exception out of the runner);
    ``answered`` holds the schedule ids it gave a result for."""

    def __init__(self, left: int, **kw):
        super().__init__(**kw)
        self.left = left
        self.answered: set[str] = set()

    def run(self, batch):
        if self.left <= 0:
            raise KeyboardInterrupt
        self.left -= len(batch)
        self.answered |= {j.artifact.removeprefix("fake:") for j in batch}
        return super().run(batch)


@pytest.mark.slow
def test_search_stores_every_tried_schedule_with_its_round_and_resumes_after_a_kill(tmp_path):
    from opscope.collector.te_ops import dense_operator

    op = dense_operator(16, 16, 16)
    db = tmp_path / "s.db"
    cfg = SearchConfig(trials=12, per_round=4, population=32, cost_model="random")
    runner = _Interrupt(left=8)  # the default, then searched ones and the checks of each new best
    killed = Roles(FakeSampler(), FakeBuilder(), runner, _target())
    with pytest.raises(KeyboardInterrupt):
        collect([op], trials=12, threads=(1,), store=db, roles=killed, protocol=QUICK, progress=False,
                search="evolutionary", search_config=cfg)
    first = load_dataframe(db)
    searched = first[first["schedule_kind"] == "searched"]
    stored = set(searched["schedule_id"])
    answered = runner.answered - {"default"}
    # everything measured before the kill is in the store, but the one in flight (a new best's check)
    assert stored <= answered and len(answered - stored) <= 1 and len(stored) >= 3
    rounds = [json.loads(o)["round"] for o in searched["origin_json"]]
    assert rounds == sorted(rounds) and rounds[0] == 1 and set(rounds) <= {1, 2}
    runner = FakeRunner()
    recs = collect([op], trials=12, threads=(1,), store=db, roles=Roles(FakeSampler(), FakeBuilder(), runner,
                                                                       _target()),
                   protocol=QUICK, progress=False, search="evolutionary", search_config=cfg)
    df = load_dataframe(db)
    searched = df[df["schedule_kind"] == "searched"]
    n_first = len(stored)
    assert 0 < len(recs) <= 12 - n_first and all(r.schedule_kind == "searched" for r in recs)
    assert searched["schedule_id"].is_unique
    assert min(json.loads(o)["round"] for o in searched["origin_json"].iloc[n_first:]) > max(rounds)  # go on
    assert all(json.loads(o)["cost_model"] == "random" for o in searched["origin_json"])
    assert all(json.loads(t)[0] for t in searched["trace_json"])  # real MetaSchedule traces


@pytest.mark.slow
def test_a_real_search_of_a_small_dense_beats_the_default_and_torch_times_it(tmp_path):
    from opscope.collector.registry import make_roles
    from opscope.collector.te_ops import dense_operator
    from opscope.targets import load_target

    op = dense_operator(64, 64, 64)
    db = tmp_path / "r.db"
    roles = make_roles(load_target("host"))
    try:
        recs = collect([op], trials=8, threads=(1,), store=db, roles=roles, protocol=QUICK, progress=False,
                       search="evolutionary", search_config=SearchConfig(trials=8, per_round=4, population=32),
                       library=False)
    finally:
        roles.builder.close()
        roles.runner.close()
    ok = [r for r in recs if r.status == "ok"]
    default = next(r for r in ok if r.schedule_kind == "default")
    searched = [r for r in ok if r.schedule_kind == "searched"]
    assert len(searched) >= 6
    assert min(r.median_s for r in searched) < default.median_s  # TVM's default lowering is untuned
    from opscope.collector.library import LibraryRunner

    lib = LibraryRunner()
    try:
        res = lib.run([RunJob(case_json(library_case(op)), (), 1, QUICK, 30.0)])[0]
    finally:
        lib.close()
    assert res.status == "ok" and res.threads == 1, res.error
    # the worker times what torch takes for the same call here, in this process, with one thread
    import statistics

    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, w = torch.rand(64, 64), torch.rand(64, 64)
        here = statistics.median(time_callable(lambda: torch.nn.functional.linear(x, w), QUICK.__dict__))
    finally:
        torch.set_num_threads(saved)
    assert here / 3 < statistics.median(res.latencies_s) < here * 3


@pytest.mark.slow
def test_an_opscope_predictor_ranks_the_search_candidates(tmp_path, monkeypatch):
    import numpy as np

    from opscope.collector.te_ops import dense_operator

    seen: list[int] = []

    class Spy:
        def predict(self, frame):
            seen.append(len(frame))
            assert {"schedule_id", "trace_json", "knobs_json", "threads"} <= set(frame.columns)
            return np.full(len(frame), 1e-3)

    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    monkeypatch.setattr("opscope.predictor.models.persist.load_predictor", lambda path: Spy())
    op = dense_operator(16, 16, 16)
    cfg = SearchConfig(trials=8, per_round=4, population=16, cost_model=str(pred_dir))
    recs = collect([op], trials=8, threads=(1,), store=tmp_path / "p.db",
                   roles=Roles(FakeSampler(), FakeBuilder(), FakeRunner(), _target()), protocol=QUICK,
                   progress=False, search="evolutionary", search_config=cfg)
    searched = [r for r in recs if r.schedule_kind == "searched"]
    assert len(searched) == 8 and all(dict(r.origin)["cost_model"] == "predictor" for r in searched)
    assert seen and sum(seen) >= 8  # the evolution asked the predictor about its candidates


@pytest.mark.slow
def test_with_an_online_model_the_predictor_ranks_only_until_it_has_learned_enough(tmp_path, monkeypatch):
    import numpy as np

    from opscope.collector.te_ops import dense_operator

    calls: list[int] = []

    class Spy:
        def predict(self, frame):
            calls.append(len(frame))
            return np.full(len(frame), 1e-3)

    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    monkeypatch.setattr("opscope.predictor.models.persist.load_predictor", lambda path: Spy())
    asked = {}
    for spec in (str(pred_dir), f"{pred_dir}+xgb"):
        calls.clear()
        cfg = SearchConfig(trials=12, per_round=4, population=16, cost_model=spec, online_after=4)
        runner = FakeRunner(latency=lambda sid, t: 3e-3 if sid == "default" else (1 + int(sid[-3:], 16) / 4096) * 1e-3)
        recs = collect([dense_operator(16, 16, 16)], trials=12, threads=(1,), store=tmp_path / f"h{len(asked)}.db",
                       roles=Roles(FakeSampler(), FakeBuilder(), runner, _target()), protocol=QUICK, progress=False,
                       search="evolutionary", search_config=cfg)
        searched = [r for r in recs if r.schedule_kind == "searched"]
        assert len(searched) >= 10 and {dict(r.origin)["cost_model"] for r in searched} == {cfg.cost_model_name}
        asked[cfg.cost_model_name] = len(calls)
    # the predictor alone is asked in every round; with the online model, only until 4 results are in
    assert 0 < asked["predictor+xgb"] < asked["predictor"]


def test_the_gpu_library_worker_says_when_torch_sees_no_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the GPU check script covers this")
    from opscope.collector.library import LibraryRunner

    lib = LibraryRunner("cuda")
    try:
        res = lib.run([RunJob(case_json(library_case(_dense())), (), 1, QUICK, 30.0)])[0]
        assert lib.backend(1) == "cuDNN/cuBLAS"
    finally:
        lib.close()
    assert res.status == "run_error" and "no CUDA device" in res.error
