"""Schedule knobs (features) read from a MetaSchedule trace and the scheduled module.

From the trace: tile factors per loop and level (``tile_<loop>_<level>``, the SamplePerfectTile
decisions, loops named by their variable in the unscheduled PrimFunc), the loop order after
tiling (``loop_order``, e.g. ``i0 j0 i1 j1 k0 ...``), the tile level at which the output cache is
written back (``compute_at_level``, -1 without a cache write), the SampleComputeLocation
decisions (``compute_loc_<n>``) and the unroll depth (``unroll``, the sampled
``unroll_explicit``/``unroll_implicit`` value).  From the scheduled module's TVMScript: the
parallel extent (largest ``T.parallel`` loop), the vector length (largest ``T.vectorized`` loop)
and the number of parallel/vectorized loops.
"""

from __future__ import annotations

import re
from typing import Any

_PAR = re.compile(r"T\.parallel\((\d+)\)")
_VEC = re.compile(r"T\.vectorized\((\d+)\)")


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
    par = [int(x) for x in _PAR.findall(scheduled_script)]
    vec = [int(x) for x in _VEC.findall(scheduled_script)]
    knobs["parallel_extent"] = max(par) if par else 1
    knobs["parallel_loops"] = len(par)
    knobs["vector_len"] = max(vec) if vec else 1
    knobs["vector_loops"] = len(vec)
    return knobs
