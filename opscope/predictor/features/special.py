"""Special functions in a fused epilogue (sigmoid, exp, tanh, erf): a cost added to the learned prediction.

A convolution or GEMM fused with SiLU (``x * sigmoid(x)``) or an exact GELU (``erf``) calls the
function once per output element, and TVM's CPU lowering runs it as a libm-style call that does
not vanish behind the arithmetic: measured on the Zen 5 VM, the residual of the learned predictor on
such operators (2026-12-06, ``datasets/zen5-heldout-v1``) was about 2 ns per sigmoid and 15 ns per erf at
one thread, whatever the convolution or schedule.  The operator spaces the predictors are trained
on hold no such epilogue (bias, ReLU, batch norm, clip, residual add), so trees cannot learn it.  It
is therefore modelled apart:

    latency = learned(row) + sum over functions f of calls_f x seconds_per_call_f / threads_used

- ``calls_f``: from the row's ``workload_script`` (each call of ``T.<f>(`` times the iteration count of
  the loop nest of its block), else from the operator's name (``..._tir_sigmoid_...``, ``..._erf_...``)
  times its output elements;
- ``seconds_per_call_f``: the machine's own, measured by ``opscope probe`` (``[extra] special_ns`` of
  ``<target>-measured`` or of the spec), else ``NOMINAL_CYCLES[f] / frequency``;
- ``threads_used``: the schedule's (``features.build.threads_used``);
- only for the kinds whose work is a contraction or a pool (``KINDS``): a softmax's exp is its own
  work, which its rows teach.

In training the term is taken out of the label first (the label keeping at least a tenth), so the learned part
stays what it is on rows without such functions.
"""

from __future__ import annotations

import functools
import json
import math
import re

import numpy as np
import pandas as pd

from opscope.predictor.features.estimates import SpecCache
from opscope.targets.loader import special_ns_problem

#: functions counted, and cycles per call at one thread where the machine has not been probed:
#: ``opscope probe``'s ``probe_special`` on the 2-vCPU Zen 5 VM (2026-12-06: exp 1.28, sigmoid 1.43,
#: tanh 2.92, erf 8.74 ns per call) times its 2.596 GHz
NOMINAL_CYCLES = {"exp": 3.3, "sigmoid": 3.7, "tanh": 7.6, "erf": 22.7}
#: the kinds the cost is added to
KINDS = ("conv2d", "depthwise_conv2d", "dense", "matmul", "batch_matmul", "pool")
#: a learned label keeps at least this share of the measured latency when the term is taken out
KEEP = 0.1

_CALL = re.compile(r"T\.(" + "|".join(NOMINAL_CYCLES) + r")\(")
_GRID = re.compile(r"\bin T\.grid\((.*)\):")
_INT = re.compile(r"T\.int(?:32|64)\((\d+)\)|\b(\d+)\b")
_NAME = re.compile(r"(?:^|_)(?:tir_)?(" + "|".join(NOMINAL_CYCLES) + r")\d*(?=_|$)")


def calls_in_script(script: str) -> dict[str, int]:
    """Calls of each counted function in a TVMScript prim func: each ``T.<f>(`` times the product of
    the extents of the innermost ``T.grid`` above it (the block's loop nest; TE-made functions have one
    grid per block)."""
    out: dict[str, int] = {}
    extent = 1
    for line in script.splitlines():
        grid = _GRID.search(line)
        if grid:
            extent = math.prod(int(a or b) for a, b in _INT.findall(grid.group(1))) or 1
        for fn in _CALL.findall(line):
            out[fn] = out.get(fn, 0) + extent
    return out


@functools.lru_cache(maxsize=4096)
def _script_calls(script: str) -> tuple[tuple[str, int], ...]:
    """``calls_in_script``, remembered (a predictor asked again about an operator does not parse it again)."""
    return tuple(calls_in_script(script).items())


def calls_from_name(name: str, operator_json: str | None) -> dict[str, int]:
    """Without a script: each counted function named in the fused operator's name, once per output
    element (the elements of its ``output`` tensors in ``operator_json``)."""
    fns = _NAME.findall(name or "")
    if not fns:
        return {}
    try:
        tensors = json.loads(operator_json or "{}").get("tensors", [])
        elems = sum(math.prod(int(d) for d in t[1]) for t in tensors if len(t) > 3 and t[3] == "output")
    except (ValueError, TypeError, AttributeError, IndexError):
        return {}
    out: dict[str, int] = {}
    for fn in fns:
        out[fn] = out.get(fn, 0) + elems
    return out


def _distinct_calls(frame: pd.DataFrame) -> tuple[np.ndarray, list[dict[str, int]]]:
    """(per row the index of its distinct calls, -1 for rows of other kinds; the distinct calls), each
    operator's script or name parsed once (only those rows' strings leave the frame's columns)."""
    n = len(frame)
    codes = np.full(n, -1)
    if n == 0 or "kind" not in frame:
        return codes, []
    rows = np.flatnonzero(frame["kind"].isin(KINDS).to_numpy())
    if len(rows) == 0:
        return codes, []
    if "workload_key" in frame:  # one operator, one script: the short key is the cheap one to hash
        local, uniques = pd.factorize(frame["workload_key"].iloc[rows])
    else:
        cols = [c for c in ("workload_script", "op_name", "operator_json") if c in frame]
        local, uniques = pd.factorize(pd.MultiIndex.from_frame(frame[cols].iloc[rows].astype(object).fillna("")))
    first = np.zeros(len(uniques), dtype=int)
    first[local[::-1]] = np.arange(len(local))[::-1]  # the first row of each distinct key
    picked = frame.iloc[rows[first]]

    def column(name: str) -> list:
        return picked[name].tolist() if name in picked else [None] * len(picked)

    distinct = [dict(_script_calls(script)) if isinstance(script, str) and script.strip()
                else calls_from_name(str(name or ""), op)
                for script, name, op in zip(column("workload_script"), column("op_name"), column("operator_json"))]
    codes[rows] = local
    return codes, distinct


def special_calls(frame: pd.DataFrame) -> list[dict[str, int]]:
    """Per row, the calls of each counted function (empty for rows of other kinds)."""
    codes, distinct = _distinct_calls(frame)
    return [distinct[c] if c >= 0 else {} for c in codes]


def seconds_per_call(specs: SpecCache, target: str) -> dict[str, float]:
    """One call of each counted function on ``target`` at one thread: ``[extra] special_ns`` of the
    probed ``<target>-measured`` spec, else of the spec (a value the spec loader would refuse is
    passed over), else ``NOMINAL_CYCLES / frequency``."""
    spec = specs.get(target)
    measured = specs.measured(target)
    for source in (measured, spec):
        ns = (source.extra or {}).get("special_ns") if source is not None else None
        if ns is not None and special_ns_problem(ns) is None:
            return {fn: float(ns.get(fn, NOMINAL_CYCLES[fn] / spec.frequency_hz * 1e9)) * 1e-9
                    for fn in NOMINAL_CYCLES}
    return {fn: cycles / spec.frequency_hz for fn, cycles in NOMINAL_CYCLES.items()}


def special_seconds(frame: pd.DataFrame, specs: SpecCache, used: np.ndarray) -> np.ndarray:
    """Per row, the seconds its counted special functions add (0 for most rows); ``used``: the
    threads each row's schedule keeps busy."""
    out = np.zeros(len(frame))
    codes, distinct = _distinct_calls(frame)
    if not any(distinct):
        return out
    rows = codes >= 0
    if "target" in frame:
        tcodes, targets = pd.factorize(frame["target"].astype(object).fillna("host"))
    else:
        tcodes, targets = np.zeros(len(frame), dtype=int), np.array(["host"])
    used = np.maximum(np.asarray(used, dtype=float), 1.0)
    for ti in np.unique(tcodes[rows]):
        per_call = seconds_per_call(specs, str(targets[ti]))
        one_thread = np.array([sum(n * per_call[fn] for fn, n in d.items()) for d in distinct])
        mine = rows & (tcodes == ti)
        out[mine] = one_thread[codes[mine]] / used[mine]
    return out


def without_special(y: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """The label a learned part is fitted on: the measured latency less the special functions' time,
    keeping at least ``KEEP`` of it."""
    return np.maximum(y - extra, KEEP * y)
