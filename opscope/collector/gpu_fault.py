"""CUDA errors that mean a kernel faulted the GPU, after which the process's CUDA context is unusable.

Such an error is "sticky": every later CUDA call in the same process fails with it, so a measuring
worker that met one would turn every following measurement into a ``run_error``.  The kernel that
caused it is recorded as a ``crash`` and measuring goes on in a fresh worker (``CudaRunner`` in
``collect``, ``run.py`` in a bundle, which carries this file).  Names as the driver API
(``CUDA_ERROR_*``) and the runtime API (``cudaError*``, and its message text) spell them.
Standard library only: it runs on the device.
"""

STICKY_ERRORS = (
    "CUDA_ERROR_ILLEGAL_ADDRESS", "cudaErrorIllegalAddress", "an illegal memory access was encountered",
    "CUDA_ERROR_MISALIGNED_ADDRESS", "cudaErrorMisalignedAddress", "misaligned address",
    "CUDA_ERROR_ILLEGAL_INSTRUCTION", "cudaErrorIllegalInstruction", "an illegal instruction was encountered",
    "CUDA_ERROR_INVALID_PC", "cudaErrorInvalidPc", "invalid program counter",
    "CUDA_ERROR_HARDWARE_STACK_ERROR", "cudaErrorHardwareStackError", "hardware stack error",
    "CUDA_ERROR_LAUNCH_FAILED", "cudaErrorLaunchFailure", "unspecified launch failure",
    "CUDA_ERROR_ASSERT", "cudaErrorAssert", "device-side assert triggered",
    "CUDA_ERROR_ECC_UNCORRECTABLE", "cudaErrorECCUncorrectable", "uncorrectable ECC error",
)
FAULT_PREFIX = "the kernel faulted the GPU (its worker was replaced): "


def is_gpu_fault(error):
    """True when ``error`` (a worker's error text) is one of the sticky CUDA errors above."""
    text = str(error or "")
    return any(name in text for name in STICKY_ERRORS)


def as_crash(reply):
    """A worker's reply dict, turned into a ``crash`` when it reports a GPU fault (else unchanged)."""
    if reply.get("status") == "run_error" and is_gpu_fault(reply.get("error")):
        return dict(reply, status="crash", error=FAULT_PREFIX + str(reply.get("error", "")))
    return reply
