"""Whole models never seen in training: the sum of predicted operator latencies against the model
measured end to end (TVM's default build, run in the Relax VM, the same timing compare uses).

    python benchmarks/model_totals.py --predictor pred/ --threads 1,2 \
        --model resnet18:image_size=64 --model mobilenet_v2:image_size=96 --model mlp

For each model and thread count: the end-to-end latency of the default build, the count-weighted sum of
the predictor's latencies for every operator under its default schedule, and their ratio.  The
predictor should be trained without the models' operators (e.g. on an operator space); operators it
was trained on are counted and named.

With ``--best-from STORE`` each model is also built with the best schedule the store holds for each
of its operators at that thread count (the rest keep TVM's default lowering), timed end to end, and
compared with the sum, per operator, of the least latency the predictor gives any of the store's
schedules for it at that thread count or its default schedule (``--best-predicted min``, the
default: what a user who has the candidates but not their measurements would predict), or of its
latency for exactly the schedule that measured fastest (``--best-predicted chosen``: that schedule
was picked for the error its measurement happened to have, so its prediction sits above it).  Beside it, ``built_sum_ratio`` is the
sum of the kernels as built over the end-to-end time, each kernel counted with the store's own
measurement (its default-schedule row for the default build) and predicted only where the store has
none: what a perfect operator predictor would give.

    python benchmarks/model_totals.py --predictor pred/ --best-from datasets/zoo-cpu-v2/measurements.parquet \
        --model resnet18:image_size=64 --model mlp:layers=3
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _model(text: str) -> tuple[str, dict[str, int]]:
    name, _, rest = text.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        params[k] = int(v)
    return name, params


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--predictor", required=True, type=Path)
    ap.add_argument("--model", action="append", required=True, help="NAME[:key=int,...] (repeatable)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--target", default="host")
    ap.add_argument("--best-from", type=Path, metavar="STORE",
                    help="also build each model with the best schedules this store (.db/.parquet) holds")
    ap.add_argument("--best-predicted", choices=("min", "chosen"), default="min",
                    help="best build: the least prediction over each operator's stored schedules (min) or the "
                         "prediction of the schedule that measured fastest (chosen)")
    ap.add_argument("--vm-workers", type=int, default=1,
                    help="time each model in this many separate processes (the median of all their repeats)")
    args = ap.parse_args()

    from opscope.predictor import load_predictor, operator_frame, read_frame
    from opscope.predictor.search import predicted_best
    from opscope.report.comparison import _predict
    from opscope.report.table import summarize_measurements
    from opscope.report.whole_model import measure_whole_model
    from opscope.store.protocol import VMProtocol
    from opscope.targets import load_target
    from opscope.workloads import load_model

    pred = load_predictor(args.predictor)
    seen = getattr(pred, "training_workloads_", frozenset())
    spec = load_target(args.target)
    store = read_frame(args.best_from, ok_only=False) if args.best_from else None
    builds = ("default", "best") if store is not None else ("default",)
    rows = []
    for text in args.model:
        name, params = _model(text)
        work = load_model(name, **params)
        ops = list(work.operators)
        in_train = [op.name for op in ops if op.key in seen]
        for t, build in ((int(x), b) for x in args.threads.split(",") for b in builds):
            if build == "default":
                # the store's default-schedule rows only: nothing is replayed, and the kernels' sum as
                # built is their measured default latencies
                measurements = (pd.DataFrame(columns=["workload_key", "status"]) if store is None else
                                store[store["workload_key"].isin({op.key for op in ops})
                                      & (store["schedule_kind"] == "default")])
                frame = operator_frame(ops, spec.name, t)
                predicted = dict(zip([op.key for op in ops], pred.predict(frame)))
            else:
                measurements = store[store["workload_key"].isin({op.key for op in ops})]
                best = summarize_measurements(measurements, threads=t)
                values = (predicted_best(pred, ops, measurements, target=spec.name, threads=t)
                          if args.best_predicted == "min" else _predict(pred, ops, measurements, best, spec.name, t))
                predicted = dict(zip([op.key for op in ops], values))
            t0 = time.perf_counter()
            res = measure_whole_model(work, spec, measurements, t,
                                      predicted=predicted, protocol=VMProtocol(workers=args.vm_workers))
            ratio = res.sum_predicted_s / res.latency_s
            per = len(res.raw_latencies_s) // args.vm_workers
            medians = [statistics.median(res.raw_latencies_s[i * per:(i + 1) * per]) for i in range(args.vm_workers)]
            rows.append({"model": text, "threads": t, "build": build, "operators": len(ops),
                         "in_training": len(in_train), "replayed": res.scheduled_ops,
                         "measured_s": res.latency_s, "predicted_sum_s": res.sum_predicted_s, "ratio": ratio,
                         "within10": abs(ratio - 1) <= 0.10,
                         # the store's measurements of the kernels as built (NaN where one is neither
                         # measured nor predicted), over the end-to-end time
                         "built_sum_ratio": res.sum_built_s / res.latency_s,
                         # how far apart the measuring processes were: slowest process median over fastest
                         "process_spread": max(medians) / min(medians) - 1, "seconds": time.perf_counter() - t0})
            print(f"{text} @ {t} thr, {build} build: end to end {res.latency_s * 1e3:.2f} ms, predicted sum "
                  f"{res.sum_predicted_s * 1e3:.2f} ms (x{ratio:.2f}); {res.scheduled_ops} stored schedules "
                  f"replayed; {len(in_train)} of {len(ops)} operators in training", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for build in builds:
        part = table[table["build"] == build] if len(table) else table
        ok = part["within10"].mean() if len(part) else math.nan
        print(f"\n{build} build: model totals within +-10% of the whole-model measurement: "
              f"{int(part['within10'].sum()) if len(part) else 0} of {len(part)} ({ok:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
