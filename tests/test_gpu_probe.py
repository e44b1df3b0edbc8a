"""The GPU probe's arithmetic and files, on synthetic timings (no GPU): peaks, bandwidth, the measured spec."""

from __future__ import annotations

import json

import pytest

from opscope.collector.gpu_probe import (
    Timing,
    measured_gpu_spec,
    read_library,
    read_probe_results,
    result_from_files,
    result_from_timings,
)
from opscope.errors import OpscopeError
from opscope.targets import load_target, save_target

N = 8192
COPY = 1 << 30
# synthetic per-call seconds, chosen near what an H200 does (the figures: ~790 TFLOP/s bf16, 4.3 TB/s copy)
LIB = {"float32": (0.0245, 0.0240, 0.0242), "float16": (0.00145, 0.00140), "bfloat16": (0.00139, 0.00141)}
TVM = {"float32": (0.0500, 0.0480), "float16": (0.0090,)}
LIB_COPY = (0.000510, 0.000500)
TVM_COPY = (0.000560,)


def _timings() -> list[Timing]:
    out = [Timing("gemm", dt, "library", N, s) for dt, s in LIB.items()]
    out += [Timing("gemm", dt, "tvm", N, s) for dt, s in TVM.items()]
    out += [Timing("copy", "float32", "library", COPY, LIB_COPY), Timing("copy", "float32", "tvm", COPY, TVM_COPY)]
    return out


def test_rates_are_two_n_cubed_and_two_bytes_over_the_fastest_call():
    res = result_from_timings(_timings(), "NVIDIA H200", "test")
    assert res.gemm_flops["float32"]["library"] == pytest.approx(2 * 8192 ** 3 / 0.0240)  # 45.8 TFLOP/s
    assert res.gemm_flops["float32"]["tvm"] == pytest.approx(2 * 8192 ** 3 / 0.0480)
    assert res.gemm_flops["bfloat16"] == {"library": pytest.approx(2 * 8192 ** 3 / 0.00139)}  # 791 TFLOP/s
    assert res.bandwidth_Bps["library"] == pytest.approx(2 * 2 ** 30 / 0.000500)  # 4.29 TB/s
    assert res.bandwidth_Bps["tvm"] == pytest.approx(2 * 2 ** 30 / 0.000560)
    assert res.peak("float16") == pytest.approx(2 * 8192 ** 3 / 0.00140)
    assert res.bandwidth == res.bandwidth_Bps["library"]
    assert (res.gemm_n, res.copy_bytes) == (8192, 1 << 30)


def test_measured_spec_takes_the_best_source_and_scales_what_it_did_not_measure(tmp_path):
    base = load_target("h200")
    spec = measured_gpu_spec(base, result_from_timings(_timings(), "NVIDIA H200", "test"))
    assert spec.name == "h200-measured" and spec.nominal is False
    assert spec.peak_flops["float32"] == pytest.approx(2 * 8192 ** 3 / 0.0240)  # library beats TVM here
    assert spec.peak_flops["bfloat16"] == pytest.approx(2 * 8192 ** 3 / 0.00139)
    fp16 = 2 * 8192 ** 3 / 0.00140
    assert spec.peak_flops["int8"] == pytest.approx(1979e12 * fp16 / 989.4e12)  # nominal x measured/nominal fp16
    assert spec.memory[-1].name == "HBM" and spec.memory[-1].bandwidth_Bps == pytest.approx(2 * 2 ** 30 / 0.0005)
    assert [lv.bandwidth_Bps for lv in spec.memory[:-1]] == [lv.bandwidth_Bps for lv in base.memory[:-1]]
    assert spec.tvm_target == base.tvm_target
    assert any("int8 peak not measured" in s for s in spec.sources)
    assert any("keep their nominal bandwidths" in s for s in spec.sources)
    again = load_target(str(save_target(spec, tmp_path / "h200-measured.toml")))
    assert again.peak_flops == spec.peak_flops and again.memory == spec.memory and again.nominal is False


def test_bad_timings_are_refused():
    with pytest.raises(ValueError, match="seconds must be positive"):
        Timing("gemm", "float32", "tvm", N, (0.01, -1.0))
    with pytest.raises(ValueError, match="case 'conv'"):
        Timing("conv", "float32", "tvm", N, (0.01,))
    with pytest.raises(OpscopeError, match="no copy timing"):
        result_from_timings([Timing("gemm", "float32", "tvm", N, (0.01,))], "GPU", "test")


def _library_file(tmp_path, **changes):
    data = {"format": "opscope-gpu-library", "version": 1, "device": "NVIDIA H200", "timings": [
        {"case": "gemm", "dtype": dt, "size": N, "seconds": list(s)} for dt, s in LIB.items()]
        + [{"case": "copy", "dtype": "float32", "size": COPY, "seconds": list(LIB_COPY)}]}
    data.update(changes)
    path = tmp_path / "library.json"
    path.write_text(json.dumps(data))
    return path


def test_library_file_reads_back(tmp_path):
    device, timings = read_library(_library_file(tmp_path))
    assert device == "NVIDIA H200" and len(timings) == 4 and {t.source for t in timings} == {"library"}


@pytest.mark.parametrize("changes, message", [
    ({"format": "something"}, "field 'format' is not 'opscope-gpu-library'"),
    ({"version": 9}, "field 'version' 9 is not supported"),
    ({"timings": {"a": 1}}, "field 'timings' must be a list"),
    ({"timings": [{"case": "gemm", "dtype": "float32", "size": N}]}, "field 'timings[0]' has no 'seconds'"),
    ({"timings": [{"case": "gemm", "dtype": "float32", "size": N, "seconds": [0]}]}, "timings[0]': seconds must"),
])
def test_bad_library_file_is_one_line_naming_the_field(tmp_path, changes, message):
    with pytest.raises(OpscopeError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        read_library(_library_file(tmp_path, **changes))
    assert str(err.value).startswith(str(tmp_path / "library.json")) and "\n" not in str(err.value)


def test_library_file_that_is_not_json(tmp_path):
    path = tmp_path / "library.json"
    path.write_bytes(b"\x00\x01binary")
    with pytest.raises(OpscopeError, match="not a JSON file"):
        read_library(path)


def write_probe_results(path, tvm=TVM, copy=TVM_COPY, fail_fp16=False):
    """A results file as a probe bundle's run.py writes it: header with the manifest, fingerprint, rows."""
    names = [f"probe_gemm_{dt}_{N}" for dt in tvm] + [f"probe_copy_{COPY}"]
    entries = [{"id": i, "op_name": name, "schedule_id": "default", "schedule_kind": "default",
                "trace_json": '["dlight"]', "knobs": [], "args": [], "artifact": f"kernels/{i}.so"}
               for i, name in enumerate(names)]
    manifest = {"bundle_id": "bprobe", "target": "h200", "device": "cuda", "entries": entries,
                "protocol": {"warmup": 1, "number": 5, "repeat": 5, "min_repeat_ms": 0}}
    lines = [{"format": "opscope-bundle-results", "version": 1, "bundle_id": "bprobe", "manifest": manifest},
             {"fingerprint": {"cpu_model": "Xeon", "gpu": {"name": "NVIDIA H200", "compute_version": "9.0"}}}]
    seconds = [*tvm.values(), copy]
    for i, s in enumerate(seconds):
        bad = fail_fp16 and names[i].startswith("probe_gemm_float16")
        lines.append({"entry": i, "threads_requested": 1, "threads": 1, "status": "run_error" if bad else "ok",
                      "error": "CUDA: out of memory" if bad else "", "latencies_s": [] if bad else list(s)})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_probe_results_file_gives_the_tvm_timings(tmp_path):
    device, bundle_id, timings = read_probe_results(write_probe_results(tmp_path / "results.json"))
    assert (device, bundle_id) == ("NVIDIA H200", "bprobe")
    assert sorted((t.case, t.dtype, t.best_s) for t in timings) == [
        ("copy", "float32", 0.000560), ("gemm", "float16", 0.0090), ("gemm", "float32", 0.0480)]
    # a failed measurement is left out, not counted as a peak
    _, _, timings = read_probe_results(write_probe_results(tmp_path / "r2.json", fail_fp16=True))
    assert sorted(t.dtype for t in timings if t.case == "gemm") == ["float32"]


def test_both_files_together(tmp_path):
    res = result_from_files(write_probe_results(tmp_path / "results.json"), _library_file(tmp_path))
    assert res.gemm_flops["float16"] == {"library": pytest.approx(2 * N ** 3 / 0.00140),
                                         "tvm": pytest.approx(2 * N ** 3 / 0.0090)}
    assert res.how == "bundle bprobe, library.py (library.json)"


def test_probe_command_from_files_writes_the_measured_spec(tmp_path, monkeypatch, capsys):
    from opscope.cli import main

    monkeypatch.setenv("OPSCOPE_SPEC_DIR", str(tmp_path / "specs"))
    rc = main(["probe", "--target", "h200", "--results", str(write_probe_results(tmp_path / "results.json")),
               "--library", str(_library_file(tmp_path))])
    assert rc == 0
    spec = load_target("h200-measured")
    assert spec.peak_flops["bfloat16"] == pytest.approx(2 * N ** 3 / 0.00139)
    assert "bfloat16 791.0 TFLOP/s (nominal 989.4)" in capsys.readouterr().out  # 2 x 8192^3 / 1.39 ms


@pytest.mark.parametrize("argv, message", [
    (["probe", "--target", "host"], "is not a CUDA GPU spec"),
    (["probe", "--results", "r.json"], "give its spec with --target"),
    (["probe", "--target", "h200", "--bundle", "b", "--results", "r.json"], "give one or the other"),
    (["probe", "--target", "h200", "--copy-mib", "0"], "--copy-mib must be at least 1"),
])
def test_probe_command_bad_input_is_one_line(argv, message, capsys):
    from opscope.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_probe_here_without_a_gpu_says_how_to_probe_one_elsewhere(capsys):
    from opscope.cli import main
    from opscope.collector.cuda import have_gpu

    if have_gpu():
        pytest.skip("a GPU is present")
    assert main(["probe", "--target", "h200"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no CUDA GPU is visible here" in err and "opscope probe --target h200 --bundle DIR" in err


@pytest.mark.slow
@pytest.mark.skipif(not __import__("shutil").which("nvcc"), reason="nvcc not installed")
def test_probe_bundle_holds_the_tvm_probe_kernels_as_cubins_and_library_py(tmp_path, capsys):
    import subprocess
    import sys
    from pathlib import Path

    from opscope.cli import main
    from opscope.collector.cuda_binary import cuda_binaries

    assert main(["probe", "--target", "h200", "--bundle", str(tmp_path / "b"), "--gemm-size", "256",
                 "--copy-mib", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"python {tmp_path / 'b'}/library.py --out library.json --gemm-size 256 --copy-mib 1" in printed
    assert "opscope probe --target h200 --results results.json --library library.json" in printed
    bundle = Path(tmp_path / "b")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [e["op_name"] for e in manifest["entries"]] == [
        "probe_gemm_float32_256", "probe_gemm_float16_256", f"probe_copy_{1 << 20}"]
    assert [e["schedule_kind"] for e in manifest["entries"]] == ["default"] * 3
    assert all(e["build_error"] is None for e in manifest["entries"])
    assert manifest["requires"] == {"gpu": "cuda", "arch": "sm_90", "binary": "cubin"}
    for e in manifest["entries"]:
        assert [(m.format, m.arch) for m in cuda_binaries(bundle / e["artifact"])] == [("cubin", "sm_90")]
    assert manifest["entries"][2]["args"] == [[[1 << 18], "float32"], [[1 << 18], "float32"]]
    # library.py is the standalone torch side: here torch has no GPU, and it says so in one line
    proc = subprocess.run([sys.executable, str(bundle / "library.py"), "--out", str(tmp_path / "l.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and proc.stderr.strip() == "library.py: torch sees no CUDA GPU"
    assert not (tmp_path / "l.json").exists()


def test_a_figure_above_nominal_is_refused_not_written():
    # 10 us for an 8192^3 float32 GEMM would be 2 x 8192^3 / 1e-5 = 110 PFLOP/s, 1641x the nominal 67 TFLOP/s
    timings = [Timing("gemm", "float32", "tvm", N, (1e-5,)), Timing("copy", "float32", "library", COPY, LIB_COPY)]
    with pytest.raises(OpscopeError, match=r"tvm float32 GEMM at 109951.2 TFLOP/s is 1641.1x the nominal 67.0"):
        measured_gpu_spec(load_target("h200"), result_from_timings(timings, "GPU", "test"))
    # a copy at 2 x 1 GiB / 0.1 ms = 21.5 TB/s on a 4.8 TB/s HBM
    timings = [Timing("gemm", "float32", "library", N, (0.024,)), Timing("copy", "float32", "tvm", COPY, (1e-4,))]
    with pytest.raises(OpscopeError, match=r"tvm copy at 21.5 TB/s is 4.5x the nominal 4.8 TB/s of h200"):
        measured_gpu_spec(load_target("h200"), result_from_timings(timings, "GPU", "test"))
