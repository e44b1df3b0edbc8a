"""The default loop nest's reduction walk: how its reads fall on cache lines and cache sets.

TVM's default CPU lowering keeps an operator's loop nest as written: for a GEMM ``C[i, j] += A[i, k] *
B[k, j]`` the innermost loop walks ``k``, so ``B`` is read down a column, one cache line per step,
``N * 4`` bytes apart.  Whether those lines stay in cache until the next ``j`` reuses them depends
less on their total size than on how many of them fall into one cache set: with ``N = 512`` float32
every line of the column lands in one of 32 of a 1 MiB 16-way L2's 1024 sets, 2048 lines of a
``K = 2048`` column cannot stay, and the GEMM runs at 2.6 ns per multiply-add here against 0.8-0.95
for shapes whose stride spreads over all sets (Zen 5, default schedule, datasets
``space-cpu-zen5-v1`` and ``zen5-heldout2-v1``).  The operator's sizes alone do not tell the two
apart; these numbers do:

- ``d_walk_lines_log2``: the distinct 64-byte lines the main block's reads touch over one full
  walk of its reduction loops (the other loop variables held at 0), summed over the buffers read;
- ``d_walk_l1_set_log2`` and ``d_walk_l2_set_log2``: of one buffer's lines, the most that share a set
  of a cache whose way is 4 KiB (64 sets: the L1s of 32-48 KiB) or 64 KiB (1024 sets: L2s of
  1-2 MiB), the worst buffer's count.  A count above the cache's ways means the walk evicts itself.

Buffers are assumed to start on a line boundary (TVM aligns them to 64 bytes or more).  They are read
from the row's ``workload_script`` (the unscheduled TVMScript the collector stores); rows without one,
and scripts whose main block is not a ``T.grid`` nest ending in its reduction loops, get NaN.
"""

from __future__ import annotations

import ast
import functools
import math
import re

import numpy as np
import pandas as pd

COLUMNS = ("d_walk_lines_log2", "d_walk_l1_set_log2", "d_walk_l2_set_log2")

LINE_BYTES = 64
#: sets of a cache whose way is 4 KiB and of one whose way is 64 KiB
L1_SETS, L2_SETS = 4096 // LINE_BYTES, 65536 // LINE_BYTES
#: reduction walks longer than this are not enumerated (NaN)
MAX_STEPS = 1 << 18

_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2,
          "int8": 1, "uint8": 1, "bool": 1}
#: a shape tuple's items: numbers or ``T.int64(n)`` (one level of parentheses)
_SHAPE = r"\(((?:[^()]|\([^()]*\))*)\)"
_PARAM = re.compile(r"(\w+): T\.Buffer\(" + _SHAPE + r"(?:, \"(\w+)\")?\)")
_ALLOC = re.compile(r"(\w+) = T\.(?:sblock_)?alloc_buffer\(" + _SHAPE + r"(?:, \"(\w+)\")?")
_GRID = re.compile(r"^\s*for (.+?) in T\.grid\((.*)\):\s*$")
_REMAP = re.compile(r"^\s*(.+?) = T\.axis\.remap\(\"([SR]+)\", \[(.*)\]\)\s*$")
_READS = re.compile(r"^\s*T\.reads\((.*)\)\s*$")
_ACCESS = re.compile(r"(?<![.\w])(\w+)\[")


class _Unknown(Exception):
    """An expression outside the small language the walk understands."""


def _value(node: ast.AST, env: dict[str, object]) -> object:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise _Unknown(node.id)
        return env[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("int64", "int32") \
            and len(node.args) == 1:
        return _value(node.args[0], env)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand, env)  # type: ignore[operator]
    if isinstance(node, ast.BinOp):
        a, b = _value(node.left, env), _value(node.right, env)
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,  # type: ignore[operator]
               ast.FloorDiv: lambda: a // b, ast.Mod: lambda: a % b}  # type: ignore[operator]
        if type(node.op) in ops:
            return ops[type(node.op)]()
    raise _Unknown(ast.dump(node)[:40])


def _ints(text: str) -> list[int]:
    tree = ast.parse(f"({text},)", mode="eval").body
    assert isinstance(tree, ast.Tuple)
    return [int(_value(e, {})) for e in tree.elts]  # type: ignore[arg-type]


def _buffers(script: str) -> dict[str, tuple[list[int], int]]:
    out = {}
    for name, shape, dtype in _PARAM.findall(script) + _ALLOC.findall(script):
        try:
            out[name] = (_ints(shape), _BYTES.get(dtype or "float32", 4))
        except (SyntaxError, _Unknown, AssertionError, TypeError, ValueError):
            continue
    return out


@functools.lru_cache(maxsize=1024)
def walk_of_script(script: str) -> tuple[float, float, float] | None:
    """``COLUMNS`` for one TVMScript prim func, or None when its main block cannot be read (remembered
    per script: a predictor asked about the same operators again, as a search does, reads each once)."""
    grid: tuple[list[str], list[int]] | None = None
    remap: tuple[list[str], str, list[str]] | None = None
    reads: str | None = None
    for line in script.splitlines():
        m = _GRID.match(line)
        if m:
            try:
                grid = ([v.strip() for v in m.group(1).split(",")], _ints(m.group(2)))
            except (SyntaxError, _Unknown, AssertionError, TypeError, ValueError):
                grid = None
            remap = None
            continue
        m = _REMAP.match(line)
        if m:
            remap = ([v.strip() for v in m.group(1).split(",")], m.group(2), [v.strip() for v in m.group(3).split(",")])
            continue
        m = _READS.match(line)
        if m and remap is not None and "R" in remap[1]:
            reads = m.group(1)
            break
    if grid is None or remap is None or reads is None:
        return None
    loops, extents = grid
    block_vars, kinds, loop_of = remap
    if len(block_vars) != len(kinds) or len(loop_of) != len(kinds) or len(loops) != len(extents):
        return None
    # the reduction loops must be the grid's innermost ones, as TE writes them
    reduce_loops = [loop_of[i] for i, k in enumerate(kinds) if k == "R"]
    if loops[len(loops) - len(reduce_loops):] != reduce_loops:
        return None
    sizes = [extents[loops.index(v)] for v in reduce_loops]
    steps = math.prod(sizes)
    if steps < 1 or steps > MAX_STEPS:
        return None
    grids = np.meshgrid(*[np.arange(s, dtype=np.int64) for s in sizes], indexing="ij")
    env: dict[str, object] = {v: 0 for v in block_vars}
    for var, kind, loop in zip(block_vars, kinds, loop_of):
        if kind == "R":
            env[var] = grids[reduce_loops.index(loop)].ravel()
    shapes = _buffers(script)
    # buffer names need not be Python names (ONNX initialisers such as ``8_e3_weight``): each read's
    # name is replaced by its position before parsing
    names: list[str] = []

    def rename(m: re.Match) -> str:
        names.append(m.group(1))
        return f"_b{len(names) - 1}["

    try:
        call = ast.parse("f(" + _ACCESS.sub(rename, reads) + ")", mode="eval").body
    except SyntaxError:
        return None
    assert isinstance(call, ast.Call)
    lines_total, worst_l1, worst_l2 = 0, 0, 0
    for access in call.args:
        if not (isinstance(access, ast.Subscript) and isinstance(access.value, ast.Name)
                and access.value.id.startswith("_b")):
            return None
        name = names[int(access.value.id[2:])]
        if name not in shapes:
            return None
        dims, elem = shapes[name]
        index = access.slice.elts if isinstance(access.slice, ast.Tuple) else [access.slice]
        if len(index) != len(dims):
            return None
        try:
            offset = np.zeros(steps, dtype=np.int64)
            stride = elem
            for expr, dim in zip(reversed(index), reversed(dims)):
                offset = offset + np.asarray(_value(expr, env), dtype=np.int64) * stride
                stride *= dim
        except (_Unknown, TypeError, ValueError, ZeroDivisionError):
            return None
        lines = np.unique(offset // LINE_BYTES)
        lines_total += len(lines)
        worst_l1 = max(worst_l1, int(np.bincount(lines % L1_SETS).max()))
        worst_l2 = max(worst_l2, int(np.bincount(lines % L2_SETS).max()))
    if lines_total == 0:
        return None
    return math.log2(lines_total), math.log2(worst_l1), math.log2(worst_l2)


def walk_features(frame: pd.DataFrame) -> np.ndarray:
    """``COLUMNS`` per row (rows × 3, NaN where unknown), each distinct script read once."""
    out = np.full((len(frame), len(COLUMNS)), np.nan)
    if "workload_script" not in frame or len(frame) == 0:
        return out
    codes, scripts = pd.factorize(frame["workload_script"], use_na_sentinel=True)
    values = np.full((len(scripts) + 1, len(COLUMNS)), np.nan)
    for j, script in enumerate(scripts):
        if isinstance(script, str) and script:
            walk = walk_of_script(script)
            if walk is not None:
                values[j] = walk
    return values[np.where(codes >= 0, codes, len(scripts))]
