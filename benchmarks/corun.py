"""Co-run benchmark on this machine's cores.

Part 1, interference data: a set of small operators of different character (compute-bound
matmuls and a conv, memory-bound elementwise adds, a reduction, a softmax), every unordered pair
(and each operator with itself) run sequentially, co-run on disjoint cores (one each) and sharing
all cores, in ``--rounds`` interleaved rounds (drift on a busy machine hits every arrangement alike).
Part 2, the interference model: error of the co-run latency predicted on held-out pairs (25% of
pairs, 5 seeds) and on held-out operators (each operator's pairs in turn), linear and XGBoost,
beside the two baselines (no interference; median slowdown per arrangement kind).
Part 3, the choice per pair (the interference model fitted without that pair): the old rule (the
smallest predicted makespan) and the safe chooser (sequential unless the predicted gain exceeds
the model's own held-out error), each against sequential and against the measured best.
Part 4, model branches: for each model's fork-join regions, the safe choice (interference model
fitted on all of part 1) vs the sequential run and vs the best arrangement measured.

    python benchmarks/corun.py                      # full run (9 operators, 45 pairs)
    python benchmarks/corun.py --quick              # 4 operators, shorter windows (~4 min on 2 cores)
    python benchmarks/corun.py --quick --models ''  # pairs only
    python benchmarks/corun.py --store corun.db --out corun.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path


def micro_ops(quick: bool):
    """(Operator, PrimFunc) pairs: small kernels whose flops and bytes are known."""
    from tvm import te, topi

    from opscope.workloads.operator import GemmView, Operator, TensorInfo

    out = []

    def add_op(name, kind, tensors, flops, func, gemm=None):
        op = Operator(name, kind, tuple(TensorInfo(*t) for t in tensors), int(flops), gemm=gemm)
        out.append((op, func))

    def matmul(a, b, n):
        k = te.reduce_axis((0, n), name="k")
        return te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")

    def vec_add(x, y, n):
        return te.compute((n,), lambda i: x[i] + y[i], name="Z")

    for n in ((64, 160) if quick else (64, 128, 192)):
        a, b = te.placeholder((n, n), name="A"), te.placeholder((n, n), name="B")
        c = matmul(a, b, n)
        add_op(f"matmul{n}", "matmul", [("A", (n, n), "float32", "input"), ("B", (n, n), "float32", "input"),
                                        ("C", (n, n), "float32", "output")], 2 * n ** 3,
               te.create_prim_func([a, b, c]), GemmView(1, n, n, n))
    for n in ((1 << 20,) if quick else (1 << 16, 1 << 20, 1 << 22)):
        x, y = te.placeholder((n,), name="X"), te.placeholder((n,), name="Y")
        z = vec_add(x, y, n)
        add_op(f"add{n >> 10}k", "elementwise", [("X", (n,), "float32", "input"), ("Y", (n,), "float32", "input"),
                                                  ("Z", (n,), "float32", "output")], n, te.create_prim_func([x, y, z]))
    d = te.placeholder((1, 32, 28, 28), name="D")
    w = te.placeholder((32, 32, 3, 3), name="W")
    conv = topi.nn.conv2d_nchw(d, w, 1, 1, 1)
    add_op("conv32", "conv2d", [("D", (1, 32, 28, 28), "float32", "input"), ("W", (32, 32, 3, 3), "float32", "weight"),
                                ("O", (1, 32, 28, 28), "float32", "output")], 2 * 32 * 28 * 28 * 32 * 9,
           te.create_prim_func([d, w, conv]))
    if not quick:
        r = te.placeholder((1024, 1024), name="R")
        s = topi.sum(r, axis=1)
        add_op("rowsum1k", "reduction", [("R", (1024, 1024), "float32", "input"), ("S", (1024,), "float32", "output")],
               1024 * 1024, te.create_prim_func([r, s]))
        sm_in = te.placeholder((256, 1024), name="L")
        add_op("softmax256", "softmax", [("L", (256, 1024), "float32", "input"),
                                         ("P", (256, 1024), "float32", "output")], 5 * 256 * 1024,
               te.create_prim_func([sm_in, topi.nn.softmax(sm_in)]))
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def choice_summary(results) -> dict:
    """Geomean sequential/chosen and chosen/best, their worst pair, and how often the prediction was used."""
    seq = [r.sequential_s / r.chosen_measured_s for r in results]
    gap = [r.chosen_measured_s / r.best[1] for r in results]
    return {"pairs": len(results), "sequential_over_chosen": geomean(seq), "worst_sequential_over_chosen": min(seq),
            "chosen_over_best": geomean(gap), "worst_chosen_over_best": max(gap),
            "sequential_over_best": geomean([r.sequential_s / r.best[1] for r in results]),
            "chosen_is_best": sum(r.chosen == r.best[0] for r in results),
            "chosen_kinds": {k: sum(r.chosen.kind == k for r in results) for k in ("sequential", "disjoint", "shared")},
            "used_prediction": sum(r.decision.used_prediction for r in results)}


def show_choice(name: str, c: dict) -> None:
    print(f"   {name:<28} sequential/chosen {c['sequential_over_chosen']:.2f}x (worst pair "
          f"{c['worst_sequential_over_chosen']:.2f}x), chosen/best {c['chosen_over_best']:.2f}x (worst "
          f"{c['worst_chosen_over_best']:.2f}x), sequential/best {c['sequential_over_best']:.2f}x, chosen = best "
          f"{c['chosen_is_best']}/{c['pairs']}, kinds {c['chosen_kinds']}, prediction used {c['used_prediction']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default="resnet18:image_size=64,bert:seq_len=64:hidden=256:heads=4:ff=512:layers=1",
                    help="comma list of model[:key=value...] (empty: skip part 4)")
    ap.add_argument("--max-regions", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per pair and region (default 3)")
    ap.add_argument("--store", default=None, help="SQLite file for the co-run records (default: a temp file)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--spin-count", type=int, default=None,
                    help="TVM_THREAD_POOL_SPIN_COUNT in the workers (default: TVM's)")
    args = ap.parse_args(argv)
    rounds = args.rounds or 3

    import pandas as pd

    from opscope.corun.branches import Branch, Region
    from opscope.corun.chooser import Decision, Option
    from opscope.corun.interference import InterferenceModel, evaluate_interference
    from opscope.corun.kernels import build_kernel
    from opscope.corun.measure import CorunProtocol, Task, measure_corun
    from opscope.corun.partition import all_arrangements, choose_arrangement
    from opscope.corun.plan import RegionResult, corun_model, curves_from_records, decide, format_region
    from opscope.corun.table import corun_frame, save_corun
    from opscope.corun.worker import WorkerPool
    from opscope.targets import load_target, tvm_target

    tmp = Path(tempfile.mkdtemp(prefix="opscope-corun-bench-"))
    store = args.store or str(tmp / "corun.db")
    protocol = CorunProtocol(window_s=0.08 if args.quick else 0.15, window_factor=6.0,
                             makespan_repeats=7 if args.quick else 11, spin_count=args.spin_count)
    target = tvm_target(load_target("host"))
    t0 = time.time()
    load_start = os.getloadavg()
    ops = micro_ops(args.quick)
    kernels = [build_kernel(f, op.name, target, tmp / "kernels", key=op.key,
                            operator_json=json.dumps(op.to_dict(), default=str)) for op, f in ops]
    log(f"built {len(kernels)} operators in {time.time() - t0:.1f} s")

    results: dict = {"protocol": protocol.to_dict(), "operators": [k.name for k in kernels], "rounds": rounds,
                     "load_average_start": load_start}
    with WorkerPool(2, spin_count=args.spin_count) as pool:
        cores = pool.cores[:2]
        results["cores"] = list(cores)
        arrangements = all_arrangements(2, cores)  # sequential, split(1+1), shared
        pairs = list(itertools.combinations_with_replacement(range(len(kernels)), 2))
        records, pair_records = [], []
        t1 = time.time()
        for n_done, (i, j) in enumerate(pairs, 1):
            tasks = (Task(kernels[i].name, (kernels[i],)), Task(kernels[j].name + ("'" if i == j else ""), (kernels[j],)))
            recs = [measure_corun(tasks, arr, pool, protocol, label="bench:pairs")
                    for _ in range(rounds) for arr in arrangements]
            records += recs
            pair_records.append((tasks, recs))
            log(f"pair {n_done}/{len(pairs)} {kernels[i].name}+{kernels[j].name} ({time.time() - t1:.0f} s)")
    save_corun(store, records)
    frame = corun_frame(records)
    bad = [r for r in records if r.status != "ok"]
    results["pairs"] = {"pairs": len(pairs), "records": len(records), "failed": len(bad), "rows": len(frame),
                        "seconds": round(time.time() - t1, 1),
                        "slowdown_median": {k: float(g["slowdown"].median()) for k, g in frame.groupby("kind")},
                        "slowdown_max": {k: float(g["slowdown"].max()) for k, g in frame.groupby("kind")}}

    print(f"== co-run pairs on cores {list(cores)}: {len(pairs)} pairs x {len(arrangements)} arrangements x "
          f"{rounds} rounds, {len(records)} records ({len(bad)} failed), {len(frame)} member rows")
    for kind, g in frame.groupby("kind"):
        print(f"   {kind:<9} slowdown median {g['slowdown'].median():.2f}  p90 {g['slowdown'].quantile(0.9):.2f}  "
              f"max {g['slowdown'].max():.2f}")

    results["interference"] = {}
    for split, what in (("pairs", "held-out pairs (25% of pairs, 5 seeds)"),
                        ("operators", "held-out operators (each operator's pairs in turn)")):
        print(f"== interference model, error of co-run latency on {what}; %")
        evals = []
        for learner in ("linear", "xgboost"):
            ev = evaluate_interference(frame, InterferenceModel(learner=learner), split=split)
            evals.append(ev if learner == "linear" else ev[ev["method"] == "model_xgboost"])
        summary = pd.concat(evals).groupby(["kind", "method"])[["median_ape", "mape", "within_10pct"]].mean()
        print(summary.round(1).to_string())
        results["interference"][split] = {f"{k}/{m}": {c: round(float(v), 2) for c, v in row.items()}
                                          for (k, m), row in summary.iterrows()}
    model = InterferenceModel().fit(frame)
    print("== the fitted model's own validation (what the chooser weighs a gain against)")
    print("   " + model.summary().replace("\n", "\n   "))
    results["validation"] = model.summary()

    print("== arrangement choice for each operator pair vs measured (model fitted without the pair)")
    decisions: dict[str, list] = {"smallest prediction (old)": [], "safe chooser": []}
    for tasks, recs in pair_records:
        curves = curves_from_records(tasks, recs)
        if any(not c.points for c in curves) or any(r.status != "ok" for r in recs):
            continue
        region = Region("pair", "pair", tuple(Branch((t.name,), (t.name,)) for t in tasks))
        pid = "|".join(sorted(",".join(t.keys) for t in tasks))
        held_out = InterferenceModel().fit(frame[frame["pair_id"] != pid])
        safe = decide(tasks, curves, cores, held_out)
        raw_predict = _raw_predictor(held_out, tasks)
        old = choose_arrangement(curves, cores, predict_corun=raw_predict)
        old_decision = Decision(tuple(Option(a, t, 0.0, "model") for a, t in old.predicted), old.chosen, True,
                                "smallest predicted makespan")
        decisions["smallest prediction (old)"].append(RegionResult(region, tasks, curves, old_decision, tuple(recs)))
        decisions["safe chooser"].append(RegionResult(region, tasks, curves, safe, tuple(recs)))
    results["pair_choice"] = {}
    for name, res in decisions.items():
        if res:
            results["pair_choice"][name] = c = choice_summary(res)
            show_choice(name, c)
    for res in decisions["safe chooser"]:
        print(f"     {'+'.join(t.name for t in res.tasks):<24} seq {res.sequential_s * 1e3:8.3f} ms  chosen "
              f"{res.chosen_measured_s * 1e3:8.3f} ms  best {res.best[0].label} {res.best[1] * 1e3:.3f} ms; "
              f"{res.decision.reason}")

    results["models"] = []
    region_results = []
    specs = [s for s in args.models.split(",") if s.strip()]
    for spec in specs:
        name, *kv = spec.split(":")
        params = {k: int(v) for k, v in (p.split("=") for p in kv)}
        print(f"== {name} {params}: branches, safe choice (interference model on all pairs) vs measured")
        try:
            regions = corun_model(name, "host", store=store, max_regions=args.max_regions, protocol=protocol,
                                  interference=model, params=params, kernel_dir=tmp / "kernels", show=log,
                                  rounds=rounds)
        except Exception as exc:  # report and go on with the next model
            print(f"   skipped: {type(exc).__name__}: {exc}")
            results["models"].append({"model": name, "error": str(exc)})
            continue
        for i, res in enumerate(regions, 1):
            print(format_region(i, res))
            best = res.best
            region_results.append(res)
            results["models"].append({
                "model": name, "region": i, "branches": [t.name for t in res.tasks],
                "chosen": res.chosen.label, "predicted_s": res.decision.chosen_predicted_s,
                "chosen_measured_s": res.chosen_measured_s, "sequential_s": res.sequential_s,
                "best": best[0].label if best else None, "best_s": best[1] if best else None,
                "reason": res.decision.reason})
    measured = [r for r in region_results if r.chosen_measured_s and r.best]
    if measured:
        results["summary"] = c = choice_summary(measured)
        print(f"== over {len(measured)} model regions:")
        show_choice("safe chooser", c)
    results["load_average_end"] = os.getloadavg()
    results["seconds"] = round(time.time() - t0, 1)
    print(f"records in {store}; total {time.time() - t0:.0f} s; load average {load_start[0]:.2f} at the start, "
          f"{results['load_average_end'][0]:.2f} at the end")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    return 0


def _raw_predictor(model, tasks):
    """The learned model's own co-run latencies, for the old smallest-prediction rule."""
    import pandas as pd

    from opscope.corun.measure import MemberResult
    from opscope.corun.table import member_rows

    def predict(arr, alone):
        members = tuple(MemberResult(t.name, t.keys, tuple(k.name for k in t.kernels), s.cores, s.threads, s.pinned,
                                     t.flops, t.bytes, (a,), ()) for t, s, a in zip(tasks, arr.slots, alone))
        return tuple(float(x) for x in model.predict(pd.DataFrame(member_rows(members, arr, require_together=False))))
    return predict


if __name__ == "__main__":
    sys.exit(main())
