"""The naive baseline every learned predictor must beat: a median throughput per kind.

``RateBaseline`` learns the median FLOP/s of the training rows per (operator kind, thread count,
schedule kind) and predicts ``flops / rate``; a combination never seen falls back to the kind, then to
all rows.  It knows nothing of shapes or schedules beyond that, so a predictor that does not beat it
has learned nothing that carries to new operators.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from opscope.predictor.models.base import FramePredictor

_KEYS = ("kind", "threads", "schedule_kind")


class RateBaseline(FramePredictor):
    name = "rate-baseline"

    def fit(self, frame: pd.DataFrame, y: np.ndarray | None = None) -> RateBaseline:
        frame, y = self._training_frame(frame, y, needs_operators=False)  # it reads kind and FLOPs only
        rate = pd.to_numeric(frame["flops"], errors="coerce").to_numpy(float) / y
        df = frame[list(_KEYS)].astype(str).assign(rate=rate)
        df = df[np.isfinite(df["rate"]) & (df["rate"] > 0)]
        self.rates_ = {tuple(k): float(v) for k, v in df.groupby(list(_KEYS))["rate"].median().items()}
        self.kind_rates_ = {str(k): float(v) for k, v in df.groupby("kind")["rate"].median().items()}
        self.all_rate_ = float(df["rate"].median())
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        keys = frame[list(_KEYS)].astype(str).itertuples(index=False, name=None)
        rates = np.array([self.rates_.get(k, self.kind_rates_.get(k[0], self.all_rate_)) for k in keys], float)
        flops = pd.to_numeric(frame["flops"], errors="coerce").to_numpy(float)
        return np.maximum(flops, 1.0) / rates
