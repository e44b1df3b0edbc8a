"""What a fused TIR PrimFunc computes: its kind, GEMM view, loop nest and FLOPs.

The rules read the PrimFunc's blocks (names given by TVM's legalisation, iteration variables and
whether they are spatial or reduction) and the shapes and roles of its tensors:

- the *anchor* is the reduction block with the largest iteration domain; a block named
  ``*conv*`` makes a conv2d (depthwise when groups == input channels > 1), one named
  ``*matmul*``/``*dense*`` a GEMM: ``dense`` when the right operand is a weight, ``batch_matmul``
  when both operands are activations with batch dimensions, ``matmul`` otherwise;
- otherwise a block named ``*softmax*`` makes softmax, ``*layer_norm*``/``*rms_norm*``
  layernorm, ``*pool*`` pool; any other reduction block makes ``reduction``; a function with
  only spatial blocks is ``elementwise`` (which includes data movement such as transposes);
  a function without blocks is ``other``.

FLOPs: conv2d and GEMM kinds count 2 per multiply-accumulate of the anchor block (the fused
epilogue is left out, as in FRAME, and kept in the ``tir_flops`` attribute); every other kind
counts TVM's own estimate of the floating-point operations in the function
(``s_tir.analysis.estimate_tir_flops``: one per add, multiply, max, exp... per element), so a
ReLU is 1 FLOP per element, a softmax about 5 and a layer norm about 8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from opscope.errors import WorkloadError
from opscope.workloads.operator import GemmView, TensorInfo

_REDUCE = 2  # tvm.tirx.IterVar.CommReduce


@dataclass(frozen=True)
class Block:
    """One TIR block: its name and iteration domain as (extent, is_reduction) per variable."""

    name: str
    iters: tuple[tuple[int, bool], ...]

    @property
    def domain(self) -> int:
        return math.prod(e for e, _ in self.iters)

    @property
    def is_reduction(self) -> bool:
        return any(r for _, r in self.iters)

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(e for e, r in self.iters if not r)

    @property
    def reduce(self) -> tuple[int, ...]:
        return tuple(e for e, r in self.iters if r)


@dataclass(frozen=True)
class Classified:
    kind: str
    flops: int
    gemm: GemmView | None
    loops: tuple[tuple[str, int], ...]
    attrs: tuple[tuple[str, Any], ...]


def blocks_of(func: Any) -> tuple[Block, ...]:
    """The blocks under the root block of a PrimFunc, in program order.

    An iteration extent that is not a constant is accepted when it depends only on the iteration
    variables of enclosing blocks: an adaptive pool's window depends on the output position, a
    static loop nest with data-independent bounds.  Its extent is then the largest it takes over
    the enclosing positions (found by trying them all when there are few, else TVM's
    constant-integer bound, which may exceed it).  Any other free variable (a symbolic shape) is
    refused.
    """
    import tvm
    from tvm import s_tir

    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    try:
        root = sch.get_sblock("root")
    except Exception:  # a PrimFunc without a root block (opaque / extern call)
        return ()
    analyzer = tvm.sym.Analyzer()
    out: list[Block] = []

    def visit(parent: Any, outer: list[Any]) -> None:
        for rv in sch.get_child_blocks(parent):
            b = sch.get(rv)
            iters = []
            for iv in b.iter_vars:
                iters.append((_extent(b.name_hint, iv.dom.extent, outer, analyzer), int(iv.iter_type) == _REDUCE))
            out.append(Block(b.name_hint, tuple(iters)))
            for iv in b.iter_vars:
                analyzer.bind(iv.var, iv.dom, allow_override=True)
            visit(rv, outer + [iv.var for iv in b.iter_vars])

    visit(root, [])
    return tuple(out)


#: Most combinations of enclosing positions tried to find a window's exact largest extent.
_MAX_ENUMERATED = 4096


def _extent(block: str, extent: Any, outer: list[Any], analyzer: Any) -> int:
    """A block variable's extent as an int: constant, or the largest one set by enclosing blocks."""
    if hasattr(extent, "value"):
        return int(extent.value)
    import itertools

    import tvm
    from tvm.tirx.analysis import undefined_vars

    bound = analyzer.const_int_bound(extent)
    if undefined_vars(extent, outer) or bound.max_value >= bound.POS_INF:
        raise WorkloadError(f"block {block}: symbolic extent {extent} (dynamic shapes are not supported)")
    used = [v for v in undefined_vars(extent, []) if any(v.same_as(o) for o in outer)]
    ranges = []
    for v in used:
        b = analyzer.const_int_bound(v)
        ranges.append(range(int(b.min_value), int(b.max_value) + 1))
    if math.prod(len(r) for r in ranges) > _MAX_ENUMERATED:
        return max(int(bound.max_value), 0)  # TVM's bound: may exceed the largest window
    best = 0
    for values in itertools.product(*ranges):
        point = tvm.sym.Analyzer()
        for v, x in zip(used, values):
            point.bind(v, tvm.tirx.const(x, str(v.ty)))
        got = point.simplify(extent)
        if not hasattr(got, "value"):
            return max(int(bound.max_value), 0)
        best = max(best, int(got.value))
    return best


def tir_flops(func: Any) -> int:
    import tvm
    from tvm.s_tir import analysis

    return int(analysis.estimate_tir_flops(tvm.IRModule({"main": func})))


def _has(block: Block, *words: str) -> bool:
    name = block.name.lower()
    return any(w in name for w in words)


def classify(func: Any, tensors: tuple[TensorInfo, ...], conv_attrs: dict[str, Any] | None = None) -> Classified:
    """Kind, FLOPs, GEMM view, loops and attributes of one fused PrimFunc."""
    blocks = blocks_of(func)
    total = tir_flops(func)
    reductions = [b for b in blocks if b.is_reduction]
    anchor = max(reductions, key=lambda b: b.domain) if reductions else None
    fused = (("tir_flops", total),)
    if anchor is not None and _has(anchor, "conv"):
        return _conv(anchor, tensors, conv_attrs or {}, fused)
    if anchor is not None and _has(anchor, "matmul", "dense"):
        return _gemm(anchor, tensors, fused)
    if any(_has(b, "softmax") for b in blocks):
        kind = "softmax"
    elif any(_has(b, "layer_norm", "rms_norm", "group_norm") for b in blocks):
        kind = "layernorm"
    elif any(_has(b, "pool") for b in blocks):
        kind = "pool"
    elif reductions:
        kind = "reduction"
    elif blocks:
        kind = "elementwise"
    else:
        kind = "other"
    return Classified(kind, total, None, (), fused)


def _conv(anchor: Block, tensors: tuple[TensorInfo, ...], conv_attrs: dict[str, Any], fused: tuple) -> Classified:
    ins = [t for t in tensors if t.role != "output" and len(t.shape) >= 3]
    outs = [t for t in tensors if t.role == "output"]
    weights = [t for t in ins if t.role == "weight"]
    datas = [t for t in ins if t.role == "input"]
    if "weight_shape" in conv_attrs:
        weight_shape = tuple(conv_attrs["weight_shape"])
        data_shape = tuple(conv_attrs["data_shape"])
    elif weights and datas:
        weight_shape, data_shape = weights[0].shape, datas[0].shape
    else:
        return _opaque_conv(anchor, fused, "cannot tell the data tensor from the kernel")
    if len(data_shape) != 4 or len(weight_shape) != 4 or len(outs[0].shape) != 4:
        return _opaque_conv(anchor, fused, f"{len(data_shape) - 2}-D convolution", kind="other")
    if conv_attrs.get("layout", "NCHW") != "NCHW":
        return _opaque_conv(anchor, fused, f"layout {conv_attrs['layout']} is not NCHW")
    n, c, _, _ = data_shape
    k, c_per_group, r, s = weight_shape
    out = outs[0].shape
    p, q = out[2], out[3]
    groups = c // c_per_group if c_per_group else 1
    macs = n * k * c_per_group * p * q * r * s
    if macs != anchor.domain:
        return _opaque_conv(anchor, fused, f"shapes data {data_shape} x kernel {weight_shape} -> {out} "
                                           f"do not match the block's {anchor.domain} iterations")
    depthwise = groups > 1 and groups == c
    kind = "depthwise_conv2d" if depthwise else "conv2d"
    gemm = GemmView(batch=groups, m=n * p * q, n=k // groups, k=c_per_group * r * s)
    loops = (("n", n), ("k", k), ("c", c_per_group), ("p", p), ("q", q), ("r", r), ("s", s))
    attrs = dict(fused)
    attrs.update(groups=groups, kernel=(r, s))
    for key in ("stride", "padding", "dilation"):
        if key in conv_attrs:
            attrs[key] = tuple(conv_attrs[key])
    return Classified(kind, 2 * macs, gemm, loops, tuple(sorted(attrs.items())))


def _opaque_conv(anchor: Block, fused: tuple, why: str, kind: str = "conv2d") -> Classified:
    """A conv whose shapes cannot be read as NCHW/OIHW: FLOPs from the block, no GEMM view.

    The reason is kept in the ``unmapped`` attribute, so that the analytical model can say why
    it has no PE-array mapping for this operator instead of guessing one.
    """
    attrs = dict(fused)
    attrs["unmapped"] = why
    return Classified(kind, 2 * anchor.domain, None, (), tuple(sorted(attrs.items())))


def _gemm(anchor: Block, tensors: tuple[TensorInfo, ...], fused: tuple) -> Classified:
    spatial, reduce = anchor.spatial, anchor.reduce
    if len(spatial) < 2 or len(reduce) != 1:
        raise WorkloadError(f"GEMM block {anchor.name}: unexpected iteration space {anchor.iters}")
    batch_dims, m, n = spatial[:-2], spatial[-2], spatial[-1]
    k = reduce[0]
    batch = math.prod(batch_dims)
    ins = [t for t in tensors if t.role != "output" and len(t.shape) >= 2]
    rhs_is_weight = len(ins) >= 2 and ins[1].role == "weight" or any(
        t.role == "weight" and len(t.shape) == 2 and sorted(t.shape) == sorted((k, n)) for t in ins
    )
    if rhs_is_weight:
        kind, gemm = "dense", GemmView(1, batch * m, n, k)
    elif batch > 1 or batch_dims:
        kind, gemm = "batch_matmul", GemmView(batch, m, n, k)
    else:
        kind, gemm = "matmul", GemmView(1, m, n, k)
    loops = (("b", gemm.batch), ("m", gemm.m), ("n", gemm.n), ("k", gemm.k))
    return Classified(kind, 2 * gemm.macs, gemm, loops, fused)
