"""The comparison in a terminal: the table slowest first, then a three-line summary."""

from __future__ import annotations

import math

import pandas as pd

from opscope.report.table import TOTAL, summary_numbers


def fmt_time(s: float) -> str:
    """Seconds as a short human figure (ns/us/ms/s); '-' for missing."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    s = float(s)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(s) >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_pct(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:+.0f}%"


def fmt_flops(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} "


def fmt_share(x: float) -> str:
    """A share as a percentage with two significant digits ('0.41%', '23%')."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.2g}%"


def short_name(name: str, width: int = 32) -> str:
    """Shorten a long kernel name in the middle, so names that differ only at the end stay apart."""
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return name[: width - 1 - tail] + "~" + name[-tail:]


def sort_slowest_first(table: pd.DataFrame) -> pd.DataFrame:
    """Operators by count-weighted time, slowest first (measured time, else analytical); TOTAL last."""
    ops = table[table["op"] != TOTAL].copy()
    weight = ops["best_s"].where(ops["best_s"].notna(), ops["analytical_s"]) * ops["count"]
    # measured operators first, each group slowest first
    ops["_measured"] = ops["measured"].astype(int)
    ops["_w"] = weight
    ops = ops.sort_values(["_measured", "_w"], ascending=[False, False]).drop(columns=["_measured", "_w"])
    return pd.concat([ops, table[table["op"] == TOTAL]], ignore_index=True)


_HEADER = ("operator", "kind", "n", "analytic", "default", "best", "thr", "torch", "in model", "predicted",
           "err ana", "err pred", "bound", "FLOP/s", "roofline")


def format_table(table: pd.DataFrame, max_name: int = 32) -> str:
    """The table as aligned text, slowest first; unmeasured operators say so."""
    rows = [list(_HEADER)]
    for _, r in sort_slowest_first(table).iterrows():
        name = short_name(str(r["op"]), max_name)
        measured = bool(r["measured"])
        thr = r["best_threads"]
        rows.append([
            name,
            str(r["kind"]),
            str(int(r["count"])) if not pd.isna(r["count"]) else "-",
            fmt_time(r["analytical_s"]),
            fmt_time(r["default_s"]) if measured else "unmeasured",
            (fmt_time(r["best_s"]) + ("*" if r["best_noisy"] else "")) if measured else "",
            str(int(thr)) if thr is not None and not pd.isna(thr) else "",
            fmt_time(r["library_s"]) if "library_s" in r.index else "-",
            fmt_time(r["in_model_s"]),
            fmt_time(r["predicted_s"]),
            fmt_pct(r["analytical_err"]),
            fmt_pct(r["predicted_err"]),
            str(r["bound"] or ""),
            fmt_flops(r["achieved_flops"]),
            fmt_share(r["roofline_share"]),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    left = {0, 1, 12}
    lines = []
    for row in rows:
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    if bool(table["best_noisy"].fillna(False).astype(bool).any()):
        lines.append("* noisy: the repeats of that measurement vary more than the protocol allows")
    return "\n".join(lines)


def predicted_summary(s: dict[str, float], held_out_err: str) -> str:
    """The predictor's error on operators it was not trained on, and how many were in its training set."""
    ins, held = int(s.get("predicted_in_sample", 0) or 0), int(s.get("predicted_held_out", 0) or 0)
    if ins == 0:
        return held_out_err
    in_mape = s.get("predicted_in_sample_mape", math.nan)
    note = (f"{ins} operator(s) in its training set, in-sample MAPE {100 * in_mape:.1f}% (not a measure of "
            "accuracy)")
    if held == 0:
        return f"no held-out operator to score ({note})"
    return f"{held_out_err} on {held} held-out operator(s); {note}"


def summary_lines(table: pd.DataFrame, whole_model: object | None = None,
                  no_whole_model_reason: str = "not measured") -> list[str]:
    """Three lines: coverage and totals; error of each estimate; the whole-model gap."""
    s = summary_numbers(table)
    n, nm = int(s["operators"]), int(s["measured_operators"])
    line1 = (f"measured {nm}/{n} operators ({fmt_pct(s['coverage']).lstrip('+')} of analytical time); "
             f"sum of best measured {fmt_time(s['best_sum_s'])} vs analytical {fmt_time(s['measured_analytical_s'])} "
             f"on those (whole model analytical {fmt_time(s['whole_analytical_s'])})")

    def err(name: str) -> str:
        mape = s[f"{name}_mape"]
        if math.isnan(mape):
            return "-"
        return f"MAPE {100 * mape:.1f}%, {100 * s[f'{name}_within10']:.0f}% within +-10%"

    line2 = f"analytical: {err('analytical_err')}; predicted: {predicted_summary(s, err('predicted_err'))}"
    if whole_model is None:
        line3 = f"whole model: {no_whole_model_reason}"
    else:
        line3 = whole_model.summary_line()
    lines = [line1, line2, line3]
    if s.get("library_operators", 0) > 0:
        share = s["roofline_share_median"]
        lines.insert(1, f"attainable: the best schedule takes x{s['best_vs_library_median']:.2f} torch's time "
                        f"(median over the {int(s['library_operators'])} operators a library covers; torch = "
                        f"oneDNN on CPUs); median share of the roofline {fmt_share(share)}"
                        + (" (over 100%: operators whose data stays in cache beat the DRAM roofline)"
                           if share > 1 else ""))
    return lines
