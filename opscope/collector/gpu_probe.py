"""The GPU probe: measured device-memory bandwidth and GEMM peaks of a CUDA GPU, as ``<spec>-measured``.

What is measured, for an ``n``-cube GEMM (``n`` = 8192 by default) and a copy of ``copy_bytes``
(1 GiB):

- GEMM FLOP/s = 2 n^3 / t for float32, float16 and bfloat16: the library's (PyTorch's
  ``matmul``, i.e. cuBLAS, TF32 off; ``opscope/collector/gpu_library.py``) and TVM's (the dlight
  default schedule compiled to a cubin, timed by opscope's timing core) for float32 and float16;
- device-memory bandwidth = 2 x bytes / t (each byte read once and written once): PyTorch's
  device-to-device ``copy_`` and a TVM copy kernel.

``t`` is the fastest per-call time over the repeats (the probe asks what is attainable).  The
measured spec takes, per dtype, the best source, and the faster copy as the off-chip level's
bandwidth; the inner levels (L1, L2) keep their nominal figures and dtypes not measured (int8) are
the nominal figure scaled by measured/nominal float16, both said in its ``sources``.

Where the GPU is: here (``run_local``, needs a GPU, torch and nvcc), or offline: ``write_probe_bundle``
writes an ordinary bundle of the TVM probe kernels plus ``library.py``; its ``results.json`` and
``library.json`` come back to ``result_from_files``.  The arithmetic (``result_from_timings``,
``measured_gpu_spec``) is separate from the timing, so it is tested with synthetic timings.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from opscope.errors import OpscopeError
from opscope.targets.spec import TargetSpec

DEFAULT_GEMM_N = 8192
DEFAULT_COPY_BYTES = 1 << 30
#: dtypes of the library GEMM; TVM's GEMM runs the first two (a bundle's inputs come from numpy,
#: which has no bfloat16)
GEMM_DTYPES = ("float32", "float16", "bfloat16")
TVM_GEMM_DTYPES = ("float32", "float16")
SOURCES = ("library", "tvm")
PROBE_PREFIX = "probe_"


@dataclass(frozen=True)
class Timing:
    """One probe case timed once per repeat: ``case`` gemm | copy, ``size`` n or bytes."""

    case: str
    dtype: str
    source: str
    size: int
    seconds: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.case not in ("gemm", "copy"):
            raise ValueError(f"case {self.case!r} is not 'gemm' or 'copy'")
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {SOURCES}")
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        if not self.seconds or any(not (isinstance(s, (int, float)) and s > 0) for s in self.seconds):
            raise ValueError(f"seconds must be positive numbers, got {list(self.seconds)}")

    @property
    def best_s(self) -> float:
        return min(self.seconds)

    @property
    def rate(self) -> float:
        """FLOP/s of a GEMM (2 n^3 / t), bytes/s of a copy (2 x bytes / t)."""
        if self.case == "gemm":
            return 2.0 * self.size ** 3 / self.best_s
        return 2.0 * self.size / self.best_s


@dataclass(frozen=True)
class GpuProbeResult:
    device: str
    gemm_flops: dict[str, dict[str, float]]  # dtype -> source -> FLOP/s
    bandwidth_Bps: dict[str, float]  # source -> bytes/s
    gemm_n: int
    copy_bytes: int
    how: str  # "here" or "bundle <id>"

    def peak(self, dtype: str) -> float | None:
        got = self.gemm_flops.get(dtype)
        return max(got.values()) if got else None

    @property
    def bandwidth(self) -> float:
        return max(self.bandwidth_Bps.values())


def result_from_timings(timings: Iterable[Timing], device: str, how: str) -> GpuProbeResult:
    """The probe result of ``timings`` (several timings of one case: the best counts)."""
    gemm: dict[str, dict[str, float]] = {}
    bw: dict[str, float] = {}
    n = nbytes = 0
    for t in timings:
        if t.case == "gemm":
            per = gemm.setdefault(t.dtype, {})
            per[t.source] = max(per.get(t.source, 0.0), t.rate)
            n = max(n, t.size)
        else:
            bw[t.source] = max(bw.get(t.source, 0.0), t.rate)
            nbytes = max(nbytes, t.size)
    if not gemm or not bw:
        missing = "GEMM" if not gemm else "copy"
        raise OpscopeError(f"GPU probe: no {missing} timing among the results; nothing to write")
    return GpuProbeResult(device=device, gemm_flops=gemm, bandwidth_Bps=bw, gemm_n=n, copy_bytes=nbytes, how=how)


#: a measured figure above nominal x this is not a measurement (a kernel that did not run, a clock
#: read before the GPU finished): refused, not written into a spec
IMPOSSIBLE_OVER_NOMINAL = 1.1


def _check_possible(base: TargetSpec, result: GpuProbeResult) -> None:
    checks = [(f"{src} {dt} GEMM", v, base.peak_flops.get(dt), 1e12, "TFLOP/s")
              for dt, per in result.gemm_flops.items() for src, v in per.items()]
    checks += [(f"{src} copy", v, base.memory[-1].bandwidth_Bps, 1e12, "TB/s") for src, v in result.bandwidth_Bps.items()]
    for what, got, nominal, unit, name in checks:
        if nominal and got > IMPOSSIBLE_OVER_NOMINAL * nominal:
            raise OpscopeError(f"GPU probe: {what} at {got / unit:.1f} {name} is {got / nominal:.1f}x the nominal "
                               f"{nominal / unit:.1f} {name} of {base.name}: not a real measurement, nothing written "
                               f"(check the timings it came from, {result.how})")


def measured_gpu_spec(base: TargetSpec, result: GpuProbeResult) -> TargetSpec:
    """``base`` with the measured peaks and off-chip bandwidth: the ``<base>-measured`` spec.

    A figure more than ``IMPOSSIBLE_OVER_NOMINAL`` times the nominal one is refused (``OpscopeError``).
    """
    _check_possible(base, result)
    peaks = dict(base.peak_flops)
    notes = []
    measured = {dt: result.peak(dt) for dt in result.gemm_flops}
    peaks.update({dt: v for dt, v in measured.items() if v})
    ref = "float16" if "float16" in measured and base.peak_flops.get("float16") else None
    for dt in base.peak_flops:
        if dt not in measured and ref:
            ratio = measured[ref] / base.peak_flops[ref]
            peaks[dt] = base.peak_flops[dt] * ratio
            notes.append(f"{dt} peak not measured: nominal x (measured / nominal float16) = x{ratio:.3f}")
    off = base.memory[-1]
    memory = (*base.memory[:-1], replace(off, bandwidth_Bps=result.bandwidth))
    if len(base.memory) > 1:
        notes.append("inner memory levels (" + ", ".join(lv.name for lv in base.memory[:-1]) + ") keep their "
                     "nominal bandwidths: the probe measures the off-chip one")
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    gemm_text = "; ".join(
        f"{dt} " + ", ".join(f"{src} {v / 1e12:.1f}" for src, v in per.items()) for dt, per in result.gemm_flops.items())
    sources = (
        f"measured by opscope probe at {when} on {result.device} ({result.how})",
        f"GEMM {result.gemm_n}^3 TFLOP/s (2 n^3 / fastest call): {gemm_text}; the best per dtype is the peak",
        f"{off.name} bandwidth: copy of {result.copy_bytes / 2**20:.0f} MiB, 2 x bytes / fastest call: "
        + ", ".join(f"{src} {v / 1e12:.2f} TB/s" for src, v in result.bandwidth_Bps.items()),
        *notes,
        *(f"nominal: {s}" for s in base.sources),
    )
    return replace(base, name=f"{base.name}-measured", peak_flops=peaks, memory=memory, nominal=False,
                   sources=sources)


# -- the TVM probe kernels -----------------------------------------------------------------------------
def copy_operator(nbytes: int) -> Any:
    """``B[i] = A[i]`` over ``nbytes`` of float32: the TVM side of the bandwidth probe."""
    from tvm import te

    from opscope.workloads.extract import structural_key
    from opscope.workloads.operator import Operator, TensorInfo

    n = nbytes // 4
    a = te.placeholder((n,), "float32", name="A")
    b = te.compute((n,), lambda i: a[i], name="B")
    func = te.create_prim_func([a, b])
    return Operator(name=f"{PROBE_PREFIX}copy_{nbytes}", kind="elementwise",
                    tensors=(TensorInfo("A", (n,), "float32", "input"), TensorInfo("B", (n,), "float32", "output")),
                    flops=0, loops=(("i", n),), key=structural_key(func), prim_func=func)


def probe_operators(gemm_n: int = DEFAULT_GEMM_N, copy_bytes: int = DEFAULT_COPY_BYTES) -> list[Any]:
    """The TVM probe kernels: an ``n``-cube GEMM per TVM dtype, then the copy."""
    from opscope.collector.te_ops import dense_operator

    if gemm_n < 64 or gemm_n % 64:
        raise OpscopeError(f"--gemm-size must be a multiple of 64, got {gemm_n}")
    if copy_bytes < (1 << 20):
        raise OpscopeError(f"the copy must be at least 1 MiB, got {copy_bytes} bytes")
    ops = [dense_operator(gemm_n, gemm_n, gemm_n, dt, name=f"{PROBE_PREFIX}gemm_{dt}_{gemm_n}")
           for dt in TVM_GEMM_DTYPES]
    return [*ops, copy_operator(copy_bytes)]


def _tvm_timing(op_name: str, seconds: Sequence[float]) -> Timing | None:
    """The ``Timing`` of a probe kernel's measurement (None for an operator that is not a probe)."""
    if not op_name.startswith(PROBE_PREFIX):
        return None
    parts = op_name[len(PROBE_PREFIX):].split("_")
    if parts[0] == "gemm" and len(parts) == 3:
        return Timing("gemm", parts[1], "tvm", int(parts[2]), tuple(seconds))
    if parts[0] == "copy" and len(parts) == 2:
        return Timing("copy", "float32", "tvm", int(parts[1]), tuple(seconds))
    return None


# -- offline: a probe bundle, and the files that come back -------------------------------------------
def write_probe_bundle(base: TargetSpec, out: str | os.PathLike[str], gemm_n: int = DEFAULT_GEMM_N,
                       copy_bytes: int = DEFAULT_COPY_BYTES, pythons: Sequence[str] = (),
                       ffi_wheels: Sequence[str] = (), progress: bool = True) -> Any:
    """A bundle of the TVM probe kernels (default schedules) plus ``library.py``; returns its ``BundleInfo``."""
    import shutil

    from opscope.bundle import write_bundle
    from opscope.collector import gpu_library
    from opscope.store.protocol import Protocol

    if (base.tvm_target or {}).get("kind") != "cuda":
        raise OpscopeError(f"target {base.name!r} is not a CUDA GPU: `opscope probe --target` takes a GPU spec")
    ops = probe_operators(gemm_n, copy_bytes)
    protocol = Protocol(number=5, repeat=5, min_repeat_ms=0)
    info = write_bundle(ops, base, 0, out, protocol=protocol, timeout_s=60.0, pythons=pythons,
                        ffi_wheels=ffi_wheels, progress=progress, library=False)  # library.py times the library
    shutil.copy2(Path(gpu_library.__file__), Path(info.path) / "library.py")
    return info


def read_library(path: str | os.PathLike[str]) -> tuple[str, list[Timing]]:
    """(device, timings) of a ``library.json`` written by ``library.py``; bad input names file and field."""
    from opscope.collector.gpu_library import LIBRARY_FORMAT, LIBRARY_VERSION

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise OpscopeError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise OpscopeError(f"{path}: not a JSON file (expected library.json from a probe bundle's library.py)") from None
    if not isinstance(data, dict) or data.get("format") != LIBRARY_FORMAT:
        raise OpscopeError(f"{path}: field 'format' is not {LIBRARY_FORMAT!r}: not a library.py output")
    if data.get("version") != LIBRARY_VERSION:
        raise OpscopeError(f"{path}: field 'version' {data.get('version')!r} is not supported (reads {LIBRARY_VERSION})")
    rows = data.get("timings")
    if not isinstance(rows, list):
        raise OpscopeError(f"{path}: field 'timings' must be a list")
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(Timing(str(row["case"]), str(row["dtype"]), "library", int(row["size"]),
                              tuple(row["seconds"])))
        except KeyError as exc:
            raise OpscopeError(f"{path}: field 'timings[{i}]' has no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise OpscopeError(f"{path}: field 'timings[{i}]': {exc}") from None
    return str(data.get("device", "GPU")), out


def read_probe_results(path: str | os.PathLike[str]) -> tuple[str, str, list[Timing]]:
    """(device, bundle id, timings) of a probe bundle's ``results.json`` (its ``ok`` probe rows)."""
    from opscope.bundle.importer import read_results

    header, rows, _ = read_results(path)
    entries = header["manifest"]["entries"]
    device = "GPU"
    out = []
    for _, fp, row in rows:
        gpu = fp.get("gpu") if isinstance(fp.get("gpu"), dict) else {}
        device = str(gpu.get("name") or device)
        if row["status"] != "ok":
            continue
        try:
            t = _tvm_timing(str(entries[row["entry"]].get("op_name", "")), row.get("latencies_s", ()))
        except ValueError as exc:
            raise OpscopeError(f"{path}: entry {row['entry']}: {exc}") from None
        if t is not None:
            out.append(t)
    if not out:
        raise OpscopeError(f"{path}: no successful probe measurement (is it the results of a probe bundle?)")
    return device, str(header.get("bundle_id")), out


def result_from_files(results: str | os.PathLike[str] | None,
                      library: str | os.PathLike[str] | None) -> GpuProbeResult:
    """The probe result of what a probe bundle brought back (either file may be missing)."""
    timings: list[Timing] = []
    device, how = "GPU", []
    if results is not None:
        device, bundle_id, got = read_probe_results(results)
        timings += got
        how.append(f"bundle {bundle_id}")
    if library is not None:
        lib_device, got = read_library(library)
        device = device if results is not None else lib_device
        timings += got
        how.append(f"library.py ({Path(library).name})")
    if not timings:
        raise OpscopeError("GPU probe: give the probe bundle's results file, its library.json, or both")
    return result_from_timings(timings, device, ", ".join(how))


# -- here: a GPU in this machine -------------------------------------------------------------------------
def run_local(base: TargetSpec, gemm_n: int = DEFAULT_GEMM_N, copy_bytes: int = DEFAULT_COPY_BYTES,
              progress: Any = None) -> GpuProbeResult:
    """Measure on this machine's GPU: library figures with torch, TVM kernels with the collector's roles."""
    from opscope.collector.cuda import have_gpu

    if not have_gpu():
        raise OpscopeError(f"no CUDA GPU is visible here: for a GPU elsewhere, write a probe bundle with "
                           f"`opscope probe --target {base.name} --bundle DIR` and bring back what it writes")
    from opscope.collector import gpu_library

    t0 = time.perf_counter()
    lib = gpu_library.library_timings(gemm_n, copy_bytes)
    timings = [Timing(r["case"], r["dtype"], "library", int(r["size"]), tuple(r["seconds"])) for r in lib["timings"]]
    timings += _tvm_local(base, gemm_n, copy_bytes, progress)
    res = result_from_timings(timings, str(lib["device"]), f"here, in {time.perf_counter() - t0:.0f} s")
    return res


def _tvm_local(base: TargetSpec, gemm_n: int, copy_bytes: int, progress: Any) -> list[Timing]:
    from opscope.collector.registry import make_roles
    from opscope.collector.roles import RunJob, arg_specs
    from opscope.store.protocol import Protocol

    roles = make_roles(base)
    out = []
    try:
        for op in probe_operators(gemm_n, copy_bytes):
            built = roles.builder.build([roles.sampler.default_candidate(op)])[0]
            if not built.ok:
                raise OpscopeError(f"GPU probe: {op.name} did not build: {built.error}")
            res = roles.runner.run([RunJob(built.artifact, arg_specs(op.prim_func), 1,
                                           Protocol(number=5, repeat=5, min_repeat_ms=0), 60.0)])[0]
            if res.status != "ok":
                raise OpscopeError(f"GPU probe: {op.name}: {res.status}: {res.error}")
            t = _tvm_timing(op.name, res.latencies_s)
            if t is not None:
                out.append(t)
                if progress:
                    progress(f"{op.name}: {t.rate / 1e12:.2f} {'TFLOP/s' if t.case == 'gemm' else 'TB/s'}")
    finally:
        roles.builder.close()
        roles.runner.close()
    return out
