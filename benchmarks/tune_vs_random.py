"""Predictor-guided search vs random sampling, offline on the shipped dataset.

For every task (one operator at one thread count) with at least ``--min-schedules`` measured
schedules, a predictor trained without that operator (workloads split in ``--folds`` groups, each
predicted by a model trained on the others: the unseen-shapes setting) orders the task's schedules;
we count the measurements, in that order, until one is within 5 % of the task's best, and compare
with the expected count for uniformly random order, (N + 1) / (G + 1).  A live run of the same
search on this machine is ``opscope tune --model M --op OP --budget 32``; the live comparison of
the evolutionary search (each cost model) against random order, measured as it runs, is
``benchmarks/attainable.py --orders``.

    python benchmarks/tune_vs_random.py [--data PATH] [--predictor calibrated]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opscope.predictor.frames import labels, read_frame  # noqa: E402
from opscope.predictor.models.persist import make_predictor  # noqa: E402
from opscope.predictor.search import random_expected_trials, trials_to_within  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--predictor", default="calibrated")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--min-schedules", type=int, default=16)
    ap.add_argument("--tol", type=float, default=0.05)
    ap.add_argument("--label", default="latency_median_s", help="or latency_min_s on a busy machine")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.data is None:
        found = sorted((ROOT / "datasets").glob("*/measurements.parquet"))
        if not found:
            sys.exit("no dataset under datasets/*/ (pass --data)")
        args.data = found[0]
    frame = read_frame(args.data, label=args.label)
    y = labels(frame, args.label)
    keys = np.array(sorted(frame["workload_key"].unique()))
    group = dict(zip(np.random.default_rng(args.seed).permutation(keys), np.arange(len(keys)) % args.folds))
    fold = frame["workload_key"].map(group).to_numpy()
    pred = np.full(len(frame), np.nan)
    for f in range(args.folds):
        test = fold == f
        print(f"fold {f + 1}/{args.folds}: training {args.predictor} on {int((~test).sum())} rows",
              file=sys.stderr, flush=True)
        pred[test] = make_predictor(args.predictor).fit(frame[~test], y[~test]).predict(frame[test])
    rows = []
    for (_key, threads), g in frame.groupby(["workload_key", "threads"]):
        if len(g) < args.min_schedules:
            continue
        idx = g.index.to_numpy()
        lat, p = y[idx], pred[idx]
        order = np.argsort(p, kind="stable")
        guided = trials_to_within(lat[order], lat.min(), args.tol)
        rows.append({"op": g["op_name"].iloc[0], "kind": g["kind"].iloc[0], "threads": threads, "schedules": len(g),
                     "guided": guided, "random": random_expected_trials(lat, args.tol),
                     "top1": lat.min() / lat[order[0]]})
    if not rows:
        sys.exit(f"no task has {args.min_schedules} schedules")
    df = pd.DataFrame(rows)
    print(df.sort_values(["kind", "op", "threads"]).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"\n{len(df)} tasks, {args.predictor} trained on other operators; trials to within {args.tol:.0%} of "
          f"the best measured schedule:")
    print(f"  guided: mean {df['guided'].mean():.2f}, median {df['guided'].median():.1f}; "
          f"random (expected): mean {df['random'].mean():.2f}, median {df['random'].median():.1f}")
    print(f"  guided needs fewer trials than random in {np.mean(df['guided'] < df['random']):.0%} of tasks, "
          f"as many or fewer in {np.mean(df['guided'] <= df['random']):.0%}; guided top-1 peak score "
          f"{df['top1'].mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
