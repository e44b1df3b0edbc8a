"""Turn a fused Relax module into deduplicated ``Operator`` records.

Every ``call_tir`` in the module's ``main`` is one kernel launch.  Calls of structurally equal
PrimFuncs are one operator whose ``count`` is the number of calls; its ``key`` is the
structural hash of the standalone PrimFunc (``global_symbol`` ``main``), as 16 hex digits.
A tensor is a ``weight`` when the Relax argument is a model parameter (an input of ``main``
after its ``num_input`` user inputs, which after ``LiftTransformParams`` includes transformed
weights) or a constant.

Batched matmuls between activations are tagged as attention when they sit next to a softmax:
``logit`` (Q·Kᵀ) when their result reaches a softmax through at most a few element-wise
kernels, ``attend`` (P·V) when their left operand comes from one.  Heads are the GEMM batch
divided by the model's batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opscope.workloads.classify import Classified, classify
from opscope.workloads.operator import Operator, TensorInfo

#: how many element-wise kernels may sit between an attention matmul and its softmax
_ATTENTION_HOPS = 3


@dataclass(frozen=True)
class _Site:
    """One call_tir: its output var, callee, arguments and classification."""

    var: Any
    callee: str
    args: tuple[Any, ...]
    key: str
    cls: Classified


def standalone(func: Any) -> Any:
    """The PrimFunc as a function that compiles on its own (``tvm.IRModule({"main": f})``)."""
    return func.with_attr("global_symbol", "main")


def structural_key(func: Any) -> str:
    import tvm_ffi

    return f"{tvm_ffi.structural_hash(func) & 0xFFFFFFFFFFFFFFFF:016x}"


def relax_op_attrs(mod: Any) -> list[dict[str, Any]]:
    """Attributes of the convs and pools of an *unfused* Relax module, with their shapes."""
    from tvm import relax

    found: list[dict[str, Any]] = []

    def visit(expr: Any) -> None:
        if not isinstance(expr, relax.Call) or not isinstance(expr.op, _op_type()):
            return
        name = expr.op.name
        if name not in ("relax.nn.conv2d", "relax.nn.max_pool2d", "relax.nn.avg_pool2d"):
            return
        a = expr.attrs
        entry: dict[str, Any] = {
            "op": name,
            "data_shape": _shape(expr.args[0]),
            "out_shape": _shape(expr),
            "stride": tuple(int(v) for v in a.strides),
            "padding": _padding(a.padding),
            "dilation": tuple(int(v) for v in a.dilation),
        }
        if name == "relax.nn.conv2d":
            entry["weight_shape"] = _shape(expr.args[1])
            entry["groups"] = int(a.groups)
            entry["layout"] = str(a.data_layout)
        else:
            entry["kernel"] = tuple(int(v) for v in a.pool_size)
        found.append(entry)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func.body, visit)
    return found


def _padding(values: Any) -> tuple[int, ...]:
    """(pad_h, pad_w) when symmetric, else Relax's (top, left, bottom, right)."""
    pads = tuple(int(v) for v in values)
    if len(pads) == 4 and pads[:2] == pads[2:]:
        return pads[:2]
    return pads


def _op_type() -> type:
    import tvm

    return tvm.ir.Op


def _shape(expr: Any) -> tuple[int, ...] | None:
    shape = getattr(getattr(expr, "ty", None), "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return None
    try:
        return tuple(int(v) for v in shape.values)
    except TypeError:
        return None


def extract_operators(mod: Any, model: str, batch_size: int, op_attrs: list[dict[str, Any]] | None = None) -> tuple[Operator, ...]:
    """The deduplicated operators of a fused Relax module's ``main``, in first-call order."""
    import tvm
    from tvm import relax

    main = mod["main"]
    num_input = int(main.attrs["num_input"]) if main.attrs and "num_input" in main.attrs else len(main.params)
    weights = {v for v in main.params[num_input:]}
    op_attrs = op_attrs or []

    sites: list[_Site] = []
    classified: dict[str, tuple[str, Classified, tuple[TensorInfo, ...], Any]] = {}
    alias: dict[Any, Any] = {}  # views (reshape) and renames, resolved to the var they alias
    for block in main.body.blocks:
        for binding in block.bindings:
            call = binding.value
            if isinstance(call, relax.Var):
                alias[binding.var] = alias.get(call, call)
            if not (isinstance(call, relax.Call) and isinstance(call.op, _op_type())):
                continue
            if call.op.name == "relax.reshape" and isinstance(call.args[0], relax.Var):
                alias[binding.var] = alias.get(call.args[0], call.args[0])
            if call.op.name != "relax.call_tir":
                continue
            gv = call.args[0]
            args = tuple(alias.get(a, a) for a in call.args[1].fields)
            func = standalone(mod[gv])
            roles = tuple("weight" if (a in weights or isinstance(a, tvm.ir.expr.Constant)) else "input" for a in args)
            tensors = _tensors(func, roles)
            key = structural_key(func)
            if key not in classified:
                cls = classify(func, tensors, _match_conv(tensors, op_attrs))
                cls = _with_pool_attrs(cls, tensors, op_attrs)
                classified[key] = (gv.name_hint, cls, tensors, func)
            sites.append(_Site(binding.var, gv.name_hint, args, key, classified[key][1]))

    # Attention logit and attend can be the very same kernel (seq_len == head_dim); they stay one
    # kernel key for measurement but two operators, since attention variants treat them apart.
    attention = _tag_attention(sites, batch_size)
    groups: dict[tuple[str, str | None], dict[str, Any]] = {}
    counts: dict[tuple[str, str | None], int] = {}
    for site in sites:
        tag = attention.get(site.var, {})
        group = (site.key, tag.get("attention"))
        groups.setdefault(group, tag)
        counts[group] = counts.get(group, 0) + 1
    roles_per_key: dict[str, int] = {}
    for key, _ in groups:
        roles_per_key[key] = roles_per_key.get(key, 0) + 1
    ops = []
    for (key, role), tag in groups.items():
        name, cls, tensors, func = classified[key]
        if roles_per_key[key] > 1:
            name = f"{name}_{role or 'other'}"
        attrs = dict(cls.attrs)
        attrs.update(tag)
        ops.append(Operator(
            name=name, kind=cls.kind, tensors=tensors, flops=cls.flops, count=counts[(key, role)], gemm=cls.gemm,
            loops=cls.loops, attrs=tuple(sorted(attrs.items())), models=(model,), key=key, prim_func=func,
        ))
    return tuple(ops)


def _tensors(func: Any, roles: tuple[str, ...]) -> tuple[TensorInfo, ...]:
    from opscope.errors import WorkloadError

    out = []
    for i, param in enumerate(func.params):
        try:
            shape = tuple(int(d) for d in param.shape)
        except TypeError:
            raise WorkloadError(
                f"buffer {param.name}: symbolic shape {list(param.shape)} (dynamic shapes are not supported)"
            ) from None
        role = roles[i] if i < len(roles) else "output"
        out.append(TensorInfo(str(param.name), shape, str(param.dtype), role))
    return tuple(out)


def _match_conv(tensors: tuple[TensorInfo, ...], op_attrs: list[dict[str, Any]]) -> dict[str, Any]:
    shapes = {t.shape for t in tensors if t.role != "output"}
    outs = {t.shape for t in tensors if t.role == "output"}
    hits = [e for e in op_attrs if e["op"] == "relax.nn.conv2d" and e["out_shape"] in outs
            and e["data_shape"] in shapes and e["weight_shape"] in shapes]
    distinct = {(e["stride"], e["padding"], e["dilation"], e["groups"]) for e in hits}
    if len(distinct) != 1:  # none, or ambiguous: the classifier falls back to roles and shapes
        return {}
    return hits[0]


def _with_pool_attrs(cls: Classified, tensors: tuple[TensorInfo, ...], op_attrs: list[dict[str, Any]]) -> Classified:
    if cls.kind != "pool":
        return cls
    ins = {t.shape for t in tensors if t.role != "output"}
    outs = {t.shape for t in tensors if t.role == "output"}
    hits = {(e["op"].rsplit(".", 1)[-1], e["kernel"], e["stride"], e["padding"]) for e in op_attrs
            if "kernel" in e and e["data_shape"] in ins and e["out_shape"] in outs}
    if len(hits) != 1:
        return cls
    (op, kernel, stride, padding), = hits
    attrs = dict(cls.attrs)
    attrs.update(pool=op.replace("_pool2d", ""), kernel=kernel, stride=stride, padding=padding)
    return Classified(cls.kind, cls.flops, cls.gemm, cls.loops, tuple(sorted(attrs.items())))


def _tag_attention(sites: list[_Site], batch_size: int) -> dict[Any, dict[str, Any]]:
    """attention attrs per call site (its output var), for the batch_matmuls next to a softmax."""
    producer = {s.var: s for s in sites}
    consumers: dict[Any, list[_Site]] = {}
    for s in sites:
        for a in s.args:
            consumers.setdefault(a, []).append(s)

    def reaches_softmax_forward(site: _Site, hops: int) -> bool:
        for c in consumers.get(site.var, []):
            if c.cls.kind == "softmax":
                return True
            if hops > 0 and c.cls.kind == "elementwise" and reaches_softmax_forward(c, hops - 1):
                return True
        return False

    def from_softmax(var: Any, hops: int) -> bool:
        p = producer.get(var)
        if p is None:
            return False
        if p.cls.kind == "softmax":
            return True
        return hops > 0 and p.cls.kind == "elementwise" and any(from_softmax(a, hops - 1) for a in p.args)

    tags: dict[Any, dict[str, Any]] = {}
    for s in sites:
        g = s.cls.gemm
        if s.cls.kind != "batch_matmul" or g is None:
            continue
        heads = g.batch // batch_size if batch_size and g.batch % batch_size == 0 else g.batch
        if s.args and from_softmax(s.args[0], _ATTENTION_HOPS):
            tags[s.var] = {"attention": "attend", "seq_len": g.k, "heads": heads, "head_dim": g.n}
        elif g.m == g.n and reaches_softmax_forward(s, _ATTENTION_HOPS):
            tags[s.var] = {"attention": "logit", "seq_len": g.m, "heads": heads, "head_dim": g.k}
    return tags
