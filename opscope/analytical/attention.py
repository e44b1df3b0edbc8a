"""Attention variants: how the ``lowrank`` and ``kernel`` methods rewrite a model's attention.

Operators carrying the ``attention`` attribute (``logit``: Q K^T, ``attend``: P V) are rewritten;
every other operator is left alone.  ``sparse`` is not a rewrite: it keeps ``spattn_density`` of the
scores and is applied per operator by the cost model (``sparsity.sparse_view``).

- ``lowrank`` (Linformer, Wang et al. 2020): keys and values are projected from ``N`` positions down
  to ``r = ceil(N x low_rank_ratio)``.  The logit becomes ``M x r`` per head, the attend contracts
  over ``r``; two projections ``(r x N) @ (N x heads*head_dim)`` are added (keys and values).
  This is FRAME's ``get_lanugage_model_low_rank`` (key_proj, query_proj of ``rank x D x N`` MACs).
- ``kernel`` (Performer, Choromanski et al. 2021): with ``f = ceil(m_ratio x head_dim)`` random
  features per head, the logit is replaced by the feature maps ``phi(Q) = Q W`` and ``phi(K) = K W``
  (``(M or N) x head_dim x f`` MACs per head) and the attend by ``KV = phi(K)^T V`` (``f x head_dim``,
  contracting over ``N``) then ``phi(Q) KV`` (``M x head_dim``, contracting over ``f``).  FRAME's
  ``get_lanugage_model_kernel`` uses the same ``m_ratio x D / H`` features for KV and QKV; its
  feature-map layers (``ceil(m_ratio) x N x D``) undercount, we count the projection in full.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from opscope.analytical.options import AnalysisOptions
from opscope.workloads.operator import GemmView, Operator, TensorInfo


def is_attention(op: Operator) -> bool:
    return op.attr("attention") in ("logit", "attend")


def apply_attention(ops: Sequence[Operator], options: AnalysisOptions) -> list[Operator]:
    """``ops`` with the attention operators rewritten for ``options.attention`` (lowrank, kernel)."""
    if options.attention not in ("lowrank", "kernel"):
        return list(ops)
    out: list[Operator] = []
    for op in ops:
        if not is_attention(op) or op.gemm is None:
            out.append(op)
        elif options.attention == "lowrank":
            out.extend(_lowrank(op, options.effective_low_rank_ratio))
        else:
            out.extend(_kernel(op, options.effective_m_ratio))
    return out


def _dims(op: Operator) -> tuple[int, int, int, int, int]:
    """(batch, heads, queries M, keys N, head_dim D) of a logit or attend operator."""
    g = op.gemm
    heads = int(op.attr("heads", 1) or 1)
    if g.batch % heads:
        heads = 1
    batch = g.batch // heads
    if op.attr("attention") == "logit":  # (M x D) @ (D x N)
        return batch, heads, g.m, g.n, g.k
    return batch, heads, g.m, g.k, g.n  # attend: (M x N) @ (N x D)


def _bmm(op: Operator, suffix: str, role: str, gb: int, m: int, n: int, k: int, a_shape, b_shape, o_shape,
         b_role: str = "input", variant: str = "") -> Operator:
    dt = op.dtype
    tensors = (TensorInfo("a", a_shape, dt, "input"), TensorInfo("b", b_shape, dt, b_role),
               TensorInfo("output", o_shape, dt, "output"))
    attrs = {k_: v for k_, v in op.attrs if k_ not in ("attention",)}
    attrs["attention_variant"] = variant
    attrs["attention_part"] = role
    return Operator(
        name=f"{op.name}.{suffix}", kind="batch_matmul" if gb > 1 else "matmul", tensors=tensors,
        flops=2 * gb * m * n * k, count=op.count, gemm=GemmView(gb, m, n, k),
        loops=(("b", gb), ("m", m), ("n", n), ("k", k)), attrs=attrs, models=op.models,
    )


def _lowrank(op: Operator, ratio: float) -> list[Operator]:
    b, h, m, n, d = _dims(op)
    r = max(1, math.ceil(n * ratio))
    hd = h * d
    which = "key" if op.attr("attention") == "logit" else "value"
    # projection of keys (for the logit) or values (for the attend): E (r x N) @ X (N x H*D)
    attrs = {k_: v for k_, v in op.attrs if k_ != "attention"}
    attrs.update(attention_variant="lowrank", attention_part=f"{which}_proj")
    proj = Operator(
        name=f"{op.name}.{which}_proj", kind="batch_matmul" if b > 1 else "matmul",
        # E first: it is the (M x K) operand of the GEMM view, the keys/values the (K x N) one
        tensors=(TensorInfo("projection", (r, n), op.dtype, "weight"),
                 TensorInfo(f"{which}s", (b, n, hd), op.dtype, "input"),
                 TensorInfo("output", (b, r, hd), op.dtype, "output")),
        flops=2 * b * r * hd * n, count=op.count, gemm=GemmView(b, r, hd, n),
        loops=(("b", b), ("m", r), ("n", hd), ("k", n)), attrs=attrs, models=op.models,
    )
    if op.attr("attention") == "logit":
        core = _bmm(op, "lowrank_logit", "logit", b * h, m, r, d, (b, h, m, d), (b, h, r, d), (b, h, m, r),
                    variant="lowrank")
    else:
        core = _bmm(op, "lowrank_attend", "attend", b * h, m, d, r, (b, h, m, r), (b, h, r, d), (b, h, m, d),
                    variant="lowrank")
    return [proj, core]


def _kernel(op: Operator, m_ratio: float) -> list[Operator]:
    b, h, m, n, d = _dims(op)
    f = max(1, math.ceil(m_ratio * d))
    if op.attr("attention") == "logit":
        q_map = _bmm(op, "phi_q", "feature_map", b * h, m, f, d, (b, h, m, d), (d, f), (b, h, m, f),
                     b_role="weight", variant="kernel")
        k_map = _bmm(op, "phi_k", "feature_map", b * h, n, f, d, (b, h, n, d), (d, f), (b, h, n, f),
                     b_role="weight", variant="kernel")
        return [q_map, k_map]
    kv = _bmm(op, "kv", "kv", b * h, f, d, n, (b, h, f, n), (b, h, n, d), (b, h, f, d), variant="kernel")
    qkv = _bmm(op, "qkv", "qkv", b * h, m, d, f, (b, h, m, f), (b, h, f, d), (b, h, m, d), variant="kernel")
    return [kv, qkv]
