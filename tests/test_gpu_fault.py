"""A kernel that faults the GPU is a crash, and its worker (whose CUDA context is now unusable) goes."""

from __future__ import annotations

import pytest

from opscope.collector.gpu_fault import FAULT_PREFIX, as_crash, is_gpu_fault
from opscope.collector.local_runner import LocalRunner
from opscope.collector.roles import RunJob, RunResult


@pytest.mark.parametrize("error, fault", [
    ("RuntimeError: CUDA: an illegal memory access was encountered", True),
    ("CUDA_ERROR_ILLEGAL_ADDRESS", True),
    ("cudaErrorLaunchFailure: unspecified launch failure", True),
    ("RuntimeError: CUDA: out of memory", False),  # not sticky: the next kernel can run
    ("TVMError: shape mismatch", False),
    ("", False),
])
def test_which_errors_are_gpu_faults(error, fault):
    assert is_gpu_fault(error) is fault


def test_as_crash_only_turns_run_errors_with_a_fault():
    fault = {"status": "run_error", "error": "CUDA_ERROR_MISALIGNED_ADDRESS", "threads": 1}
    assert as_crash(fault) == {"status": "crash", "error": FAULT_PREFIX + "CUDA_ERROR_MISALIGNED_ADDRESS",
                               "threads": 1}
    ok = {"status": "ok", "latencies_s": [1e-5]}
    assert as_crash(ok) is ok
    oom = {"status": "run_error", "error": "out of memory"}
    assert as_crash(oom) is oom


class _Dummy:
    killed = 0

    def kill(self):
        _Dummy.killed += 1


def test_cuda_runner_records_a_fault_as_a_crash_and_drops_the_worker(monkeypatch):
    from opscope.collector.cuda import CudaRunner
    from opscope.collector.protocol import Protocol

    replies = iter([RunResult("run_error", error="CUDA: an illegal memory access was encountered", threads=1),
                    RunResult("run_error", error="CUDA: out of memory", threads=1)])
    monkeypatch.setattr(LocalRunner, "run_one", lambda self, job: next(replies))
    runner = CudaRunner()
    runner._workers[(1, False)] = _Dummy()
    job = RunJob("k.so", (((4,), "float32"),), 1, Protocol(), 10.0)
    first, second = runner.run([job, job])
    assert first.status == "crash" and first.error.startswith(FAULT_PREFIX)
    assert (1, False) not in runner._workers and runner.restarts == 1 and _Dummy.killed == 1
    assert second.status == "run_error" and second.error == "CUDA: out of memory"
