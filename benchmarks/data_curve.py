"""What more operators buy: the default predictor trained on random fractions of the training operators.

    python benchmarks/data_curve.py --store A.parquet [--store B.parquet ...] --test HELDOUT.parquet [--test ...] \
        [--fractions 0.125,0.25,0.5,1] [--draws 2] [--label latency_min_s]

The training rows are read as ``opscope train`` reads them (several machines each described by
their own spec).  For each fraction below 1, ``--draws`` random draws of that share of the distinct
operators (every row of a drawn operator) train the default XGBoost predictor (seed = the draw);
each is scored on every ``--test`` set as it is: median APE, within +-20% and top-1 per set, and
their means.  Fitting a predictor on all of the data takes a minute or two on two cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opscope.commands.train import _machines, read_frames  # noqa: E402
from opscope.predictor.evaluation.metrics import accuracy_table  # noqa: E402
from opscope.predictor.frames import read_frame  # noqa: E402
from opscope.predictor.models.persist import make_predictor  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", action="append", required=True, help="training data (repeatable)")
    ap.add_argument("--test", action="append", required=True, help="held-out data (repeatable)")
    ap.add_argument("--fractions", default="0.125,0.25,0.5,1")
    ap.add_argument("--draws", type=int, default=2, help="random draws per fraction below 1")
    ap.add_argument("--label", default="latency_min_s")
    args = ap.parse_args(argv)
    try:
        fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
    except ValueError:
        sys.exit(f"--fractions: expected numbers in (0, 1], got {args.fractions!r}")
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        sys.exit(f"--fractions: expected numbers in (0, 1], got {args.fractions!r}")
    frame = read_frames(args.store, args.label)
    tests = {t: read_frame(t, label=args.label) for t in args.test}
    ops = np.asarray(sorted(frame["workload_key"].astype(str).unique()))
    print(f"training data: {len(frame)} rows of {len(ops)} operators; test sets: {len(tests)}")
    print("fraction draw operators rows fit_s | median APE per test set | mean median APE / within20 / top1")
    for frac in fractions:
        for draw in range(args.draws if frac < 1 else 1):
            rng = np.random.default_rng(100 + draw)
            keep = set(rng.choice(ops, max(1, int(round(frac * len(ops)))), replace=False))
            train = frame[frame["workload_key"].astype(str).isin(keep)].reset_index(drop=True)
            pred = make_predictor("xgboost", seed=draw)
            _machines(pred, train, args.store, "data_curve")
            t0 = time.perf_counter()
            pred.fit(train, train[args.label].to_numpy(dtype=float))
            fit_s = time.perf_counter() - t0
            scores = []
            for test in tests.values():
                y = test[args.label].to_numpy(dtype=float)
                r = accuracy_table(test, pred.predict(test), y)
                scores.append((r["median_ape"], r["within20"], r["top1"]))
            s = np.asarray(scores)
            print(f"{frac:8g} {draw:4d} {len(keep):9d} {len(train):5d} {fit_s:5.0f} | "
                  + " ".join(f"{v:.3f}" for v in s[:, 0])
                  + f" | {s[:, 0].mean():.3f} / {s[:, 1].mean():.3f} / {s[:, 2].mean():.3f}", flush=True)
    return 0


if __name__ == "__main__":
    from opscope.cli import run_script

    run_script(main, Path(__file__).name)
