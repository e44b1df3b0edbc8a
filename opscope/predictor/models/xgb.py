"""XGBoost on log latency: the default learned predictor.  Saved in XGBoost's own JSON format."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from opscope.errors import PredictorError
from opscope.predictor.models.base import LearnedPredictor
from opscope.predictor.models.mlp import MLPEngine
from opscope.targets.spec import TargetSpec

MODEL_FILE = "model.xgb.json"


#: the loss on log latency: squared error (the mean) or absolute error (the median)
LOSSES = {"squared": "reg:squarederror", "absolute": "reg:absoluteerror"}

#: rows per prediction thread: a frame this long or longer is predicted on more than one thread (at most
#: the CPUs this process may run on); shorter ones, such as a search's candidates, on one, where OpenMP's
#: start-up would cost more than it saves.  Fitting stays on one thread (see ``XGBEngine``'s params).
ROWS_PER_PREDICT_THREAD = 2048


def predict_threads(rows: int) -> int:
    """Threads to predict ``rows`` rows on: one per ``ROWS_PER_PREDICT_THREAD`` rows, at most the CPUs this
    process may use."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, rows // ROWS_PER_PREDICT_THREAD))


class XGBEngine:
    """``n_models`` boosters on the same rows, seeds ``seed .. seed + n_models - 1`` (row and column
    subsampling differ), their outputs averaged: bagging over the subsampling's randomness.  With
    ``nn_weight`` > 0 a small network (``MLPEngine``) is trained on the same rows too, and the output
    is ``(1 - nn_weight) * boosters + nn_weight * network`` in log latency.

    With ``mixed=True`` every second member (seeds ``seed + 1, seed + 3, ...``) regresses log latency
    over the row's bound, given to ``fit`` and ``predict`` as ``offset`` (the log bound, XGBoost's
    base margin), and the others log latency itself: two views of one operator's scale, averaged.

    With ``relative_weight`` > 0, ``relative_models`` more boosters regress a sampled schedule's log
    latency over its operator's default-schedule latency (``anchor``, the log of that latency, as their
    base margin: measured when fitting, predicted when predicting; ``opscope.predictor.features.defaults``),
    and rows with an anchor are predicted ``(1 - relative_weight) * the above + relative_weight *
    relative boosters``; rows without one (NaN) by the above alone."""

    #: ``fit`` and ``predict`` take ``offset`` (needed when ``mixed``) and ``anchor`` (used when
    #: ``relative_weight`` > 0)
    takes_offset = True

    def __init__(self, n_estimators: int, max_depth: int, learning_rate: float, subsample: float,
                 colsample_bytree: float, min_child_weight: float, reg_lambda: float, seed: int,
                 n_models: int = 1, loss: str = "squared", nn_weight: float = 0.0, mixed: bool = False,
                 relative_weight: float = 0.0, relative_models: int = 2) -> None:
        if loss not in LOSSES:
            raise PredictorError(f"loss {loss!r}: expected one of {', '.join(LOSSES)}")
        if isinstance(nn_weight, bool) or not isinstance(nn_weight, (int, float)) or not 0.0 <= nn_weight < 1.0:
            raise PredictorError(f"nn_weight must be a number in [0, 1), got {nn_weight!r}")
        self.nn_weight = float(nn_weight)
        if (isinstance(relative_weight, bool) or not isinstance(relative_weight, (int, float))
                or not 0.0 <= relative_weight < 1.0):
            raise PredictorError(f"relative_weight must be a number in [0, 1), got {relative_weight!r}")
        if not (isinstance(relative_models, int) and not isinstance(relative_models, bool) and relative_models >= 1):
            raise PredictorError(f"relative_models must be an integer >= 1, got {relative_models!r}")
        self.relative_weight = float(relative_weight)
        self.relative_models = relative_models
        #: the default-relative boosters (empty when ``relative_weight`` is 0 or no row had an anchor)
        self.relative: list[Any] = []
        self.mlp: MLPEngine | None = None
        self.mixed = bool(mixed)
        #: per member, "latency" or "per_roofline" (what it regresses)
        self.targets: list[str] = []
        self.params = {
            "objective": LOSSES[loss],
            "tree_method": "hist",
            "max_depth": max_depth,
            "eta": learning_rate,
            "subsample": subsample,
            "colsample_bytree": colsample_bytree,
            "min_child_weight": min_child_weight,
            "lambda": reg_lambda,
            "seed": seed,
            "max_bin": 128,
            # one thread: on a small shared machine OpenMP spinning made two threads 6x slower
            "nthread": 1,
        }
        self.n_estimators = n_estimators
        if not (isinstance(n_models, int) and n_models >= 1):
            raise PredictorError(f"n_models must be an integer >= 1, got {n_models!r}")
        self.n_models = n_models
        self.boosters: list[Any] = []

    @property
    def booster(self) -> Any:
        """The first member (the only one when ``n_models`` is 1)."""
        return self.boosters[0] if self.boosters else None

    def fit(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None,
            offset: np.ndarray | None = None, anchor: np.ndarray | None = None) -> XGBEngine:
        import xgboost as xgb

        self._packed = {}  # boosters packed for the compiled kernel, made on the first predict
        self.targets = [("per_roofline" if self.mixed and j % 2 else "latency") for j in range(self.n_models)]
        if "per_roofline" in self.targets and offset is None:
            raise PredictorError("a mixed XGBoost engine needs the rows' log bound (offset) to fit")
        plain = xgb.DMatrix(X, label=y, weight=weight, missing=np.nan)
        margin = (xgb.DMatrix(X, label=y, weight=weight, missing=np.nan, base_margin=offset)
                  if "per_roofline" in self.targets else None)
        seed = int(self.params["seed"])
        self.boosters = [xgb.train({**self.params, "seed": seed + j}, margin if t == "per_roofline" else plain,
                                   num_boost_round=self.n_estimators)
                         for j, t in enumerate(self.targets)]
        self.mlp = MLPEngine(seed=seed).fit(X, y, weight) if self.nn_weight > 0 else None
        self.relative = []
        rows = np.isfinite(anchor) if anchor is not None and self.relative_weight > 0 else None
        if rows is not None and rows.any():
            rel = xgb.DMatrix(X[rows], label=y[rows], missing=np.nan, base_margin=anchor[rows])
            self.relative = [xgb.train({**self.params, "seed": seed + self.n_models + j}, rel,
                                       num_boost_round=self.n_estimators) for j in range(self.relative_models)]
        return self

    def predict(self, X: np.ndarray, offset: np.ndarray | None = None,
                anchor: np.ndarray | None = None) -> np.ndarray:
        if "per_roofline" in self.targets and offset is None:
            raise PredictorError("a mixed XGBoost engine needs the rows' log bound (offset) to predict")
        X = np.asarray(X)
        threads = predict_threads(len(X))
        members = self._members("main", X, threads, [offset if t == "per_roofline" else None for t in self.targets])
        out = members.mean(axis=1)
        if self.mlp is not None:
            out = (1.0 - self.nn_weight) * out + self.nn_weight * self.mlp.predict(X, threads)
        rows = np.isfinite(anchor) if anchor is not None and self.relative else None
        if rows is not None and rows.any():
            rel = self._members("relative", X[rows], threads, [anchor[rows]] * len(self.relative)).mean(axis=1)
            out[rows] = (1.0 - self.relative_weight) * out[rows] + self.relative_weight * rel
        return out

    def _members(self, group: str, X: np.ndarray, threads: int, margins: list[np.ndarray | None]) -> np.ndarray:
        """Each booster's output (rows x boosters) of ``group`` ("main": ``boosters``, or "relative"): its
        trees' sum plus its base margin where given, else its base score.  By the compiled kernel
        (``forest``) where it is available, else by XGBoost."""
        boosters = self.boosters if group == "main" else self.relative
        packed = self.__dict__.setdefault("_packed", {})
        if not packed:  # the first predict packs both groups, so that no later call pays for packing
            from opscope.predictor.models.forest import packed as pack

            packed.update(main=pack(self.boosters, X.shape[1]), relative=pack(self.relative, X.shape[1]))
        forest = packed[group]
        if forest is not None and forest.n_features == X.shape[1]:
            sums = forest.sums(X, threads)
            return np.column_stack([sums[:, j] + (forest.base[j] if m is None else m) for j, m in enumerate(margins)])
        Xt = np.ascontiguousarray(X, dtype=np.float32)  # what the trees compare in: converted once, not per booster
        cols = []
        for booster, m in zip(boosters, margins):
            booster.set_param({"nthread": threads})
            kw = {} if m is None else {"base_margin": m}
            cols.append(np.asarray(booster.inplace_predict(Xt, missing=np.nan, **kw), dtype=float))
        return np.column_stack(cols)

    def save(self, directory: Path) -> dict[str, Any]:
        files = [MODEL_FILE] + [f"model.{j}.xgb.json" for j in range(1, len(self.boosters))]
        for booster, name in zip(self.boosters, files):
            booster.save_model(str(Path(directory) / name))
        meta: dict[str, Any] = {"engine": "xgboost", "file": MODEL_FILE, "files": files}
        if "per_roofline" in self.targets:
            meta["targets"] = list(self.targets)
        if self.mlp is not None:
            meta["mlp"] = {"file": self.mlp.save(directory), "weight": self.nn_weight}
        if self.relative:
            names = [f"relative.{j}.xgb.json" for j in range(len(self.relative))]
            for booster, name in zip(self.relative, names):
                booster.save_model(str(Path(directory) / name))
            meta["relative"] = {"files": names, "weight": self.relative_weight}
        return meta

    @classmethod
    def load(cls, directory: Path, meta: Mapping[str, Any]) -> XGBEngine:
        where = Path(directory) / "metadata.json"
        files = meta.get("files", [meta.get("file", MODEL_FILE)])
        if not file_names(files):
            raise PredictorError(f"{where}: field 'engine.files' must be a list of "
                                 f"file names in the predictor's folder, got {files!r}")
        engine = cls.__new__(cls)
        engine.params, engine.n_estimators, engine.n_models = {}, 0, len(files)
        engine.boosters = [read_booster(Path(directory) / name) for name in files]
        engine.nn_weight, engine.mlp, engine.mixed = 0.0, None, False
        targets = meta.get("targets", ["latency"] * len(files))
        if not (isinstance(targets, list) and len(targets) == len(files)
                and all(t in ("latency", "per_roofline") for t in targets)):
            raise PredictorError(f"{where}: field 'engine.targets' must list "
                                 f"'latency' or 'per_roofline' for each of the {len(files)} files, got {targets!r}")
        engine.targets, engine.mixed = list(targets), "per_roofline" in targets
        mlp = meta.get("mlp")
        if mlp is not None:
            name = mlp.get("file") if isinstance(mlp, dict) else None
            weight = mlp.get("weight") if isinstance(mlp, dict) else None
            if not file_names([name]):
                raise PredictorError(f"{where}: field 'engine.mlp.file' must be a file name in the predictor's "
                                     f"folder, got {name!r}")
            if not _unit_weight(weight):
                raise PredictorError(f"{where}: field 'engine.mlp.weight' must be a number in (0, 1), got {weight!r}")
            engine.nn_weight, engine.mlp = float(weight), MLPEngine.load(Path(directory) / name)
        engine.relative_weight, engine.relative = 0.0, []
        relative = meta.get("relative")
        if relative is not None:
            names = relative.get("files") if isinstance(relative, dict) else None
            weight = relative.get("weight") if isinstance(relative, dict) else None
            if not file_names(names):
                raise PredictorError(f"{where}: field 'engine.relative.files' must be a list of file names in the "
                                     f"predictor's folder, got {names!r}")
            if not _unit_weight(weight):
                raise PredictorError(f"{where}: field 'engine.relative.weight' must be a number in (0, 1), "
                                     f"got {weight!r}")
            engine.relative = [read_booster(Path(directory) / name) for name in names]
            engine.relative_weight = float(weight)
        engine.relative_models = max(len(engine.relative), 1)
        return engine


def file_names(files: Any) -> bool:
    """Whether ``files`` is a non-empty list of plain file names (no folder part): what a predictor's
    metadata may name in its own folder."""
    return isinstance(files, list) and bool(files) and all(isinstance(f, str) and f and Path(f).name == f
                                                           for f in files)


def _unit_weight(weight: Any) -> bool:
    return not isinstance(weight, bool) and isinstance(weight, (int, float)) and 0.0 < weight < 1.0


def read_booster(path: Path) -> Any:
    """A saved XGBoost booster, single-threaded; a missing or unreadable file is one PredictorError line."""
    import xgboost as xgb

    if not path.exists():
        raise PredictorError(f"{path}: missing XGBoost model file")
    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
    except xgb.core.XGBoostError as exc:
        raise PredictorError(f"{path}: not a readable XGBoost model ({str(exc).splitlines()[0]})") from exc
    booster.set_param({"nthread": 1})
    return booster


class XGBoostPredictor(LearnedPredictor):
    """Gradient-boosted trees (XGBoost) on log latency.

    ``default_weight``: the weight of each row measured under TVM's default schedule, against 1 for
    every other row.  A collection holds one default row per operator and thread count beside 8-64
    sampled ones, and the default rows are what a whole model's default build is predicted from;
    with 3, five-fold cross-validation over the shipped space's 700 operators predicted default
    rows better (median APE 0.189 against 0.204) at no loss over all rows (0.306 against 0.301,
    top-1 0.856 against 0.852; docs/predictor.md).

    ``n_models``: boosters trained with seeds ``seed, seed + 1, ...`` and averaged (in log latency).
    One booster's subsampling alone moved a zoo model's summed default-schedule prediction by up to
    1.26x from seed to seed; five moved it by at most 1.09x, and scored better in five-fold
    cross-validation over the space's operators (median APE 0.295 against 0.306, top-1 0.854 against
    0.843; docs/predictor.md).

    600 trees of depth 8 at a learning rate of 0.05 (against 300 of depth 6 at 0.1): five-fold
    cross-validation over the 969 operators of seven space datasets, feature schema v4, median APE
    0.255 against 0.259 (depth 8 with 300 trees at 0.1: 0.256; depth 10: 0.265); the trees cost about
    three times as much to evaluate (11,400 rows/s against 33,000; docs/predictor.md).

    ``nn_weight``: a small network (``MLPEngine``) is trained on the same rows and blended in log
    latency, ``0.6 * boosters + 0.4 * network``.  Five-fold cross-validation over the 969 space
    operators: median APE 0.237 against 0.255, within +-20% 0.440 against 0.415 (docs/predictor.md,
    "Results: a network beside the trees"); ``nn_weight=0`` gives the boosters alone.

    ``target="mixed"`` with ``n_models=4``: two boosters regress log latency, two log latency over
    the row's bound (``XGBEngine``).  Cross-validation as above, with the network: median APE 0.229
    against 0.237 for five boosters on log latency (six mixed boosters: 0.229 too).

    ``relative_weight=0.3`` with ``relative_models=2``: two more boosters regress a sampled schedule's
    log latency over its operator's default-schedule latency (measured in training, predicted for the
    row's default twin in prediction; ``opscope.predictor.features.defaults``), blended in log at 0.3.
    Cross-validation as above: median APE 0.225 against 0.229, top-1 0.888 against 0.883; on the zoo's
    operators of models never seen 0.196 against 0.209 (docs/predictor.md, "Results: relative to the
    default schedule").  ``relative_weight=0`` leaves them out.
    """

    name = "xgboost"

    def __init__(self, n_estimators: int = 600, max_depth: int = 8, learning_rate: float = 0.05,
                 subsample: float = 0.8, colsample_bytree: float = 0.8, min_child_weight: float = 1.0,
                 reg_lambda: float = 1.0, seed: int = 0, analytical_features: bool = True,
                 specs: Mapping[str, TargetSpec] | None = None, target: str = "mixed",
                 program_features: bool = False, default_weight: float = 3.0, n_models: int = 4,
                 loss: str = "squared", nn_weight: float = 0.4, relative_weight: float = 0.3,
                 relative_models: int = 2, compiled_features: bool = False) -> None:
        super().__init__(analytical_features=analytical_features, specs=specs, target=target,
                         program_features=program_features, compiled_features=compiled_features)
        self.default_weight = default_weight
        self.n_models = n_models
        self.loss = loss
        self.nn_weight = nn_weight
        self.relative_weight = relative_weight
        self.relative_models = relative_models
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.seed = seed

    def _weights(self, frame) -> np.ndarray | None:
        if not self.default_weight > 0:
            raise PredictorError(f"default_weight must be > 0, got {self.default_weight!r}")
        if self.default_weight == 1.0 or "schedule_kind" not in frame:
            return None
        return np.where(frame["schedule_kind"].to_numpy() == "default", float(self.default_weight), 1.0)

    def _engine(self) -> XGBEngine:
        return XGBEngine(self.n_estimators, self.max_depth, self.learning_rate, self.subsample,
                         self.colsample_bytree, self.min_child_weight, self.reg_lambda, self.seed, self.n_models,
                         self.loss, self.nn_weight, self.target == "mixed", self.relative_weight,
                         self.relative_models)
