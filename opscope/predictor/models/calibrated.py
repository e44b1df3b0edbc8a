"""The calibrated analytical model: analytical estimate x learned correction, never below the roofline.

The correction regresses ``log(measured / analytical)`` on the features (which include the
analytical terms themselves), so the analytical model carries the scale of an unseen shape and
the learner only has to learn how far a real schedule on a real machine falls short of it.  The
prediction is ``max(analytical * exp(correction), roofline bound)``.

The time of special functions in a fused epilogue (``features.special``) is added to it, and taken out
of the labels it learns from, as in the learned predictors.

``correction_report`` says what the correction learned, per operator kind and thread count: the
median factor, and the effective FLOP/s and bandwidth it implies next to the spec's nominal ones.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from opscope.errors import PredictorError
from opscope.predictor.features.build import Features, build_features, fit_schema, specs_from
from opscope.predictor.features.special import without_special
from opscope.predictor.models.base import FramePredictor
from opscope.predictor.models.sklearn_models import LinearEngine
from opscope.predictor.models.xgb import XGBEngine
from opscope.targets.spec import TargetSpec

CORRECTIONS = ("xgboost", "linear")


class CalibratedAnalyticalPredictor(FramePredictor):
    name = "calibrated"

    def __init__(self, correction: str = "xgboost", n_estimators: int = 300, max_depth: int = 6,
                 learning_rate: float = 0.1, alpha: float = 1.0, seed: int = 0,
                 specs: Mapping[str, TargetSpec] | None = None) -> None:
        self.correction = correction
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.alpha = alpha
        self.seed = seed
        self.specs = specs

    def _engine(self) -> XGBEngine | LinearEngine:
        if self.correction == "xgboost":
            return XGBEngine(self.n_estimators, self.max_depth, self.learning_rate, 0.8, 0.8, 1.0, 1.0, self.seed)
        if self.correction == "linear":
            return LinearEngine(self.alpha)
        raise PredictorError(f"correction {self.correction!r} unknown; known: {', '.join(CORRECTIONS)}")

    def fit(self, frame: pd.DataFrame, y: np.ndarray | None = None) -> CalibratedAnalyticalPredictor:
        frame, y = self._training_frame(self._machine_frame(frame), y)
        self.schema_ = fit_schema(frame, analytical=True)
        feats = build_features(frame, self.schema_, specs_from(self.specs))
        base = self._base(feats)
        y = without_special(y, self._special_seconds(frame))  # added back in predict (features.special)
        self.engine_ = self._engine().fit(feats.X, np.log(y) - np.log(base))
        self.n_train_ = len(frame)
        return self

    @staticmethod
    def _base(feats: Features) -> np.ndarray:
        base = feats.analytical_threads_s
        bad = ~(np.isfinite(base) & (base > 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PredictorError(f"row {row}: the analytical model gives no positive latency to calibrate")
        return base

    def features(self, frame: pd.DataFrame) -> Features:
        if not hasattr(self, "engine_"):
            raise PredictorError("CalibratedAnalyticalPredictor: predict called before fit")
        return build_features(self._predict_frame(frame), self.schema_, specs_from(self.specs))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        frame = self._predict_frame(frame)
        feats = self.features(frame)
        pred = self._base(feats) * np.exp(self.engine_.predict(feats.X))
        return np.maximum(pred, feats.roofline_s) + self._special_seconds(frame)

    def correction_report(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per kind and thread count: what the learned correction means in device terms."""
        feats = self.features(frame)
        pred = self.predict(frame)
        factor = pred / feats.analytical_threads_s
        col = {c: i for i, c in enumerate(feats.columns)}
        flops = np.exp2(feats.X[:, col["f_flops_log2"]])
        nbytes = np.exp2(feats.X[:, col["f_bytes_log2"]])
        peak = np.exp2(feats.X[:, col["m_peak_log2"]])
        bw = np.exp2(feats.X[:, col["m_offchip_bw_log2"]])
        df = pd.DataFrame({
            "kind": feats.kind,
            "threads": feats.X[:, col["t_threads"]].astype(int),
            "factor": factor,
            "eff_gflops": flops / pred / 1e9,
            "eff_gbps": nbytes / pred / 1e9,
            "peak_gflops": peak / 1e9,
            "bw_gbps": bw / 1e9,
        })
        out = df.groupby(["kind", "threads"]).agg(
            rows=("factor", "size"),
            median_factor=("factor", "median"),
            eff_gflops=("eff_gflops", "max"),
            eff_gbps=("eff_gbps", "max"),
            nominal_peak_gflops=("peak_gflops", "first"),
            nominal_bw_gbps=("bw_gbps", "first"),
        )
        return out.reset_index()
