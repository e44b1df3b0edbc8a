"""Honest evaluation: fit on each fold's training rows, predict its held-out rows, score.

``evaluate(predictors, frame, split)`` returns an ``Evaluation``: the metrics of every predictor
on the pooled held-out predictions of all folds (``table``), per fold (``folds``) and, for
leave-one-model-out, each held-out model's summed latency predicted vs measured (``models``).
Every predictor sees the same folds.  Progress goes to ``progress`` (stderr from the CLI).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pandas as pd

from opscope.predictor.evaluation.metrics import accuracy_table, model_totals
from opscope.predictor.evaluation.splits import make_splits
from opscope.predictor.frames import LABEL, labels, ok_rows
from opscope.predictor.models.base import FramePredictor

Factory = Callable[[], FramePredictor]


@dataclass(frozen=True)
class Evaluation:
    split: str
    table: pd.DataFrame  # one row per predictor: pooled metrics over all folds
    folds: pd.DataFrame  # one row per (predictor, fold)
    models: pd.DataFrame  # leave-one-model-out: one row per (predictor, model, threads)
    predictions: pd.DataFrame  # row, fold, predictor, predicted_s, measured_s


def evaluate(predictors: Mapping[str, Factory], frame: pd.DataFrame, split: str, seed: int = 0,
             test_size: float = 0.2, progress: TextIO | None = sys.stderr, label: str = LABEL,
             folds: int = 5) -> Evaluation:
    """Fit and score every predictor on every fold of ``split``; ``label`` is the latency learned."""
    frame = ok_rows(frame, label)
    y = labels(frame, label)
    folds = make_splits(frame, split, seed=seed, test_size=test_size, folds=folds)
    fold_rows, model_rows, pred_parts = [], [], []
    for i, fold in enumerate(folds):
        train, test = frame.iloc[fold.train], frame.iloc[fold.test]
        for name, factory in predictors.items():
            t0 = time.perf_counter()
            pred = factory().fit(train, y[fold.train]).predict(test)
            secs = time.perf_counter() - t0
            if progress is not None:
                print(f"[{split} {i + 1}/{len(folds)}] {fold.held_out}: {name} "
                      f"({len(train)} train, {len(test)} test rows) {secs:.1f}s", file=progress, flush=True)
            row = {"predictor": name, "fold": fold.held_out, "train_rows": len(train), "seconds": secs}
            row.update(accuracy_table(test, pred, y[fold.test]))
            fold_rows.append(row)
            pred_parts.append(pd.DataFrame({"row": fold.test, "fold": fold.held_out, "predictor": name,
                                            "predicted_s": pred, "measured_s": y[fold.test]}))
            if split == "leave-one-model-out":
                model = fold.held_out.split("=", 1)[1]
                for r in model_totals(test, pred, y[fold.test], model):
                    model_rows.append({"predictor": name, **r})
    preds = pd.concat(pred_parts, ignore_index=True)
    table_rows = []
    for name in predictors:
        p = preds[preds["predictor"] == name]
        sub = frame.iloc[p["row"].to_numpy()].copy()
        # a row held out by several folds (an operator shared by models) is scored once per fold;
        # keep tasks apart per fold so ranking metrics never mix folds
        sub["workload_key"] = sub["workload_key"].astype(str) + "|" + p["fold"].to_numpy()
        table_rows.append({"predictor": name, "folds": len(folds),
                           **accuracy_table(sub, p["predicted_s"].to_numpy(), p["measured_s"].to_numpy())})
    table = pd.DataFrame(table_rows)
    models = pd.DataFrame(model_rows)
    if not models.empty:
        summary = models.groupby("predictor")["error"].agg(
            models_within10=lambda e: float(np.mean(np.abs(e) <= 0.10)),
            model_total_mape=lambda e: float(np.mean(np.abs(e))))
        table = table.merge(summary, left_on="predictor", right_index=True, how="left")
    return Evaluation(split, table, pd.DataFrame(fold_rows), models, preds)
