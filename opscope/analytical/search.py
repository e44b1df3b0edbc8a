"""The mapping search: the best legal ``Mapping`` of one layer on a spec with a PE array and buffers.

It enumerates, for each dataflow (the spec's, or all three):

1. spatial unrollings: the dataflow's loops on the array's height, width (up to two loops each) and
   instances (one), factors that divide the loop or fill the dimension best; the ``SPATIAL_KEEP``
   unrollings with the fewest PE steps go on;
2. PE tiles (with registers in the PE): divisors of the loops the dataflow lets a PE block, whose
   held operands fit the registers (streamed loops count one step);
3. buffer tiles: divisors of what is left (at most ``DIVISORS_KEEP`` per loop, spread evenly in log
   scale), the rest is off-chip;
4. loop orders at the buffer and off-chip levels: each tensor's stationary order (the loops it does
   not depend on innermost), 3 x 3;
5. buffer bypass per tensor (8 subsets); the buffer must hold the stored tiles (twice with double
   buffering).

Every candidate is costed exactly (``opscope.analytical.mapping``), vectorised with numpy, and the
best by the objective wins: ``energy``, ``latency`` or ``edp`` (their product); ties go to lower
energy, then lower latency, then the first found.  The candidate sets depend only on the layer,
the array and the loop extents, never on a memory's size, so a larger buffer or register file only
adds legal candidates and never raises the best objective (the law ZigZag issue 52 broke).  With
the ``latency`` objective unrollings are visited by PE steps and the search stops when compute time
alone reaches the best latency, so its latency is exact over every unrolling (among mappings of equal
latency, the energy tie-break sees only those visited).  Results are cached per
(layer shape, spec, options).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from opscope.analytical.dataflow import BY_NAME, LOOPS, Dataflow
from opscope.analytical.layer import TENSORS, LayerShape
from opscope.analytical.mapping import Mapping, stationary_order
from opscope.errors import OpscopeError
from opscope.targets.spec import MemoryLevel, TargetSpec

OBJECTIVES = ("energy", "latency", "edp")
SPATIAL_KEEP = 16
DIVISORS_KEEP = 6
#: buffer-tile candidates per PE tile at most: fewer divisors per loop when many loops are split
ROWS_PER_PE_TILE = 2048
SMALL_ROOM = 32
_CACHE: dict = {}
_CACHE_MAX = 4096
_L = len(LOOPS)
_IDX = {loop: i for i, loop in enumerate(LOOPS)}


class MappingError(OpscopeError):
    """No legal mapping: the message says which constraint ruled each option out."""


@dataclass(frozen=True)
class Hierarchy:
    """A spec's memories as the mapping sees them."""

    registers: MemoryLevel | None  # in the PEs
    buffer: MemoryLevel  # the innermost shared level, filled from off-chip
    between: tuple[MemoryLevel, ...]  # shared levels outside the buffer (pass-through)
    offchip: MemoryLevel


def hierarchy(spec: TargetSpec) -> Hierarchy | None:
    """The mapping's view of ``spec``, or None when it has no PE array or no on-chip buffer."""
    if spec.pe_array is None:
        return None
    levels = list(spec.memory)
    regs = levels.pop(0) if levels and levels[0].in_pe else None
    if len(levels) < 2:
        return None
    return Hierarchy(registers=regs, buffer=levels[0], between=tuple(levels[1:-1]), offchip=levels[-1])


@dataclass(frozen=True)
class Costing:
    """What the search needs besides the layer: unit costs and how compute time is counted."""

    peak_flops: float  # for the operator's dtype
    flops_factor: float  # executed / nominal (sparsity)
    #: compute time fixed by the caller (the GEMM-view utilisation), or None: the mapping's steps
    fixed_compute_s: float | None
    objective: str = "energy"
    double_buffer: bool = True


def search(shape: LayerShape, spec: TargetSpec, costing: Costing, dataflows: tuple[str | Dataflow, ...]) -> Mapping:
    """The best mapping of ``shape`` on ``spec`` over ``dataflows``; ``MappingError`` when none is legal."""
    if costing.objective not in OBJECTIVES:
        raise OpscopeError(f"unknown mapping objective {costing.objective!r}; known: {', '.join(OBJECTIVES)}")
    hier = hierarchy(spec)
    if hier is None:
        raise MappingError(f"target {spec.name!r}: a mapping needs a [pe_array] and an on-chip buffer level "
                           "below the off-chip one")
    key = (shape, _spec_key(spec), costing, dataflows)
    if key in _CACHE:
        return _CACHE[key]
    best = None
    reasons = []
    for name in dataflows:
        df = BY_NAME[name] if isinstance(name, str) else name  # a name, or a Dataflow of one's own
        found, why = _search_dataflow(shape, spec, hier, costing, df)
        if found is None:
            reasons.append(f"{df.name}: {why}")
        elif best is None or found[0] < best[0]:
            best = found
    if best is None:
        raise MappingError(f"target {spec.name!r}: no legal mapping: " + "; ".join(reasons))
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[key] = best[1]
    return best[1]


def _spec_key(spec: TargetSpec):
    return (spec.name, spec.frequency_hz, spec.memory, spec.pe_array, spec.energy_pj_per_mac, spec.dataflow,
            spec.compute_efficiency, spec.memory_efficiency)


# -- candidates --------------------------------------------------------------------------------------

def thin_divisors(n: int, keep: int = DIVISORS_KEEP) -> list[int]:
    """Divisors of ``n``: all when few, else ``keep`` of them spread evenly in log scale (1 and n kept)."""
    divs = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    divs = sorted(set(divs + [n // d for d in divs]))
    if len(divs) <= keep:
        return divs
    picks = {divs[0], divs[-1]}
    logs = np.log(divs)
    for target in np.linspace(0.0, math.log(n), keep):
        picks.add(divs[int(np.argmin(np.abs(logs - target)))])
    return sorted(picks)


def _factors(extent: int, room: int) -> list[int]:
    """Spatial factors of a loop of ``extent`` on ``room`` PEs: divisors that fit, and the best fill of
    ``room`` (of every room up to ``SMALL_ROOM``, so that a larger array only adds options)."""
    if room <= 1 or extent <= 1:
        return [1]
    out = {d for d in range(1, min(extent, room) + 1) if extent % d == 0}
    for x in (range(1, room + 1) if room <= SMALL_ROOM else (room,)):
        out.add(math.ceil(extent / math.ceil(extent / x)))
    return sorted(out)


def _dim_options(loops: tuple[str, ...], room: int, extents: list[int], max_loops: int) -> list[dict[str, int]]:
    opts: list[dict[str, int]] = [{}]

    def grow(start: int, room_left: int, chosen: dict[str, int]) -> None:
        if len(chosen) == max_loops:
            return
        for j in range(start, len(loops)):
            loop = loops[j]
            for f in _factors(extents[_IDX[loop]], room_left):
                if f > 1:
                    new = dict(chosen)
                    new[loop] = f
                    opts.append(new)
                    grow(j + 1, room_left // f, new)

    grow(0, room, {})
    return opts


def spatial_options(shape: LayerShape, spec: TargetSpec, df: Dataflow) -> list[tuple]:
    """Spatial unrollings of ``df`` on the spec's array, fewest PE steps first: ``(factors in LOOPS
    order, height-first loops, height, width, instances)``, the last four as ``{loop: factor}``."""
    pe = spec.pe_array
    ext = list(shape.extents)
    first = {}
    room_h = pe.height
    for loop in df.height_first:
        f = _factors(ext[_IDX[loop]], room_h)[-1]
        first[loop] = f
        room_h //= f
    rem = [math.ceil(e / first.get(loop, 1)) for loop, e in zip(LOOPS, ext)]
    height_loops, width_loops = df.height_loops, df.width_loops
    if df.rows_first and math.ceil(ext[_IDX["p"]] / pe.width) >= room_h:
        height_loops = width_loops = ("p",)
    seen = {}
    for h in _dim_options(height_loops, room_h, rem, 2):
        for w in _dim_options(width_loops, pe.width, rem, 2):
            for i in _dim_options(df.instance_loops, pe.instances, rem, 1):
                sp = [1] * _L
                for part in (first, h, w, i):
                    for loop, f in part.items():
                        sp[_IDX[loop]] *= f
                if any(s > e for s, e in zip(sp, ext)):
                    continue
                vec = tuple(sp)
                if vec not in seen:
                    seen[vec] = (h, w, i)
    steps = {vec: math.prod(math.ceil(e / s) for e, s in zip(ext, vec)) for vec in seen}
    order = sorted(seen, key=lambda v: (steps[v], tuple(-x for x in v)))
    return [(vec, first, *seen[vec]) for vec in order]


# -- the search of one dataflow ----------------------------------------------------------------------

def _search_dataflow(shape: LayerShape, spec: TargetSpec, hier: Hierarchy, costing: Costing, df: Dataflow):
    regs = hier.registers
    if df.pe_full_loops and regs is None:
        return None, "needs registers in the PEs (a memory level with in_pe = true)"
    options = spatial_options(shape, spec, df)
    if costing.objective != "latency" or costing.fixed_compute_s is not None:
        # (with a fixed compute time the latency search has no bound to stop on)
        options = options[:SPATIAL_KEEP]
    best = None
    reg_reason = None
    # no mapping moves less than every tensor once off-chip (inputs only where the stride skips no
    # pixel), nor reads fewer registers
    full = shape.full()
    dense_input = shape.dilation == (1, 1) and shape.stride[0] <= full["r"] and shape.stride[1] <= full["s"]
    floor_bytes = shape.other_bytes + sum(shape.elems(x, full) * shape.elem_bytes[k] for k, x in enumerate(TENSORS)
                                          if x != "input" or dense_input)
    floor_s = floor_bytes / (hier.offchip.bandwidth_Bps * spec.memory_efficiency)
    if regs is not None:
        reg_bytes = shape.macs * costing.flops_factor * df.register_words_per_mac * shape.word_bytes
        floor_s = max(floor_s, reg_bytes / (regs.bandwidth_Bps * spec.memory_efficiency))
    for vec, first, h, w, i in options:
        if best is not None and costing.objective == "latency" and costing.fixed_compute_s is None:
            steps = math.prod(math.ceil(e / s) for e, s in zip(shape.extents, vec))
            bound = _compute_s(steps, spec, costing)
            if costing.double_buffer:
                bound = max(bound, floor_s)
            if bound >= best[0][0]:  # none of the rest can be faster
                break
        found, why = _search_spatial(shape, spec, hier, costing, df, vec)
        if found is None:
            reg_reason = reg_reason or why
            continue
        score, mapping_args = found
        if best is None or score < best[0]:
            best = (score, (vec, first, h, w, i, mapping_args))
    if best is None:
        return None, reg_reason or "no spatial unrolling fits the array"
    score, (vec, first, h, w, i, args) = best
    height = {**first, **h}
    mapping = Mapping(
        dataflow=df.name, height=tuple(sorted(height.items())), width=tuple(sorted(w.items())),
        instances=tuple(sorted(i.items())), objective=costing.objective, **args)
    return (score, mapping), None


def _compute_s(steps, spec: TargetSpec, costing: Costing):
    pe = spec.pe_array
    # peak = 2 x PEs x MACs/PE x f x rate: the time of ``steps`` steps of every PE
    per_step = 2.0 * pe.pes / (costing.peak_flops * spec.compute_efficiency)
    return steps * per_step * costing.flops_factor


def _held_bytes(shape: LayerShape, df: Dataflow, t0: list[int]) -> dict[str, float]:
    t = dict(zip(LOOPS, t0))
    for loop in df.streamed:
        t[loop] = 1
    return {x: shape.elems(x, t) * shape.elem_bytes[k] for k, x in enumerate(TENSORS) if x in df.held}


def _search_spatial(shape: LayerShape, spec: TargetSpec, hier: Hierarchy, costing: Costing, df: Dataflow,
                    sp: tuple[int, ...]):
    ext = shape.extents
    C = [math.ceil(e / s) for e, s in zip(ext, sp)]
    base = [1] * _L
    for loop in df.pe_full_loops:
        base[_IDX[loop]] = C[_IDX[loop]]
    regs = hier.registers
    free = [_IDX[loop] for loop in df.pe_free_loops if C[_IDX[loop]] > 1] if regs is not None else []
    t0s = []
    smallest = None
    for combo in itertools.product(*[thin_divisors(C[j]) for j in free]):
        t0 = list(base)
        for j, v in zip(free, combo):
            t0[j] = v
        if regs is not None:
            held = _held_bytes(shape, df, t0)
            need = sum(held.values())
            if smallest is None or need < smallest[0]:
                smallest = (need, held)
            if need > regs.size_bytes:
                continue
        t0s.append(t0)
    if not t0s:
        need, held = smallest
        parts = " + ".join(f"{x} {b:.0f} B" for x, b in held.items())
        return None, (f"level {regs.name!r} ({regs.size_bytes} B per PE) cannot hold one PE tile of every operand "
                      f"it keeps: {parts} = {need:.0f} B")
    return _evaluate(shape, spec, hier, costing, df, sp, C, t0s)


def _rows(C: list[int], t0s: list[list[int]]):
    t0_rows, t1_rows = [], []
    for t0 in t0s:
        A = [c // t for c, t in zip(C, t0)]
        keep = DIVISORS_KEEP
        grids = [thin_divisors(a, keep) if a > 1 else [1] for a in A]
        while keep > 2 and math.prod(len(g) for g in grids) > ROWS_PER_PE_TILE:
            keep -= 1
            grids = [thin_divisors(a, keep) if a > 1 else [1] for a in A]
        mesh = np.array(np.meshgrid(*grids, indexing="ij")).reshape(_L, -1).T
        t1_rows.append(mesh)
        t0_rows.append(np.repeat(np.array([t0]), len(mesh), axis=0))
    return np.concatenate(t0_rows).astype(np.float64), np.concatenate(t1_rows).astype(np.float64)


def _loads(seq):
    """Loads of a tile under loops ``seq`` (outermost first: (counts, relevant)) with the reuse rule."""
    loads = 1.0
    resident = True
    for counts, rel in reversed(seq):
        if rel:
            loads = loads * counts
            resident = resident & (counts == 1)
        else:
            loads = loads * np.where(resident, 1.0, counts)
    return loads


def _evaluate(shape: LayerShape, spec: TargetSpec, hier: Hierarchy, costing: Costing, df: Dataflow,
              sp: tuple[int, ...], C: list[int], t0s: list[list[int]]):
    t0, t1 = _rows(C, t0s)
    ext = np.array(shape.extents, dtype=np.float64)
    spv = np.array(sp, dtype=np.float64)
    A = np.array(C, dtype=np.float64) / t0
    t2 = A / t1
    T0 = {loop: t0[:, j] for j, loop in enumerate(LOOPS)}
    TA = {loop: np.minimum(ext[j], spv[j] * t0[:, j]) for j, loop in enumerate(LOOPS)}
    T1 = {loop: np.minimum(ext[j], spv[j] * t0[:, j] * t1[:, j]) for j, loop in enumerate(LOOPS)}
    pes_active = float(np.prod(spv))
    steps = float(np.prod(C))
    macs_exec = shape.macs * costing.flops_factor
    n = len(t0)

    e_mac = spec.energy_pj_per_mac
    e_bus = spec.pe_array.bus_energy_pj_per_byte
    buf, off, mids = hier.buffer, hier.offchip, hier.between
    has_energy = any(x is not None for x in (e_mac, e_bus, buf.energy_pj_per_byte, off.energy_pj_per_byte)) or any(
        m.energy_pj_per_byte is not None for m in mids) or (
        hier.registers is not None and hier.registers.energy_pj_per_byte is not None)
    e_buf = buf.energy_pj_per_byte or 0.0
    e_out = (off.energy_pj_per_byte or 0.0) + sum(m.energy_pj_per_byte or 0.0 for m in mids)
    reg_bytes = macs_exec * df.register_words_per_mac * shape.word_bytes if hier.registers is not None else 0.0
    fixed_pj = (e_mac or 0.0) * macs_exec + (
        (hier.registers.energy_pj_per_byte or 0.0) * reg_bytes if hier.registers is not None else 0.0)
    fixed_pj += (e_buf + e_out) * shape.other_bytes
    mem_eff = spec.memory_efficiency
    compute_s = costing.fixed_compute_s if costing.fixed_compute_s is not None else _compute_s(steps, spec, costing)
    reg_s = reg_bytes / (hier.registers.bandwidth_Bps * mem_eff) if hier.registers is not None else 0.0
    bus_bw = spec.pe_array.bus_bandwidth_Bps

    per = {}  # tensor -> per-PE tile bytes, array tile bytes, buffer tile bytes
    rel = {}
    for k, x in enumerate(TENSORS):
        eb = shape.elem_bytes[k]
        per[x] = (shape.elems(x, T0) * eb, shape.elems(x, TA) * eb, shape.elems(x, T1) * eb)
        rel[x] = shape.relevant(x)
    room = buf.size_bytes / (2.0 if costing.double_buffer else 1.0)
    active = [j for j in range(_L) if C[j] > 1]

    best = None
    orders = [stationary_order(rel[x]) for x in TENSORS]
    for o2 in orders:
        seq2 = {x: [(t2[:, j], rel[x][j]) for j in o2 if j in active] for x in TENSORS}
        lb = {x: _loads(seq2[x]) for x in TENSORS}
        for o1 in orders:
            cost_stored, cost_bypass, terms = {}, {}, {}
            for x in TENSORS:
                seq1 = seq2[x] + [(t1[:, j], rel[x][j]) for j in o1 if j in active]
                lp = _loads(seq1)
                lbx = lb[x]
                if x == "output":
                    distinct_p = np.prod([t1[:, j] * t2[:, j] for j in active if rel[x][j]], axis=0) \
                        if any(rel[x][j] for j in active) else 1.0
                    distinct_b = np.prod([t2[:, j] for j in active if rel[x][j]], axis=0) \
                        if any(rel[x][j] for j in active) else 1.0
                    lp = 2 * lp - distinct_p
                    lbx = 2 * lbx - distinct_b
                pe_b, arr_b, buf_b = per[x]
                deliver = pe_b * lp * pes_active
                reads = arr_b * lp
                fills = buf_b * lbx
                terms[x] = (deliver, reads, fills)
                cost_stored[x] = (e_bus or 0.0) * deliver + e_buf * reads + e_out * fills
                cost_bypass[x] = (e_bus or 0.0) * deliver + e_out * reads
            for mask in range(8):
                bypass = tuple(x for b, x in enumerate(TENSORS) if mask >> b & 1)
                need = sum((per[x][2] for x in TENSORS if x not in bypass), np.zeros(n))
                fits = need <= room
                if not fits.any():
                    continue
                pj = fixed_pj + sum((cost_bypass[x] if x in bypass else cost_stored[x]) for x in TENSORS)
                buf_bytes = sum((terms[x][1] for x in TENSORS if x not in bypass), np.zeros(n)) + shape.other_bytes
                off_bytes = sum((terms[x][1] if x in bypass else terms[x][2]) for x in TENSORS) + shape.other_bytes
                arr_bytes = sum(terms[x][0] for x in TENSORS)
                times = [np.full(n, reg_s), buf_bytes / (buf.bandwidth_Bps * mem_eff)]
                times += [off_bytes / (m.bandwidth_Bps * mem_eff) for m in mids]
                times.append(off_bytes / (off.bandwidth_Bps * mem_eff))
                if bus_bw is not None:
                    times.append(arr_bytes / (bus_bw * mem_eff))
                if costing.double_buffer:
                    lat = np.maximum(compute_s, np.max(times, axis=0))
                else:
                    lat = compute_s + np.sum(times, axis=0)
                energy = pj * 1e-12
                if not has_energy:  # no energies: the fastest, then the least traffic off-chip, then on-chip
                    score = (lat, off_bytes + 1e-6 * buf_bytes)
                elif costing.objective == "latency":
                    score = (lat, energy)
                elif costing.objective == "energy":
                    score = (energy, lat)
                else:
                    score = (energy * lat, energy)
                primary = np.where(fits, score[0], np.inf)
                j = int(np.lexsort((score[1], primary))[0])
                key = (float(primary[j]), float(score[1][j]))
                if best is None or key < best[0]:
                    best = (key, dict(
                        row=j, o1=o1, o2=o2, bypass=bypass, energy=float(energy[j]) if has_energy else None,
                        lat=float(lat[j]), reg=reg_bytes, buf=float(buf_bytes[j]), off=float(off_bytes[j]),
                        arr=float(arr_bytes[j])))
    if best is None:
        return None, (f"level {buf.name!r} ({buf.size_bytes} B{', half of it per double-buffered tile' if costing.double_buffer else ''}) "
                      "cannot hold the smallest tiles")
    key, b = best
    j = b["row"]
    tile0 = {loop: int(t0[j, k]) for k, loop in enumerate(LOOPS)}
    tile1 = {loop: int(T1[loop][j]) for loop in LOOPS}
    counts1 = {loop: int(round(t1[j, k])) for k, loop in enumerate(LOOPS)}
    counts2 = {loop: int(round(t2[j, k])) for k, loop in enumerate(LOOPS)}
    traffic = []
    if hier.registers is not None:
        traffic.append((hier.registers.name, b["reg"]))
    traffic.append((buf.name, b["buf"]))
    traffic += [(m.name, b["off"]) for m in mids]
    traffic.append((off.name, b["off"]))
    traffic.append(("array", b["arr"]))
    util = shape.macs / (steps * spec.pe_array.pes)
    args = dict(
        pe_tile=tuple((loop, v) for loop, v in tile0.items() if v > 1),
        buffer_tile=tuple((loop, v) for loop, v in tile1.items() if v < shape.extent(loop) or v > 1),
        buffer_order=tuple(LOOPS[k] for k in b["o1"] if counts1[LOOPS[k]] > 1),
        offchip_order=tuple(LOOPS[k] for k in b["o2"] if counts2[LOOPS[k]] > 1),
        bypass=b["bypass"], buffer=buf.name, utilization=util, steps=int(steps), traffic=tuple(traffic),
        energy_j=b["energy"], latency_s=b["lat"],
    )
    return (key, args), None
