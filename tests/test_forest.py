"""The compiled tree kernel (``opscope.predictor.models.forest``) against XGBoost's own predictions."""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest
import xgboost as xgb

from opscope.predictor.models import forest

needs_kernel = pytest.mark.skipif(forest.kernel() is None, reason="no C compiler for the tree kernel here")


def _data(rows: int = 1000, features: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    X[rng.random(X.shape) < 0.15] = np.nan  # missing values: each split's default direction decides
    y = np.nansum(X[:, :4], axis=1) + np.where(np.isnan(X[:, 5]), 2.0, np.sin(np.nan_to_num(X[:, 5])))
    X[:5, 0] = np.inf  # and values past every threshold (predicted, never trained on)
    return X, y


def _booster(X, y, depth: int, seed: int, objective: str = "reg:squarederror", rounds: int = 20):
    params = {"max_depth": depth, "eta": 0.2, "seed": seed, "objective": objective, "nthread": 1,
              "subsample": 0.8, "max_bin": 64}
    finite = np.where(np.isinf(X), np.nan, X)  # XGBoost trains on no infinity (it predicts them)
    return xgb.train(params, xgb.DMatrix(finite, label=y, missing=np.nan), num_boost_round=rounds)


@needs_kernel
@pytest.mark.parametrize("depth", [1, 3, 5, 8])
def test_the_kernel_sums_each_booster_as_xgboost_does(depth):
    X, y = _data()
    boosters = [_booster(X, y, depth, 0), _booster(X, y, depth, 1, objective="reg:absoluteerror")]
    packed = forest.PackedForest(boosters, X.shape[1])
    assert packed.depth == depth
    margin = np.linspace(-1.0, 1.0, len(X))
    for rows in (1, 17, 130, len(X)):  # fewer rows than a vector, than a block, and several blocks
        for threads in (1, 2):
            sums = packed.sums(X[:rows], threads)
            for j, b in enumerate(boosters):
                # XGBoost adds its base score, or the base margin in its place; it sums in float32
                expected = b.inplace_predict(X[:rows].astype(np.float32), missing=np.nan)
                np.testing.assert_allclose(sums[:, j] + packed.base[j], expected, rtol=0, atol=2e-5)
                with_margin = b.inplace_predict(X[:rows].astype(np.float32), missing=np.nan,
                                                base_margin=margin[:rows])
                np.testing.assert_allclose(sums[:, j] + margin[:rows], with_margin, rtol=0, atol=2e-5)


@needs_kernel
def test_a_leaf_above_the_last_level_reaches_its_value_by_every_path():
    # a stump next to deep trees: its leaves sit at depth 1 of a complete tree of depth 6
    X, y = _data(seed=3)
    boosters = [_booster(X, y, 6, 0), _booster(X, y, 1, 1, rounds=3)]
    packed = forest.PackedForest(boosters, X.shape[1])
    assert packed.depth == 6
    sums = packed.sums(X)
    expected = boosters[1].inplace_predict(X.astype(np.float32), missing=np.nan) - packed.base[1]
    np.testing.assert_allclose(sums[:, 1], expected, rtol=0, atol=1e-5)


def _build(tmp_path, flags: list[str]):
    """The kernel's source compiled with ``flags`` (another instruction set than this CPU's best)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src, lib = tmp_path / "forest.c", tmp_path / f"forest{len(flags)}.so"
    src.write_text(forest.SOURCE)
    done = subprocess.run([cc, "-O2", *flags, "-fPIC", "-shared", "-o", str(lib), str(src)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot compile with {flags}: {done.stderr.decode()[:200]}")
    return forest.Kernel(ctypes.CDLL(str(lib)))


@pytest.mark.parametrize("flags, lanes", [([], 1), (["-mavx2", "-mfma"], 8)])
def test_the_narrower_paths_give_the_same_sums(tmp_path, flags, lanes):
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86 instruction sets")
    if lanes == 8 and "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this CPU has no AVX2")
    lib = _build(tmp_path, flags)
    assert lib.lanes == lanes
    X, y = _data(rows=300)
    boosters = [_booster(X, y, 4, 0), _booster(X, y, 7, 1)]
    packed = forest.PackedForest(boosters, X.shape[1])
    sums = packed.sums(X, 2, lib=lib)
    for j, b in enumerate(boosters):
        expected = b.inplace_predict(X.astype(np.float32), missing=np.nan)
        np.testing.assert_allclose(sums[:, j] + packed.base[j], expected, rtol=0, atol=2e-5)


def test_without_the_kernel_xgboost_predicts_the_same(monkeypatch):
    from opscope.predictor.models.xgb import XGBEngine

    X, y = _data(rows=600)
    engine = XGBEngine(n_estimators=15, max_depth=5, learning_rate=0.2, subsample=0.8, colsample_bytree=0.8,
                       min_child_weight=1.0, reg_lambda=1.0, seed=0, n_models=2, mixed=True, relative_weight=0.3,
                       relative_models=2)
    offset = np.full(len(X), -0.5)
    anchor = np.where(np.arange(len(X)) % 3 == 0, np.nan, 0.25)
    engine.fit(np.where(np.isinf(X), np.nan, X), y, offset=offset, anchor=anchor)
    fast = engine.predict(X, offset=offset, anchor=anchor)
    monkeypatch.setenv("OPSCOPE_TREES", "xgboost")
    engine.__dict__.pop("_packed", None)
    assert forest.kernel() is None
    slow = engine.predict(X, offset=offset, anchor=anchor)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=2e-5)


def test_trees_too_deep_for_the_kernel_are_left_to_xgboost(monkeypatch):
    X, y = _data(rows=400)
    b = _booster(X, y, 3, 0)
    monkeypatch.setattr(forest, "MAX_DEPTH", 2)
    assert forest.packed([b], X.shape[1]) is None


@needs_kernel
def test_a_frame_with_another_width_is_refused():
    X, y = _data(rows=100)
    packed = forest.PackedForest([_booster(X, y, 3, 0)], X.shape[1])
    with pytest.raises(ValueError, match="expected 12 features"):
        packed.sums(X[:, :5])


def test_a_cache_folder_that_cannot_be_written_builds_the_kernel_elsewhere(tmp_path, monkeypatch):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("OPSCOPE_CACHE_DIR", str(blocker))
    monkeypatch.setattr(forest, "_lib", None)
    monkeypatch.setattr(forest, "_lib_tried", False)
    built = forest.kernel()
    assert built is not None and built.keep is not None  # in a temporary folder of its own
    assert blocker.read_text() == "a file where the cache folder would be"
    X, y = _data(rows=50)
    b = _booster(X, y, 3, 0)
    packed = forest.PackedForest([b], X.shape[1])
    np.testing.assert_allclose(packed.sums(X, lib=built)[:, 0] + packed.base[0],
                               b.inplace_predict(X.astype(np.float32), missing=np.nan), rtol=0, atol=1e-5)
