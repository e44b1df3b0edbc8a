"""Co-run records in the measurement store: two tables of the store's schema (``opscope.store.schema``,
version 5 on), migrated with the store's own tables.

``corun_runs``     one row per co-run measurement: arrangement (kind + slots as JSON), protocol,
                   status, raw makespans and their median, label, machine;
``corun_members``  one row per task of a run: slot (cores, threads, pinned), kernel keys (the
                   store's ``workload_key`` of each operator), flops/bytes, raw latencies alone and
                   together, their medians and the slowdown.

``save_corun`` opens the file as a store for writing (a new file becomes a store; an older one is
migrated); ``load_corun`` opens it read-only and never writes it.
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
from opscope.store.sqlite import open_store


def save_corun(path: str | os.PathLike[str], records) -> list[int]:
    """Append ``records`` to the co-run tables of the SQLite file ``path``; returns their run ids."""
    store = open_store(path)
    conn = store.connection
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
        store.close()
    return ids


def load_corun(path: str | os.PathLike[str]) -> list[CorunRecord]:
    """Every co-run record in the file, oldest first."""
    if not Path(path).exists():
        raise StoreError(f"store {path}: no such file")
    store = open_store(path, read_only=True)
    conn = store.connection
    try:
        runs = conn.execute("SELECT run_id, label, arrangement_json, protocol_json, machine_id, status, error,"
                            " makespan_raw_s, created_at FROM corun_runs ORDER BY run_id").fetchall()
        members: dict[int, list] = {}
        for row in conn.execute("SELECT run_id, task, kernel_keys, kernel_names, cores, threads, pinned, flops,"
                                " bytes, alone_raw_s, together_raw_s FROM corun_members ORDER BY run_id, slot"):
            members.setdefault(row[0], []).append(row[1:])
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"store {path}: cannot read co-run records: {exc}") from None
    finally:
        store.close()
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
