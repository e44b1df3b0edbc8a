"""``opscope analyze``: per-operator analytical latency and traffic of a model on a target.

Prints the slowest operators first with their share of the total time, then the totals; writes the
full table (``--out``, CSV or Parquet) and the roofline figure (``--plot``, PNG and SVG).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from opscope.analytical import ATTENTION_METHODS, AnalysisOptions, analyze_operators, load_densities
from opscope.analytical.frame import load_operators
from opscope.analytical.options import MAPPING_MODES
from opscope.analytical.search import OBJECTIVES
from opscope.errors import OpscopeError
from opscope.targets import load_target
from opscope.targets.spec import DATAFLOWS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="zoo name, .onnx file, or FRAME/opscope layer-table .csv")
    parser.add_argument("--target", required=True, help="target name (see `opscope targets`) or a spec .toml")
    parser.add_argument("--batch", "--batch-size", dest="batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=INT",
                        help="zoo model parameter, e.g. image_size=64 (repeatable), as in collect and compare")
    parser.add_argument("--dtype", default="float32", help="tensor dtype (default float32)")
    parser.add_argument("--seq-len", type=int, default=None, help="sequence length for zoo transformers")
    sp = parser.add_argument_group("sparsity (FRAME's semantics)")
    sp.add_argument("--density", type=float, nargs=3, metavar=("INPUT", "WEIGHT", "OUTPUT"),
                    help="uniform densities of input, weight and output")
    sp.add_argument("--densities-csv", type=Path, help="per-layer densities (FRAME sparsity CSV: I,W,O)")
    sp.add_argument("--compress-mem", action="store_true", help="tensors stored compressed (bytes x density)")
    sp.add_argument("--skip-compute", action="store_true", help="skip MACs with a zero operand")
    sp.add_argument("--no-skip-on-output", action="store_true",
                    help="do not skip compute for output sparsity (FRAME's skip_compute_on_noopt_output=False)")
    sp.add_argument("--min-density", type=float, help="structured accelerator: finest supported density")
    at = parser.add_argument_group("attention")
    at.add_argument("--attention", choices=ATTENTION_METHODS, default="vanilla")
    at.add_argument("--low-rank-ratio", type=float, help="lowrank: projected length / seq_len (default 0.1)")
    at.add_argument("--spattn-density", type=float, help="sparse: share of scores kept (default 0.1)")
    at.add_argument("--m-ratio", type=float, help="kernel: random features per head dim (default 4)")
    mp = parser.add_argument_group("mapping (accelerator specs with a PE array and buffers)")
    mp.add_argument("--mapping", choices=MAPPING_MODES, default="auto",
                    help="search the best mapping: auto (accelerator specs, the default), search (always), none")
    mp.add_argument("--objective", choices=OBJECTIVES, default="energy",
                    help="what the mapping search minimises (default energy; edp = energy x latency)")
    mp.add_argument("--dataflow", choices=DATAFLOWS, help="the PE array's dataflow (default: the spec's, or searched)")
    mp.add_argument("--no-double-buffer", action="store_true",
                    help="buffer tiles take their own size, not twice it, and transfers do not overlap compute")
    mp.add_argument("--show-mapping", action="store_true", help="print each operator's chosen mapping")
    parser.add_argument("--out", type=Path, help="write the full table (.csv or .parquet)")
    parser.add_argument("--plot", type=Path, help="write the roofline figure (PNG and SVG)")
    parser.add_argument("--top", type=int, default=20, help="operators to print (default 20; 0 = all)")


def options_from_args(args: argparse.Namespace) -> AnalysisOptions:
    """The typed options from the parsed command line."""
    return AnalysisOptions(
        densities=tuple(args.density) if args.density else (1.0, 1.0, 1.0),
        layer_densities=load_densities(args.densities_csv) if args.densities_csv else None,
        compress_mem=args.compress_mem, skip_compute=args.skip_compute,
        skip_compute_on_noopt_output=not args.no_skip_on_output, min_density=args.min_density,
        attention=args.attention, low_rank_ratio=args.low_rank_ratio, spattn_density=args.spattn_density,
        m_ratio=args.m_ratio, mapping=args.mapping, objective=args.objective, dataflow=args.dataflow,
        double_buffer=not args.no_double_buffer,
    )


def _fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "-"
    for factor, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if s >= factor:
            return f"{s / factor:.3f} {unit}"
    return f"{s * 1e9:.1f} ns"


def format_table(df, top: int) -> str:
    body = df[df["op"] != "TOTAL"].sort_values("total_s", ascending=False)
    if top:
        body = body.head(top)
    total = df[df["op"] == "TOTAL"].iloc[0]
    width = max(12, min(48, max(len(str(o)) for o in body["op"])))
    head = (f"{'operator':{width}s} {'kind':16s} {'count':>5s} {'GFLOP':>9s} {'FLOP/B':>8s} {'bound':>9s} "
            f"{'util':>5s} {'latency':>11s} {'total':>11s} {'share':>6s}")
    lines = [head, "-" * len(head)]
    for r in body.itertuples():
        util = "-" if not math.isfinite(r.pe_utilization) else f"{r.pe_utilization:.2f}"
        inten = "-" if not math.isfinite(r.intensity) else f"{r.intensity:.1f}"
        name = str(r.op) if len(str(r.op)) <= width else "..." + str(r.op)[-(width - 3):]
        lines.append(f"{name:{width}s} {r.kind:16s} {r.count:5d} {r.flops / 1e9:9.3f} {inten:>8s} "
                     f"{r.bound:>9s} {util:>5s} {_fmt_time(r.latency_s):>11s} {_fmt_time(r.total_s):>11s} "
                     f"{100 * r.share:5.1f}%")
    lines.append("-" * len(head))
    n_ops = int((df["op"] != "TOTAL").sum())
    lines.append(f"{'TOTAL':{width}s} {n_ops:>3d} operators, {int(total['count'])} calls  "
                 f"{total.flops / 1e9:.3f} GFLOP  {total.bytes / 1e6:.3f} MB off-chip  "
                 f"latency {_fmt_time(total.latency_s)}  {total.flops_per_s / 1e12:.3f} TFLOP/s")
    if math.isfinite(total.energy_j):
        lines.append(f"{'':{width}s} energy {total.energy_j * 1e3:.4g} mJ")
    unmodelled = int((~df["modelled"].astype(bool)).sum())
    if unmodelled:
        lines.append(f"{unmodelled} operator(s) of unknown kind are unmodelled (compulsory traffic time only)")
    return "\n".join(lines)


def format_mappings(df) -> str:
    """Per operator: the chosen mapping, its PE utilisation, traffic per level and energy."""
    body = df[df["op"] != "TOTAL"]
    levels = [c[len("bytes_"):] for c in df.columns if c.startswith("bytes_")]
    lines = ["mappings (traffic per call in bytes):"]
    for r in body.itertuples(index=False):
        row = r._asdict()
        if not row["mapping"]:
            lines.append(f"  {row['op']}: no mapping ({row['kind']})")
            continue
        traffic = "  ".join(f"{lv} {row['bytes_' + lv]:.4g}" for lv in levels)
        energy = "" if not math.isfinite(row["energy_j"]) else f"  energy {row['energy_j'] * 1e3:.4g} mJ"
        lines.append(f"  {row['op']}: util {row['pe_utilization']:.2f}  {traffic}{energy}")
        lines.append(f"    {row['mapping']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from opscope.edges import at_least, out_file, zoo_params

    at_least(args.top, 0, "--top")
    at_least(args.batch, 1, "--batch")
    params = zoo_params(args.param)
    if args.out:
        out_file(args.out, "--out", (".csv", ".parquet", ".pq"))
    if args.plot:  # the figure is written as PNG and SVG beside --plot
        stem = args.plot.with_suffix("") if args.plot.suffix.lower() in (".png", ".svg") else args.plot
        for suffix in (".png", ".svg"):
            out_file(stem.with_suffix(suffix), "--plot")
    spec = load_target(args.target)
    try:
        options = options_from_args(args)
    except UnicodeDecodeError as exc:
        raise OpscopeError(f"--densities-csv {args.densities_csv}: not UTF-8 text (byte {exc.start}); give a "
                           "CSV text file") from None
    t0 = time.perf_counter()
    print(f"loading {args.model} ...", file=sys.stderr)
    if params:
        from opscope.workloads import load_model

        if args.seq_len is not None:
            params.setdefault("seq_len", args.seq_len)
        ops = list(load_model(args.model, batch_size=args.batch, dtype=args.dtype, with_tir=False,
                              **params).operators)
    else:
        ops = load_operators(args.model, batch_size=args.batch, dtype=args.dtype, seq_len=args.seq_len)
    t1 = time.perf_counter()
    df = analyze_operators(ops, spec, options)
    t2 = time.perf_counter()
    print(f"{len(ops)} operators loaded in {t1 - t0:.2f} s, analysed in {1e3 * (t2 - t1):.1f} ms", file=sys.stderr)
    nominal = " (nominal peaks)" if spec.nominal else ""
    print(f"model {args.model} on {spec.name}{nominal}, batch {args.batch}, {args.dtype}, attention {args.attention}")
    print(format_table(df, args.top))
    if args.show_mapping:
        print(format_mappings(df))
    if args.out:
        suffix = args.out.suffix.lower()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            df.to_csv(args.out, index=False)
        else:
            df.to_parquet(args.out, index=False)
        print(f"table written to {args.out}")
    if args.plot:
        from opscope.report.roofline import plot_roofline

        paths = plot_roofline(spec, df, args.plot, title=f"{args.model} on {spec.name}")
        print("roofline written to " + ", ".join(str(p) for p in paths))
    return 0
