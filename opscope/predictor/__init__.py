"""Latency predictors: the learned ones and the calibrated analytical model (the analytical model itself
lives in ``opscope.analytical``), which all follow the scikit-learn contract on store frames (docs/predictor.md).

The learned side is imported lazily so that the analytical model does not pull in XGBoost.
"""

from __future__ import annotations

from opscope.lazy import lazy_exports

_API = {
    "XGBoostPredictor": "opscope.predictor.models.xgb",
    "RandomForestPredictor": "opscope.predictor.models.sklearn_models",
    "GradientBoostingPredictor": "opscope.predictor.models.sklearn_models",
    "LinearPredictor": "opscope.predictor.models.sklearn_models",
    "CalibratedAnalyticalPredictor": "opscope.predictor.models.calibrated",
    "AnalyticalPredictor": "opscope.predictor.models.analytical",
    "save_predictor": "opscope.predictor.models.persist",
    "load_predictor": "opscope.predictor.models.persist",
    "make_predictor": "opscope.predictor.models.persist",
    "PREDICTORS": "opscope.predictor.models.persist",
    "operator_frame": "opscope.predictor.frames",
    "read_frame": "opscope.predictor.frames",
    "FeatureSchema": "opscope.predictor.features.build",
    "build_features": "opscope.predictor.features.build",
    "make_splits": "opscope.predictor.evaluation.splits",
    "SPLITS": "opscope.predictor.evaluation.splits",
}

__all__ = sorted(_API)


__getattr__ = lazy_exports(__name__, _API)
