"""Tiling-aware data movement: bytes read from each memory level for a given tiling.

A tiling gives, for some memory levels (not the outermost), the tile of each loop that the level
holds: ``{"L2": {"m": 64, "n": 64, "k": 256}, "L1": {...}}``.  A loop a level does not name takes the
tile of the next outer tiled level (the full extent at the outermost).  Tiles nest: a level's tile
is never larger than the one outside it.

Traffic (``bytes_moved[level]``) is what the level's consumer reads from it (and writes back):

- the compute side reads the innermost level: compulsory traffic, each tensor once (ideal register
  reuse is assumed below the innermost tiled level);
- level ``j+1`` is read by level ``j``: ``fill(T_j)`` for ``j``'s tiles; an untiled level passes its
  consumer's traffic through (it adds no reuse).

``fill(T)`` is a reuse analysis in the manner of dMazeRunner/ZigZag: the tile loops run in the
operator's loop order (outermost first); a tensor's tile is reloaded once per iteration of every
tiled loop except the innermost run of loops it does not depend on (during those it stays resident:
stationarity).  Outputs are written once per load and read back for every revisit after the first
(partial sums).  Tile sizes of a tensor come from its dependence on the loops (with the convolution
halo ``(t_p - 1) x stride + t_r``), scaled to the tensor's real bytes.

Capacity: a level's tiles (twice when double-buffered) must fit its size.  When they do not, the
level cannot provide that reuse: its consumer's traffic is then the larger of what the tiling asked
for and what the next inner level already needs.  So shrinking a memory never lowers traffic for the
same mapping (the law ZigZag issue 52 broke by pre-loading whole layers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from opscope.errors import OpscopeError
from opscope.targets.spec import TargetSpec
from opscope.workloads.operator import Operator

Tiles = Mapping[str, Mapping[str, int]]
_GEMM_KINDS = ("dense", "matmul", "batch_matmul")
_CONV_KINDS = ("conv2d", "depthwise_conv2d")


def compulsory_bytes(op: Operator, byte_factors: Mapping[str, float]) -> float:
    return sum(t.nbytes * byte_factors.get(t.name, 1.0) for t in op.tensors)


def level_bytes(op: Operator, spec: TargetSpec, tiles: Tiles | None, byte_factors: Mapping[str, float],
                double_buffer: bool) -> tuple[dict[str, float], tuple[str, ...]]:
    """Bytes read from each level of ``spec`` (innermost first) and notes on levels that overflowed."""
    base = compulsory_bytes(op, byte_factors)
    names = [lv.name for lv in spec.memory]
    if not tiles:
        return {n: base for n in names}, ()
    plan = _TilePlan(op, byte_factors)
    given = _resolve(op, spec, tiles)
    out = {names[0]: base}
    notes: list[str] = []
    consumer = base  # traffic the level just inside the current one needs
    for j, lv in enumerate(spec.memory[:-1]):
        t = given[j]
        if t is not None:
            want = plan.fill(t)
            need = plan.footprint(t) * (2 if double_buffer else 1)
            if lv.size_bytes is not None and need > lv.size_bytes:
                notes.append(f"{lv.name}: tiles need {need:.0f} B{' (double-buffered)' if double_buffer else ''}"
                             f" > {lv.size_bytes} B; no reuse credited there")
                want = max(want, consumer)
            consumer = want
        out[names[j + 1]] = consumer
    return out, tuple(notes)


def _resolve(op: Operator, spec: TargetSpec, tiles: Tiles) -> list[dict[str, int] | None]:
    """Validated tiles per level (None where none given), each loop filled in from outside."""
    if op.kind not in _GEMM_KINDS + _CONV_KINDS:
        raise OpscopeError(f"operator {op.name!r}: tiling is modelled for conv and GEMM kinds, not {op.kind!r}")
    if not op.loops:
        raise OpscopeError(f"operator {op.name!r}: has no loop nest, so it cannot be tiled")
    extents = dict(op.loops)
    needed = ("n", "k", "c", "p", "q", "r", "s") if op.kind in _CONV_KINDS else ("b", "m", "n", "k")
    missing = [name for name in needed if name not in extents]
    if missing:
        raise OpscopeError(f"operator {op.name!r}: loops {list(extents)} lack {missing}, so it cannot be tiled")
    names = [lv.name for lv in spec.memory]
    for level in tiles:
        if level not in names:
            raise OpscopeError(f"tiles: unknown memory level {level!r} of target {spec.name!r} (has {names})")
        if level == names[-1]:
            raise OpscopeError(f"tiles: {level!r} is the outermost level; it holds everything, give no tiles for it")
        for loop, v in tiles[level].items():
            if loop not in extents:
                raise OpscopeError(f"tiles[{level!r}]: operator {op.name!r} has no loop {loop!r} (has {list(extents)})")
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= extents[loop]:
                raise OpscopeError(f"tiles[{level!r}][{loop!r}] must be an integer in 1..{extents[loop]}, got {v!r}")
    resolved: list[dict[str, int] | None] = [None] * len(names)
    outer = dict(extents)
    for j in range(len(names) - 2, -1, -1):
        given = tiles.get(names[j])
        if given is None:
            continue
        t = {loop: int(given.get(loop, outer[loop])) for loop in extents}
        for loop, v in t.items():
            if v > outer[loop]:
                raise OpscopeError(f"tiles[{names[j]!r}][{loop!r}] = {v} is larger than the tile outside it ({outer[loop]})")
        resolved[j] = t
        outer = t
    return resolved


class _TilePlan:
    """Per-tensor loop dependence and tile sizes of one operator."""

    def __init__(self, op: Operator, byte_factors: Mapping[str, float]) -> None:
        self.op = op
        self.order = [name for name, _ in op.loops]
        self.extents = dict(op.loops)
        operands = [t for t in op.tensors if t.role != "output"]
        outputs = op.tensors_of("output")
        self.constant = 0.0  # tensors the analysis does not follow move once (bias ...)
        self.tensors = []  # (relevant loops, elems function, bytes, is_output)
        if op.kind in _CONV_KINDS:
            stride = op.attr("stride", (1, 1)) or (1, 1)
            groups = int(op.attr("groups", 1) or 1)
            k_per_group = max(1, self.extents["k"] // groups)
            sh, sw = (stride, stride) if isinstance(stride, int) else tuple(stride)[:2]

            def in_elems(t, sh=sh, sw=sw):
                ch = t["c"] * (1 if groups == 1 else min(groups, math.ceil(t["k"] / k_per_group)))
                return t["n"] * ch * ((t["p"] - 1) * sh + t["r"]) * ((t["q"] - 1) * sw + t["s"])

            in_rel = {"n", "c", "p", "q", "r", "s"} | ({"k"} if groups > 1 else set())
            specs = [(in_rel, in_elems),
                     ({"k", "c", "r", "s"}, lambda t: t["k"] * t["c"] * t["r"] * t["s"])]
            out_spec = ({"n", "k", "p", "q"}, lambda t: t["n"] * t["k"] * t["p"] * t["q"])
        else:
            b_rel = {"n", "k"} if (len(operands) > 1 and operands[1].role == "weight") else {"b", "n", "k"}
            specs = [({"b", "m", "k"}, lambda t: t["b"] * t["m"] * t["k"]),
                     (b_rel, (lambda t: t["n"] * t["k"]) if "b" not in b_rel else (lambda t: t["b"] * t["n"] * t["k"]))]
            out_spec = ({"b", "m", "n"}, lambda t: t["b"] * t["m"] * t["n"])
        for i, tensor in enumerate(operands):
            nbytes = tensor.nbytes * byte_factors.get(tensor.name, 1.0)
            if i < 2:
                rel, fn = specs[i]
                self.tensors.append((rel, fn, nbytes / fn(self.extents), False))
            else:
                self.constant += nbytes
        for i, tensor in enumerate(outputs):
            nbytes = tensor.nbytes * byte_factors.get(tensor.name, 1.0)
            if i == 0:
                rel, fn = out_spec
                self.tensors.append((rel, fn, nbytes / fn(self.extents), True))
            else:
                self.constant += nbytes

    def footprint(self, t: Mapping[str, int]) -> float:
        """Bytes the tiles of every tensor take at once."""
        return sum(fn(t) * per_elem for _, fn, per_elem, _ in self.tensors)

    def fill(self, t: Mapping[str, int]) -> float:
        """Bytes moved to keep a level holding tiles ``t`` fed (reads, plus output writes)."""
        counts = {loop: math.ceil(self.extents[loop] / t[loop]) for loop in self.order}
        total = self.constant
        for rel, fn, per_elem, is_output in self.tensors:
            loads = 1
            resident = True  # still inside the innermost run of loops the tensor ignores
            for loop in reversed(self.order):
                c = counts[loop]
                if c == 1:
                    continue
                if resident and loop not in rel:
                    continue
                resident = False
                loads *= c
            tile_bytes = fn(t) * per_elem
            if is_output:
                distinct = 1
                for loop in rel:
                    distinct *= counts[loop]
                total += tile_bytes * (2 * loads - distinct)
            else:
                total += tile_bytes * loads
        return total
