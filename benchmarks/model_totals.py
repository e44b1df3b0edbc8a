"""Whole models never seen in training: the sum of predicted operator latencies against the model
measured end to end (TVM's default build, run in the Relax VM, the same timing compare uses).

    python benchmarks/model_totals.py --predictor pred/ --threads 1,2 \
        --model resnet18:image_size=64 --model mobilenet_v2:image_size=96 --model mlp

For each model and thread count: the end-to-end latency of the default build, the count-weighted sum of
the predictor's latencies for every operator under its default schedule, and their ratio.  The
predictor should be trained without the models' operators (e.g. on an operator space); operators it
was trained on are counted and named.
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
    ap.add_argument("--vm-workers", type=int, default=1,
                    help="time each model in this many separate processes (the median of all their repeats)")
    args = ap.parse_args()

    from opscope.predictor import load_predictor, operator_frame
    from opscope.report.whole_model import measure_whole_model
    from opscope.store.protocol import VMProtocol
    from opscope.targets import load_target
    from opscope.workloads import load_model

    pred = load_predictor(args.predictor)
    seen = getattr(pred, "training_workloads_", frozenset())
    spec = load_target(args.target)
    rows = []
    for text in args.model:
        name, params = _model(text)
        work = load_model(name, **params)
        ops = list(work.operators)
        in_train = [op.name for op in ops if op.key in seen]
        for t in (int(x) for x in args.threads.split(",")):
            frame = operator_frame(ops, spec.name, t)
            predicted = dict(zip([op.key for op in ops], pred.predict(frame)))
            t0 = time.perf_counter()
            res = measure_whole_model(work, spec, pd.DataFrame(columns=["workload_key", "status"]), t,
                                      predicted=predicted, protocol=VMProtocol(workers=args.vm_workers))
            ratio = res.sum_predicted_s / res.latency_s
            per = len(res.raw_latencies_s) // args.vm_workers
            medians = [statistics.median(res.raw_latencies_s[i * per:(i + 1) * per]) for i in range(args.vm_workers)]
            rows.append({"model": text, "threads": t, "operators": len(ops), "in_training": len(in_train),
                         "measured_s": res.latency_s, "predicted_sum_s": res.sum_predicted_s, "ratio": ratio,
                         "within10": abs(ratio - 1) <= 0.10,
                         # how far apart the measuring processes were: slowest process median over fastest
                         "process_spread": max(medians) / min(medians) - 1, "seconds": time.perf_counter() - t0})
            print(f"{text} @ {t} thr: end to end {res.latency_s * 1e3:.2f} ms, predicted sum "
                  f"{res.sum_predicted_s * 1e3:.2f} ms (x{ratio:.2f}); {len(in_train)} of {len(ops)} operators "
                  "in training", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    ok = table["within10"].mean() if len(table) else math.nan
    print(f"\nmodel totals within +-10% of the whole-model measurement: {ok:.0%} of {len(table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
