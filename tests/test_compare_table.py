"""compare(): the numbers of the table checked against a store filled with known records.

The model here is three hand-built operators (two dense layers, one of them used twice, and a
convolution) on a hand-written spec named ``host`` with a ``host-measured`` twin in a private spec
folder, so every figure in the table can be recomputed from the records and the analytical model.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest

from opscope.analytical import estimate
from opscope.collector.protocol import Protocol
from opscope.errors import OpscopeError
from opscope.report import compare
from opscope.report.machine import OtherMachineError
from opscope.store import Record, open_store
from opscope.targets import save_target
from opscope.targets.spec import MemoryLevel, TargetSpec
from opscope.workloads.layer_table import conv_op, dense_op

THIS = "m-this-machine"
OTHER = "m-other-machine"


@dataclass(frozen=True)
class TinyWorkload:
    name: str
    operators: tuple
    ir_module: object = None
    params: object = None


def tiny_ops():
    fc1 = dense_op("fc1", 8, 256, 512, "float32", "table", "tiny")
    fc2 = dense_op("fc2", 8, 64, 256, "float32", "table", "tiny").with_count(2)
    conv = conv_op("conv", 1, 32, 16, 28, 28, 3, 3, 1, 1, 1, "float32", "table", "tiny")
    return (fc1, fc2, conv)


def tiny_spec(name="host", peak=1e11, dram_bw=1e10, nominal=True):
    return TargetSpec(
        name=name, kind="cpu", frequency_hz=1e9, nominal=nominal, cores=2,
        memory=(MemoryLevel("L1", 32 * 1024, 4e11), MemoryLevel("DRAM", None, dram_bw)),
        peak_flops={"float32": peak},
    )


def record(op, sid, kind, threads, lat, machine=THIS, target="host", status="ok"):
    return Record(op=op, schedule_id=sid, schedule_kind=kind, trace_json="" if kind == "default" else "[]",
                  knobs={"tile": 4} if kind == "sampled" else {}, threads=threads, target=target,
                  machine_id=machine, protocol=Protocol(), status=status,
                  error="" if status == "ok" else "boom", raw_latencies_s=lat)


# Known latencies (seconds, raw repeats).  Medians are what the table must report.
FC1 = [("default", "default", 1, (4.0e-3, 5.0e-3, 4.5e-3)),     # median 4.5e-3
       ("default", "default", 2, (2.6e-3, 2.4e-3, 2.5e-3)),     # median 2.5e-3  <- best default
       ("s1", "sampled", 1, (3.0e-3, 3.2e-3, 3.1e-3)),          # median 3.1e-3
       ("s1", "sampled", 2, (1.7e-3, 1.6e-3, 1.5e-3))]          # median 1.6e-3  <- best
FC2 = [("default", "default", 1, (9.0e-4, 1.1e-3, 1.0e-3)),     # median 1.0e-3
       ("s7", "sampled", 1, (6.0e-4, 6.0e-4, 7.0e-4))]          # median 6.0e-4  <- best (threads 1)


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    monkeypatch.setenv("OPSCOPE_SPEC_DIR", str(spec_dir))
    measured = tiny_spec(name="host-measured", peak=5e10, dram_bw=8e9, nominal=False)
    save_target(measured, spec_dir / "host-measured.toml")
    monkeypatch.setattr("opscope.report.machine.this_machine", lambda: (THIS, {"cpu": "test cpu"}))
    ops = tiny_ops()
    fc1, fc2, _conv = ops
    db = tmp_path / "runs.db"
    with open_store(db) as st:
        st.add_machine(THIS, {"cpu": "test cpu"})
        for sid, kind, t, lat in FC1:
            st.add(record(fc1, sid, kind, t, lat))
        for sid, kind, t, lat in FC2:
            st.add(record(fc2, sid, kind, t, lat))
        # failures are data, never a latency: a failed build must not become the best schedule
        st.add(record(fc1, "bad", "sampled", 2, (), status="build_error"))
        # measurements of another target must be ignored
        st.add(record(fc2, "s9", "sampled", 1, (1e-6,), target="h100"))
    return TinyWorkload("tiny", ops), tiny_spec(), measured, db


def by_op(frame):
    return {r["op"]: r for _, r in frame.iterrows()}


def test_table_numbers_match_store_and_analytical_model(setup):
    wl, spec, measured_spec, db = setup
    res = compare(wl, target=spec, store=db, whole_model=False, progress=False)
    rows = by_op(res.frame)
    fc1, fc2, conv = wl.operators

    # measured columns: medians of the raw repeats, best over schedules and threads
    assert rows["fc1"]["best_s"] == pytest.approx(statistics.median((1.7e-3, 1.6e-3, 1.5e-3)))
    assert rows["fc1"]["best_threads"] == 2 and rows["fc1"]["best_schedule_id"] == "s1"
    assert rows["fc1"]["default_s"] == pytest.approx(2.5e-3) and rows["fc1"]["default_threads"] == 2
    assert rows["fc1"]["n_measurements"] == 4  # the build error is not a measurement
    assert rows["fc2"]["best_s"] == pytest.approx(6.0e-4) and rows["fc2"]["best_threads"] == 1
    assert rows["fc2"]["n_measurements"] == 2  # the h100 row is left out
    assert not rows["conv"]["measured"] and math.isnan(rows["conv"]["best_s"])
    # noisy flag of the best measurement: stdev/mean above the protocol's 5%
    assert statistics.stdev((1.7, 1.6, 1.5)) / 1.6 > 0.05 and rows["fc1"]["best_noisy"]

    # analytical columns: the model's own estimate under each spec
    for name, op in (("fc1", fc1), ("fc2", fc2), ("conv", conv)):
        nominal = estimate(op, spec)
        probed = estimate(op, measured_spec)
        assert rows[name]["analytical_s"] == pytest.approx(nominal.latency_s)
        assert rows[name]["bound"] == nominal.bound
        assert rows[name]["analytical_measured_s"] == pytest.approx(probed.latency_s)
        assert rows[name]["attainable_flops"] == pytest.approx(probed.attainable_flops)
    # the measured spec has half the peak and less bandwidth: it can only be slower
    assert rows["fc1"]["analytical_measured_s"] >= rows["fc1"]["analytical_s"]

    # derived columns, by hand: error = estimate / measured - 1, FLOP/s = flops / best
    flops_fc1 = 2 * 8 * 256 * 512
    assert rows["fc1"]["flops"] == flops_fc1
    assert rows["fc1"]["achieved_flops"] == pytest.approx(flops_fc1 / 1.6e-3)
    assert rows["fc1"]["analytical_err"] == pytest.approx(estimate(fc1, spec).latency_s / 1.6e-3 - 1)
    assert rows["fc1"]["roofline_share"] == pytest.approx(
        (flops_fc1 / 1.6e-3) / estimate(fc1, measured_spec).attainable_flops)

    # TOTAL: count-weighted over the measured operators (fc2 runs twice)
    total = rows["TOTAL"]
    assert total["best_s"] == pytest.approx(1 * 1.6e-3 + 2 * 6.0e-4)
    assert total["default_s"] == pytest.approx(1 * 2.5e-3 + 2 * 1.0e-3)
    assert total["analytical_s"] == pytest.approx(estimate(fc1, spec).latency_s + 2 * estimate(fc2, spec).latency_s)
    assert total["count"] == 3
    assert total["flops"] == flops_fc1 + 2 * (2 * 8 * 64 * 256)


def test_unmeasured_operator_gets_the_collect_command(setup):
    wl, spec, _m, db = setup
    res = compare(wl, target=spec, store=db, whole_model=False, progress=False)
    rows = by_op(res.frame)
    cmd = rows["conv"]["collect_cmd"]
    assert cmd.startswith("opscope collect --model tiny --target host")
    assert f"--store {db}" in cmd and cmd.endswith("--ops conv")
    assert rows["fc1"]["collect_cmd"] == ""
    assert "measured 2/3 operators" in res.summary[0]


def test_predictions_are_made_on_the_best_measured_row(setup):
    wl, spec, _m, db = setup

    class ThreadAware:
        """Predicts from the row itself, so using the wrong row shows."""

        def predict(self, frame):
            sampled = (frame["schedule_kind"] == "sampled").to_numpy()
            return 1e-3 * frame["threads"].to_numpy() + np.where(sampled, 1e-4, 0.0) + frame["flops"].to_numpy() * 0

    res = compare(wl, target=spec, store=db, predictor=ThreadAware(), whole_model=False, progress=False)
    rows = by_op(res.frame)
    assert rows["fc1"]["predicted_s"] == pytest.approx(2e-3 + 1e-4)   # best row: s1 at 2 threads
    assert rows["fc2"]["predicted_s"] == pytest.approx(1e-3 + 1e-4)   # best row: s7 at 1 thread
    # unmeasured: the default schedule at the whole-model thread count (the largest measured, 2)
    assert rows["conv"]["predicted_s"] == pytest.approx(2e-3)
    assert rows["fc1"]["predicted_err"] == pytest.approx(2.1e-3 / 1.6e-3 - 1)
    assert rows["TOTAL"]["predicted_s"] == pytest.approx(2.1e-3 + 2 * 1.1e-3)


def test_a_trained_predictor_from_the_predictor_room(setup):
    from opscope.predictor import make_predictor
    from opscope.store import load_dataframe

    wl, spec, _m, db = setup
    frame = load_dataframe(db)
    pred = make_predictor("linear").fit(frame[frame["status"] == "ok"])
    res = compare(wl, target=spec, store=db, predictor=pred, whole_model=False, progress=False)
    rows = by_op(res.frame)
    best_fc1 = frame[(frame["op_name"] == "fc1") & (frame["schedule_id"] == "s1") & (frame["threads"] == 2)]
    assert rows["fc1"]["predicted_s"] == pytest.approx(float(pred.predict(best_fc1)[0]))
    assert rows["conv"]["predicted_s"] > 0


def test_predictions_on_training_operators_are_marked_in_sample_and_not_scored(setup):
    wl, spec, _m, db = setup
    fc1, fc2, _conv = wl.operators

    class Known:
        """Predicts 1 ms everywhere; trained on fc1 only."""

        training_workloads_ = frozenset({fc1.key})

        def predict(self, frame):
            return np.full(len(frame), 1e-3)

    res = compare(wl, target=spec, store=db, predictor=Known(), whole_model=False, progress=False)
    rows = by_op(res.frame)
    assert rows["fc1"]["in_sample"] and not rows["fc2"]["in_sample"] and not rows["conv"]["in_sample"]
    # only fc2 (measured, held out) is scored: its best is 1.1 ms, predicted 1 ms -> error 1/1.1 - 1
    err = abs(1e-3 / rows["fc2"]["best_s"] - 1)
    assert f"MAPE {100 * err:.1f}%" in res.summary[1] and "on 1 held-out operator(s)" in res.summary[1]
    fc1_err = abs(1e-3 / rows["fc1"]["best_s"] - 1)
    assert f"1 operator(s) in its training set, in-sample MAPE {100 * fc1_err:.1f}%" in res.summary[1]

    Known.training_workloads_ = frozenset({fc1.key, fc2.key})
    res = compare(wl, target=spec, store=db, predictor=Known(), whole_model=False, progress=False)
    assert "predicted: no held-out operator to score (2 operator(s) in its training set" in res.summary[1]


def test_store_from_another_machine_is_refused_naming_both(setup, tmp_path):
    wl, spec, _m, db = setup
    with open_store(db) as st:
        st.add_machine(OTHER, {"cpu": "someone else's cpu"})
        st.add(record(wl.operators[2], "default", "default", 1, (1e-3,), machine=OTHER))
    with pytest.raises(OtherMachineError) as err:
        compare(wl, target=spec, store=db, whole_model=False, progress=False)
    msg = str(err.value)
    assert OTHER in msg and THIS in msg and "someone else's cpu" in msg and "--allow-other-machine" in msg
    res = compare(wl, target=spec, store=db, whole_model=False, progress=False, allow_other_machine=True)
    assert by_op(res.frame)["conv"]["best_s"] == pytest.approx(1e-3)


def test_remote_targets_are_not_checked_against_this_machine(setup):
    wl, spec, _m, db = setup
    remote = replace(spec, name="board")
    with open_store(db) as st:
        st.add_machine(OTHER, {"cpu": "the board's cpu"})
        st.add(record(wl.operators[0], "default", "default", 1, (7e-3,), machine=OTHER, target="board"))
    res = compare(wl, target=remote, store=db, whole_model=False, progress=False)
    assert by_op(res.frame)["fc1"]["best_s"] == pytest.approx(7e-3)


def test_missing_store_is_one_clear_error(setup, tmp_path):
    wl, spec, _m, _db = setup
    with pytest.raises(OpscopeError, match="nope.db: no such file"):
        compare(wl, target=spec, store=tmp_path / "nope.db", whole_model=False, progress=False)


def test_outputs_written(setup, tmp_path):
    wl, spec, _m, db = setup
    res = compare(wl, target=spec, store=db, out=tmp_path / "rep", whole_model=False, progress=False,
                  predictor=_Const(1e-3))
    assert res.html_path.is_file()
    for name in ("roofline", "predicted_vs_measured", "layers", "thread_scaling"):
        png = res.png(name)
        assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    csv = pd.read_csv(tmp_path / "rep" / "comparison.csv")
    assert list(csv["op"])[-1] == "TOTAL" and len(csv) == 4
    html = res.html_path.read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "http://" not in html and "https://" not in html  # nothing to fetch
    assert "--ops conv" in html
    # the terminal table is slowest first among measured operators, TOTAL last
    lines = res.table_text().splitlines()
    assert lines[2].startswith("fc1") and lines[-2].startswith("TOTAL")
    assert "1.6 ms*" in lines[2] and lines[-1].startswith("* noisy")
    assert json.dumps(res.summary)  # plain strings


class _Const:
    def __init__(self, v):
        self.v = v

    def predict(self, frame):
        return np.full(len(frame), self.v)


def test_collect_command_repeats_the_model_parameters():
    from opscope.report.comparison import collect_command

    assert (collect_command("resnet18", "host", "my runs.db", ["conv_a"], {"image_size": 64})
            == "opscope collect --model resnet18 --param image_size=64 --target host "
               "--store 'my runs.db' --ops conv_a")


def test_roofline_points_follow_the_ceilings_drawn(setup):
    from opscope.report.figures import roofline_points

    wl, spec, measured_spec, db = setup
    res = compare(wl, target=spec, store=db, whole_model=False, progress=False)
    fc1 = wl.operators[0]
    ana, meas = roofline_points(res.frame, measured_ceilings=True)
    a = ana.set_index("op")
    # analytical point: FLOP over the estimate under the ceilings drawn; measured: FLOP over best
    assert a.loc["fc1", "flops_per_s"] == pytest.approx(fc1.flops / estimate(fc1, measured_spec).latency_s)
    assert a.loc["fc1", "intensity"] == pytest.approx(fc1.flops / fc1.bytes)
    assert meas.set_index("op").loc["fc1", "flops_per_s"] == pytest.approx(fc1.flops / 1.6e-3)
    assert "conv" not in set(meas["op"]) and "TOTAL" not in set(ana["op"])
    nominal, _ = roofline_points(res.frame)
    assert nominal.set_index("op").loc["fc1", "flops_per_s"] == pytest.approx(fc1.flops / estimate(fc1, spec).latency_s)
