"""Where the two halves meet: machine facts and the analytical model's estimates as features.

``SpecCache`` resolves the ``target`` names found in a frame to ``TargetSpec`` objects once.
``machine_features`` turns a spec into numbers (cores, caches, peaks, bandwidths).
``analytical_terms`` runs the analytical model (``opscope.analytical.estimate``) on one
operator, with the schedule's tile factors when they map onto the operator's loops, and returns its
compute time, memory time per level (by position, innermost first) and bound.
``roofline_bound`` is the plain roofline: no schedule can beat it on that spec.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from opscope.errors import OpscopeError, PredictorError
from opscope.targets.spec import TargetSpec
from opscope.workloads.operator import Operator, dtype_bytes

#: Memory levels described by position, innermost first; deeper hierarchies are cut, shorter padded.
MAX_LEVELS = 4


class SpecCache:
    """Target name -> spec, loaded once each; explicit specs given by the caller win."""

    def __init__(self, specs: Mapping[str, TargetSpec] | None = None) -> None:
        self._specs: dict[str, TargetSpec | None] = dict(specs or {})

    def get(self, name: str) -> TargetSpec:
        if name not in self._specs:
            try:
                from opscope.targets import load_target
            except ImportError as exc:
                raise PredictorError(f"target {name!r}: the target loader is not available ({exc})") from exc
            try:
                self._specs[name] = load_target(name)
            except OpscopeError as exc:
                raise PredictorError(f"target {name!r} named in the data cannot be loaded: {exc}") from exc
        spec = self._specs[name]
        assert spec is not None
        return spec

    def add(self, name: str, spec: TargetSpec) -> None:
        """Give ``name`` a spec unless the caller already did."""
        self._specs.setdefault(name, spec)

    def names(self) -> list[str]:
        """The target names given or loaded so far."""
        return list(self._specs)

    def measured(self, name: str) -> TargetSpec | None:
        """The ``<name>-measured`` spec (written by ``opscope probe``) when one exists."""
        key = f"{name}-measured"
        if key not in self._specs:
            try:
                from opscope.targets import load_target

                self._specs[key] = load_target(key)
            except (ImportError, OpscopeError):
                self._specs[key] = None
        return self._specs[key]


def _log2(x: float | None) -> float:
    if x is None or not x or x <= 0 or not math.isfinite(x):
        return math.nan
    return math.log2(x)


def machine_features(spec: TargetSpec, dtype: str, measured: TargetSpec | None) -> dict[str, float]:
    """Numbers that describe the device (names are fixed; values NaN where the spec has none)."""
    try:
        peak = spec.peak_for(dtype)
    except KeyError:
        peak = spec.peak_for("float32") if spec.peak_flops.get("float32") else math.nan
    out = {
        "m_cores": float(spec.cores) if spec.cores else math.nan,
        "m_freq_log2": _log2(spec.frequency_hz),
        "m_vector_bits": float(spec.vector_bits) if spec.vector_bits else math.nan,
        "m_peak_log2": _log2(peak),
    }
    for i in range(MAX_LEVELS):
        level = spec.memory[i] if i < len(spec.memory) else None
        out[f"m_l{i}_size_log2"] = _log2(level.size_bytes) if level else math.nan
        out[f"m_l{i}_bw_log2"] = _log2(level.bandwidth_Bps) if level else math.nan
    out["m_offchip_bw_log2"] = _log2(spec.offchip.bandwidth_Bps)
    if measured is not None:
        try:
            mpeak = measured.peak_for(dtype)
        except KeyError:
            mpeak = math.nan
        out["m_meas_peak_log2"] = _log2(mpeak)
        out["m_meas_offchip_bw_log2"] = _log2(measured.offchip.bandwidth_Bps)
    else:
        out["m_meas_peak_log2"] = math.nan
        out["m_meas_offchip_bw_log2"] = math.nan
    return out


def _peak(op: Operator, spec: TargetSpec) -> float:
    try:
        return spec.peak_for(op.dtype)
    except KeyError:
        return spec.peak_for("float32")


def roofline_bound(op: Operator, spec: TargetSpec) -> float:
    """max(FLOPs / peak, compulsory bytes / off-chip bandwidth): the fastest any schedule can be."""
    peak = _peak(op, spec)
    return max(op.flops / peak if peak else 0.0, op.bytes / spec.offchip.bandwidth_Bps)


def analytical_terms(op: Operator, spec: TargetSpec, tiles: Mapping[str, int] | None) -> dict[str, Any]:
    """The analytical model's estimate as plain numbers (seconds), memory levels by position."""
    try:
        from opscope.analytical import estimate
    except ImportError:
        estimate = None  # the analytical room is absent from this build
    est = None
    if estimate is not None:
        try:
            est = estimate(op, spec, None, dict(tiles) if tiles else None)
        except (ValueError, KeyError, ZeroDivisionError, OpscopeError):
            try:  # tiles that do not fit this operator: the untiled estimate
                est = estimate(op, spec, None, None) if tiles else None
            except (ValueError, KeyError, ZeroDivisionError, OpscopeError):
                est = None
    if est is None:
        # no analytical estimate for this operator: the plain roofline stands in (a_fallback = 1)
        compute = op.flops / _peak(op, spec) if op.flops else 0.0
        memory = {lvl.name: 0.0 for lvl in spec.memory}
        memory[spec.offchip.name] = op.bytes / spec.offchip.bandwidth_Bps
        latency = max(compute, memory[spec.offchip.name])
        bound = "compute" if compute >= memory[spec.offchip.name] else spec.offchip.name
        pe_util = math.nan
    else:
        compute, memory, latency = float(est.compute_s), dict(est.memory_s), float(est.latency_s)
        bound, pe_util = str(est.bound), float(est.pe_utilization or math.nan)
    names = [lvl.name for lvl in spec.memory]
    out: dict[str, Any] = {"a_compute_s": compute, "a_latency_s": latency, "a_pe_util": pe_util}
    for i in range(MAX_LEVELS):
        out[f"a_l{i}_s"] = float(memory.get(names[i], math.nan)) if i < len(names) else math.nan
    out["a_offchip_s"] = float(memory.get(spec.offchip.name, math.nan))
    out["a_bound_compute"] = 1.0 if bound == "compute" else 0.0
    out["a_bound_level"] = float(names.index(bound)) if bound in names else math.nan
    out["a_roofline_s"] = roofline_bound(op, spec)
    out["dtype_bytes"] = float(dtype_bytes(op.dtype))
    out["a_fallback"] = 1.0 if est is None else 0.0
    return out
