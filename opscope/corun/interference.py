"""The interference model: a task's co-run latency from its alone latency and what it contends for.

It learns the slowdown (together / alone) of a task beside its partners, in log space, from rows
of ``corun_frame`` (one row per member of a co-run), and predicts the co-run latency as
``alone_s * predicted slowdown``.  Features: both alone latencies and their ratio, bytes and
intensity of both sides, and the contention features of ``opscope.corun.contention`` (bandwidth
demand against the probed bandwidth of the level each working set lives in, both demands against
the shared levels, working sets against the last cache, threads per core, oversubscription).
One model per group (shared or disjoint cores: the two behave differently), XGBoost with a
pseudo-Huber loss (oversubscribed shared runs give rare, huge slowdowns) or ridge regression.

It must earn its place.  ``fit`` also validates it on held-out pairs (group k-fold over
``pair_id``, ``opscope.corun.held_out``) against two baselines fitted on the same folds: ``no_interference`` (co-run =
alone) and ``median_slowdown`` (the training rows' median per arrangement kind).  Per kind, the
method with the smallest held-out median error is the one ``estimate`` uses, with that method's
90th-percentile held-out error as the error bound the chooser (``opscope.corun.chooser``) weighs
a predicted gain against.  ``predict`` is always the learned model itself.

The estimators follow the scikit-learn contract (``BaseEstimator``: ``__init__`` stores
hyperparameters, ``fit`` returns self, learned state ends in ``_``); the model saves as JSON plus
XGBoost's own JSON model, never pickle.

Evaluation holds out *pairs* (``pair_split``: every row of a pair, both members, every
arrangement, on one side) or *operators* (``operator_split``: every pair an operator is in), so
a test pair is one the model never saw co-running.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from opscope.corun.contention import CONTENTION_FEATURES, MemoryHierarchy, contention_features
from opscope.corun.held_out import (
    BOUND_QUANTILE,
    KINDS,
    METHODS,
    HeldOutError,
    MedianSlowdown,
    NoInterference,
    finite_rows,
    group_folds,
    held_out_errors,
    operator_split,
    pair_keys,
    pair_split,
)
from opscope.errors import PredictorError

BASE_FEATURES = ("log_alone", "log_partner_alone", "log_bytes", "log_partner_bytes", "log_intensity",
                 "log_partner_intensity", "cores", "total_cores", "shared", "pinned", "partners")
FEATURES = BASE_FEATURES + CONTENTION_FEATURES
#: what the linear learner reads: few rows (tens of pairs) cannot carry more coefficients
LINEAR_FEATURES = ("log_alone", "bw_util", "partner_bw_util", "shared_bw_util", "ws_ratio", "oversubscription",
                   "overlap")
LEARNERS = ("xgboost", "linear")
__all__ = ["BOUND_QUANTILE", "FEATURES", "KINDS", "LEARNERS", "METHODS", "HeldOutError", "InterferenceModel",
           "MedianSlowdown", "NoInterference", "evaluate_interference", "features", "group_folds", "held_out_errors",
           "operator_split", "pair_keys", "pair_split"]
_REQUIRED = ("alone_s", "partner_alone_s", "bytes", "partner_bytes", "intensity", "partner_intensity",
             "threads", "partner_threads", "cores", "total_cores", "shared", "pinned", "partners", "kind")


def features(frame: pd.DataFrame, memory: MemoryHierarchy) -> pd.DataFrame:
    """The model's feature matrix for ``corun_frame`` rows (a PredictorError names missing columns)."""
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise PredictorError(f"interference frame lacks columns {missing}")
    f = pd.DataFrame(index=frame.index)
    f["log_alone"] = np.log(frame["alone_s"].astype(float).clip(lower=1e-9))
    f["log_partner_alone"] = np.log(frame["partner_alone_s"].astype(float).clip(lower=1e-9))
    for side in ("", "partner_"):
        f[f"log_{side}bytes"] = np.log1p(frame[f"{side}bytes"].astype(float))
        f[f"log_{side}intensity"] = np.log1p(frame[f"{side}intensity"].astype(float))
    for c in ("cores", "total_cores", "shared", "pinned", "partners"):
        f[c] = frame[c].astype(float)
    return pd.concat([f, contention_features(frame, memory)], axis=1)[list(FEATURES)]


# -- the learned model ---------------------------------------------------------------------------
class InterferenceModel(BaseEstimator, RegressorMixin):
    """Predicts co-run latency (seconds) of each ``corun_frame`` row; see the module docstring.

    ``memory``: the ``MemoryHierarchy`` the contention features are computed against (None: this
    host's at ``fit``).  ``validation_folds``: held-out folds for the model's own validation (0:
    none, then ``estimate`` uses nothing and the chooser keeps to sequential).
    """

    def __init__(self, learner: str = "linear", n_estimators: int = 200, max_depth: int = 2,
                 learning_rate: float = 0.08, alpha: float = 3.0, huber_slope: float = 0.3,
                 per_kind: bool = True, seed: int = 0, memory: MemoryHierarchy | None = None,
                 validation_folds: int = 5):
        self.learner = learner
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.alpha = alpha
        self.huber_slope = huber_slope
        self.per_kind = per_kind
        self.seed = seed
        self.memory = memory
        self.validation_folds = validation_folds

    # -- fitting ------------------------------------------------------------------------------
    def _new_model(self):
        if self.learner == "xgboost":
            import xgboost as xgb

            extra = ({"objective": "reg:pseudohubererror", "huber_slope": self.huber_slope}
                     if self.huber_slope > 0 else {})
            return xgb.XGBRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                    learning_rate=self.learning_rate, random_state=self.seed, n_jobs=1,
                                    subsample=0.9, **extra)
        if self.learner == "linear":
            return _Linear(self.alpha, [FEATURES.index(f) for f in LINEAR_FEATURES])
        raise PredictorError(f"unknown interference learner {self.learner!r}; known: {', '.join(LEARNERS)}")

    def _fit_one(self, rows: pd.DataFrame, memory: MemoryHierarchy):
        model = self._new_model()
        y = np.log(rows["slowdown"].astype(float).clip(lower=1e-6).to_numpy())
        if self.learner == "xgboost":
            # start from the median: XGBoost's own intercept estimate goes astray under the
            # pseudo-Huber loss when the targets are (nearly) constant
            model.set_params(base_score=float(np.median(y)))
        model.fit(features(rows, memory).to_numpy(), y)
        return _Clipped(model, float(y.min()), float(y.max()))

    def fit(self, frame: pd.DataFrame, y=None) -> InterferenceModel:
        """Fit on rows with a finite slowdown (one model per shared/disjoint group with
        ``per_kind``, plus one on all rows for a group absent from training), then validate on
        held-out pairs against the baselines."""
        everything = finite_rows(frame)
        rows = everything[everything["kind"] != "sequential"] if "kind" in everything else everything
        if len(rows) < 2:
            raise PredictorError(f"interference model needs at least 2 co-run rows with a slowdown, got {len(rows)}")
        memory = self.memory or MemoryHierarchy.of_host()
        features(rows, memory)  # names missing columns before any fitting
        models = {"all": self._fit_one(rows, memory)}
        if self.per_kind:
            for group, sub in rows.groupby(rows["shared"].astype(int)):
                if len(sub) >= 2:
                    models[str(group)] = self._fit_one(sub, memory)
        self.models_ = models
        self.memory_ = memory
        self.feature_names_ = list(FEATURES)
        self.n_train_ = int(len(rows))
        self.baseline_ = MedianSlowdown().fit(everything)
        self.validation_ = []
        if self.validation_folds and everything["pair_id"].nunique() >= 2:
            params = dict(self.get_params(), memory=memory, validation_folds=0)
            self.validation_ = held_out_errors(lambda: InterferenceModel(**params), everything,
                                               self.validation_folds, self.seed)
        self.method_ = self._methods()
        return self

    def _methods(self) -> dict[str, str]:
        """Per kind, the method with the smallest held-out median error (the model must beat both)."""
        out = {}
        for kind in KINDS:
            errs = {e.method: e for e in self.validation_ if e.kind == kind and e.errors}
            if errs:
                out[kind] = min(METHODS, key=lambda m: (errs[m].median, METHODS.index(m)) if m in errs else
                                (math.inf, 0))
        return out

    # -- predicting -----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise PredictorError("interference model is not fitted")

    def predict_slowdown(self, frame: pd.DataFrame) -> np.ndarray:
        self._check_fitted()
        x = features(frame, self.memory_).to_numpy()
        out = self.models_["all"].predict(x).astype(float)
        if self.per_kind:
            groups = frame["shared"].astype(int).astype(str).to_numpy()
            for g, model in self.models_.items():
                mask = groups == g
                if g != "all" and mask.any():
                    out[mask] = model.predict(x[mask])
        return np.exp(out)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted co-run latency, seconds: alone latency x predicted slowdown."""
        return frame["alone_s"].astype(float).to_numpy() * self.predict_slowdown(frame)

    def validation(self, kind: str, method: str) -> HeldOutError | None:
        self._check_fitted()
        return next((e for e in self.validation_ if e.kind == kind and e.method == method), None)

    def estimate(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        """(co-run latency s, error bound, method) per row: per kind the held-out best method and
        its ``BOUND_QUANTILE`` held-out error (inf where the kind was never validated)."""
        self._check_fitted()
        kinds = frame["kind"].astype(str).to_numpy()
        corun = kinds != "sequential"
        model = np.full(len(frame), np.nan)
        if corun.any():
            model[corun] = self.predict(frame[corun])
        base = self.baseline_.predict(frame)
        alone = frame["alone_s"].astype(float).to_numpy()
        pred, bound, methods = alone.copy(), np.full(len(frame), math.inf), []
        for i, kind in enumerate(kinds):
            method = self.method_.get(kind, "no_interference")
            pred[i] = {"model": model[i], "median_slowdown": base[i]}.get(method, alone[i])
            err = self.validation(kind, method) if kind in self.method_ else None
            bound[i] = err.bound if err is not None else math.inf
            methods.append(method)
        return pred, bound, tuple(methods)

    def summary(self) -> str:
        """One line per kind: held-out median error of each method, the one used, its bound."""
        self._check_fitted()
        lines = []
        for kind in KINDS:
            errs = [self.validation(kind, m) for m in METHODS]
            if not any(e is not None and e.errors for e in errs):
                lines.append(f"{kind}: not validated (no held-out rows): predictions are not used")
                continue
            parts = ", ".join(f"{e.method} {e.median * 100:.1f}%" for e in errs if e is not None and e.errors)
            used = self.method_[kind]
            lines.append(f"{kind}: held-out median error {parts}; uses {used} "
                         f"(error bound {self.validation(kind, used).bound * 100:.0f}%)")
        return "\n".join(lines)

    # -- persistence: JSON + the learner's native format, never pickle --------------------------
    def save(self, directory: str | Path) -> Path:
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        params = {k: v for k, v in self.get_params().items() if k != "memory"}
        meta = {"kind": "opscope.corun.InterferenceModel", "format": 2, "params": params,
                "memory": self.memory_.to_dict(), "features": self.feature_names_, "n_train": self.n_train_,
                "groups": sorted(self.models_), "linear": {}, "median_slowdown": self.baseline_.by_kind_,
                "median_slowdown_all": self.baseline_.overall_, "methods": self.method_,
                "validation": [dict(e.to_dict(), errors=list(e.errors)) for e in self.validation_]}
        meta["clip"] = {g: [m.low, m.high] for g, m in self.models_.items()}
        for g, model in self.models_.items():
            if self.learner == "xgboost":
                model.model.save_model(str(d / f"model_{g}.json"))
            else:
                meta["linear"][g] = model.model.to_dict()
        (d / "metadata.json").write_text(json.dumps(meta, indent=2))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> InterferenceModel:
        d = Path(directory)
        try:
            meta = json.loads((d / "metadata.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PredictorError(f"{d / 'metadata.json'}: cannot read interference model: {exc}") from None
        if meta.get("kind") != "opscope.corun.InterferenceModel":
            raise PredictorError(f"{d}: not an interference model (kind {meta.get('kind')!r})")
        if meta.get("format") != 2 or meta.get("features") != list(FEATURES):
            raise PredictorError(f"{d}: saved by another opscope (format {meta.get('format')}, features "
                                 f"{meta.get('features')}); fit it again")
        try:
            memory = MemoryHierarchy.from_dict(meta["memory"])
            self = cls(**meta["params"], memory=memory)
            models = {}
            for g in meta["groups"]:
                if self.learner == "xgboost":
                    model = self._new_model()
                    model.load_model(str(d / f"model_{g}.json"))
                else:
                    model = _Linear.from_dict(meta["linear"][g])
                models[g] = _Clipped(model, *(float(x) for x in meta["clip"][g]))
            baseline = MedianSlowdown()
            baseline.by_kind_ = {str(k): float(v) for k, v in meta["median_slowdown"].items()}
            baseline.overall_ = float(meta["median_slowdown_all"])
            validation = [HeldOutError(e["method"], e["kind"], tuple(e["errors"])) for e in meta["validation"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictorError(f"{d / 'metadata.json'}: damaged interference model ({exc})") from None
        self.models_, self.memory_, self.baseline_ = models, memory, baseline
        self.feature_names_ = list(FEATURES)
        self.n_train_ = int(meta["n_train"])
        self.validation_ = validation
        self.method_ = dict(meta["methods"])
        return self


class _Clipped:
    """A learner whose log-slowdown predictions stay inside the range seen in training: an
    operator unlike any training one must not extrapolate to a 1e170x slowdown."""

    def __init__(self, model, low: float, high: float):
        self.model, self.low, self.high = model, low, high

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.clip(self.model.predict(x), self.low, self.high)


class _Linear:
    """Huber regression (robust to the rare starved run) on a few standardised features, stored as
    plain numbers; ``columns`` are the feature positions it reads.  Features are clipped to their
    training range before predicting: a line fitted on a few operators must not be extended far
    past them."""

    def __init__(self, alpha: float, columns: list[int]):
        self.alpha = alpha
        self.columns = list(columns)

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Linear:
        from sklearn.linear_model import HuberRegressor

        x = x[:, self.columns]
        self.low_, self.high_ = x.min(axis=0), x.max(axis=0)
        self.mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        r = HuberRegressor(alpha=self.alpha, max_iter=500).fit((x - self.mean_) / self.scale_, y)
        self.coef_, self.intercept_ = np.asarray(r.coef_, float), float(r.intercept_)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.clip(x[:, self.columns], self.low_, self.high_)
        return ((x - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "columns": self.columns, "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "coef": self.coef_.tolist(), "intercept": self.intercept_,
                "low": self.low_.tolist(), "high": self.high_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> _Linear:
        self = cls(float(d["alpha"]), [int(c) for c in d["columns"]])
        self.mean_, self.scale_ = np.array(d["mean"], float), np.array(d["scale"], float)
        self.coef_, self.intercept_ = np.array(d["coef"], float), float(d["intercept"])
        self.low_, self.high_ = np.array(d["low"], float), np.array(d["high"], float)
        return self


# -- held-out evaluation ----------------------------------------------------------------------
def _errors(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    rel = np.abs(predicted - measured) / measured
    return {"mape": float(np.mean(rel) * 100), "within_10pct": float(np.mean(rel <= 0.10) * 100),
            "median_ape": float(np.median(rel) * 100)}


def evaluate_interference(frame: pd.DataFrame, model: InterferenceModel | None = None, test_fraction: float = 0.25,
                          seeds: tuple[int, ...] = (0, 1, 2, 3, 4), split: str = "pairs") -> pd.DataFrame:
    """Error on held-out pairs (``split="pairs"``: ``pair_split`` per seed) or held-out operators
    (``"operators"``: each operator in turn, ``operator_split``) for the model and the two
    baselines, one row per (fold, method, kind), ``kind`` being ``all`` or an arrangement kind.

    Errors are on co-run latency: MAPE (%), share within 10% (%), median APE (%).  Sequential
    rows (no co-run) are left out.
    """
    frame = finite_rows(frame)
    frame = frame[frame["kind"] != "sequential"].reset_index(drop=True)
    model = model or InterferenceModel()
    if split == "pairs":
        folds = [(f"seed{s}", *pair_split(frame, test_fraction, s)) for s in seeds]
    elif split == "operators":
        keys = sorted({k for p in frame["pair_id"] for k in pair_keys(p)})
        folds = [(k, *operator_split(frame, k)) for k in keys]
    else:
        raise PredictorError(f"split {split!r}: expected 'pairs' or 'operators'")
    params = dict(model.get_params(), validation_folds=0)
    rows = []
    for fold, tr, te in folds:
        train, test = frame.iloc[tr], frame.iloc[te]
        measured = test["together_s"].to_numpy(dtype=float)
        preds = {
            f"model_{model.learner}": InterferenceModel(**params).fit(train).predict(test),
            "no_interference": NoInterference().fit(train).predict(test),
            "median_slowdown": MedianSlowdown().fit(train).predict(test),
        }
        kinds = test["kind"].to_numpy()
        for name, p in preds.items():
            for kind in ("all", *sorted(set(kinds))):
                mask = np.ones(len(test), bool) if kind == "all" else kinds == kind
                rows.append({"fold": fold, "method": name, "kind": kind, "train_rows": len(train),
                             "test_rows": int(mask.sum()), "test_pairs": int(test["pair_id"][mask].nunique()),
                             **_errors(measured[mask], p[mask])})
    return pd.DataFrame(rows)
