"""How long the analytical path takes: model import + operator extraction vs the cost model itself.

For each model: time ``opscope.workloads.load_model`` (TVM Relax import, legalize, fuse, extract,
deduplicate), then time ``analyze_operators`` on the extracted operators (best of ``--repeat`` runs,
with and without building the DataFrame) and print them side by side with the per-operator cost.
Goal: the model itself well under 1 ms per operator.

    python benchmarks/analyze_speed.py                      # resnet50 and bert on tpuv4-like
    python benchmarks/analyze_speed.py --models vgg16 --target h100
    python benchmarks/analyze_speed.py --models opscope/workloads/tables/vgg16_frame.csv
"""

from __future__ import annotations

import argparse
import sys
import time

from opscope.analytical import analyze_operators, estimate
from opscope.analytical.frame import load_operators
from opscope.targets import load_target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "bert"])
    parser.add_argument("--target", default="tpuv4-like")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    spec = load_target(args.target)
    rows = []
    for model in args.models:
        print(f"importing {model} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        ops = load_operators(model)
        t_import = time.perf_counter() - t0
        best_df = best_est = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            analyze_operators(ops, spec)
            best_df = min(best_df, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for op in ops:
                estimate(op, spec)
            best_est = min(best_est, time.perf_counter() - t0)
        calls = sum(op.count for op in ops)
        rows.append((model, len(ops), calls, t_import, best_est, best_df))
    w = max(12, *(len(r[0]) for r in rows))
    head = (f"{'model':{w}s} {'ops':>5s} {'calls':>6s} {'import+extract':>15s} {'model/op':>10s} "
            f"{'table total':>12s} {'table/op':>10s}")
    print(f"target {spec.name}, best of {args.repeat} for the model times")
    print(head)
    print("-" * len(head))
    for model, n, calls, t_imp, t_est, t_df in rows:
        print(f"{model:{w}s} {n:5d} {calls:6d} {t_imp:13.2f} s {1e6 * t_est / n:7.1f} us "
              f"{1e3 * t_df:9.2f} ms {1e6 * t_df / n:7.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
