"""Checks at the edges: what the commands read and write, checked before the work starts.

A command that reads a file, writes a table or a folder, or takes a thread count checks it here
first, so that a bad path ends in one line naming the flag, the path and what to do, not in a
traceback after minutes of work (or after the results were printed).

"Writable" honours the mode bits as well as the process's rights: a file or folder the user made
read-only (no ``w`` bit for anyone) is refused even for root, who could otherwise write it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from opscope.errors import OpscopeError


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def writable(path: Path) -> bool:
    """Whether this process may write ``path`` (a file or a folder) and its mode lets anyone write it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(path, os.W_OK)


def _folder_can_hold(path: Path, flag: str) -> None:
    """The folder ``path`` would go into exists as a writable folder, or can be created in one."""
    parent = path.absolute().parent
    base = _nearest_existing(parent)
    if not base.is_dir():
        raise OpscopeError(f"{flag} {path}: {base} is a file, not a folder; choose another path")
    if not writable(base):
        raise OpscopeError(f"{flag} {path}: folder {base} is not writable; choose another path")


def out_file(path: str | os.PathLike[str], flag: str, suffixes: Iterable[str] | None = None) -> Path:
    """An output file path that can be written: not a folder, a known suffix, in a writable folder.

    Missing folders above it are allowed (the writer creates them); an existing file must be
    writable (it is replaced).
    """
    p = Path(path)
    if str(path) == "":
        raise OpscopeError(f"{flag}: empty path; give a file name")
    if suffixes is not None:
        allowed = tuple(s.lower() for s in suffixes)
        if p.suffix.lower() not in allowed:
            raise OpscopeError(f"{flag} {p}: use a file name ending in {' or '.join(allowed)}")
    if p.is_dir():
        raise OpscopeError(f"{flag} {p}: is a folder; give a file name")
    if p.exists() and not writable(p):
        raise OpscopeError(f"{flag} {p}: the file is read-only; choose another path or make it writable")
    _folder_can_hold(p, flag)
    return p


def out_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """An output folder that exists and is writable, or can be created in a writable folder."""
    p = Path(path)
    if str(path) == "":
        raise OpscopeError(f"{flag}: empty path; give a folder name")
    if p.exists() and not p.is_dir():
        raise OpscopeError(f"{flag} {p}: is a file, not a folder; give a folder path")
    if p.is_dir():
        if not writable(p):
            raise OpscopeError(f"{flag} {p}: folder is not writable; choose another path")
        return p
    _folder_can_hold(p, flag)
    return p


def in_file(path: str | os.PathLike[str], what: str) -> Path:
    """An input file that exists, is a file and can be read; ``what`` names it in the message."""
    p = Path(path)
    if not p.exists():
        raise OpscopeError(f"{what} {p}: no such file")
    if p.is_dir():
        raise OpscopeError(f"{what} {p}: is a folder, expected a file")
    if not os.access(p, os.R_OK):
        raise OpscopeError(f"{what} {p}: not readable (permission denied)")
    return p


def logical_cpus() -> int:
    return os.cpu_count() or 1


def thread_counts(text: str, flag: str = "--threads") -> str:
    """Check a thread list such as ``1,2`` or ``1,all``; returns it unchanged.

    A count above the logical CPUs would be clamped by the runtime and stored as what ran, so a
    second identical run would measure everything again; it is refused here instead.
    """
    cpus = logical_cpus()
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise OpscopeError(f"{flag} {text!r}: no thread count given (use e.g. 1,2 or all)")
    for part in parts:
        if part == "all":
            continue
        try:
            n = int(part)
        except ValueError:
            raise OpscopeError(f"{flag} {text!r}: {part!r} is not a thread count (use e.g. 1,2 or all)") from None
        if n < 1:
            raise OpscopeError(f"{flag} {text!r}: thread counts must be >= 1, got {n}")
        if n > cpus:
            raise OpscopeError(f"{flag} {text!r}: {n} threads but this machine has {cpus} logical CPUs; "
                               f"use at most {cpus} (or all)")
    return str(text)


def thread_count(n: int | None, flag: str = "--threads") -> int | None:
    """One thread count (None passes), refused below 1 or above the logical CPUs."""
    if n is None:
        return None
    cpus = logical_cpus()
    if n < 1 or n > cpus:
        raise OpscopeError(f"{flag} {n}: must be between 1 and the {cpus} logical CPUs of this machine")
    return n


def at_least(value: int | float | None, minimum: int | float, flag: str) -> None:
    """Refuse ``value`` below ``minimum`` (None passes)."""
    if value is not None and value < minimum:
        raise OpscopeError(f"{flag} {value}: must be >= {minimum}")


def zoo_params(items: Iterable[str], flag: str = "--param") -> dict[str, int]:
    """``KEY=INT`` items -> {KEY: INT}; the zoo model then checks the names and values."""
    out: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            number = int(value.strip()) if sep and key.strip() else None
        except ValueError:
            number = None
        if number is None:
            raise OpscopeError(f"{flag} {item!r}: expected KEY=INT, e.g. image_size=64")
        out[key.strip()] = number
    return out
