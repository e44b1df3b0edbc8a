"""The measuring worker: a long-lived process that loads shared libraries and times them.

Started by ``LocalRunner`` as ``python -m opscope.collector.worker`` with ``TVM_NUM_THREADS`` (and
``TVM_BIND_THREADS`` when pinned) already in its environment, so TVM's thread pool starts with the
requested size.  It reads one JSON request per line on stdin and answers one JSON line on the
original stdout (TVM's own prints go to stderr); the measurement itself is the timing core's
(``opscope.collector.timing``).  A kernel that crashes kills only this process; the runner sees
end-of-file and starts a new one.

For fault-injection tests the worker registers two packed functions a kernel can call:
``opscope.fault.abort`` (aborts the process) and ``opscope.fault.sleep`` (sleeps N seconds).
"""

from __future__ import annotations

import json
import os
import sys
import time

from opscope.collector import timing


def _register_faults(tvm_ffi) -> None:
    @tvm_ffi.register_global_func("opscope.fault.abort", override=True)
    def _abort() -> int:
        os.abort()

    @tvm_ffi.register_global_func("opscope.fault.sleep", override=True)
    def _sleep(seconds: int) -> int:
        time.sleep(seconds)
        return 0


def handler(dev, cpu: bool = True):
    """``request -> reply`` for ``timing.serve``: load the artifact (cached) and its reference,
    measure with the timing core."""
    import tvm

    cache = timing.ModuleCache(tvm.runtime.load_module)

    def handle(req: dict) -> dict:
        mod = cache.get(req["artifact"])
        ref = tvm.runtime.load_module(req["reference"]) if req.get("reference") else None
        return timing.measure(mod, req["args"], req["protocol"], dev, reference=ref, cpu=cpu)
    return handle


def main() -> int:
    out, inp = timing.protocol_stream()
    import tvm
    import tvm_ffi

    _register_faults(tvm_ffi)
    threads = int(tvm_ffi.get_global_func("runtime.NumThreads")())
    out.write(json.dumps({"ready": True, "threads": threads}) + "\n")
    timing.serve(handler(tvm.cpu(0)), inp, out, {"threads": threads})
    return 0


if __name__ == "__main__":
    sys.exit(main())
