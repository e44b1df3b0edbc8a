"""Adapting a predictor trained on one machine to another with a few dozen measurements.

Two steps, both on store frames:

1. ``select_measurements(base, pool, budget, specs)``: which ``budget`` rows of a candidate pool
   (operators x schedules x thread counts, not yet measured) inform most.  Diversity: the pool is cut
   into ``budget`` regions of a standardised feature space (operator sizes, kind, threads, schedule
   summary, the analytical terms) by a weighted k-means, and the row nearest each region's centre is
   measured.  Uncertainty: each row weighs ``1 + disagreement / median disagreement``, where the
   disagreement is how far the base predictor and the new machine's analytical model part on the row
   (``|log base - log analytical - median|``, a two-member committee: where they disagree the base
   has least to say about this machine), so disputed rows pull the regions' centres towards them.
2. ``AdaptedPredictor(base).fit(rows)``: a per-machine correction on top of the base predictor,
   ``prediction = base(row) x exp(correction(row))``, the correction regressing ``log(measured / base)``
   on the rows' features (which include the new machine's ``m_*`` features and analytical estimate
   from its spec, measured by ``opscope probe`` when it was run).  ``correction`` is ``"boost"``
   (shallow gradient-boosted trees, started at the median residual), ``"ridge"`` (a ridge on a few
   operator-level features), ``"shift"`` (the median residual alone), ``"auto"`` (the one of those three
   with the lowest median error when cross-validated over the rows' operators, each fold holding out
   whole operators, so the choice is made for operators the rows do not contain; boosting only from
   ``BOOST_MIN_ROWS`` rows) or ``"blend"`` (default: the same cross-validation, then every candidate
   fitted on all rows and their log corrections averaged with weights inversely proportional to their
   cross-validated median error: on a few dozen rows the cross-validated errors are close and noisy,
   and choosing one of them moved the result more than averaging does).  Both also weigh leaving the
   base as it is (``"none"``), whose error is the base's own on the rows: where no correction beats it
   in that cross-validation, none is applied (a base that already knows a machine of the same kind
   was made worse by 50 rows' correction, docs/predictor.md).

``save_adapted`` writes a predictor directory (``metadata.json`` with both trainings: the base's
summary under ``base_training`` and the adaptation rows' under ``training``; the base predictor in
``base/``; the correction in its own format); ``load_adapted`` reads it back, refusing a base whose
feature schema differs from the running code (``load_predictor``'s check).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opscope.errors import PredictorError
from opscope.predictor.features.build import FeatureSchema, build_features, fit_schema, specs_from
from opscope.predictor.frames import LABEL
from opscope.predictor.models.base import FramePredictor
from opscope.predictor.models.persist import (
    FORMAT,
    FORMAT_VERSION,
    METADATA,
    library_versions,
    load_predictor,
    read_metadata,
    save_predictor,
    training_summary,
)
from opscope.predictor.models.xgb import file_names, read_booster
from opscope.targets.spec import TargetSpec

CORRECTIONS = ("blend", "auto", "boost", "ridge", "shift", "none")
#: what ``auto`` chooses among, simplest first (a tie goes to the simpler one)
_AUTO = ("shift", "ridge", "boost")
#: ``auto`` considers boosting only from this many rows: below it, trees of depth 2 with at least two rows
#: per leaf are fitted to a handful of operators and, measured on held-out ones, cost ranking accuracy
BOOST_MIN_ROWS = 30
BASE_DIR = "base"
CORRECTION_FILE = "correction.json"
NAME = "adapted"

#: the features the diversity distance and the ridge correction use (standardised; NaN -> 0)
DESIGN = ("f_flops_log2", "f_bytes_log2", "f_intensity_log2", "k_conv2d", "k_dense", "k_depthwise_conv2d",
          "k_batch_matmul", "k_matmul", "k_pool", "k_softmax", "t_threads_log2", "t_share_cores", "s_default",
          "sk_inner_vol_log2", "sk_l1_vol_log2", "sk_outer_iters_log2", "r_par_balance", "r_inner_vs_l1_log2",
          "r_l1_vs_l2_log2", "a_compute_threads_log2", "a_latency_log2")
#: the ridge correction's features: operator scale and kind, threads, default schedule
RIDGE = ("t_threads_log2", "f_flops_log2", "f_intensity_log2", "s_default", "k_conv2d", "k_dense",
         "k_depthwise_conv2d", "k_batch_matmul", "a_compute_threads_log2", "f_bytes_log2")


@dataclass(frozen=True)
class Selection:
    """Rows of the pool chosen to measure, in the order picked."""

    indices: tuple[int, ...]
    requested: int
    available: int
    #: one line for the user, e.g. that the budget exceeded the candidates
    note: str = ""


def design_matrix(frame: pd.DataFrame, specs: Mapping[str, TargetSpec] | Any = None,
                  columns: tuple[str, ...] = DESIGN) -> tuple[np.ndarray, np.ndarray]:
    """(the named feature columns for ``frame``, NaN kept; the analytical latency with threads)."""
    schema = fit_schema(frame, analytical=True)
    feats = build_features(frame, schema, specs_from(specs))
    col = {c: i for i, c in enumerate(feats.columns)}
    out = np.full((len(frame), len(columns)), np.nan)
    for j, name in enumerate(columns):
        if name == "t_threads_log2":
            out[:, j] = np.log2(feats.X[:, col["t_threads"]])
        elif name in col:
            out[:, j] = feats.X[:, col[name]]
    return out, feats.analytical_threads_s


def _standardise(X: np.ndarray, center: np.ndarray | None = None,
                 scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if center is None:
        with warnings.catch_warnings():  # an all-NaN column (a feature no row has) is centred at 0
            warnings.simplefilter("ignore", RuntimeWarning)
            center = np.nan_to_num(np.nanmean(X, axis=0)) if len(X) else np.zeros(X.shape[1])
            scale = np.nan_to_num(np.nanstd(X, axis=0))
        scale = np.where(scale > 1e-12, scale, 1.0)
    Z = (X - center) / scale
    return np.nan_to_num(Z, nan=0.0, posinf=0.0, neginf=0.0), center, scale


def select_measurements(base: FramePredictor, pool: pd.DataFrame, budget: int,
                        specs: Mapping[str, TargetSpec] | Any = None, seed: int = 0,
                        prepared: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                        uncertainty: bool = True) -> Selection:
    """The ``budget`` rows of ``pool`` to measure (see the module docstring); all of them when fewer.

    ``prepared`` is ``(design matrix, analytical latency, base prediction)`` of the pool when the caller
    chooses several budgets from one pool (``design_matrix`` and ``base.predict`` computed once);
    ``uncertainty=False`` weighs every row the same (diversity alone).
    """
    if budget < 0:
        raise PredictorError(f"budget must be >= 0, got {budget}")
    n = len(pool)
    if budget >= n:
        note = (f"budget {budget} >= the {n} candidates: measuring all of them" if budget > n else "")
        return Selection(tuple(range(n)), budget, n, note)
    if budget == 0:
        return Selection((), 0, n)
    if prepared is None:
        X, analytical = design_matrix(pool, specs)
        base_pred = base.predict(pool)
    else:
        X, analytical, base_pred = prepared
    Z, _, _ = _standardise(X)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.log(base_pred) - np.log(analytical)
    gap = np.where(np.isfinite(gap), gap, np.nan)
    dis = np.abs(gap - np.nanmedian(gap)) if np.isfinite(gap).any() else np.zeros(n)
    weight = 1.0 + np.nan_to_num(dis) / (np.nanmedian(dis) + 1e-9 if np.isfinite(dis).any() else 1.0)
    if not uncertainty:  # diversity alone (every row weighs the same)
        weight = np.ones(n)
    chosen = _weighted_medoids(Z, weight, budget, seed)
    return Selection(tuple(chosen), budget, n)


def _sqdist(Z: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared distances between the rows of ``Z`` and of ``C`` (rows x centres), without a 3-D temporary."""
    return np.maximum((Z**2).sum(axis=1)[:, None] - 2.0 * Z @ C.T + (C**2).sum(axis=1)[None, :], 0.0)


def _weighted_medoids(Z: np.ndarray, weight: np.ndarray, k: int, seed: int, iterations: int = 20) -> list[int]:
    """``k`` distinct rows: the medoids of a weighted k-means of ``Z`` (k-means++ start, seeded).

    Each cluster is a region of the feature space; its medoid is the row nearest the weighted centre,
    so the picks are typical rows of regions that cover the pool (not its extremes, which a small
    correction fitted on them would extrapolate from), and rows the committee disputes pull the centres.
    """
    rng = np.random.default_rng(seed)
    n = len(Z)
    centres = [Z[int(np.argmax(weight))]]
    d2 = np.sum((Z - centres[0]) ** 2, axis=1)
    for _ in range(k - 1):
        p = d2 * weight
        total = p.sum()
        i = int(rng.choice(n, p=p / total)) if total > 0 else int(rng.integers(n))
        centres.append(Z[i])
        d2 = np.minimum(d2, np.sum((Z - Z[i]) ** 2, axis=1))
    C = np.array(centres)
    for _ in range(iterations):
        assign = np.argmin(_sqdist(Z, C), axis=1)
        newc = C.copy()
        for j in range(k):
            m = assign == j
            if m.any():
                newc[j] = np.average(Z[m], axis=0, weights=weight[m])
        if np.allclose(newc, C):
            break
        C = newc
    dist = _sqdist(Z, C)
    picks: list[int] = []
    taken = np.zeros(n, dtype=bool)
    for j in np.argsort(np.bincount(np.argmin(dist, axis=1), minlength=k))[::-1]:  # biggest clusters first
        order = np.argsort(dist[:, j], kind="stable")
        i = int(next(r for r in order if not taken[r]))
        picks.append(i)
        taken[i] = True
    return picks


def blend_weights(cv_errors: Mapping[str, float]) -> dict[str, float]:
    """The ``blend`` correction's weights: each cross-validated correction's weight inversely
    proportional to its median error (floored at 0.001), summing to 1, in ``_AUTO`` order."""
    inverse = {c: 1.0 / max(float(cv_errors[c]), 1e-3) for c in _AUTO if c in cv_errors}
    total = sum(inverse.values())
    return {c: v / total for c, v in inverse.items()}


class AdaptedPredictor(FramePredictor):
    """A fitted base predictor times a per-machine correction learned on a few rows of the new machine."""

    name = NAME

    def __init__(self, base: FramePredictor | None = None, correction: str = "blend", n_estimators: int = 40,
                 max_depth: int = 2, learning_rate: float = 0.2, alpha: float = 10.0, seed: int = 0,
                 specs: Mapping[str, TargetSpec] | None = None) -> None:
        self.base = base
        self.correction = correction
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.alpha = alpha
        self.seed = seed
        self.specs = specs

    def _check_base(self) -> FramePredictor:
        if self.base is None:
            raise PredictorError("AdaptedPredictor: give the fitted base predictor (base=...)")
        return self.base

    def fit(self, frame: pd.DataFrame, y: np.ndarray | None = None) -> AdaptedPredictor:
        if self.correction not in CORRECTIONS:
            raise PredictorError(f"correction {self.correction!r} unknown; known: {', '.join(CORRECTIONS)}")
        base = self._check_base()
        frame, y = self._training_frame(frame, y)
        base_pred = base.predict(frame)
        method = self.correction
        self.__dict__.pop("weights_", None)
        if method in ("auto", "blend"):
            self.cv_errors_ = self._cross_validate(frame, y, base_pred)
            corrected = min(self.cv_errors_.values())
            if len(self.cv_errors_) > 1 or corrected > 0:  # (0.0: too few operators to cross-validate)
                self.cv_errors_["none"] = float(np.median(np.abs(base_pred - y) / y))
                if self.cv_errors_["none"] <= corrected:
                    method = "none"  # no correction beats the base on operators it was not fitted to
        if method == "auto":
            method = min(_AUTO, key=lambda c: (self.cv_errors_.get(c, math.inf), _AUTO.index(c)))
        self.chosen_ = method
        if method == "none":
            self._fit_one(frame, y, base_pred, "shift")
            self.weights_ = {"none": 1.0}
            if self.correction != "none":
                self.chosen_ = f"none (the base as it is: no {self.correction} correction beat it)"
        elif method == "blend":
            self._fit_one(frame, y, base_pred, *blend_weights(self.cv_errors_))
            fitted = {"shift": True, "ridge": hasattr(self, "coef_"), "boost": self.engine_ is not None}
            weights = blend_weights({c: e for c, e in self.cv_errors_.items() if fitted.get(c)})
            self.weights_ = weights
            self.chosen_ = "blend (" + ", ".join(f"{c} {w:.2f}" for c, w in weights.items()) + ")"
        else:
            self._fit_one(frame, y, base_pred, method)
        return self

    def _cross_validate(self, frame: pd.DataFrame, y: np.ndarray, base_pred: np.ndarray) -> dict[str, float]:
        """Median APE of each correction on held-out operators of the rows (up to 5 folds of workloads)."""
        keys = frame["workload_key"].astype(str).to_numpy() if "workload_key" in frame else np.arange(len(frame))
        uniq = np.unique(keys)
        if len(uniq) < 3 or len(frame) < 6:
            return {"shift": 0.0}  # too few operators to tell the corrections apart: the simplest
        order = np.random.default_rng(self.seed).permutation(uniq)
        folds = np.array_split(order, min(5, len(uniq)))
        tried = [c for c in _AUTO if c != "boost" or len(frame) >= BOOST_MIN_ROWS]
        errors: dict[str, list[np.ndarray]] = {c: [] for c in tried}
        for held in folds:
            test = np.isin(keys, held)
            train = frame[~test].reset_index(drop=True)
            for c in tried:
                one = AdaptedPredictor(self.base, c, self.n_estimators, self.max_depth, self.learning_rate,
                                       self.alpha, self.seed, self.specs)
                one._fit_one(train, y[~test], base_pred[~test], c)
                pred = base_pred[test] * one.correction_factor(frame[test].reset_index(drop=True))
                errors[c].append(np.abs(pred - y[test]) / y[test])
        return {c: float(np.median(np.concatenate(v))) for c, v in errors.items()}

    def _fit_one(self, frame: pd.DataFrame, y: np.ndarray, base_pred: np.ndarray, *methods: str) -> None:
        """Fit the named corrections (a blend fits several: they share the offset)."""
        for stale in ("coef_", "center_", "scale_"):
            self.__dict__.pop(stale, None)
        resid = np.log(y) - np.log(base_pred)
        self.offset_ = float(np.median(resid))
        self.n_train_ = len(frame)
        self.schema_ = fit_schema(frame, analytical=True)
        self.engine_: Any = None
        if "boost" in methods and len(frame) >= 2:
            import xgboost as xgb

            feats = build_features(frame, self.schema_, specs_from(self.specs))
            params = {"objective": "reg:squarederror", "tree_method": "exact", "max_depth": self.max_depth,
                      "eta": self.learning_rate, "lambda": 1.0, "min_child_weight": 2.0, "seed": self.seed,
                      "base_score": self.offset_, "nthread": 1}
            self.engine_ = xgb.train(params, xgb.DMatrix(feats.X, label=resid, missing=np.nan),
                                     num_boost_round=self.n_estimators)
        if "ridge" in methods and len(frame) >= 2:
            X, _ = design_matrix(frame, self.specs, RIDGE)
            Z, self.center_, self.scale_ = _standardise(X)
            A = Z.T @ Z + self.alpha * np.eye(Z.shape[1])
            self.coef_ = np.linalg.solve(A, Z.T @ (resid - self.offset_))

    def _log_part(self, frame: pd.DataFrame, method: str) -> np.ndarray:
        """One correction's log factor per row (a correction not fitted, as with fewer than two rows,
        is the shift)."""
        if method == "none":
            return np.zeros(len(frame))
        if method == "boost" and self.engine_ is not None:
            import xgboost as xgb

            feats = build_features(frame, self.schema_, specs_from(self.specs))
            return np.asarray(self.engine_.predict(xgb.DMatrix(feats.X, missing=np.nan)), dtype=float)
        if method == "ridge" and hasattr(self, "coef_"):
            X, _ = design_matrix(frame, self.specs, RIDGE)
            Z, _, _ = _standardise(X, self.center_, self.scale_)
            return self.offset_ + Z @ self.coef_
        return np.full(len(frame), self.offset_)

    def correction_factor(self, frame: pd.DataFrame) -> np.ndarray:
        """exp(correction) per row: what the base prediction is multiplied by."""
        if not hasattr(self, "offset_"):
            raise PredictorError("AdaptedPredictor: predict called before fit")
        weights = getattr(self, "weights_", None)
        if weights:
            return np.exp(sum(w * self._log_part(frame, c) for c, w in weights.items()))
        if self.engine_ is not None:
            return np.exp(self._log_part(frame, "boost"))
        if hasattr(self, "coef_"):
            return np.exp(self._log_part(frame, "ridge"))
        return np.full(len(frame), math.exp(self.offset_))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        base = self._check_base()
        return base.predict(frame) * self.correction_factor(frame)


def save_adapted(pred: AdaptedPredictor, directory: str | Path, training: pd.DataFrame | None = None,
                 label: str = LABEL, adaptation: Mapping[str, Any] | None = None) -> Path:
    """Write the adapted predictor: base in ``base/``, the correction beside, both trainings in metadata."""
    if not hasattr(pred, "offset_"):
        raise PredictorError("cannot save an unfitted AdaptedPredictor; call fit first")
    base = pred._check_base()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    base_training = getattr(pred, "base_training_", None) or getattr(base, "base_training_", None)
    save_predictor(base, directory / BASE_DIR)
    base_meta = read_metadata(directory / BASE_DIR)
    if base_training is not None:  # the base's own training summary, carried from where it was loaded
        base_meta["training"] = base_training
        (directory / BASE_DIR / METADATA).write_text(json.dumps(base_meta, indent=1, sort_keys=True, default=str))
    correction: dict[str, Any] = {"offset": pred.offset_, "chosen": getattr(pred, "chosen_", pred.correction),
                                  "cv_median_ape": getattr(pred, "cv_errors_", None)}
    if getattr(pred, "weights_", None):
        correction["weights"] = dict(pred.weights_)
    if pred.engine_ is not None:
        pred.engine_.save_model(str(directory / "correction.xgb.json"))
        correction["file"] = "correction.xgb.json"
    if hasattr(pred, "coef_"):
        correction.update(columns=list(RIDGE), center=pred.center_.tolist(), scale=pred.scale_.tolist(),
                          coef=pred.coef_.tolist())
    (directory / CORRECTION_FILE).write_text(json.dumps(correction, indent=1))
    params = {k: v for k, v in pred.get_params(deep=False).items() if k not in ("specs", "base")}
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "predictor": NAME, "params": params,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(), "label": label, "n_train": int(pred.n_train_),
        "schema": pred.schema_.to_dict(), "engine": {"engine": "adapted", "file": CORRECTION_FILE},
        "base": {"dir": BASE_DIR, "predictor": base_meta.get("predictor"), "label": base_meta.get("label")},
        "base_training": base_meta.get("training"),
        "training": training_summary(training) if training is not None else None,
        "adaptation": dict(adaptation or {}),
    }
    (directory / METADATA).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
    return directory


def load_adapted(directory: str | Path, specs: Any = None) -> AdaptedPredictor:
    """Read what ``save_adapted`` wrote; every problem is one PredictorError line naming the file."""
    directory = Path(directory)
    meta = read_metadata(directory)
    where = directory / METADATA
    if meta.get("predictor") != NAME:
        raise PredictorError(f"{where}: predictor {meta.get('predictor')!r} is not an adapted predictor")
    base = load_predictor(directory / BASE_DIR, specs=specs)
    try:
        params = {k: v for k, v in meta["params"].items() if k not in ("base", "specs")}
        pred = AdaptedPredictor(base=base, specs=specs, **params)
    except (KeyError, TypeError) as exc:
        raise PredictorError(f"{where}: field 'params' does not fit an adapted predictor ({exc})") from None
    schema = FeatureSchema.from_dict(meta.get("schema") or {})
    schema.check_current(str(where))
    pred.schema_ = schema
    path = directory / CORRECTION_FILE
    try:
        corr = json.loads(path.read_text(encoding="utf-8"))
        pred.offset_ = float(corr["offset"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PredictorError(f"{path}: not a readable correction ({exc})") from None
    pred.engine_ = None
    if "file" in corr:
        if not file_names([corr["file"]]):
            raise PredictorError(f"{path}: field 'file' {corr['file']!r} is not a file in the predictor folder")
        pred.engine_ = read_booster(directory / corr["file"])
    if "coef" in corr:
        pred.center_, pred.scale_ = np.asarray(corr["center"], float), np.asarray(corr["scale"], float)
        pred.coef_ = np.asarray(corr["coef"], float)
    if "weights" in corr:
        weights = corr["weights"]
        ok = (isinstance(weights, dict) and weights and all(c in (*_AUTO, "none") for c in weights)
              and all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                      for w in weights.values()) and abs(sum(weights.values()) - 1.0) < 1e-6)
        if not ok:
            raise PredictorError(f"{path}: field 'weights' must map {', '.join((*_AUTO, 'none'))} to weights >= 0 "
                                 f"summing to 1, got {weights!r}")
        if (weights.get("boost", 0) > 0 and pred.engine_ is None) or (weights.get("ridge", 0) > 0 and "coef" not in corr):
            raise PredictorError(f"{path}: field 'weights' {weights!r} names a correction the file does not hold")
        pred.weights_ = {c: float(w) for c, w in weights.items()}
    pred.chosen_ = str(corr.get("chosen", pred.correction))
    pred.n_train_ = int(meta.get("n_train", 0))
    pred.base_training_ = meta.get("base_training")
    return pred
