"""CUDA: schedules sampled from MetaSchedule's GPU space compile with nvcc to a cubin for sm_90 (no GPU needed)."""

from __future__ import annotations

import os

import pytest

from opscope.errors import OpscopeError
from opscope.targets import load_target

pytestmark = pytest.mark.skipif(not __import__("shutil").which("nvcc"), reason="nvcc not installed")


def _conv_operator():
    from tvm import te, topi

    from opscope.workloads.operator import GemmView, Operator, TensorInfo

    x = te.placeholder((1, 16, 14, 14), "float32", name="X")
    w = te.placeholder((32, 16, 3, 3), "float32", name="W")
    y = topi.nn.conv2d_nchw(x, w, stride=1, padding=1, dilation=1)
    func = te.create_prim_func([x, w, y])
    return Operator(
        name="conv_16_32_14", kind="conv2d",
        tensors=(TensorInfo("X", (1, 16, 14, 14), "float32", "input"),
                 TensorInfo("W", (32, 16, 3, 3), "float32", "weight"),
                 TensorInfo("Y", (1, 32, 14, 14), "float32", "output")),
        flops=2 * 32 * 14 * 14 * 16 * 9, gemm=GemmView(1, 196, 32, 144), prim_func=func,
    )


@pytest.fixture(scope="module")
def roles():
    from opscope.collector.cuda import make_roles

    r = make_roles(load_target("h100"))
    yield r
    r.builder.close()
    r.runner.close()


def _module_text(cand) -> str:
    import tvm

    return tvm.ir.load_json(cand.module_json).script()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["matmul", "conv"])
def test_sampled_gpu_schedules_compile_for_sm90(roles, which):
    from opscope.collector.te_ops import dense_operator

    op = dense_operator(128, 64, 96) if which == "matmul" else _conv_operator()
    cands = roles.sampler.candidates(op, 3, seed=1)
    assert cands[0].schedule_kind == "default" and "dlight" in cands[0].trace_json
    sampled = cands[1:]
    assert len(sampled) >= 2, "MetaSchedule's GPU space gave fewer than 2 valid schedules"
    assert len({c.schedule_id for c in sampled}) == len(sampled)
    for c in cands:
        text = _module_text(c)
        assert "threadIdx.x" in text and "blockIdx" in text, f"{c.schedule_id} is not bound to GPU threads"
    # the sampled ones are MetaSchedule's multi-level tiling: tile decisions in the trace, shared memory
    assert all("SamplePerfectTile" in c.trace_json for c in sampled)
    assert any('scope="shared"' in _module_text(c) for c in sampled)
    built = roles.builder.build(cands)
    for b in built:
        assert b.ok, f"{b.candidate.schedule_id}: {b.error}"
        assert os.path.getsize(b.artifact) > 0
    # every library holds compiled code: one CUDA module, a cubin whose ELF header says sm_90
    from opscope.collector.cuda_binary import cuda_binaries

    for b in built:
        mods = cuda_binaries(b.artifact)
        assert [(m.format, m.arch) for m in mods] == [("cubin", "sm_90")], b.candidate.schedule_id
        assert mods[0].code_bytes > 1000


def test_cuda_target_fills_the_limits_metaschedule_needs():
    from opscope.collector.cuda import cuda_target_dict

    d = cuda_target_dict(load_target("h100"))
    assert d["kind"] == "cuda" and d["arch"] == "sm_90"
    assert d["max_threads_per_block"] == 1024 and d["max_shared_memory_per_block"] == 49152
    assert cuda_target_dict(None, arch="sm_80")["arch"] == "sm_80"


def test_bad_arch_is_one_clear_error():
    from opscope.collector.cuda import cuda_target_dict

    with pytest.raises(OpscopeError, match="arch 'ampere'"):
        cuda_target_dict(None, arch="ampere")
    with pytest.raises(OpscopeError, match="expected 'cuda'"):
        cuda_target_dict(load_target("host"))


def _runtime_only_load(artifact, stub, paths=(), preload=()) -> str:
    """Load ``artifact`` with TVM's runtime only (no compiler library) and call its kernel; the last line.

    ``paths`` go first on ``sys.path`` (a bundle's runtime), ``preload`` are loaded before TVM (its
    CUDA runtime library)."""
    import json
    import subprocess
    import sys

    script = (
        "import ctypes, json, os, sys\n"
        "os.environ['TVM_USE_RUNTIME_LIB'] = '1'\n"
        "paths, preload = json.loads(sys.argv[3]), json.loads(sys.argv[4])\n"
        "sys.path[:0] = paths\n"
        "ctypes.CDLL(sys.argv[2], ctypes.RTLD_GLOBAL)\n"
        "for lib in preload:\n"
        "    ctypes.CDLL(lib, ctypes.RTLD_GLOBAL)\n"
        "import tvm\n"
        "from tvm.base import _LOADED_LIBS\n"
        "assert 'tvm_compiler' not in _LOADED_LIBS, sorted(_LOADED_LIBS)\n"
        "assert all(os.path.abspath(tvm.__file__).startswith(os.path.abspath(p)) for p in paths[:1]), tvm.__file__\n"
        "ctypes.CDLL(os.path.join(os.path.dirname(tvm.__file__), 'lib', 'libtvm_runtime_cuda.so'),"
        " ctypes.RTLD_GLOBAL)\n"
        "try:\n"
        "    mod = tvm.runtime.load_module(sys.argv[1])\n"
        "except Exception as exc:\n"
        "    print('load failed:', str(exc).strip().splitlines()[-1]); sys.exit(0)\n"
        "print('loaded', flush=True)\n"
        "try:\n"
        "    mod.imports[0].get_function('main_kernel')()\n"
        "except Exception as exc:\n"
        "    print('launch failed:', str(exc).strip().splitlines()[-1])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(artifact), str(stub), json.dumps([str(p) for p in paths]),
                           json.dumps([str(p) for p in preload])], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_runtime_only_load_of_a_cubin_reaches_the_driver_without_a_compiler(roles, tmp_path, monkeypatch):
    """The kernel loads with TVM's runtime alone and its launch gets to the CUDA driver (a stub here);
    a library that carries source instead fails in the compile step at load, which the device lacks."""
    import tvm

    from opscope.collector.cuda import cuda_target
    from opscope.collector.cuda_binary import cuda_binaries
    from opscope.collector.cuda_build import build_driver_stub
    from opscope.collector.te_ops import dense_operator

    op = dense_operator(64, 64, 64)
    cand = roles.sampler.default_candidate(op)
    built = roles.builder.build([cand])[0]
    assert built.ok, built.error
    assert [(m.format, m.arch) for m in cuda_binaries(built.artifact)] == [("cubin", "sm_90")]
    stub = build_driver_stub(tmp_path)
    out = _runtime_only_load(built.artifact, stub)
    assert "loaded" in out and "launch failed" in out and "stub library" in out, out
    # the control: what TVM 0.27 builds by itself here (no CUDA runtime loaded) carries source
    source_lib = tmp_path / "source.so"
    monkeypatch.setenv("TVM_COMPILE_FORCE_FALLBACK", "1")  # as on a build machine without a CUDA driver
    tvm.compile(tvm.ir.load_json(cand.module_json), cuda_target(load_target("h100"))).export_library(str(source_lib))
    assert [m.format for m in cuda_binaries(source_lib)] == ["cuda"]
    out = _runtime_only_load(source_lib, stub)
    assert "load failed" in out and "loaded" not in out, out


def test_missing_nvcc_names_the_tool_and_its_package(monkeypatch, tmp_path):
    from opscope.collector.cuda import make_roles
    from opscope.collector.cuda_build import nvcc_path

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OpscopeError, match=r"needs nvcc on PATH.*cuda-nvcc"):
        nvcc_path()
    with pytest.raises(OpscopeError, match=r"nvcc.*cuda-nvcc"):
        make_roles(load_target("h200"))


@pytest.mark.slow
def test_without_gpu_a_run_is_a_run_error_not_a_crash(roles):
    from opscope.collector.cuda import have_gpu
    from opscope.collector.protocol import Protocol
    from opscope.collector.roles import RunJob, arg_specs
    from opscope.collector.te_ops import dense_operator

    if have_gpu():
        pytest.skip("a GPU is present: see test_measure_on_gpu")
    op = dense_operator(64, 64, 64)
    built = roles.builder.build([roles.sampler.default_candidate(op)])[0]
    assert built.ok, built.error
    res = roles.runner.run([RunJob(built.artifact, arg_specs(op.prim_func), 1, Protocol(), 10.0)])[0]
    assert res.status == "run_error" and "no CUDA GPU" in res.error


@pytest.mark.gpu
def test_measure_on_gpu(roles):
    from opscope.collector.cuda import have_gpu
    from opscope.collector.protocol import Protocol
    from opscope.collector.roles import RunJob, arg_specs
    from opscope.collector.te_ops import dense_operator

    if not have_gpu():
        pytest.skip("no CUDA GPU")
    op = dense_operator(256, 256, 256)
    cands = roles.sampler.candidates(op, 2, seed=0)
    built = roles.builder.build(cands)
    ref = built[0].artifact
    for b in built:
        assert b.ok, b.error
        res = roles.runner.run([RunJob(b.artifact, arg_specs(op.prim_func), 1, Protocol(), 10.0, ref)])[0]
        assert res.status == "ok", res.error
        assert all(0 < x < 0.1 for x in res.latencies_s)


@pytest.mark.slow
def test_cuda_bundle_carries_the_cuda_runtime_and_refuses_without_a_gpu(tmp_path):
    import ctypes
    import json
    import subprocess
    import sys

    from opscope.bundle import write_bundle
    from opscope.collector.cuda import have_gpu
    from opscope.collector.te_ops import dense_operator

    info = write_bundle([dense_operator(64, 64, 64)], "cuda", 1, tmp_path / "b", progress=False)
    manifest = json.loads((info.path / "manifest.json").read_text())
    assert manifest["device"] == "cuda" and manifest["threads"] == [1]
    assert manifest["requires"] == {"gpu": "cuda", "arch": "sm_90", "binary": "cubin"}
    assert manifest["entries"][0]["trace_json"] == '["dlight"]'
    assert info.kernels == 2 and info.build_errors == 0
    assert all((info.path / "runtime" / p).is_file() for p in manifest["preload"])
    assert any("libcudart" in p for p in manifest["preload"])
    # the bundle's own runtime (no compiler library, no nvcc needed) loads every kernel, and a launch
    # reaches the CUDA driver: a stub here, so it stops there with the driver's error
    from opscope.collector.cuda_build import build_driver_stub

    stub = build_driver_stub(tmp_path)
    runtime = info.path / "runtime"
    paths = (runtime / "common", runtime / "cp{}{}".format(*sys.version_info[:2]))
    kernels = [e for e in manifest["entries"] if e["schedule_kind"] != "library"]  # library entries: torch
    assert len(kernels) == 2 and all(e["artifact"] for e in kernels)
    for entry in kernels:
        out = _runtime_only_load(info.path / entry["artifact"], stub, paths, [runtime / p for p in manifest["preload"]])
        assert "loaded" in out and "stub library" in out, (entry["schedule_id"], out)
    if have_gpu():
        pytest.skip("a GPU is present: the refusal below is for machines without one")
    proc = subprocess.run([sys.executable, str(info.path / "run.py"), "--out", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3
    try:
        ctypes.CDLL("libcuda.so.1")
        expected = "no GPU is visible"  # a driver without a GPU
    except OSError:
        expected = "cannot load the CUDA runtime (is an NVIDIA driver installed?)"  # no driver at all
    assert expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_driver_stub_with_a_missing_compiler_is_one_line(tmp_path, monkeypatch):
    from opscope.collector.cuda_build import build_driver_stub

    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(OpscopeError, match="cannot run the C compiler .*no-such-cc.* for the CUDA driver stub"):
        build_driver_stub(tmp_path)
