"""Whole models through the analytical model: one DataFrame row per operator plus a ``TOTAL`` row.

Columns (SI units; a column's unit is in its name where it is not a plain count):

``op, kind, count`` | ``flops`` (per call, nominal, 2 per MAC), ``flops_executed`` (after sparsity)
| ``bytes`` (moved off-chip per call), ``bytes_<level>`` for every memory level | ``intensity``
(FLOP executed per off-chip byte) | ``compute_s``, ``memory_s`` (the slowest level's time),
``memory_s_<level>``, ``latency_s`` (one call), ``total_s`` (``latency_s x count``), ``share`` (of the
model's total time) | ``bound`` (``compute`` or a level name) | ``pe_utilization`` |
``attainable_flops`` and ``flops_per_s`` (the same: FLOP executed / latency, the roofline's y axis)
| ``energy_j`` (per call; NaN when the spec has no energies) | ``modelled`` | ``notes``
| ``bytes_array`` (delivered into the PEs, with a mapping) | ``energy_<part>_j`` (``mac``, each level,
``array``; when the spec has energies) | ``dataflow`` and ``mapping`` (the chosen mapping, "" without).

In the ``TOTAL`` row, ``count``, ``flops``, ``flops_executed``, bytes, times and energy are sums over
the model (each operator x its count); ``intensity`` and ``flops_per_s`` are the model's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from opscope.analytical.attention import apply_attention, is_attention
from opscope.analytical.model import Estimate, estimate_with_densities
from opscope.analytical.options import AnalysisOptions
from opscope.analytical.tiling import Tiles
from opscope.errors import OpscopeError
from opscope.targets import TargetSpec, load_target
from opscope.workloads.operator import Operator

UNITS = {
    "flops": "FLOP", "flops_executed": "FLOP", "bytes": "B", "intensity": "FLOP/B", "compute_s": "s",
    "memory_s": "s", "latency_s": "s", "total_s": "s", "attainable_flops": "FLOP/s", "flops_per_s": "FLOP/s",
    "energy_j": "J", "share": "fraction", "pe_utilization": "fraction",
}


def analyze_operators(ops: Sequence[Operator], spec: TargetSpec | str, options: AnalysisOptions | None = None,
                      tiles: Mapping[str, Tiles] | None = None) -> pd.DataFrame:
    """Per-operator analytical estimates of ``ops`` on ``spec`` (a spec, a name or a TOML path).

    ``tiles`` maps operator names to their tiling (``{level: {loop: tile}}``); the others are untiled.
    """
    spec = load_target(spec)
    tiles = dict(tiles or {})
    unknown = sorted(set(tiles) - {op.name for op in ops})
    if unknown:
        raise OpscopeError(f"tiles given for unknown operator(s) {', '.join(unknown)}")
    opts = options or AnalysisOptions()
    ops = list(ops)
    if not ops:
        raise OpscopeError("no operators to analyse")
    if opts.touches_attention and not any(is_attention(op) for op in ops):
        raise OpscopeError(
            f"attention method {opts.attention!r} is given but the model has no attention operators "
            "(no operator carries the 'attention' attribute)")
    if opts.layer_densities is not None and len(opts.layer_densities) != len(ops):
        raise OpscopeError(
            f"per-layer densities have {len(opts.layer_densities)} rows but the model has {len(ops)} operators")
    rows = []
    for i, op in enumerate(ops):
        dens = opts.layer_densities[i] if opts.layer_densities is not None else opts.densities
        for part in apply_attention([op], opts):
            rows.append((part, estimate_with_densities(part, spec, opts, dens, tiles.get(op.name))))
    return _frame(rows, spec)


def analyze_model(model, target: TargetSpec | str, batch_size: int = 1, dtype: str = "float32",
                  options: AnalysisOptions | None = None, seq_len: int | None = None) -> pd.DataFrame:
    """Analyse a whole model: ``model`` is a zoo name, an ``.onnx`` path, a layer-table ``.csv`` path or a
    sequence of ``Operator``; ``target`` a spec, a target name or a TOML path.  ``seq_len`` is passed
    to zoo transformers (an error for files, whose shapes are fixed)."""
    spec = load_target(target)
    ops = load_operators(model, batch_size, dtype, seq_len)
    return analyze_operators(ops, spec, options)


def load_operators(model, batch_size: int = 1, dtype: str = "float32", seq_len: int | None = None) -> list[Operator]:
    """The operators of ``model`` (see ``analyze_model``)."""
    if isinstance(model, (list, tuple)):
        if seq_len is not None:
            raise OpscopeError("seq_len applies to zoo models; operators given directly have fixed shapes")
        return list(model)
    text = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    if text is not None and text.lower().endswith(".csv"):
        if seq_len is not None:
            raise OpscopeError(f"{text}: seq_len cannot change a layer table's shapes; edit the table instead")
        if not Path(text).is_file():
            raise OpscopeError(f"layer table {text} does not exist")
        from opscope.workloads.layer_table import load_layer_table

        return load_layer_table(text, batch_size=batch_size, dtype=dtype)
    try:
        from opscope.workloads import load_model
    except ImportError:
        raise OpscopeError("model import (opscope.workloads.load_model) is not available in this build; "
                           "use a layer-table .csv") from None
    if text is not None and text.lower().endswith(".onnx") and seq_len is not None:
        raise OpscopeError(f"{text}: seq_len cannot change an ONNX model's shapes")
    params = {"seq_len": seq_len} if seq_len is not None else {}
    # The analytical model needs no TIR: a cached model then loads without importing TVM.
    workload = load_model(model, batch_size=batch_size, dtype=dtype, with_tir=False, **params)
    return list(workload.operators)


def _frame(rows: list[tuple[Operator, Estimate]], spec: TargetSpec) -> pd.DataFrame:
    levels = [lv.name for lv in spec.memory]
    off = spec.offchip.name
    parts = ["mac", *levels, "array"] if any(e.energy_by_part for _, e in rows) else []
    records = []
    for op, e in rows:
        rec = {
            "op": op.name, "kind": op.kind, "count": op.count, "flops": float(op.flops),
            "flops_executed": e.flops_executed, "bytes": e.bytes_moved[off], "intensity": e.intensity,
            "compute_s": e.compute_s, "memory_s": max(e.memory_s.values()), "latency_s": e.latency_s,
            "total_s": e.latency_s * op.count, "share": 0.0, "bound": e.bound, "pe_utilization": e.pe_utilization,
            "attainable_flops": e.attainable_flops, "flops_per_s": e.attainable_flops,
            "energy_j": math.nan if e.energy_j is None else e.energy_j, "modelled": e.modelled,
            "notes": "; ".join(e.notes), "bytes_array": e.array_bytes,
            "dataflow": e.mapping.dataflow if e.mapping else "", "mapping": e.mapping.describe() if e.mapping else "",
        }
        for part in parts:
            rec[f"energy_{part}_j"] = e.energy_by_part.get(part, math.nan)
        for lv in levels:
            rec[f"bytes_{lv}"] = e.bytes_moved[lv]
            rec[f"memory_s_{lv}"] = e.memory_s[lv]
        records.append(rec)

    def total_of(col: str) -> float:
        return float(sum(r[col] * r["count"] for r in records))

    total_s = float(sum(r["total_s"] for r in records))
    for r in records:
        r["share"] = r["total_s"] / total_s if total_s > 0 else 0.0
    fl_exec = total_of("flops_executed")
    total_bytes = total_of("bytes")
    energies = [r["energy_j"] * r["count"] for r in records if not math.isnan(r["energy_j"])]
    total = {
        "op": "TOTAL", "kind": "", "count": int(sum(r["count"] for r in records)), "flops": total_of("flops"),
        "flops_executed": fl_exec, "bytes": total_bytes,
        "intensity": fl_exec / total_bytes if total_bytes else math.inf,
        "compute_s": float(sum(r["compute_s"] * r["count"] for r in records if not math.isnan(r["compute_s"]))),
        "memory_s": total_of("memory_s"), "latency_s": total_s, "total_s": total_s, "share": 1.0,
        "bound": "", "pe_utilization": math.nan,
        "attainable_flops": fl_exec / total_s if total_s else 0.0,
        "flops_per_s": fl_exec / total_s if total_s else 0.0,
        "energy_j": float(sum(energies)) if energies else math.nan,
        "modelled": all(r["modelled"] for r in records), "notes": "", "bytes_array": total_of("bytes_array"),
        "dataflow": "", "mapping": "",
    }
    for part in parts:
        vals = [r[f"energy_{part}_j"] * r["count"] for r in records if not math.isnan(r[f"energy_{part}_j"])]
        total[f"energy_{part}_j"] = float(sum(vals)) if vals else math.nan
    for lv in levels:
        total[f"bytes_{lv}"] = total_of(f"bytes_{lv}")
        total[f"memory_s_{lv}"] = total_of(f"memory_s_{lv}")
    records.append(total)
    df = pd.DataFrame.from_records(records)
    df.attrs["target"] = spec.name
    df.attrs["dtype"] = rows[0][0].dtype if rows else "float32"
    df.attrs["units"] = dict(UNITS)
    return df
