"""Training on several machines' rows: each other machine's rows are described by a spec from its
fingerprint (features.machine), in training and in prediction, and the predictor keeps those specs."""

import json

import numpy as np
import pandas as pd
import pytest

from opscope.cli import main
from opscope.errors import PredictorError
from opscope.predictor.evaluation.synthetic import synthetic_frame, synthetic_spec
from opscope.predictor.features.machine import (
    machine_frame,
    machine_specs,
    sidecar_path,
    source_fingerprints,
    write_sidecar,
)
from opscope.predictor.models.persist import load_predictor, make_predictor, save_predictor

#: a 2-core machine with 32 KiB L1d per core and 128-bit vectors (x86-64-v2), at 2 GHz
OTHER = {"cpu_model": "Other CPU", "cores": 2, "caches": {"L1d": "32K", "L2": "512K", "L3": "16M"},
         "tvm_target": {"mcpu": "x86-64-v2"}, "frequency_hz": 2.0e9}


def two_machines(seed=3):
    """The same synthetic operators measured 'here' and on another machine that is twice as slow."""
    here = synthetic_frame(seed=seed, models=2, per_model=4, schedules=3)
    other = here.copy()
    for c in ("latency_median_s", "latency_mean_s", "latency_min_s"):
        other[c] = other[c] * 2.0
    here["machine_id"], other["machine_id"] = "m-here", "m-other"
    frame = pd.concat([here, other], ignore_index=True)
    frame["target"] = "host"
    return frame


def test_other_machines_get_a_spec_of_their_own_and_this_one_keeps_host():
    frame = two_machines()
    specs, used = machine_specs(frame, {"m-other": OTHER}, here="m-here")
    assert list(specs) == ["machine:m-other"] and used == {"m-other": OTHER}
    spec = specs["machine:m-other"]
    # per-core L1d 32 KiB x 2 cores; 128-bit vectors from x86-64-v2; the clock given
    assert spec.memory[0].size_bytes == 2 * 32 * 1024 and spec.vector_bits == 128 and spec.frequency_hz == 2.0e9
    assert spec.tvm_target["mcpu"] == "x86-64-v2"  # what its kernels were built for (features.compiled)
    mapped = machine_frame(frame, specs)
    assert (mapped["target"][frame["machine_id"] == "m-other"] == "machine:m-other").all()
    assert (mapped["target"][frame["machine_id"] == "m-here"] == "host").all()
    # rows of one machine, or no machine specs: nothing changes
    assert machine_specs(frame[frame["machine_id"] == "m-other"], {}, here="m-here") == ({}, {})
    assert machine_frame(frame, None) is frame
    # a machine nobody describes is one line naming it and its rows
    other_rows = 2 * 4 * 3 * 2  # models x operators per model x schedules x thread counts
    with pytest.raises(PredictorError, match=rf"d.parquet: {other_rows} rows were measured on machine m-other, whose fingerprint"):
        machine_specs(frame, {}, here="m-here", where="d.parquet")


def test_this_machines_fingerprint_gives_the_spec_detect_host_makes(tmp_path):
    """A machine's rows are described alike whether it trains (its live ``host`` spec) or another machine
    does (the spec of its stored fingerprint): same clock, caches, vectors, memory, peaks."""
    from opscope.collector.machine import fingerprint
    from opscope.predictor.features.estimates import machine_features
    from opscope.predictor.features.machine import spec_from_fingerprint
    from opscope.targets import detect_host

    fp, host = fingerprint(), detect_host()
    if fp.get("tvm_target") is None:
        pytest.skip("this machine's TVM target cannot be read")
    if fp.get("frequency_hz") is None and host.frequency_hz == 2.0e9:
        pytest.skip("this machine's clock cannot be read (detect_host assumes 2 GHz)")
    live = machine_features(host, "float32", None)
    stored = machine_features(spec_from_fingerprint(json.loads(json.dumps(fp)), "machine:x"), "float32", None)
    differ = {k: (live[k], stored[k]) for k in live if not (live[k] == stored[k] or (np.isnan(live[k]) and np.isnan(stored[k])))}
    assert differ == {}
    assert fp["memory_bytes"] > 0 and stored["m_l3_size_log2"] == np.log2(fp["memory_bytes"])


def test_a_recorded_clock_and_memory_are_read_and_bad_ones_are_one_line():
    from opscope.predictor.features.machine import machine_spec, spec_from_fingerprint

    spec = spec_from_fingerprint({**OTHER, "frequency_hz": 3.0e9, "memory_bytes": 8 << 30}, "x")
    # peak = 2 cores x 3 GHz x 2 FMA units x (128 / 32) lanes x 2 FLOP
    assert spec.frequency_hz == 3.0e9 and spec.peak_flops["float32"] == 2 * 3.0e9 * 2 * 4 * 2
    assert spec.memory[-1].name == "DRAM" and spec.memory[-1].size_bytes == 8 << 30
    assert "clock 3.00 GHz recorded" in spec.sources[1]
    old = {k: v for k, v in OTHER.items() if k != "frequency_hz"}  # fingerprints before the clock was recorded
    assert spec_from_fingerprint(old, "x").frequency_hz == 2.5e9
    assert spec_from_fingerprint(old, "x").memory[-1].size_bytes is None
    for field, bad in (("frequency_hz", "fast"), ("memory_bytes", -1), ("frequency_hz", True)):
        with pytest.raises(PredictorError, match=rf"d.parquet: machine m1: field '{field}' must be a positive number, "
                                                 rf"got {bad!r}"):
            machine_spec("m1", {**OTHER, field: bad}, "d.parquet")


def test_a_predictor_describes_each_machine_by_its_spec_and_keeps_the_specs(tmp_path):
    frame = two_machines()
    specs, used = machine_specs(frame, {"m-other": OTHER}, here="m-here")
    pred = make_predictor("linear", specs={"host": synthetic_spec(), **specs}).fit(frame)
    pred.machines_ = used
    feats = pred.features(frame)
    here_rows, other_rows = (frame["machine_id"] == "m-here").to_numpy(), (frame["machine_id"] == "m-other").to_numpy()
    # the machine features differ between the machines' rows: some m_* column tells them apart
    m_cols = [i for i, c in enumerate(feats.columns) if c.startswith("m_")]
    differs = {feats.columns[i] for i in m_cols
               if not np.allclose(feats.X[here_rows, i], feats.X[other_rows, i], equal_nan=True)}
    assert {"m_freq_log2", "m_peak_log2"} <= differs
    bits = feats.X[:, feats.columns.index("m_vector_bits")]
    assert set(bits[other_rows]) == {128.0} and set(bits[here_rows]) == {float(synthetic_spec().vector_bits)}
    freq = feats.X[:, feats.columns.index("m_freq_log2")]
    assert set(freq[other_rows]) == {np.log2(2.0e9)} and set(freq[here_rows]) == {np.log2(3.0e9)}
    # the twice-as-slow machine is learned as slower, row for row
    p = pred.predict(frame)
    assert np.median(p[other_rows] / p[here_rows]) > 1.5
    save_predictor(pred, tmp_path / "p", training=frame)
    meta = json.loads((tmp_path / "p" / "metadata.json").read_text())
    assert meta["machines"] == {"m-other": OTHER}
    back = load_predictor(tmp_path / "p", specs={"host": synthetic_spec()})
    assert np.allclose(back.predict(frame), p)


def test_sidecars_are_read_and_a_bad_one_is_one_line(tmp_path):
    path = tmp_path / "x.parquet"
    assert sidecar_path(path) == tmp_path / "x.machines.json"
    assert source_fingerprints(path) == {}
    write_sidecar(path, {"m-other": OTHER})
    assert source_fingerprints(path) == {"m-other": OTHER}
    sidecar_path(path).write_text("[1, 2]")
    with pytest.raises(PredictorError, match=r"x.machines.json: expected an object of machine id -> fingerprint"):
        source_fingerprints(path)


def test_train_on_two_machines_exports(tmp_path, capsys):
    frame = two_machines()
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    from opscope.report.machine import this_machine

    here = this_machine()[0]
    frame["machine_id"] = frame["machine_id"].map({"m-here": here, "m-other": "m-other"})
    frame[frame["machine_id"] == here].to_parquet(a)
    frame[frame["machine_id"] == "m-other"].to_parquet(b)
    assert main(["train", "--store", str(a), "--store", str(b), "--model", "linear", "--out", str(tmp_path / "p0")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "48 rows were measured on machine m-other, whose fingerprint is not given" in err[0]
    assert not (tmp_path / "p0" / "metadata.json").exists()
    write_sidecar(b, {"m-other": OTHER})
    assert main(["train", "--store", str(a), "--store", str(b), "--model", "linear", "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert "rows of 2 machines" in err and "as machine:m-other" in err and "this machine, as host" in err
    assert json.loads((tmp_path / "p" / "metadata.json").read_text())["machines"] == {"m-other": OTHER}


def test_export_writes_the_stores_machines_beside_it(tmp_path, capsys):
    from opscope.store import open_store

    st = open_store(tmp_path / "s.db")
    st.add_machine("m-other", OTHER)
    st.close()
    out = tmp_path / "e.parquet"
    assert main(["export", "--store", str(tmp_path / "s.db"), "--out", str(out)]) == 0
    assert "e.machines.json" in capsys.readouterr().out
    assert source_fingerprints(out) == {"m-other": OTHER} == source_fingerprints(tmp_path / "s.db")
