"""A predictor records the sizes it learned from and names the rows it extrapolates on."""

from __future__ import annotations

import pandas as pd
import pytest

from opscope.predictor.evaluation.synthetic import synthetic_frame, synthetic_spec
from opscope.predictor.models.base import outside_training, training_ranges
from opscope.predictor.models.persist import load_predictor, make_predictor, save_predictor

SPECS = {"synthetic-cpu": synthetic_spec()}


def test_ranges_per_kind_by_hand():
    frame = pd.DataFrame({"kind": ["dense", "dense", "conv2d"], "flops": [1e6, 4e6, 2e7],
                          "bytes": [1e4, 3e4, 5e5]})
    assert training_ranges(frame) == {"dense": {"flops": [1e6, 4e6], "bytes": [1e4, 3e4]},
                                      "conv2d": {"flops": [2e7, 2e7], "bytes": [5e5, 5e5]}}

    class Seen:
        training_ranges_ = training_ranges(frame)

    rows = pd.DataFrame({"kind": ["dense", "dense", "dense", "conv2d", "softmax"],
                         "flops": [2e6, 8e6, 2e6, 2e7, 1e5], "bytes": [2e4, 2e4, 1e3, 5e5, 1e3]})
    why = outside_training(Seen(), rows)
    assert why[0] == "" and why[3] == ""  # inside (bounds included)
    assert why[1].startswith("flops 8e+06 outside the 1e+06-4e+06 seen for dense")
    assert why[2].startswith("bytes 1e+03 outside")
    assert why[4] == "kind softmax not in training"
    assert list(outside_training(object(), rows)) == [""] * 5  # no recorded ranges: nothing claimed


def test_a_saved_predictor_keeps_its_ranges(tmp_path):
    frame = synthetic_frame(seed=0, models=2, per_model=3, schedules=2)
    pred = make_predictor("xgboost", n_estimators=5, specs=SPECS).fit(frame, frame["latency_median_s"])
    save_predictor(pred, tmp_path / "p", training=frame)
    back = load_predictor(tmp_path / "p")
    assert back.training_ranges_ == pred.training_ranges_
    kind = frame["kind"].iloc[0]
    big = frame[frame["kind"] == kind].head(1).assign(flops=float(frame["flops"].max()) * 10)
    assert outside_training(back, big)[0].startswith("flops")


def test_malformed_ranges_are_one_line(tmp_path):
    import json

    frame = synthetic_frame(seed=1, models=2, per_model=2, schedules=2)
    pred = make_predictor("xgboost", n_estimators=3, specs=SPECS).fit(frame, frame["latency_median_s"])
    save_predictor(pred, tmp_path / "p", training=frame)
    meta_path = tmp_path / "p" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["training"]["ranges"] = {"dense": {"flops": "wide"}}
    meta_path.write_text(json.dumps(meta))
    from opscope.errors import PredictorError

    with pytest.raises(PredictorError, match="training.ranges"):
        load_predictor(tmp_path / "p")


def _as_kind(frame: pd.DataFrame, rows, kind: str) -> pd.DataFrame:
    import json

    out = frame.copy()
    out.loc[rows, "kind"] = kind
    out.loc[rows, "operator_json"] = [json.dumps({**json.loads(j), "kind": kind}) for j in out.loc[rows, "operator_json"]]
    return out


def test_a_kind_never_seen_is_predicted_as_its_alias():
    """A 2-D product of two tensors (matmul) is predicted as the batch_matmul of batch 1 it amounts to by
    a predictor that learned batch_matmul and not matmul: exactly as the same rows named batch_matmul,
    and named as extrapolated with the alias it was read as."""
    from opscope.predictor.models.base import KIND_ALIASES, aliased_kinds

    assert KIND_ALIASES == {"matmul": "batch_matmul"}
    frame = synthetic_frame(seed=1, models=2, per_model=3, schedules=2)
    dense = frame["kind"] == "dense"
    train = _as_kind(frame, dense, "batch_matmul")  # the synthetic GEMMs, learned as batch_matmul
    pred = make_predictor("xgboost", n_estimators=20, specs=SPECS).fit(train, train["latency_median_s"])
    assert "matmul" not in pred.training_ranges_ and "batch_matmul" in pred.training_ranges_
    asked = _as_kind(frame, dense, "matmul")
    got, want = pred.predict(asked), pred.predict(train)
    assert (got[dense.to_numpy()] == want[dense.to_numpy()]).all()
    why = outside_training(pred, asked)
    assert set(why[dense.to_numpy()]) == {"kind matmul not in training (predicted as batch_matmul)"}
    # a predictor that learned matmul reads it as matmul; one that learned neither: no alias to read
    assert aliased_kinds(asked, {"matmul": {}, "batch_matmul": {}}) is asked
    assert aliased_kinds(asked, {"conv2d": {}}) is asked
    assert aliased_kinds(asked, None) is asked
