"""``probe``: this machine's attainable peaks, measured, written as the ``host-measured`` spec.

- Compute: the best of a few MetaSchedule-sampled TVM fp32 GEMM schedules (seed 0, each checked
  against numpy) and numpy's BLAS ``matmul``.
- Special functions (``probe_special``): nanoseconds per call of exp, sigmoid, tanh and erf at one
  thread, as TVM lowers them (``[extra] special_ns``, read by ``predictor.features.special``).
- Bandwidth: STREAM-like ``copy`` (``a = b``, 2 arrays of traffic) and ``triad``
  (``a = b + s * c``, 3 arrays), TVM kernels where each thread sweeps its own chunk many times,
  at working sets of half of L1, L2 and L3 and four times L3 (DRAM); the faster of the two is the
  level's bandwidth.

Everything runs with all cores (``TVM_NUM_THREADS`` = cores when not set).  Kept short: about a
minute on a 2-core machine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from opscope.targets.spec import MemoryLevel, TargetSpec


@dataclass(frozen=True)
class ProbeResult:
    gemm_flops: dict[str, float]  # "tvm:<tile>" / "numpy" -> FLOP/s (fp32)
    bandwidth: dict[str, dict[str, float]]  # level -> {"copy": B/s, "triad": B/s, "bytes": ws}
    threads: int
    seconds: float
    #: nanoseconds per call of each special function at one thread (``probe_special``); empty if not probed
    special_ns: dict[str, float] = field(default_factory=dict)

    @property
    def peak_fp32(self) -> float:
        return max(self.gemm_flops.values())


def _target() -> Any:
    from opscope.targets import detect_host, tvm_target

    return tvm_target(detect_host())


def _time(mod: Any, name: str, args: list, dev: Any, min_repeat_ms: int = 50, repeat: int = 5) -> float:
    """Best (minimum) seconds per call, timed by the timing core."""
    from opscope.collector import timing

    protocol = {"warmup": 0, "number": 1, "repeat": repeat, "min_repeat_ms": min_repeat_ms}
    return min(timing.time_function(mod, name, dev, args, protocol))


def probe_gemm(n: int = 512, samples: int = 8, progress: Any = None) -> dict[str, float]:
    """fp32 FLOP/s of the default and ``samples`` MetaSchedule-sampled schedules of an ``n``-cube
    GEMM (each checked against numpy), and of numpy's ``matmul``."""
    import tvm

    from opscope.collector.ms_sampler import MetaScheduleSampler
    from opscope.collector.te_ops import dense_operator
    from opscope.collector.timing import compare_outputs

    dev = tvm.cpu(0)
    target = _target()
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((n, n), dtype=np.float32)
    w_np = rng.standard_normal((n, n), dtype=np.float32)
    want = x_np @ w_np.T
    out: dict[str, float] = {}
    for cand in MetaScheduleSampler(target).candidates(dense_operator(n, n, n), samples, seed=0)[1:]:
        ex = tvm.compile(tvm.ir.load_json(cand.module_json), target)
        args = [tvm.runtime.tensor(x_np, dev), tvm.runtime.tensor(w_np, dev),
                tvm.runtime.tensor(np.zeros((n, n), np.float32), dev)]
        ex.mod["main"](*args)
        if compare_outputs([args[2].numpy()], [want]):
            continue  # a schedule that computes the wrong thing does not count
        key = f"tvm:{cand.schedule_id}"
        out[key] = 2.0 * n ** 3 / _time(ex.mod, "main", args, dev, min_repeat_ms=30, repeat=3)
        if progress:
            progress(f"GEMM {key}: {out[key] / 1e9:.1f} GFLOP/s")
    best = float("inf")
    c_np = np.empty((n, n), np.float32)
    wt = np.ascontiguousarray(w_np.T)
    for _ in range(3):
        t0 = time.perf_counter()
        reps = 0
        while time.perf_counter() - t0 < 0.1:
            np.matmul(x_np, wt, out=c_np)
            reps += 1
        best = min(best, (time.perf_counter() - t0) / reps)
    out["numpy"] = 2.0 * n ** 3 / best
    if progress:
        progress(f"GEMM numpy: {out['numpy'] / 1e9:.1f} GFLOP/s")
    return out


def _special_body(A: Any, call: Any) -> Any:
    """``i -> call(A[i]) + 1`` (``A[i] + 1`` for no call), for ``te.compute``."""
    return (lambda i: call(A[i]) + 1.0) if call is not None else (lambda i: A[i] + 1.0)


def probe_special(n: int = 1 << 20, progress: Any = None) -> dict[str, float]:
    """Nanoseconds per call of each special function a fused epilogue may hold
    (``targets.loader.SPECIAL_FUNCTIONS``, which ``predictor.features.special`` counts), at one
    thread: a TVM-compiled loop ``B[i] = f(A[i]) + 1`` over ``n`` float32 of the standard normal (the
    cost of some, erf's among them, depends on the argument's range), less the same loop without the
    call."""
    import tvm
    from tvm import te

    from opscope.targets.loader import SPECIAL_FUNCTIONS

    dev = tvm.cpu(0)
    target = _target()
    a_np = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    seconds = {}
    for fn in ("none", *SPECIAL_FUNCTIONS):
        A = te.placeholder((n,), "float32", name="A")
        B = te.compute((n,), _special_body(A, getattr(te, fn, None)), name="B")
        ex = tvm.compile(te.create_prim_func([A, B]), target)
        args = [tvm.runtime.tensor(a_np, dev), tvm.runtime.tensor(np.zeros(n, np.float32), dev)]
        seconds[fn] = _time(ex.mod, "main", args, dev, min_repeat_ms=20, repeat=3)
    out = {fn: max(seconds[fn] - seconds["none"], 0.0) / n * 1e9 for fn in SPECIAL_FUNCTIONS}
    if progress:
        progress("special functions: " + ", ".join(f"{fn} {v:.2f} ns" for fn, v in out.items()) + " per call")
    return out


def _stream_func(kind: str, threads: int, chunk: int, passes: int) -> Any:
    """copy ``A = B`` or triad ``A = B + 3 C`` over ``threads`` chunks of ``chunk`` floats.

    Each thread sweeps its own chunk ``passes`` times, so a working set that fits a cache is
    streamed from that cache, not re-fetched per call.
    """
    from tvm.script import tirx as T

    n = threads * chunk
    vec = chunk // 8
    if kind == "copy":
        @T.prim_func
        def copy(B: T.Buffer((n,), "float32"), A: T.Buffer((n,), "float32")):
            T.func_attr({"global_symbol": "main", "tirx.noalias": True})
            for t in T.parallel(threads):
                for _r in range(passes):
                    for io in range(vec):
                        for ii in T.vectorized(8):
                            A[t * chunk + io * 8 + ii] = B[t * chunk + io * 8 + ii]
        return copy

    @T.prim_func
    def triad(B: T.Buffer((n,), "float32"), C: T.Buffer((n,), "float32"), A: T.Buffer((n,), "float32")):
        T.func_attr({"global_symbol": "main", "tirx.noalias": True})
        for t in T.parallel(threads):
            for _r in range(passes):
                for io in range(vec):
                    for ii in T.vectorized(8):
                        A[t * chunk + io * 8 + ii] = (B[t * chunk + io * 8 + ii]
                                                      + T.float32(3) * C[t * chunk + io * 8 + ii])
    return triad


def probe_bandwidth(levels: tuple[MemoryLevel, ...], threads: int, progress: Any = None) -> dict[str, dict[str, float]]:
    """Bandwidth per memory level (innermost first; the last is off-chip)."""
    import tvm

    dev = tvm.cpu(0)
    target = _target()
    out: dict[str, dict[str, float]] = {}
    sizes = [lv.size_bytes for lv in levels[:-1] if lv.size_bytes]
    last_cache = max(sizes) if sizes else 32 << 20
    for lv in levels:
        ws = 4 * last_cache if lv is levels[-1] else (lv.size_bytes or last_cache) // 2
        chunk = max(64, ws // 12 // threads // 64 * 64)  # triad: 3 arrays of 4-byte floats
        n = chunk * threads
        passes = max(1, (4 << 20) // chunk)  # about 16 MB of traffic per call and thread
        got = {}
        for kind, arrays in (("copy", 2), ("triad", 3)):
            ex = tvm.compile(tvm.IRModule({"main": _stream_func(kind, threads, chunk, passes)}), target)
            args = [tvm.runtime.tensor(np.ones(n, np.float32), dev) for _ in range(arrays)]
            got[kind] = arrays * 4 * n * passes / _time(ex.mod, "main", args, dev, min_repeat_ms=20)
        out[lv.name] = {**got, "bytes": float(12 * n)}
        if progress:
            progress(f"{lv.name}: working set {12 * n / 1024:.0f} KiB, copy {got['copy'] / 1e9:.1f} GB/s, "
                     f"triad {got['triad'] / 1e9:.1f} GB/s")
    return out


def run_probe(base: TargetSpec, gemm_n: int = 512, progress: Any = None, samples: int = 8) -> ProbeResult:
    """Measure (see the module docstring); ``base`` gives the memory levels to probe."""
    os.environ.setdefault("TVM_NUM_THREADS", str(base.cores or os.cpu_count() or 1))
    t0 = time.perf_counter()
    gemm = probe_gemm(gemm_n, samples, progress)
    bw = probe_bandwidth(base.memory, int(os.environ["TVM_NUM_THREADS"]), progress)
    special = probe_special(progress=progress)
    return ProbeResult(gemm, bw, int(os.environ["TVM_NUM_THREADS"]), time.perf_counter() - t0, special)


def measured_spec(base: TargetSpec, result: ProbeResult) -> TargetSpec:
    """``base`` with measured peaks and bandwidths: the ``host-measured`` spec."""
    fp32 = result.peak_fp32
    nominal32 = base.peak_flops.get("float32")
    peaks = {"float32": fp32}
    notes = []
    if nominal32:
        for dt, v in base.peak_flops.items():
            if dt != "float32":
                peaks[dt] = v * fp32 / nominal32
        if len(peaks) > 1:
            notes.append("peaks other than float32 are not measured: nominal x (measured / nominal float32) = "
                         f"x{fp32 / nominal32:.3f}")
    memory = tuple(
        replace(lv, bandwidth_Bps=max(result.bandwidth[lv.name]["copy"], result.bandwidth[lv.name]["triad"]))
        for lv in base.memory
    )
    best = max(result.gemm_flops, key=result.gemm_flops.get)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sources = (
        f"measured by opscope probe at {when} with {result.threads} threads in {result.seconds:.0f} s",
        f"float32 peak: best of {', '.join(f'{k} {v / 1e9:.1f}' for k, v in result.gemm_flops.items())} GFLOP/s "
        f"(best: {best})",
        "bandwidth per level: max of STREAM-like copy and triad, "
        + "; ".join(f"{k} {v['copy'] / 1e9:.1f}/{v['triad'] / 1e9:.1f} GB/s at {v['bytes'] / 1024:.0f} KiB"
                    for k, v in result.bandwidth.items()),
        *notes,
    )
    extra = dict(base.extra)
    special = {fn: round(v, 4) for fn, v in result.special_ns.items() if v > 0}
    if special:  # read by predictor.features.special
        extra["special_ns"] = special
        sources += ("special functions, ns per call at one thread: "
                    + ", ".join(f"{fn} {v:.2f}" for fn, v in special.items()),)
    return replace(base, name="host-measured", peak_flops=peaks, memory=memory, nominal=False, extra=extra,
                   sources=sources + tuple(s for s in base.sources if s.startswith("detected")))
