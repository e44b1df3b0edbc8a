"""The store: schema version, migrations from version 1, round trip, uniqueness, export."""

from __future__ import annotations

import json
import math
import sqlite3

import pandas as pd
import pytest

from opscope.collector.protocol import Protocol
from opscope.errors import OpscopeError, StoreError
from opscope.store import COLUMNS, SCHEMA_VERSION, Record, export, load_dataframe, open_store
from opscope.store.schema import migrate
from opscope.workloads.operator import GemmView, Operator, TensorInfo


def _op(m: int = 64) -> Operator:
    return Operator(
        name=f"dense_{m}", kind="dense",
        tensors=(TensorInfo("X", (m, 32), "float32", "input"), TensorInfo("W", (16, 32), "float32", "weight"),
                 TensorInfo("Y", (m, 16), "float32", "output")),
        flops=2 * m * 16 * 32, gemm=GemmView(1, m, 16, 32), models=("mlp",),
    )


def _rec(op: Operator, sid: str = "s1", threads: int = 1, lat=(1e-3, 1.1e-3, 0.9e-3), status: str = "ok",
         attempt: int = 0, knobs=(("tile_i_0", 4), ("loop_order", "i0 j0"))) -> Record:
    return Record(op=op, schedule_id=sid, schedule_kind="sampled", trace_json='[["x"]]', knobs=knobs,
                  threads=threads, target="host", machine_id="m1", protocol=Protocol(),
                  status=status, error="" if status == "ok" else "boom",
                  raw_latencies_s=lat if status == "ok" else (), attempt=attempt)


def test_fresh_store_is_at_the_current_version(tmp_path):
    with open_store(tmp_path / "a.db") as st:
        assert st.version == SCHEMA_VERSION == 5
        mode = st.connection.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_round_trip_has_exactly_the_contract_columns_and_values(tmp_path):
    op = _op()
    path = tmp_path / "a.db"
    with open_store(path) as st:
        st.add_machine("m1", {"cpu_model": "x"})
        assert st.add(_rec(op)) is not None
        assert st.add(_rec(op, sid="s2", threads=2, knobs=(("unroll", 16),))) is not None
    df = load_dataframe(path)
    fixed = [c for c in df.columns if not c.startswith("knob_")]
    assert tuple(fixed) == COLUMNS
    assert sorted(c for c in df.columns if c.startswith("knob_")) == ["knob_loop_order", "knob_tile_i_0", "knob_unroll"]
    row = df.iloc[0]
    assert row["workload_key"] == op.key and row["kind"] == "dense" and row["models"] == "mlp"
    assert row["bytes"] == (64 * 32 + 16 * 32 + 64 * 16) * 4
    assert row["bytes_weight"] == 16 * 32 * 4
    assert json.loads(row["raw_latencies_s"]) == [1e-3, 1.1e-3, 0.9e-3]
    assert row["latency_median_s"] == pytest.approx(1e-3)
    assert row["latency_min_s"] == pytest.approx(0.9e-3)
    mean = 1e-3
    std = math.sqrt(((0.1e-3) ** 2 * 2) / 2)
    assert row["latency_std_s"] == pytest.approx(std)
    assert row["cv"] == pytest.approx(std / mean)
    assert bool(row["noisy"]) is True  # cv 0.1 > 0.05
    assert Operator.from_dict(json.loads(row["operator_json"])) == op
    assert math.isnan(df.iloc[1]["knob_tile_i_0"]) and df.iloc[1]["knob_unroll"] == 16


def test_same_measurement_twice_is_written_once(tmp_path):
    with open_store(tmp_path / "a.db") as st:
        st.add_machine("m1", {})
        assert st.add(_rec(_op())) is not None
        assert st.add(_rec(_op())) is None
        assert st.count() == 1
        assert st.add(_rec(_op(), attempt=1, lat=(2e-3, 2e-3))) is not None
    df = load_dataframe(tmp_path / "a.db")
    assert len(df) == 1 and df.iloc[0]["latency_median_s"] == pytest.approx(2e-3)  # latest attempt only


def test_failures_are_rows_with_nan_latency(tmp_path):
    with open_store(tmp_path / "a.db") as st:
        st.add_machine("m1", {})
        st.add(_rec(_op(), status="crash"))
    row = load_dataframe(tmp_path / "a.db").iloc[0]
    assert row["status"] == "crash" and row["error"] == "boom" and math.isnan(row["latency_median_s"])
    assert bool(row["noisy"]) is False


def test_record_checks_itself():
    with pytest.raises(ValueError, match="status"):
        _rec(_op(), status="exploded")
    with pytest.raises(ValueError, match="ok record"):
        _rec(_op(), lat=())
    with pytest.raises(ValueError, match="positive"):
        _rec(_op(), lat=(1e-3, -1.0))


# A database written by schema version 1: measurements carried trace and knobs on every row,
# without the pinned flag or the attempt counter.
_V1_ROWS = """
INSERT INTO machines VALUES ('m1', '{{"cpu_model": "old"}}', '2026-01-01T00:00:00+00:00');
INSERT INTO workloads VALUES ('k1', 'dense_64', 'dense', 'float32', 'mlp', '{op}', 65536, 12288, 8192,
    2048, 4096, 1);
INSERT INTO measurements (workload_key, schedule_id, schedule_kind, trace_json, knobs_json, threads,
    target, machine_id, protocol_id, protocol_json, status, error, raw_latencies_s, created_at)
VALUES ('k1', 'default', 'default', '[]', '{{}}', 1, 'host', 'm1', 'p0', '{{"noisy_cv": 0.05}}', 'ok', '',
    '[0.002, 0.002, 0.002]', '2026-01-01T00:00:00+00:00'),
       ('k1', 's9', 'sampled', '[["t"]]', '{{"unroll": 64}}', 2, 'host', 'm1', 'p0', '{{"noisy_cv": 0.05}}',
    'timeout', 'slow', '[]', '2026-01-01T00:00:01+00:00');
"""


def test_version_1_database_is_migrated_and_loads(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, up_to=1) == 1
    op_json = json.dumps(_op().to_dict()).replace("'", "''")
    conn.executescript(_V1_ROWS.format(op=op_json))
    conn.close()
    with open_store(path) as st:
        assert st.version == 5
    df = load_dataframe(path)
    assert len(df) == 2
    assert list(df["workload_script"]) == ["", ""]  # stored before version 3: no TIR
    assert list(df["origin_json"]) == ["{}", "{}"]  # stored before version 4: no origin
    assert list(df["schedule_id"]) == ["default", "s9"]
    assert list(df["status"]) == ["ok", "timeout"]
    assert df.iloc[0]["latency_median_s"] == pytest.approx(0.002)
    assert list(df["pinned"]) == [False, False]
    assert df.iloc[1]["knob_unroll"] == 64


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    with open_store(path) as st:
        st.connection.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="newer"):
        open_store(path)


def test_bad_paths_give_one_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nope" / "a.db")
    junk = tmp_path / "junk.db"
    junk.write_text("this is not sqlite " * 100)
    with pytest.raises(StoreError, match="junk.db"):
        open_store(junk)
    with pytest.raises(StoreError, match="no such file"):
        load_dataframe(tmp_path / "missing.db")


def test_export_parquet_and_csv_have_the_same_columns(tmp_path):
    path = tmp_path / "a.db"
    with open_store(path) as st:
        st.add_machine("m1", {})
        st.add(_rec(_op()))
        st.add(_rec(_op(), sid="s2", status="build_error"))
    assert export(path, tmp_path / "x.parquet") == 2
    assert export(path, tmp_path / "x.csv") == 2
    pq = pd.read_parquet(tmp_path / "x.parquet")
    csv = pd.read_csv(tmp_path / "x.csv")
    assert list(pq.columns) == list(csv.columns) == list(load_dataframe(path).columns)
    assert list(pq["status"]) == ["ok", "build_error"]
    with pytest.raises(OpscopeError, match=r"\.parquet or \.csv"):
        export(path, tmp_path / "x.json")


def test_export_command(tmp_path, capsys):
    from opscope.cli import main

    path = tmp_path / "a.db"
    with open_store(path) as st:
        st.add_machine("m1", {})
        st.add(_rec(_op()))
    assert main(["export", "--store", str(path), "--out", str(tmp_path / "o.csv")]) == 0
    assert "wrote 1 measurements" in capsys.readouterr().out
    assert main(["export", "--store", str(tmp_path / "none.db"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "none.db" in capsys.readouterr().err


def test_version_2_store_read_only_is_migrated_in_memory_and_left_untouched(tmp_path):
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, up_to=2) == 2
    conn.close()
    before = path.read_bytes()
    assert len(load_dataframe(path)) == 0
    assert path.read_bytes() == before  # a read-only load never migrates the file
    with open_store(path) as st:  # opening to write migrates it
        assert st.version == 5
        cols = [r[1] for r in st.connection.execute("PRAGMA table_info(workloads)")]
        mcols = [r[1] for r in st.connection.execute("PRAGMA table_info(measurements)")]
    assert cols[-1] == "workload_script"
    assert mcols[-1] == "origin_json"


def test_searched_and_library_rows_keep_their_origin_and_history_reads_them(tmp_path):
    path = tmp_path / "o.db"
    with open_store(path) as st:
        st.add_machine("m1", {})
        st.add(_rec(_op()))
        st.add(Record(op=_op(), schedule_id="s5", schedule_kind="searched", trace_json='[["x"],[]]', knobs=(),
                      threads=1, target="host", machine_id="m1", protocol=Protocol(), status="ok",
                      raw_latencies_s=(4e-4, 5e-4), origin={"search": "evolutionary", "round": 2}))
        st.add(Record(op=_op(), schedule_id="lib:torch", schedule_kind="library", trace_json="[]", knobs=(),
                      threads=1, target="host", machine_id="m1", protocol=Protocol(), status="ok",
                      raw_latencies_s=(3e-4,), origin={"library": "torch"}))
        hist = st.history(_op().key, "host", "m1", Protocol().protocol_id, threads=1)
        assert st.history(_op().key, "host", "m1", Protocol().protocol_id, threads=2) == []
    assert [h["schedule_kind"] for h in hist] == ["sampled", "searched", "library"]
    assert hist[1]["origin"] == {"round": 2, "search": "evolutionary"}
    assert hist[1]["raw_latencies_s"] == [4e-4, 5e-4]
    df = load_dataframe(path)
    assert [json.loads(o) for o in df["origin_json"]] == [{}, {"round": 2, "search": "evolutionary"},
                                                          {"library": "torch"}]
    with pytest.raises(ValueError, match="schedule kind"):
        Record(op=_op(), schedule_id="x", schedule_kind="tuned", trace_json="[]", knobs=(), threads=1,
               target="host", machine_id="m1", protocol=Protocol(), status="ok", raw_latencies_s=(1e-3,))


@pytest.mark.slow
def test_workload_script_rebuilds_the_operators_function(tmp_path):
    from opscope.collector.te_ops import dense_operator
    from opscope.store.sqlite import workload_module
    from opscope.workloads.extract import structural_key

    op = dense_operator(32, 16, 8)
    path = tmp_path / "s.db"
    with open_store(path) as st:
        st.add_machine("m1", {})
        st.add(_rec(op))
    script = load_dataframe(path)["workload_script"].iloc[0]
    assert "T.prim_func" in script
    rebuilt = workload_module(script)["main"]
    assert structural_key(rebuilt.with_attr("global_symbol", "main")) == op.key
    with pytest.raises(StoreError, match="stored without its TIR"):
        workload_module("")
