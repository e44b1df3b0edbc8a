"""``compare``: analytical, measured and predicted latency of a model's operators, side by side.

One call gathers everything: the model's operators (``opscope.workloads.load_model``), the target
spec and, when ``opscope probe`` has written one, its measured twin (``<target>-measured``), the
store's measurements of those operators (on this machine), an optional predictor, then builds the
table, the thread-scaling analysis, the whole-model measurement, the figures and the HTML report.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from opscope.errors import OpscopeError
from opscope.report.scaling import Turnaround, scaling_frame, turnarounds
from opscope.report.table import (
    ok_measurements,
    operator_rows,
    summarize_measurements,
    with_total,
)
from opscope.report.terminal import format_table, summary_lines
from opscope.report.whole_model import VMProtocol, WholeModelResult


@dataclass(frozen=True)
class ComparisonResult:
    """What ``compare`` found: the table (with a TOTAL row), figures, report and whole-model timing."""

    frame: pd.DataFrame
    #: figure name ("roofline", "predicted_vs_measured", "layers", "thread_scaling") -> PNG and SVG paths
    figures: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    html_path: Path | None = None
    whole_model: WholeModelResult | None = None
    scaling: pd.DataFrame | None = None
    turnarounds: tuple[Turnaround, ...] = ()
    summary: tuple[str, ...] = ()

    def table_text(self) -> str:
        """The table as text, slowest operator first."""
        return format_table(self.frame)

    def png(self, name: str) -> Path | None:
        """The PNG of figure ``name``, or None when it was not drawn."""
        for p in self.figures.get(name, ()):
            if p.suffix == ".png":
                return p
        return None


def _progress(enabled: bool) -> Callable[[str], None]:
    def say(line: str) -> None:
        if enabled:
            print(f"compare: {line}", file=sys.stderr, flush=True)

    return say


def _measured_spec(target: str, spec) -> object | None:
    """The probed twin of a target (``host`` -> ``host-measured``), when one exists."""
    from opscope.targets import list_targets, load_target

    if not spec.nominal:
        return spec
    name = f"{target}-measured"
    return load_target(name) if name in list_targets() else None


def _store_frame(store) -> tuple[pd.DataFrame, Callable[[str], dict | None]]:
    """The store's frame and a lookup of stored machine fingerprints."""
    from opscope.store import Store, load_dataframe, open_store

    if isinstance(store, pd.DataFrame):
        return store, lambda _m: None
    if isinstance(store, Store):
        return load_dataframe(store), store.machine
    path = Path(store)
    if not path.is_file():
        raise OpscopeError(f"store {path}: no such file (measure with `opscope collect ... --store {path}`)")
    frame = load_dataframe(path)
    with open_store(path, read_only=True) as st:  # compare never creates, migrates or writes a store
        fps = {m: st.machine(m) for m in frame["machine_id"].astype(str).unique()} if len(frame) else {}
    return frame, fps.get


def _rows_for(frame: pd.DataFrame, keys: set[str], target: str) -> pd.DataFrame:
    """The store rows of these operators measured for this target (``x-measured`` is the device ``x``)."""
    if frame.empty:
        return frame
    device = target[: -len("-measured")] if target.endswith("-measured") else target
    rows = frame[frame["workload_key"].astype(str).isin(keys)]
    return rows[rows["target"].astype(str).isin({device, f"{device}-measured"})]


def collect_command(model: str, target: str, store: str, op_names: Sequence[str],
                    params: Mapping[str, int] | None = None) -> str:
    """The command line that would measure the given operators of a model."""
    words = ["opscope collect", "--model", shlex.quote(model)]
    for key, value in sorted((params or {}).items()):
        words += ["--param", shlex.quote(f"{key}={value}")]
    words += ["--target", shlex.quote(target), "--store", shlex.quote(store),
              "--ops", shlex.quote(",".join(op_names))]
    return " ".join(words)


def _predict(predictor, ops, rows: pd.DataFrame, measured: Mapping, target: str, threads: int) -> np.ndarray:
    """Predictions for ``ops``: on the best measured row when there is one, else the default schedule."""
    from opscope.predictor import operator_frame

    parts = []
    for op in ops:
        m = measured.get(op.key)
        if m is not None:
            parts.append(rows.loc[[m.best_row]])
        else:
            parts.append(operator_frame([op], target, threads=threads))
    batch = pd.concat(parts, ignore_index=True)
    pred = np.asarray(predictor.predict(batch), dtype=float)
    if pred.shape != (len(ops),):
        raise OpscopeError(f"predictor returned {pred.shape} predictions for {len(ops)} operators")
    return pred


def _load_predictor(predictor):
    if predictor is None or hasattr(predictor, "predict"):
        return predictor
    from opscope.predictor import load_predictor

    return load_predictor(predictor)


def compare(
    model,
    target: str = "host",
    store: str | os.PathLike[str] | pd.DataFrame = "runs.db",
    predictor=None,
    out: str | os.PathLike[str] | None = None,
    allow_other_machine: bool = False,
    whole_model: bool = True,
    threads: int | None = None,
    batch_size: int = 1,
    dtype: str = "float32",
    params: Mapping[str, int] | None = None,
    protocol: VMProtocol | None = None,
    progress: bool = True,
    torch_baseline: bool = True,
    torch_compile: bool = False,
) -> ComparisonResult:
    """Compare a model's operators on a target: analytical vs measured vs predicted.

    ``model`` is a zoo name, a model file, or a ``Workload`` already loaded; ``store`` a store path,
    an open ``Store`` or a store frame; ``predictor`` a saved predictor directory or a fitted
    predictor.  With ``out``, figures (PNG + SVG), ``report.html`` and ``comparison.csv`` are written
    there.  ``threads`` is the thread count of the whole-model run (default: the largest count
    measured).  ``params`` are zoo model parameters (``{"image_size": 64}``), as given to collect.
    A store measured on another machine is refused unless ``allow_other_machine``.
    ``torch_baseline`` times the same zoo model in torch eager beside the whole-model run (and
    ``torch_compile`` also under ``torch.compile``), same batch and threads, on CPU targets.
    """
    from opscope.targets import load_target

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise OpscopeError(f"compare: threads must be a positive int, got {threads!r}")
    say = _progress(progress)
    spec = load_target(target)
    # rows are matched on the spec's name (what the collector records); the command line shown for
    # unmeasured operators repeats the target as the user gave it
    target_name = spec.name
    target_label = str(target) if isinstance(target, (str, os.PathLike)) else spec.name
    spec_m = _measured_spec(target_name, spec)
    workload = _load_workload(model, batch_size, dtype, dict(params or {}))
    ops = list(workload.operators)
    model_label = model if isinstance(model, str) else workload.name
    say(f"{workload.name}: {len(ops)} operators; target {target_name}"
        + (f" (with measured ceilings {spec_m.name})" if spec_m is not None else ""))

    rows = _measured_rows(store, ops, target_name, allow_other_machine)
    measured = summarize_measurements(rows)
    if threads is None:
        threads = int(rows["threads"].max()) if len(rows) else 1
    say(f"{len(measured)}/{len(ops)} operators measured ({len(rows)} ok measurements)")

    pred_obj = _load_predictor(predictor)
    store_label = str(store) if isinstance(store, (str, os.PathLike)) else "runs.db"
    op_table = _operator_table(ops, rows, measured, spec, spec_m, pred_obj, target_name, threads,
                               {op.key: collect_command(model_label, target_label, store_label, [op.name], params)
                                for op in ops if op.key not in measured})
    scaling = scaling_frame(rows)
    turns = tuple(turnarounds(scaling))

    why_not = _why_no_whole_model(whole_model, workload, spec)
    wm_result = None
    if not why_not:
        wm_result = _whole_model(workload, spec, rows, ops, pred_obj, target_name, threads,
                                 protocol or VMProtocol(), torch_baseline, torch_compile, say)
    if wm_result is not None and wm_result.op_in_model_s:
        op_table["in_model_s"] = op_table["key"].map(dict(wm_result.op_in_model_s)).astype(float)
    table = with_total(op_table)
    summary = tuple(summary_lines(table, wm_result, why_not))
    figures: dict[str, tuple[Path, ...]] = {}
    html_path = None
    if out is not None:
        figures, html_path = _write_outputs(Path(out), workload.name, target_name, spec, spec_m, table,
                                            scaling, turns, summary, wm_result, dtype, say)
    return ComparisonResult(frame=table, figures=figures, html_path=html_path, whole_model=wm_result,
                            scaling=scaling, turnarounds=turns, summary=summary)


def _measured_rows(store, ops, target_name: str, allow_other_machine: bool) -> pd.DataFrame:
    """The store's ok rows for ``ops`` on ``target_name``, after the machine check."""
    from opscope.report.machine import check_machine, this_machine

    frame, fingerprints = _store_frame(store)
    rows = _rows_for(frame, {op.key for op in ops}, target_name)
    if len(rows):
        current_id, current_fp = this_machine()
        fps = {m: fingerprints(m) for m in rows["machine_id"].astype(str).unique()}
        rows = check_machine(rows, current_id, target_name, allow_other_machine, current_fp, fps)
    return ok_measurements(rows)


def _operator_table(ops, rows, measured, spec, spec_m, pred_obj, target_name: str, threads: int,
                    cmds: Mapping[str, str]) -> pd.DataFrame:
    """The per-operator table: analytical estimates under both specs, measurements, predictions."""
    from opscope.analytical import estimate

    estimates = [estimate(op, spec) for op in ops]
    estimates_m = [estimate(op, spec_m) for op in ops] if spec_m is not None else None
    predicted = _predict(pred_obj, ops, rows, measured, target_name, threads) if pred_obj is not None else None
    return operator_rows(ops, measured, estimates, estimates_m, predicted, cmds,
                         trained_on=getattr(pred_obj, "training_workloads_", None))


def _why_no_whole_model(whole_model: bool, workload, spec) -> str:
    """Why the whole model is not built and timed here ('' when it is)."""
    if not whole_model:
        return "not measured (whole_model=False / --no-whole-model)"
    if getattr(workload, "ir_module", None) is None:
        return "not measured: the model has no Relax module (a layer table cannot be built)"
    if not spec.tvm_target:
        return f"not measured: target {spec.name!r} is analytical only (no [tvm_target])"
    if spec.tvm_target.get("kind") == "cuda" and not _have_gpu():
        return (f"not measured: target {spec.name!r} is a CUDA GPU and none is visible on this machine "
                "(the operators' rows came from where it is)")
    return ""


def _whole_model(workload, spec, rows, ops, pred_obj, target_name: str, threads: int, protocol: VMProtocol,
                 torch_baseline: bool, torch_compile: bool, say) -> WholeModelResult:
    """Build and time the whole model with the best stored schedules; torch eager beside it."""
    import dataclasses

    from opscope.report.whole_model import measure_whole_model

    pred_at = None
    if pred_obj is not None:
        at_t = summarize_measurements(rows, threads=threads)
        pred_at = dict(zip([op.key for op in ops], _predict(pred_obj, ops, rows, at_t, target_name, threads)))
    result = measure_whole_model(workload, spec, rows, threads, pred_at, protocol, say)
    if not torch_baseline or spec.tvm_target.get("kind") == "cuda":
        return result
    from opscope.report.torch_model import time_torch_model

    say(f"whole model: torch eager{' and torch.compile' if torch_compile else ''} with {threads} thread(s)")
    eager, compiled, note = time_torch_model(workload.name, dict(workload.params or {}), threads, protocol,
                                             compile=torch_compile)
    return dataclasses.replace(result, torch_eager_s=eager, torch_compile_s=compiled, torch_note=note)


def _have_gpu() -> bool:
    from opscope.collector.cuda import have_gpu

    return have_gpu()


def _load_workload(model, batch_size: int, dtype: str, params: dict[str, int]):
    if hasattr(model, "operators"):
        return model
    from opscope.workloads import load_model

    return load_model(model, batch_size=batch_size, dtype=dtype, **params)


def _write_outputs(out: Path, model: str, target: str, spec, spec_m, table, scaling, turns, summary,
                   wm_result, dtype: str, say) -> tuple[dict[str, tuple[Path, ...]], Path]:
    from opscope.report import figures as figs
    from opscope.report.html import write_html
    from opscope.report.roofline import plot_roofline

    out.mkdir(parents=True, exist_ok=True)
    say(f"writing figures and report to {out}/")
    ceiling_spec = spec_m if spec_m is not None else spec
    ana, meas = figs.roofline_points(table, measured_ceilings=spec_m is not None)
    ana.attrs["dtype"] = dtype  # plot_roofline draws the peak of this dtype
    drawn: dict[str, tuple[Path, ...]] = {}
    if len(ana):
        lib = figs.library_points(table)
        drawn["roofline"] = tuple(plot_roofline(ceiling_spec, ana, out / "roofline.png",
                                                measured=meas if len(meas) else None,
                                                title=f"{model} on {ceiling_spec.name}",
                                                library=lib if len(lib) else None))
    for name, paths in (
        ("predicted_vs_measured", figs.plot_predicted_vs_measured(table, out / "predicted_vs_measured.png",
                                                                  f"{model} on {target}: estimate vs measured")),
        ("layers", figs.plot_layer_bars(table, out / "layers.png", f"{model} on {target}: per layer")),
        ("thread_scaling", figs.plot_thread_scaling(scaling, out / "thread_scaling.png",
                                                    f"{model} on {target}: thread scaling")),
    ):
        if paths:
            drawn[name] = tuple(paths)
    table.to_csv(out / "comparison.csv", index=False)
    captions = {"roofline": "Roofline: analytical (filled) and measured (hollow) points joined; torch (x)",
                "predicted_vs_measured": "Estimates vs best measured latency, log axes, +-10% band",
                "layers": "Per-layer time (x count): analytical, default, best measured, torch, predicted",
                "thread_scaling": "Speed-up against threads (best schedule per count)"}
    pngs = [(p, captions[n]) for n, paths in drawn.items() for p in paths if p.suffix == ".png"]
    html_path = write_html(out / "report.html", f"opscope compare: {model} on {target}",
                           f"analytical ({spec.name}{', ' + spec_m.name if spec_m is not None else ''}) "
                           "vs measured vs predicted", summary, table, pngs, turns,
                           wm_result.to_dict() if wm_result is not None else None)
    return drawn, html_path
