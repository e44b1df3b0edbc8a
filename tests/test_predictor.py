"""The predictor contract: fit/predict/clone, save/load round trips, clear errors, calibration."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from opscope.errors import PredictorError
from opscope.predictor.evaluation.synthetic import (
    TARGET,
    synthetic_frame,
    synthetic_operators,
    synthetic_spec,
)
from opscope.predictor.features.build import build_features, fit_schema, specs_from
from opscope.predictor.frames import operator_frame, read_frame
from opscope.predictor.models import persist
from opscope.predictor.models.calibrated import CalibratedAnalyticalPredictor

SPECS = {TARGET: synthetic_spec()}
SMALL = {
    "xgboost": {"n_estimators": 40, "max_depth": 4},
    "random_forest": {"n_estimators": 15},
    "gradient_boosting": {"n_estimators": 30, "max_depth": 3},
    "linear": {},
    "calibrated": {"n_estimators": 40, "max_depth": 4},
    "analytical": {},
}


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame(seed=0, models=3, per_model=6, schedules=6)


def _make(name, **extra):
    return persist.make_predictor(name, specs=SPECS, **SMALL[name], **extra)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_contract_fit_predict_clone(frame, name):
    pred = _make(name)
    assert pred.fit(frame) is pred
    out = pred.predict(frame)
    assert out.shape == (len(frame),) and np.all(out > 0) and np.all(np.isfinite(out))
    twin = clone(pred)
    assert twin.get_params() == pred.get_params()
    assert not any(k.endswith("_") for k in vars(twin))  # clone carries hyperparameters only
    if name != "analytical":
        with pytest.raises(PredictorError, match="before fit"):
            twin.predict(frame)


@pytest.mark.parametrize("name", ["xgboost", "random_forest", "gradient_boosting", "linear", "calibrated"])
def test_learned_predictors_beat_a_constant(frame, name):
    y = frame["latency_median_s"].to_numpy()
    pred = _make(name).fit(frame).predict(frame)
    # in-sample log error must be well under that of predicting the geometric mean for everything
    err = np.mean(np.abs(np.log(pred / y)))
    const = np.mean(np.abs(np.log(y) - np.log(y).mean()))
    assert err < 0.5 * const


@pytest.mark.parametrize("name", sorted(SMALL))
def test_save_load_round_trip(frame, tmp_path, name):
    pred = _make(name).fit(frame)
    out = persist.save_predictor(pred, tmp_path / name, training=frame)
    files = {p.name for p in out.iterdir()}
    assert "metadata.json" in files
    assert not any(f.endswith((".pkl", ".pickle", ".joblib")) for f in files)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["predictor"] == name and "xgboost" in meta["versions"]
    assert meta["training"]["rows"] == len(frame)
    loaded = persist.load_predictor(out, specs=SPECS)
    assert type(loaded) is type(pred)
    np.testing.assert_allclose(loaded.predict(frame), pred.predict(frame), rtol=1e-9)
    if name != "analytical":  # which operators it was trained on survives the round trip
        assert loaded.training_workloads_ == set(frame["workload_key"]) == pred.training_workloads_


def test_xgboost_is_saved_in_native_json(frame, tmp_path):
    out = persist.save_predictor(_make("xgboost").fit(frame), tmp_path / "x")
    model = json.loads((out / "model.xgb.json").read_text())
    assert "learner" in model  # XGBoost's own JSON layout


def test_schema_mismatch_is_a_clear_error(frame, tmp_path):
    out = persist.save_predictor(_make("xgboost").fit(frame), tmp_path / "p")
    meta_path = out / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["schema"]["version"] = 999
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="feature schema .* v999 does not match"):
        persist.load_predictor(out, specs=SPECS)
    from opscope.predictor.features.build import SCHEMA_VERSION

    meta["schema"]["version"] = SCHEMA_VERSION
    meta["schema"]["columns"] = meta["schema"]["columns"][:-3] + ["f_mystery"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="feature columns do not match"):
        persist.load_predictor(out, specs=SPECS)


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(PredictorError, match="no metadata.json"):
        persist.load_predictor(tmp_path)
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(PredictorError, match="not valid JSON"):
        persist.load_predictor(tmp_path)
    with pytest.raises(PredictorError, match="unknown predictor"):
        persist.make_predictor("crystal-ball")


def test_calibrated_never_below_roofline_and_reports(frame):
    pred = _make("calibrated").fit(frame)
    feats = pred.features(frame)
    out = pred.predict(frame)
    assert np.all(out >= feats.roofline_s * (1 - 1e-12))
    report = pred.correction_report(frame)
    assert set(report["kind"]) == set(frame["kind"])
    # effective rate can never exceed the nominal peak/bandwidth (the floor guarantees it)
    assert (report["eff_gflops"] <= report["nominal_peak_gflops"] * (1 + 1e-9)).all()
    assert (report["eff_gbps"] <= report["nominal_bw_gbps"] * (1 + 1e-9)).all()


def test_calibrated_generalises_to_unseen_model_better_than_plain_analytical(frame):
    train = frame[frame["models"] != "model2"]
    test = frame[frame["models"] == "model2"]
    y = test["latency_median_s"].to_numpy()
    cal = CalibratedAnalyticalPredictor(n_estimators=60, max_depth=4, specs=SPECS).fit(train).predict(test)
    ana = _make("analytical").fit(train).predict(test)
    assert np.mean(np.abs(cal / y - 1)) < np.mean(np.abs(ana / y - 1))


def test_features_schema_and_tiles(frame):
    schema = fit_schema(frame)
    feats = build_features(frame, schema, specs_from(SPECS))
    assert feats.X.shape == (len(frame), len(schema.columns))
    col = {c: i for i, c in enumerate(schema.columns)}
    # raw TIR-variable tile columns are replaced by loop-named ones; log2 of the factor
    assert not any(c.startswith("knob_tile_") for c in schema.columns)
    dense = (frame["kind"] == "dense").to_numpy()
    tile = frame.loc[dense, "knob_tile_vk_3"].to_numpy(dtype=float)
    np.testing.assert_allclose(feats.X[dense, col["sk_k_3_log2"]], np.log2(tile))
    # FLOPs feature is log2 of the operator's FLOPs
    np.testing.assert_allclose(feats.X[:, col["f_flops_log2"]], np.log2(frame["flops"].to_numpy(dtype=float)))
    assert feats.X[:, col["t_threads"]].tolist() == frame["threads"].tolist()
    assert dict(schema.knob_vocab)["knob_loop_order"]  # loop order in loop names ("k0 k1 ...")
    assert all(w.split()[0][0] in "nkcpqrsbm" for w in dict(schema.knob_vocab)["knob_loop_order"])


def test_features_v4_stride_aliasing_and_register_tile(frame):
    from opscope.predictor.features.build import _alias_log2
    from opscope.workloads.operator import Operator, TensorInfo

    def dense(k, n):
        return Operator(name="d", kind="dense", flops=2 * k * n, tensors=(
            TensorInfo("x", (1, k), "float32", "input"), TensorInfo("w", (k, n), "float32", "weight"),
            TensorInfo("y", (1, n), "float32", "output")))

    # a [784, 1024] float32 weight steps 1024 * 4 = 4096 bytes down a column: 2**12 divides it
    assert _alias_log2(dense(784, 1024), "weight") == 12
    # 1000 * 4 = 4000 = 2**5 * 125
    assert _alias_log2(dense(784, 1000), "weight") == 5
    # [1, n]: the only outer dimension has extent 1, so no stride is walked
    assert np.isnan(_alias_log2(dense(784, 1000), "input"))
    # capped at 2**16: [8, 65536] float32 steps 2**18 bytes
    assert _alias_log2(dense(8, 65536), "weight") == 16

    # one dense row of the synthetic frame (m = 128, n = k = 512, x/w/y all [., 512] float32)
    # with tiles m 2*4*4*4, n 8*4*2*8 (spatial: 4 factors), k 64*8 (reduction: 2 factors)
    row = frame[frame["kind"] == "dense"].iloc[[1]].copy()
    row = row.drop(columns=[c for c in row.columns if c.startswith("knob_tile_")])
    for var, fs in {"m": (2, 4, 4, 4), "n": (8, 4, 2, 8), "k": (64, 8)}.items():
        for level, f in enumerate(fs):
            row[f"knob_tile_{var}_{level}"] = float(f)
    row["knob_loop_order"] = "m0 n0 m1 n1 k0 m2 n2 k1 m3 n3"
    schema = fit_schema(frame)
    X = build_features(row.reset_index(drop=True), schema, specs_from(SPECS)).X[0]
    col = {c: i for i, c in enumerate(schema.columns)}
    assert X[col["f_weight_alias_log2"]] == 11  # 512 * 4 = 2**11
    assert X[col["sk_inner_spatial_log2"]] == np.log2(4 * 8)  # m3 * n3 outputs accumulated at once
    assert X[col["sk_inner_reduce_log2"]] == np.log2(8)  # k1
    # 32 float32 accumulators in 256-bit registers of 8 lanes: 4 registers
    assert X[col["r_acc_vregs_log2"]] == np.log2(32 / (256 / 32))


def test_a_kind_never_seen_scales_its_bound_like_the_memory_bound_default_rows(frame, tmp_path):
    train = frame[frame["kind"] != "elementwise"].reset_index(drop=True)
    unseen = frame[frame["kind"] == "elementwise"].reset_index(drop=True)
    pred = _make("xgboost").fit(train)
    f = pred.features(train)
    bound = np.maximum(f.roofline_s, f.analytical_threads_s)
    col = {c: i for i, c in enumerate(f.columns)}
    rows = (f.X[:, col["a_bound_compute"]] == 0) & (train["schedule_kind"] == "default").to_numpy()
    assert 0 < rows.sum() < len(train)
    y = train["latency_median_s"].to_numpy()
    ratio = np.median(np.log(y[rows] / bound[rows]))  # median log(measured / bound) over those rows
    assert pred.unseen_kind_log_ratio_ == pytest.approx(ratio)
    g = pred.features(unseen)
    expected = np.exp(ratio) * np.maximum(g.roofline_s, g.analytical_threads_s)
    np.testing.assert_allclose(pred.predict(unseen), expected, rtol=1e-12)
    # rows of the kinds it saw still come from the trees
    seen = pred.predict(train)
    assert not np.allclose(seen, np.exp(ratio) * bound)
    # saved and loaded with it; a bad value is one line naming the field
    out = persist.save_predictor(pred, tmp_path / "p", training=train)
    np.testing.assert_allclose(persist.load_predictor(out, specs=SPECS).predict(unseen), expected, rtol=1e-12)
    meta = json.loads((out / "metadata.json").read_text())
    meta["unseen_kind_log_ratio"] = "lots"
    (out / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="field 'unseen_kind_log_ratio' 'lots' is not a number"):
        persist.load_predictor(out, specs=SPECS)


def test_bad_frames_raise_named_errors(frame, tmp_path):
    pred = _make("linear").fit(frame)
    with pytest.raises(PredictorError, match="missing column"):
        pred.predict(frame.drop(columns=["operator_json"]))
    broken = frame.copy()
    broken.loc[3, "operator_json"] = "{}"
    with pytest.raises(PredictorError, match="row 3: operator_json"):
        pred.predict(broken)
    with pytest.raises(PredictorError, match="no rows with status 'ok'"):
        _make("linear").fit(frame.assign(status="timeout"))
    with pytest.raises(PredictorError, match="no such file"):
        read_frame(tmp_path / "none.parquet")


def test_operator_frame_predicts_unmeasured_operators(frame):
    pred = _make("xgboost").fit(frame)
    ops = synthetic_operators(seed=9, models=1, per_model=3)
    out = pred.predict(operator_frame(ops, TARGET, threads=2))
    assert out.shape == (3,) and np.all(out > 0)


def test_read_frame_parquet_keeps_ok_rows(frame, tmp_path):
    f = frame.copy()
    f.loc[0, "status"] = "build_error"
    f.loc[0, "latency_median_s"] = np.nan
    path = tmp_path / "d.parquet"
    f.to_parquet(path)
    back = read_frame(path)
    assert len(back) == len(frame) - 1


def test_operator_the_analytical_model_cannot_estimate_falls_back_to_roofline():
    from opscope.predictor.features.estimates import analytical_terms, roofline_bound
    from opscope.workloads.operator import Operator, TensorInfo

    op = Operator(name="odd", kind="other", flops=1000,
                  tensors=(TensorInfo("x", (1000,), "float32", "input"), TensorInfo("y", (1000,), "float32", "output")))
    spec = synthetic_spec()
    terms = analytical_terms(op, spec, {"L1": {"zz": 4}})
    assert terms["a_latency_s"] >= roofline_bound(op, spec) * (1 - 1e-12)
    # roofline by hand: 8000 bytes / 20 GB/s = 4e-7 s beats 1000 FLOP / 192 GFLOP/s
    assert roofline_bound(op, spec) == pytest.approx(max(8000 / 20e9, 1000 / 192e9))


def test_per_roofline_target_predicts_latency_and_a_bad_target_is_named(frame):
    from opscope.predictor.frames import labels

    y = labels(frame)
    roof = _make("xgboost").set_params(target="per_roofline").fit(frame)
    pred = roof.predict(frame)
    # it regresses latency over the roofline bound, then multiplies back: in-sample it must fit as well
    # as the plain target does (within a factor of 2 in mean |log error|)
    plain = _make("xgboost").fit(frame).predict(frame)
    err = np.mean(np.abs(np.log(pred / y)))
    assert np.all(pred > 0) and err < 2 * np.mean(np.abs(np.log(plain / y))) + 0.05
    with pytest.raises(PredictorError, match="target 'seconds': expected one of latency, per_roofline"):
        _make("xgboost").set_params(target="seconds").fit(frame)


def test_rows_whose_operator_cannot_be_read_are_skipped_with_their_reason(frame):
    bad = frame.copy()
    bad.loc[bad.index[:3], "operator_json"] = '{"name": "broken"}'
    pred = _make("xgboost").fit(bad)
    assert [r for r, _ in pred.skipped_rows_] == list(bad.index[:3])
    assert all("operator_json is not an operator" in why for _, why in pred.skipped_rows_)
    assert pred.n_train_ == len(frame) - 3
    everything = frame.assign(operator_json="[]")
    with pytest.raises(PredictorError, match="no row has a readable operator"):
        _make("xgboost").fit(everything)


def test_long_frames_get_the_same_features_computed_once_per_distinct_row(monkeypatch):
    import opscope.predictor.features.build as features_mod
    from opscope.predictor.features.build import build_features, fit_schema, specs_from

    frame = synthetic_frame(seed=4, models=2, per_model=5, schedules=4)
    big = frame.iloc[np.resize(np.arange(len(frame)), features_mod.DEDUP_ROWS + 500)].reset_index(drop=True)
    big["latency_median_s"] = np.linspace(1e-4, 2e-4, len(big))  # labels differ; features must not
    schema = fit_schema(frame)
    once = build_features(big, schema, specs_from(SPECS))
    monkeypatch.setattr(features_mod, "DEDUP_ROWS", 10**9)
    every = build_features(big, schema, specs_from(SPECS))
    assert np.array_equal(once.X, every.X, equal_nan=True)
    for name in ("analytical_s", "analytical_threads_s", "roofline_s", "kind"):
        assert np.array_equal(getattr(once, name), getattr(every, name)), name
    # rows 0 and len(frame) are the same stored row; row 1 is another
    assert np.array_equal(once.X[0], once.X[len(frame)], equal_nan=True)
    assert not np.array_equal(once.X[0], once.X[1], equal_nan=True)


def test_xgboost_weighs_default_schedule_rows(frame, monkeypatch):
    from opscope.predictor.models import xgb

    seen = {}
    real_fit = xgb.XGBEngine.fit

    def spy(self, X, y, weight=None, offset=None, anchor=None):
        seen["weight"] = weight
        return real_fit(self, X, y, weight=weight, offset=offset, anchor=anchor)

    monkeypatch.setattr(xgb.XGBEngine, "fit", spy)
    rows = frame.reset_index(drop=True)
    is_default = (rows["schedule_kind"] == "default").to_numpy()
    assert 0 < is_default.sum() < len(rows)
    xgb.XGBoostPredictor(n_estimators=5, specs=SPECS).fit(rows)
    # the default rows weigh 3 (the default), every other row 1
    assert list(seen["weight"]) == [3.0 if d else 1.0 for d in is_default]
    xgb.XGBoostPredictor(n_estimators=5, default_weight=1.0, specs=SPECS).fit(rows)
    assert seen["weight"] is None
    with pytest.raises(PredictorError, match="default_weight must be > 0"):
        xgb.XGBoostPredictor(n_estimators=5, default_weight=0.0, specs=SPECS).fit(rows)


def test_xgboost_averages_its_seeded_members_and_saves_each(frame, tmp_path):
    from opscope.predictor.models import xgb

    rows = frame.reset_index(drop=True)
    # the boosters alone (nn_weight=0): the network beside them has its own test below
    three = xgb.XGBoostPredictor(n_estimators=20, max_depth=4, n_models=3, seed=7, nn_weight=0, target="latency",
                                 relative_weight=0, specs=SPECS).fit(rows)
    assert len(three.engine_.boosters) == 3
    # each member is the one-booster predictor of its seed: 7, 8, 9; the ensemble is their mean log
    singles = [xgb.XGBoostPredictor(n_estimators=20, max_depth=4, n_models=1, seed=s, nn_weight=0, target="latency",
                                    relative_weight=0, specs=SPECS).fit(rows)
               for s in (7, 8, 9)]
    logs = np.array([np.log(p.predict(rows)) for p in singles])
    assert not np.allclose(logs[0], logs[1])  # the seeds differ, so averaging does something
    np.testing.assert_allclose(np.log(three.predict(rows)), logs.mean(axis=0), rtol=1e-6)
    out = persist.save_predictor(three, tmp_path / "three")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["engine"]["files"] == ["model.xgb.json", "model.1.xgb.json", "model.2.xgb.json"]
    np.testing.assert_allclose(persist.load_predictor(out, specs=SPECS).predict(rows), three.predict(rows), rtol=1e-9)
    # a predictor saved before ensembles (one file, no "files") still loads
    meta["engine"].pop("files")
    (out / "metadata.json").write_text(json.dumps(meta))
    np.testing.assert_allclose(persist.load_predictor(out, specs=SPECS).predict(rows), singles[0].predict(rows),
                               rtol=1e-9)
    meta["engine"]["files"] = ["../elsewhere.json"]
    (out / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="engine.files"):
        persist.load_predictor(out, specs=SPECS)
    with pytest.raises(PredictorError, match="n_models must be an integer >= 1"):
        xgb.XGBoostPredictor(n_estimators=5, n_models=0, specs=SPECS).fit(rows)


def test_xgboost_absolute_loss_fits_the_median(frame):
    """loss="absolute" regresses the median log latency: one tree that may not split (a single leaf)
    with a learning rate of 1 predicts the median of the labels, squared error their mean (in log)."""
    from opscope.predictor.models import xgb

    y = frame["latency_median_s"].to_numpy()
    kw = dict(n_estimators=1, max_depth=1, min_child_weight=1e12, learning_rate=1.0, subsample=1.0,
              colsample_bytree=1.0, n_models=1, default_weight=1.0, reg_lambda=0.0, nn_weight=0, target="latency",
              specs=SPECS)
    med = xgb.XGBoostPredictor(loss="absolute", **kw).fit(frame).predict(frame.iloc[:3])
    mean = xgb.XGBoostPredictor(loss="squared", **kw).fit(frame).predict(frame.iloc[:3])
    np.testing.assert_allclose(np.log(med), np.median(np.log(y)), atol=0.02)
    np.testing.assert_allclose(np.log(mean), np.mean(np.log(y)), atol=1e-3)
    with pytest.raises(PredictorError, match="loss 'cubic': expected one of squared, absolute"):
        xgb.XGBoostPredictor(loss="cubic", **kw).fit(frame)


def test_mlp_engine_learns_a_linear_law_and_clips_what_it_cannot_know():
    from opscope.predictor.models.mlp import MLPEngine

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(2000, 3))
    X[::7, 2] = np.nan  # a missing feature is the training mean
    y = 2.0 * X[:, 0] - X[:, 1]  # in [-3, 3]
    eng = MLPEngine(hidden=(32, 32), epochs=40, seed=1).fit(X, y)
    probe = np.array([[0.5, -0.5, 0.0], [-0.25, 0.25, np.nan]])
    np.testing.assert_allclose(eng.predict(probe), [2 * 0.5 + 0.5, 2 * -0.25 - 0.25], atol=0.1)
    # far outside the training rows a network would extrapolate; its inputs stop at the training range,
    # so a far row is predicted as the nearest corner of what it saw: 2 x max(x0) - min(x1), about 3
    far = eng.predict(np.array([[1e3, -1e3, 0.0], [-1e3, 1e3, 0.0]]))
    edge = np.array([[X[:, 0].max(), X[:, 1].min(), 0.0], [X[:, 0].min(), X[:, 1].max(), 0.0]])
    np.testing.assert_allclose(far, eng.predict(edge), rtol=1e-6)
    np.testing.assert_allclose(far, [2 * X[:, 0].max() - X[:, 1].min(), 2 * X[:, 0].min() - X[:, 1].max()], atol=0.15)
    # a network saved before the range was kept clips at CLIP_SD standard deviations and its output range:
    # there the far rows stop at max(y) + 1 and min(y) - 1
    old = MLPEngine.__new__(MLPEngine)
    old.arrays = {k: v for k, v in eng.arrays.items() if k not in ("low", "high")}
    np.testing.assert_allclose(old.predict(np.array([[1e3, -1e3, 0.0], [-1e3, 1e3, 0.0]])), [y.max() + 1.0, y.min() - 1.0])


def test_xgboost_with_a_network_blends_in_log_and_round_trips(frame, tmp_path):
    from opscope.predictor.models import xgb

    rows = frame.reset_index(drop=True)
    kw = dict(n_estimators=20, max_depth=4, n_models=1, seed=3, relative_weight=0, specs=SPECS)
    both = xgb.XGBoostPredictor(nn_weight=0.25, **kw).fit(rows)
    trees = xgb.XGBoostPredictor(nn_weight=0, **kw).fit(rows)
    assert trees.engine_.mlp is None
    X = both.features(rows).X
    net = both.engine_.mlp.predict(X)
    # the same boosters (same seed and rows), then 0.75 of their log latency plus 0.25 of the network's
    np.testing.assert_allclose(np.log(both.predict(rows)), 0.75 * np.log(trees.predict(rows)) + 0.25 * net, rtol=1e-6)
    out = persist.save_predictor(both, tmp_path / "both")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["engine"]["mlp"] == {"file": "model.mlp.npz", "weight": 0.25}
    np.testing.assert_allclose(persist.load_predictor(out, specs=SPECS).predict(rows), both.predict(rows), rtol=1e-9)
    (out / "model.mlp.npz").write_bytes(b"not an npz")
    with pytest.raises(PredictorError, match="model.mlp.npz: not a readable MLP model"):
        persist.load_predictor(out, specs=SPECS)
    meta["engine"]["mlp"]["weight"] = 1.5
    (out / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match=r"engine.mlp.weight' must be a number in \(0, 1\), got 1.5"):
        persist.load_predictor(out, specs=SPECS)
    meta["engine"]["mlp"] = {"file": "../x.npz", "weight": 0.25}
    (out / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="engine.mlp.file"):
        persist.load_predictor(out, specs=SPECS)
    assert not (tmp_path / "x.npz").exists()
    with pytest.raises(PredictorError, match=r"nn_weight must be a number in \[0, 1\), got 1"):
        xgb.XGBoostPredictor(nn_weight=1, **kw).fit(rows)


def test_mixed_target_splits_the_boosters_between_latency_and_latency_over_the_bound(frame, tmp_path):
    from opscope.predictor.models import xgb
    from opscope.predictor.models.base import _bound_s

    rows = frame.reset_index(drop=True)
    mixed = xgb.XGBoostPredictor(n_estimators=20, max_depth=4, n_models=2, seed=5, nn_weight=0, target="mixed",
                                 relative_weight=0, specs=SPECS).fit(rows)
    assert mixed.engine_.targets == ["latency", "per_roofline"]
    feats = mixed.features(rows)
    log_bound = np.log(_bound_s(feats))
    plain, over = mixed.engine_.boosters
    # member 0 predicts log latency; member 1 log(latency / bound), its bound given as XGBoost's base margin
    by_hand = 0.5 * (plain.inplace_predict(feats.X, missing=np.nan)
                     + over.inplace_predict(feats.X, missing=np.nan, base_margin=log_bound))
    np.testing.assert_allclose(np.log(mixed.predict(rows)), by_hand, rtol=1e-6)
    # without the margin the second member is far off: the bound matters to it
    assert np.median(np.abs(over.inplace_predict(feats.X, missing=np.nan) - np.log(rows["latency_median_s"]))) > 1.0
    out = persist.save_predictor(mixed, tmp_path / "mixed")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["engine"]["targets"] == ["latency", "per_roofline"]
    np.testing.assert_allclose(persist.load_predictor(out, specs=SPECS).predict(rows), mixed.predict(rows), rtol=1e-9)
    meta["engine"]["targets"] = ["latency"]
    (out / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="engine.targets' must list 'latency' or 'per_roofline' for each of the 2"):
        persist.load_predictor(out, specs=SPECS)
    forest = _make("random_forest")
    forest.target = "mixed"  # no constructor of an engine without members offers it; fit still refuses it
    with pytest.raises(PredictorError, match="target 'mixed': RandomForestPredictor has no members"):
        forest.fit(rows)


def test_measured_default_anchor_is_the_median_default_of_the_same_operator_threads_and_target():
    from opscope.predictor.features.defaults import measured_default_log

    rows = pd.DataFrame({
        "operator_json": ["A", "A", "A", "A", "A", "B"],
        "target": ["t", "t", "t", "t", "u", "t"],
        "threads": [1, 1, 1, 2, 1, 1],
        "pinned": [False] * 6,
        "schedule_kind": ["default", "default", "sampled", "sampled", "sampled", "sampled"],
    })
    y = np.array([1e-3, 3e-3, 5e-4, 7e-4, 9e-4, 2e-3])
    got = measured_default_log(rows, y)
    # row 2: the median log of A's two defaults at 1 thread on t, (log 1e-3 + log 3e-3) / 2; no default at 2
    # threads, on target u or for operator B; the default rows themselves have no anchor
    np.testing.assert_allclose(got[2], (np.log(1e-3) + np.log(3e-3)) / 2)
    assert np.isnan(got[[0, 1, 3, 4, 5]]).all()


def test_default_twins_have_the_features_of_the_measured_default_rows():
    from opscope.predictor.features.defaults import default_twins

    f = read_frame("datasets/space-cpu-lowres-v1/measurements.parquet", label="latency_min_s")
    f = f[f["workload_key"].isin(f["workload_key"].unique()[:12])].reset_index(drop=True)
    twins, index = default_twins(f)
    sampled = (f["schedule_kind"] != "default").to_numpy()
    assert (index[sampled] >= 0).all() and (index[~sampled] == -1).all()
    assert len(twins) == f[sampled].groupby(["operator_json", "threads"]).ngroups
    schema = fit_schema(f)
    twin_x = build_features(twins, schema).X
    real = f[~sampled].set_index(["operator_json", "threads"])
    real_rows = [f.index[~sampled][real.index.get_loc((o, t))] for o, t in zip(twins["operator_json"], twins["threads"])]
    real_x = build_features(f, schema).X[real_rows]
    # every feature, the loop knobs of TVM's default lowering included, is the measured default row's
    assert np.array_equal(np.isnan(twin_x), np.isnan(real_x))
    np.testing.assert_array_equal(np.nan_to_num(twin_x), np.nan_to_num(real_x))
    # an operator without loops and without a script has no default knobs to give: no twin
    op = json.loads(f["operator_json"].iloc[0])
    op["loops"] = []
    bare = f.iloc[[1]].assign(operator_json=json.dumps(op), workload_script=None, schedule_kind="sampled")
    assert default_twins(bare)[1].tolist() == [-1]


def test_relative_members_regress_over_the_predicted_default_and_round_trip(frame, tmp_path):
    from opscope.predictor.models import xgb

    rows = frame.reset_index(drop=True)
    kw = dict(n_estimators=20, max_depth=4, n_models=1, seed=3, nn_weight=0, target="latency", specs=SPECS)
    rel = xgb.XGBoostPredictor(relative_weight=0.25, relative_models=1, **kw).fit(rows)
    plain = xgb.XGBoostPredictor(relative_weight=0, **kw).fit(rows)
    assert len(rel.engine_.relative) == 1 and plain.engine_.relative == []
    default = (rows["schedule_kind"] == "default").to_numpy()
    # default rows: the boosters alone (the same seed and rows as without relative members)
    np.testing.assert_allclose(rel.predict(rows[default]), plain.predict(rows[default]), rtol=1e-9)
    # a sampled row: 0.75 x the boosters + 0.25 x the relative booster over the predicted default of its
    # operator at its threads (its twin has the measured default row's features, so that row's prediction)
    first = {}
    for i, key in enumerate(zip(rows["operator_json"][default], rows["threads"][default])):
        first.setdefault(key, i)
    anchor = np.log(plain.predict(rows[default]))[[first[key] for key in
                                                   zip(rows["operator_json"][~default], rows["threads"][~default])]]
    X = rel.features(rows[~default].reset_index(drop=True)).X
    by_hand = (0.75 * np.log(plain.predict(rows[~default]))
               + 0.25 * rel.engine_.relative[0].inplace_predict(X, missing=np.nan, base_margin=anchor))
    np.testing.assert_allclose(np.log(rel.predict(rows[~default])), by_hand, rtol=1e-6)
    out = persist.save_predictor(rel, tmp_path / "rel")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["engine"]["relative"] == {"files": ["relative.0.xgb.json"], "weight": 0.25}
    np.testing.assert_allclose(persist.load_predictor(out, specs=SPECS).predict(rows), rel.predict(rows), rtol=1e-9)
    meta["engine"]["relative"]["weight"] = 0
    (out / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match=r"engine.relative.weight' must be a number in \(0, 1\), got 0"):
        persist.load_predictor(out, specs=SPECS)
    meta["engine"]["relative"] = {"files": ["../r.json"], "weight": 0.25}
    (out / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="engine.relative.files"):
        persist.load_predictor(out, specs=SPECS)
    with pytest.raises(PredictorError, match=r"relative_weight must be a number in \[0, 1\), got 1"):
        xgb.XGBoostPredictor(relative_weight=1, **kw).fit(rows)


def test_long_frames_are_predicted_on_more_threads_with_the_same_result(frame, monkeypatch):
    import os

    from opscope.predictor.models import xgb

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    rows_per = xgb.ROWS_PER_PREDICT_THREAD
    # one thread per ROWS_PER_PREDICT_THREAD rows, at most the 3 CPUs this process may use
    assert [xgb.predict_threads(n) for n in (1, rows_per - 1, rows_per, 2 * rows_per, 10 * rows_per)] == [1, 1, 1, 2, 3]
    rows = frame.reset_index(drop=True)
    pred = _make("xgboost").fit(rows)
    one = pred.predict(rows)
    used = []
    real = xgb.predict_threads
    monkeypatch.setattr(xgb, "predict_threads", lambda n: used.append(real(n * rows_per)) or used[-1])
    np.testing.assert_array_equal(pred.predict(rows), one)  # the same trees, the same sums
    assert used and max(used) == 3


def test_a_predictor_turns_only_rows_it_has_not_seen_into_features(frame, monkeypatch):
    import opscope.predictor.features.build as features_mod

    rows = frame.reset_index(drop=True)
    first = rows.iloc[: len(rows) // 2]
    pred = _make("xgboost").fit(rows)
    fresh = _make("xgboost").fit(rows).predict(rows)  # the same fit, never asked before
    built = []
    real = features_mod.build_features
    monkeypatch.setattr(features_mod, "build_features",
                        lambda f, schema, specs=None: built.append(len(f)) or real(f, schema, specs))
    from opscope.predictor.features.build import row_keys

    a = pred.predict(first)
    assert sum(built) >= len(np.unique(row_keys(first)))  # its distinct rows (and the default twins of them)
    built.clear()
    again = pred.predict(first)
    assert built == []  # every row known: no features computed
    np.testing.assert_array_equal(again, a)
    both = pred.predict(rows)
    unseen = set(row_keys(rows).tolist()) - set(row_keys(first).tolist())
    assert built[0] == len(unseen)  # the frame's rows: only those not seen yet (then their default twins')
    np.testing.assert_array_equal(both, fresh)  # the cache changes nothing in what is predicted


def test_row_keys_tell_apart_what_features_depend_on(frame):
    from opscope.predictor.features.build import row_keys

    rows = frame.reset_index(drop=True).iloc[:4].copy()
    rows["knob_empty"] = np.nan  # a column with no value at all hashes too
    keys = row_keys(rows)
    assert len(set(keys.tolist())) == len(rows.drop_duplicates(subset=[c for c in rows if c != "latency_median_s"]))
    again = rows.copy()
    again["latency_median_s"] = 1.0  # a label is not a feature
    assert np.array_equal(row_keys(again), keys)
    other = rows.copy()
    other.loc[0, "threads"] = int(other.loc[0, "threads"]) + 7
    changed = row_keys(other)
    assert changed[0] != keys[0] and np.array_equal(changed[1:], keys[1:])


def test_the_feature_cache_starts_again_when_full(frame):
    from opscope.predictor.features.build import (
        FeatureCache,
        build_features,
        fit_schema,
        row_keys,
        specs_from,
    )

    rows = frame.reset_index(drop=True)
    schema = fit_schema(rows)
    distinct = [len(np.unique(row_keys(rows.iloc[a:b]))) for a, b in ((0, 8), (8, 20))]
    assert sum(distinct) > 10 > distinct[0]
    cache = FeatureCache(schema, specs_from(SPECS), max_rows=10)
    got = cache.features(rows.iloc[:8])
    assert len(cache) == distinct[0]
    got2 = cache.features(rows.iloc[8:20])
    assert len(cache) == distinct[1]  # past ten: only the newest call's rows kept
    expected = build_features(rows.iloc[8:20].reset_index(drop=True), schema, specs_from(SPECS))
    np.testing.assert_array_equal(got2.X, expected.X)
    np.testing.assert_array_equal(got.X, build_features(rows.iloc[:8].reset_index(drop=True), schema,
                                                        specs_from(SPECS)).X)
    # a call whose rows are partly cached and partly new, past the limit: it keeps all of its own rows
    mixed = rows.iloc[14:30].reset_index(drop=True)
    got3 = cache.features(mixed)
    assert len(cache) == len(np.unique(row_keys(mixed)))
    np.testing.assert_array_equal(got3.X, build_features(mixed, schema, specs_from(SPECS)).X)


def test_the_network_predicts_the_same_in_chunks_on_more_threads(monkeypatch):
    from opscope.predictor.models import mlp

    rng = np.random.default_rng(5)
    X = rng.normal(size=(700, 6))
    y = X[:, 0] - 0.5 * X[:, 1] ** 2
    net = mlp.MLPEngine(hidden=(16, 8), epochs=3).fit(X, y)
    whole = net.predict(X)
    # by hand, one layer after another on the whole frame: standardise, SiLU between layers, clip
    h = net._standardise(X)
    for j in range(net.n_layers):
        h = h @ net.arrays[f"w{j}"] + net.arrays[f"b{j}"]
        if j < net.n_layers - 1:
            h = h / (1.0 + np.exp(-np.clip(h, -60.0, 60.0)))
    lo, hi = net.arrays["range"]
    np.testing.assert_allclose(whole, np.clip(h[:, 0] + float(net.arrays["centre"]), lo, hi), rtol=0, atol=1e-5)
    monkeypatch.setattr(mlp, "PREDICT_CHUNK", 64)  # 11 chunks, shared by 3 threads
    np.testing.assert_allclose(net.predict(X, threads=3), whole, rtol=0, atol=1e-5)
    np.testing.assert_allclose(net.predict(X, threads=1), whole, rtol=0, atol=1e-5)
