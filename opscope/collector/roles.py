"""The collector's roles: small interfaces working on batches, one file per implementation.

- ``ScheduleSampler``: operator -> candidates (the default schedule first, then sampled ones).
- ``Builder``: candidates -> built artifacts (a shared library per candidate, or a build error).
- ``Runner``: run jobs (artifact, thread count, protocol) -> results, in an isolated process.
- ``Roles``: the three for one target (``registry.make_roles``), ``RoleOptions`` what shapes them.

The values passed between them are frozen dataclasses; nothing here imports TVM.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opscope.store.protocol import Protocol
from opscope.workloads.operator import Operator


@dataclass(frozen=True)
class Candidate:
    """One schedule of one operator, ready to build."""

    op_key: str
    schedule_id: str
    schedule_kind: str  # "default" | "sampled" | "searched"
    trace_json: str
    knobs: tuple[tuple[str, Any], ...]
    #: the scheduled IRModule serialised with ``tvm.ir.save_json`` (opaque to everyone but the builder)
    module_json: str


@dataclass(frozen=True)
class Built:
    candidate: Candidate
    artifact: str = ""  # path of the shared library; "" when the build failed
    error: str = ""
    build_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class RunJob:
    """Measure one built artifact with ``threads`` threads under ``protocol``."""

    artifact: str
    args: tuple[tuple[tuple[int, ...], str], ...]  # (shape, dtype) of each PrimFunc parameter
    threads: int
    protocol: Protocol
    timeout_s: float
    #: when set, first compare every output against this reference artifact on random inputs
    reference: str = ""
    pinned: bool = False


@dataclass(frozen=True)
class RunResult:
    status: str  # ok | wrong_result | run_error | crash | timeout
    latencies_s: tuple[float, ...] = ()
    error: str = ""
    threads: int = 0  # the thread count the runtime reported
    wall_s: float = 0.0


class ScheduleSampler(abc.ABC):
    @abc.abstractmethod
    def candidates(self, op: Operator, trials: int, seed: int) -> list[Candidate]:
        """The default schedule first, then up to ``trials`` distinct sampled schedules."""


class Builder(abc.ABC):
    @abc.abstractmethod
    def build(self, batch: Sequence[Candidate]) -> list[Built]:
        """Build each candidate; a failure is a ``Built`` with ``error`` set, never an exception."""

    def discard(self, built: Sequence[Built]) -> None:  # noqa: B027 - optional hook
        """Delete the artifacts of ``built`` once they are measured (default: keep them)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release worker processes."""


class Runner(abc.ABC):
    @abc.abstractmethod
    def run(self, batch: Sequence[RunJob]) -> list[RunResult]:
        """Run each job; crashes and timeouts are results, never exceptions."""

    @property
    def parallel_slots(self) -> int:
        """How many jobs one ``run`` call measures at once (a board farm: its boards); default 1,
        so that a collection killed mid-way loses at most the measurement in flight."""
        return 1

    def replica(self) -> Runner:
        """Another runner like this one with measuring processes of its own (``Protocol.workers`` > 1)."""
        from opscope.errors import OpscopeError

        raise OpscopeError(f"protocol workers > 1 needs separate measuring processes; {type(self).__name__} "
                           "cannot start more (use workers = 1)")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop worker processes."""


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


def arg_specs(prim_func: Any) -> tuple[tuple[tuple[int, ...], str], ...]:
    """(shape, dtype) of each parameter of a TIR PrimFunc with static shapes."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from opscope.errors import OpscopeError

    specs = []
    for info in ArgInfo.from_prim_func(prim_func):
        try:
            specs.append((tuple(int(d) for d in info.shape), str(info.dtype)))
        except (TypeError, ValueError):
            raise OpscopeError(f"PrimFunc has a parameter of dynamic shape {info.shape}; "
                               "only static shapes can be measured") from None
    return tuple(specs)
