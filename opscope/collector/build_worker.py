"""A build worker: reads JSON requests on stdin, compiles each module, writes a shared library.

Request: ``{"module_json": ..., "target": {...}, "out": path}``; answer (one JSON line on the
original stdout): ``{"error": "" | message, "build_s": seconds}``.  Started by ``LocalBuilder``;
``OPSCOPE_CROSS_COMPILER`` in its environment names the compiler that links the kernels for a
board (empty: the host's compiler).

For a CUDA target the kernels are compiled to a cubin for the target's arch here, with nvcc
(``opscope.collector.cuda_build``), and a library whose CUDA module is not such a cubin is a build
error: the device then needs only the driver and TVM's runtime, never a CUDA compiler.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # compiler chatter goes to stderr, not into the answer stream
    import tvm
    from tvm.support import cc

    compiler = os.environ.get("OPSCOPE_CROSS_COMPILER", "")
    fcompile = cc.cross_compiler(compiler) if compiler else None
    out.write(json.dumps({"ready": True, "cross_compiler": compiler}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        t0 = time.perf_counter()
        error = ""
        try:
            mod = tvm.ir.load_json(req["module_json"])
            cuda_arch = req["target"].get("arch") if req["target"].get("kind") == "cuda" else None
            if cuda_arch:
                from opscope.collector.cuda_build import enable_cubin_build

                enable_cubin_build(cuda_arch)
            ex = tvm.compile(mod, tvm.target.Target(req["target"]))
            ex.export_library(req["out"], fcompile=fcompile)
            if cuda_arch:
                from opscope.collector.cuda_binary import check_cubin

                error = check_cubin(req["out"], cuda_arch)
        except Exception as exc:  # TVM's errors are data here: the caller records a build_error
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            error = f"{type(exc).__name__}: {(lines[-1] if lines else '')[:500]}"
        out.write(json.dumps({"error": error, "build_s": time.perf_counter() - t0}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
