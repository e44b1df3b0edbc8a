"""Held-out validation of co-run predictions: the two baselines, group folds over pairs, errors.

Every co-run prediction is judged on pairs it never saw: ``group_folds`` and ``pair_split`` keep
every row of a pair (both members, every arrangement, both orders of A+B) on one side;
``operator_split`` holds out every pair an operator is in.  The baselines any learned model must
beat: ``NoInterference`` (co-run = alone; for a sequential run, the sum of alone latencies) and
``MedianSlowdown`` (the training rows' median slowdown per arrangement kind).  ``HeldOutError``
keeps the absolute relative errors of one method on one kind; its ``bound`` (the
``BOUND_QUANTILE`` quantile) is what the chooser weighs a predicted gain against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from opscope.errors import PredictorError

METHODS = ("model", "no_interference", "median_slowdown")
KINDS = ("disjoint", "shared", "sequential")
#: the held-out error quantile a predicted gain must exceed before the chooser acts on it
BOUND_QUANTILE = 0.9


def finite_rows(frame: pd.DataFrame) -> pd.DataFrame:
    if "slowdown" not in frame:
        return frame.iloc[0:0]
    return frame[np.isfinite(frame["slowdown"].astype(float))]


# -- the two baselines ---------------------------------------------------------------------------
class NoInterference(BaseEstimator, RegressorMixin):
    """Co-run latency = alone latency."""

    def fit(self, frame: pd.DataFrame, y=None) -> NoInterference:
        self.n_train_ = int(len(frame))
        return self

    def predict_slowdown(self, frame: pd.DataFrame) -> np.ndarray:
        return np.ones(len(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["alone_s"].astype(float).to_numpy() * self.predict_slowdown(frame)


class MedianSlowdown(BaseEstimator, RegressorMixin):
    """Co-run latency = alone latency x the training rows' median slowdown of the arrangement kind."""

    def fit(self, frame: pd.DataFrame, y=None) -> MedianSlowdown:
        rows = finite_rows(frame)
        if not len(rows):
            raise PredictorError("median slowdown needs co-run rows with a slowdown")
        self.by_kind_ = {str(k): float(v) for k, v in rows.groupby("kind")["slowdown"].median().items()}
        self.overall_ = float(rows["slowdown"].median())
        return self

    def predict_slowdown(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["kind"].map(self.by_kind_).fillna(self.overall_).to_numpy(dtype=float)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["alone_s"].astype(float).to_numpy() * self.predict_slowdown(frame)


# -- held-out errors -----------------------------------------------------------------------------
@dataclass(frozen=True)
class HeldOutError:
    """Absolute relative errors of co-run latency on held-out rows of one kind, for one method."""

    method: str
    kind: str
    errors: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.errors)) if self.errors else math.inf

    @property
    def bound(self) -> float:
        """The ``BOUND_QUANTILE`` quantile: the error the chooser assumes a prediction may have."""
        return float(np.quantile(self.errors, BOUND_QUANTILE)) if self.errors else math.inf

    def to_dict(self) -> dict:
        return {"method": self.method, "kind": self.kind, "n": len(self.errors), "median": self.median,
                "bound": self.bound}


def group_folds(frame: pd.DataFrame, n_folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row positions, every ``pair_id`` on one side: pairs dealt round-robin in a
    seeded shuffle into ``n_folds`` folds (at most one fold per pair)."""
    pairs = np.array(sorted(frame["pair_id"].unique()))
    if len(pairs) < 2:
        raise PredictorError(f"holding out pairs needs at least 2 distinct pairs, got {len(pairs)}")
    rng = np.random.default_rng(seed)
    rng.shuffle(pairs)
    k = min(n_folds, len(pairs))
    fold_of = {p: i % k for i, p in enumerate(pairs)}
    folds = frame["pair_id"].map(fold_of).to_numpy()
    return [(np.flatnonzero(folds != i), np.flatnonzero(folds == i)) for i in range(k)]


def held_out_errors(make_model, frame: pd.DataFrame, n_folds: int = 5, seed: int = 0) -> list[HeldOutError]:
    """Per method and kind, the errors on held-out pairs: the learned model (``make_model()``, fitted
    on each fold's training rows) and both baselines, on the same folds.  Sequential rows are
    predicted by the baselines only (the sum of alone latencies, or it times the median ratio)."""
    frame = finite_rows(frame).reset_index(drop=True)
    measured = frame["together_s"].to_numpy(dtype=float)
    corun = (frame["kind"] != "sequential").to_numpy()
    got = {m: np.full(len(frame), np.nan) for m in METHODS}
    for tr, te in group_folds(frame, n_folds, seed):
        train, test = frame.iloc[tr], frame.iloc[te]
        for method, est in (("no_interference", NoInterference()), ("median_slowdown", MedianSlowdown())):
            got[method][te] = est.fit(train).predict(test)
        learn, ask = train[corun[tr]], te[corun[te]]
        if len(learn) >= 2 and len(ask):
            got["model"][ask] = make_model().fit(learn).predict(frame.iloc[ask])
    kinds = frame["kind"].astype(str).to_numpy()
    out = []
    for method, pred in got.items():
        rel = np.abs(pred - measured) / measured
        for kind in KINDS:
            mask = (kinds == kind) & np.isfinite(rel)
            out.append(HeldOutError(method, kind, tuple(float(x) for x in rel[mask])))
    return out


# -- splits ------------------------------------------------------------------------------------

def pair_split(frame: pd.DataFrame, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (train, test) such that no ``pair_id`` is on both sides.

    The unique pairs are shuffled with ``seed`` and the first ``ceil(test_fraction * pairs)``
    (at least one, at most all but one) go to the test side, with every row that has that pair.
    """
    if "pair_id" not in frame.columns:
        raise PredictorError("interference frame has no pair_id column")
    if not 0 < test_fraction < 1:
        raise PredictorError(f"test_fraction must be in (0, 1), got {test_fraction}")
    pairs = np.array(sorted(frame["pair_id"].unique()))
    if len(pairs) < 2:
        raise PredictorError(f"holding out pairs needs at least 2 distinct pairs, got {len(pairs)}")
    rng = np.random.default_rng(seed)
    rng.shuffle(pairs)
    n_test = min(len(pairs) - 1, max(1, math.ceil(test_fraction * len(pairs))))
    test_pairs = set(pairs[:n_test])
    is_test = frame["pair_id"].isin(test_pairs).to_numpy()
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def pair_keys(pair_id: str) -> set[str]:
    """The kernel keys of the tasks of a pair (``pair_id`` is their sorted, '|'-joined key lists)."""
    return {k for task in pair_id.split("|") for k in task.split(",")}


def operator_split(frame: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (train, test): the test side is every pair that has operator ``key`` in it,
    so the model has never seen that operator co-run with anything."""
    has = frame["pair_id"].map(lambda p: key in pair_keys(p)).to_numpy()
    if has.all() or not has.any():
        raise PredictorError(f"operator {key!r} is in {'every' if has.all() else 'no'} pair: nothing to hold out")
    return np.flatnonzero(~has), np.flatnonzero(has)
