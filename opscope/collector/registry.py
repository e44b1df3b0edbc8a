"""Which builder and runner measure on a target.

``make_roles(spec, options)`` picks the implementations for a target spec:

- a CPU spec without an RPC section (``host`` and specs detected from this machine): the local
  ``MetaScheduleSampler``, ``LocalBuilder`` and ``LocalRunner``;
- a GPU spec (``kind = "gpu"``) or one named ``cuda``: ``opscope.collector.cuda.make_roles``;
- a spec whose ``[extra]`` has an ``rpc`` table (or ``runner = "rpc"``):
  ``opscope.collector.rpc.make_roles``.

Each of those modules provides ``make_roles(spec, options) -> Roles`` and imports ``Roles`` from
``opscope.collector.roles``, never from here, so no import goes in a circle.
"""

from __future__ import annotations

from opscope.collector.roles import RoleOptions, Roles
from opscope.errors import OpscopeError
from opscope.targets.spec import TargetSpec

__all__ = ["RoleOptions", "Roles", "make_roles", "roles_module"]


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
    if module == "opscope.collector.rpc":
        from opscope.collector import rpc

        return rpc.make_roles(spec, options)
    if module == "opscope.collector.cuda":
        from opscope.collector import cuda

        return cuda.make_roles(spec, options)
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
