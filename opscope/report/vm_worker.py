"""Worker process that times a built Relax model: ``python -m opscope.report.vm_worker request.json``.

Started by :func:`opscope.report.whole_model.time_in_worker` with ``TVM_NUM_THREADS`` already set in
its environment, so TVM's thread pool starts with the requested size.  The request names the
exported library, the inputs (name, shape, dtype; filled by the timing core's seeded random values:
``data_inputs`` of them as inputs, the rest as weights, ``timing.model_args``)
and the timing protocol (the timing core's fields); ``time_evaluator`` is the timing core's too.  The last line of stdout is JSON: ``{"raw_latencies_s": [...], "threads": n}``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def time_library(request: dict) -> dict:
    import tvm
    from tvm import relax

    from opscope.collector import timing

    dev = tvm.device(str(request.get("device", "cpu")))
    lib = tvm.runtime.load_module(request["library"])
    vm = relax.VirtualMachine(lib, dev)
    specs = [(tuple(shape), dtype) for _name, shape, dtype in request["inputs"]]
    data_inputs = int(request.get("data_inputs", len(specs)))
    vm.set_input("main", *timing.model_args(specs, int(request.get("seed", timing.TIMING_SEED)), dev, data_inputs))
    raw = timing.time_function(vm, "invoke_stateful", dev, ["main"], request["protocol"])
    kernels = _kernel_times(vm, int(request.get("profile_runs", 0)))
    threads = int(tvm.runtime.num_threads())
    wanted = os.environ.get("TVM_NUM_THREADS")
    if wanted is not None and int(wanted) != threads:
        raise RuntimeError(f"TVM runs {threads} threads, {wanted} were requested")
    return {"raw_latencies_s": raw, "threads": threads, "kernels_s": kernels}


def _kernel_times(vm, runs: int) -> dict[str, float]:
    """Seconds per inference spent in each called function, from ``runs`` instrumented runs.

    The VM calls the instrument before and after every call instruction; the time between the two
    is the call's wall time (the Python callback adds microseconds, so this is for kernels, not
    for the VM's own bookkeeping).
    """
    if runs <= 0:
        return {}
    import time

    totals: dict[str, float] = {}
    started: list[float] = []

    def instrument(_func, symbol, before_run, _ret, *_args):
        now = time.perf_counter()
        if before_run:
            started.append(now)
        elif started:
            totals[str(symbol)] = totals.get(str(symbol), 0.0) + now - started.pop()
        return 0

    vm.set_instrument(instrument)
    for _ in range(runs):
        vm.invoke_stateful("main")
    return {name: t / runs for name, t in totals.items()}


def main(path: str) -> int:
    request = json.loads(Path(path).read_text())
    print(json.dumps(time_library(request)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
