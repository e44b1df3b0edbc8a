"""The store's schema, one migration per version.

Version 1 was the first layout (workloads, machines, measurements with the raw latencies).
Version 2 added the ``schedules`` table (trace and knobs stored once per schedule rather than per
row), the ``pinned`` flag and the ``attempt`` counter used by ``--remeasure-noisy``.  Version 3 added
``workloads.workload_script``, version 4 ``measurements.origin_json``.  Version 5 brought the co-run
tables (``corun_runs``, ``corun_members``, written by ``opscope.corun.table``) into the store's own
migrations; a file whose co-run tables were made under their former separate version (a
``corun_meta`` table at version 1, the same layout) keeps them, and ``corun_meta`` is dropped.
A database of any older version is migrated in place, one transaction per version, when it is
opened for writing (in memory only when opened read-only).
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 5

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE workloads (
    workload_key TEXT PRIMARY KEY,
    op_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    dtype TEXT NOT NULL,
    models TEXT NOT NULL,
    operator_json TEXT NOT NULL,
    flops INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    bytes_input INTEGER NOT NULL,
    bytes_weight INTEGER NOT NULL,
    bytes_output INTEGER NOT NULL,
    count INTEGER NOT NULL
);
CREATE TABLE machines (
    machine_id TEXT PRIMARY KEY,
    fingerprint_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE measurements (
    measurement_id INTEGER PRIMARY KEY AUTOINCREMENT,
    workload_key TEXT NOT NULL REFERENCES workloads(workload_key),
    schedule_id TEXT NOT NULL,
    schedule_kind TEXT NOT NULL,
    trace_json TEXT NOT NULL,
    knobs_json TEXT NOT NULL,
    threads INTEGER NOT NULL,
    target TEXT NOT NULL,
    machine_id TEXT NOT NULL REFERENCES machines(machine_id),
    protocol_id TEXT NOT NULL,
    protocol_json TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL,
    raw_latencies_s TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (workload_key, schedule_id, threads, target, machine_id, protocol_id)
);
"""

_V2 = """
CREATE TABLE schedules (
    schedule_id TEXT NOT NULL,
    workload_key TEXT NOT NULL REFERENCES workloads(workload_key),
    schedule_kind TEXT NOT NULL,
    trace_json TEXT NOT NULL,
    knobs_json TEXT NOT NULL,
    PRIMARY KEY (workload_key, schedule_id)
);
INSERT OR IGNORE INTO schedules
    SELECT schedule_id, workload_key, schedule_kind, trace_json, knobs_json FROM measurements;
CREATE TABLE measurements_v2 (
    measurement_id INTEGER PRIMARY KEY AUTOINCREMENT,
    workload_key TEXT NOT NULL REFERENCES workloads(workload_key),
    schedule_id TEXT NOT NULL,
    threads INTEGER NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    target TEXT NOT NULL,
    machine_id TEXT NOT NULL REFERENCES machines(machine_id),
    protocol_id TEXT NOT NULL,
    protocol_json TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL,
    raw_latencies_s TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    UNIQUE (workload_key, schedule_id, threads, pinned, target, machine_id, protocol_id, attempt)
);
INSERT INTO measurements_v2 (measurement_id, workload_key, schedule_id, threads, pinned, target,
        machine_id, protocol_id, protocol_json, status, error, raw_latencies_s, attempt, created_at)
    SELECT measurement_id, workload_key, schedule_id, threads, 0, target, machine_id, protocol_id,
        protocol_json, status, error, raw_latencies_s, 0, created_at FROM measurements;
DROP TABLE measurements;
ALTER TABLE measurements_v2 RENAME TO measurements;
CREATE INDEX measurements_workload ON measurements (workload_key, schedule_id);
"""

_V3 = """
ALTER TABLE workloads ADD COLUMN workload_script TEXT NOT NULL DEFAULT ''
"""

_V4 = """
ALTER TABLE measurements ADD COLUMN origin_json TEXT NOT NULL DEFAULT '{}'
"""

_V5 = """
CREATE TABLE IF NOT EXISTS corun_runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    label TEXT NOT NULL,
    arrangement_kind TEXT NOT NULL,
    arrangement TEXT NOT NULL,
    arrangement_json TEXT NOT NULL,
    protocol_json TEXT NOT NULL,
    machine_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL,
    makespan_raw_s TEXT NOT NULL,
    makespan_median_s REAL,
    n_members INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS corun_members (
    run_id INTEGER NOT NULL REFERENCES corun_runs(run_id),
    slot INTEGER NOT NULL,
    task TEXT NOT NULL,
    kernel_keys TEXT NOT NULL,
    kernel_names TEXT NOT NULL,
    cores TEXT NOT NULL,
    threads INTEGER NOT NULL,
    pinned INTEGER NOT NULL,
    flops REAL NOT NULL,
    bytes REAL NOT NULL,
    alone_raw_s TEXT NOT NULL,
    together_raw_s TEXT NOT NULL,
    alone_median_s REAL,
    together_median_s REAL,
    slowdown REAL,
    PRIMARY KEY (run_id, slot)
);
CREATE INDEX IF NOT EXISTS corun_members_keys ON corun_members (kernel_keys);
DROP TABLE IF EXISTS corun_meta
"""

#: MIGRATIONS[v] brings a database from version v to v + 1 (version 0 is an empty file).
MIGRATIONS: dict[int, str] = {0: _V1, 1: _V2, 2: _V3, 3: _V4, 4: _V5}


def current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    if row is None:
        return 0
    got = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(got[0]) if got else 0


def migrate(conn: sqlite3.Connection, up_to: int = SCHEMA_VERSION) -> int:
    """Apply the migrations from the database's version to ``up_to``; returns the new version.

    Each step runs in its own ``BEGIN IMMEDIATE`` transaction and reads the version again inside
    it, so two processes opening a new store at once do not both migrate, and a crash in the middle
    leaves the database at the previous version.  ``conn`` must be in autocommit mode
    (``isolation_level=None``).
    """
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(conn)
            if version >= up_to:
                conn.execute("COMMIT")
                return version
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(version + 1),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
