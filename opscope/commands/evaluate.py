"""``opscope evaluate``: held-out accuracy of predictors, side by side.

With ``--predictor DIR`` the saved predictor's kind and hyperparameters are refitted on each fold's
training rows (a predictor cannot be scored honestly on rows it was trained on); ``--as-is`` instead
scores the saved predictor unchanged on all the data given (data it has never seen).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from opscope.errors import PredictorError

DEFAULT_MODELS = "analytical,xgboost,calibrated"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", "--store", dest="data", required=True, help="measurements (.db, .parquet, .csv)")
    parser.add_argument("--predictor", help="a saved predictor directory")
    parser.add_argument("--models", default=None,
                        help=f"comma list of predictor kinds to compare (default {DEFAULT_MODELS})")
    parser.add_argument("--split", default="unseen-shapes",
                        help="random, unseen-shapes, unseen-kinds, leave-one-model-out, unseen-threads, or all")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds for random / unseen-shapes")
    parser.add_argument("--as-is", action="store_true", help="score the saved --predictor without refitting")
    parser.add_argument("--label", default="latency_median_s",
                        help="latency statistic to learn and score: latency_median_s, latency_min_s, latency_mean_s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the per-fold table (and model totals) as CSV with this prefix")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from opscope.edges import at_least, out_file
    from opscope.predictor.evaluation.evaluate import evaluate
    from opscope.predictor.evaluation.metrics import accuracy_table
    from opscope.predictor.evaluation.splits import SPLITS
    from opscope.predictor.frames import labels, read_frame
    from opscope.predictor.models.persist import PREDICTORS, load_predictor, make_predictor, read_metadata

    at_least(args.folds, 2, "--folds")
    if args.out:
        for part in ("folds", "summary", "models"):
            out_file(f"{args.out}_{part}.csv", "--out")
    frame = read_frame(args.data, label=args.label)
    if args.as_is:
        if not args.predictor:
            raise PredictorError("--as-is needs --predictor")
        pred = load_predictor(args.predictor)
        row = accuracy_table(frame, pred.predict(frame), labels(frame, args.label))
        print(pd.DataFrame([row]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return 0
    factories = {}
    if args.predictor:
        meta = read_metadata(args.predictor)
        name, params = meta["predictor"], meta.get("params", {})
        factories[f"{name} ({args.predictor})"] = lambda n=name, p=params: make_predictor(n, **p)
    names = args.models or ("" if args.predictor else DEFAULT_MODELS)
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        if name not in PREDICTORS:
            raise PredictorError(f"unknown predictor {name!r} in --models; known: {', '.join(sorted(PREDICTORS))}")
        factories[name] = lambda n=name: make_predictor(n, seed=args.seed) if "seed" in PREDICTORS[n]().get_params() \
            else make_predictor(n)
    splits = SPLITS if args.split == "all" else (args.split,)
    if any(s not in SPLITS for s in splits):
        raise PredictorError(f"unknown --split {args.split!r}; known: {', '.join(SPLITS)}, all")
    tables, folds, models = [], [], []
    for split in splits:
        ev = evaluate(factories, frame, split, seed=args.seed, progress=sys.stderr, label=args.label,
                      folds=args.folds)
        tables.append(ev.table.assign(split=split))
        folds.append(ev.folds.assign(split=split))
        if not ev.models.empty:
            models.append(ev.models)
    table = pd.concat(tables, ignore_index=True)
    cols = ["split", "predictor", "folds", "rows", "mape", "median_ape", "within10", "within20", "spearman",
            "top1", "top5"] + [c for c in ("models_within10", "model_total_mape") if c in table]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if models:
        print("\nheld-out models, summed latency (count x latency), predicted vs measured:")
        m = pd.concat(models, ignore_index=True)
        print(m.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.out:
        Path(f"{args.out}_folds.csv").parent.mkdir(parents=True, exist_ok=True)
        pd.concat(folds, ignore_index=True).to_csv(f"{args.out}_folds.csv", index=False)
        table.to_csv(f"{args.out}_summary.csv", index=False)
        if models:
            pd.concat(models, ignore_index=True).to_csv(f"{args.out}_models.csv", index=False)
    return 0
