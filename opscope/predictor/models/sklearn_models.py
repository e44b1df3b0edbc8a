"""scikit-learn predictors on log latency: random forest, gradient boosting, linear baseline.

Each is saved as its own JSON (tree arrays, or scaler and coefficients), never pickled, and a loaded
one predicts without refitting.  Missing features (NaN) are filled with a sentinel below every real
value for the trees, and with the training median for the linear model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from opscope.errors import PredictorError
from opscope.predictor.models.base import LearnedPredictor
from opscope.predictor.models.tree_json import JsonTrees, export_tree
from opscope.targets.spec import TargetSpec

MISSING = -1.0e9
TREES_FILE = "trees.json"
LINEAR_FILE = "linear.json"


def _fill(X: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(X), MISSING, X)


class ForestEngine:
    """Random forest or gradient boosting, predicting from exported trees after fit."""

    def __init__(self, estimator: Any, kind: str) -> None:
        self.estimator = estimator
        self.kind = kind
        self.trees: JsonTrees | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> ForestEngine:
        Xf = _fill(X)
        est = self.estimator.fit(Xf, y)
        if self.kind == "random_forest":
            trees = [export_tree(t.tree_) for t in est.estimators_]
            self.trees = JsonTrees(trees, 1.0 / len(trees), 0.0)
        else:
            trees = [export_tree(t[0].tree_) for t in est.estimators_]
            lr = est.learning_rate
            partial = JsonTrees(trees, lr, 0.0).predict(Xf)
            offset = float(np.mean(est.predict(Xf) - partial))  # the initial (mean) prediction
            self.trees = JsonTrees(trees, lr, offset)
        self.estimator = None  # the exported trees are the model from here on
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        assert self.trees is not None
        return self.trees.predict(_fill(X))

    def save(self, directory: Path) -> dict[str, Any]:
        assert self.trees is not None
        (Path(directory) / TREES_FILE).write_text(json.dumps(self.trees.to_json()))
        return {"engine": self.kind, "file": TREES_FILE}

    @classmethod
    def load(cls, directory: Path, meta: Mapping[str, Any]) -> ForestEngine:
        path = Path(directory) / meta.get("file", TREES_FILE)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PredictorError(f"{path}: cannot read the saved trees ({exc})") from exc
        engine = cls(None, str(meta["engine"]))
        engine.trees = JsonTrees.from_json(data)
        return engine


class LinearEngine:
    """Ridge regression on standardised features, missing values set to the training median."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.center = self.scale = self.coef = self.fill = None
        self.intercept = 0.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearEngine:
        from sklearn.linear_model import Ridge

        fill = np.nanmedian(np.where(np.isnan(X).all(axis=0), 0.0, X), axis=0)
        self.fill = np.where(np.isnan(fill), 0.0, fill)
        Xf = np.where(np.isnan(X), self.fill, X)
        self.center = Xf.mean(axis=0)
        scale = Xf.std(axis=0)
        self.scale = np.where(scale > 0, scale, 1.0)
        model = Ridge(alpha=self.alpha).fit((Xf - self.center) / self.scale, y)
        self.coef, self.intercept = np.asarray(model.coef_, dtype=float), float(model.intercept_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        Xf = np.where(np.isnan(X), self.fill, X)
        return ((Xf - self.center) / self.scale) @ self.coef + self.intercept

    def save(self, directory: Path) -> dict[str, Any]:
        data = {k: np.asarray(getattr(self, k)).tolist() for k in ("fill", "center", "scale", "coef")}
        data.update(intercept=self.intercept, alpha=self.alpha)
        (Path(directory) / LINEAR_FILE).write_text(json.dumps(data))
        return {"engine": "linear", "file": LINEAR_FILE}

    @classmethod
    def load(cls, directory: Path, meta: Mapping[str, Any]) -> LinearEngine:
        path = Path(directory) / meta.get("file", LINEAR_FILE)
        try:
            data = json.loads(path.read_text())
            engine = cls(float(data["alpha"]))
            for k in ("fill", "center", "scale", "coef"):
                setattr(engine, k, np.asarray(data[k], dtype=float))
            engine.intercept = float(data["intercept"])
        except (OSError, ValueError, KeyError) as exc:
            raise PredictorError(f"{path}: cannot read the saved linear model ({exc!r})") from exc
        return engine


class RandomForestPredictor(LearnedPredictor):
    name = "random_forest"

    def __init__(self, n_estimators: int = 100, max_depth: int | None = None, min_samples_leaf: int = 1,
                 max_features: float = 0.5, seed: int = 0, analytical_features: bool = True,
                 specs: Mapping[str, TargetSpec] | None = None) -> None:
        super().__init__(analytical_features=analytical_features, specs=specs)
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.seed = seed

    def _engine(self) -> ForestEngine:
        from sklearn.ensemble import RandomForestRegressor

        est = RandomForestRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                    min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
                                    random_state=self.seed, n_jobs=1)
        return ForestEngine(est, "random_forest")


class GradientBoostingPredictor(LearnedPredictor):
    name = "gradient_boosting"

    def __init__(self, n_estimators: int = 200, max_depth: int = 5, learning_rate: float = 0.1,
                 subsample: float = 0.8, seed: int = 0, analytical_features: bool = True,
                 specs: Mapping[str, TargetSpec] | None = None) -> None:
        super().__init__(analytical_features=analytical_features, specs=specs)
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.seed = seed

    def _engine(self) -> ForestEngine:
        from sklearn.ensemble import GradientBoostingRegressor

        est = GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                        learning_rate=self.learning_rate, subsample=self.subsample,
                                        random_state=self.seed)
        return ForestEngine(est, "gradient_boosting")


class LinearPredictor(LearnedPredictor):
    """The linear baseline: ridge regression of log latency on the (mostly log-scale) features."""

    name = "linear"

    def __init__(self, alpha: float = 1.0, analytical_features: bool = True,
                 specs: Mapping[str, TargetSpec] | None = None) -> None:
        super().__init__(analytical_features=analytical_features, specs=specs)
        self.alpha = alpha

    def _engine(self) -> LinearEngine:
        return LinearEngine(self.alpha)
