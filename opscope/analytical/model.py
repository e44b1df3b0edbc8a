"""The analytical cost of one operator on one target: roofline, PE array, sparsity, data movement.

For an operator ``op`` on a spec:

- FLOPs executed = ``op.flops`` x the sparsity factor (``skip_compute``, sparse attention);
- compute time = FLOPs executed / (peak for the dtype x PE-array utilisation x compute efficiency);
- memory time at each level = bytes read from that level / (bandwidth x memory efficiency);
- latency = the largest of these (transfers overlap compute), except with a tiling and no double
  buffering, where nothing overlaps: compute time + the sum of memory times;
- bound = ``compute`` or the name of the level whose time is the largest;
- intensity = FLOPs executed / bytes moved off-chip; attainable FLOP/s = FLOPs executed / latency;
- energy (when the spec has energies) = MACs executed x pJ/MAC + bytes at each level x its pJ/byte
  (+ bytes delivered into the PEs x the array's pJ/byte).

Registers inside the PEs (a level with ``in_pe``) are read per MAC operand, not per compulsory byte:
each MAC touches the dataflow's register words (``opscope.analytical.dataflow``).  With a mapping
(``AnalysisOptions.mapping``; by default for accelerator specs with a PE array and a buffer, when no
tiles are given) the traffic of every level, the array delivery and the energy come from the best
mapping the search finds (``opscope.analytical.search``); the compute time comes from the mapping's
PE steps when the dataflow is named (by the spec or the options), else from the GEMM-view
utilisation below (FRAME's model, which knows no mapping).

An operator of kind ``other`` is not modelled: its row keeps its compulsory traffic time only and is
marked ``modelled=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from opscope.analytical.dataflow import BY_NAME, DEFAULT_REGISTER_WORDS
from opscope.analytical.layer import layer_shape
from opscope.analytical.mapping import Mapping
from opscope.analytical.options import AnalysisOptions, Densities
from opscope.analytical.pe_array import pe_utilization
from opscope.analytical.search import Costing, MappingError, hierarchy, search
from opscope.analytical.sparsity import sparse_view
from opscope.analytical.tiling import Tiles, level_bytes
from opscope.errors import OpscopeError
from opscope.targets.spec import SEARCHED_DATAFLOWS, TargetSpec
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
    #: the mapping the search chose (None without one)
    mapping: Mapping | None = None
    #: bytes delivered into the PEs over the array (with a mapping; 0 without)
    array_bytes: float = 0.0
    #: energy by where it is spent: "mac", each level's name, "array" (J; empty without energies)
    energy_by_part: dict[str, float] = field(default_factory=dict)


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
    shape = layer_shape(op, view.byte_factors) if op.kind != "other" else None
    named = opts.dataflow or spec.dataflow
    if shape is not None and spec.memory[0].in_pe:
        # registers in the PEs are read per MAC operand, not per compulsory byte
        words = BY_NAME[named].register_words_per_mac if named else DEFAULT_REGISTER_WORDS
        moved = dict(moved)
        moved[spec.memory[0].name] = op.flops * view.flops_factor / 2.0 * words * shape.word_bytes
        if not named:
            notes = notes + (f"{spec.memory[0].name}: no dataflow named, {words} register words per MAC assumed",)
    want_map = not tiles and (opts.mapping == "search" or (
        opts.mapping == "auto" and spec.kind == "accelerator" and hierarchy(spec) is not None))
    if opts.mapping == "search" and tiles:
        raise OpscopeError(f"operator {op.name!r}: give tiles or ask for the mapping search, not both")
    if want_map and shape is None:
        want_map = False
        if op.kind != "other":
            notes = notes + (f"kind {op.kind!r} is not mapped: each tensor moves once at every level",)
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

    mapping = None
    array_bytes = 0.0
    array_s = 0.0
    if want_map and flops_exec:
        dataflows = (named,) if named else SEARCHED_DATAFLOWS
        costing = Costing(peak_flops=peak, flops_factor=view.flops_factor,
                          fixed_compute_s=None if named else compute_s, objective=opts.objective,
                          double_buffer=opts.double_buffer)
        try:
            mapping = search(shape, spec, costing, dataflows)
        except MappingError as exc:
            raise MappingError(f"operator {op.name!r}: {exc}") from None
        traffic = dict(mapping.traffic)
        moved = {lv.name: traffic[lv.name] for lv in spec.memory}
        array_bytes = traffic["array"]
        memory_s = {lv.name: moved[lv.name] / (lv.bandwidth_Bps * mem_eff) for lv in spec.memory}
        worst_level = max(memory_s, key=memory_s.get)
        offchip_bytes = moved[spec.offchip.name]
        if named:
            util = mapping.utilization
            compute_s = flops_exec / (peak * util * spec.compute_efficiency)
        bus_bw = spec.pe_array.bus_bandwidth_Bps
        array_s = array_bytes / (bus_bw * mem_eff) if bus_bw else 0.0

    worst = memory_s[worst_level]
    if array_s > worst:
        worst_level, worst = "array", array_s
    if (tiles or mapping is not None) and not opts.double_buffer:
        latency = compute_s + sum(memory_s.values()) + array_s
    else:
        latency = max(compute_s, worst)
    bound = "compute" if compute_s >= worst else worst_level
    intensity = flops_exec / offchip_bytes if offchip_bytes else math.inf
    attainable = flops_exec / latency if latency > 0 else 0.0
    parts = _energy_parts(spec, flops_exec, moved, array_bytes)
    energy = sum(parts.values()) if parts else None
    return Estimate(op=op.name, kind=op.kind, compute_s=compute_s, memory_s=memory_s, bytes_moved=moved,
                    latency_s=latency, bound=bound, intensity=intensity, attainable_flops=attainable,
                    pe_utilization=util, flops_executed=flops_exec, energy_j=energy, notes=notes,
                    mapping=mapping, array_bytes=array_bytes, energy_by_part=parts)


def _energy_parts(spec: TargetSpec, flops_exec: float, moved: dict[str, float], array_bytes: float) -> dict[str, float]:
    bus = spec.pe_array.bus_energy_pj_per_byte if spec.pe_array is not None else None
    if spec.energy_pj_per_mac is None and bus is None and all(lv.energy_pj_per_byte is None for lv in spec.memory):
        return {}
    parts = {"mac": (spec.energy_pj_per_mac or 0.0) * flops_exec / 2.0 * 1e-12}
    for lv in spec.memory:
        parts[lv.name] = (lv.energy_pj_per_byte or 0.0) * moved[lv.name] * 1e-12
    parts["array"] = (bus or 0.0) * array_bytes * 1e-12
    return parts

