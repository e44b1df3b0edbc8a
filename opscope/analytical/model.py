"""The analytical cost of one operator on one target: roofline, PE array, sparsity, data movement.

For an operator ``op`` on a spec:

- FLOPs executed = ``op.flops`` x the sparsity factor (``skip_compute``, sparse attention);
- compute time = FLOPs executed / (peak for the dtype x PE-array utilisation x compute efficiency);
- memory time at each level = bytes read from that level / (bandwidth x memory efficiency);
- latency = the largest of these (transfers overlap compute), except with a tiling and no double
  buffering, where nothing overlaps: compute time + the sum of memory times;
- bound = ``compute`` or the name of the level whose time is the largest;
- intensity = FLOPs executed / bytes moved off-chip; attainable FLOP/s = FLOPs executed / latency;
- energy (when the spec has energies) = MACs executed x pJ/MAC + bytes at each level x its pJ/byte.

An operator of kind ``other`` is not modelled: its row keeps its compulsory traffic time only and is
marked ``modelled=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from opscope.analytical.options import AnalysisOptions, Densities
from opscope.analytical.pe_array import pe_utilization
from opscope.analytical.sparsity import sparse_view
from opscope.analytical.tiling import Tiles, level_bytes
from opscope.errors import OpscopeError
from opscope.targets.spec import TargetSpec
from opscope.workloads.operator import Operator

_DEFAULT = AnalysisOptions()


@dataclass(frozen=True)
class Estimate:
    """The analytical model's answer for one call of one operator (SI units: s, bytes, FLOP/s, J)."""

    op: str
    kind: str
    compute_s: float
    memory_s: dict[str, float]
    bytes_moved: dict[str, float]
    latency_s: float
    bound: str
    intensity: float
    attainable_flops: float
    pe_utilization: float
    flops_executed: float
    energy_j: float | None = None
    modelled: bool = True
    notes: tuple[str, ...] = field(default=())


def estimate(op: Operator, spec: TargetSpec, options: AnalysisOptions | None = None,
             tiles: Tiles | None = None) -> Estimate:
    """The analytical estimate of one call of ``op`` on ``spec``; see the module docstring."""
    opts = options or _DEFAULT
    dens: Densities = opts.densities
    return _estimate(op, spec, opts, dens, tiles)


def estimate_with_densities(op: Operator, spec: TargetSpec, opts: AnalysisOptions, dens: Densities,
                            tiles: Tiles | None = None) -> Estimate:
    """``estimate`` with this operator's own densities (per-layer sparsity)."""
    return _estimate(op, spec, opts, dens, tiles)


def _estimate(op: Operator, spec: TargetSpec, opts: AnalysisOptions, dens: Densities, tiles: Tiles | None) -> Estimate:
    attention = op.attr("attention")
    if attention in ("logit", "attend") and opts.attention in ("lowrank", "kernel"):
        raise OpscopeError(
            f"operator {op.name!r}: attention method {opts.attention!r} rewrites the model's attention "
            "operators; use analyze_operators/analyze_model, which apply it")
    attn_density = opts.effective_spattn_density if (opts.attention == "sparse" and attention) else 1.0
    view = sparse_view(op, dens, opts.compress_mem, opts.skip_compute, opts.skip_compute_on_noopt_output,
                       opts.min_density, attn_density)
    moved, notes = level_bytes(op, spec, tiles, view.byte_factors, opts.double_buffer)
    mem_eff = spec.memory_efficiency
    memory_s = {lv.name: moved[lv.name] / (lv.bandwidth_Bps * mem_eff) for lv in spec.memory}
    worst_level = max(memory_s, key=memory_s.get)
    offchip_bytes = moved[spec.offchip.name]

    if op.kind == "other":
        latency = memory_s[worst_level]
        return Estimate(op=op.name, kind=op.kind, compute_s=math.nan, memory_s=memory_s, bytes_moved=moved,
                        latency_s=latency, bound="unmodelled", intensity=math.nan, attainable_flops=math.nan,
                        pe_utilization=math.nan, flops_executed=float(op.flops), energy_j=None, modelled=False,
                        notes=notes + ("kind 'other': compute not modelled, compulsory traffic only",))

    flops_exec = op.flops * view.flops_factor
    try:
        peak = spec.peak_for(op.dtype)
    except KeyError:
        if op.gemm is not None:
            raise OpscopeError(
                f"target {spec.name!r} has no peak for dtype {op.dtype!r} (operator {op.name!r}); it has "
                f"{', '.join(sorted(spec.peak_flops))}") from None
        # index/cast/elementwise operators in odd dtypes (int64, bool): they are memory-bound anyway
        fallback = "float32" if "float32" in spec.peak_flops else max(spec.peak_flops, key=spec.peak_flops.get)
        peak = spec.peak_flops[fallback]
        notes = notes + (f"no peak for {op.dtype}: {fallback}'s used",)
    util = 1.0
    if spec.pe_array is not None and view.gemm is not None:
        util = pe_utilization(*view.gemm, spec.pe_array)
    compute_s = flops_exec / (peak * util * spec.compute_efficiency) if flops_exec else 0.0

    worst = memory_s[worst_level]
    if tiles and not opts.double_buffer:
        latency = compute_s + sum(memory_s.values())
    else:
        latency = max(compute_s, worst)
    bound = "compute" if compute_s >= worst else worst_level
    intensity = flops_exec / offchip_bytes if offchip_bytes else math.inf
    attainable = flops_exec / latency if latency > 0 else 0.0
    energy = _energy(spec, flops_exec, moved)
    return Estimate(op=op.name, kind=op.kind, compute_s=compute_s, memory_s=memory_s, bytes_moved=moved,
                    latency_s=latency, bound=bound, intensity=intensity, attainable_flops=attainable,
                    pe_utilization=util, flops_executed=flops_exec, energy_j=energy, notes=notes)


def _energy(spec: TargetSpec, flops_exec: float, moved: dict[str, float]) -> float | None:
    if spec.energy_pj_per_mac is None and all(lv.energy_pj_per_byte is None for lv in spec.memory):
        return None
    pj = (spec.energy_pj_per_mac or 0.0) * flops_exec / 2.0
    for lv in spec.memory:
        if lv.energy_pj_per_byte is not None:
            pj += lv.energy_pj_per_byte * moved[lv.name]
    return pj * 1e-12

