"""FRAME's sparsity semantics applied to one operator (see ``options`` for the definitions)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from opscope.analytical.options import Densities
from opscope.workloads.operator import GemmView, Operator


@dataclass(frozen=True)
class SparseView:
    """What sparsity leaves of an operator: executed FLOPs, per-tensor byte factors, the GEMM mapped."""

    flops_factor: float
    #: tensor name -> factor on its bytes (compression, sparse attention)
    byte_factors: dict[str, float]
    #: the GEMM as mapped onto a PE array (dimensions shrunk as FRAME does), or None
    gemm: tuple[float, float, float, float] | None


def operand_roles(op: Operator) -> dict[str, str]:
    """Tensor name -> FRAME's operand: ``a`` (first input), ``w`` (weight, else second input), ``o``."""
    roles: dict[str, str] = {}
    inputs = op.tensors_of("input")
    weights = op.tensors_of("weight")
    if inputs:
        roles[inputs[0].name] = "a"
    if weights:
        roles[weights[0].name] = "w"
    elif len(inputs) > 1:
        roles[inputs[1].name] = "w"
    for t in op.tensors_of("output"):
        roles[t.name] = "o"
    return roles


def structured_fraction(fraction: float, min_density: float | None) -> float:
    """The executed fraction on a structured accelerator: rounded up to a multiple of ``min_density``."""
    if min_density is None:
        return min(fraction, 1.0)
    # the small epsilon keeps 0.5/0.25 = 2.0000000000000004 from rounding up to 3
    return min(math.ceil(fraction / min_density - 1e-9) * min_density, 1.0)


def sparse_view(op: Operator, dens: Densities, compress_mem: bool, skip_compute: bool, noopt_output: bool,
                min_density: float | None, attn_density: float = 1.0) -> SparseView:
    """Executed-FLOP factor, byte factors and mapped GEMM of ``op`` under the given sparsity.

    ``attn_density`` is the sparse-attention density (1 unless the operator is an attention logit or
    attend under the ``sparse`` method): the logit computes and writes only that share of its scores,
    the attend reads and uses only that share; this holds whether or not memory is compressed.
    """
    da, dw, do = dens
    roles = operand_roles(op)
    per_role = {"a": da, "w": dw, "o": do}
    attention = op.attr("attention")
    byte_factors = {}
    for t in op.tensors:
        role = roles.get(t.name)
        f = per_role[role] if (compress_mem and role) else 1.0
        if attn_density < 1.0 and ((attention == "logit" and role == "o") or (attention == "attend" and role == "a")):
            f *= attn_density
        byte_factors[t.name] = f
    flops_factor = 1.0
    if skip_compute:
        frac = da * dw * (do if noopt_output else 1.0)
        flops_factor = structured_fraction(frac, min_density)
    flops_factor *= attn_density
    gemm = None
    if op.gemm is not None:
        g: GemmView = op.gemm
        bat, m, n, k = float(g.batch), float(g.m), float(g.n), float(g.k)
        if skip_compute:
            k *= dw * da
            if noopt_output:
                m *= do
        if attn_density < 1.0:
            if attention == "logit":
                n *= attn_density
            elif attention == "attend":
                k *= attn_density
        gemm = (bat, m, n, k)
    return SparseView(flops_factor=flops_factor, byte_factors=byte_factors, gemm=gemm)
