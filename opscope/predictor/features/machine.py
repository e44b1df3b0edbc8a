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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opscope.errors import PredictorError
from opscope.report.machine import LOCAL_TARGETS
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


def _positive(fp: Mapping[str, Any], key: str, name: str) -> float | None:
    """``fp[key]`` as a positive number, None where absent; anything else is one line naming the field."""
    value = fp.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise PredictorError(f"fingerprint of {name!r}: field {key!r} must be a positive number, got {value!r}")
    return float(value)


def spec_from_fingerprint(fp: Mapping[str, Any], name: str, frequency_hz: float | None = None,
                          vector_bits: int | None = None) -> TargetSpec:
    """A nominal CPU spec named ``name`` from a fingerprint dict (``cores``, ``caches``, ``tvm_target``, and
    where recorded ``frequency_hz`` and ``memory_bytes``): for a fingerprint of this machine, the spec
    ``detect_host`` makes of it, figure for figure (a test checks that)."""
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
    recorded = _positive(fp, "frequency_hz", name)
    freq = float(frequency_hz or recorded or DEFAULT_FREQUENCY_HZ)
    dram = _positive(fp, "memory_bytes", name)
    per_cycle = {"L1": host_mod.L1_LOADS_PER_CYCLE * bits // 8, "L2": host_mod.L2_BYTES_PER_CYCLE,
                 "L3": host_mod.L3_BYTES_PER_CYCLE}
    memory = []
    for level, key, shared in (("L1", "L1d", False), ("L2", "L2", False), ("L3", "L3", True)):
        if key in caches:
            size = _size(caches[key], f"caches.{key}") * (1 if shared else cores)
            memory.append(MemoryLevel(level, size, float(per_cycle[level] * cores * freq)))
    memory.append(MemoryLevel("DRAM", int(dram) if dram else None, host_mod.DRAM_BPS_PER_CORE * cores))
    peak32 = cores * freq * host_mod.FMA_UNITS * (bits // 32) * 2
    sources = (f"from the fingerprint of {fp.get('cpu_model', '?')}: {cores} cores, caches {dict(caches)}, "
               f"mcpu {mcpu or '?'} ({bits}-bit vectors)",
               f"clock {freq / 1e9:.2f} GHz " + ("given" if frequency_hz else "recorded" if recorded
                                                 else "assumed (the fingerprint does not record it)"),
               "nominal peaks and bandwidths: the per-cycle figures of opscope/targets/host.py")
    return TargetSpec(name=name, kind="cpu", frequency_hz=freq, memory=tuple(memory),
                      peak_flops={"float32": peak32, "int8": 4 * peak32}, nominal=True, cores=cores,
                      vector_bits=bits, sources=sources, extra={"model_name": str(fp.get("cpu_model", ""))},
                      # what its kernels were built for (read by features.compiled)
                      # (num-cores: replaying a sampled schedule's trace for this target needs it)
                      tvm_target={"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu, "num-cores": cores}
                      if mcpu else None)


def store_fingerprints(path: str) -> dict[str, dict[str, Any]]:
    """machine id -> fingerprint, read from a store's ``machines`` table (opened read-only)."""
    from opscope.errors import StoreError
    from opscope.store.sqlite import machines

    try:
        return machines(path)
    except StoreError as exc:
        raise PredictorError(str(exc)) from None


def retarget(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """A copy of ``frame`` whose rows name target ``name`` (pair it with ``specs={name: spec}``)."""
    out = frame.copy()
    out["target"] = name
    return out


# --- learning from several machines ---------------------------------------------------------------

#: the target name that a machine's rows take in a predictor trained on several machines
MACHINE_TARGET = "machine:{}"
_MACHINE_PREFIX = MACHINE_TARGET.format("")
#: the fingerprints of the machines in a Parquet or CSV export ``X.parquet``: ``X.machines.json``
SIDECAR_SUFFIX = ".machines.json"


def sidecar_path(path: str | Path) -> Path:
    """Where the machines of a Parquet or CSV export are kept: ``X.parquet`` -> ``X.machines.json``."""
    return Path(path).with_suffix(SIDECAR_SUFFIX)


def source_fingerprints(path: str | Path) -> dict[str, dict[str, Any]]:
    """machine id -> fingerprint for one measurement source: a store's ``machines`` table, or the
    ``X.machines.json`` beside an export ``X.parquet``/``X.csv`` (empty when there is none)."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in (".parquet", ".csv"):
        side = sidecar_path(path)
        if path.is_dir() or not side.is_file():
            return {}
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PredictorError(f"{side}: not readable JSON ({str(exc).splitlines()[0][:120]})") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in data.items()):
            raise PredictorError(f"{side}: expected an object of machine id -> fingerprint object")
        return data
    return store_fingerprints(str(path))


def write_sidecar(path: str | Path, fingerprints: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write the fingerprints of an export's machines beside it (``sidecar_path``)."""
    side = sidecar_path(path)
    side.write_text(json.dumps({k: dict(v) for k, v in sorted(fingerprints.items())}, indent=1, sort_keys=True,
                               default=str) + "\n", encoding="utf-8")
    return side


def machine_specs(frame: pd.DataFrame, fingerprints: Mapping[str, Mapping[str, Any]], here: str | None,
                  where: str = "the data") -> tuple[dict[str, TargetSpec], dict[str, dict[str, Any]]]:
    """The specs a predictor trained on ``frame`` needs for rows measured on other machines.

    Every row of a local target says ``host``, whichever machine measured it.  When the frame's local
    rows come from more than one machine, each machine but this one (``here``) gets a spec from its
    fingerprint under ``machine:<id>``; this machine's rows keep ``host``.  Returns (specs, the
    fingerprints used), both empty for rows of one machine.  A machine without a fingerprint is one
    PredictorError line naming it.
    """
    if "machine_id" not in frame or "target" not in frame:
        return {}, {}
    local = frame["target"].astype(str).isin(LOCAL_TARGETS).to_numpy()
    counts = frame.loc[local, "machine_id"].astype(str).value_counts()
    if len(counts) < 2:
        return {}, {}
    specs, used = {}, {}
    for mid, n in counts.items():
        if mid == here:
            continue
        fp = fingerprints.get(mid)
        if fp is None:
            raise PredictorError(
                f"{where}: {n} rows were measured on machine {mid}, whose fingerprint is not given (a store "
                f"keeps it in its machines table, an export X.parquet in X{SIDECAR_SUFFIX}, which "
                "`opscope export` writes); train on one machine's rows, or give its fingerprint")
        specs[MACHINE_TARGET.format(mid)] = machine_spec(mid, fp, where)
        used[mid] = dict(fp)
    return specs, used


def machine_spec(mid: str, fp: Mapping[str, Any], where: str) -> TargetSpec:
    """The spec ``machine:<mid>`` from a machine's fingerprint, whose ``frequency_hz`` and ``memory_bytes``
    (recorded by the collector since 2026-12-07, or written by hand) give the clock and the memory size."""
    try:
        return spec_from_fingerprint(fp, MACHINE_TARGET.format(mid))
    except PredictorError as exc:
        raise PredictorError(f"{where}: machine {mid}: {str(exc).split(': ', 1)[-1]}") from None


def machine_frame(frame: pd.DataFrame, names: Any) -> pd.DataFrame:
    """``frame`` with each local row of a machine that has a spec of its own (``machine:<id>`` among
    ``names``) naming that spec as its target; the frame itself when no row does."""
    known = [n for n in names if isinstance(n, str) and n.startswith(_MACHINE_PREFIX)] if names else []
    if not known or "machine_id" not in frame or "target" not in frame:
        return frame
    mapped = _MACHINE_PREFIX + frame["machine_id"].astype(str)
    use = (frame["target"].astype(str).isin(LOCAL_TARGETS) & mapped.isin(known)).to_numpy()
    if not use.any():
        return frame
    out = frame.copy()
    out["target"] = np.where(use, mapped.to_numpy(dtype=object), out["target"].to_numpy(dtype=object))
    return out
