"""A target spec per machine, built from the machine's fingerprint (the store's ``machines`` table).

Rows of every store carry ``target = "host"``, whichever machine measured them, so the machine
features (``m_*``) and the analytical estimate of a row would describe whatever machine reads the
data.  To learn across machines, each machine's rows get a target name of their own and a spec built
from its fingerprint: cores, per-core L1/L2 and the shared L3 (``caches``), the vector width implied
by the LLVM CPU the kernels were built for (``tvm_target``'s ``mcpu``), and the nominal peaks and
bandwidths of ``opscope.targets.host`` (same per-cycle figures).  A fingerprint does not record the
clock, so ``frequency_hz`` is an argument (default 2.5 GHz, said in the spec's sources).

``retarget(frame, name)`` renames the target of a frame's rows; pass ``specs={name: spec}`` to the
predictors (``fit``/``predict`` resolve target names through it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from opscope.errors import PredictorError
from opscope.targets import host as host_mod
from opscope.targets.spec import MemoryLevel, TargetSpec

DEFAULT_FREQUENCY_HZ = 2.5e9
#: LLVM CPU name (prefix) -> vector register bits the kernels may use
_MCPU_VECTOR_BITS = (("znver4", 512), ("znver5", 512), ("skylake-avx512", 512), ("icelake", 512),
                     ("sapphirerapids", 512), ("cascadelake", 512), ("x86-64-v4", 512), ("znver", 256),
                     ("x86-64-v3", 256), ("haswell", 256), ("skylake", 256), ("broadwell", 256),
                     ("x86-64-v2", 128), ("x86-64", 128), ("neoverse", 128), ("cortex", 128))


def _size(text: Any, field: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", str(text))
    if not m:
        raise PredictorError(f"fingerprint field {field!r}: {text!r} is not a size such as 32K or 2M")
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)]


def vector_bits_of(mcpu: str | None) -> int | None:
    """Vector width for an LLVM CPU name (None when unknown)."""
    if not mcpu:
        return None
    for prefix, bits in _MCPU_VECTOR_BITS:
        if mcpu.startswith(prefix):
            return bits
    return None


def _mcpu(fp: Mapping[str, Any]) -> str | None:
    raw = fp.get("tvm_target")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw.get("mcpu") if isinstance(raw, Mapping) else None


def spec_from_fingerprint(fp: Mapping[str, Any], name: str, frequency_hz: float | None = None,
                          vector_bits: int | None = None) -> TargetSpec:
    """A nominal CPU spec named ``name`` from a fingerprint dict (``cores``, ``caches``, ``tvm_target``)."""
    try:
        cores = int(fp["cores"])
    except (KeyError, TypeError, ValueError):
        raise PredictorError(f"fingerprint of {name!r}: field 'cores' missing or not a number") from None
    if cores < 1:
        raise PredictorError(f"fingerprint of {name!r}: field 'cores' must be at least 1, got {cores}")
    caches = fp.get("caches") or {}
    if not isinstance(caches, Mapping):
        raise PredictorError(f"fingerprint of {name!r}: field 'caches' must be an object such as {{'L1d': '32K'}}")
    mcpu = _mcpu(fp)
    bits = vector_bits or vector_bits_of(mcpu) or 256
    freq = float(frequency_hz or DEFAULT_FREQUENCY_HZ)
    per_cycle = {"L1": host_mod.L1_LOADS_PER_CYCLE * bits // 8, "L2": host_mod.L2_BYTES_PER_CYCLE,
                 "L3": host_mod.L3_BYTES_PER_CYCLE}
    memory = []
    for level, key, shared in (("L1", "L1d", False), ("L2", "L2", False), ("L3", "L3", True)):
        if key in caches:
            size = _size(caches[key], f"caches.{key}") * (1 if shared else cores)
            memory.append(MemoryLevel(level, size, float(per_cycle[level] * cores * freq)))
    memory.append(MemoryLevel("DRAM", None, host_mod.DRAM_BPS_PER_CORE * cores))
    peak32 = cores * freq * host_mod.FMA_UNITS * (bits // 32) * 2
    sources = (f"from the fingerprint of {fp.get('cpu_model', '?')}: {cores} cores, caches {dict(caches)}, "
               f"mcpu {mcpu or '?'} ({bits}-bit vectors)",
               f"clock {freq / 1e9:.2f} GHz " + ("given" if frequency_hz else "assumed (fingerprints do not record it)"),
               "nominal peaks and bandwidths: the per-cycle figures of opscope/targets/host.py")
    return TargetSpec(name=name, kind="cpu", frequency_hz=freq, memory=tuple(memory),
                      peak_flops={"float32": peak32, "int8": 4 * peak32}, nominal=True, cores=cores,
                      vector_bits=bits, sources=sources, extra={"model_name": str(fp.get("cpu_model", ""))})


def store_fingerprints(path: str) -> dict[str, dict[str, Any]]:
    """machine id -> fingerprint, read from a store's ``machines`` table (opened read-only)."""
    import sqlite3
    from pathlib import Path

    if not Path(path).is_file():
        raise PredictorError(f"{path}: no such store")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT machine_id, fingerprint_json FROM machines").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise PredictorError(f"{path}: cannot read its machines table ({exc})") from None
    out = {}
    for mid, text in rows:
        try:
            out[str(mid)] = json.loads(text)
        except ValueError:
            raise PredictorError(f"{path}: machine {mid}: fingerprint is not JSON") from None
    return out


def retarget(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """A copy of ``frame`` whose rows name target ``name`` (pair it with ``specs={name: spec}``)."""
    out = frame.copy()
    out["target"] = name
    return out
