"""Pooling two machines' measurements: a predictor for the new machine trained on its own data, on
both machines' rows under one spec, and on both with each machine's rows under a spec of its own,
scored on held-out operators measured on the new machine.

    python benchmarks/two_machines.py --old space --new space-zen5 --test zen5

Names are those of ``benchmarks/adapt_curve.py``'s DATASETS (each machine's spec from its
fingerprint).  The test set's operators are removed from every training set.  Compare with
``opscope adapt`` on the same test set (docs/predictor.md, "A new generation of the same VM").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapt_curve import LABEL, load  # noqa: E402

from opscope.predictor import make_predictor  # noqa: E402
from opscope.predictor.evaluation.metrics import accuracy_table  # noqa: E402
from opscope.predictor.features.machine import retarget  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="space", help="the machine the predictor was trained on")
    ap.add_argument("--new", default="space-zen5", help="the new machine's training rows")
    ap.add_argument("--test", default="zen5", help="the new machine's held-out rows")
    args = ap.parse_args(argv)
    (old, s_old), (new, _), (test, s_test) = load(args.old), load(args.new), load(args.test)
    held = set(test["workload_key"])
    old, new = old[~old["workload_key"].isin(held)], new[~new["workload_key"].isin(held)]
    # the new machine's training rows under the test set's target name: one spec for the new machine
    new = retarget(new, args.test)
    own = {args.old: s_old, args.test: s_test}
    one = retarget(old, args.test)
    runs = [(f"{args.new} alone", new),
            (f"{args.old} + {args.new}, one spec", pd.concat([one, new], ignore_index=True)),
            (f"{args.old} + {args.new}, a spec each", pd.concat([old, new], ignore_index=True))]
    rows = []
    for name, frame in runs:
        t0 = time.perf_counter()
        pred = make_predictor("xgboost", specs=own).fit(frame, frame[LABEL].to_numpy())
        m = accuracy_table(test, pred.predict(test), test[LABEL].to_numpy())
        rows.append({**m, "training": name, "rows": len(frame), "operators": frame["workload_key"].nunique(),
                     "seconds": time.perf_counter() - t0})
    print(f"scored on {args.test}: {len(test)} rows, {test['workload_key'].nunique()} operators (none in training)")
    cols = ["training", "rows", "operators", "median_ape", "within10", "within20", "spearman", "top1", "seconds"]
    print(pd.DataFrame(rows)[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
