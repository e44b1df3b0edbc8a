"""Held-out splits that each hold out exactly what they name.

- ``random``: rows at random, 5-fold (the optimistic baseline: the same operator's other
  schedules are in training);
- ``unseen-shapes``: whole workloads (one workload = one operator shape; all its schedules and
  thread counts) are held out, grouped by ``workload_key``, 5-fold;
- ``unseen-kinds``: one fold per operator kind, holding out every row of that kind;
- ``leave-one-model-out``: one fold per model; the test set is every operator of that model and
  the training set has no operator that occurs in it, even when other models share the operator
  (a workload belongs to every model named on any of its rows);
- ``unseen-threads``: one fold per thread count, trained on the other thread counts.

``check_fold`` asserts these properties; ``make_splits`` runs it on every fold it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from opscope.errors import PredictorError
from opscope.predictor.frames import model_names

SPLITS = ("random", "unseen-shapes", "unseen-kinds", "leave-one-model-out", "unseen-threads")


@dataclass(frozen=True)
class Fold:
    split: str
    held_out: str  # what the test set is, e.g. "model=resnet18", "kind=conv2d", "20% of workloads"
    train: np.ndarray  # row positions in the frame
    test: np.ndarray


def make_splits(frame: pd.DataFrame, split: str, seed: int = 0, test_size: float = 0.2,
                min_test_rows: int = 1, folds: int = 5) -> list[Fold]:
    """The folds of ``split`` over ``frame`` (row positions); folds with an empty side are dropped.

    ``random`` and ``unseen-shapes`` are ``folds``-fold cross-validation (rows, resp. workloads,
    dealt into ``folds`` groups at random, each group held out once); with ``folds=1`` a single
    fold holds out ``test_size`` of them.
    """
    if split not in SPLITS:
        raise PredictorError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if not 0.0 < test_size < 1.0:
        raise PredictorError(f"test_size must be in (0, 1), got {test_size}")
    frame = frame.reset_index(drop=True)
    n = len(frame)
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    if folds < 1:
        raise PredictorError(f"folds must be >= 1, got {folds}")
    n_folds = folds
    out: list[Fold] = []
    if split == "random":
        order = rng.permutation(n)
        if n_folds == 1:
            test = np.sort(order[: max(1, int(round(n * test_size)))])
            out.append(Fold(split, f"{test_size:.0%} of rows", np.setdiff1d(rows, test), test))
        for i in range(n_folds if n_folds > 1 else 0):
            test = np.sort(order[i::n_folds])
            out.append(Fold(split, f"rows fold {i + 1}/{n_folds}", np.setdiff1d(rows, test), test))
    elif split == "unseen-shapes":
        keys = frame["workload_key"].astype(str)
        unique = rng.permutation(np.array(sorted(keys.unique())))
        groups = [unique[: max(1, int(round(len(unique) * test_size)))]] if n_folds == 1 else \
            [unique[i::n_folds] for i in range(min(n_folds, len(unique)))]
        for i, chosen in enumerate(groups):
            mask = keys.isin(set(chosen)).to_numpy()
            out.append(Fold(split, f"workloads fold {i + 1}/{len(groups)} ({len(chosen)} of {len(unique)})",
                              rows[~mask], rows[mask]))
    elif split == "unseen-kinds":
        kinds = frame["kind"].astype(str).to_numpy()
        for kind in sorted(set(kinds)):
            mask = kinds == kind
            out.append(Fold(split, f"kind={kind}", rows[~mask], rows[mask]))
    elif split == "leave-one-model-out":
        from opscope.workloads.space import SPACE_MODEL

        models = _models_per_workload(frame)
        # operators drawn from a space belong to no model: they are always training data
        for model in sorted({m for ms in models for m in ms} - {SPACE_MODEL}):
            mask = models.map(lambda ms, m=model: m in ms).to_numpy()
            out.append(Fold(split, f"model={model}", rows[~mask], rows[mask]))
    elif split == "unseen-threads":
        threads = pd.to_numeric(frame["threads"]).to_numpy()
        for t in sorted(set(threads.tolist())):
            mask = threads == t
            out.append(Fold(split, f"threads={int(t)}", rows[~mask], rows[mask]))
    out = [f for f in out if len(f.train) and len(f.test) >= min_test_rows]
    if not out:
        raise PredictorError(f"split {split!r}: the data has nothing to hold out (one model/kind/thread count only?)")
    for f in out:
        check_fold(frame, f)
    return out


def _models_per_workload(frame: pd.DataFrame) -> pd.Series:
    """Per row, every model its workload was seen in (across all rows of that workload)."""
    names = model_names(frame)
    union = names.groupby(frame["workload_key"].astype(str)).agg(lambda s: frozenset().union(*s))
    return frame["workload_key"].astype(str).map(union)


def check_fold(frame: pd.DataFrame, fold: Fold) -> None:
    """Raise when a fold leaks what it claims to hold out (or overlaps its train and test rows)."""
    train, test = frame.iloc[fold.train], frame.iloc[fold.test]
    if np.intersect1d(fold.train, fold.test).size:
        raise PredictorError(f"{fold.split} {fold.held_out}: train and test share rows")
    if fold.split == "unseen-shapes":
        shared = set(train["workload_key"]) & set(test["workload_key"])
        if shared:
            raise PredictorError(f"{fold.split}: workloads in both train and test: {sorted(shared)[:3]}")
    elif fold.split == "unseen-kinds":
        shared = set(train["kind"]) & set(test["kind"])
        if shared:
            raise PredictorError(f"{fold.split}: kinds in both train and test: {sorted(shared)}")
    elif fold.split == "leave-one-model-out":
        model = fold.held_out.split("=", 1)[1]
        models = _models_per_workload(frame)
        if any(model in ms for ms in models.iloc[fold.train]):
            raise PredictorError(f"{fold.split}: training rows from held-out model {model}")
        if not all(model in ms for ms in models.iloc[fold.test]):
            raise PredictorError(f"{fold.split}: test rows not from held-out model {model}")
        shared = set(train["workload_key"]) & set(test["workload_key"])
        if shared:
            raise PredictorError(f"{fold.split}: operators of {model} in training: {sorted(shared)[:3]}")
    elif fold.split == "unseen-threads":
        shared = set(train["threads"]) & set(test["threads"])
        if shared:
            raise PredictorError(f"{fold.split}: thread counts in both train and test: {sorted(shared)}")
