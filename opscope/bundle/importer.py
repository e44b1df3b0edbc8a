"""``import_results``: a bundle's results file into a store, with the device's fingerprint.

The results file is JSON Lines, written by ``run.py`` one line at a time: a header (format, bundle
id, the whole manifest), then a ``{"fingerprint": ...}`` line at the start of every run, then one
line per measurement.  Each measurement belongs to the device of the fingerprint line before it.
Records are written through ``Store.add``, whose uniqueness key makes a second import of the same
file add nothing.  An incomplete last line (the device died while writing it) is skipped and
counted; any other bad line is an error naming the file and line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opscope.errors import OpscopeError

RESULTS_FORMAT = "opscope-bundle-results"
RESULTS_VERSION = 1


@dataclass(frozen=True)
class ImportSummary:
    path: Path
    bundle_id: str
    machine_ids: tuple[str, ...]
    read: int  # measurement lines read
    added: int  # records new to the store
    duplicates: int  # records the store already had
    incomplete_last_line: bool


def _load_lines(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    if path.is_dir():
        raise OpscopeError(f"{path}: is a folder; give the results file run.py wrote")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OpscopeError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise OpscopeError(f"{path}: not a results file (not UTF-8 text, byte {exc.start}); give the file "
                           "a bundle's run.py wrote") from None
    lines = text.split("\n")
    rows: list[tuple[int, dict[str, Any]]] = []
    incomplete = False
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            is_last = all(not rest.strip() for rest in lines[n:])
            if is_last and not text.endswith("\n"):
                incomplete = True
                continue
            raise OpscopeError(f"{path}, line {n}: not valid JSON; nothing was imported") from None
        if not isinstance(row, dict):
            raise OpscopeError(f"{path}, line {n}: expected a JSON object, got {type(row).__name__} "
                               f"{line.strip()[:40]!r}; nothing was imported")
        rows.append((n, row))
    return rows, incomplete


def read_results(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[tuple[int, dict, dict]], bool]:
    """(header, [(line, fingerprint, row)], incomplete_last_line) of a results file, validated."""
    path = Path(path)
    rows, incomplete = _load_lines(path)
    if not rows:
        raise OpscopeError(f"{path}: empty results file")
    line1, header = rows[0]
    if header.get("format") != RESULTS_FORMAT:
        raise OpscopeError(f"{path}, line {line1}: not an opscope bundle results file (format "
                           f"{header.get('format')!r})")
    if header.get("version") != RESULTS_VERSION:
        raise OpscopeError(f"{path}, line {line1}: results version {header.get('version')!r} is not "
                           f"supported (this opscope reads version {RESULTS_VERSION})")
    manifest = header.get("manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("entries"), list):
        raise OpscopeError(f"{path}, line {line1}: header has no manifest with entries")
    out = []
    fp: dict | None = None
    n_entries = len(manifest["entries"])
    for n, row in rows[1:]:
        if "fingerprint" in row:
            fp = row["fingerprint"]
            if not isinstance(fp, dict) or not fp:
                raise OpscopeError(f"{path}, line {n}: field 'fingerprint' must be a non-empty object (the "
                                   "device's machine facts); nothing was imported")
            continue
        for name in ("entry", "threads_requested", "status"):
            if name not in row:
                raise OpscopeError(f"{path}, line {n}: missing field {name!r}")
        if not isinstance(row["entry"], int) or not 0 <= row["entry"] < n_entries:
            raise OpscopeError(f"{path}, line {n}: field 'entry' {row['entry']!r} is not an entry of the manifest")
        if fp is None:
            raise OpscopeError(f"{path}, line {n}: a measurement before any fingerprint line")
        out.append((n, fp, row))
    return header, out, incomplete


def read_records(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[tuple[str, dict, Any]], bool]:
    """(header, [(machine id, fingerprint, Record)], incomplete_last_line): every line checked, nothing written."""
    from opscope.collector.machine import machine_id
    from opscope.collector.protocol import Protocol
    from opscope.store.record import Record
    from opscope.workloads.operator import Operator

    path = Path(path)
    header, rows, incomplete = read_results(path)
    manifest = header["manifest"]
    try:
        protocol = Protocol.from_json(json.dumps(manifest["protocol"]))
    except (KeyError, TypeError) as exc:
        raise OpscopeError(f"{path}, line 1: manifest field 'protocol' is malformed ({exc})") from None
    entries = manifest["entries"]
    ops: dict[int, Operator] = {}
    records = []
    for n, fp, row in rows:
        mid = machine_id(fp)
        entry = entries[row["entry"]]
        if row["entry"] not in ops:
            try:
                ops[row["entry"]] = Operator.from_dict(entry["operator"])
            except (KeyError, TypeError, ValueError) as exc:
                raise OpscopeError(f"{path}, line 1: manifest entry {row['entry']}: bad operator ({exc}); "
                                   "nothing was imported") from None
        ok = row["status"] == "ok"
        origin = row.get("origin") or {}
        sid = entry["schedule_id"]
        if entry.get("schedule_kind") == "library" and origin.get("version"):
            sid = f"lib:torch-{origin['version']}"  # the device's torch, as collect names it
        try:
            rec = Record(
                op=ops[row["entry"]], schedule_id=sid, schedule_kind=entry["schedule_kind"],
                trace_json=entry["trace_json"], knobs=tuple((k, v) for k, v in entry["knobs"]),
                threads=int(row.get("threads") or row["threads_requested"]) if ok else int(row["threads_requested"]),
                target=manifest["target"], machine_id=mid, protocol=protocol, status=row["status"],
                error=row.get("error", ""), raw_latencies_s=tuple(row.get("latencies_s", ())) if ok else (),
                pinned=bool(row.get("pinned", header.get("pinned", False))), attempt=0,
                created_at=row.get("created_at", ""), origin=origin if isinstance(origin, dict) else {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise OpscopeError(f"{path}, line {n}: {exc}; nothing was imported") from None
        records.append((mid, fp, rec))
    return header, records, incomplete


def import_results(path: str | os.PathLike[str], store: Any) -> ImportSummary:
    """Import ``path`` into ``store`` (a ``Store`` or a path); see the module docstring."""
    from opscope.store.sqlite import Store, open_store

    path = Path(path)
    # Every line is checked before the first write: a bad line never leaves part of a file imported.
    header, records, incomplete = read_records(path)
    st = store if isinstance(store, Store) else open_store(store)
    added = duplicates = 0
    machines: list[str] = []
    try:
        for mid, fp, rec in records:
            if mid not in machines:
                machines.append(mid)
                st.add_machine(mid, fp)
            if st.add(rec) is None:
                duplicates += 1
            else:
                added += 1
    finally:
        if not isinstance(store, Store):
            st.close()
    return ImportSummary(path=path, bundle_id=str(header.get("bundle_id")), machine_ids=tuple(machines),
                         read=len(records), added=added, duplicates=duplicates, incomplete_last_line=incomplete)
