"""The probe: the measured spec built from probe results, and the STREAM kernels themselves."""

from __future__ import annotations

import os

import numpy as np
import pytest

from opscope.collector.probe import ProbeResult, _stream_func, measured_spec, probe_bandwidth
from opscope.targets import load_target, save_target
from opscope.targets.spec import MemoryLevel, TargetSpec


def _base() -> TargetSpec:
    return TargetSpec(
        name="host", kind="cpu", frequency_hz=2e9, cores=2,
        memory=(MemoryLevel("L1", 64 << 10, 300e9), MemoryLevel("L2", 1 << 20, 150e9),
                MemoryLevel("DRAM", None, 25e9)),
        peak_flops={"float32": 128e9, "int8": 512e9},
        tvm_target={"kind": "llvm"}, sources=("detected at run time: test",),
    )


def test_measured_spec_takes_the_best_gemm_and_the_faster_stream(tmp_path):
    res = ProbeResult(
        gemm_flops={"tvm:a": 20e9, "tvm:b": 32e9, "numpy": 30e9},
        bandwidth={"L1": {"copy": 100e9, "triad": 120e9, "bytes": 32768.0},
                   "L2": {"copy": 60e9, "triad": 50e9, "bytes": 524288.0},
                   "DRAM": {"copy": 10e9, "triad": 9e9, "bytes": 1e8}},
        threads=2, seconds=30.0, special_ns={"exp": 1.25, "erf": 8.5},
    )
    spec = measured_spec(_base(), res)
    assert spec.name == "host-measured" and spec.nominal is False
    assert spec.peak_flops["float32"] == 32e9  # max(20, 32, 30) GFLOP/s
    assert spec.peak_flops["int8"] == pytest.approx(512e9 * 32e9 / 128e9)  # scaled, said so in sources
    assert [lv.bandwidth_Bps for lv in spec.memory] == [120e9, 60e9, 10e9]  # max(copy, triad) per level
    assert [lv.size_bytes for lv in spec.memory] == [64 << 10, 1 << 20, None]
    assert any("not measured" in s for s in spec.sources)
    path = save_target(spec, tmp_path / "host-measured.toml")
    again = load_target(str(path))
    assert again.peak_flops == spec.peak_flops and again.memory == spec.memory and not again.nominal
    # the special functions' cost per call, read by the predictors (features.special)
    assert again.extra == {"special_ns": {"exp": 1.25, "erf": 8.5}}


def test_special_function_probe_times_each_call():
    from opscope.collector.probe import probe_special
    from opscope.predictor.features.special import NOMINAL_CYCLES

    got = probe_special(n=1 << 16)
    assert set(got) == set(NOMINAL_CYCLES)
    # a call costs more than the loop's own add and store, and erf (a polynomial in several ranges)
    # more than exp on every CPU libm we know of; at most a microsecond each
    assert all(0 < v < 1000 for v in got.values()), got
    assert got["erf"] > got["exp"], got


@pytest.mark.parametrize("kind", ["copy", "triad"])
def test_stream_kernels_compute_what_they_claim(kind):
    import tvm

    from opscope.targets import detect_host, tvm_target

    ex = tvm.compile(tvm.IRModule({"main": _stream_func(kind, 2, 128, 3)}), tvm_target(detect_host()))
    rng = np.random.default_rng(0)
    b, c = rng.standard_normal(256).astype("float32"), rng.standard_normal(256).astype("float32")
    dev = tvm.cpu(0)
    a = tvm.runtime.tensor(np.zeros(256, np.float32), dev)
    args = [tvm.runtime.tensor(b, dev)] + ([tvm.runtime.tensor(c, dev)] if kind == "triad" else []) + [a]
    ex.mod["main"](*args)
    want = b if kind == "copy" else b + 3 * c
    np.testing.assert_allclose(a.numpy(), want, rtol=1e-6)


def test_bandwidth_probe_on_small_levels():
    levels = (MemoryLevel("L1", 32 << 10, 1.0), MemoryLevel("DRAM", None, 1.0))
    bw = probe_bandwidth(levels, threads=1)
    assert set(bw) == {"L1", "DRAM"}
    # DRAM is probed at 4x the largest cache (128 KiB here); L1 at half its size
    assert bw["L1"]["bytes"] <= 16 << 10 and bw["DRAM"]["bytes"] >= 100 << 10
    for lv in bw.values():
        assert 1e8 < lv["copy"] < 1e13 and 1e8 < lv["triad"] < 1e13


@pytest.mark.slow
def test_probe_command_writes_host_measured(tmp_path, monkeypatch):
    from opscope.cli import main

    monkeypatch.setenv("OPSCOPE_SPEC_DIR", str(tmp_path))
    assert main(["probe", "--quiet", "--gemm-size", "128"]) == 0
    spec = load_target("host-measured")
    assert spec.nominal is False and spec.peak_flops["float32"] > 1e8
    assert os.path.exists(tmp_path / "host-measured.toml")
