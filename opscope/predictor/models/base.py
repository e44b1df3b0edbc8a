"""The predictor contract: scikit-learn estimators on store frames.

``fit(frame)`` takes a frame in the store's format (``docs/contracts.md``) and returns the predictor;
``predict(frame)`` returns latency in seconds, one per row.  ``__init__`` only stores
hyperparameters (so ``sklearn.base.clone`` works) and learned state ends in ``_``.  Learned
predictors regress log latency with a regression *engine* (XGBoost, a tree ensemble, a linear
model) on the features of ``opscope.predictor.features.build``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from opscope.errors import PredictorError
from opscope.predictor.features.build import (
    FeatureCache,
    Features,
    FeatureSchema,
    build_features,
    fit_schema,
    specs_from,
    threads_used,
)
from opscope.predictor.features.defaults import default_twins, measured_default_log
from opscope.predictor.features.estimates import SpecCache
from opscope.predictor.features.machine import machine_frame
from opscope.predictor.features.special import special_seconds, without_special
from opscope.predictor.frames import labels, ok_rows
from opscope.targets.spec import TargetSpec


class Engine(Protocol):
    """A regressor on a dense float matrix (NaN allowed) that can write itself to files."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> Engine: ...
    def predict(self, X: np.ndarray) -> np.ndarray: ...
    def save(self, directory: Any) -> dict[str, Any]: ...


class FramePredictor(BaseEstimator, RegressorMixin):
    """Base of every opscope predictor (see the module docstring)."""

    #: the name written in metadata.json and accepted by ``opscope train --model``
    name = "base"

    def fit(self, frame: pd.DataFrame, y: np.ndarray | None = None) -> FramePredictor:
        raise NotImplementedError

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def score(self, frame: pd.DataFrame, y: np.ndarray | None = None, sample_weight: Any = None) -> float:
        """R^2 of log latency (the scale the predictors are fitted on)."""
        truth = np.log(labels(frame) if y is None else np.asarray(y, dtype=float))
        pred = np.log(self.predict(frame))
        ss_res = float(np.sum((truth - pred) ** 2))
        ss_tot = float(np.sum((truth - truth.mean()) ** 2))
        return 1.0 - ss_res / ss_tot if ss_tot else 0.0

    def _machine_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the rows of every machine this predictor holds a spec of its own for
        (``machine:<id>``, a predictor trained on several machines) naming that spec as their target."""
        specs = getattr(self, "specs", None)
        names = specs.names() if isinstance(specs, SpecCache) else (list(specs) if specs else None)
        return machine_frame(frame, names)

    def _predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows as this fitted predictor reads them: each machine's own spec (``_machine_frame``), and
        a kind it never saw as its alias where it saw that (``KIND_ALIASES``)."""
        return aliased_kinds(self._machine_frame(frame), getattr(self, "training_ranges_", None))

    def _special_seconds(self, frame: pd.DataFrame) -> np.ndarray:
        """Seconds the rows' fused special functions (sigmoid, erf ...) add (``features.special``),
        for the predictors that learn without them and add them back."""
        threads = pd.to_numeric(frame["threads"], errors="coerce").fillna(1).to_numpy(dtype=float) \
            if "threads" in frame else np.ones(len(frame))
        return special_seconds(frame, specs_from(getattr(self, "specs", None)), threads_used(frame, threads))

    def _training_frame(self, frame: pd.DataFrame, y: np.ndarray | None,
                        needs_operators: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
        """The rows and labels to fit on.

        With ``needs_operators`` (every predictor that builds features), rows whose operator cannot be read (``operator_json`` that is not an operator) are left out,
        each with its reason in ``skipped_rows_`` (row label, reason): never fatal while others remain.
        Also records which workloads the predictor has seen (``training_workloads_``), so that reports
        can tell in-sample predictions from held-out ones.
        """
        if y is not None:
            y = np.asarray(y, dtype=float)
            if len(y) != len(frame):
                raise PredictorError(f"fit: {len(y)} labels for {len(frame)} rows")
            if not np.all(np.isfinite(y) & (y > 0)):
                raise PredictorError("fit: labels must be positive finite latencies in seconds")
            frame = frame.reset_index(drop=True)
        else:
            frame = ok_rows(frame)
            if frame.empty:
                raise PredictorError("fit: no rows with status 'ok' and a positive latency to learn from")
            y = labels(frame)
        keep, self.skipped_rows_ = _readable_operators(frame) if needs_operators else (np.ones(len(frame), bool), [])
        if not keep.all():
            if not keep.any():
                raise PredictorError(f"fit: no row has a readable operator ({self.skipped_rows_[0][1]})")
            frame, y = frame[keep].reset_index(drop=True), y[keep]
        if "workload_key" in frame:
            self.training_workloads_ = frozenset(frame["workload_key"].astype(str))
        self.training_ranges_ = training_ranges(frame)
        return frame, y


#: operator sizes whose training range is recorded per kind (store frame columns)
RANGE_COLUMNS = ("flops", "bytes")


#: a kind a predictor never saw -> the kind it is predicted as, where the predictor saw that one: a 2-D
#: product of two tensors (``matmul``: no operator space draws it; a GCN's adjacency products) is the
#: batch_matmul of batch 1 it amounts to, the same loop nest over operands laid out [m, k] and [k, n]
KIND_ALIASES = {"matmul": "batch_matmul"}


def aliased_kinds(frame: pd.DataFrame, seen: Any) -> pd.DataFrame:
    """``frame`` with the rows of a kind in ``KIND_ALIASES`` that is not among ``seen`` (the kinds a
    predictor learned), whose alias is, given the alias as their kind (column and ``operator_json``);
    the frame itself when there are none."""
    if not seen or "kind" not in frame:
        return frame
    swap = {k: v for k, v in KIND_ALIASES.items() if k not in seen and v in seen}
    kinds = frame["kind"].astype(str)
    rows = kinds.isin(list(swap)).to_numpy()
    if not rows.any():
        return frame
    import json

    out = frame.copy()
    new_kind = kinds[rows].map(swap)
    out.loc[rows, "kind"] = new_kind.to_numpy()
    if "operator_json" in out:
        def rewrite(text: Any, kind: str) -> Any:
            try:
                d = json.loads(text)
            except (TypeError, ValueError):
                return text  # unreadable: left for the features to name
            if not isinstance(d, dict):
                return text
            d["kind"] = kind
            return json.dumps(d)

        out.loc[rows, "operator_json"] = [rewrite(t, k) for t, k in zip(out.loc[rows, "operator_json"], new_kind)]
    return out


def training_ranges(frame: pd.DataFrame) -> dict[str, dict[str, list[float]]]:
    """Per operator kind, the [smallest, largest] FLOPs and bytes of the rows a predictor learned from."""
    if "kind" not in frame or not all(c in frame for c in RANGE_COLUMNS):
        return {}
    sizes = pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce") for c in RANGE_COLUMNS})
    return {str(kind): {c: [float(rows[c].min()), float(rows[c].max())] for c in RANGE_COLUMNS if rows[c].notna().any()}
            for kind, rows in sizes.groupby(frame["kind"].astype(str))}


def outside_training(pred: Any, frame: pd.DataFrame) -> np.ndarray:
    """Per row, why the predictor extrapolates there ('' when it does not): a kind it never saw, or
    FLOPs or bytes outside what it saw of that kind.  Trees do not extrapolate: such a row is predicted
    as if it were the nearest operator seen.  Empty for predictors without recorded ranges."""
    ranges = getattr(pred, "training_ranges_", None)
    out = np.full(len(frame), "", dtype=object)
    if not ranges or "kind" not in frame:
        return out
    kinds = frame["kind"].astype(str).to_numpy()
    values = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float) for c in RANGE_COLUMNS if c in frame}
    for kind in np.unique(kinds):
        rows = kinds == kind
        seen = ranges.get(kind)
        if seen is None:
            alias = KIND_ALIASES.get(kind)
            out[rows] = f"kind {kind} not in training" + (f" (predicted as {alias})" if alias in ranges else "")
            continue
        for c, (lo, hi) in seen.items():  # the first column outside its range names the row
            v = values.get(c)
            if v is None:
                continue
            with np.errstate(invalid="ignore"):
                bad = rows & np.isfinite(v) & ((v < lo) | (v > hi)) & (out == "")
            for i in np.flatnonzero(bad):
                out[i] = f"{c} {v[i]:.3g} outside the {lo:.3g}-{hi:.3g} seen for {kind}"
    return out


def _readable_operators(frame: pd.DataFrame) -> tuple[np.ndarray, list[tuple[object, str]]]:
    """Which rows' ``operator_json`` is an operator, and why each other one is not."""
    import json

    from opscope.workloads.operator import Operator

    if "operator_json" not in frame:
        return np.ones(len(frame), dtype=bool), []
    ok: dict[str, str] = {}
    for text in pd.unique(frame["operator_json"].astype(str)):
        try:
            Operator.from_dict(json.loads(text))
            ok[text] = ""
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            ok[text] = f"operator_json is not an operator ({type(exc).__name__}: {str(exc)[:120]})"
    why = frame["operator_json"].astype(str).map(ok)
    keep = (why == "").to_numpy()
    return keep, [(idx, reason) for idx, reason in zip(frame.index[~keep], why[~keep])]


def _bound_s(feats: Features) -> np.ndarray:
    """Per row, the larger of the roofline bound and the analytical latency with the thread share."""
    roof = np.maximum(feats.roofline_s, feats.analytical_threads_s)
    return np.where(np.isfinite(roof) & (roof > 0), roof, 1e-6)


def unseen_kind_ratio(frame: pd.DataFrame, feats: Features, y: np.ndarray) -> float | None:
    """The log of what a learned predictor multiplies the bound (``_bound_s``) by for a row of a kind it
    never saw: the median measured / bound of its training rows under TVM's default schedule whose
    analytical bound is memory (all its rows where there are none).

    Trees predict a kind they never saw as whatever its features fall nearest to: bert's transposes
    (an ``elementwise`` kind no space dataset holds) came out at 93-99 ms each, from a predictor trained
    on convolutions, GEMMs, pools and softmaxes, in a build whose whole end-to-end time is 19 ms.  The
    kinds a model adds beside its GEMMs and convolutions (reshapes, transposes, layer norms,
    activations) are memory-bound; this scales their bound as the training rows' memory-bound default
    schedules scale theirs.  None when no row has a finite bound.
    """
    bound = _bound_s(feats)
    rows = np.isfinite(y) & (y > 0)
    cols = {c: i for i, c in enumerate(feats.columns)}
    if "a_bound_compute" in cols:
        memory = rows & (feats.X[:, cols["a_bound_compute"]] == 0)
        if "schedule_kind" in frame:
            default = memory & (frame["schedule_kind"].astype(str).to_numpy() == "default")
            memory = default if default.any() else memory
        rows = memory if memory.any() else rows
    if not rows.any():
        return None
    return float(np.median(np.log(y[rows]) - np.log(bound[rows])))


def _progress(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


#: what a learned predictor regresses: log latency itself, or log of latency over the roofline bound of
#: the row (its compute peak scaled to the thread share), which carries the operator's scale, so that a
#: tree ensemble need not extrapolate latency to operators larger or smaller than those it saw, or
#: (``mixed``, an engine with members: XGBoost) half its members one and half the other, averaged
TARGETS = ("latency", "per_roofline", "mixed")


class LearnedPredictor(FramePredictor):
    """Regress log latency (or its ratio to the roofline, ``target``) on the features with
    ``self._engine()``; subclasses choose the engine."""

    def __init__(self, analytical_features: bool = True, specs: Mapping[str, TargetSpec] | None = None,
                 target: str = "latency", program_features: bool = False,
                 compiled_features: bool = False) -> None:
        self.analytical_features = analytical_features
        self.specs = specs
        self.target = target
        #: also MetaSchedule's per-store features of the scheduled TIR (needs the frame's workload_script)
        self.program_features = program_features
        #: also the counts of each schedule's compiled kernel (``features.compiled``; needs TVM, or the
        #: data's ``.compiled.parquet`` sidecar, for rows not compiled before)
        self.compiled_features = compiled_features

    def _engine(self) -> Engine:
        raise NotImplementedError

    def _weights(self, frame: pd.DataFrame) -> np.ndarray | None:
        """Per-row training weights for the engine (None: all rows alike)."""
        return None

    def fit(self, frame: pd.DataFrame, y: np.ndarray | None = None) -> LearnedPredictor:
        if self.target not in TARGETS:
            raise PredictorError(f"target {self.target!r}: expected one of {', '.join(TARGETS)}")
        frame, y = self._training_frame(self._machine_frame(frame), y)
        self.schema_ = fit_schema(frame, analytical=self.analytical_features)
        feats = build_features(frame, self.schema_, specs_from(self.specs))
        y = without_special(y, self._special_seconds(frame))  # the learned part: see features.special
        weight = self._weights(frame)
        engine, X, target = self._engine(), self._matrix(frame, feats), np.log(y) - self._anchor(feats)
        kw: dict = {} if weight is None else {"weight": weight}
        if self.target == "mixed":
            if not getattr(engine, "takes_offset", False):
                raise PredictorError(f"target 'mixed': {type(self).__name__} has no members to split "
                                     "between the two targets (xgboost has)")
            kw["offset"] = np.log(_bound_s(feats))
        if getattr(engine, "relative_weight", 0.0) > 0:
            # default-relative members: sampled rows over their operator's measured default (features.defaults)
            kw["anchor"] = measured_default_log(frame, y) - self._anchor(feats)
        self.engine_ = engine.fit(X, target, **kw)
        self.n_train_ = len(frame)
        self.unseen_kind_log_ratio_ = unseen_kind_ratio(frame, feats, y)
        return self

    def _matrix(self, frame: pd.DataFrame, feats: Features) -> np.ndarray:
        """The engine's input: the schema's features, then the program features and the compiled
        kernel's counts when asked for."""
        parts = [feats.X]
        if self.program_features:
            from opscope.predictor.features.program import program_features

            parts.append(program_features(frame)[0])
        if getattr(self, "compiled_features", False):
            from opscope.predictor.features.compiled import compiled_features

            values, skipped = compiled_features(frame, specs_from(self.specs), progress=_progress)
            self.compiled_skipped_ = skipped
            parts.append(values)
        return parts[0] if len(parts) == 1 else np.hstack(parts)

    def _anchor(self, feats: Features) -> np.ndarray:
        """Log of what the engine's output is relative to (0 for plain log latency; a mixed engine is
        given the bound itself, per member)."""
        if self.target in ("latency", "mixed"):
            return np.zeros(len(feats.X))
        return np.log(_bound_s(feats))

    def engine_output(self, frame: pd.DataFrame, feats: Features) -> np.ndarray:
        """The engine's predicted log latency for ``feats`` (before rows of unseen kinds are replaced)."""
        X = self._matrix(frame, feats)
        kw: dict = {}
        if self.target == "mixed":
            kw["offset"] = np.log(_bound_s(feats))
        if getattr(self.engine_, "relative", None):
            kw["anchor"] = self._default_anchor(frame) - self._anchor(feats)
        return self.engine_.predict(X, **kw) + self._anchor(feats)

    def _default_anchor(self, frame: pd.DataFrame) -> np.ndarray:
        """Per row, the predicted log latency of its operator under TVM's default schedule (NaN for
        default rows and rows without a twin; ``features.defaults.default_twins``)."""
        twins, index = default_twins(frame)
        out = np.full(len(frame), np.nan)
        if len(twins):
            feats = self._cached_features(twins)
            twin_log = self.engine_output(twins, feats)  # default rows: no anchor, so no recursion
            has = index >= 0
            out[has] = twin_log[index[has]]
        return out

    def features(self, frame: pd.DataFrame) -> Features:
        self._check_fitted()
        return self._cached_features(self._predict_frame(frame))

    def _cached_features(self, frame: pd.DataFrame) -> Features:
        """``build_features`` for this predictor's schema and specs, through a cache of the rows it has
        turned into features before (``FeatureCache``; a new one after each ``fit`` or change of specs)."""
        cache = self.__dict__.get("_feature_cache")
        if cache is None or cache.schema is not self.schema_ or cache.source is not self.specs:
            cache = FeatureCache(self.schema_, specs_from(self.specs))
            cache.source = self.specs
            self._feature_cache = cache
        return cache.features(frame)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        frame = self._predict_frame(frame)
        feats = self.features(frame)
        out = np.exp(self.engine_output(frame, feats))
        ratio = getattr(self, "unseen_kind_log_ratio_", None)
        ranges = getattr(self, "training_ranges_", None)
        if ratio is not None and ranges:
            unseen = ~np.isin(feats.kind, list(ranges))
            if unseen.any():
                out[unseen] = np.exp(ratio) * _bound_s(feats)[unseen]
        return out + self._special_seconds(frame)

    def _check_fitted(self) -> None:
        if not hasattr(self, "engine_"):
            raise PredictorError(f"{type(self).__name__}: predict called before fit")

    @property
    def schema(self) -> FeatureSchema:
        self._check_fitted()
        return self.schema_
