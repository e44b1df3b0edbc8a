"""A collection killed with SIGKILL loses at most the record in flight and resumes cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from opscope.store import load_dataframe, open_store

TESTS = os.path.dirname(os.path.abspath(__file__))

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])  # the tests folder, where the fake twins live
    from opscope.collector import Roles, collect
    from fakes import FakeBuilder, FakeRunner, FakeSampler
    from opscope.workloads.operator import Operator, TensorInfo
    ops = [Operator(name=f"op{i}", kind="dense", tensors=(TensorInfo("A", (i + 1,), "float32", "input"),),
                    flops=2 * (i + 1)) for i in range(3)]
    roles = Roles(FakeSampler(), FakeBuilder(), FakeRunner(delay_s=float(sys.argv[2])), None)
    collect(ops, trials=5, threads=(1, 2), store=sys.argv[1], roles=roles, progress=False)
""")


def _count(db) -> int:
    if not os.path.exists(db):
        return 0
    with open_store(db) as st:
        return st.count()


def _kill_once(script: str, db: str, delay_s: str, count, at_least: int, within_s: float) -> int:
    """Run ``script`` on ``db`` in a child process, SIGKILL it once ``count(db)`` reaches ``at_least``
    (or it ends, or ``within_s`` pass), and return ``count(db)`` after the kill."""
    proc = subprocess.Popen([sys.executable, "-c", script, db, delay_s, TESTS])
    deadline = time.monotonic() + within_s
    while count(db) < at_least and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return count(db)


def test_sigkill_mid_collection_then_resume(tmp_path):
    db = str(tmp_path / "r.db")
    total = 3 * 6 * 2
    killed_at = _kill_once(SCRIPT, db, "0.05", _count, 8, 120)
    assert 8 <= killed_at < total, "the kill must land in the middle of the collection"
    df = load_dataframe(db)
    assert len(df) == killed_at and (df["status"] == "ok").all()  # no corrupt or partial row
    subprocess.run([sys.executable, "-c", SCRIPT, db, "0", TESTS], check=True, timeout=120)
    df = load_dataframe(db)
    assert len(df) == total
    keys = df[["workload_key", "schedule_id", "threads"]].drop_duplicates()
    assert len(keys) == total  # no duplicates
    with open_store(db) as st:
        assert st.connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


SEARCH_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from fakes import FakeBuilder, FakeRunner, FakeSampler
    from opscope.collector import Protocol, Roles, collect
    from opscope.collector.search import SearchConfig
    from opscope.collector.te_ops import dense_operator
    from opscope.targets import load_target, tvm_target
    cfg = SearchConfig(trials=12, per_round=4, population=32, cost_model="random")
    roles = Roles(FakeSampler(), FakeBuilder(), FakeRunner(delay_s=float(sys.argv[2])), tvm_target(load_target("host")))
    collect([dense_operator(16, 16, 16)], trials=12, threads=(1,), store=sys.argv[1], roles=roles,
            protocol=Protocol(repeat=3, min_repeat_ms=5), progress=False, search="evolutionary", search_config=cfg)
""")


def _searched(db) -> int:
    if not os.path.exists(db):
        return 0
    with open_store(db) as st:
        return int(st.connection.execute(
            "SELECT COUNT(*) FROM measurements JOIN schedules USING (workload_key, schedule_id) "
            "WHERE schedules.schedule_kind = 'searched'").fetchone()[0])


@pytest.mark.slow
def test_sigkill_mid_search_then_resume(tmp_path):
    """A search killed with SIGKILL (real MetaSchedule proposals, fake builds and runs) keeps every
    schedule it stored; the same command then goes on to its budget without measuring any twice."""
    import json

    db = str(tmp_path / "s.db")
    killed_at = _kill_once(SEARCH_SCRIPT, db, "0.3", _searched, 4, 240)
    assert 4 <= killed_at < 12, "the kill must land in the middle of the search"
    first = load_dataframe(db)
    assert (first["status"] == "ok").all()  # no corrupt or partial row
    subprocess.run([sys.executable, "-c", SEARCH_SCRIPT, db, "0", TESTS], check=True, timeout=240)
    df = load_dataframe(db)
    searched = df[df["schedule_kind"] == "searched"]
    assert killed_at < len(searched) <= 12
    assert searched["schedule_id"].is_unique  # nothing measured twice
    assert set(first["schedule_id"]) <= set(df["schedule_id"])  # nothing stored before the kill was lost
    rounds = [json.loads(o)["round"] for o in searched["origin_json"]]
    assert rounds == sorted(rounds)  # the second run went on from the rounds the first had stored
    with open_store(db) as st:
        assert st.connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
