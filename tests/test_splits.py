"""Each split holds out exactly what it names: asserted on the data, not on the split's word."""

import numpy as np
import pytest

from opscope.errors import PredictorError
from opscope.predictor.evaluation.splits import SPLITS, Fold, check_fold, make_splits
from opscope.predictor.evaluation.synthetic import synthetic_frame


@pytest.fixture(scope="module")
def frame():
    f = synthetic_frame(seed=3, models=4, per_model=6, schedules=3)
    # make one operator shared by two models on some rows only: the split must still keep it out
    key = f["workload_key"].iloc[0]
    first = f.index[f["workload_key"] == key][0]
    f.loc[first, "models"] = "model0,model1"
    return f


def _models(frame, rows):
    return {m for v in frame["models"].iloc[rows] for m in v.split(",")}


@pytest.mark.parametrize("split", SPLITS)
def test_split_partitions_rows(frame, split):
    for fold in make_splits(frame, split, seed=1):
        assert len(np.intersect1d(fold.train, fold.test)) == 0
        assert len(fold.train) > 0 and len(fold.test) > 0


def test_unseen_shapes_shares_no_workload(frame):
    folds = make_splits(frame, "unseen-shapes", seed=2)
    assert len(folds) == 5
    for fold in folds:
        train = set(frame["workload_key"].iloc[fold.train])
        test = set(frame["workload_key"].iloc[fold.test])
        assert train and test and not (train & test)
        assert len(fold.train) + len(fold.test) == len(frame)
    # every workload is held out exactly once over the folds
    held = np.concatenate([f.test for f in folds])
    assert sorted(held.tolist()) == list(range(len(frame)))
    (single,) = make_splits(frame, "unseen-shapes", seed=2, folds=1, test_size=0.25)
    assert frame["workload_key"].iloc[single.test].nunique() == round(frame["workload_key"].nunique() * 0.25)


def test_unseen_kinds_one_fold_per_kind(frame):
    folds = make_splits(frame, "unseen-kinds")
    assert sorted(f.held_out for f in folds) == sorted(f"kind={k}" for k in frame["kind"].unique())
    for f in folds:
        kind = f.held_out.split("=")[1]
        assert set(frame["kind"].iloc[f.test]) == {kind}
        assert kind not in set(frame["kind"].iloc[f.train])


def test_leave_one_model_out_excludes_shared_operators(frame):
    folds = make_splits(frame, "leave-one-model-out")
    assert {f.held_out for f in folds} == {f"model={m}" for m in ("model0", "model1", "model2", "model3")}
    for f in folds:
        model = f.held_out.split("=")[1]
        assert model not in _models(frame, f.train)
        test_keys = set(frame["workload_key"].iloc[f.test])
        assert not test_keys & set(frame["workload_key"].iloc[f.train])
    # the operator that model1 shares only through one row of model0 is held out with model1
    shared = frame["workload_key"].iloc[0]
    fold1 = next(f for f in folds if f.held_out == "model=model1")
    assert shared in set(frame["workload_key"].iloc[fold1.test])


def test_unseen_threads(frame):
    folds = make_splits(frame, "unseen-threads")
    assert [f.held_out for f in folds] == ["threads=1", "threads=2"]
    for f in folds:
        t = int(f.held_out.split("=")[1])
        assert set(frame["threads"].iloc[f.test]) == {t}
        assert t not in set(frame["threads"].iloc[f.train])


def test_random_is_reproducible_and_sized(frame):
    a, = make_splits(frame, "random", seed=5, test_size=0.25, folds=1)
    b, = make_splits(frame, "random", seed=5, test_size=0.25, folds=1)
    assert np.array_equal(a.test, b.test)
    assert len(a.test) == round(len(frame) * 0.25)
    five = make_splits(frame, "random", seed=5)
    assert sorted(np.concatenate([f.test for f in five]).tolist()) == list(range(len(frame)))


def test_check_fold_catches_leaks(frame):
    rows = np.arange(len(frame))
    with pytest.raises(PredictorError, match="workloads in both"):
        # rows of one workload are contiguous (6 per operator): cutting at 75 splits one of them
        check_fold(frame, Fold("unseen-shapes", "x", rows[:75], rows[75:]))
    with pytest.raises(PredictorError, match="share rows"):
        check_fold(frame, Fold("random", "x", rows[:10], rows[5:]))
    leaky = Fold("leave-one-model-out", "model=model0", rows, rows[:0])
    with pytest.raises(PredictorError, match="held-out model"):
        check_fold(frame, leaky)


def test_bad_split_name_and_single_thread(frame):
    with pytest.raises(PredictorError, match="unknown split"):
        make_splits(frame, "by-moon-phase")
    with pytest.raises(PredictorError, match="nothing to hold out"):
        make_splits(frame[frame["threads"] == 1], "unseen-threads")


def test_leave_one_model_out_keeps_space_operators_in_training(frame):
    f = frame.copy()
    space_keys = sorted(f["workload_key"].unique())[:3]
    f.loc[f["workload_key"].isin(space_keys), "models"] = "space"
    folds = make_splits(f, "leave-one-model-out")
    assert sorted(fold.held_out for fold in folds) == [f"model={m}" for m in ("model0", "model1", "model2", "model3")]
    space_rows = np.flatnonzero(f["workload_key"].isin(space_keys).to_numpy())
    for fold in folds:  # generated operators are never held out as if they were a model
        assert set(space_rows) <= set(fold.train)
