"""The measuring worker: a long-lived process that loads shared libraries and times them.

Started by ``LocalRunner`` as ``python -m opscope.collector.worker`` with ``TVM_NUM_THREADS`` (and
``TVM_BIND_THREADS`` when pinned) already in its environment, so TVM's thread pool starts with the
requested size.  It reads one JSON request per line on stdin and answers one JSON line on the
original stdout (TVM's own prints go to stderr).  A kernel that crashes kills only this process;
the runner sees end-of-file and starts a new one.

For fault-injection tests the worker registers two packed functions a kernel can call:
``opscope.fault.abort`` (aborts the process) and ``opscope.fault.sleep`` (sleeps N seconds).
"""

from __future__ import annotations

import json
import os
import sys
import time


def _register_faults(tvm_ffi) -> None:
    @tvm_ffi.register_global_func("opscope.fault.abort", override=True)
    def _abort() -> int:
        os.abort()

    @tvm_ffi.register_global_func("opscope.fault.sleep", override=True)
    def _sleep(seconds: int) -> int:
        time.sleep(seconds)
        return 0


def _random_args(specs, seed, np, tvm, dev):
    rng = np.random.default_rng(seed)
    out = []
    for shape, dtype in specs:
        if dtype.startswith("float") or dtype == "bfloat16":
            arr = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        elif dtype == "bool":
            arr = rng.integers(0, 2, size=shape).astype(bool)
        else:
            arr = rng.integers(0, 8, size=shape).astype(dtype)
        out.append(tvm.runtime.tensor(arr, dev))
    return out


def _check(req, mod, ref_mod, np, tvm, dev) -> str:
    """'' when the candidate's outputs match the reference's on random inputs, else why not."""
    specs = [(tuple(s), d) for s, d in req["args"]]
    got = _random_args(specs, 1234, np, tvm, dev)
    want = _random_args(specs, 1234, np, tvm, dev)
    mod["main"](*got)
    ref_mod["main"](*want)
    for i, (g, w) in enumerate(zip(got, want)):
        a, b = g.numpy(), w.numpy()
        if a.dtype.kind == "f":
            ok = np.allclose(a, b, rtol=1e-3, atol=1e-4, equal_nan=True)
        else:
            ok = np.array_equal(a, b)
        if not ok:
            diff = float(np.max(np.abs(a.astype("float64") - b.astype("float64"))))
            return f"argument {i} differs from the reference (max abs diff {diff:.3g})"
    return ""


def _measure(req, cache, np, tvm, dev) -> dict:
    proto = req["protocol"]
    path = req["artifact"]
    mod = cache.get(path)
    if mod is None:
        mod = tvm.runtime.load_module(path)
        cache.clear()
        cache[path] = mod
    if req.get("reference"):
        ref = tvm.runtime.load_module(req["reference"])
        why = _check(req, mod, ref, np, tvm, dev)
        if why:
            return {"status": "wrong_result", "error": why}
    args = _random_args([(tuple(s), d) for s, d in req["args"]], 0, np, tvm, dev)
    for _ in range(proto["warmup"]):
        mod["main"](*args)
    evaluator = mod.time_evaluator(
        "main", dev, number=proto["number"], repeat=proto["repeat"], min_repeat_ms=proto["min_repeat_ms"],
        cooldown_interval_ms=proto["cooldown_ms"],
        f_preproc="cache_flush_cpu_non_first_arg" if proto["flush_cache"] else "",
    )
    result = evaluator(*args)
    return {"status": "ok", "latencies_s": [float(x) for x in result.results]}


def main() -> int:
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything TVM or a kernel prints goes to stderr, not into the protocol stream
    import numpy as np
    import tvm
    import tvm_ffi

    _register_faults(tvm_ffi)
    dev = tvm.cpu(0)
    threads = int(tvm_ffi.get_global_func("runtime.NumThreads")())
    proto_out.write(json.dumps({"ready": True, "threads": threads}) + "\n")
    cache: dict = {}
    for line in sys.stdin:
        req = json.loads(line)
        t0 = time.perf_counter()
        try:
            reply = _measure(req, cache, np, tvm, dev)
        except Exception as exc:  # a kernel's runtime error is data: report it, keep serving
            reply = {"status": "run_error", "error": f"{type(exc).__name__}: {str(exc).strip()[:500]}"}
        reply["threads"] = threads
        reply["wall_s"] = time.perf_counter() - t0
        proto_out.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
