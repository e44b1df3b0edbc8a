"""Bad input at every edge: one line naming the file, field or value, a non-zero exit, no traceback,
nothing lost, and no file that is not opscope's touched.

One table row per case, run in-process through ``opscope.cli.main``; each row builds its files in
``tmp_path``, names the exact fragment of the one-line message, the exit status, and the files whose
bytes and mtime must come out unchanged.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from opscope.cli import main
from opscope.collector.protocol import Protocol
from opscope.store import Record, load_dataframe, open_store
from opscope.workloads.operator import GemmView, Operator, TensorInfo

NOISE = random.Random(0).randbytes  # the same "random" bytes on every run
REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "opscope" / "workloads" / "tables"


# -- fixtures of good files to break -------------------------------------------------------------
def _op(m: int = 64) -> Operator:
    return Operator(
        name=f"dense_{m}", kind="dense",
        tensors=(TensorInfo("X", (m, 32), "float32", "input"), TensorInfo("W", (16, 32), "float32", "weight"),
                 TensorInfo("Y", (m, 16), "float32", "output")),
        flops=2 * m * 16 * 32, gemm=GemmView(1, m, 16, 32), models=("mlp",),
    )


def _rec(op: Operator, sid: str = "s1") -> Record:
    return Record(op=op, schedule_id=sid, schedule_kind="sampled", trace_json="[]", knobs=(("tile", 4),),
                  threads=1, target="host", machine_id="m1", protocol=Protocol(), status="ok", error="",
                  raw_latencies_s=(1e-3, 1.1e-3, 0.9e-3))


def make_store(path: Path, rows: int = 3) -> Path:
    with open_store(path) as st:
        st.add_machine("m1", {"cpu": "x"})
        for i in range(rows):
            st.add(_rec(_op(16 * (i + 1)), sid=f"s{i}"))
        st.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def make_foreign(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    conn.execute("INSERT INTO contacts VALUES ('ada', '123')")
    conn.commit()
    conn.close()
    return path


def make_predictor(directory: Path, kind: str = "linear") -> Path:
    from opscope.predictor.evaluation.synthetic import synthetic_frame, synthetic_spec
    from opscope.predictor.models.persist import make_predictor as make
    from opscope.predictor.models.persist import save_predictor

    frame = synthetic_frame(seed=1, models=2, per_model=4, schedules=2)
    params = {"n_estimators": 5} if kind == "xgboost" else {}
    pred = make(kind, specs={"synthetic-cpu": synthetic_spec()}, **params).fit(frame, frame["latency_median_s"])
    return save_predictor(pred, directory, training=frame)


def results_lines(bad_last: str | None = None, fingerprint: dict | None = None, rows: int = 3) -> str:
    ops = [_op(16 * (i + 1)) for i in range(rows)]
    manifest = {"target": "host", "protocol": json.loads(Protocol().to_json()),
                "entries": [{"operator": op.to_dict(), "schedule_id": "default", "schedule_kind": "default",
                             "trace_json": "[]", "knobs": []} for op in ops]}
    lines = [{"format": "opscope-bundle-results", "version": 1, "bundle_id": "b1", "manifest": manifest},
             {"fingerprint": {"cpu": "board", "hostname": "b"} if fingerprint is None else fingerprint}]
    lines += [{"entry": i, "threads_requested": 1, "threads": 1, "status": "ok", "latencies_s": [1e-3, 1e-3]}
              for i in range(rows)]
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    if bad_last is not None:
        text = text.rsplit("\n", 2)[0] + "\n" + bad_last + "\n"
    return text


def read_only(path: Path) -> Path:
    path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return path


# -- the table -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """``setup(tmp)`` builds the files and returns (argv, files that must stay byte-for-byte unchanged)."""

    setup: Callable[[Path], tuple[list[str], list[Path]]]
    message: str
    code: int = 2
    #: paths that must not exist afterwards (nothing created on a refusal)
    absent: tuple[str, ...] = field(default_factory=tuple)


def _foreign_export(t: Path):
    db = make_foreign(t / "foreign.db")
    return ["export", "--store", str(db), "--out", str(t / "o.csv")], [db]


def _foreign_collect(t: Path):
    db = make_foreign(t / "foreign.db")
    return ["collect", "--model", str(TABLE / _any_table()), "--store", str(db)], [db]


def _foreign_import(t: Path):
    db = make_foreign(t / "foreign.db")
    (t / "r.jsonl").write_text(results_lines())
    return ["import-results", str(t / "r.jsonl"), "--store", str(db)], [db]


def _empty_train(t: Path):
    empty = t / "empty_file"
    empty.write_bytes(b"")
    return ["train", "--store", str(empty), "--out", str(t / "p")], [empty]


def _export_out_is_folder(t: Path):
    make_store(t / "a.db")
    (t / "out.csv").mkdir()
    return ["export", "--store", str(t / "a.db"), "--out", str(t / "out.csv")], [t / "a.db"]


def _export_out_read_only_folder(t: Path):
    make_store(t / "a.db")
    ro = t / "ro"
    ro.mkdir()
    read_only(ro)
    return ["export", "--store", str(t / "a.db"), "--out", str(ro / "o.csv")], [t / "a.db"]


def _analyze_out_bad_suffix(t: Path):
    return ["analyze", "--model", str(TABLE / _any_table()), "--target", "h100", "--out", str(t / "o.txt")], []


def _analyze_plot_read_only(t: Path):
    ro = t / "ro"
    ro.mkdir()
    read_only(ro)
    return ["analyze", "--model", str(TABLE / _any_table()), "--target", "h100", "--plot", str(ro / "r.png")], []


def _predict_out_read_only_file(t: Path):
    pred = make_predictor(t / "pred")
    out = t / "p.csv"
    out.write_text("keep me\n")
    read_only(out)
    return ["predict", "--predictor", str(pred), "--model", str(TABLE / _any_table()), "--target", "h100",
            "--out", str(out)], [out]


def _evaluate_out_missing_folder_in_file(t: Path):
    (t / "plain").write_text("a file\n")
    make_store(t / "a.db")
    return ["evaluate", "--data", str(t / "a.db"), "--out", str(t / "plain" / "ev")], [t / "plain", t / "a.db"]


def _train_out_existing_file(t: Path):
    make_store(t / "a.db")
    (t / "pfile").write_text("not a folder\n")
    return ["train", "--store", str(t / "a.db"), "--out", str(t / "pfile")], [t / "pfile", t / "a.db"]


def _compare_out_existing_file(t: Path):
    make_store(t / "a.db")
    (t / "rep").write_text("x\n")
    return ["compare", "--model", str(TABLE / _any_table()), "--store", str(t / "a.db"), "--out", str(t / "rep"),
            "--no-whole-model"], [t / "rep", t / "a.db"]


def _damaged_store(t: Path):
    db = make_store(t / "a.db", rows=40)
    size = db.stat().st_size
    with open(db, "r+b") as fh:  # 4 KB of noise over the second page and beyond
        fh.seek(min(4096, size - 4096))
        fh.write(NOISE(4096))
    return ["export", "--store", str(db), "--out", str(t / "o.csv")], [db]


def _damaged_store_train(t: Path):
    args, keep = _damaged_store(t)
    return ["train", "--store", args[2], "--out", str(t / "p")], keep


def _damaged_store_collect(t: Path):
    args, keep = _damaged_store(t)
    return ["collect", "--model", str(TABLE / _any_table()), "--store", args[2]], keep


def _unknown_model_collect(t: Path):
    return ["collect", "--model", "nosuch", "--store", str(t / "new.db")], []


def _read_only_store_collect(t: Path):
    db = read_only(make_store(t / "a.db"))
    return ["collect", "--model", str(TABLE / _any_table()), "--store", str(db)], [db]


def _schema_version_word(t: Path):
    db = make_store(t / "a.db")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value='two' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    return ["export", "--store", str(db), "--out", str(t / "o.csv")], [db]


def _schema_version_deleted(t: Path):
    db = make_store(t / "a.db")
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM meta WHERE key='schema_version'")
    conn.commit()
    conn.close()
    return ["collect", "--model", str(TABLE / _any_table()), "--store", str(db)], [db]


def _garbage_target(t: Path):
    (t / "garbage.toml").write_bytes(NOISE(300) + b"\xff\xfe")
    return ["analyze", "--model", str(TABLE / _any_table()), "--target", str(t / "garbage.toml")], []


def _target_is_folder(t: Path):
    return ["analyze", "--model", str(TABLE / _any_table()), "--target", str(t)], []


def _binary_results(t: Path):
    (t / "r.json").write_bytes(b"\x89PNG\r\n" + NOISE(200) + b"\xff")
    return ["import-results", str(t / "r.json"), "--store", str(t / "new.db")], []


def _results_header_list(t: Path):
    (t / "r.json").write_text("[1, 2, 3]\n")
    return ["import-results", str(t / "r.json"), "--store", str(t / "new.db")], []


def _results_line_number(t: Path):
    text = results_lines()
    lines = text.splitlines()
    lines.insert(2, "42")
    (t / "r.json").write_text("\n".join(lines) + "\n")
    return ["import-results", str(t / "r.json"), "--store", str(t / "new.db")], []


def _results_missing(t: Path):
    return ["import-results", str(t / "missing.json"), "--store", str(t / "new.db")], []


def _results_empty_fingerprint(t: Path):
    (t / "r.json").write_text(results_lines(fingerprint={}))
    return ["import-results", str(t / "r.json"), "--store", str(t / "new.db")], []


def _results_bad_last_line(t: Path):
    bad = json.dumps({"entry": 2, "threads_requested": 1, "status": "exploded"})
    (t / "r.json").write_text(results_lines(bad_last=bad))
    return ["import-results", str(t / "r.json"), "--store", str(t / "new.db")], []


def _xgb_random_bytes(t: Path):
    pred = make_predictor(t / "pred", "xgboost")
    (pred / "model.xgb.json").write_bytes(NOISE(2000))
    return ["predict", "--predictor", str(pred), "--model", str(TABLE / _any_table()), "--target", "h100"], []


def _metadata_list(t: Path):
    pred = make_predictor(t / "pred")
    (pred / "metadata.json").write_text("[1, 2]")
    return ["predict", "--predictor", str(pred), "--model", str(TABLE / _any_table()), "--target", "h100"], []


def _metadata_engine_string(t: Path):
    pred = make_predictor(t / "pred")
    meta = json.loads((pred / "metadata.json").read_text())
    meta["engine"] = "linear"
    (pred / "metadata.json").write_text(json.dumps(meta))
    return ["predict", "--predictor", str(pred), "--model", str(TABLE / _any_table()), "--target", "h100"], []


def _metadata_engine_file_escapes(t: Path):
    pred = make_predictor(t / "pred")
    secret = t / "secret.json"
    secret.write_text('{"not": "yours"}')
    meta = json.loads((pred / "metadata.json").read_text())
    meta["engine"]["file"] = "../secret.json"
    (pred / "metadata.json").write_text(json.dumps(meta))
    return ["predict", "--predictor", str(pred), "--model", str(TABLE / _any_table()), "--target", "h100"], [secret]


def _threads_999(t: Path):
    return ["collect", "--model", str(TABLE / _any_table()), "--threads", "1,999", "--store", str(t / "new.db")], []


def _top_negative(t: Path):
    return ["analyze", "--model", str(TABLE / _any_table()), "--target", "h100", "--top", "-1"], []


def _frame_1e300(t: Path):
    (t / "big.csv").write_text("K,C,Y,X,R,S,T\n64,64,56,56,3,3,1\n1e300,64,56,56,3,3,1\n")
    return ["analyze", "--model", str(t / "big.csv"), "--target", "h100"], [t / "big.csv"]


def _frame_million_rows(t: Path):
    (t / "many.csv").write_text("K,C,Y,X,R,S,T\n" + "64,64,56,56,3,3,1\n" * 1_000_000)
    return ["analyze", "--model", str(t / "many.csv"), "--target", "h100"], []


def _gradient_boosting_one_row(t: Path):
    from opscope.predictor.evaluation.synthetic import synthetic_frame

    synthetic_frame(seed=0, models=1, per_model=1, schedules=1).head(1).to_parquet(t / "one.parquet")
    return ["train", "--store", str(t / "one.parquet"), "--model", "gradient_boosting", "--out", str(t / "p")], []


def _search_bad_cost_model(t: Path):
    return ["collect", "--model", "mlp", "--search", "evolutionary", "--cost-model", str(t / "nope"),
            "--store", str(t / "new.db")], []


def _search_zero_trials(t: Path):
    return ["collect", "--model", "mlp", "--search", "evolutionary", "--trials", "0", "--store", str(t / "new.db")], []


def _compare_tune_zero(t: Path):
    return ["compare", "--model", "mlp", "--tune", "0", "--store", str(t / "new.db")], []


def _any_table() -> str:
    return sorted(p.name for p in TABLE.glob("*.csv"))[0]


CASES: dict[str, Case] = {
    # 1. foreign files are never rewritten; read-only commands never create
    "export-foreign-db": Case(_foreign_export, "another program's SQLite database (no opscope meta table)"),
    "collect-foreign-db": Case(_foreign_collect, "another program's SQLite database (no opscope meta table)"),
    "import-into-foreign-db": Case(_foreign_import, "another program's SQLite database (no opscope meta table)"),
    "train-empty-file": Case(_empty_train, "empty file, not an opscope store", absent=("p",)),
    # 2. output paths checked before the work
    "export-out-is-folder": Case(_export_out_is_folder, "--out {t}/out.csv: is a folder; give a file name"),
    "export-out-read-only-folder": Case(_export_out_read_only_folder, "folder {t}/ro is not writable"),
    "analyze-out-suffix": Case(_analyze_out_bad_suffix, "--out {t}/o.txt: use a file name ending in .csv"),
    "analyze-plot-read-only": Case(_analyze_plot_read_only, "--plot {t}/ro/r.png: folder {t}/ro is not writable"),
    "predict-out-read-only": Case(_predict_out_read_only_file, "--out {t}/p.csv: the file is read-only"),
    "evaluate-out-under-a-file": Case(_evaluate_out_missing_folder_in_file,
                                      "--out {t}/plain/ev_folds.csv: {t}/plain is a file, not a folder"),
    "train-out-is-a-file": Case(_train_out_existing_file, "--out {t}/pfile: is a file, not a folder"),
    "compare-out-is-a-file": Case(_compare_out_existing_file, "--out {t}/rep: is a file, not a folder"),
    # 3. damaged or read-only stores
    "export-damaged-store": Case(_damaged_store, "store {t}/a.db: damaged SQLite file"),
    "train-damaged-store": Case(_damaged_store_train, "store {t}/a.db: damaged SQLite file"),
    "collect-damaged-store": Case(_damaged_store_collect, "store {t}/a.db: damaged SQLite file"),
    "collect-unknown-model-no-store-left": Case(_unknown_model_collect, "unknown model 'nosuch'",
                                                absent=("new.db",)),
    "collect-read-only-store": Case(_read_only_store_collect, "store {t}/a.db: the file is read-only"),
    "schema-version-word": Case(_schema_version_word, "meta schema_version 'two' is not a number"),
    "schema-version-deleted": Case(_schema_version_deleted, "the meta table has no schema_version row"),
    # 4. non-UTF-8 and malformed files
    "target-garbage-toml": Case(_garbage_target, "garbage.toml: not UTF-8 text"),
    "target-is-folder": Case(_target_is_folder, "is a folder; give a .toml spec file or a target name"),
    "results-binary": Case(_binary_results, "r.json: not a results file (not UTF-8 text", absent=("new.db",)),
    "results-header-list": Case(_results_header_list, "r.json, line 1: expected a JSON object, got list",
                                absent=("new.db",)),
    "results-line-42": Case(_results_line_number, "r.json, line 3: expected a JSON object, got int '42'",
                            absent=("new.db",)),
    "xgb-model-random-bytes": Case(_xgb_random_bytes, "model.xgb.json: not a readable XGBoost model"),
    # 5. thread counts above the machine
    "collect-threads-999": Case(_threads_999, f"999 threads but this machine has {os.cpu_count()} logical CPUs",
                                absent=("new.db",)),
    # 6. the others
    "analyze-top-negative": Case(_top_negative, "--top -1: must be >= 0"),
    "frame-dimension-1e300": Case(_frame_1e300, "big.csv:3: dimension 1e+300 is above 2147483647"),
    "frame-million-rows": Case(_frame_million_rows, "many.csv: more than 20000 layers"),
    "train-gradient-boosting-one-row": Case(_gradient_boosting_one_row,
                                            "1 successful measurement(s); --model gradient_boosting needs at "
                                            "least 2", absent=("p",)),
    "metadata-is-a-list": Case(_metadata_list, "metadata.json: expected a JSON object, got a list"),
    "metadata-engine-string": Case(_metadata_engine_string, "field 'engine' must be an object, got 'linear'"),
    "metadata-engine-file-escapes": Case(_metadata_engine_file_escapes,
                                         "field 'engine.file' '../secret.json' is not a file in the predictor folder"),
    "import-missing-file": Case(_results_missing, "results file {t}/missing.json: no such file",
                                absent=("new.db",)),
    "import-empty-fingerprint": Case(_results_empty_fingerprint, "field 'fingerprint' must be a non-empty object",
                                     absent=("new.db",)),
    "search-bad-cost-model": Case(_search_bad_cost_model, "--cost-model '{t}/nope': expected xgb, random, the "
                                  "directory of a saved predictor", absent=("new.db",)),
    "search-zero-trials": Case(_search_zero_trials, "--trials 0: must be >= 1", absent=("new.db",)),
    "compare-tune-zero": Case(_compare_tune_zero, "--tune 0: must be >= 1", absent=("new.db",)),
    "import-bad-last-line": Case(_results_bad_last_line, "r.json, line 5: record status 'exploded' not in (", absent=("new.db",)),
}


def _snapshot(paths: list[Path]) -> dict[Path, tuple[bytes, int, set[str]]]:
    out = {}
    for p in paths:
        side = {s.name for s in p.parent.iterdir() if s.name.startswith(p.name) and s.name != p.name}
        out[p] = (p.read_bytes() if p.is_file() else b"<dir>", p.stat().st_mtime_ns, side)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line(name, tmp_path, capsys):
    case = CASES[name]
    argv, keep = case.setup(tmp_path)
    before = _snapshot(keep)
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == case.code
    lines = [line for line in err.splitlines() if not line.startswith("loading ")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"opscope {argv[0]}: "), lines[0]
    assert case.message.format(t=tmp_path) in lines[0]
    assert "Traceback" not in err and out == ""  # nothing printed first and then lost
    assert _snapshot(keep) == before  # bytes, mtime and no -wal/-shm beside it
    for rel in case.absent:
        assert not (tmp_path / rel).exists(), f"{rel} was created"


# -- what must still work ------------------------------------------------------------------------
def test_store_in_a_read_only_folder_can_be_exported(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = make_store(folder / "a.db")
    read_only(db)
    read_only(folder)
    before = _snapshot([db])
    assert main(["export", "--store", str(db), "--out", str(tmp_path / "o.csv")]) == 0
    assert "wrote 3 measurements" in capsys.readouterr().out
    assert _snapshot([db]) == before
    assert sorted(p.name for p in folder.iterdir()) == ["a.db"]


def test_read_only_open_reads_an_old_store_without_migrating_it(tmp_path):
    from opscope.store.schema import migrate

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, up_to=1) == 1
    op_json = json.dumps(_op().to_dict()).replace("'", "''")
    conn.executescript(
        "INSERT INTO workloads VALUES ('k1', 'dense_64', 'dense', 'float32', 'mlp', '" + op_json + "', "
        "65536, 0, 0, 0, 0, 1);"
        "INSERT INTO machines VALUES ('m1', '{}', '2026-01-01');"
        "INSERT INTO measurements (workload_key, schedule_id, schedule_kind, trace_json, knobs_json, threads, "
        "target, machine_id, protocol_id, protocol_json, status, error, raw_latencies_s, created_at) VALUES "
        "('k1', 'default', 'default', '[]', '{}', 1, 'host', 'm1', 'p', '{}', 'ok', '', '[0.002]', '2026');")
    conn.close()
    before = _snapshot([path])
    frame = load_dataframe(path)
    assert list(frame["latency_median_s"]) == [0.002]
    with open_store(path, read_only=True) as st:
        assert st.count() == 1
    assert _snapshot([path]) == before
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)


def test_read_only_store_refuses_writes(tmp_path):
    from opscope.errors import StoreError

    db = make_store(tmp_path / "a.db")
    with open_store(db, read_only=True) as st, pytest.raises(StoreError, match="cannot write a record"):
        st.add(_rec(_op(999), sid="new"))
    assert load_dataframe(db)["schedule_id"].tolist() == ["s0", "s1", "s2"]


def test_a_new_store_is_never_seen_empty(tmp_path):
    # created beside its path and linked in whole: no 0-byte file, no leftovers
    path = tmp_path / "fresh.db"
    with open_store(path) as st:
        assert st.count() == 0
    assert path.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("fresh.db")) == []


def test_targets_listing_survives_a_binary_user_spec(tmp_path, monkeypatch, capsys):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "broken.toml").write_bytes(b"\xff\xfe\x00garbage")
    monkeypatch.setenv("OPSCOPE_SPEC_DIR", str(spec_dir))
    assert main(["targets"]) == 0
    out, err = capsys.readouterr()
    assert "h100" in out and "tpuv4-like" in out
    assert err.strip() == (f"{'broken':14s} (cannot load: {spec_dir / 'broken.toml'}: not UTF-8 text (byte 0); "
                           "a spec is a TOML text file)")


def test_debug_shows_the_traceback(tmp_path, capsys):
    db = make_foreign(tmp_path / "foreign.db")
    from opscope.errors import StoreError

    with pytest.raises(StoreError, match="another program's"):
        main(["--debug", "export", "--store", str(db), "--out", str(tmp_path / "o.csv")])


def test_os_errors_at_the_edges_are_one_line(capsys):
    from opscope.cli import one_line

    err = PermissionError(13, "Permission denied", "/x/y.csv")
    assert one_line(err) == "Permission denied (/x/y.csv): check the path and its permissions"
    try:
        b"ab\xff".decode("utf-8")
    except UnicodeDecodeError as exc:
        assert one_line(exc).startswith("a file is not UTF-8 text (invalid start byte at byte 2)")


def test_version(capsys):
    import opscope

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"opscope {opscope.__version__}"


def test_import_results_refusal_writes_nothing_and_good_file_writes_all(tmp_path, capsys):
    bad = json.dumps({"entry": 2, "threads_requested": 1, "status": "exploded"})
    (tmp_path / "bad.json").write_text(results_lines(bad_last=bad))
    store = make_store(tmp_path / "a.db", rows=0)
    assert main(["import-results", str(tmp_path / "bad.json"), "--store", str(store)]) == 2
    assert "nothing was imported" in capsys.readouterr().err
    assert len(load_dataframe(store)) == 0  # not 2 of 3
    (tmp_path / "good.json").write_text(results_lines())
    assert main(["import-results", str(tmp_path / "good.json"), "--store", str(store)]) == 0
    assert "3 measurements: 3 added" in capsys.readouterr().out


def test_threads_at_the_cpu_count_pass_the_check():
    from opscope.edges import thread_counts
    from opscope.errors import OpscopeError

    n = os.cpu_count()
    assert thread_counts(f"1,{n}") == f"1,{n}"
    assert thread_counts("1,all") == "1,all"
    with pytest.raises(OpscopeError, match=f"{n + 1} threads but this machine has {n} logical CPUs"):
        thread_counts(f"{n + 1}")
    with pytest.raises(OpscopeError, match="'x' is not a thread count"):
        thread_counts("1,x")


def test_bundle_run_py_without_numpy_is_one_line(tmp_path):
    fake = tmp_path / "site" / "numpy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('numpy is not installed')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    proc = subprocess.run([sys.executable, str(REPO / "opscope" / "bundle" / "run_template.py"), "--check"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        f"run.py: needs numpy, which this Python ({sys.executable}) does not have: install it "
        "(python3 -m pip install numpy, or the system's python3-numpy package) and run again"]


def test_a_real_traceback_from_a_subprocess_never_reaches_the_user(tmp_path):
    # the one case run through the real entry point: a foreign store, refused in one line
    db = make_foreign(tmp_path / "foreign.db")
    proc = subprocess.run([sys.executable, "-m", "opscope", "export", "--store", str(db), "--out",
                           str(tmp_path / "o.csv")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"opscope export: store {db}: another program's SQLite database (no opscope meta table); opscope does "
        "not touch it: choose another --store"]


def test_docs_remote_tracker_default_host_is_all_interfaces():
    # docs/remote.md says TVM's tracker and server listen on 0.0.0.0 without --host
    from importlib import metadata

    tvm = metadata.distribution("apache-tvm")  # read the installed sources; importing TVM takes seconds
    for name in ("rpc_tracker", "rpc_server"):
        src = Path(tvm.locate_file(f"tvm/exec/{name}.py")).read_text()
        start = src.index('"--host"')
        assert 'default="0.0.0.0"' in src[start:start + 200], name
    assert "listen on `0.0.0.0`" in (REPO / "docs" / "remote.md").read_text()


def _write_records(path: str, n: int) -> None:
    with open_store(path) as st:
        for i in range(n):
            st.add(_rec(_op(8 + i % 50), sid=f"w{i}"))


def test_a_store_being_written_is_read_whole(tmp_path):
    # export/train/compare while a collection writes: every read sees a whole store, never "damaged"
    import multiprocessing

    path = make_store(tmp_path / "busy.db", rows=1)
    writer = multiprocessing.get_context("fork").Process(target=_write_records, args=(str(path), 600))
    writer.start()
    sizes = []
    try:
        while writer.is_alive() and len(sizes) < 200:
            sizes.append(len(load_dataframe(path)))
    finally:
        writer.join(timeout=120)
    assert writer.exitcode == 0
    assert sizes and sizes == sorted(sizes) and all(1 <= s <= 601 for s in sizes)
    assert len(load_dataframe(path)) == 601


def test_a_file_that_corun_made_is_ours(tmp_path):
    # `opscope corun --store runs.db` may create the file before any collection writes to it
    from opscope.corun.table import save_corun

    path = tmp_path / "runs.db"
    save_corun(path, [])
    before = _snapshot([path])
    assert len(load_dataframe(path)) == 0  # read-only: migrated in memory, the file untouched
    assert _snapshot([path]) == before
    with open_store(path) as st:
        st.add_machine("m1", {"cpu": "x"})
        st.add(_rec(_op()))
    assert load_dataframe(path)["schedule_id"].tolist() == ["s1"]


def test_a_layer_table_saved_with_a_bom_still_loads(tmp_path):
    # spreadsheets write a UTF-8 byte-order mark first; it is not part of the header
    from opscope.workloads.layer_table import load_layer_table

    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfK,C,Y,X,R,S,T\n64,64,56,56,3,3,1\n")
    (op,) = load_layer_table(path)
    assert op.flops == 2 * 64 * 64 * (56 - 3 + 1) ** 2 * 3 * 3  # FRAME's CONV2D: no padding
