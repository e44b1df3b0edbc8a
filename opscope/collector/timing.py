"""The timing core: random arguments, the reference check, warm-up, ``time_evaluator``, one reply.

Every place that times a compiled kernel goes through this module: the local and CUDA measuring
workers, the RPC runner (with a remote device), co-run workers (their arguments), the whole-model
worker (its inputs and timer), the probe, and bundles, which carry this file verbatim next to
their ``run.py``.  So it imports nothing from opscope and needs only the standard library, numpy
and TVM's runtime (both imported when a function needs them).

A protocol is read as a mapping with the fields of ``opscope.store.protocol.Protocol``
(``warmup, number, repeat, min_repeat_ms, cooldown_ms, flush_cache``); a reply is a dict
``{"status": "ok", "latencies_s": [...]}`` or ``{"status": "wrong_result" | "run_error",
"error": ...}``, the same in every room.
"""

from __future__ import annotations

#: bumped when a reply or a check changes meaning (bundles record which core measured them)
TIMING_VERSION = 1
#: seeds of the checked inputs and of the timed inputs
CHECK_SEED = 1234
TIMING_SEED = 0
#: tolerance of the reference check: |got - want| <= ATOL + ATOL_SCALE * max|want| + RTOL * |want|.
#: The absolute part grows with the output's range: a long float32 reduction next to values in
#: the thousands (a batch-norm divide) legitimately differs by ~1e-6 of that range.
RTOL = 1e-3
ATOL = 1e-4
ATOL_SCALE = 1e-5


def random_array(rng, shape, dtype):
    """Seeded inputs: floats uniform in [-1, 1), integers in [0, 8), booleans 0/1."""
    if dtype.startswith("float") or dtype == "bfloat16":
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.integers(0, 8, size=shape).astype(dtype)


def random_args(specs, seed, dev):
    """One runtime tensor on ``dev`` per ``(shape, dtype)`` in ``specs``, filled from ``seed``."""
    import numpy as np
    import tvm

    rng = np.random.default_rng(seed)
    return [tvm.runtime.tensor(random_array(rng, tuple(shape), str(dtype)), dev) for shape, dtype in specs]


def weight_array(rng, shape, dtype):
    """Seeded values for a model's weight: a float tensor of two or more dimensions uniform in
    +-sqrt(3 / fan_in) (variance 1 / fan_in, fan_in the product of all but the first dimension), so
    that each layer keeps its input's scale; a float vector (a bias, a norm's scale, shift, mean or
    variance) uniform in [0.5, 1.5), positive where a variance must be; other dtypes as ``random_array``.

    Weights uniform in [-1, 1) grow a deep model's activations by about sqrt(fan_in / 3) per layer:
    an EfficientNet-like model's output reached 8e7, and its sigmoid and convolution kernels ran up
    to 2.5x slower inside the model than alone, the whole model 7.77 against 6.67 ms (Zen 5, 1 thread)."""
    import math

    if not (dtype.startswith("float") or dtype == "bfloat16"):
        return random_array(rng, shape, dtype)
    if len(shape) >= 2:
        fan_in = max(1, math.prod(int(d) for d in shape[1:]))
        return (rng.uniform(-1.0, 1.0, size=shape) * math.sqrt(3.0 / fan_in)).astype(dtype)
    return rng.uniform(0.5, 1.5, size=shape).astype(dtype)


def model_args(specs, seed, dev, data_inputs):
    """A whole model's arguments: the first ``data_inputs`` of ``specs`` (its inputs) as
    ``random_args`` fills them, the rest (its weights, when the model takes them as parameters) by
    ``weight_array``."""
    import numpy as np
    import tvm

    rng = np.random.default_rng(seed)
    return [tvm.runtime.tensor((random_array if i < data_inputs else weight_array)(rng, tuple(shape), str(dtype)),
                               dev) for i, (shape, dtype) in enumerate(specs)]


def compare_outputs(got, want, rtol=RTOL, atol=ATOL, atol_scale=ATOL_SCALE):
    """'' when each pair of numpy arrays matches (floats within the tolerance above), else why not."""
    import numpy as np

    for i, (a, b) in enumerate(zip(got, want)):
        if a.dtype.kind == "f":
            finite = np.isfinite(b)
            scale = float(np.max(np.abs(b[finite]))) if finite.any() else 0.0
            ok = np.allclose(a, b, rtol=rtol, atol=atol + atol_scale * scale, equal_nan=True)
        else:
            ok = np.array_equal(a, b)
        if not ok:
            diff = float(np.max(np.abs(a.astype("float64") - b.astype("float64"))))
            return f"argument {i} differs from the reference (max abs diff {diff:.3g})"
    return ""


def check_against(mod, ref, specs, dev):
    """Run ``mod`` and the reference ``ref`` on the same random inputs; '' when the outputs agree."""
    got = random_args(specs, CHECK_SEED, dev)
    want = random_args(specs, CHECK_SEED, dev)
    mod["main"](*got)
    ref["main"](*want)
    return compare_outputs([g.numpy() for g in got], [w.numpy() for w in want])


def time_function(mod, name, dev, args, protocol, flush=False):
    """``protocol["warmup"]`` calls, then ``time_evaluator``: one mean latency (s) per repeat.

    ``flush`` flushes the CPU caches before every repeat (``cache_flush_cpu_non_first_arg``);
    callers pass it only for CPU devices.
    """
    warmup = int(protocol.get("warmup", 0))
    if warmup:
        func = mod[name]
        for _ in range(warmup):
            func(*args)
    evaluator = mod.time_evaluator(
        name, dev, number=int(protocol["number"]), repeat=int(protocol["repeat"]),
        min_repeat_ms=int(protocol["min_repeat_ms"]), cooldown_interval_ms=int(protocol.get("cooldown_ms", 0)),
        f_preproc="cache_flush_cpu_non_first_arg" if flush else "")
    return [float(x) for x in evaluator(*args).results]


def measure(mod, specs, protocol, dev, reference=None, cpu=True):
    """The whole measurement of one kernel: check against ``reference`` (a loaded module or None),
    then time ``main`` on inputs drawn from ``TIMING_SEED``; returns the reply dict."""
    specs = [(tuple(s), d) for s, d in specs]
    if reference is not None:
        why = check_against(mod, reference, specs, dev)
        if why:
            return {"status": "wrong_result", "error": why}
    args = random_args(specs, TIMING_SEED, dev)
    flush = bool(protocol.get("flush_cache")) and cpu
    return {"status": "ok", "latencies_s": time_function(mod, "main", dev, args, protocol, flush)}


def time_callable(fn, protocol, sync=None, flush=None):
    """``time_evaluator``'s protocol for a Python callable (a library call): one discarded call,
    ``protocol["warmup"]`` more, then ``repeat`` repeats of ``number`` calls, ``number`` grown as
    TVM grows it (to ``max(min_repeat_ms / per-call + 1, 1.618 * number)``) until a repeat lasts
    ``min_repeat_ms``; one mean latency (s) per repeat.  ``sync`` is called before each clock read
    (a GPU's synchronise), ``flush`` before each repeat (a cache flush)."""
    import time

    sync = sync or (lambda: None)
    for _ in range(1 + int(protocol.get("warmup", 0))):
        fn()
    sync()
    number = max(1, int(protocol["number"]))
    min_s = int(protocol["min_repeat_ms"]) / 1000.0
    cooldown_s = int(protocol.get("cooldown_ms", 0)) / 1000.0
    out = []
    for i in range(int(protocol["repeat"])):
        if i and cooldown_s:
            time.sleep(cooldown_s)
        while True:
            if flush is not None:
                flush()
            sync()
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            sync()
            elapsed = time.perf_counter() - t0
            if elapsed >= min_s or min_s <= 0:
                break
            per_call = max(elapsed / number, 1e-9)
            number = max(int(min_s / per_call) + 1, int(number * 1.618))
        out.append(elapsed / number)
    return out


def error_reply(exc, status="run_error"):
    """A kernel's runtime error as a reply: the caller records it and goes on."""
    text = str(exc).strip()
    return {"status": status, "error": f"{type(exc).__name__}: {text[:500]}"}


class ModuleCache:
    """Loaded modules by path; keeps the last one (a candidate is measured at several thread counts)."""

    def __init__(self, load):
        self._load = load
        self._mods = {}

    def get(self, path):
        mod = self._mods.get(path)
        if mod is None:
            mod = self._load(path)
            self._mods.clear()
            self._mods[path] = mod
        return mod


def serve(handle, inp, out, extra=None):
    """The measuring worker's loop: one JSON request per line of ``inp``, one JSON reply per line
    of ``out``.  ``handle(request) -> reply``; an exception becomes a ``run_error`` reply, and every
    reply gets ``wall_s`` and the fields of ``extra`` (the worker's thread count)."""
    import json
    import time

    for line in inp:
        if not line.strip():
            continue
        request = json.loads(line)
        t0 = time.perf_counter()
        try:
            reply = handle(request)
        except Exception as exc:  # a kernel's runtime error is data: report it, keep serving
            reply = error_reply(exc)
        reply.update(extra or {})
        reply["wall_s"] = time.perf_counter() - t0
        out.write(json.dumps(reply) + "\n")
        out.flush()


def protocol_stream():
    """(reply stream, stdin): the original stdout for replies, while fd 1 is pointed at stderr so
    that whatever TVM or a kernel prints cannot corrupt the reply stream."""
    import os
    import sys

    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return out, sys.stdin
