"""Co-run records in the store's SQLite file: two tables of their own, with their own schema version.

The measurement store (``opscope.store``) has a linear migration list for its own tables and no
hook for other tables, so co-run data lives beside it in the same file:

``corun_meta``     key/value, ``schema_version`` of the co-run tables (independent of the store's);
``corun_runs``     one row per co-run measurement: arrangement (kind + slots as JSON), protocol,
                   status, raw makespans and their median, label, machine;
``corun_members``  one row per task of a run: slot (cores, threads, pinned), kernel keys (the
                   store's ``workload_key`` of each operator), flops/bytes, raw latencies alone and
                   together, their medians and the slowdown.

``migrate_corun(conn)`` creates or upgrades these tables; it only touches ``corun_*`` tables, so
it is safe on a store file and on a new file alike.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
from pathlib import Path

import pandas as pd

from opscope.corun.measure import CorunRecord, MemberResult
from opscope.corun.partition import Arrangement
from opscope.errors import StoreError
from opscope.store.protocol import CorunProtocol

CORUN_SCHEMA_VERSION = 1

_V1 = """
CREATE TABLE IF NOT EXISTS corun_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE corun_runs (
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
CREATE TABLE corun_members (
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
CREATE INDEX corun_members_keys ON corun_members (kernel_keys);
"""

#: CORUN_MIGRATIONS[v] brings the co-run tables from version v to v + 1.
CORUN_MIGRATIONS: dict[int, str] = {0: _V1}


def corun_version(conn: sqlite3.Connection) -> int:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='corun_meta'").fetchone() is None:
        return 0
    row = conn.execute("SELECT value FROM corun_meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate_corun(conn: sqlite3.Connection, up_to: int = CORUN_SCHEMA_VERSION) -> int:
    """Create or upgrade the co-run tables, one transaction per version step."""
    version = corun_version(conn)
    if version > CORUN_SCHEMA_VERSION:
        raise StoreError(f"co-run tables are at version {version}, newer than this opscope "
                         f"({CORUN_SCHEMA_VERSION}); upgrade opscope")
    while version < up_to:
        conn.executescript("BEGIN IMMEDIATE;\n" + CORUN_MIGRATIONS[version] +
                           "\nCREATE TABLE IF NOT EXISTS corun_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                           f"\nINSERT OR REPLACE INTO corun_meta VALUES ('schema_version', '{version + 1}');\nCOMMIT;")
        version += 1
    return version


def _connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    p = Path(path)
    if p.exists() and p.is_dir():
        raise StoreError(f"store {p}: is a directory, expected an SQLite file")
    try:
        conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        migrate_corun(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"store {p}: cannot open co-run tables: {exc}") from None
    return conn


def save_corun(path: str | os.PathLike[str], records) -> list[int]:
    """Append ``records`` to the co-run tables of the SQLite file ``path``; returns their run ids."""
    conn = _connect(path)
    ids = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for rec in records:
            created = _dt.datetime.fromtimestamp(rec.created_at, _dt.timezone.utc).isoformat()
            cur = conn.execute(
                "INSERT INTO corun_runs (label, arrangement_kind, arrangement, arrangement_json, protocol_json,"
                " machine_id, status, error, makespan_raw_s, makespan_median_s, n_members, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (rec.label, rec.arrangement.kind, rec.arrangement.label, json.dumps(rec.arrangement.to_dict()),
                 json.dumps(rec.protocol.to_dict()), rec.machine_id, rec.status, rec.error,
                 json.dumps(list(rec.makespan_s)), rec.makespan_median_s, len(rec.members), created))
            run_id = int(cur.lastrowid)
            for slot, m in enumerate(rec.members):
                conn.execute(
                    "INSERT INTO corun_members VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (run_id, slot, m.task, ",".join(m.kernel_keys), ",".join(m.kernel_names),
                     json.dumps(list(m.cores)), m.threads, int(m.pinned), m.flops, m.bytes,
                     json.dumps(list(m.alone_s)), json.dumps(list(m.together_s)), m.alone_median_s,
                     m.together_median_s, m.slowdown))
            ids.append(run_id)
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        conn.execute("ROLLBACK")
        raise StoreError(f"store {path}: cannot write co-run records: {exc}") from None
    finally:
        conn.close()
    return ids


def load_corun(path: str | os.PathLike[str]) -> list[CorunRecord]:
    """Every co-run record in the file, oldest first."""
    if not Path(path).exists():
        raise StoreError(f"store {path}: no such file")
    conn = _connect(path)
    try:
        runs = conn.execute("SELECT run_id, label, arrangement_json, protocol_json, machine_id, status, error,"
                            " makespan_raw_s, created_at FROM corun_runs ORDER BY run_id").fetchall()
        members: dict[int, list] = {}
        for row in conn.execute("SELECT run_id, task, kernel_keys, kernel_names, cores, threads, pinned, flops,"
                                " bytes, alone_raw_s, together_raw_s FROM corun_members ORDER BY run_id, slot"):
            members.setdefault(row[0], []).append(row[1:])
    finally:
        conn.close()
    out = []
    for run_id, label, arr, proto, mid, status, error, mk, created in runs:
        ms = tuple(MemberResult(task, tuple(keys.split(",")), tuple(names.split(",")), tuple(json.loads(cores)),
                                int(th), bool(pin), float(fl), float(by), tuple(json.loads(a)), tuple(json.loads(t)))
                   for task, keys, names, cores, th, pin, fl, by, a, t in members.get(run_id, []))
        ts = _dt.datetime.fromisoformat(created).timestamp()
        out.append(CorunRecord(Arrangement.from_dict(json.loads(arr)), ms, tuple(json.loads(mk)),
                               CorunProtocol.from_dict(json.loads(proto)), status, error, label, mid, ts))
    return out


def corun_frame(records_or_path, sequential: bool = True) -> pd.DataFrame:
    """One row per member of every ok co-run, with its partners' features, and (``sequential``) one
    row per ok sequential run: kind ``sequential``, ``alone_s`` the sum of its tasks' alone
    medians, ``together_s`` its median makespan (what the interference model validates the
    sequential prediction with), no partner.

    Columns: ``run_id, label, arrangement, kind, pair_id`` (the sorted task keys of the run: the
    unit a held-out split keeps together), ``task, keys, cores, threads, pinned, shared`` (1 when
    its cores overlap a partner's), ``flops, bytes, intensity, alone_s, together_s, slowdown``,
    and per partner sums ``partner_flops, partner_bytes, partner_intensity, partner_alone_s,
    partner_threads, partners``, and ``total_cores`` (distinct cores in use).
    """
    records = load_corun(records_or_path) if isinstance(records_or_path, (str, os.PathLike)) else list(records_or_path)
    rows = []
    for run_id, rec in enumerate(records):
        if rec.status != "ok":
            continue
        if rec.arrangement.kind == "sequential":
            rows += [sequential_row(rec, run_id)] if sequential else []
            continue
        rows += member_rows(rec.members, rec.arrangement, run_id=run_id, label=rec.label)
    return pd.DataFrame(rows)


def sequential_row(rec: CorunRecord, run_id: int = -1) -> dict:
    """The ``corun_frame`` row of a sequential run: predicted by the sum of alone medians."""
    members = rec.members
    alone = sum(m.alone_median_s or 0.0 for m in members)
    made = rec.makespan_median_s
    flops, nbytes = sum(m.flops for m in members), sum(m.bytes for m in members)
    slot = rec.arrangement.slots[0]
    return {"run_id": run_id, "label": rec.label, "arrangement": rec.arrangement.label, "kind": "sequential",
            "pair_id": "|".join(sorted(",".join(m.kernel_keys) for m in members)),
            "task": "+".join(m.task for m in members), "keys": ",".join(k for m in members for k in m.kernel_keys),
            "cores": len(slot.cores), "threads": slot.threads, "pinned": int(slot.pinned), "shared": 0,
            "flops": flops, "bytes": nbytes, "intensity": flops / nbytes if nbytes else 0.0, "alone_s": alone,
            "together_s": made if made is not None else float("nan"),
            "slowdown": made / alone if made and alone else float("nan"),
            "partner_flops": 0.0, "partner_bytes": 0.0, "partner_intensity": 0.0, "partner_alone_s": alone,
            "partner_threads": 0, "partners": 0, "total_cores": len(slot.cores)}


def member_rows(members, arrangement: Arrangement, run_id: int = -1, label: str = "",
                require_together: bool = True) -> list[dict]:
    """The ``corun_frame`` rows of one co-run; with ``require_together=False`` members that were
    not measured together (a co-run to predict) get NaN in ``together_s`` and ``slowdown``."""
    nan = float("nan")
    pair_id = "|".join(sorted(",".join(m.kernel_keys) for m in members))
    used = {c for m in members for c in m.cores}
    rows = []
    for i, m in enumerate(members):
        others = [o for j, o in enumerate(members) if j != i]
        if m.alone_median_s is None or (require_together and m.together_median_s is None):
            continue
        p_bytes = sum(o.bytes for o in others)
        p_flops = sum(o.flops for o in others)
        rows.append({
            "run_id": run_id, "label": label, "arrangement": arrangement.label,
            "kind": arrangement.kind, "pair_id": pair_id, "task": m.task, "keys": ",".join(m.kernel_keys),
            "cores": len(m.cores), "threads": m.threads, "pinned": int(m.pinned),
            "shared": int(any(set(m.cores) & set(o.cores) for o in others)),
            "flops": m.flops, "bytes": m.bytes, "intensity": m.flops / m.bytes if m.bytes else 0.0,
            "alone_s": m.alone_median_s,
            "together_s": m.together_median_s if m.together_median_s is not None else nan,
            "slowdown": m.slowdown if m.slowdown is not None else nan,
            "partner_flops": p_flops, "partner_bytes": p_bytes,
            "partner_intensity": p_flops / p_bytes if p_bytes else 0.0,
            "partner_alone_s": sum(o.alone_median_s or 0.0 for o in others),
            "partner_threads": sum(o.threads for o in others), "partners": len(others),
            "total_cores": len(used),
        })
    return rows
