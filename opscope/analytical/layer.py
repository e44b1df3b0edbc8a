"""One operator as the mapping search sees it: a convolution's loop nest ``g, n, k, c, p, q, r, s``.

``g`` groups (independent sub-layers), ``n`` batch, ``k`` output channels per group, ``c`` input
channels per group, ``p x q`` output pixels, ``r x s`` filter.  A GEMM is the 1 x 1 convolution
``p = m`` (rows), ``k = n`` (output features), ``c = k`` (reduction); its batch is ``n`` when the
second operand is a shared weight and ``g`` when every batch element has its own (batch_matmul).
A depthwise convolution has ``g`` = channels and ``c = 1``: channels are independent, not summed
(FRAME's DWCONV is a GEMM whose reduction runs over the channels, which overcounts its reuse).

Each tensor depends on some loops (``RELEVANT``); the input's tile includes the convolution halo,
``((t_p - 1) x stride + (t_r - 1) x dilation + 1)`` rows (and likewise columns).  Tile sizes are scaled to the tensor's
real bytes (after compression), so padding and sparsity carry through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from opscope.analytical.dataflow import LOOPS
from opscope.analytical.sparsity import operand_roles
from opscope.workloads.operator import Operator

TENSORS = ("input", "weight", "output")
MAPPABLE_KINDS = ("conv2d", "depthwise_conv2d", "dense", "matmul", "batch_matmul")


@dataclass(frozen=True)
class LayerShape:
    """Loop extents, strides and per-element bytes of one operator; hashable (the search's cache key)."""

    extents: tuple[int, ...]  # in LOOPS order
    stride: tuple[int, int]
    dilation: tuple[int, int]
    #: bytes per element of input, weight, output (real bytes / tile elements at full extent)
    elem_bytes: tuple[float, float, float]
    #: bytes of tensors the nest does not follow (bias ...): moved once at every level
    other_bytes: float
    word_bytes: int

    @property
    def macs(self) -> int:
        return math.prod(self.extents)

    def extent(self, loop: str) -> int:
        return self.extents[LOOPS.index(loop)]

    def relevant(self, tensor: str) -> tuple[bool, ...]:
        return tuple(loop in RELEVANT[tensor] for loop in LOOPS)

    def elems(self, tensor: str, t: Mapping[str, np.ndarray | int]):
        """Elements of ``tensor`` in a tile ``t`` (loop -> tile, arrays allowed)."""
        if tensor == "weight":
            return t["g"] * t["k"] * t["c"] * t["r"] * t["s"]
        if tensor == "output":
            return t["g"] * t["n"] * t["k"] * t["p"] * t["q"]
        (sh, sw), (dh, dw) = self.stride, self.dilation
        return t["g"] * t["n"] * t["c"] * ((t["p"] - 1) * sh + (t["r"] - 1) * dh + 1) * (
            (t["q"] - 1) * sw + (t["s"] - 1) * dw + 1)

    def full(self) -> dict[str, int]:
        return dict(zip(LOOPS, self.extents))


RELEVANT = {
    "input": {"g", "n", "c", "p", "q", "r", "s"},
    "weight": {"g", "k", "c", "r", "s"},
    "output": {"g", "n", "k", "p", "q"},
}


def layer_shape(op: Operator, byte_factors: Mapping[str, float]) -> LayerShape | None:
    """The mapping's view of ``op``, or None when its kind or loops cannot be mapped."""
    if op.kind not in MAPPABLE_KINDS or op.gemm is None:
        return None
    roles = operand_roles(op)
    tensors = {t.name: t for t in op.tensors}
    by_role = {role: tensors[name] for name, role in roles.items()}
    if not {"a", "w", "o"} <= set(by_role):
        return None
    ext = dict(op.loops)
    stride = dilation = (1, 1)
    if op.kind in ("conv2d", "depthwise_conv2d"):
        if not {"n", "k", "c", "p", "q", "r", "s"} <= set(ext):
            return None
        groups = int(op.attr("groups", 1) or 1)
        st = op.attr("stride", (1, 1)) or (1, 1)
        stride = (int(st), int(st)) if isinstance(st, int) else (int(st[0]), int(st[1]))
        dl = op.attr("dilation", (1, 1)) or (1, 1)
        dilation = (int(dl), int(dl)) if isinstance(dl, int) else (int(dl[0]), int(dl[1]))
        k_total = ext["k"]
        if groups < 1 or k_total % groups:
            return None
        e = {"g": groups, "n": ext["n"], "k": k_total // groups, "c": ext["c"], "p": ext["p"], "q": ext["q"],
             "r": ext["r"], "s": ext["s"]}
    else:
        g = op.gemm
        e = {"g": 1, "n": 1, "k": g.n, "c": g.k, "p": g.m, "q": 1, "r": 1, "s": 1}
        # a shared weight: the batch is n (the weight ignores it); two activations: g (all depend on it)
        e["n" if by_role["w"].role == "weight" else "g"] = g.batch
    extents = tuple(int(e[loop]) for loop in LOOPS)
    if min(extents) < 1:
        return None
    shape = LayerShape(extents=extents, stride=stride, dilation=dilation, elem_bytes=(1.0, 1.0, 1.0),
                       other_bytes=0.0, word_bytes=by_role["o"].nbytes // max(1, math.prod(by_role["o"].shape)))
    full = shape.full()
    per = []
    followed = set()
    for role, tensor in (("a", "input"), ("w", "weight"), ("o", "output")):
        t = by_role[role]
        followed.add(t.name)
        per.append(t.nbytes * byte_factors.get(t.name, 1.0) / shape.elems(tensor, full))
    other = sum(t.nbytes * byte_factors.get(t.name, 1.0) for t in op.tensors if t.name not in followed)
    return LayerShape(extents=extents, stride=stride, dilation=dilation, elem_bytes=tuple(per),
                      other_bytes=float(other), word_bytes=max(1, shape.word_bytes))
