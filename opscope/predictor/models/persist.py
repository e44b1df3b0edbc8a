"""Save and load predictors as a directory: the model's native files plus ``metadata.json``.

``metadata.json`` holds the format version, the predictor's name and hyperparameters, the feature
schema, a summary of the training data and the library versions.  Never pickle: a pickled model
breaks across library versions, a JSON one does not.  Loading checks the feature schema against
the running code and names the mismatch.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opscope.errors import PredictorError
from opscope.predictor.features.build import FeatureSchema
from opscope.predictor.models.analytical import AnalyticalPredictor
from opscope.predictor.models.base import FramePredictor
from opscope.predictor.models.calibrated import CalibratedAnalyticalPredictor
from opscope.predictor.models.sklearn_models import (
    ForestEngine,
    GradientBoostingPredictor,
    LinearEngine,
    LinearPredictor,
    RandomForestPredictor,
)
from opscope.predictor.models.xgb import XGBEngine, XGBoostPredictor

FORMAT = "opscope-predictor"
FORMAT_VERSION = 1
METADATA = "metadata.json"

PREDICTORS: dict[str, type[FramePredictor]] = {
    cls.name: cls
    for cls in (XGBoostPredictor, RandomForestPredictor, GradientBoostingPredictor, LinearPredictor,
                CalibratedAnalyticalPredictor, AnalyticalPredictor)
}
_ENGINES = {"xgboost": XGBEngine, "random_forest": ForestEngine, "gradient_boosting": ForestEngine,
            "linear": LinearEngine}


def make_predictor(name: str, **params: Any) -> FramePredictor:
    if name not in PREDICTORS:
        raise PredictorError(f"unknown predictor {name!r}; known: {', '.join(sorted(PREDICTORS))}")
    return PREDICTORS[name](**params)


def library_versions() -> dict[str, str]:
    import numpy
    import sklearn
    import xgboost

    import opscope

    return {"opscope": opscope.__version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "pandas": pd.__version__, "scikit-learn": sklearn.__version__, "xgboost": xgboost.__version__}


def training_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """What the predictor learned from: counts per kind, models, threads, targets."""
    def counts(col: str) -> dict[str, int]:
        return {str(k): int(v) for k, v in frame[col].value_counts().items()} if col in frame else {}

    models = sorted({m for v in frame.get("models", pd.Series(dtype=str)).dropna() for m in str(v).split(",") if m})
    keys = sorted(frame["workload_key"].astype(str).unique()) if "workload_key" in frame else []
    return {"rows": len(frame), "workloads": len(keys), "kinds": counts("kind"), "threads": counts("threads"),
            "targets": counts("target"), "models": models,
            # which operators it has seen: compare marks their predictions in-sample
            "workload_keys": keys}


def save_predictor(pred: FramePredictor, directory: str | Path, training: pd.DataFrame | None = None,
                   label: str = "latency_median_s") -> Path:
    """Write ``pred`` to ``directory``; ``training`` (the fitted frame) and ``label`` are summarised."""
    directory = Path(directory)
    if type(pred).name not in PREDICTORS:
        raise PredictorError(f"cannot save a {type(pred).__name__}: not an opscope predictor")
    directory.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in pred.get_params().items() if k != "specs"}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "predictor": pred.name,
        "params": params,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "training": training_summary(training) if training is not None else None,
        "label": label,
        "schema": None,
        "engine": None,
    }
    if meta["training"] is not None and getattr(pred, "training_ranges_", None):
        # per kind, the FLOPs and bytes of the rows it was fitted on: predict marks rows outside them
        meta["training"]["ranges"] = pred.training_ranges_
    if getattr(pred, "machines_", None):
        # the other machines it learned from: load_predictor rebuilds their specs (features.machine)
        meta["machines"] = pred.machines_
    if hasattr(pred, "engine_"):
        meta["schema"] = pred.schema_.to_dict()
        meta["engine"] = pred.engine_.save(directory)
        meta["n_train"] = int(pred.n_train_)
        # log(latency / bound) for rows of a kind it never saw (LearnedPredictor.predict)
        meta["unseen_kind_log_ratio"] = getattr(pred, "unseen_kind_log_ratio_", None)
    elif not isinstance(pred, AnalyticalPredictor):
        raise PredictorError(f"cannot save an unfitted {type(pred).__name__}; call fit first")
    (directory / METADATA).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
    return directory


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The checked ``metadata.json`` of a saved predictor; any problem is one PredictorError line."""
    directory = Path(directory)
    path = directory / METADATA
    if not directory.exists():
        raise PredictorError(f"predictor {directory}: no such folder (write one with `opscope train --out`)")
    if not directory.is_dir():
        raise PredictorError(f"predictor {directory}: is a file; give the folder `opscope train --out` wrote")
    if not path.is_file():
        raise PredictorError(f"{directory}: not a saved predictor (no {METADATA})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise PredictorError(f"{path}: not UTF-8 text; write the predictor again with `opscope train`") from None
    except ValueError as exc:
        raise PredictorError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise PredictorError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(meta, dict):
        raise PredictorError(f"{path}: expected a JSON object, got a {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise PredictorError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise PredictorError(f"{path}: format_version {meta.get('format_version')!r}, this opscope reads {FORMAT_VERSION}")
    if not isinstance(meta.get("params", {}), dict):
        raise PredictorError(f"{path}: field 'params' must be an object of hyperparameters")
    return meta


def _engine_meta(directory: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The checked ``engine`` field: an object whose ``file`` is a plain file inside ``directory``."""
    where = directory / METADATA
    engine = meta["engine"]
    if not isinstance(engine, dict):
        raise PredictorError(f"{where}: field 'engine' must be an object, got {engine!r}")
    if "file" in engine:
        name = engine["file"]
        if not isinstance(name, str) or not name:
            raise PredictorError(f"{where}: field 'engine.file' must be a file name, got {name!r}")
        inside = directory.resolve()
        target = (directory / name).resolve()
        if target.parent != inside:
            raise PredictorError(f"{where}: field 'engine.file' {name!r} is not a file in the predictor folder; "
                                 "a predictor reads only its own files")
    return engine


def _machines(where: Path, raw: Any) -> dict[str, dict[str, Any]]:
    """The checked ``machines`` field: machine id -> fingerprint of the other machines a predictor
    learned from (absent for a predictor of one machine)."""
    if raw is None:
        return {}
    if not (isinstance(raw, dict) and all(isinstance(k, str) and isinstance(v, dict) for k, v in raw.items())):
        raise PredictorError(f"{where}: field 'machines' must be an object of machine id -> fingerprint object")
    return raw


def _with_machine_specs(specs: Any, machines: dict[str, dict[str, Any]], where: Path) -> Any:
    """``specs`` with a ``machine:<id>`` spec for each machine (the caller's own specs win)."""
    from opscope.predictor.features.estimates import SpecCache
    from opscope.predictor.features.machine import MACHINE_TARGET, machine_spec

    built = {MACHINE_TARGET.format(mid): machine_spec(mid, fp, str(where)) for mid, fp in machines.items()}
    if isinstance(specs, SpecCache):
        for name, spec in built.items():
            specs.add(name, spec)
        return specs
    return {**built, **dict(specs or {})}


def load_predictor(directory: str | Path, specs: Any = None) -> FramePredictor:
    """Load a saved predictor; ``specs`` (name -> TargetSpec) overrides target lookup."""
    directory = Path(directory)
    meta = read_metadata(directory)
    name = meta.get("predictor")
    if name == "adapted":  # a base predictor with a per-machine correction (opscope adapt)
        from opscope.predictor.adapt.correction import load_adapted

        return load_adapted(directory, specs=specs)
    if name not in PREDICTORS:
        raise PredictorError(f"{directory / METADATA}: field 'predictor': unknown {name!r}")
    machines = _machines(directory / METADATA, meta.get("machines"))
    if machines:
        specs = _with_machine_specs(specs, machines, directory / METADATA)
    try:
        pred = PREDICTORS[name](**meta.get("params", {}), specs=specs)
    except TypeError as exc:
        raise PredictorError(f"{directory / METADATA}: field 'params' does not fit {name} ({exc})") from None
    if isinstance(pred, AnalyticalPredictor):
        return pred.fit(pd.DataFrame())
    if meta.get("schema") is None or meta.get("engine") is None:
        raise PredictorError(f"{directory / METADATA}: fields 'schema'/'engine' missing")
    if not isinstance(meta["schema"], dict):
        raise PredictorError(f"{directory / METADATA}: field 'schema' must be an object")
    try:
        schema = FeatureSchema.from_dict(meta["schema"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PredictorError(f"{directory / METADATA}: field 'schema' is malformed ({exc})") from None
    schema.check_current(str(directory / METADATA))
    engine_meta = _engine_meta(directory, meta)
    engine_cls = _ENGINES.get(engine_meta.get("engine"))
    if engine_cls is None:
        raise PredictorError(f"{directory / METADATA}: field 'engine': unknown {engine_meta.get('engine')!r}")
    pred.schema_ = schema
    try:
        pred.engine_ = engine_cls.load(directory, engine_meta)
    except PredictorError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
        file = directory / str(engine_meta.get("file", "?"))
        raise PredictorError(f"{file}: not a readable {engine_meta.get('engine')} model "
                             f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}); "
                             "train the predictor again") from None
    if machines:
        pred.machines_ = machines
    try:
        pred.n_train_ = int(meta.get("n_train", 0))
    except (TypeError, ValueError):
        raise PredictorError(f"{directory / METADATA}: field 'n_train' {meta.get('n_train')!r} is not a number") from None
    ratio = meta.get("unseen_kind_log_ratio")
    if ratio is not None:  # absent in predictors saved before it: unseen kinds go to the engine
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not np.isfinite(ratio):
            raise PredictorError(f"{directory / METADATA}: field 'unseen_kind_log_ratio' {ratio!r} is not a number")
        pred.unseen_kind_log_ratio_ = float(ratio)
    training = meta.get("training")
    if isinstance(training, dict) and isinstance(training.get("workload_keys"), list):
        pred.training_workloads_ = frozenset(str(k) for k in training["workload_keys"])
    if isinstance(training, dict) and isinstance(training.get("ranges"), dict):
        pred.training_ranges_ = _ranges(training["ranges"], directory / METADATA)
    return pred


def _ranges(raw: dict, where: Path) -> dict[str, dict[str, list[float]]]:
    try:
        return {str(kind): {str(c): [float(lo), float(hi)] for c, (lo, hi) in cols.items()}
                for kind, cols in raw.items()}
    except (TypeError, ValueError, AttributeError):
        raise PredictorError(f"{where}: field 'training.ranges' is not kind -> {{column: [min, max]}}") from None
