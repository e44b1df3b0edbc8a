"""Library baselines: the same computation as an operator, timed in the library users would
otherwise call (torch, whose CPU convolutions and GEMMs are oneDNN's).

``library_case(op)`` says what torch call computes the operator (a plain dict, JSON-able), or None
when no library call covers its kind (elementwise chains, reductions, layout changes): such an
operator simply has no library row.  What a case computes is the operator's main computation as
a framework runs it in inference: a convolution or GEMM with its bias, followed by the activation
the fused operator names (relu, clip as relu6, gelu); a batch-norm folded into the bias, as
inference frameworks fold it.

``LibraryRunner`` is the local runner with a torch measuring worker
(``python -m opscope.collector.library_worker``): the same process discipline (one long-lived
worker per thread count, crash and timeout as results, a fresh worker after either) and the same
protocol, timed by ``timing.time_callable``.  Its ``RunJob.artifact`` is the case as JSON.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

from opscope.collector.local_runner import LocalRunner, _Worker
from opscope.workloads.operator import Operator

#: the library, as a row's origin names it
LIBRARY = "torch"


def torch_version() -> str | None:
    """torch's version without importing it; None when it is not installed."""
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def library_schedule_id(version: str) -> str:
    return f"lib:{LIBRARY}-{version}"


def _activation(name: str) -> str:
    for word, act in (("relu", "relu"), ("clip", "relu6"), ("gelu", "gelu")):
        if word in name:
            return act
    return ""


def _pair(value, default):
    if value is None:
        return list(default)
    if isinstance(value, int):
        return [value, value]
    return [int(v) for v in value][:2]


def _padding(value) -> list[int] | None:
    """(h, w) padding; a 4-tuple (top, left, bottom, right) only when symmetric, else None."""
    pad = [int(v) for v in (value if isinstance(value, (list, tuple)) else (value, value))]
    if len(pad) == 4:
        return pad[:2] if pad[:2] == pad[2:] else None
    return _pair(pad, (0, 0))


def library_case(op: Operator) -> dict | None:
    """The torch call computing ``op`` (see the module docstring), or None when none covers it."""
    attrs = dict(op.attrs)
    ins = [t for t in op.tensors if t.role == "input"]
    ws = [t for t in op.tensors if t.role == "weight"]
    if not ins or any(t.dtype != ins[0].dtype for t in ins + ws) or not ins[0].dtype.startswith("float"):
        return None
    dtype = ins[0].dtype
    act = _activation(op.name)
    outs = [list(t.shape) for t in op.tensors if t.role == "output"]
    case = _case(op, attrs, ins, ws, dtype, act)
    if case is not None and outs:
        case["out"] = outs[0]
    return case


def _case(op: Operator, attrs: dict, ins: list, ws: list, dtype: str, act: str) -> dict | None:
    x = list(ins[0].shape)
    if op.kind in ("conv2d", "depthwise_conv2d"):
        if len(x) != 4 or not ws or len(ws[0].shape) != 4:
            return None
        w = list(ws[0].shape)
        pad = _padding(attrs.get("padding", (0, 0)))
        if pad is None:
            return None
        return {"op": "conv2d", "x": x, "w": w, "bias": len(ws) > 1, "stride": _pair(attrs.get("stride"), (1, 1)),
                "padding": pad, "dilation": _pair(attrs.get("dilation"), (1, 1)),
                "groups": int(attrs.get("groups", 1)), "act": act, "dtype": dtype}
    if op.kind == "dense":
        if len(x) < 2 or not ws or len(ws[0].shape) != 2:
            return None
        w = list(ws[0].shape)
        if w[0] == x[-1]:
            k_n = w
        elif w[1] == x[-1]:
            k_n = [w[1], w[0]]
        else:
            return None
        return {"op": "linear", "x": x, "w": k_n, "bias": len(ws) > 1, "act": act, "dtype": dtype}
    if op.kind in ("matmul", "batch_matmul"):
        if len(ins) != 2 or ws or len(x) < 2 or len(ins[1].shape) < 2 or x[-1] != ins[1].shape[-2]:
            return None
        return {"op": "matmul", "x": x, "y": list(ins[1].shape), "act": act, "dtype": dtype}
    if op.kind == "pool":
        kind = attrs.get("pool")
        if len(x) != 4 or kind not in ("max", "avg") or "kernel" not in attrs:
            return None
        pad = _padding(attrs.get("padding", (0, 0)))
        if pad is None:
            return None
        return {"op": f"{kind}_pool2d", "x": x, "kernel": _pair(attrs["kernel"], (1, 1)),
                "stride": _pair(attrs.get("stride"), (1, 1)), "padding": pad, "dtype": dtype}
    if op.kind == "softmax":
        return {"op": "softmax", "x": x, "dtype": dtype}
    if op.kind == "layernorm":
        affine = len(ws) == 2 and all(list(t.shape) == [x[-1]] for t in ws)
        if ws and not affine:
            return None
        return {"op": "layer_norm", "x": x, "affine": affine, "dtype": dtype}
    return None


class _LibraryWorker(_Worker):
    module = "opscope.collector.library_worker"
    label = "library worker"


class _CudaLibraryWorker(_LibraryWorker):
    env_extra = {"OPSCOPE_LIBRARY_DEVICE": "cuda"}


class LibraryRunner(LocalRunner):
    """``LocalRunner`` whose workers time torch calls; a job's artifact is its case as JSON.
    ``device="cuda"`` times them on the GPU (cuDNN/cuBLAS, TF32 off)."""

    worker_class = _LibraryWorker

    def __init__(self, device: str = "cpu") -> None:
        super().__init__()
        self.device = device
        if device == "cuda":
            self.worker_class = _CudaLibraryWorker

    def replica(self) -> LibraryRunner:
        return type(self)(self.device)

    def backend(self, threads: int, pinned: bool = False) -> str:
        """What torch computes with on CPUs ("oneDNN" or "native"), as the worker for ``threads`` said."""
        w = self._workers.get((threads, pinned))
        return str(w.hello.get("backend", "")) if w is not None else ""


def case_json(case: dict) -> str:
    return json.dumps(case, sort_keys=True)
