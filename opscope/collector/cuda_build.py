"""Compiling CUDA kernels to a cubin at build time, so a device needs only the driver and TVM's runtime.

TVM 0.27's CUDA codegen hands the generated CUDA *source* to a module factory.  When TVM's CUDA
runtime (``libtvm_runtime_cuda.so``, registering ``ffi.Module.create.cuda``) is loaded, that factory
compiles the source at once through the ``tvm_callback_cuda_compile`` global function and the module
carries the result; when it is not (it links to the driver, ``libcuda.so.1``, which a build machine
without a GPU lacks), the codegen keeps a fallback module that carries the source, and the device
has to compile it when it loads the library (with NVRTC by default), which TVM's runtime-only
package cannot do.

``enable_cubin_build(arch)`` makes the first case happen on any machine:

1. the driver library is loaded: the system's, else NVIDIA's link stub from the CUDA toolkit
   (``lib64/stubs/libcuda.so``), else a stub compiled here whose entry points all return
   ``CUDA_ERROR_STUB_LIBRARY`` (nothing is ever launched while building);
2. TVM's CUDA runtime is loaded, so codegen makes a real CUDA module;
3. ``tvm_callback_cuda_compile`` is replaced by one that runs ``nvcc --cubin`` for ``arch`` with
   TVM's own nvcc flags (``tvm.support.nvcc.compile_cuda``).

Used by the build worker (``opscope.collector.build_worker``) for CUDA targets, in ``collect`` and
``bundle`` alike; ``opscope.collector.cuda_binary`` checks what an exported library carries.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from opscope.errors import OpscopeError

#: what to install when nvcc is missing
NVCC_PACKAGES = ("the CUDA toolkit's nvcc: apt-get install nvidia-cuda-toolkit (or NVIDIA's cuda-nvcc-<version>), "
                 "conda install cuda-nvcc, or pip install nvidia-cuda-nvcc")
#: the driver entry points TVM's CUDA runtime links to (TVM 0.27); the stub answers each with an error
_DRIVER_FUNCTIONS = ("cuDeviceGetName", "cuFuncSetAttribute", "cuLaunchKernelEx", "cuModuleGetFunction",
                     "cuModuleLoadData", "cuModuleUnload", "cuTensorMapEncodeTiled", "cuInit",
                     "cuDriverGetVersion", "cuGetProcAddress", "cuDeviceGet", "cuDeviceGetCount")
CUDA_ERROR_STUB_LIBRARY = 34
_state: dict[str, Any] = {}


def nvcc_path() -> str:
    """The nvcc on PATH; an ``OpscopeError`` naming the tool and where it comes from when there is none."""
    found = shutil.which("nvcc")
    if not found:
        raise OpscopeError(f"building CUDA kernels needs nvcc on PATH and there is none; install {NVCC_PACKAGES}")
    return found


def _stub_source() -> str:
    lines = ["/* a CUDA driver stub for building without a GPU: every call fails with CUDA_ERROR_STUB_LIBRARY */"]
    lines += [f"int {name}(void) {{ return {CUDA_ERROR_STUB_LIBRARY}; }}" for name in _DRIVER_FUNCTIONS]
    lines += [
        "int cuGetErrorName(int e, const char** s) { (void)e; if (s) *s = \"CUDA_ERROR_STUB_LIBRARY\"; return 0; }",
        "int cuGetErrorString(int e, const char** s) {",
        "  (void)e; if (s) *s = \"no CUDA driver here: built against opscope's driver stub\"; return 0; }",
    ]
    return "\n".join(lines) + "\n"


def toolkit_stub() -> Path | None:
    """NVIDIA's ``libcuda.so`` link stub in the CUDA toolkit next to nvcc, when it ships one."""
    nvcc = shutil.which("nvcc")
    roots = [Path(p) for p in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if p]
    if nvcc:
        roots.append(Path(os.path.realpath(nvcc)).parent.parent)
    for root in roots:
        for sub in ("lib64/stubs", "lib/stubs", "targets/x86_64-linux/lib/stubs", "targets/sbsa-linux/lib/stubs"):
            if (root / sub / "libcuda.so").is_file():
                return root / sub / "libcuda.so"
    return None


def build_driver_stub(directory: str | os.PathLike[str]) -> Path:
    """Compile the driver stub (soname ``libcuda.so.1``) into ``directory`` with the C compiler."""
    cc = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc") or ""]
    if not cc[0]:
        raise OpscopeError("building CUDA kernels without a CUDA driver needs a C compiler (cc) for the driver "
                           "stub; install gcc, or the NVIDIA driver")
    out = Path(directory) / "libcuda.so.1"
    src = Path(directory) / "libcuda_stub.c"
    src.write_text(_stub_source())
    try:
        proc = subprocess.run([*cc, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(out), str(src)],
                              capture_output=True, text=True)
    except OSError as exc:
        raise OpscopeError(f"cannot run the C compiler {cc[0]!r} for the CUDA driver stub: {exc.strerror}") from None
    if proc.returncode != 0:
        raise OpscopeError(f"cannot compile the CUDA driver stub with {cc[0]}: {proc.stderr.strip()[-300:]}")
    return out


def _loads_as_driver(path: Path) -> bool:
    """Load ``path``; True when ``libcuda.so.1`` then resolves to it (its soname is the driver's)."""
    try:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True


def load_driver() -> str:
    """Load ``libcuda.so.1`` into this process; returns "system", "toolkit stub" or "opscope stub"."""
    if "driver" in _state:
        return _state["driver"]
    try:
        ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
        _state["driver"] = "system"
    except OSError:
        stub = toolkit_stub()
        if stub is not None and _loads_as_driver(stub):
            _state["driver"] = "toolkit stub"
        else:
            with tempfile.TemporaryDirectory(prefix="opscope-cuda-stub-") as tmp:
                ctypes.CDLL(str(build_driver_stub(tmp)), mode=ctypes.RTLD_GLOBAL)  # loaded: the file may go
            _state["driver"] = "opscope stub"
    return _state["driver"]


def load_cuda_runtime(tvm: Any) -> None:
    """Load TVM's CUDA runtime so ``ffi.Module.create.cuda`` exists (codegen then makes a real module)."""
    import tvm_ffi

    if tvm_ffi.get_global_func("ffi.Module.create.cuda", allow_missing=True) is not None:
        return
    load_driver()
    lib = Path(tvm.__file__).parent / "lib" / "libtvm_runtime_cuda.so"
    if not lib.is_file():
        raise OpscopeError(f"this TVM install has no {lib.name}: it cannot make CUDA modules with compiled code")
    try:
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise OpscopeError(f"cannot load TVM's CUDA runtime {lib}: {exc}") from None
    if tvm_ffi.get_global_func("ffi.Module.create.cuda", allow_missing=True) is None:
        raise OpscopeError(f"{lib} loaded but registered no CUDA module factory (ffi.Module.create.cuda)")


def compile_cubin(code: str, arch: str) -> bytes:
    """``code`` compiled by nvcc to a cubin for ``arch`` ("sm_90"), with TVM's own nvcc flags."""
    import tvm
    from tvm.support import nvcc

    nvcc_path()
    suffix = arch[3:]
    with tvm.target.Target({"kind": "cuda", "arch": arch}):  # compile_cuda reads the current target's arch
        return bytes(nvcc.compile_cuda(code, target_format="cubin", compiler="nvcc",
                                       arch=["-gencode", f"arch=compute_{suffix},code=sm_{suffix}"]))


def enable_cubin_build(arch: str) -> None:
    """From now on, CUDA kernels built in this process carry a cubin for ``arch`` (see the docstring)."""
    import tvm
    import tvm_ffi

    if _state.get("arch") == arch:
        return
    nvcc_path()
    load_cuda_runtime(tvm)

    def tvm_callback_cuda_compile(code: str, *_: Any) -> bytes:
        return compile_cubin(code, arch)

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", tvm_callback_cuda_compile, override=True)
    _state["arch"] = arch
