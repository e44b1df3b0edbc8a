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
import sqlite3
from pathlib import Path

from opscope.errors import StoreError
from opscope.store.record import Record, now_utc
from opscope.store.schema import SCHEMA_VERSION, current_version, migrate


class Store:
    """A measurement store on disk; see the module docstring.  Use ``open_store``."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            version = current_version(self._conn)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store {self.path}: not a readable SQLite database ({exc})") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path}: schema version {version} is newer than this opscope understands "
                f"({SCHEMA_VERSION}); upgrade opscope"
            )
        try:
            migrate(self._conn)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store {self.path}: migration from version {version} failed: {exc}") from None

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
            row = c.execute("SELECT models FROM workloads WHERE workload_key=?", (op.key,)).fetchone()
            if row is None:
                c.execute(
                    "INSERT INTO workloads VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (op.key, op.name, op.kind, op.dtype, ",".join(op.models), json.dumps(op.to_dict()),
                     op.flops, op.bytes, op.bytes_of("input"), op.bytes_of("weight"), op.bytes_of("output"),
                     op.count),
                )
            else:
                known = [m for m in row[0].split(",") if m]
                merged = known + [m for m in op.models if m not in known]
                if merged != known:
                    c.execute("UPDATE workloads SET models=? WHERE workload_key=?", (",".join(merged), op.key))
            c.execute(
                "INSERT OR IGNORE INTO schedules VALUES (?,?,?,?,?)",
                (record.schedule_id, op.key, record.schedule_kind, record.trace_json, record.knobs_json()),
            )
            cur = c.execute(
                "INSERT OR IGNORE INTO measurements (workload_key, schedule_id, threads, pinned, target, "
                "machine_id, protocol_id, protocol_json, status, error, raw_latencies_s, attempt, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (op.key, record.schedule_id, record.threads, int(record.pinned), record.target,
                 record.machine_id, record.protocol.protocol_id, record.protocol.to_json(), record.status,
                 record.error, json.dumps(list(record.raw_latencies_s)), record.attempt, record.created_at),
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
                 pinned: bool = False) -> dict[tuple[str, int], tuple[str, str, int]]:
        """(schedule_id, threads) -> (status, raw latencies JSON, attempt) of the latest attempt."""
        rows = self._conn.execute(
            "SELECT schedule_id, threads, status, raw_latencies_s, attempt FROM measurements "
            "WHERE workload_key=? AND target=? AND machine_id=? AND protocol_id=? AND pinned=? "
            "ORDER BY attempt",
            (workload_key, target, machine_id, protocol_id, int(pinned)),
        ).fetchall()
        return {(s, t): (st, raw, a) for s, t, st, raw, a in rows}

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]

    def machine(self, machine_id: str) -> dict | None:
        row = self._conn.execute(
            "SELECT fingerprint_json FROM machines WHERE machine_id=?", (machine_id,)).fetchone()
        return json.loads(row[0]) if row else None


def open_store(path: str | os.PathLike[str]) -> Store:
    """Open (creating and migrating as needed) the store at ``path``."""
    p = Path(path)
    if p.is_dir():
        raise StoreError(f"store {p}: is a directory, expected a SQLite file")
    if not p.parent.exists():
        raise StoreError(f"store {p}: folder {p.parent} does not exist")
    return Store(p)
