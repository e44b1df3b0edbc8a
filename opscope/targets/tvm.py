"""How TVM compiles for a target spec.  TVM is imported only when this is called."""

from __future__ import annotations

from typing import Any

from opscope.errors import OpscopeError
from opscope.targets.spec import TargetSpec


def tvm_target_dict(spec: TargetSpec) -> dict[str, Any]:
    """The JSON target dict for ``spec``; for a CPU ``llvm`` target without ``mcpu``, LLVM's host CPU.

    The triple defaults to ``x86_64-linux-gnu``: under the wheel's default triple
    (``x86_64-conda-linux-gnu``) LLVM refuses ``native`` and falls back to a generic CPU.
    """
    if not spec.tvm_target:
        raise OpscopeError(
            f"target {spec.name!r} is analytical only: its spec has no [tvm_target] table, so TVM cannot "
            "compile for it (use it with `opscope analyze`)"
        )
    d = dict(spec.tvm_target)
    if d.get("kind") == "llvm":
        d.setdefault("mtriple", "x86_64-linux-gnu")
        if "mcpu" not in d:
            import tvm

            d["mcpu"] = str(tvm.target.codegen.llvm_get_system_cpu())
        if spec.cores is not None:
            d.setdefault("num-cores", spec.cores)
    return d


def tvm_target(spec: TargetSpec):
    """A ``tvm.target.Target`` for ``spec`` (an ``OpscopeError`` if TVM rejects the dict)."""
    import tvm

    d = tvm_target_dict(spec)
    try:
        return tvm.target.Target(d)
    except Exception as exc:  # TVM raises its own error types; turn them into one clear line
        raise OpscopeError(f"target {spec.name!r}: TVM rejects [tvm_target] {d}: {str(exc).splitlines()[0]}") from None
