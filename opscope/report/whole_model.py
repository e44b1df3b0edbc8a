"""The whole model, end to end: do the operators' latencies add up to the model's?

The fused Relax module of a workload is built with TVM, with the best measured schedule of each
operator replayed (from its trace in the store) into that operator's PrimFunc and TVM's default
lowering everywhere else.  The built module runs in the Relax VM in a separate worker process (so
``TVM_NUM_THREADS`` takes effect and a crash cannot take the caller down) and is timed with the VM's
``time_evaluator``.  The result is set against the count-weighted sums of the per-operator
measurements and predictions.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from opscope.errors import OpscopeError
from opscope.store.protocol import VMProtocol

__all__ = ["VMProtocol", "WholeModelResult", "measure_whole_model", "time_in_worker"]


@dataclass(frozen=True)
class WholeModelResult:
    """End-to-end latency of the built model beside the sums of its operators."""

    model: str
    threads: int
    raw_latencies_s: tuple[float, ...]
    #: count-weighted sums over the operators measured at ``threads`` (best and default schedules)
    sum_best_s: float
    sum_default_s: float
    #: count-weighted sum of predictions over every operator (nan without a predictor)
    sum_predicted_s: float
    measured_ops: int
    total_ops: int
    #: operators whose best schedule was replayed into the module (the rest use TVM's default)
    scheduled_ops: int
    #: kernels called by ``main`` that no operator of the workload matched
    unmatched_functions: int = 0
    #: seconds per inference spent in each kernel of the built model (instrumented runs)
    kernel_s: tuple[tuple[str, float], ...] = ()
    #: per operator key, seconds per call inside the model (kernel time / count)
    op_in_model_s: tuple[tuple[str, float], ...] = ()
    #: count-weighted sum over every operator of the kernel as built into the model: the measured
    #: latency of the schedule that was replayed (or of the default lowering, when that is what was
    #: built), the prediction where neither was measured; NaN when some operator has neither
    sum_built_s: float = math.nan
    #: how many operators of that sum were measured as built, predicted, or neither
    built_measured_ops: int = 0
    built_predicted_ops: int = 0
    built_unknown_ops: int = 0
    #: torch eager (and torch.compile) end to end for the same model, batch and threads (NaN: not run)
    torch_eager_s: float = math.nan
    torch_compile_s: float = math.nan
    torch_note: str = ""

    @property
    def latency_s(self) -> float:
        xs = sorted(self.raw_latencies_s)
        n = len(xs)
        return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])

    @property
    def gap(self) -> float:
        """End to end over the sum of the kernels as built, minus one: like with like, so NaN unless
        every operator is measured as built or predicted."""
        if self.built_unknown_ops or not self.sum_built_s or math.isnan(self.sum_built_s):
            return math.nan
        return self.latency_s / self.sum_built_s - 1.0

    @property
    def kernels_sum_s(self) -> float:
        """Time per inference inside the model's kernels (nan when not profiled)."""
        return sum(t for _, t in self.kernel_s) if self.kernel_s else math.nan

    @property
    def predicted_gap(self) -> float:
        if not self.sum_predicted_s or math.isnan(self.sum_predicted_s):
            return math.nan
        return self.latency_s / self.sum_predicted_s - 1.0

    def summary_line(self) -> str:
        from opscope.report.terminal import fmt_pct, fmt_time

        inside = (f"; its kernels take {fmt_time(self.kernels_sum_s)}" if self.kernel_s else "")
        parts = [f"{self.built_measured_ops} measured as built"]
        if self.built_predicted_ops:
            parts.append(f"{self.built_predicted_ops} predicted")
        if self.built_unknown_ops:
            parts.append(f"{self.built_unknown_ops} neither")
            vs = (f"sum of its {self.total_ops} kernels as built: not known ({', '.join(parts)}; collect them "
                  "or give a predictor), no gap")
        else:
            vs = (f"sum of its {self.total_ops} kernels as built {fmt_time(self.sum_built_s)} ({', '.join(parts)}; "
                  f"{self.scheduled_ops} with a stored schedule), gap {fmt_pct(self.gap)}")
        torch = ""
        if not math.isnan(self.torch_eager_s):
            torch = f"; torch eager {fmt_time(self.torch_eager_s)} (TVM x{self.latency_s / self.torch_eager_s:.2f})"
            if not math.isnan(self.torch_compile_s):
                torch += f", torch.compile {fmt_time(self.torch_compile_s)}"
        elif self.torch_note:
            torch = f"; torch: {self.torch_note}"
        pred = (f"; sum of predictions {fmt_time(self.sum_predicted_s)} (gap {fmt_pct(self.predicted_gap)})"
                if not math.isnan(self.sum_predicted_s) else "")
        return (f"whole model ({self.threads} thr): end-to-end {fmt_time(self.latency_s)} vs {vs}{pred}{torch}"
                f"{inside}")

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model, "threads": self.threads, "raw_latencies_s": list(self.raw_latencies_s),
            "latency_s": self.latency_s, "sum_best_s": self.sum_best_s, "sum_default_s": self.sum_default_s,
            "sum_predicted_s": self.sum_predicted_s, "gap": self.gap, "predicted_gap": self.predicted_gap,
            "measured_ops": self.measured_ops, "total_ops": self.total_ops,
            "scheduled_ops": self.scheduled_ops, "unmatched_functions": self.unmatched_functions,
            "kernels_sum_s": self.kernels_sum_s, "sum_built_s": self.sum_built_s,
            "built_measured_ops": self.built_measured_ops, "built_predicted_ops": self.built_predicted_ops,
            "built_unknown_ops": self.built_unknown_ops, "torch_eager_s": self.torch_eager_s,
            "torch_compile_s": self.torch_compile_s, "torch_note": self.torch_note,
        }


def function_names(mod, prim_funcs: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    """Map each operator key to the names of the module's PrimFuncs structurally equal to its PrimFunc.

    ``prim_funcs`` maps workload keys to the operators' PrimFuncs.  The global symbol is ignored in
    the comparison; an operator may match several functions (one kernel defined twice).
    """
    import tvm
    import tvm_ffi

    by_hash: dict[int, list[tuple[str, object]]] = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            bare = func.without_attr("global_symbol")
            by_hash.setdefault(tvm_ffi.structural_hash(bare, map_free_vars=True), []).append((gv.name_hint, bare))
    out: dict[str, tuple[str, ...]] = {}
    for key, pf in prim_funcs.items():
        if pf is None:
            continue
        bare = pf.without_attr("global_symbol")
        names = tuple(name for name, func in by_hash.get(tvm_ffi.structural_hash(bare, map_free_vars=True), [])
                      if tvm_ffi.structural_equal(bare, func, map_free_vars=True))
        if names:
            out[key] = names
    return out


def main_kernels(mod) -> set[str]:
    """Names of the PrimFuncs that ``main`` calls (``call_tir``), i.e. the kernels of one inference."""
    from tvm import relax

    names: set[str] = set()

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.call_tir":
            names.add(expr.args[0].name_hint)

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return names


def apply_traces(mod, traces: Mapping[str, str]):
    """A copy of ``mod`` with each named PrimFunc rescheduled by replaying its trace (JSON text).

    A trace that does not replay raises an ``OpscopeError`` naming the function.
    """
    import tvm
    from tvm.s_tir.schedule import Trace

    out = mod.clone()
    for name, trace_json in traces.items():
        gv = mod.get_global_var(name)
        func = mod[gv]
        try:
            # Work on a deep copy: replaying a trace given as plain JSON lists was seen to rewrite
            # the source PrimFunc in place (TVM 0.27), which would change the caller's module.
            fresh = tvm.ir.load_json(tvm.ir.save_json(func.without_attr("global_symbol")))
            sch = tvm.s_tir.Schedule(fresh)
            Trace.apply_json_to_schedule(json.loads(trace_json), sch)
            new = sch.mod["main"]
        except Exception as exc:  # TVM raises its own error types for an invalid replay
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OpscopeError(f"cannot replay the stored schedule of {name}: {first}") from None
        if func.attrs is not None and "global_symbol" in func.attrs:
            new = new.with_attr("global_symbol", func.attrs["global_symbol"])
        out.update_func(out.get_global_var(name), new)
    return out


def input_specs(mod) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of every parameter of ``main``; a dynamic shape is an ``OpscopeError``."""
    if "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        raise OpscopeError("the model's Relax module has no 'main' function to run")
    specs = []
    for p in mod["main"].params:
        ty = p.ty
        try:
            shape = tuple(int(d) for d in ty.shape)
        except (TypeError, ValueError, AttributeError):
            raise OpscopeError(
                f"whole model: input {p.name!r} has a non-static shape {ty}; bind it before measuring"
            ) from None
        specs.append((str(p.name), shape, str(ty.dtype)))
    return specs


def data_inputs(mod) -> int:
    """How many of ``main``'s leading parameters are the model's inputs (the frontends' ``num_input``
    attribute; the rest are its weights), or all of them when the module does not say."""
    func = mod["main"]
    attrs = func.attrs if func.attrs is not None else {}
    n = len(func.params)
    try:
        return min(n, int(attrs["num_input"])) if "num_input" in attrs else n
    except (TypeError, ValueError):
        return n


def build(mod, target):
    """``tvm.compile`` of a Relax module, TVM failures turned into one ``OpscopeError`` line."""
    import tvm

    try:
        return tvm.compile(mod, target=target)
    except Exception as exc:  # TVM's compiler raises its own error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OpscopeError(f"whole model: TVM could not build the Relax module: {first}") from None


def time_in_worker(ex, inputs: Sequence[tuple[str, tuple[int, ...], str]], threads: int,
                   protocol: VMProtocol | None = None, seed: int = 0, profile_runs: int = 0,
                   device: str = "cpu", data_inputs: int | None = None) -> tuple[tuple[float, ...], dict[str, float]]:
    """Export ``ex`` and time its ``main`` in a fresh process with ``TVM_NUM_THREADS=threads``.

    The first ``data_inputs`` of ``inputs`` (all when None) are filled as inputs, the rest as the
    model's weights (``timing.model_args``).  Returns the raw per-repeat latencies and, after
    ``profile_runs`` instrumented runs, the seconds per inference spent in each called function.
    """
    protocol = protocol or VMProtocol()
    with tempfile.TemporaryDirectory(prefix="opscope-vm-") as tmp:
        lib = Path(tmp) / "model.so"
        ex.export_library(str(lib))
        req = {
            "library": str(lib),
            "inputs": [[n, list(s), d] for n, s, d in inputs],
            "protocol": protocol.timing(), "seed": seed, "profile_runs": profile_runs,
            "device": device, "data_inputs": len(inputs) if data_inputs is None else int(data_inputs),
        }
        req_path = Path(tmp) / "request.json"
        req_path.write_text(json.dumps(req))
        env = dict(os.environ, TVM_NUM_THREADS=str(int(threads)))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "opscope.report.vm_worker", str(req_path)],
                env=env, capture_output=True, text=True, timeout=protocol.timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise OpscopeError(f"whole model: timing did not finish within {protocol.timeout_s:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise OpscopeError(f"whole model: the timing worker failed: {tail[0]}")
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        raw = tuple(float(x) for x in result["raw_latencies_s"])
        kernels = {str(k): float(v) for k, v in result.get("kernels_s", {}).items()}
        return raw, kernels
    except (ValueError, KeyError, IndexError):
        raise OpscopeError(f"whole model: unreadable worker output {proc.stdout[-200:]!r}") from None


def measure_whole_model(workload, spec, measurements, threads: int,
                        predicted: Mapping[str, float] | None = None,
                        protocol: VMProtocol | None = None, progress=None) -> WholeModelResult:
    """Build ``workload.ir_module`` with the best stored schedules at ``threads`` and time it end to end.

    ``measurements`` is a store frame for the workload's operators; ``predicted`` maps operator keys
    to predicted latencies (for the sum of predictions).  ``progress`` is an optional callable taking
    one line of text.
    """
    from opscope.report.table import summarize_measurements
    from opscope.targets import tvm_target

    mod = getattr(workload, "ir_module", None)
    if mod is None:
        raise OpscopeError(f"model {workload.name!r} has no Relax module (a layer table?): "
                           "the whole model cannot be built")
    say = progress or (lambda _line: None)
    ops = list(workload.operators)
    names = function_names(mod, {op.key: op.prim_func for op in ops})
    kernels = main_kernels(mod)
    best = summarize_measurements(measurements, threads=threads)
    traces: dict[str, str] = {}
    for op in ops:
        m = best.get(op.key)
        if m is None or op.key not in names or m.best_row is None:
            continue
        row = measurements.loc[m.best_row]
        trace = row.get("trace_json")
        if row.get("schedule_kind") != "default" and isinstance(trace, str) and trace.strip():
            for name in names[op.key]:
                traces[name] = trace
    say(f"whole model: replaying {len(traces)} stored schedules, building with TVM")
    target = tvm_target(spec)
    built = build(apply_traces(mod, traces), target)
    device = "cuda" if target.kind.name == "cuda" else "cpu"
    protocol = protocol or VMProtocol()
    say(f"whole model: timing end to end with {threads} thread(s)"
        + (f" in {protocol.workers} processes" if protocol.workers > 1 else ""))
    n_data = data_inputs(mod)
    raw, called = time_in_worker(built, input_specs(mod), threads, protocol, profile_runs=protocol.profile_runs,
                                 device=device, data_inputs=n_data)
    for _ in range(protocol.workers - 1):  # the kernels' profile is taken in the first process only
        raw += time_in_worker(built, input_specs(mod), threads, protocol, device=device, data_inputs=n_data)[0]
    kernel_s = {name: t for name, t in called.items() if name in kernels}
    in_model = {}
    for op in ops:
        parts = [kernel_s[n] for n in names.get(op.key, ()) if n in kernel_s]
        if parts:
            in_model[op.key] = sum(parts) / op.count
    measured = [op for op in ops if op.key in best]
    sum_best = sum(op.count * best[op.key].best_s for op in measured) if measured else math.nan
    defaults = [op for op in measured if not math.isnan(best[op.key].default_s)]
    sum_default = sum(op.count * best[op.key].default_s for op in defaults) if defaults else math.nan
    if predicted:
        sum_pred = sum(op.count * float(predicted[op.key]) for op in ops if op.key in predicted)
    else:
        sum_pred = math.nan
    built_sum, n_meas, n_pred, n_unknown = built_sum_of(ops, best, traces, names, predicted)
    return WholeModelResult(
        model=workload.name, threads=int(threads), raw_latencies_s=raw,
        sum_best_s=sum_best, sum_default_s=sum_default, sum_predicted_s=sum_pred,
        measured_ops=len(measured), total_ops=len(ops),
        scheduled_ops=sum(1 for op in ops if any(n in traces for n in names.get(op.key, ()))),
        unmatched_functions=len(kernels - {n for ns in names.values() for n in ns}),
        kernel_s=tuple(sorted(kernel_s.items())), op_in_model_s=tuple(sorted(in_model.items())),
        sum_built_s=built_sum, built_measured_ops=n_meas, built_predicted_ops=n_pred, built_unknown_ops=n_unknown,
    )


def built_sum_of(ops, best, traces: Mapping[str, str], names: Mapping[str, tuple[str, ...]],
                 predicted: Mapping[str, float] | None) -> tuple[float, int, int, int]:
    """(count-weighted sum of the kernels as built, measured, predicted, neither).

    An operator whose best schedule was replayed into the module counts with that schedule's
    measured latency; one built with TVM's default lowering with its measured default latency (when
    the default was measured at these threads); otherwise with its prediction, when there is one.
    """
    total, n_meas, n_pred, n_unknown = 0.0, 0, 0, 0
    for op in ops:
        m = best.get(op.key)
        replayed = any(n in traces for n in names.get(op.key, ()))
        value = math.nan
        if m is not None:
            value = m.best_s if replayed or m.best_schedule_id == "default" else m.default_s
        if value == value:
            n_meas += 1
        elif predicted and op.key in predicted and float(predicted[op.key]) > 0:
            value = float(predicted[op.key])
            n_pred += 1
        else:
            n_unknown += 1
            continue
        total += op.count * value
    return (total if not n_unknown else math.nan), n_meas, n_pred, n_unknown
