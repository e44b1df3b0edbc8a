"""Compiled operators that a co-run worker can load: one shared library per TIR PrimFunc.

The parent process compiles (TVM's compiler is large and slow to import); the measuring workers
only load the exported ``.so`` and call it.  A kernel is described by a frozen ``KernelSpec``
(library path, argument shapes and dtypes, the operator it came from), which travels to the
workers through a pipe.

Co-running is about threads, so each kernel gets a small default parallel schedule: in every
top-level block the leading data-parallel loops are fused (until there is enough parallel work)
and the fused loop is parallelised.  This is deliberately plain: opscope's collector explores real
schedules; here the point is that a kernel uses the threads it is given.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opscope.errors import OpscopeError

#: fuse leading spatial loops until the parallel loop has at least this many iterations
MIN_PARALLEL_EXTENT = 64


@dataclass(frozen=True)
class KernelSpec:
    """One compiled operator: where its library is and what arguments it takes."""

    name: str
    key: str
    lib_path: str
    #: (shape, dtype) of every PrimFunc parameter, in call order
    args: tuple[tuple[tuple[int, ...], str], ...]
    #: ``Operator.to_dict()`` as JSON when the kernel came from an Operator, else None
    operator_json: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "lib_path": self.lib_path,
                "args": [[list(s), d] for s, d in self.args], "operator_json": self.operator_json}

    @property
    def features(self) -> dict[str, float]:
        """flops and bytes of the operator (0 when unknown), for the interference model."""
        if self.operator_json is None:
            nbytes = sum(_nbytes(s, d) for s, d in self.args)
            return {"flops": 0.0, "bytes": float(nbytes)}
        d = json.loads(self.operator_json)
        nbytes = sum(_nbytes(tuple(t[1]), t[2]) for t in d["tensors"])
        return {"flops": float(d["flops"]), "bytes": float(nbytes)}


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    import numpy as np

    n = 1
    for x in shape:
        n *= int(x)
    return n * (2 if dtype == "bfloat16" else np.dtype(dtype).itemsize)


def _spatial_prefix(sch, block) -> int:
    """How many leading iteration variables of ``block`` are data-parallel."""
    n = 0
    for iv in sch.get(block).iter_vars:
        if int(iv.iter_type) != 0:  # 0 = data parallel
            break
        n += 1
    return n


def default_parallel_schedule(func):
    """An IRModule with ``func`` as ``main``, its top-level blocks' outer spatial loops parallel."""
    import tvm
    from tvm.s_tir.schedule.schedule import ScheduleError

    func = func.with_attr("global_symbol", "main")
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    root = sch.get_sblock("root") if _has_root(sch) else None
    blocks = sch.get_child_blocks(root) if root is not None else []
    for block in blocks:
        loops = sch.get_loops(block)
        n = min(_spatial_prefix(sch, block), len(loops))
        if n == 0:
            continue
        take, extent = 0, 1
        while take < n and extent < MIN_PARALLEL_EXTENT:
            ext = sch.get(loops[take]).extent
            extent *= int(ext) if hasattr(ext, "__int__") else 1
            take += 1
        try:
            outer = sch.fuse(*loops[:take]) if take > 1 else loops[0]
            sch.parallel(outer)
        except ScheduleError:
            continue  # this block stays serial; the kernel is still correct
    return sch.mod


def _has_root(sch) -> bool:
    from tvm.s_tir.schedule.schedule import ScheduleError

    try:
        sch.get_sblock("root")
        return True
    except (ScheduleError, ValueError):
        return False


def kernel_args(func) -> tuple[tuple[tuple[int, ...], str], ...]:
    """(shape, dtype) of each parameter; an OpscopeError for symbolic shapes."""
    out = []
    for p in func.params:
        shape = []
        for d in p.shape:
            try:
                shape.append(int(d))
            except TypeError:
                raise OpscopeError(f"parameter {p.name!r} has a symbolic shape {list(p.shape)}; "
                                   "co-run needs static shapes") from None
        out.append((tuple(shape), str(p.dtype)))
    return tuple(out)


def build_kernel(func, name: str, target, out_dir: str | os.PathLike[str], key: str = "",
                 operator_json: str | None = None, schedule: bool = True) -> KernelSpec:
    """Compile one PrimFunc for ``target`` (a ``tvm.target.Target``) and export it under ``out_dir``.

    Libraries are cached by content: the file name is a hash of the scheduled module and target.
    """
    import tvm

    mod = default_parallel_schedule(func) if schedule else tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    text = mod.script() + str(target)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lib = out / f"k_{digest}.so"
    if not lib.exists():
        try:
            ex = tvm.compile(mod, target)
            tmp = out / f".k_{digest}.{os.getpid()}.so"
            ex.export_library(str(tmp))
            os.replace(tmp, lib)
        except Exception as exc:  # TVM raises many error types; report the operator by name
            raise OpscopeError(f"operator {name!r}: TVM could not build it: {str(exc).splitlines()[0]}") from None
    return KernelSpec(name, key or f"h{digest}", str(lib), kernel_args(func), operator_json)


def build_operators(ops, target, out_dir: str | os.PathLike[str]) -> list[KernelSpec]:
    """Kernels for ``Operator`` objects that carry a PrimFunc."""
    out = []
    for op in ops:
        if op.prim_func is None:
            raise OpscopeError(f"operator {op.name!r} has no TIR PrimFunc (layer-table operators cannot be run)")
        out.append(build_kernel(op.prim_func, op.name, target, out_dir, key=op.key,
                                operator_json=json.dumps(op.to_dict(), sort_keys=True, default=str)))
    return out
