"""opscope train / evaluate / tune on a synthetic dataset, through the real command line."""

import json

import pytest

from opscope.cli import main
from opscope.commands.tune import pick_operator
from opscope.errors import OpscopeError
from opscope.predictor.evaluation.synthetic import synthetic_frame, synthetic_operators, synthetic_spec
from opscope.targets import save_target


@pytest.fixture()
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSCOPE_SPEC_DIR", str(tmp_path / "specs"))
    (tmp_path / "specs").mkdir()
    save_target(synthetic_spec(), tmp_path / "specs" / "synthetic-cpu.toml")
    path = tmp_path / "d.parquet"
    synthetic_frame(seed=2, models=3, per_model=6, schedules=4).to_parquet(path)
    return path


def test_train_then_evaluate_as_is(data, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["train", "--store", str(data), "--model", "calibrated", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "what the correction learned" in text and "dense" in text
    assert json.loads((out / "metadata.json").read_text())["predictor"] == "calibrated"
    assert main(["evaluate", "--data", str(data), "--predictor", str(out), "--as-is"]) == 0
    assert "mape" in capsys.readouterr().out


def test_train_on_several_stores_leaving_out_the_operators_of_another(data, tmp_path, capsys):
    import pandas as pd

    frame = pd.read_parquet(data)
    by_model = {m: frame[frame["models"] == m] for m in ("model0", "model1", "model2")}
    a, b, held = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "held.parquet"
    pd.concat([by_model["model0"], by_model["model1"]]).to_parquet(a)
    pd.concat([by_model["model1"], by_model["model2"]]).to_parquet(b)  # model1's rows in both stores
    by_model["model2"].to_parquet(held)
    out = tmp_path / "p2"
    assert main(["train", "--store", str(a), "--store", str(b), "--leave-out", str(held), "--model", "linear",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "metadata.json").read_text())["training"]
    # model1's rows count once; every row of an operator model2 measured is left out, in whichever store
    kept = pd.concat([by_model["model0"], by_model["model1"]])
    gone = kept["workload_key"].isin(set(by_model["model2"]["workload_key"]))
    assert 0 < gone.sum() < len(kept)
    assert meta["rows"] == int((~gone).sum())
    assert set(meta["workload_keys"]) == set(kept[~gone]["workload_key"])
    n_ops = len(set(by_model["model2"]["workload_key"]))
    assert f"left out {int(gone.sum()) + len(by_model['model2'])} rows of {n_ops} operators" in capsys.readouterr().err
    # another store's ids count from 1 too: a measurement with the same id but another schedule is kept
    other = by_model["model0"].copy()
    other["schedule_id"] = other["schedule_id"] + "-elsewhere"
    c = tmp_path / "c.parquet"
    other.to_parquet(c)
    out3 = tmp_path / "p3"
    assert main(["train", "--store", str(a), "--store", str(c), "--model", "linear", "--out", str(out3)]) == 0
    meta3 = json.loads((out3 / "metadata.json").read_text())["training"]
    assert meta3["rows"] == len(by_model["model0"]) * 2 + len(by_model["model1"])


def test_evaluate_leave_one_model_out_prints_model_totals(data, tmp_path, capsys):
    rc = main(["evaluate", "--data", str(data), "--split", "leave-one-model-out", "--models", "analytical,linear",
               "--out", str(tmp_path / "ev")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "held-out models" in text and "model2" in text
    assert (tmp_path / "ev_models.csv").exists() and (tmp_path / "ev_folds.csv").exists()


def test_user_errors_are_one_line(data, tmp_path, capsys):
    assert main(["train", "--store", str(data), "--model", "oracle", "--out", str(tmp_path / "x")]) == 2
    assert "unknown --model 'oracle'" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(data), "--split", "sideways"]) == 2
    assert "unknown --split" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path / "missing.parquet")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_pick_operator():
    ops = synthetic_operators(seed=0, models=1, per_model=3)
    assert pick_operator(ops, ops[1].name) is ops[1]
    assert pick_operator(ops, "2") is ops[2]
    with pytest.raises(OpscopeError, match="matches no operator"):
        pick_operator(ops, "nothing-like-this")


def test_label_choice_is_recorded_and_checked(data, tmp_path, capsys):
    out = tmp_path / "pmin"
    assert main(["train", "--store", str(data), "--model", "linear", "--label", "latency_min_s", "--out", str(out)]) == 0
    assert json.loads((out / "metadata.json").read_text())["label"] == "latency_min_s"
    assert main(["train", "--store", str(data), "--label", "latency_p99", "--out", str(out)]) == 2
    assert "not a latency column" in capsys.readouterr().err


def test_predict_a_layer_table_model(data, tmp_path, capsys):
    from pathlib import Path

    import opscope.workloads as workloads

    table = Path(workloads.__file__).parent / "tables" / "resnet18_convs.csv"
    out = tmp_path / "pred"
    assert main(["train", "--store", str(data), "--model", "calibrated", "--out", str(out)]) == 0
    capsys.readouterr()
    rc = main(["predict", "--predictor", str(out), "--model", str(table), "--target", "synthetic-cpu",
               "--threads", "2", "--out", str(tmp_path / "p.csv")])
    assert rc == 0
    import pandas as pd

    df = pd.read_csv(tmp_path / "p.csv")
    body = df[df["op"] != "TOTAL"]
    assert len(body) >= 5 and (body["predicted_us"] > 0).all()
    # the total is the count-weighted sum of the per-operator predictions
    total = df.loc[df["op"] == "TOTAL", "total_us"].item()
    assert total == pytest.approx((body["predicted_us"] * body["count"]).sum(), rel=1e-9)


@pytest.mark.parametrize("flag, field, param, saved, file, lacks", [
    # the boosters alone, without the network beside them
    ("--no-network", "mlp", "nn_weight", {"file": "model.mlp.npz", "weight": 0.4}, "model.mlp.npz", "no network"),
    # without the boosters relative to the default schedule
    ("--no-relative", "relative", "relative_weight",
     {"files": ["relative.0.xgb.json", "relative.1.xgb.json"], "weight": 0.3}, "relative.1.xgb.json",
     "no such boosters"),
])
def test_train_flag_leaves_out_a_part_of_xgboost(data, tmp_path, capsys, flag, field, param, saved, file, lacks):
    both, without = tmp_path / "both", tmp_path / "without"
    assert main(["train", "--store", str(data), "--out", str(both)]) == 0
    assert main(["train", "--store", str(data), flag, "--out", str(without)]) == 0
    assert json.loads((both / "metadata.json").read_text())["engine"][field] == saved
    meta = json.loads((without / "metadata.json").read_text())
    assert field not in meta["engine"] and meta["params"][param] == 0.0
    assert (both / file).is_file() and not (without / file).exists()
    capsys.readouterr()
    assert main(["train", "--store", str(data), "--model", "linear", flag, "--out", str(tmp_path / "l")]) == 2
    assert f"{flag}: --model linear has {lacks} (xgboost does)" in capsys.readouterr().err
