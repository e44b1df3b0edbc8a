"""The analytical model as a predictor with no training.

Its latency for a row is the analytical estimate for the row's operator, schedule tiles and target.
The spec's peak is the whole machine's; a run on ``threads`` of ``cores`` cores gets that share of
the compute peak (memory bandwidth is left whole: one core can often draw most of it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from opscope.errors import PredictorError
from opscope.predictor.features.build import build_features, fit_schema, specs_from
from opscope.predictor.models.base import FramePredictor
from opscope.targets.spec import TargetSpec


class AnalyticalPredictor(FramePredictor):
    name = "analytical"

    def __init__(self, thread_scaling: bool = True, specs: Mapping[str, TargetSpec] | None = None) -> None:
        self.thread_scaling = thread_scaling
        self.specs = specs

    def fit(self, frame: pd.DataFrame, y: np.ndarray | None = None) -> AnalyticalPredictor:
        """Nothing to learn; kept for the common contract."""
        self.fitted_ = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        schema = fit_schema(frame[[c for c in frame.columns if not c.startswith("knob_")]], analytical=True)
        feats = build_features(frame, schema, specs_from(self.specs))
        if not np.isfinite(feats.analytical_s).all():
            row = int(np.flatnonzero(~np.isfinite(feats.analytical_s))[0])
            raise PredictorError(f"row {row}: the analytical model gives no latency for this operator")
        return feats.analytical_threads_s if self.thread_scaling else feats.analytical_s
