"""Schedule knobs (features) read from a MetaSchedule trace and the scheduled module.

From the trace: tile factors per loop and level (``tile_<loop>_<level>``, the SamplePerfectTile
decisions, loops named by their variable in the unscheduled PrimFunc), the loop order after
tiling (``loop_order``, e.g. ``i0 j0 i1 j1 k0 ...``), the tile level at which the output cache is
written back (``compute_at_level``, -1 without a cache write), the SampleComputeLocation
decisions (``compute_loc_<n>``) and the unroll depth (``unroll``, the sampled
``unroll_explicit``/``unroll_implicit`` value).  From the scheduled module's TVMScript (after the
postprocessors, which turn MetaSchedule's annotations into loops): around the main block (the one
with the largest loop nest), the parallel extent (``parallel_extent``, the product of its
``T.parallel`` loops), its vectorized loop (``main_vector_len``), the product of its unrolled loops
(``main_unroll_len``) and its innermost loop (``main_inner``); in the whole function, the largest
vectorized loop (``vector_len``) and the number of parallel and vectorized loops.
"""

from __future__ import annotations

import math
import re
from typing import Any

#: ``for a, b in T.grid(T.int64(4), 8):``, ``for a in T.parallel(T.int64(12)):``, ``for a in range(4):``
_FOR = re.compile(r"^for (.+?) in (T\.\w+|range)\((.*)\):$")
_BLOCK = re.compile(r"^with T\.s?block\(\"([^\"]+)\"")
_INT = re.compile(r"(?:T\.int(?:32|64)\()?(\d+)\)?")
_KIND = {"T.parallel": "parallel", "T.vectorized": "vectorized", "T.unroll": "unroll"}


def loop_nest(script: str) -> dict[str, list[tuple[str, int]]]:
    """Block name -> the loops around it, outermost first, as (kind, extent), read from TVMScript.

    Kinds are ``serial``, ``parallel``, ``vectorized``, ``unroll``; an extent that is not a constant
    is 0.  Nesting is read from the indentation, as TVMScript prints it.
    """
    stack: list[tuple[int, str, int]] = []  # (indent, kind, extent)
    out: dict[str, list[tuple[str, int]]] = {}
    for raw in script.splitlines():
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        m = _FOR.match(text)
        if m:
            names = [n for n in m.group(1).split(",") if n.strip()]
            kind = _KIND.get(m.group(2), "serial")
            args = [a.strip() for a in _split_args(m.group(3))]
            if m.group(2) != "T.grid":
                args = args[-1:] if m.group(2) == "range" else args[:1]
            extents = [_extent(a) for a in args]
            if len(extents) != len(names):
                extents = (extents + [0] * len(names))[:len(names)]
            for e in extents:
                stack.append((indent, kind, e))
            continue
        b = _BLOCK.match(text)
        if b and b.group(1) != "root":
            out.setdefault(b.group(1), [(k, e) for _, k, e in stack])
    return out


def _split_args(text: str) -> list[str]:
    """Top-level comma-separated arguments of a call (commas inside parentheses kept)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    return [*parts, cur] if cur.strip() else parts


def _extent(arg: str) -> int:
    m = _INT.fullmatch(arg.strip())
    return int(m.group(1)) if m else 0


def loop_knobs(script: str) -> dict[str, int]:
    """The parallel, vector and unroll knobs of a scheduled function's TVMScript (module docstring)."""
    nest = loop_nest(script)
    loops = [lp for around in nest.values() for lp in around]
    main = max(nest.values(), key=lambda ls: math.prod(max(e, 1) for _, e in ls), default=[])

    def of(kind: str, ls: list[tuple[str, int]]) -> list[int]:
        return [e for k, e in ls if k == kind]

    # loops around several blocks are counted once per block: count distinct loop lines instead
    return {
        "parallel_extent": math.prod(of("parallel", main)) if of("parallel", main) else 1,
        "parallel_loops": len(re.findall(r"in T\.parallel\(", script)),
        "vector_len": max(of("vectorized", loops), default=1),
        "vector_loops": len(re.findall(r"in T\.vectorized\(", script)),
        "main_vector_len": max(of("vectorized", main), default=1),
        "main_unroll_len": math.prod(of("unroll", main)) if of("unroll", main) else 1,
        "main_inner": main[-1][1] if main else 1,
    }


def _loop_names(mod: Any) -> dict[str, list[str]]:
    """Block name -> loop variable names (outermost first) in the unscheduled module."""
    from tvm.s_tir import Schedule

    sch = Schedule(mod)
    names: dict[str, list[str]] = {}
    for block in sch.get_child_blocks(sch.get_sblock("root", func_name="main")):
        name = str(sch.get(block).name_hint)
        names[name] = [str(sch.get(lp).loop_var.name) for lp in sch.get_loops(block)]
    return names


def _value(x: Any) -> Any:
    return int(x.value) if hasattr(x, "value") else x


def extract_knobs(trace: Any, unscheduled: Any, scheduled_script: str) -> dict[str, Any]:
    """Knobs of a schedule; ``trace`` is a ``tvm.s_tir.schedule.Trace``."""
    loop_vars = _loop_names(unscheduled)
    block_of: dict[Any, str] = {}
    loop_of: dict[Any, tuple[str, int | None]] = {}  # loop RV -> (var name, tile level or None)
    seen_blocks: set[str] = set()
    sampled: dict[Any, Any] = {}
    knobs: dict[str, Any] = {}
    compute_loc = 0
    knobs["compute_at_level"] = -1
    for inst in trace.insts:
        kind = inst.kind.name
        decision = trace.decisions[inst] if inst in trace.decisions else None
        if kind == "GetSBlock":
            block_of[inst.outputs[0]] = str(inst.attrs[0])
        elif kind == "GetLoops":
            name = block_of.get(inst.inputs[0])
            if name in loop_vars and name not in seen_blocks and len(inst.outputs) == len(loop_vars[name]):
                seen_blocks.add(name)
                for rv, var in zip(inst.outputs, loop_vars[name]):
                    loop_of[rv] = (var, None)
        elif kind == "SamplePerfectTile" and decision is not None:
            var = loop_of.get(inst.inputs[0], ("loop", None))[0]
            prefix = f"tile_{var}"
            while f"{prefix}_0" in knobs:
                prefix += "_"
            for level, factor in enumerate(decision):
                knobs[f"{prefix}_{level}"] = int(_value(factor))
        elif kind == "Split":
            var = loop_of.get(inst.inputs[0], ("loop", None))[0]
            for level, rv in enumerate(inst.outputs):
                loop_of[rv] = (var, level)
        elif kind == "Reorder" and "loop_order" not in knobs:
            parts = [loop_of.get(rv) for rv in inst.inputs]
            if all(p is not None for p in parts):
                knobs["loop_order"] = " ".join(f"{v}{'' if lv is None else lv}" for v, lv in parts)
        elif kind in ("ComputeAt", "ReverseComputeAt"):
            where = loop_of.get(inst.inputs[1])
            if where is not None and where[1] is not None:
                knobs["compute_at_level"] = where[1]
        elif kind == "CacheWrite":
            knobs["cache_write"] = 1
        elif kind == "SampleComputeLocation" and decision is not None:
            knobs[f"compute_loc_{compute_loc}"] = int(_value(decision))
            compute_loc += 1
        elif kind == "SampleCategorical" and decision is not None:
            candidates = [_value(c) for c in inst.attrs[0]]
            sampled[inst.outputs[0]] = candidates[int(_value(decision))]
        elif kind == "Annotate" and str(inst.attrs[0]).startswith("meta_schedule.unroll"):
            value = inst.inputs[1]
            knobs["unroll"] = int(sampled.get(value, _value(value)))
    knobs.setdefault("cache_write", 0)
    knobs.update(loop_knobs(scheduled_script))
    return knobs
