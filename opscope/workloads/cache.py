"""On-disk cache of imported workloads.

Importing a zoo model through ``torch.export`` and TVM takes seconds to tens of seconds; the
CLI and the tests ask for the same models again and again.  A cache entry holds the fused Relax
module (``tvm.ir.save_json``) and the operators (``Operator.to_dict`` plus the name of the
PrimFunc in that module that hashes to the operator's key).  Its key hashes the model's identity (zoo name and
parameters, or an ONNX file's bytes), batch size, dtype, the versions of opscope, TVM, torch and
onnx, and the source of this package, so that any change to the import code invalidates it.

The directory is ``$OPSCOPE_CACHE_DIR`` or ``~/.cache/opscope`` (entries under ``workloads/``);
``OPSCOPE_CACHE_DIR=off`` disables the cache.  An unreadable entry is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from opscope.workloads.operator import Operator

FORMAT = 1


def cache_dir() -> Path | None:
    """The workload cache directory, or None when the cache is off."""
    root = os.environ.get("OPSCOPE_CACHE_DIR", "")
    if root.lower() == "off":
        return None
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "opscope"
    return base / "workloads"


@lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(here.rglob("*.py")):
        digest.update(path.relative_to(here).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def cache_key(identity: dict[str, Any], batch_size: int, dtype: str) -> str:
    blob = {
        "format": FORMAT,
        "identity": identity,
        "batch_size": batch_size,
        "dtype": dtype,
        "versions": {d: _version(d) for d in ("opscope", "apache-tvm", "torch", "onnx")},
        "code": _code_fingerprint(),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:32]


def load(key: str, with_tir: bool = True) -> tuple[dict[str, Any], tuple[Operator, ...], Any] | None:
    """(meta, operators with PrimFuncs, fused module) of a cache entry, or None.

    With ``with_tir=False`` neither TVM nor the module is loaded: the operators come without
    PrimFuncs and the module is None (importing TVM alone takes seconds).
    """
    root = cache_dir()
    if root is None:
        return None
    meta_path, mod_path = root / f"{key}.json", root / f"{key}.tvm.json"
    if not (meta_path.is_file() and mod_path.is_file()):
        return None
    if not with_tir:
        meta = peek(key)
        try:
            return meta, tuple(Operator.from_dict(e["operator"]) for e in meta["operators"]), None
        except (KeyError, TypeError, ValueError) as exc:
            print(f"opscope: ignoring unreadable workload cache entry {meta_path}: {exc}", file=sys.stderr)
            return None
    try:
        import tvm

        from opscope.workloads.extract import standalone, structural_key

        meta = json.loads(meta_path.read_text())
        mod = tvm.ir.load_json(mod_path.read_text())
        ops = []
        for entry in meta["operators"]:
            op = Operator.from_dict(entry["operator"])
            func = standalone(mod[entry["prim_func"]])
            if structural_key(func) != op.key:
                raise ValueError(f"PrimFunc {entry['prim_func']} no longer hashes to {op.key}")
            ops.append(_with_prim_func(op, func))
        return meta, tuple(ops), mod
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:  # TVM raises RuntimeError
        print(f"opscope: ignoring unreadable workload cache entry {meta_path}: {exc}", file=sys.stderr)
        return None


def store(key: str, meta: dict[str, Any], operators: tuple[Operator, ...], mod: Any) -> None:
    """Write a cache entry atomically; each operator's name is its PrimFunc's name in ``mod``."""
    import tvm

    root = cache_dir()
    if root is None:
        return
    root.mkdir(parents=True, exist_ok=True)
    record = dict(meta)
    names = prim_func_names(mod)
    missing = [op.name for op in operators if op.key not in names]
    if missing:  # an operator whose function is not in the module cannot come back from the cache
        print(f"opscope: not caching {meta.get('name', key)}: no function in the module for {missing[0]}",
              file=sys.stderr)
        return
    record["operators"] = [{"operator": op.to_dict(), "prim_func": names[op.key]} for op in operators]
    for path, text in ((root / f"{key}.tvm.json", tvm.ir.save_json(mod)), (root / f"{key}.json", json.dumps(record))):
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)


def prim_func_names(mod: Any) -> dict[str, str]:
    """Operator key -> name of the PrimFunc in ``mod`` that hashes to it.

    An operator's name is not always its function's: attention's logit and attend can share one
    kernel and are then named ``<function>_logit`` and ``<function>_attend``.
    """
    import tvm

    from opscope.workloads.extract import standalone, structural_key

    out: dict[str, str] = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            out.setdefault(structural_key(standalone(func)), gv.name_hint)
    return out


def peek(key: str) -> dict[str, Any] | None:
    """The metadata of a cache entry (no TVM import), or None."""
    root = cache_dir()
    if root is None:
        return None
    try:
        return json.loads((root / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def _with_prim_func(op: Operator, func: Any) -> Operator:
    from dataclasses import replace

    return replace(op, prim_func=func)
