"""Co-run tables in an SQLite file: round trip, failures kept, versioning, the training frame."""

from __future__ import annotations

import json
import sqlite3

import pytest

from opscope.corun.measure import CorunProtocol, CorunRecord, MemberResult
from opscope.corun.partition import Arrangement, Slot
from opscope.corun.table import corun_frame, load_corun, save_corun
from opscope.errors import OpscopeError, StoreError

SPLIT = Arrangement("disjoint", (Slot((0,), 1), Slot((1,), 1)))
SEQ = Arrangement("sequential", (Slot((0, 1), 2),))


def member(name, cores, alone, together=(), nbytes=1000.0, flops=2000.0):
    return MemberResult(name, (f"k{name}",), (name,), cores, len(cores), True, flops, nbytes, alone, together)


def records():
    ok = CorunRecord(SPLIT, (member("a", (0,), (1e-3, 1.2e-3, 1.1e-3), (1.5e-3, 1.4e-3)),
                             member("b", (1,), (2e-3, 2e-3), (2.2e-3,), nbytes=4000.0)),
                     (2.3e-3, 2.4e-3), CorunProtocol(), label="t", machine_id="m1", created_at=1_700_000_000.5)
    seq = CorunRecord(SEQ, (member("a", (0, 1), (0.6e-3,)), member("b", (0, 1), (1.1e-3,))), (1.8e-3,),
                      CorunProtocol(makespan_repeats=1), label="t")
    failed = CorunRecord(SPLIT, (member("a", (0,), ()), member("b", (1,), ())), (), CorunProtocol(),
                         status="run_error", error="worker 1: cannot load", label="t")
    return [ok, seq, failed]


def test_round_trip_keeps_everything_including_failures(tmp_path):
    db = tmp_path / "runs.db"
    recs = records()
    assert save_corun(db, recs) == [1, 2, 3]
    back = load_corun(db)
    assert [r.status for r in back] == ["ok", "ok", "run_error"]
    assert back[0].members == recs[0].members
    assert back[0].makespan_s == recs[0].makespan_s and back[0].arrangement == SPLIT
    assert back[0].created_at == pytest.approx(recs[0].created_at)
    assert back[2].error == "worker 1: cannot load" and back[2].makespan_s == ()
    # derived statistics are stored for SQL users too
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT slowdown FROM corun_members WHERE run_id=1 AND slot=0").fetchone()
    assert row[0] == pytest.approx(1.45e-3 / 1.1e-3)  # median together / median alone


def test_frame_rows_and_partner_features(tmp_path):
    frame = corun_frame(records())
    # the ok co-run record gives a row per member, the sequential one a row for the run, the failed none
    assert len(frame) == 3
    assert len(corun_frame(records(), sequential=False)) == 2
    seq = frame[frame["kind"] == "sequential"].iloc[0]
    # alone medians 0.6 ms + 1.1 ms = 1.7 ms predicted; 1.8 ms measured
    assert seq["alone_s"] == pytest.approx(1.7e-3) and seq["together_s"] == pytest.approx(1.8e-3)
    assert seq["slowdown"] == pytest.approx(1.8 / 1.7)
    a = frame[frame["task"] == "a"].iloc[0]
    assert a["partner_bytes"] == 4000.0 and a["partner_alone_s"] == pytest.approx(2e-3)
    assert a["intensity"] == pytest.approx(2000.0 / 1000.0)
    assert a["shared"] == 0 and a["total_cores"] == 2
    assert a["pair_id"] == "ka|kb"


def test_versioning_is_the_stores(tmp_path):
    db = tmp_path / "runs.db"
    save_corun(db, [])
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("5",)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name='corun_meta'").fetchone() is None
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="newer than this opscope"):
        load_corun(db)
    with pytest.raises(StoreError, match="newer than this opscope"):
        save_corun(db, records())


# the co-run tables as they were made before the store's version 5, under their own version
_OLD_CORUN = """
CREATE TABLE corun_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO corun_meta VALUES ('schema_version', '1');
CREATE TABLE corun_runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT NOT NULL,
    arrangement_kind TEXT NOT NULL, arrangement TEXT NOT NULL, arrangement_json TEXT NOT NULL,
    protocol_json TEXT NOT NULL, machine_id TEXT NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL,
    makespan_raw_s TEXT NOT NULL, makespan_median_s REAL, n_members INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE corun_members (run_id INTEGER NOT NULL REFERENCES corun_runs(run_id), slot INTEGER NOT NULL,
    task TEXT NOT NULL, kernel_keys TEXT NOT NULL, kernel_names TEXT NOT NULL, cores TEXT NOT NULL,
    threads INTEGER NOT NULL, pinned INTEGER NOT NULL, flops REAL NOT NULL, bytes REAL NOT NULL,
    alone_raw_s TEXT NOT NULL, together_raw_s TEXT NOT NULL, alone_median_s REAL, together_median_s REAL,
    slowdown REAL, PRIMARY KEY (run_id, slot));
CREATE INDEX corun_members_keys ON corun_members (kernel_keys);
INSERT INTO corun_runs VALUES (1, 'old', 'sequential', 'seq', '{arr}', '{proto}', 'm0', 'ok', '',
    '[0.0018]', 0.0018, 1, '2026-01-01T00:00:00+00:00');
INSERT INTO corun_members VALUES (1, 0, 'a', 'ka', 'a', '[0, 1]', 2, 1, 2000.0, 1000.0, '[0.0006]', '[]',
    0.0006, NULL, NULL);
"""


def test_old_corun_file_is_read_without_writing_and_migrated_when_written(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(_OLD_CORUN.format(arr=json.dumps(SEQ.to_dict()), proto=json.dumps(CorunProtocol().to_dict())))
    conn.close()
    before = db.read_bytes()
    back = load_corun(db)
    assert db.read_bytes() == before  # reading migrates in memory only
    assert [(r.label, r.makespan_s, r.members[0].alone_s) for r in back] == [("old", (0.0018,), (0.0006,))]
    assert save_corun(db, records()) == [2, 3, 4]  # the old run keeps its id; new ones follow
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("5",)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name='corun_meta'").fetchone() is None
    assert [r.label for r in load_corun(db)] == ["old", "t", "t", "t"]


def test_bad_paths_and_records(tmp_path):
    with pytest.raises(StoreError, match="no such file"):
        load_corun(tmp_path / "missing.db")
    with pytest.raises(StoreError, match="is a directory"):
        save_corun(tmp_path, [])
    with pytest.raises(OpscopeError, match="status ok but no makespan"):
        CorunRecord(SPLIT, (), (), CorunProtocol())
    with pytest.raises(OpscopeError, match="disjoint arrangement reuses cores"):
        Arrangement("disjoint", (Slot((0,), 1), Slot((0,), 1)))
