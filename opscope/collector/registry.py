"""Which builder and runner measure on a target.

``make_roles(spec, options)`` picks the implementations for a target spec:

- a CPU spec without an RPC section (``host`` and specs detected from this machine): the local
  ``MetaScheduleSampler``, ``LocalBuilder`` and ``LocalRunner``;
- a GPU spec (``kind = "gpu"``) or one named ``cuda``: ``opscope.collector.cuda.make_roles``;
- a spec whose ``[extra]`` has an ``rpc`` table (or ``runner = "rpc"``):
  ``opscope.collector.rpc.make_roles``.

Each of those modules provides ``make_roles(spec, options) -> Roles``.  When one is not
installed the error says which module is missing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from opscope.collector.roles import Builder, Runner, ScheduleSampler
from opscope.errors import OpscopeError
from opscope.targets.spec import TargetSpec


@dataclass(frozen=True)
class RoleOptions:
    build_workers: int | None = None
    build_timeout_s: float = 120.0
    #: the farm for RPC targets (``opscope.collector.rpc.RpcConfig``); None: from env and the spec
    rpc: Any = None


@dataclass(frozen=True)
class Roles:
    sampler: ScheduleSampler
    builder: Builder
    runner: Runner
    #: the tvm.target.Target the candidates are compiled for
    tvm_target: Any


def roles_module(spec: TargetSpec) -> str | None:
    """The module providing the roles for ``spec``; None for the local ones."""
    extra = spec.extra or {}
    if "rpc" in extra or extra.get("runner") == "rpc":
        return "opscope.collector.rpc"
    if spec.kind == "gpu" or spec.name == "cuda":
        return "opscope.collector.cuda"
    if spec.kind != "cpu":
        raise OpscopeError(f"target {spec.name!r} is a {spec.kind} spec: opscope cannot measure on it "
                           "(it is for the analytical model only)")
    return None


def make_roles(spec: TargetSpec, options: RoleOptions | None = None) -> Roles:
    options = options or RoleOptions()
    module = roles_module(spec)
    if module is not None:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            raise OpscopeError(f"target {spec.name!r} needs {module}, which is not part of this build") from None
        return mod.make_roles(spec, options)
    from opscope.collector.local_builder import LocalBuilder
    from opscope.collector.local_runner import LocalRunner
    from opscope.collector.ms_sampler import MetaScheduleSampler
    from opscope.targets import tvm_target, tvm_target_dict

    target = tvm_target(spec)
    return Roles(
        sampler=MetaScheduleSampler(target),
        builder=LocalBuilder(tvm_target_dict(spec), options.build_workers, options.build_timeout_s),
        runner=LocalRunner(),
        tvm_target=target,
    )
