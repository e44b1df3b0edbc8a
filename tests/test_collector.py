"""The collection loop with the fake twins: planning, resume, failures as data, progress."""

from __future__ import annotations

import pytest
from fakes import FakeBuilder, FakeRunner, FakeSampler

from opscope.collector import Protocol, Roles, collect, parse_threads, select_operators
from opscope.collector.roles import RunResult
from opscope.errors import OpscopeError
from opscope.store import load_dataframe, open_store
from opscope.workloads.operator import Operator, TensorInfo


def _op(n: int, kind: str = "dense", flops: int | None = None) -> Operator:
    return Operator(name=f"{kind}_{n}", kind=kind, tensors=(TensorInfo("A", (n,), "float32", "input"),),
                    flops=flops if flops is not None else 2 * n, models=("m",))


def _roles(**runner) -> Roles:
    return Roles(FakeSampler(), FakeBuilder(), FakeRunner(**runner), None)


def test_parse_threads():
    assert parse_threads("1,2") == (1, 2)
    assert parse_threads("2, 2,1") == (2, 1)
    assert parse_threads(3) == (3,)
    import os

    assert parse_threads("all") == (os.cpu_count(),)
    for bad in ("0", "x", ""):
        with pytest.raises(OpscopeError, match="threads"):
            parse_threads(bad)


def test_select_operators_filters_by_kind_and_takes_heaviest_of_each_kind():
    ops = [_op(1, "conv2d", 10), _op(2, "conv2d", 30), _op(3, "dense", 20), _op(4, "pool", 1)]
    assert [o.name for o in select_operators(ops, "conv2d")] == ["conv2d_1", "conv2d_2"]
    picked = select_operators(ops, None, max_ops=3)
    assert [o.name for o in picked] == ["conv2d_2", "dense_3", "pool_4"]
    with pytest.raises(OpscopeError, match="^--ops: no operator of kind or name softmax$"):
        select_operators(ops, "softmax")


def test_several_models_skip_one_without_the_kinds_asked_for(capsys):
    from opscope.collector.sweep import select_from_models

    models = {"cnn": [_op(1, "conv2d", 10), _op(4, "pool", 1)], "mlp": [_op(3, "dense", 20)]}
    picked = select_from_models(["cnn", "mlp"], models.__getitem__, "pool", quiet=True)
    assert [o.name for o in picked] == ["pool_4"]
    assert "mlp: no operator of kind or name pool; skipped" in capsys.readouterr().err
    with pytest.raises(OpscopeError, match="^--ops: no operator of kind or name softmax in cnn, mlp$"):
        select_from_models(["cnn", "mlp"], models.__getitem__, "softmax", quiet=True)
    with pytest.raises(OpscopeError, match="^--ops: no operator of kind or name pool$"):  # one model: as before
        select_from_models(["mlp"], models.__getitem__, "pool", quiet=True)


def test_collect_writes_every_schedule_and_thread_then_resumes(tmp_path):
    db = tmp_path / "r.db"
    ops = [_op(1), _op(2)]
    recs = collect(ops, trials=3, threads=(1, 2), store=db, roles=_roles(), progress=False)
    assert len(recs) == 2 * 4 * 2
    assert {(r.op.key, r.schedule_id, r.threads) for r in recs}.__len__() == 16
    assert sum(r.schedule_kind == "default" for r in recs) == 4
    df = load_dataframe(db)
    assert len(df) == 16 and set(df["status"]) == {"ok"}
    # the fake latency halves with two threads; the record holds what the runner measured
    one = df[(df.schedule_id == "default") & (df.threads == 1)]["latency_median_s"].iloc[0]
    two = df[(df.schedule_id == "default") & (df.threads == 2)]["latency_median_s"].iloc[0]
    assert one == pytest.approx(2 * two)
    # same command again: nothing new is measured or written
    roles = _roles()
    assert collect(ops, trials=3, threads=(1, 2), store=db, roles=roles, progress=False) == []
    assert roles.runner.jobs == [] and roles.builder.built == []
    # more trials: only the new schedules are built and measured
    roles = _roles()
    more = collect(ops, trials=5, threads=(1, 2), store=db, roles=roles, progress=False)
    assert len(more) == 2 * 2 * 2 and len(roles.builder.built) == 4
    assert len(load_dataframe(db)) == 24


def test_an_operator_shared_by_two_models_is_measured_once(tmp_path):
    from dataclasses import replace

    a = _op(1)
    b = replace(a, models=("other",))
    roles = _roles()
    recs = collect([a, b], trials=1, threads=(1,), store=tmp_path / "r.db", roles=roles, progress=False)
    assert len(recs) == 2 and len(roles.runner.jobs) == 2
    assert set(load_dataframe(tmp_path / "r.db")["models"]) == {"m,other"}


def test_overlapped_builds_give_the_same_records(tmp_path):
    ops = [_op(1), _op(2)]
    plain = collect(ops, trials=9, threads=(1, 2), store=tmp_path / "a.db", roles=_roles(), progress=False,
                    batch_size=4)
    roles = _roles()
    over = collect(ops, trials=9, threads=(1, 2), store=tmp_path / "b.db", roles=roles, progress=False,
                   batch_size=4, overlap=True)
    key = lambda r: (r.op.key, r.schedule_id, r.threads, r.status, r.raw_latencies_s)  # noqa: E731
    assert sorted(map(key, plain)) == sorted(map(key, over)) and len(over) == 2 * 10 * 2
    assert len(roles.builder.built) == 20


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path):
    op = _op(1)
    cands = FakeSampler().candidates(op, 4, 0)
    s1, s2, s3 = cands[1].schedule_id, cands[2].schedule_id, cands[3].schedule_id
    roles = Roles(FakeSampler(), FakeBuilder(fail=[s1]), FakeRunner(status={s2: "crash", s3: "timeout"}), None)
    recs = collect([op], trials=4, threads=(1,), store=tmp_path / "r.db", roles=roles, progress=False,
                   protocol=Protocol(check_first=False))
    status = {r.schedule_id: r.status for r in recs}
    assert status[s1] == "build_error" and status[s2] == "crash" and status[s3] == "timeout"
    assert status["default"] == "ok" and status[cands[4].schedule_id] == "ok"
    assert all(r.error for r in recs if r.status != "ok")


def test_wrong_result_of_the_checked_schedule_covers_all_its_thread_counts(tmp_path):
    op = _op(1)
    first = FakeSampler().candidates(op, 1, 0)[1].schedule_id
    roles = Roles(FakeSampler(), FakeBuilder(), FakeRunner(status={first: "wrong_result"}), None)
    recs = collect([op], trials=2, threads=(1, 2), store=tmp_path / "r.db", roles=roles, progress=False)
    assert [r.status for r in recs if r.schedule_id == first] == ["wrong_result", "wrong_result"]
    checked = [j for j in roles.runner.jobs if j.reference]
    assert len(checked) == 1 and checked[0].reference == "fake:default"
    assert sum(1 for j in roles.runner.jobs if j.artifact == f"fake:{first}") == 1  # not measured again


def test_remeasure_noisy_appends_a_new_attempt(tmp_path):
    db = tmp_path / "r.db"
    op = _op(1)

    def noisy_runner(cv_high: bool):
        runner = FakeRunner()
        if cv_high:
            runner.run = lambda batch: [
                __import__("opscope.collector.roles", fromlist=["RunResult"]).RunResult(
                    "ok", (1e-3, 2e-3, 1e-3), threads=j.threads) for j in batch]
        return runner

    collect([op], trials=1, threads=(1,), store=db, progress=False,
            roles=Roles(FakeSampler(), FakeBuilder(), noisy_runner(True), None))
    df = load_dataframe(db)
    assert df["noisy"].all()
    again = collect([op], trials=1, threads=(1,), store=db, progress=False, remeasure_noisy=True,
                    roles=Roles(FakeSampler(), FakeBuilder(), noisy_runner(False), None))
    assert len(again) == 2 and all(r.attempt == 1 for r in again)
    df = load_dataframe(db)
    assert len(df) == 2 and not df["noisy"].any()
    with open_store(db) as st:
        assert st.count() == 4  # append-only: the noisy attempts are still there


def test_progress_goes_to_stderr(tmp_path, capsys):
    collect([_op(1)], trials=2, threads=(1,), store=tmp_path / "r.db", roles=_roles(), progress=True)
    err = capsys.readouterr().err
    assert "measured 3" in err and "ETA" in err and "failed 0" in err


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(OpscopeError, match="trials"):
        collect([_op(1)], trials=-1, store=tmp_path / "r.db", roles=_roles())
    with pytest.raises(OpscopeError, match="timeout"):
        collect([_op(1)], timeout_s=0, store=tmp_path / "r.db", roles=_roles())
    with pytest.raises(OpscopeError, match="protocol field 'repeat'"):
        Protocol(repeat=0)
    with pytest.raises(OpscopeError, match="eyeriss-like"):
        collect([_op(1)], target="eyeriss-like", store=tmp_path / "r.db")


def test_model_params_qualified_wins_and_unknown_is_ignored_unless_qualified():
    from opscope.commands.collect import _params, model_params

    params = _params(["image_size=64", "mobilenet_v2.image_size=96", "layers=1", "mlp.layers=3"])
    assert model_params("mobilenet_v2", params, {"image_size", "num_classes"}) == {"image_size": 96}
    assert model_params("resnet18", params, {"image_size", "num_classes"}) == {"image_size": 64}
    assert model_params("mlp", params, {"in_features", "hidden", "layers"}) == {"layers": 3}
    with pytest.raises(OpscopeError, match="no parameter 'depth'"):
        model_params("mlp", _params(["mlp.depth=3"]), {"layers"})
    with pytest.raises(OpscopeError, match="KEY=INT"):
        _params(["image_size=big"])


class _FarmRunner(FakeRunner):
    """A runner with several boards: the sweep hands it that many jobs per call."""

    parallel_slots = 3

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls: list[int] = []

    def run(self, batch):
        self.calls.append(len(batch))
        return super().run(batch)


def test_a_farm_runner_gets_batches_of_its_boards_and_a_local_one_single_jobs(tmp_path):
    op = _op(3)
    first = FakeSampler().candidates(op, 4, 0)[1].schedule_id
    farm = _FarmRunner(status={first: "wrong_result"})
    recs = collect([op], trials=4, threads=(1, 2), store=tmp_path / "farm.db", progress=False,
                   roles=Roles(FakeSampler(), FakeBuilder(), farm, None))
    assert len(recs) == 5 * 2
    # the checked schedule's first run goes alone (it compares with the default build); its wrong
    # result covers its other thread count without a run; the other 8 jobs go up to 3 at a time
    assert sum(farm.calls) == 1 + 8 and max(farm.calls) == 3 and farm.calls.count(1) <= 2
    assert [r.status for r in recs if r.schedule_id == first] == ["wrong_result"] * 2
    local = FakeRunner()
    local_calls: list[int] = []
    local_run = local.run
    local.run = lambda batch: (local_calls.append(len(batch)), local_run(batch))[1]
    collect([op], trials=4, threads=(1, 2), store=tmp_path / "local.db", progress=False,
            roles=Roles(FakeSampler(), FakeBuilder(), local, None))
    assert local_calls and set(local_calls) == {1}


def test_workers_time_each_measurement_in_separate_runners_and_keep_all_repeats(tmp_path):
    runner = FakeRunner(latency=lambda sid, threads: 2e-3)
    roles = Roles(FakeSampler(), FakeBuilder(), runner, None)
    protocol = Protocol(repeat=3, workers=2)
    recs = collect([_op(8)], trials=2, threads=(1,), store=tmp_path / "s.db", protocol=protocol, roles=roles,
                   progress=False)
    assert len(recs) == 3 and len(runner.replicas) == 1
    # every schedule was timed by both runners, and the record holds 2 workers x 3 repeats
    assert len(runner.jobs) == 3 and len(runner.replicas[0].jobs) == 3
    assert all(len(r.raw_latencies_s) == 6 for r in recs)
    # workers=1 protocols keep the id they had before the field existed
    assert "workers" not in Protocol().to_json() and '"workers": 2' in protocol.to_json()


def test_workers_that_disagree_make_the_record_noisy(tmp_path):
    class Slow(FakeRunner):  # the second process sees the kernel 30% slower
        def run(self, batch):
            return [RunResult(r.status, tuple(x * 1.3 for x in r.latencies_s), r.error, r.threads)
                    for r in super().run(batch)]

    runner = FakeRunner(latency=lambda sid, threads: 1e-3)
    runner.replica = lambda: Slow(latency=lambda sid, threads: 1e-3)
    roles = Roles(FakeSampler(), FakeBuilder(), runner, None)
    recs = collect([_op(8)], trials=0, threads=(1,), store=tmp_path / "s.db", roles=roles, progress=False,
                   protocol=Protocol(repeat=3, workers=2, noisy_cv=0.05))
    # repeats 1.000, 1.001, 1.002 ms and 1.300, 1.301, 1.303 ms: CV about 0.14 > 0.05
    assert recs[0].noisy and recs[0].min_s == pytest.approx(1e-3)


def test_max_minutes_stops_at_a_measurement_boundary_and_a_rerun_resumes(tmp_path, capsys):
    store = tmp_path / "s.db"
    ops = [_op(n) for n in (8, 9, 10, 11)]
    # each measurement takes 0.2 s; 0.01 minutes = 0.6 s: the limit falls inside the first operators
    first = collect(ops, trials=3, threads=(1,), store=store, roles=_roles(delay_s=0.2), max_minutes=0.01,
                    batch_size=2)
    assert 0 < len(first) < 16
    assert "stopped at the 0.01-minute limit" in capsys.readouterr().err
    with open_store(store) as st:
        assert st.count() == len(first)  # everything measured before the stop is stored
    rest = collect(ops, trials=3, threads=(1,), store=store, roles=_roles(), progress=False)
    assert len(first) + len(rest) == 16
    df = load_dataframe(store)
    assert len(df) == 16 and not df.duplicated(["workload_key", "schedule_id", "threads"]).any()
    with pytest.raises(OpscopeError, match="max_minutes"):
        collect(ops, trials=0, threads=(1,), store=store, roles=_roles(), max_minutes=0)


def test_remeasure_before_takes_again_only_what_was_taken_earlier(tmp_path):
    """Rows taken before the moment get a new attempt; rows taken after it are left alone."""
    import sqlite3

    db = tmp_path / "r.db"
    op = _op(1)
    collect([op], trials=1, threads=(1, 2), store=db, progress=False,
            roles=Roles(FakeSampler(), FakeBuilder(), FakeRunner(), None))
    con = sqlite3.connect(db)  # the 1-thread rows were taken on a busy morning, the 2-thread rows later
    con.execute("UPDATE measurements SET created_at='2026-12-01T07:30:00+00:00' WHERE threads=1")
    con.execute("UPDATE measurements SET created_at='2026-12-01T10:00:00+00:00' WHERE threads=2")
    con.commit()
    con.close()
    again = collect([op], trials=1, threads=(1, 2), store=db, progress=False,
                    remeasure_before="2026-12-01T09:20",
                    roles=Roles(FakeSampler(), FakeBuilder(), FakeRunner(), None))
    assert sorted((r.threads, r.attempt) for r in again) == [(1, 1), (1, 1)]
    with open_store(db) as st:
        assert st.count() == 6  # append-only: 4 first attempts + 2 new ones
    assert collect([op], trials=1, threads=(1, 2), store=db, progress=False, remeasure_before="2026-12-01T09:20Z",
                   roles=Roles(FakeSampler(), FakeBuilder(), FakeRunner(), None)) == []


def test_remeasure_before_refuses_a_time_it_cannot_read(tmp_path, capsys):
    from opscope.cli import main

    assert main(["collect", "--model", "mlp", "--store", str(tmp_path / "s.db"),
                 "--remeasure-before", "yesterday"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--remeasure-before 'yesterday'" in err[0] and "ISO 8601" in err[0]
    assert not (tmp_path / "s.db").exists()
