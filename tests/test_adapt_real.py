"""One real, tiny adapt run on this machine: real builds and measurements of a few tiny operators."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from opscope.collector.te_ops import add_operator, dense_operator
from opscope.predictor import make_predictor, read_frame, save_predictor
from opscope.predictor.adapt.correction import load_adapted
from opscope.predictor.adapt.run import adapt_machine
from opscope.store.protocol import Protocol

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parent.parent / "datasets" / "host-cpu-v1" / "measurements.parquet"


def test_tiny_real_adapt_run(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSCOPE_SPEC_DIR", str(tmp_path / "specs"))
    train = read_frame(DATA, label="latency_min_s")
    base = make_predictor("xgboost", n_estimators=60).fit(train, train["latency_min_s"].to_numpy())
    save_predictor(base, tmp_path / "base", training=train, label="latency_min_s")
    ops = [dense_operator(32, 32, 32), dense_operator(64, 32, 48), dense_operator(16, 64, 64), add_operator(4096)]
    # default schedules only (no schedule sampling), two thread counts: 8 candidates, 5 measured, each
    # chosen schedule built once
    res = adapt_machine(tmp_path / "base", ops, tmp_path / "adapted", budget=5, store=tmp_path / "s.db",
                        trials=0, threads=(1, 2), probe=False, protocol=Protocol(repeat=3, min_repeat_ms=5),
                        say=print)
    assert res.candidates == 8 and len(res.selection.indices) == 5 and res.measured == 5
    rows = read_frame(tmp_path / "s.db", label="latency_min_s")
    assert len(rows) == 5 and set(rows["status"]) == {"ok"}
    measured = {(k, s, int(t)) for k, s, t in zip(rows["workload_key"], rows["schedule_id"], rows["threads"])}
    assert measured == set(res.chosen)
    # fewer than six rows: the correction is the median of log(measured / base) over them
    back = load_adapted(tmp_path / "adapted")
    y = rows["latency_min_s"].to_numpy()
    expected = np.exp(np.median(np.log(y) - np.log(back.base.predict(rows))))
    assert back.chosen_ == "blend (shift 1.00)"  # the default correction, with one candidate
    np.testing.assert_allclose(back.predict(rows) / back.base.predict(rows), expected, rtol=1e-9)
    print(f"tiny adapt run: {res.seconds}")
    meta = json.loads((tmp_path / "adapted" / "metadata.json").read_text())
    assert meta["base_training"]["rows"] == len(train) and meta["training"]["rows"] == 5
    assert meta["adaptation"]["spec_source"] == "nominal: probing was turned off"
