"""Measuring on NVIDIA GPUs: the CUDA target, its schedule sampler and its roles.

- Target: the spec's ``[tvm_target]`` (``{"kind": "cuda", "arch": "sm_90"}`` for ``h100``/``h200``)
  completed with the per-block limits MetaSchedule's GPU rules need (``max_threads_per_block``,
  ``max_shared_memory_per_block``, ...); a spec that gives them keeps its own values.
- Schedules: the baseline is TVM's dlight default GPU schedule (``Matmul``, ``GEMV``,
  ``Reduction``, ``GeneralReduction``, then ``Fallback``); sampled schedules come from MetaSchedule's
  GPU design space (multi-level tiling with shared-memory staging and thread binding, cooperative
  vector loads, unroll), drawn exactly as for CPUs by ``MetaScheduleSampler``.
- Build: here, by the collector's ``LocalBuilder``: ``tvm.compile`` + ``export_library``, with the
  CUDA code compiled by ``nvcc`` to a cubin for the spec's arch and embedded in the library
  (``opscope.collector.cuda_build``), so a device needs only the driver and TVM's runtime.  No GPU
  is needed to build.
- Run: ``CudaRunner`` times kernels in an isolated worker on ``tvm.cuda(0)`` with
  ``time_evaluator`` (CUDA events).  Without a GPU every run is a ``run_error`` saying so.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from typing import Any

from opscope.collector.local_runner import LocalRunner, _Worker
from opscope.collector.ms_sampler import MetaScheduleSampler, operator_module
from opscope.collector.roles import Candidate, RunJob, RunResult
from opscope.errors import OpscopeError
from opscope.targets.spec import TargetSpec
from opscope.workloads.operator import Operator

#: limits of every CUDA GPU since sm_50 (TVM's own nvidia/* tags use the same numbers)
CUDA_LIMITS = {
    "max_threads_per_block": 1024,
    "max_num_threads": 1024,
    "max_shared_memory_per_block": 49152,
    "registers_per_block": 65536,
    "thread_warp_size": 32,
}
DEFAULT_ARCH = "sm_90"
_ARCH = re.compile(r"^sm_\d{2,3}[af]?$")


def cuda_target_dict(spec: TargetSpec | None = None, arch: str | None = None) -> dict[str, Any]:
    """The JSON target dict for a CUDA spec (or a plain ``cuda`` target for ``arch``)."""
    raw = dict(spec.tvm_target) if spec is not None and spec.tvm_target else {"kind": "cuda"}
    where = f"target {spec.name!r}" if spec is not None else "cuda target"
    if raw.get("kind") != "cuda":
        raise OpscopeError(f"{where}: [tvm_target] kind is {raw.get('kind')!r}, expected 'cuda'")
    if arch is not None:
        raw["arch"] = arch
    raw.setdefault("arch", DEFAULT_ARCH)
    if not isinstance(raw["arch"], str) or not _ARCH.match(raw["arch"]):
        raise OpscopeError(f"{where}: [tvm_target] arch {raw['arch']!r} is not a CUDA arch like 'sm_90'")
    for key, value in CUDA_LIMITS.items():
        raw.setdefault(key, value)
    return raw


def cuda_target(spec: TargetSpec | None = None, arch: str | None = None) -> Any:
    import tvm

    d = cuda_target_dict(spec, arch)
    try:
        return tvm.target.Target(d)
    except Exception as exc:  # TVM's own error types; one clear line instead
        raise OpscopeError(f"cuda target {d}: rejected by TVM: {str(exc).splitlines()[0]}") from None


def have_nvcc() -> bool:
    return shutil.which("nvcc") is not None


def have_gpu() -> bool:
    """True when a CUDA device is visible to TVM's runtime."""
    try:
        import tvm

        return bool(tvm.cuda(0).exist)
    except Exception:  # no CUDA runtime library at all: no GPU
        return False


def dlight_schedule(mod: Any, target: Any) -> Any:
    """``mod`` with TVM's dlight default GPU schedule applied to every PrimFunc."""
    from tvm.s_tir import dlight as dl

    rules = (dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback())
    with target:
        return dl.ApplyDefaultSchedule(*rules)(mod)


class CudaSampler(MetaScheduleSampler):
    """The dlight default schedule first, then schedules drawn from MetaSchedule's GPU space.

    GPU draws fail the postprocessors (``VerifyGPUCode``: too many threads, too much shared memory)
    more often than CPU draws, so more draws per wanted trial are allowed.
    """

    def __init__(self, target: Any, max_draws_per_trial: int = 12):
        super().__init__(target, max_draws_per_trial)

    def default_candidate(self, op: Operator) -> Candidate:
        import tvm

        mod = dlight_schedule(operator_module(op), self.target)
        return Candidate(op.key, "default", "default", '["dlight"]', (("dlight", 1),), tvm.ir.save_json(mod))

    def candidates(self, op: Operator, trials: int, seed: int) -> list[Candidate]:
        sampled = super().candidates(op, trials, seed)[1:]
        return [self.default_candidate(op), *sampled]


class _CudaWorker(_Worker):
    """The collector's worker protocol, served by ``opscope.collector.cuda_worker`` on the GPU."""

    module = "opscope.collector.cuda_worker"
    label = "CUDA measuring worker"


class CudaRunner(LocalRunner):
    """Times built CUDA kernels in an isolated worker on ``tvm.cuda(0)``; crash/timeout as locally.

    A kernel that faults the GPU (illegal address, ...) leaves the worker's CUDA context unusable:
    it is recorded as a ``crash`` and the next measurement gets a fresh worker.
    """

    worker_class = _CudaWorker

    def run_one(self, job: RunJob) -> RunResult:
        from opscope.collector.gpu_fault import FAULT_PREFIX, is_gpu_fault

        res = super().run_one(job)
        if res.status == "run_error" and is_gpu_fault(res.error):
            self._drop(job.threads, job.pinned)
            return dataclasses.replace(res, status="crash", error=FAULT_PREFIX + res.error)
        return res


def make_roles(spec: TargetSpec, options: Any = None) -> Any:
    """The sampler, builder and runner for a CUDA spec (``kind = "gpu"`` or named ``cuda``)."""
    from opscope.collector.local_builder import LocalBuilder
    from opscope.collector.roles import RoleOptions, Roles

    options = options or RoleOptions()
    if not have_nvcc():
        from opscope.collector.cuda_build import NVCC_PACKAGES

        raise OpscopeError(f"target {spec.name!r}: building CUDA kernels needs nvcc on PATH and there is none; "
                           f"install {NVCC_PACKAGES}")
    target = cuda_target(spec)
    return Roles(
        sampler=CudaSampler(target),
        builder=LocalBuilder(cuda_target_dict(spec), options.build_workers, options.build_timeout_s),
        runner=CudaRunner(),
        tvm_target=target,
    )
