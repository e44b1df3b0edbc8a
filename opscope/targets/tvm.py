"""How TVM compiles for a target spec.  TVM is imported only when this is called."""

from __future__ import annotations

import functools
import json
import os
import platform
from typing import Any

from opscope.errors import OpscopeError
from opscope.targets.cpu_flags import cpuinfo_path, missing_features, read_cpuinfo
from opscope.targets.spec import TargetSpec


def tvm_target_dict(spec: TargetSpec) -> dict[str, Any]:
    """The JSON target dict for ``spec``; a CPU ``llvm`` target without ``mcpu`` is this host's CPU.

    The triple defaults to ``x86_64-linux-gnu``: under the wheel's default triple
    (``x86_64-conda-linux-gnu``) LLVM refuses ``native`` and falls back to a generic CPU.  For the host,
    ``mcpu`` and ``mattr`` come from :func:`host_llvm_cpu`: LLVM's name for this CPU with every feature
    that ``/proc/cpuinfo`` does not list turned off.
    """
    if not spec.tvm_target:
        raise OpscopeError(
            f"target {spec.name!r} is analytical only: its spec has no [tvm_target] table, so TVM cannot "
            "compile for it (use it with `opscope analyze`)"
        )
    d = dict(spec.tvm_target)
    if d.get("kind") == "llvm":
        d.setdefault("mtriple", "x86_64-linux-gnu")
        if "mcpu" not in d or d["mcpu"] == "native":
            d.update(host_llvm_cpu(d["mtriple"]))
        if spec.cores is not None:
            d.setdefault("num-cores", spec.cores)
    return d


def host_llvm_cpu(mtriple: str = "x86_64-linux-gnu", cpuinfo: str | None = None) -> dict[str, Any]:
    """``{"mcpu": ..., "mattr": [...]}`` for this machine's CPU as it really is.

    LLVM names the CPU model (``llvm_get_system_cpu``) and implies all of that model's features; a
    virtual machine may hide some of them.  Each feature the model implies but the cpuinfo file
    (``/proc/cpuinfo``, or ``$OPSCOPE_CPUINFO``) does not list is turned off with ``-feature``; LLVM then
    also drops the features that depend on it.  ``mattr`` is left out when nothing is hidden.
    """
    path = cpuinfo or cpuinfo_path()
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        stamp = None
    return _lists(dict(_host_llvm_cpu(mtriple, path, stamp)))


@functools.lru_cache(maxsize=8)
def _host_llvm_cpu(mtriple: str, path: str, _stamp: int | None) -> tuple[tuple[str, Any], ...]:
    import tvm

    mcpu = str(tvm.target.codegen.llvm_get_system_cpu())
    features = llvm_features({"kind": "llvm", "mtriple": mtriple, "mcpu": mcpu})
    hidden = missing_features(features, platform.machine(), read_cpuinfo(path))
    out: tuple[tuple[str, Any], ...] = (("mcpu", mcpu),)
    if hidden:
        out += (("mattr", tuple(f"-{f}" for f in hidden)),)
    return out


def _lists(target_dict: dict[str, Any]) -> dict[str, Any]:
    """The dict with tuple values (``mattr``) as lists, the form TVM's Target and JSON take."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in target_dict.items()}


def llvm_features(target_dict: dict[str, Any]) -> set[str]:
    """The features LLVM enables for ``target_dict`` (its ``mcpu`` with ``mattr`` applied)."""
    import tvm

    d = _lists(target_dict)
    try:
        features = tvm.target.codegen.llvm_get_cpu_features(tvm.target.Target(d))
    except Exception as exc:  # LLVM does not know the CPU: one clear line
        raise OpscopeError(f"mcpu {d.get('mcpu')!r}: LLVM cannot list its features: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if isinstance(features, (set, frozenset, list, tuple)):
        return {str(k) for k in features}
    return {str(k) for k in features if bool(features[k])}


def target_string(target_dict: dict[str, Any]) -> str:
    """A compact, stable text of a target dict (recorded in the machine fingerprint and manifests)."""
    d = _lists(target_dict)
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def tvm_target(spec: TargetSpec):
    """A ``tvm.target.Target`` for ``spec`` (an ``OpscopeError`` if TVM rejects the dict)."""
    import tvm

    d = _lists(tvm_target_dict(spec))
    try:
        return tvm.target.Target(d)
    except Exception as exc:  # TVM raises its own error types; turn them into one clear line
        raise OpscopeError(f"target {spec.name!r}: TVM rejects [tvm_target] {d}: {str(exc).splitlines()[0]}") from None
