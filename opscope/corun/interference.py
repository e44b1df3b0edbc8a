"""The interference model: a task's co-run latency from its alone latency and the pair's features.

It learns the slowdown (together / alone) of a task beside its partners, in log space, from rows
of ``corun_frame`` (one row per member of a co-run), and predicts the co-run latency as
``alone_s * predicted slowdown``.  By default one booster per group (shared cores or disjoint
cores: the two behave differently) with a pseudo-Huber loss, because oversubscribed shared runs
produce rare, huge slowdowns (a tiny kernel starved for a scheduler time slice) that a squared
loss would chase.  Features describe both sides: alone latencies, bytes and
intensity, the memory-bandwidth demand each would place alone (bytes / alone latency), thread
and core counts, and whether the cores are shared.

It follows the scikit-learn contract like opscope's latency predictors: ``__init__`` stores
hyperparameters only, ``fit(frame)`` returns self, learned state ends in ``_``; it saves as JSON
plus XGBoost's own JSON model, never pickle.

Evaluation holds out *pairs*: ``pair_split`` puts every row of a pair (both members, every
arrangement, every repeat) on the same side, the pair being the unordered set of the tasks'
kernel keys (``pair_id``), so a test pair is one the model never saw co-running.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from opscope.errors import PredictorError

FEATURES = (
    "log_alone", "log_partner_alone", "alone_ratio", "log_bytes", "log_partner_bytes",
    "log_intensity", "log_partner_intensity", "log_bw", "log_partner_bw", "threads", "partner_threads",
    "cores", "total_cores", "shared", "pinned", "partners",
)
LEARNERS = ("xgboost", "linear")
_REQUIRED = ("alone_s", "partner_alone_s", "bytes", "partner_bytes", "intensity", "partner_intensity",
             "threads", "partner_threads", "cores", "total_cores", "shared", "pinned", "partners")


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's feature matrix for ``corun_frame`` rows (a PredictorError names missing columns)."""
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise PredictorError(f"interference frame lacks columns {missing}")
    f = pd.DataFrame(index=frame.index)
    alone = frame["alone_s"].astype(float).clip(lower=1e-9)
    partner = frame["partner_alone_s"].astype(float).clip(lower=1e-9)
    f["log_alone"] = np.log(alone)
    f["log_partner_alone"] = np.log(partner)
    f["alone_ratio"] = np.log(alone / partner)
    f["log_bytes"] = np.log1p(frame["bytes"].astype(float))
    f["log_partner_bytes"] = np.log1p(frame["partner_bytes"].astype(float))
    f["log_intensity"] = np.log1p(frame["intensity"].astype(float))
    f["log_partner_intensity"] = np.log1p(frame["partner_intensity"].astype(float))
    f["log_bw"] = np.log1p(frame["bytes"].astype(float) / alone)
    f["log_partner_bw"] = np.log1p(frame["partner_bytes"].astype(float) / partner)
    for c in ("threads", "partner_threads", "cores", "total_cores", "shared", "pinned", "partners"):
        f[c] = frame[c].astype(float)
    return f[list(FEATURES)]


class InterferenceModel:
    """Predicts co-run latency (seconds) of each ``corun_frame`` row."""

    def __init__(self, learner: str = "xgboost", n_estimators: int = 200, max_depth: int = 2,
                 learning_rate: float = 0.08, alpha: float = 1.0, huber_slope: float = 0.3,
                 per_kind: bool = True, seed: int = 0):
        self.learner = learner
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.alpha = alpha
        self.huber_slope = huber_slope
        self.per_kind = per_kind
        self.seed = seed

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in ("learner", "n_estimators", "max_depth", "learning_rate", "alpha",
                                              "huber_slope", "per_kind", "seed")}

    def set_params(self, **params) -> InterferenceModel:
        for k, v in params.items():
            if k not in self.get_params():
                raise PredictorError(f"InterferenceModel has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def _new_model(self):
        if self.learner == "xgboost":
            import xgboost as xgb

            extra = ({"objective": "reg:pseudohubererror", "huber_slope": self.huber_slope}
                     if self.huber_slope > 0 else {})
            return xgb.XGBRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                    learning_rate=self.learning_rate, random_state=self.seed, n_jobs=1,
                                    subsample=0.9, **extra)
        if self.learner == "linear":
            from sklearn.linear_model import Ridge

            return Ridge(alpha=self.alpha)
        raise PredictorError(f"unknown interference learner {self.learner!r}; known: {', '.join(LEARNERS)}")

    def _fit_one(self, rows: pd.DataFrame):
        model = self._new_model()
        y = np.log(rows["slowdown"].astype(float).clip(lower=1e-6).to_numpy())
        if self.learner == "xgboost":
            # start from the median: XGBoost's own intercept estimate goes astray under the
            # pseudo-Huber loss when the targets are (nearly) constant
            model.set_params(base_score=float(np.median(y)))
        model.fit(features(rows).to_numpy(), y)
        return model

    def fit(self, frame: pd.DataFrame) -> InterferenceModel:
        """Fit on rows with a finite slowdown; with ``per_kind`` one model per shared/disjoint
        group (plus one on all rows for a group absent from training)."""
        rows = frame[np.isfinite(frame["slowdown"].astype(float))] if "slowdown" in frame else frame.iloc[0:0]
        if len(rows) < 2:
            raise PredictorError(f"interference model needs at least 2 co-run rows with a slowdown, got {len(rows)}")
        features(rows)  # names missing columns before any fitting
        models = {"all": self._fit_one(rows)}
        if self.per_kind:
            for group, sub in rows.groupby(rows["shared"].astype(int)):
                if len(sub) >= 2:
                    models[str(group)] = self._fit_one(sub)
        self.models_ = models
        self.feature_names_ = list(FEATURES)
        self.n_train_ = int(len(rows))
        return self

    def predict_slowdown(self, frame: pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "models_"):
            raise PredictorError("interference model is not fitted")
        x = features(frame).to_numpy()
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

    # -- persistence: JSON + the learner's native format, never pickle --------------------------
    def save(self, directory: str | Path) -> Path:
        if not hasattr(self, "models_"):
            raise PredictorError("cannot save an unfitted interference model")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"kind": "opscope.corun.InterferenceModel", "format": 1, "params": self.get_params(),
                "features": self.feature_names_, "n_train": self.n_train_, "groups": sorted(self.models_),
                "linear": {}}
        for g, model in self.models_.items():
            if self.learner == "xgboost":
                model.save_model(str(d / f"model_{g}.json"))
            else:
                meta["linear"][g] = {"coef": [float(c) for c in model.coef_], "intercept": float(model.intercept_)}
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
        if meta.get("features") != list(FEATURES):
            raise PredictorError(f"{d}: saved with features {meta.get('features')}, this opscope uses {list(FEATURES)}")
        self = cls(**meta["params"])
        models = {}
        for g in meta["groups"]:
            model = self._new_model()
            if self.learner == "xgboost":
                model.load_model(str(d / f"model_{g}.json"))
            else:
                model.coef_ = np.array(meta["linear"][g]["coef"])
                model.intercept_ = meta["linear"][g]["intercept"]
                model.n_features_in_ = len(FEATURES)
            models[g] = model
        self.models_ = models
        self.feature_names_ = list(FEATURES)
        self.n_train_ = int(meta["n_train"])
        return self


# -- held-out pairs ---------------------------------------------------------------------------

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


def _errors(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    rel = np.abs(predicted - measured) / measured
    return {"mape": float(np.mean(rel) * 100), "within_10pct": float(np.mean(rel <= 0.10) * 100),
            "median_ape": float(np.median(rel) * 100)}


def evaluate_interference(frame: pd.DataFrame, model: InterferenceModel | None = None, test_fraction: float = 0.25,
                          seeds: tuple[int, ...] = (0, 1, 2, 3, 4)) -> pd.DataFrame:
    """Error on held-out pairs for the model and two baselines, one row per (seed, method, kind),
    ``kind`` being ``all`` or an arrangement kind (``disjoint``, ``shared``).

    Baselines: ``no_interference`` (co-run latency = alone latency) and ``median_slowdown`` (the
    training rows' median slowdown per arrangement kind).  Errors are on co-run latency: MAPE (%),
    share within 10% (%), median APE (%).
    """
    frame = frame[np.isfinite(frame["slowdown"].astype(float))].reset_index(drop=True)
    model = model or InterferenceModel()
    rows = []
    for seed in seeds:
        tr, te = pair_split(frame, test_fraction, seed)
        train, test = frame.iloc[tr], frame.iloc[te]
        measured = test["together_s"].to_numpy(dtype=float)
        fitted = InterferenceModel(**model.get_params()).fit(train)
        med_slow = train.groupby("kind")["slowdown"].median()
        base = test["kind"].map(med_slow).fillna(train["slowdown"].median()).to_numpy(dtype=float)
        preds = {
            f"model_{model.learner}": fitted.predict(test),
            "no_interference": test["alone_s"].to_numpy(dtype=float),
            "median_slowdown": test["alone_s"].to_numpy(dtype=float) * base,
        }
        kinds = test["kind"].to_numpy()
        for name, p in preds.items():
            for kind in ("all", *sorted(set(kinds))):
                mask = np.ones(len(test), bool) if kind == "all" else kinds == kind
                rows.append({"seed": seed, "method": name, "kind": kind, "train_rows": len(train),
                             "test_rows": int(mask.sum()), "test_pairs": int(test["pair_id"][mask].nunique()),
                             **_errors(measured[mask], p[mask])})
    return pd.DataFrame(rows)
