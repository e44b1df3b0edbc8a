"""The operator: the unit every room of opscope talks about.

An ``Operator`` is one (fused) DNN operator as it occurs in a model: what it computes (its kind and
loop nest), on which tensors (shape, dtype, role), how much work it is (FLOPs, 2 per MAC) and how
many times the model runs it.  When it comes from TVM Relax it carries its TIR ``PrimFunc``, which
is exactly what the collector compiles; operators built from a layer table have none.

The object is frozen; ``to_dict``/``from_dict`` round-trip everything but the PrimFunc (the store
keeps the PrimFunc as TVMScript separately).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

#: Operator kinds known to the analytical model.  Anything else is ``other`` and is reported as
#: unmodelled rather than crashing.
KINDS = (
    "conv2d",
    "depthwise_conv2d",
    "dense",          # x @ W^T with a weight tensor (FC layer)
    "matmul",         # 2-D GEMM between activations (FRAME's GEMM)
    "batch_matmul",   # batched GEMM (attention logit/attend, or other)
    "pool",
    "softmax",
    "layernorm",
    "elementwise",    # add, relu, gelu, bias, residual, casts ...
    "reduction",      # mean, sum over axes
    "other",
)

TENSOR_ROLES = ("input", "weight", "output")


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a TVM/numpy dtype name (``float32``, ``int8``, ``bfloat16``...)."""
    if dtype == "bfloat16":
        return 2
    try:
        return np.dtype(dtype).itemsize
    except TypeError as exc:
        raise ValueError(f"unknown dtype {dtype!r}") from exc


@dataclass(frozen=True)
class TensorInfo:
    """One tensor an operator reads or writes."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    role: str  # one of TENSOR_ROLES

    def __post_init__(self) -> None:
        if self.role not in TENSOR_ROLES:
            raise ValueError(f"tensor {self.name!r}: role {self.role!r} not in {TENSOR_ROLES}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.elements * dtype_bytes(self.dtype)


@dataclass(frozen=True)
class GemmView:
    """The operator seen as ``batch`` independent GEMMs of ``M x K`` by ``K x N``.

    This is how the PE-array model maps work: conv2d is M = output pixels (N*P*Q), N = output
    channels, K = C*R*S; depthwise conv is batch = channels with K = R*S; attention logit is
    batch = B*heads, M = N = seq, K = head dim.
    """

    batch: int
    m: int
    n: int
    k: int

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.n * self.k


@dataclass(frozen=True)
class Operator:
    """One operator of a model; see the module docstring."""

    name: str
    kind: str
    tensors: tuple[TensorInfo, ...]
    flops: int
    count: int = 1
    #: The GEMM view for PE-array mapping; None for kinds that are not GEMM-like.
    gemm: GemmView | None = None
    #: The loop nest as (loop name, extent), outermost first, for tiling-aware data movement.
    loops: tuple[tuple[str, int], ...] = ()
    #: Extra attributes (stride, padding, groups, kernel, attention role ...), as sorted pairs.
    attrs: tuple[tuple[str, Any], ...] = ()
    #: Which models this operator was seen in (names), for leave-one-model-out splits.
    models: tuple[str, ...] = ()
    #: Stable content key: structural hash of the PrimFunc, else a hash of the description.
    key: str = ""
    prim_func: Any = field(default=None, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"operator {self.name!r}: kind {self.kind!r} not in {KINDS}")
        if self.count < 1:
            raise ValueError(f"operator {self.name!r}: count must be >= 1, got {self.count}")
        if self.flops < 0:
            raise ValueError(f"operator {self.name!r}: negative flops {self.flops}")
        if isinstance(self.attrs, dict):
            object.__setattr__(self, "attrs", tuple(sorted(self.attrs.items())))
        if not self.key:
            object.__setattr__(self, "key", self.description_hash())

    # -- derived quantities -------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        """The dtype of the first input (the operator's compute dtype)."""
        for t in self.tensors:
            if t.role == "input":
                return t.dtype
        return self.tensors[0].dtype if self.tensors else "float32"

    def tensors_of(self, role: str) -> tuple[TensorInfo, ...]:
        return tuple(t for t in self.tensors if t.role == role)

    def bytes_of(self, role: str) -> int:
        return sum(t.nbytes for t in self.tensors_of(role))

    @property
    def bytes(self) -> int:
        """Compulsory traffic: every tensor read or written once."""
        return sum(t.nbytes for t in self.tensors)

    @property
    def intensity(self) -> float:
        """Operational intensity in FLOP per byte of compulsory traffic."""
        return self.flops / self.bytes if self.bytes else float("inf")

    def attr(self, name: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == name:
                return v
        return default

    def with_count(self, count: int) -> Operator:
        return replace(self, count=count)

    # -- identity and serialisation -------------------------------------------------------------
    def description(self) -> dict[str, Any]:
        """Everything that defines the computation (not its name, count or models)."""
        return {
            "kind": self.kind,
            "tensors": [[t.name, list(t.shape), t.dtype, t.role] for t in self.tensors],
            "flops": self.flops,
            "gemm": None if self.gemm is None else [self.gemm.batch, self.gemm.m, self.gemm.n, self.gemm.k],
            "loops": [[n, e] for n, e in self.loops],
            "attrs": [[k, v] for k, v in self.attrs],
        }

    def description_hash(self) -> str:
        blob = json.dumps(self.description(), sort_keys=True, default=str).encode()
        return "d" + hashlib.sha256(blob).hexdigest()[:31]

    def to_dict(self) -> dict[str, Any]:
        d = self.description()
        d.update(name=self.name, count=self.count, models=list(self.models), key=self.key)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Operator:
        g = d.get("gemm")
        return cls(
            name=d["name"],
            kind=d["kind"],
            tensors=tuple(TensorInfo(n, tuple(s), dt, r) for n, s, dt, r in d["tensors"]),
            flops=int(d["flops"]),
            count=int(d.get("count", 1)),
            gemm=None if g is None else GemmView(*g),
            loops=tuple((n, int(e)) for n, e in d.get("loops", [])),
            attrs=tuple((k, _freeze(v)) for k, v in d.get("attrs", [])),
            models=tuple(d.get("models", [])),
            key=d.get("key", ""),
        )


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v
