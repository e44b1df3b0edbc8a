"""Figures of the comparison (the roofline itself is ``opscope.report.roofline.plot_roofline``).

Each function draws from the comparison frame (``opscope.report.table``) or the scaling frame
(``opscope.report.scaling``), writes ``<path>.png`` and ``<path>.svg`` and returns both paths, or an
empty list when there is nothing to draw (say, no predictions).  matplotlib runs headless (Agg).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from opscope.report.table import TOTAL


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> list[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.with_suffix("")
    out = []
    for ext in (".png", ".svg"):
        p = stem.with_suffix(ext)
        fig.savefig(p, dpi=130 if ext == ".png" else None, bbox_inches="tight")
        out.append(p)
    _pyplot().close(fig)
    return out


def _ops(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["op"] != TOTAL]


def plot_predicted_vs_measured(table: pd.DataFrame, path: Path, title: str | None = None) -> list[Path]:
    """Estimates against best measured latency on log axes, with y = x and the +-10% band.

    Predicted points (filled) and analytical points (hollow) share the axes, so a reader sees how
    much the learned model corrects the roofline.
    """
    ops = _ops(table)
    ops = ops[ops["measured"] & (ops["best_s"] > 0)]
    series = []
    for col, label, style in (("predicted_s", "predicted", dict(marker="o", color="C0")),
                              ("analytical_s", "analytical", dict(marker="s", facecolors="none",
                                                                  edgecolors="C3"))):
        sel = ops[ops[col].notna() & (ops[col] > 0)]
        if len(sel):
            series.append((sel["best_s"].to_numpy() * 1e3, sel[col].to_numpy() * 1e3, label, style))
    if not series:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    allv = np.concatenate([np.concatenate([x, y]) for x, y, _, _ in series])
    lo, hi = allv.min() / 2, allv.max() * 2
    line = np.geomspace(lo, hi, 50)
    ax.fill_between(line, line * 0.9, line * 1.1, color="0.85", label="+-10%")
    ax.plot(line, line, color="0.4", lw=1, label="y = x")
    for x, y, label, style in series:
        within = np.mean(np.abs(y / x - 1) <= 0.10) * 100
        ax.scatter(x, y, s=22, label=f"{label} ({within:.0f}% within +-10%)", **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms, best schedule)")
    ax.set_ylabel("estimated latency (ms)")
    ax.set_title(title or "predicted vs measured")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, which="both", lw=0.3)
    return _save(fig, path)


_LAYER_SERIES = (("analytical_s", "analytical", "C3"), ("default_s", "default schedule", "C7"),
                 ("best_s", "measured (best)", "C2"), ("library_s", "torch (library)", "C1"),
                 ("predicted_s", "predicted", "C0"))


def layer_series(ops: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(column, label, colour) of the layer figure's bars: those with a value for some operator."""
    return [c for c in _LAYER_SERIES if c[0] in ops and ops[c[0]].notna().any()]


def plot_layer_bars(table: pd.DataFrame, path: Path, title: str | None = None, max_ops: int = 40) -> list[Path]:
    """Per-operator bars (count-weighted time): analytical, TVM's default schedule, the best measured
    schedule, the library (torch) and predicted, log scale; a series with no value is left out."""
    ops = _ops(table).copy()
    if ops.empty:
        return []
    ops["_w"] = ops["best_s"].where(ops["best_s"].notna(), ops["analytical_s"]) * ops["count"]
    ops = ops.sort_values("_w", ascending=False).head(max_ops)
    cols = layer_series(ops)
    plt = _pyplot()
    n = len(ops)
    fig, ax = plt.subplots(figsize=(min(12.0, max(6.0, 0.25 * n * len(cols) + 2)), 5.0))
    x = np.arange(n)
    width = 0.8 / len(cols)
    for i, (col, label, color) in enumerate(cols):
        vals = (ops[col] * ops["count"]).to_numpy() * 1e3
        ax.bar(x + (i - (len(cols) - 1) / 2) * width, np.nan_to_num(vals, nan=0.0), width,
               label=label, color=color)
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([_short(str(o)) for o in ops["op"]], rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("time in model (ms, x count)")
    ax.set_title(title or "per-layer latency")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", lw=0.3)
    return _save(fig, path)


def plot_thread_scaling(scaling: pd.DataFrame, path: Path, title: str | None = None,
                        max_ops: int = 12) -> list[Path]:
    """Speed-up against threads per operator (best schedule per count), with linear scaling dashed."""
    if scaling.empty:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    # the operators that take longest at their first thread count
    firsts = scaling.sort_values("threads").groupby("workload_key").first()
    keys = list(firsts.sort_values("best_s", ascending=False).index[:max_ops])
    tmax = 1
    ax.set_prop_cycle(color=plt.cm.tab20(np.linspace(0, 1, 20)) if len(keys) > 10 else plt.cm.tab10.colors)
    for key in keys:
        rows = scaling[scaling["workload_key"] == key].sort_values("threads")
        t = rows["threads"].to_numpy()
        tmax = max(tmax, int(t.max()))
        ax.plot(t, rows["speedup"].to_numpy(), marker="o", ms=3, lw=1, label=_short(str(rows["op"].iloc[0])))
    t0 = int(scaling["threads"].min())
    ideal = np.array([t0, tmax])
    ax.plot(ideal, ideal / t0, ls="--", color="0.4", lw=1, label="linear")
    ax.set_xlabel("threads")
    ax.set_ylabel(f"speed-up over {t0} thread{'s' if t0 > 1 else ''}")
    ax.set_xticks(sorted(int(t) for t in scaling["threads"].unique()))
    ax.set_title(title or "thread scaling")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, lw=0.3)
    return _save(fig, path)


def _short(name: str, n: int = 28) -> str:
    from opscope.report.terminal import short_name

    return short_name(name, n)


def library_points(table: pd.DataFrame) -> pd.DataFrame:
    """The library (torch) points for ``plot_roofline``: FLOP/s of the library row, operators that have one."""
    ops = _ops(table)
    if "library_s" not in ops:
        return pd.DataFrame(columns=["op", "kind", "intensity", "flops_per_s"])
    ops = ops[(ops["flops"] > 0) & ops["library_s"].notna() & (ops["library_s"] > 0)]
    return pd.DataFrame({"op": ops["op"], "kind": ops["kind"], "intensity": ops["intensity"].astype(float),
                         "flops_per_s": ops["flops"] / ops["library_s"].astype(float)}).reset_index(drop=True)


def roofline_points(table: pd.DataFrame, measured_ceilings: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The analytical and measured points for ``plot_roofline`` (columns op, kind, intensity, flops_per_s).

    The analytical point is the FLOP/s the analytical estimate implies (flops / analytical latency),
    under the measured ceilings when ``measured_ceilings`` (so the points sit under the ceilings
    drawn); the measured point is the achieved FLOP/s of the best schedule.  Only operators with
    flops > 0.
    """
    ops = _ops(table)
    ops = ops[(ops["flops"] > 0) & ops["intensity"].map(lambda v: math.isfinite(float(v)))]
    col = "analytical_measured_s" if measured_ceilings else "analytical_s"
    ana = pd.DataFrame({
        "op": ops["op"], "kind": ops["kind"], "intensity": ops["intensity"].astype(float),
        "flops_per_s": ops["flops"] / ops[col],
    })
    meas_rows = ops[ops["measured"] & ops["achieved_flops"].notna()]
    meas = pd.DataFrame({
        "op": meas_rows["op"], "kind": meas_rows["kind"], "intensity": meas_rows["intensity"].astype(float),
        "flops_per_s": meas_rows["achieved_flops"].astype(float),
    })
    return ana.reset_index(drop=True), meas.reset_index(drop=True)
