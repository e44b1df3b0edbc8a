"""The roofline figure: a device's ceilings and each operator as a point, PNG and SVG.

``plot_roofline(spec, analytical, path, measured=None, title=None)``: ``analytical`` (and
``measured``) are DataFrames with columns ``op, kind, intensity`` (FLOP/byte) and ``flops_per_s``;
rows that are not finite and positive (the ``TOTAL`` row, unmodelled operators) are left out.
Ceilings: one bandwidth slope per memory level (bandwidth x memory efficiency) under the compute
peak (x compute efficiency).  With ``measured``, each operator's analytical point (filled) and
measured point (hollow) are joined by a thin line.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from opscope.errors import OpscopeError
from opscope.targets.spec import TargetSpec

_REQUIRED = ("op", "kind", "intensity", "flops_per_s")


def _points(df: pd.DataFrame, what: str) -> pd.DataFrame:
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise OpscopeError(f"plot_roofline: the {what} table lacks column(s) {', '.join(missing)}")
    d = df[df["op"] != "TOTAL"]
    x = pd.to_numeric(d["intensity"], errors="coerce")
    y = pd.to_numeric(d["flops_per_s"], errors="coerce")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return d[ok]


def _peak(spec: TargetSpec, dtype: str | None) -> float:
    if spec.pe_array is not None or (dtype and dtype in spec.peak_flops):
        return spec.peak_for(dtype or "float32") * spec.compute_efficiency
    return max(spec.peak_flops.values()) * spec.compute_efficiency


def plot_roofline(spec: TargetSpec, analytical: pd.DataFrame, path: str | os.PathLike[str],
                  measured: pd.DataFrame | None = None, title: str | None = None,
                  library: pd.DataFrame | None = None) -> list[Path]:
    """Write the roofline of ``spec`` with the operators of ``analytical`` as PNG and SVG next to ``path``;
    ``measured`` points are hollow, ``library`` points (torch on the same operator) are crosses."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pts = _points(analytical, "analytical")
    mpts = _points(measured, "measured") if measured is not None else None
    if pts.empty and (mpts is None or mpts.empty):
        raise OpscopeError("plot_roofline: no operator has a finite, positive intensity and FLOP/s to plot")
    peak = _peak(spec, analytical.attrs.get("dtype"))
    xs = pd.concat([pts["intensity"]] + ([mpts["intensity"]] if mpts is not None else [])).astype(float)
    ridge = [peak / (lv.bandwidth_Bps * spec.memory_efficiency) for lv in spec.memory]
    lo = 10 ** math.floor(math.log10(min(xs.min(), min(ridge)) / 2))
    hi = 10 ** math.ceil(math.log10(max(xs.max(), max(ridge)) * 2))
    x = np.logspace(math.log10(lo), math.log10(hi), 200)

    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.axhline(peak, color="black", lw=1.5)
    ax.text(hi, peak * 1.08, f"peak {peak / 1e12:.3g} TFLOP/s", ha="right", va="bottom", fontsize=8)
    greys = plt.cm.Greys(np.linspace(0.45, 0.9, len(spec.memory)))
    for lv, colour in zip(spec.memory, greys):
        bw = lv.bandwidth_Bps * spec.memory_efficiency
        ax.plot(x, np.minimum(bw * x, peak), color=colour, lw=1.2, ls="--")
        xt = lo * 1.5
        ax.text(xt, bw * xt * 1.15, f"{lv.name} {bw / 1e9:.4g} GB/s", fontsize=7, color=colour, rotation=0)
    kinds = sorted(set(pts["kind"]) | (set(mpts["kind"]) if mpts is not None else set()))
    colours = dict(zip(kinds, plt.cm.tab10(np.linspace(0, 1, max(10, len(kinds))))))
    for kind in kinds:
        sel = pts[pts["kind"] == kind]
        if not sel.empty:
            ax.scatter(sel["intensity"], sel["flops_per_s"], s=28, color=colours[kind], label=kind, zorder=3)
    if mpts is not None:
        for kind in kinds:
            sel = mpts[mpts["kind"] == kind]
            if not sel.empty:
                ax.scatter(sel["intensity"], sel["flops_per_s"], s=34, facecolors="none",
                           edgecolors=[colours[kind]], zorder=3, label=f"{kind} (measured)")
        joined = pts.merge(mpts, on="op", suffixes=("_a", "_m"))
        for row in joined.itertuples():
            ax.plot([row.intensity_a, row.intensity_m], [row.flops_per_s_a, row.flops_per_s_m],
                    color="grey", lw=0.6, alpha=0.7, zorder=2)
    lpts = _points(library, "library") if library is not None else None
    if lpts is not None and not lpts.empty:
        ax.scatter(lpts["intensity"], lpts["flops_per_s"], s=30, marker="x", color="black", zorder=4,
                   label="torch (library)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ys = pd.concat([pts["flops_per_s"]] + ([mpts["flops_per_s"]] if mpts is not None else [])).astype(float)
    ax.set_ylim(10 ** math.floor(math.log10(min(ys.min(), peak) / 2)), peak * 3)
    ax.set_xlabel("operational intensity (FLOP / byte off-chip)")
    ax.set_ylabel("attainable FLOP/s")
    nominal = " (nominal)" if spec.nominal else ""
    ax.set_title(title or f"roofline: {spec.name}{nominal}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    base = Path(path)
    stem = base.with_suffix("") if base.suffix.lower() in (".png", ".svg") else base
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(out[0], dpi=150)
    fig.savefig(out[1])
    plt.close(fig)
    return out
