"""A schedule's recorded knobs, put in the operator's own loop names.

The collector records MetaSchedule tile decisions as ``knob_tile_<var>_<level>`` (``var`` is the
TIR loop variable, e.g. ``i0``, ``ff``, ``rc``) and the loop order after tiling as
``knob_loop_order`` (``"i0 j0 i1 j1 k0 ..."``).  TIR variable names differ between operators, so
for learning and for the analytical model they are mapped onto the contract's loop names
(conv: n k c p q r s; GEMM-like: b m n k; ``docs/contracts.md``): a variable's factors multiply to
its loop's extent, and variables are matched, in order, to the unmatched loop of that extent with
the same name (``k``, ``v_k``), else to the first unmatched loop of that extent.

Tiles for the analytical model (``{"L1": {loop: tile}, "L2": {...}}``) follow MetaSchedule's CPU
structure SSRSRS (spatial loops split in 4 levels, reduction loops in 2): the innermost memory
level holds what is inside the first reduction tile loop (spatial ``f2*f3``, reduction ``f1``),
the next level what is inside the outermost spatial tile loop (spatial ``f1*f2*f3``, reduction
``f0*f1``).  In general, with ``n`` factors: ``prod(f[n//2:])`` and ``prod(f[n//2 - 1:])``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any

from opscope.targets.spec import TargetSpec
from opscope.workloads.operator import Operator

_TILE = re.compile(r"^knob_tile_(.+)_(\d+)$")
ORDER = "knob_loop_order"
#: tile levels kept as features per contract loop
LEVELS = 4


def tile_columns(columns: Any) -> list[str]:
    return sorted(c for c in columns if _TILE.match(str(c)))


@functools.lru_cache(maxsize=4096)
def _tile_column(col: str) -> tuple[str, int] | None:
    m = _TILE.match(col)
    return (m.group(1), int(m.group(2))) if m else None


def tile_factors(row: Mapping[str, Any]) -> dict[str, list[int]]:
    """TIR var -> its tile factors, outermost level first, from one row's knob columns."""
    found: dict[str, dict[int, int]] = {}
    for col, value in row.items():
        parsed = _tile_column(str(col))
        if parsed is None:
            continue
        try:
            f = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f) and f >= 1:
            found.setdefault(parsed[0], {})[parsed[1]] = int(f)
    return {var: [lv[i] for i in sorted(lv)] for var, lv in found.items()}


def var_to_loop(op: Operator, factors: Mapping[str, list[int]]) -> dict[str, str]:
    """Match TIR vars (in recorded order) to the operator's loops by extent."""
    free = list(op.loops)
    out: dict[str, str] = {}
    for var, fs in factors.items():
        extent = math.prod(fs)
        bare = var.removeprefix("v_").removeprefix("v").rstrip("_") or var
        same = [i for i, (name, ext) in enumerate(free) if ext == extent]
        named = [i for i in same if free[i][0] in (var, bare)]
        if same:
            i = (named or same)[0]
            out[var] = free[i][0]
            del free[i]
    return out


def loop_tiles(op: Operator, row: Mapping[str, Any]) -> dict[str, list[int]]:
    """Contract loop name -> tile factors (outermost first) for one row."""
    factors = tile_factors(row)
    names = var_to_loop(op, factors)
    return {names[v]: fs for v, fs in factors.items() if v in names}


def tiles_for(op: Operator, row: Mapping[str, Any], spec: TargetSpec) -> dict[str, dict[str, int]] | None:
    """The analytical model's tiles for one row, or None when no factor maps onto a loop."""
    per_loop = loop_tiles(op, row)
    if not per_loop or len(spec.memory) < 2:
        return None
    inner: dict[str, int] = {}
    outer: dict[str, int] = {}
    for loop, fs in per_loop.items():
        half = len(fs) // 2
        inner[loop] = math.prod(fs[half:])
        outer[loop] = math.prod(fs[max(half - 1, 0):])
    tiles = {spec.memory[0].name: inner}
    if len(spec.memory) >= 3:
        tiles[spec.memory[1].name] = outer
    return tiles


def canonical_order(op: Operator, row: Mapping[str, Any]) -> str | None:
    """``knob_loop_order`` with TIR vars replaced by loop names: ``"i0 j0 k0"`` -> ``"m0 n0 k0"``."""
    order = row.get(ORDER)
    if not isinstance(order, str) or not order:
        return None
    names = var_to_loop(op, tile_factors(row))
    by_length = sorted(names, key=len, reverse=True)
    out = []
    for token in order.split():
        var = next((v for v in by_length if token.startswith(v) and token[len(v):].isdigit()), None)
        if var is None:
            var = next((v for v in by_length if token == v), None)
        out.append("?" if var is None else names[var] + token[len(var):])
    return " ".join(out)
