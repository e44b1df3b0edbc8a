"""The comparison table: one row per operator, analytical vs measured vs predicted.

Inputs are plain values, so the table can be built (and tested) from any operators, any store frame
and any pair of specs:

* ``ops``: the model's operators (``Operator``, deduplicated, with their counts);
* ``measurements``: rows of a store frame (``opscope.store.load_dataframe``) for those operators;
* ``estimates``: one analytical ``Estimate`` per operator for the nominal spec, and optionally one
  for the measured (``host-measured``) spec;
* ``predicted``: one predicted latency per operator, or None.

Relative errors are signed, ``estimate / measured - 1``, against the best measured latency.  The
share of roofline is achieved FLOP/s over the attainable FLOP/s of the roofline at the operator's
intensity (from the measured spec when there is one, else the nominal one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from opscope.workloads.operator import Operator

#: Columns of the per-operator comparison frame, in display order.
COLUMNS = (
    "op", "kind", "key", "count", "flops", "bytes", "intensity",
    "analytical_s", "bound", "analytical_measured_s", "bound_measured", "attainable_flops",
    "default_s", "default_threads", "best_s", "best_threads", "best_schedule_id", "best_noisy", "n_measurements",
    "library_s", "best_vs_library", "in_model_s",
    "predicted_s", "in_sample", "analytical_err", "analytical_measured_err", "predicted_err",
    "achieved_flops", "roofline_share", "measured", "collect_cmd",
)
#: Latency columns summed (weighted by count) into the TOTAL row.
LATENCY_COLUMNS = ("analytical_s", "analytical_measured_s", "default_s", "best_s", "library_s", "predicted_s",
                   "in_model_s")
TOTAL = "TOTAL"


@dataclass(frozen=True)
class MeasuredOp:
    """What the store says about one operator: its default-schedule and best measurements."""

    default_s: float
    default_threads: int | None
    best_s: float
    best_threads: int | None
    best_schedule_id: str | None
    n_measurements: int
    #: index label of the best row in the store frame (for prediction on that exact row)
    best_row: object = None
    #: the best measurement's repeats varied more than the protocol's noisy_cv
    best_noisy: bool = False
    #: the library row (torch) at the best schedule's thread count; NaN when there is none
    library_s: float = math.nan


def ok_measurements(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with status ``ok`` and a positive median latency."""
    if frame.empty:
        return frame
    ok = frame[frame["status"] == "ok"]
    return ok[ok["latency_median_s"].notna() & (ok["latency_median_s"] > 0)]


def summarize_measurements(frame: pd.DataFrame, threads: int | None = None) -> dict[str, MeasuredOp]:
    """Per workload key: the best default-schedule latency and the best latency over every TVM
    schedule (default, sampled, searched), and the library row at the best one's thread count.

    With ``threads`` given only rows at that thread count are considered.  Latencies are medians of
    each record's repeats; "best" is the lowest median.  An operator with library rows only is not
    measured (no TVM schedule of it ran).
    """
    ok = ok_measurements(frame)
    if threads is not None and not ok.empty:
        ok = ok[ok["threads"] == threads]
    out: dict[str, MeasuredOp] = {}
    for key, all_rows in ok.groupby("workload_key", sort=False):
        is_lib = all_rows["schedule_kind"] == "library"
        rows, lib = all_rows[~is_lib], all_rows[is_lib]
        if rows.empty:
            continue
        best_label = rows["latency_median_s"].idxmin()
        best = rows.loc[best_label]
        defaults = rows[rows["schedule_kind"] == "default"]
        if defaults.empty:
            d_s, d_t = math.nan, None
        else:
            d = defaults.loc[defaults["latency_median_s"].idxmin()]
            d_s, d_t = float(d["latency_median_s"]), int(d["threads"])
        out[str(key)] = MeasuredOp(
            default_s=d_s,
            default_threads=d_t,
            best_s=float(best["latency_median_s"]),
            best_threads=int(best["threads"]),
            best_schedule_id=str(best["schedule_id"]),
            n_measurements=len(rows),
            best_row=best_label,
            best_noisy=bool(best["noisy"]) if "noisy" in best.index and not pd.isna(best["noisy"]) else False,
            library_s=_library_at(lib, int(best["threads"])),
        )
    return out


def _library_at(lib: pd.DataFrame, threads: int) -> float:
    at = lib[lib["threads"] == threads]["latency_median_s"]
    return float(at.min()) if len(at) else math.nan


def _rel(est: float, measured: float) -> float:
    if est is None or measured is None or math.isnan(est) or math.isnan(measured) or measured <= 0:
        return math.nan
    return est / measured - 1.0


def operator_rows(
    ops: Sequence[Operator],
    measured: Mapping[str, MeasuredOp],
    estimates: Sequence[object],
    estimates_measured: Sequence[object] | None = None,
    predicted: Sequence[float] | None = None,
    collect_cmd: Mapping[str, str] | None = None,
    trained_on: frozenset[str] | None = None,
) -> pd.DataFrame:
    """The per-operator table (no TOTAL row), in the order of ``ops``.

    ``trained_on`` holds the workload keys the predictor was trained on: those rows are marked
    ``in_sample`` and left out of the predictor's error summary (None: not known, nothing marked).

    ``estimates``/``estimates_measured`` are analytical ``Estimate`` objects aligned with ``ops``;
    ``predicted`` is aligned with ``ops`` too; ``collect_cmd`` maps keys of unmeasured operators to
    the command that would measure them.
    """
    if len(estimates) != len(ops):
        raise ValueError(f"{len(estimates)} estimates for {len(ops)} operators")
    if estimates_measured is not None and len(estimates_measured) != len(ops):
        raise ValueError(f"{len(estimates_measured)} measured-ceiling estimates for {len(ops)} operators")
    if predicted is not None and len(predicted) != len(ops):
        raise ValueError(f"{len(predicted)} predictions for {len(ops)} operators")
    rows = []
    for i, op in enumerate(ops):
        est = estimates[i]
        est_m = estimates_measured[i] if estimates_measured is not None else None
        m = measured.get(op.key)
        best_s = m.best_s if m else math.nan
        pred = float(predicted[i]) if predicted is not None else math.nan
        ana_m = float(est_m.latency_s) if est_m is not None else math.nan
        ceiling = est_m if est_m is not None else est
        achieved = op.flops / best_s if m and best_s > 0 else math.nan
        attainable = float(ceiling.attainable_flops)
        rows.append({
            "op": op.name,
            "kind": op.kind,
            "key": op.key,
            "count": op.count,
            "flops": op.flops,
            "bytes": op.bytes,
            "intensity": op.intensity,
            "analytical_s": float(est.latency_s),
            "bound": est.bound,
            "analytical_measured_s": ana_m,
            "bound_measured": est_m.bound if est_m is not None else "",
            "attainable_flops": attainable,
            "default_s": m.default_s if m else math.nan,
            "default_threads": m.default_threads if m else None,
            "best_s": best_s,
            "best_threads": m.best_threads if m else None,
            "best_schedule_id": m.best_schedule_id if m else None,
            "best_noisy": m.best_noisy if m else False,
            "n_measurements": m.n_measurements if m else 0,
            "library_s": m.library_s if m else math.nan,
            "best_vs_library": best_s / m.library_s if m and m.library_s > 0 else math.nan,
            # filled in by the whole-model run: the operator's time per call inside the built model
            "in_model_s": math.nan,
            "predicted_s": pred,
            "in_sample": bool(trained_on is not None and op.key in trained_on),
            "analytical_err": _rel(float(est.latency_s), best_s),
            "analytical_measured_err": _rel(ana_m, best_s),
            "predicted_err": _rel(pred, best_s),
            "achieved_flops": achieved,
            "roofline_share": achieved / attainable if attainable > 0 else math.nan,
            "measured": m is not None,
            "collect_cmd": "" if m else (collect_cmd or {}).get(op.key, ""),
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def total_row(table: pd.DataFrame) -> dict[str, object]:
    """The TOTAL row: count-weighted sums over the *measured* operators, so errors compare like with like.

    (The analytical total over every operator, measured or not, is ``whole_analytical_s`` in
    :func:`summary_numbers`.)
    """
    meas = table[table["measured"]]
    w = meas["count"]
    row: dict[str, object] = {c: math.nan for c in COLUMNS}
    row.update(op=TOTAL, kind="", key="", bound="", bound_measured="", best_schedule_id=None, best_noisy=False,
               in_sample=bool(len(meas)) and bool(meas["in_sample"].all()),
               default_threads=None, best_threads=None, collect_cmd="", measured=bool(len(meas)))
    row["count"] = int(w.sum())
    row["flops"] = int((meas["flops"] * w).sum())
    row["bytes"] = int((meas["bytes"] * w).sum())
    row["intensity"] = row["flops"] / row["bytes"] if row["bytes"] else math.nan
    row["n_measurements"] = int(meas["n_measurements"].sum())
    for col in LATENCY_COLUMNS:
        vals = meas[col] * w
        row[col] = float(vals.sum()) if len(meas) and vals.notna().all() else math.nan
    best = row["best_s"]
    row["analytical_err"] = _rel(row["analytical_s"], best)
    row["analytical_measured_err"] = _rel(row["analytical_measured_s"], best)
    row["predicted_err"] = _rel(row["predicted_s"], best)
    lib = row["library_s"]
    row["best_vs_library"] = best / lib if isinstance(lib, float) and lib > 0 else math.nan
    if isinstance(best, float) and best > 0:
        row["achieved_flops"] = row["flops"] / best
    return row


def with_total(table: pd.DataFrame) -> pd.DataFrame:
    """The table with its TOTAL row appended."""
    return pd.concat([table, pd.DataFrame([total_row(table)], columns=list(COLUMNS))], ignore_index=True)


def summary_numbers(table: pd.DataFrame) -> dict[str, float]:
    """Headline numbers of a table without its TOTAL row (coverage, totals, error statistics)."""
    ops = table[table["op"] != TOTAL]
    meas = ops[ops["measured"]]
    w_all = ops["count"]
    out: dict[str, float] = {
        "operators": float(len(ops)),
        "measured_operators": float(len(meas)),
        "whole_analytical_s": float((ops["analytical_s"] * w_all).sum()),
        "measured_analytical_s": float((meas["analytical_s"] * meas["count"]).sum()),
        "best_sum_s": float((meas["best_s"] * meas["count"]).sum()) if len(meas) else math.nan,
    }
    out["coverage"] = (out["measured_analytical_s"] / out["whole_analytical_s"]
                       if out["whole_analytical_s"] > 0 else math.nan)
    held_out = meas[~meas["in_sample"].astype(bool)] if "in_sample" in meas else meas
    for name in ("analytical_err", "analytical_measured_err", "predicted_err"):
        # the predictor is scored on operators it was not trained on only
        rows = held_out if name == "predicted_err" else meas
        errs = rows[name].dropna().abs()
        out[f"{name}_mape"] = float(errs.mean()) if len(errs) else math.nan
        out[f"{name}_within10"] = float((errs <= 0.10).mean()) if len(errs) else math.nan
    with_lib = meas[meas["best_vs_library"].notna()] if "best_vs_library" in meas else meas.iloc[0:0]
    out["library_operators"] = float(len(with_lib))
    out["best_vs_library_median"] = float(with_lib["best_vs_library"].median()) if len(with_lib) else math.nan
    shares = meas["roofline_share"].dropna() if "roofline_share" in meas else pd.Series(dtype=float)
    out["roofline_share_median"] = float(shares.median()) if len(shares) else math.nan
    if "in_sample" in meas:
        scored = meas[meas["predicted_err"].notna()]
        out["predicted_in_sample"] = float(scored["in_sample"].astype(bool).sum())
        out["predicted_held_out"] = float(len(scored) - out["predicted_in_sample"])
        ins = scored[scored["in_sample"].astype(bool)]["predicted_err"].abs()
        out["predicted_in_sample_mape"] = float(ins.mean()) if len(ins) else math.nan
    return out
