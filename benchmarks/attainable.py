"""What the device attains: evolutionary search vs random sampling vs torch (oneDNN), live.

For each chosen conv2d/dense operator of resnet18 and bert and each thread count, one store gets
(1) TVM's default schedule, (2) ``--trials`` schedules of the evolutionary search
(``collect --search evolutionary``), (3) the torch row of the same computation
(``schedule_kind = "library"``) and then (4) ``--trials`` random draws from MetaSchedule's space
(``collect --trials N``, the random order, at the first thread count only unless ``--random-all``);
the search runs first, so that it does not start from this store's random draws.  It prints, per
operator and thread count: default, best random, best searched after 64 and after all trials,
torch, the ratio best-searched / torch, and the measured trials each order took to come within
5 % of the best found by either (live order: measurement order in the store).

    python benchmarks/attainable.py --store attain.db [--trials 64] [--threads 1,2] [--ops all]
    python benchmarks/attainable.py --store attain.db --report-only

Run it again with a larger ``--trials`` to extend the same searches (they resume from the store).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: (model, operator name): four resnet18 convolutions of different shape, two bert GEMMs
DEFAULT_OPS = (
    ("resnet18", "fused_conv2d1_subtract1_divide1_multiply1_add1_relu1"),  # 3x3 64->64 @56
    ("resnet18", "fused_conv2d3_subtract2_divide2_multiply2_add3_relu2"),  # 3x3 128->128 @28
    ("resnet18", "fused_conv2d5_subtract3_divide3_multiply3_add5_relu3"),  # 3x3 s2 128->256 @28
    ("resnet18", "fused_conv2d9_subtract4_divide4_multiply4_add7_relu4"),  # 3x3 512->512 @7
    ("bert", "fused_matmul_add"),  # 128x768 @ 768x768
    ("bert", "fused_matmul3_add2"),  # 128x768 @ 768x3072
)


def _ops(names: str):
    from opscope.workloads import load_model

    wanted = DEFAULT_OPS if names == "default" else None
    out, models = [], {}
    for model, name in wanted or ():
        models.setdefault(model, load_model(model))
        out += [o for o in models[model].operators if o.name == name][:1]
    if wanted is None:  # "all": every conv2d and dense of both models
        for model in ("resnet18", "bert"):
            out += [o for o in load_model(model).operators if o.kind in ("conv2d", "dense")]
    return out


def _within(curve: list[float], best: float, tol: float) -> int | None:
    for i, v in enumerate(curve):
        if v <= best * (1 + tol):
            return i + 1
    return None


def report(store: str, trials: int, tol: float) -> int:
    from opscope.store import load_dataframe

    df = load_dataframe(store)
    ok = df[df["status"] == "ok"].sort_values("measurement_id")
    rows, ratios64, ratios_all, speedups = [], [], [], []
    for (_key, threads), g in ok.groupby(["workload_key", "threads"], sort=False):
        name = g["op_name"].iloc[0]
        default = g[g["schedule_kind"] == "default"]["latency_median_s"].min()
        lib = g[g["schedule_kind"] == "library"]["latency_median_s"].min()
        rnd = list(g[g["schedule_kind"] == "sampled"]["latency_median_s"])
        srch = list(g[g["schedule_kind"] == "searched"]["latency_median_s"])
        if not srch:
            continue
        best64 = min(srch[:64])
        best_all = min(srch)
        best = min(srch + rnd)
        n_search = _within(list(_cummin(srch)), best, tol)
        n_rand = _within(list(_cummin(rnd)), best, tol) if rnd else None
        r64, rall = best64 / lib, best_all / lib
        if math.isfinite(r64):
            ratios64.append(r64)
        if math.isfinite(rall) and len(srch) > 64:
            ratios_all.append(rall)
        if rnd:
            speedups.append((n_rand or len(rnd) + 1) / (n_search or len(srch) + 1))
        rows.append((name[:34], threads, default, min(rnd) if rnd else math.nan, best64, len(srch), best_all, lib, r64,
                     rall, n_search, n_rand, len(rnd)))
    print(f"{'operator':34s} thr {'default':>9s} {'random':>9s} {'srch64':>9s} {'n':>4s} {'srch_all':>9s} "
          f"{'torch':>9s} {'64/torch':>8s} {'all/torch':>9s} {'to5%:srch':>9s} {'random':>8s}")
    ms = lambda v: f"{v * 1e3:9.3f}" if v == v else f"{'-':>9s}"  # noqa: E731
    for r in rows:
        rand_n = f"{r[11]}" if r[11] is not None else (f">{r[12]}" if r[12] else "-")
        print(f"{r[0]:34s} {r[1]:3d} {ms(r[2])} {ms(r[3])} {ms(r[4])} {r[5]:4d} {ms(r[6])} {ms(r[7])} "
              f"{r[8]:8.2f} {r[9]:9.2f} {str(r[10]):>9s} {rand_n:>8s}")
    if ratios64:
        print(f"\nmedian best-searched / torch: {statistics.median(ratios64):.2f} after <= 64 trials "
              f"({len(ratios64)} operator-thread pairs)"
              + (f", {statistics.median(ratios_all):.2f} after all ({len(ratios_all)} pairs with > 64)"
                 if ratios_all else ""))
    if speedups:
        print(f"trials to come within {tol:.0%} of the best found: random order / search order, median "
              f"{statistics.median(speedups):.1f}x over {len(speedups)} pairs (random that never got there counts "
              "as its count + 1)")
    return 0


def orders(stores: list[str], tol: float) -> int:
    """Search orders from several stores (each its own cost model) against the random order: per
    operator and thread count, the measured trials each took to come within ``tol`` of the best any
    of them found, and the best each found within 64 trials."""
    from opscope.store import load_dataframe

    seqs: dict[tuple[str, int], dict[str, list[float]]] = {}
    for path in stores:
        df = load_dataframe(path)
        ok = df[df["status"] == "ok"].sort_values("measurement_id")
        for (name, threads), g in ok.groupby(["op_name", "threads"], sort=False):
            d = seqs.setdefault((name, int(threads)), {})
            for kind in ("searched", "sampled"):
                part = g[g["schedule_kind"] == kind]
                if part.empty:
                    continue
                label = "random" if kind == "sampled" else json.loads(part["origin_json"].iloc[0])["cost_model"]
                d.setdefault(label, list(part["latency_median_s"]))
    labels = sorted({lab for d in seqs.values() for lab in d})
    print(f"\ntrials to within {tol:.0%} of the best found by any order (best within 64 trials, ms):")
    print(f"{'operator':34s} thr " + " ".join(f"{lab:>18s}" for lab in labels))
    speed: dict[str, list[float]] = {lab: [] for lab in labels}
    for (name, threads), d in seqs.items():
        if len(d) < 2:
            continue
        best = min(min(v) for v in d.values())
        cells = []
        n_random = None
        if "random" in d:
            n_random = _within(list(_cummin(d["random"])), best, tol) or len(d["random"]) + 1
        for lab in labels:
            if lab not in d:
                cells.append(f"{'-':>18s}")
                continue
            n = _within(list(_cummin(d[lab])), best, tol)
            cells.append(f"{(str(n) if n else '>' + str(len(d[lab]))):>6s} ({min(d[lab][:64]) * 1e3:8.3f})")
            if n_random is not None and lab != "random":
                speed[lab].append(n_random / (n or len(d[lab]) + 1))
        print(f"{name[:34]:34s} {threads:3d} " + " ".join(cells))
    for lab, v in speed.items():
        if v:
            print(f"{lab}: random order / this order, median {statistics.median(v):.1f}x over {len(v)} pairs")
    return 0


def side_by_side(store: str, rounds: int = 3) -> int:
    """Re-time, per operator and thread count, the best searched schedule and torch's call in turn,
    ``rounds`` times each, in one quiet stretch: the ratio of their medians, measured side by side."""
    import tvm

    from opscope.collector.library import LibraryRunner, case_json, library_case
    from opscope.collector.local_builder import LocalBuilder
    from opscope.collector.local_runner import LocalRunner
    from opscope.collector.ms_sampler import replay
    from opscope.collector.roles import Candidate, RunJob, arg_specs
    from opscope.store import load_dataframe
    from opscope.store.protocol import Protocol
    from opscope.store.sqlite import workload_module
    from opscope.targets import load_target, tvm_target, tvm_target_dict
    from opscope.workloads.operator import Operator

    spec = load_target("host")
    target = tvm_target(spec)
    df = load_dataframe(store)
    ok = df[(df["status"] == "ok") & (df["schedule_kind"] == "searched")]
    builder, runner, lib = LocalBuilder(tvm_target_dict(spec)), LocalRunner(), LibraryRunner()
    protocol = Protocol()
    ratios = []
    print(f"\nside by side ({rounds} rounds, best searched schedule then torch, in turn):")
    try:
        for (key, threads), g in ok.groupby(["workload_key", "threads"], sort=False):
            row = g.loc[g["latency_median_s"].idxmin()]
            op = Operator.from_dict(json.loads(row["operator_json"]))
            func = workload_module(row["workload_script"])["main"]
            op = dataclasses.replace(op, prim_func=func)
            case = library_case(op)
            if case is None:
                continue
            mod = replay(op, row["trace_json"], target)
            built = builder.build([Candidate(key, row["schedule_id"], "searched", row["trace_json"], (),
                                             tvm.ir.save_json(mod))])[0]
            if not built.ok:
                print(f"  {row['op_name'][:34]} t={threads}: rebuild failed: {built.error[:80]}")
                continue
            args = arg_specs(func)
            tvm_lat, torch_lat = [], []
            for _ in range(rounds):
                r = runner.run([RunJob(built.artifact, args, int(threads), protocol, 30.0)])[0]
                tvm_lat += list(r.latencies_s)
                r = lib.run([RunJob(case_json(case), (), int(threads), protocol, 30.0)])[0]
                torch_lat += list(r.latencies_s)
            builder.discard([built])
            ratio = statistics.median(tvm_lat) / statistics.median(torch_lat)
            ratios.append(ratio)
            print(f"  {row['op_name'][:34]:34s} t={threads}: searched {statistics.median(tvm_lat) * 1e3:.3f} ms, "
                  f"torch {statistics.median(torch_lat) * 1e3:.3f} ms, ratio {ratio:.2f}")
    finally:
        builder.close()
        runner.close()
        lib.close()
    if ratios:
        print(f"median searched / torch, side by side: {statistics.median(ratios):.2f} over {len(ratios)} pairs")
    return 0


def _cummin(values):
    best = math.inf
    for v in values:
        best = min(best, v)
        yield best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--ops", default="default", choices=("default", "all"))
    ap.add_argument("--random-all", action="store_true", help="random draws at every thread count")
    ap.add_argument("--no-random", action="store_true")
    ap.add_argument("--per-round", type=int, default=16)
    ap.add_argument("--cost-model", default="xgb", help="xgb, random, or a saved predictor directory")
    ap.add_argument("--tol", type=float, default=0.05)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--orders", nargs="+", default=None, metavar="STORE",
                    help="set the search orders of these stores (one cost model each) against the random order")
    ap.add_argument("--side-by-side", type=int, default=0, metavar="ROUNDS",
                    help="then re-time each best searched schedule and torch in turn, ROUNDS times each")
    args = ap.parse_args()
    if not args.report_only:
        from opscope.collector.search import SearchConfig
        from opscope.collector.sweep import collect, parse_threads

        threads = parse_threads(args.threads)
        ops = _ops(args.ops)
        t0 = time.monotonic()  # the search first: it must not start from the random draws of this store
        collect(ops, trials=args.trials, threads=threads, store=args.store, search="evolutionary",
                search_config=SearchConfig(trials=args.trials, per_round=args.per_round,
                                           cost_model=args.cost_model), library=True)
        print(f"search: {time.monotonic() - t0:.0f} s for {len(ops)} operators x {len(threads)} thread counts",
              file=sys.stderr)
        if not args.no_random:
            t1 = time.monotonic()
            collect(ops, trials=args.trials, threads=threads if args.random_all else threads[:1], store=args.store)
            print(f"random: {time.monotonic() - t1:.0f} s", file=sys.stderr)
    report(args.store, args.trials, args.tol)
    if args.orders:
        orders([args.store] + list(args.orders), args.tol)
    if args.side_by_side:
        side_by_side(args.store, args.side_by_side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
