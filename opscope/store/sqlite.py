"""The embedded store: one SQLite file in WAL mode.

Tables: ``workloads`` (keyed by the operator key), ``schedules`` (trace and knobs, once per schedule
of a workload), ``machines`` (fingerprint once per machine) and append-only ``measurements``.
Every record is written in its own transaction and a UNIQUE constraint on (workload, schedule,
threads, pinning, target, machine, protocol, attempt) makes a second write of the same measurement
a no-op: a collection killed with SIGKILL loses at most the record in flight and can be run again.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

from opscope.edges import writable
from opscope.errors import StoreError
from opscope.store.record import Record, now_utc
from opscope.store.schema import SCHEMA_VERSION, current_version, migrate


class Store:
    """A measurement store on disk; see the module docstring.  Use ``open_store``."""

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        if read_only:
            self._conn = _open_read_only(self.path)
            return
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            version = _checked_version(self._conn, self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store {self.path}: not a readable SQLite database ({exc})") from None
        try:
            migrate(self._conn)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store {self.path}: migration from version {version} failed: {exc}") from None
        _check_intact(self._conn, self.path)

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> int:
        return current_version(self._conn)

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    # -- writing --------------------------------------------------------------------------------
    def add_machine(self, machine_id: str, fingerprint: dict) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO machines (machine_id, fingerprint_json, created_at) VALUES (?, ?, ?)",
            (machine_id, json.dumps(fingerprint, sort_keys=True), now_utc()),
        )

    def add(self, record: Record) -> int | None:
        """Write one record in one transaction; returns its id, or None if it was already there."""
        op = record.op
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
            row = c.execute("SELECT models, workload_script FROM workloads WHERE workload_key=?",
                            (op.key,)).fetchone()
            if row is None:
                c.execute(
                    "INSERT INTO workloads (workload_key, op_name, kind, dtype, models, operator_json, flops, "
                    "bytes, bytes_input, bytes_weight, bytes_output, count, workload_script) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (op.key, op.name, op.kind, op.dtype, ",".join(op.models), json.dumps(op.to_dict()),
                     op.flops, op.bytes, op.bytes_of("input"), op.bytes_of("weight"), op.bytes_of("output"),
                     op.count, workload_script(op)),
                )
            else:
                known = [m for m in row[0].split(",") if m]
                merged = known + [m for m in op.models if m not in known]
                if merged != known:
                    c.execute("UPDATE workloads SET models=? WHERE workload_key=?", (",".join(merged), op.key))
                if not row[1] and op.prim_func is not None:  # a workload stored before version 3
                    c.execute("UPDATE workloads SET workload_script=? WHERE workload_key=?",
                              (workload_script(op), op.key))
            c.execute(
                "INSERT OR IGNORE INTO schedules VALUES (?,?,?,?,?)",
                (record.schedule_id, op.key, record.schedule_kind, record.trace_json, record.knobs_json()),
            )
            cur = c.execute(
                "INSERT OR IGNORE INTO measurements (workload_key, schedule_id, threads, pinned, target, "
                "machine_id, protocol_id, protocol_json, status, error, raw_latencies_s, attempt, created_at, "
                "origin_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (op.key, record.schedule_id, record.threads, int(record.pinned), record.target,
                 record.machine_id, record.protocol.protocol_id, record.protocol.to_json(), record.status,
                 record.error, json.dumps(list(record.raw_latencies_s)), record.attempt, record.created_at,
                 record.origin_json()),
            )
            c.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise StoreError(f"store {self.path}: cannot write a record: {exc}") from None
        return cur.lastrowid if cur.rowcount == 1 else None

    def note_models(self, workload_key: str, models: tuple[str, ...]) -> None:
        """Add ``models`` to a known workload's model list (an operator shared by several models)."""
        row = self._conn.execute("SELECT models FROM workloads WHERE workload_key=?", (workload_key,)).fetchone()
        if row is None:
            return
        known = [m for m in row[0].split(",") if m]
        merged = known + [m for m in models if m not in known]
        if merged != known:
            self._conn.execute("UPDATE workloads SET models=? WHERE workload_key=?", (",".join(merged), workload_key))

    # -- reading --------------------------------------------------------------------------------
    def measured(self, workload_key: str, target: str, machine_id: str, protocol_id: str,
                 pinned: bool = False) -> dict[tuple[str, int], tuple[str, str, int, str]]:
        """(schedule_id, threads) -> (status, raw latencies JSON, attempt, created_at) of the latest attempt."""
        rows = self._conn.execute(
            "SELECT schedule_id, threads, status, raw_latencies_s, attempt, created_at FROM measurements "
            "WHERE workload_key=? AND target=? AND machine_id=? AND protocol_id=? AND pinned=? "
            "ORDER BY attempt",
            (workload_key, target, machine_id, protocol_id, int(pinned)),
        ).fetchall()
        return {(s, t): (st, raw, a, at) for s, t, st, raw, a, at in rows}

    def history(self, workload_key: str, target: str, machine_id: str, protocol_id: str, threads: int,
                pinned: bool = False) -> list[dict]:
        """Every schedule measured for this workload at ``threads`` under this (target, machine,
        protocol, pinning), latest attempt only, oldest first: dicts with ``schedule_id,
        schedule_kind, trace_json, status, raw_latencies_s`` (a list) and ``origin`` (a dict)."""
        rows = self._conn.execute(
            "SELECT m.schedule_id, s.schedule_kind, s.trace_json, m.status, m.raw_latencies_s, m.origin_json, "
            "m.attempt FROM measurements m JOIN schedules s ON s.workload_key = m.workload_key AND "
            "s.schedule_id = m.schedule_id WHERE m.workload_key=? AND m.target=? AND m.machine_id=? AND "
            "m.protocol_id=? AND m.threads=? AND m.pinned=? ORDER BY m.measurement_id",
            (workload_key, target, machine_id, protocol_id, int(threads), int(pinned)),
        ).fetchall()
        latest: dict[str, dict] = {}
        for sid, kind, trace, status, raw, origin, attempt in rows:
            prev = latest.get(sid)
            if prev is None or attempt >= prev["attempt"]:
                latest.pop(sid, None)
                latest[sid] = {"schedule_id": sid, "schedule_kind": kind, "trace_json": trace, "status": status,
                               "raw_latencies_s": json.loads(raw), "origin": json.loads(origin or "{}"),
                               "attempt": attempt}
        return list(latest.values())

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]

    def machine(self, machine_id: str) -> dict | None:
        row = self._conn.execute(
            "SELECT fingerprint_json FROM machines WHERE machine_id=?", (machine_id,)).fetchone()
        return json.loads(row[0]) if row else None


def machines(path: str | os.PathLike[str]) -> dict[str, dict]:
    """machine id -> fingerprint of every machine in a store, read without writing anything beside it."""
    p = Path(path)
    if not p.is_file():
        raise StoreError(f"{p}: no such store")
    conn = _open_read_only(p)
    try:
        rows = conn.execute("SELECT machine_id, fingerprint_json FROM machines").fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"store {p}: cannot read its machines table ({exc})") from None
    finally:
        conn.close()
    out = {}
    for mid, text in rows:
        try:
            out[str(mid)] = json.loads(text)
        except ValueError:
            raise StoreError(f"store {p}: machine {mid}: fingerprint is not JSON") from None
    return out


def workload_script(op) -> str:
    """The operator's TIR function as TVMScript ('' when it has none, e.g. a layer-table operator).

    ``tvm.script.from_source(text)`` gives the function back (``opscope.store.workload_module``)."""
    func = op.prim_func
    if func is None:
        return ""
    return func.script() if hasattr(func, "script") else str(func)


def workload_module(script: str):
    """The ``tvm.IRModule`` ({"main": the operator's function}) of a stored ``workload_script``."""
    import tvm

    if not script:
        raise StoreError("this workload was stored without its TIR (a store older than schema version 3, or "
                         "an operator without TIR); collect it again to store it")
    try:
        parsed = tvm.script.from_source(script)
    except SyntaxError:
        # TVMScript prints a parameter named after an ONNX initializer ("2.f.4.weight" -> 2_f_4_weight)
        # as it is, which Python cannot parse; the names are the function's own, so renaming is safe
        parsed = tvm.script.from_source(_python_names(script))
    return parsed if isinstance(parsed, tvm.IRModule) else tvm.IRModule({"main": parsed})


_LEADING_DIGIT = re.compile(r"(?<![\w.])\d\w*[A-Za-z_]\w*")
_NUMBER = re.compile(r"(?:\d[\d_]*(?:[eE]\d+)?[jJ]?|0[xXoObB][\da-fA-F_]+)")


def _python_names(script: str) -> str:
    """``script`` with every word that starts with a digit and is not a number prefixed by ``v_``."""
    def rename(m: re.Match) -> str:
        word, after = m.group(0), script[m.end():m.end() + 1]
        if _NUMBER.fullmatch(word) or (word[-1] in "eE" and after in "+-" and word[:-1].isdigit()):
            return word
        return "v_" + word
    return _LEADING_DIGIT.sub(rename, script)


def open_store(path: str | os.PathLike[str], read_only: bool = False) -> Store:
    """Open the store at ``path``.

    For writing (the default) a path that does not exist becomes a new store; an existing file
    must already be an opscope store (a ``meta`` table with a numeric ``schema_version``) and is
    migrated to the current version.  Another program's database, an empty or damaged file, a
    read-only file or folder are refused with one line, before anything is written.

    ``read_only=True`` never creates, migrates or writes a file: the path must be an opscope
    store; one of an older version is migrated in memory only.
    """
    p = Path(path)
    if p.is_dir():
        raise StoreError(f"store {p}: is a directory, expected a SQLite file")
    if read_only:
        if not p.exists():
            raise StoreError(f"store {p}: no such file (measure with `opscope collect ... --store {p}`)")
        _sniff(p)
        return Store(p, read_only=True)
    check_writable_store(p)
    if not p.exists():
        _create(p)
    return Store(p)


def check_writable_store(path: str | os.PathLike[str]) -> None:
    """What ``open_store(path)`` refuses, checked without creating or opening anything for writing.

    A command that writes a store calls it before its long work (loading models), so that a bad
    ``--store`` is one line at once and a refusal leaves no new file behind.
    """
    p = Path(path)
    if p.is_dir():
        raise StoreError(f"store {p}: is a directory, expected a SQLite file")
    if not p.parent.exists():
        raise StoreError(f"store {p}: folder {p.parent} does not exist")
    folder = p.absolute().parent
    if not writable(folder):
        raise StoreError(f"store {p}: folder {folder} is not writable (SQLite keeps its -wal and -shm files "
                         "beside the store); copy the store elsewhere or use a read-only command")
    if p.exists():
        _sniff(p, intact=True)
        if not writable(p):
            raise StoreError(f"store {p}: the file is read-only; make it writable (chmod u+w) or use another --store")


# -- opening safely ------------------------------------------------------------------------------
_SQLITE_MAGIC = b"SQLite format 3\x00"


#: Tables that mark an SQLite file as opscope's: the measurement store's ``meta``, and ``corun_meta``
#: of a file that ``opscope corun`` made before the co-run tables joined the store's schema (version 5).
OUR_META_TABLES = ("meta", "corun_meta")


def sniff_store(path: str | os.PathLike[str], meta_tables: tuple[str, ...] = OUR_META_TABLES) -> None:
    """Refuse, without writing it, a file that is not an opscope store (see ``OUR_META_TABLES``)."""
    _sniff(Path(path), meta_tables)


def _sniff(p: Path, meta_tables: tuple[str, ...] = OUR_META_TABLES, intact: bool = False) -> None:
    """Refuse, without opening it for writing, a file that is not an opscope store."""
    try:
        with open(p, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise StoreError(f"store {p}: cannot read ({exc.strerror}); check its permissions") from None
    head = header[:len(_SQLITE_MAGIC)]
    if not head:
        raise StoreError(f"store {p}: empty file, not an opscope store; remove it or choose another --store")
    if head != _SQLITE_MAGIC:
        raise StoreError(f"store {p}: not an SQLite database; choose an opscope store (opscope collect writes one)")
    try:
        conn = sqlite3.connect(f"{_uri(p)}?{_read_flags(p, header)}", uri=True, timeout=30.0,
                               isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"store {p}: cannot open ({exc})") from None
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables & set(meta_tables):
            what = "an empty SQLite database" if not tables else "another program's SQLite database"
            raise StoreError(f"store {p}: {what} (no opscope meta table); opscope does not touch it: "
                             "choose another --store")
        if "meta" in tables:
            _checked_version(conn, p)
        if intact:
            _check_intact(conn, p)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"store {p}: damaged SQLite file ({exc}); restore it from a copy") from None
    finally:
        conn.close()


def _read_flags(p: Path, header: bytes) -> str:
    """How to open ``p`` for reading without creating or changing anything beside it.

    A rollback-journal file (another program's, most likely) or a WAL file whose writer is at work
    (its -wal file exists) is read through SQLite's locks (``mode=ro``), which then creates
    nothing; a WAL file that nobody has open, or one in a folder we cannot write, is read as
    immutable: ``mode=ro`` would leave -wal and -shm files beside it.
    """
    wal = len(header) > 19 and header[18] == 2
    if wal and (not p.with_name(p.name + "-wal").exists() or not writable(p.absolute().parent)):
        return "immutable=1"
    return "mode=ro"


def _checked_version(conn: sqlite3.Connection, p: Path) -> int:
    """The schema version in ``meta``, with one line for a missing, non-numeric or newer one."""
    has_meta = conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    if has_meta is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        raise StoreError(f"store {p}: the meta table has no schema_version row (a damaged store); "
                         "restore it from a copy")
    try:
        version = int(row[0])
    except (TypeError, ValueError):
        raise StoreError(f"store {p}: meta schema_version {row[0]!r} is not a number (a damaged store); "
                         "restore it from a copy") from None
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store {p}: schema version {version} is newer than this opscope understands "
            f"({SCHEMA_VERSION}); upgrade opscope"
        )
    if version < 1:
        raise StoreError(f"store {p}: meta schema_version {version} is not a valid version (a damaged store)")
    return version


def _check_intact(conn: sqlite3.Connection, p: Path) -> None:
    try:
        rows = conn.execute("PRAGMA quick_check(3)").fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"store {p}: damaged SQLite file ({exc}); restore it from a copy") from None
    if rows != [("ok",)]:
        raise StoreError(f"store {p}: damaged SQLite file ({rows[0][0]}); restore it from a copy")


def _uri(p: Path) -> str:
    from urllib.parse import quote

    return "file:" + quote(str(p.absolute()))


def _open_read_only(p: Path) -> sqlite3.Connection:
    """A connection that cannot write ``p``; an older schema is migrated into a copy in memory."""
    try:
        with open(p, "rb") as fh:
            header = fh.read(100)
        conn = sqlite3.connect(f"{_uri(p)}?{_read_flags(p, header)}", uri=True, timeout=30.0,
                               isolation_level=None)
        conn.execute("PRAGMA query_only=ON")
        version = _checked_version(conn, p)
        _check_intact(conn, p)
    except OSError as exc:
        raise StoreError(f"store {p}: cannot read ({exc.strerror}); check its permissions") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"store {p}: not a readable SQLite database ({exc})") from None
    if version == SCHEMA_VERSION:
        return conn
    mem = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.backup(mem)
        migrate(mem)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"store {p}: cannot read version {version} ({exc})") from None
    finally:
        conn.close()
    return mem


def _create(p: Path) -> None:
    """Create a new store at ``p`` whole: built beside it, then linked into place.

    Another process creating the same store at the same moment wins the link; this one then opens
    theirs.  No other process ever sees a half-made (empty) store file.
    """
    tmp = p.with_name(f".{p.name}.new{os.getpid()}")
    try:
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            migrate(conn)
        finally:
            conn.close()
        try:
            os.link(tmp, p)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not p.exists():
                os.replace(tmp, p)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"store {p}: cannot create ({exc})") from None
    except OSError as exc:
        raise StoreError(f"store {p}: cannot create ({exc.strerror})") from None
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)
