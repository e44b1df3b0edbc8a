"""The GPU device check of a bundle's run.py: compute capability, old source-carrying bundles, no GPU.

The GPU is simulated: a bundle folder whose bundled ``tvm`` is a stand-in reporting a GPU of a
given compute capability, so run.py's real device check runs end to end without a GPU or TVM.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "opscope"
TEMPLATE = ROOT / "bundle" / "run_template.py"


def _run_py():
    spec = importlib.util.spec_from_file_location("bundle_run_gpu", TEMPLATE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("arch, have, refused", [
    ("sm_90", "9.0", False),
    ("sm_90", "8.0", True),  # an A100 for an H100 bundle
    ("sm_90", "10.0", True),  # a cubin does not run on the next major version
    ("sm_86", "8.9", False),  # same major, higher minor
    ("sm_86", "8.0", True),  # same major, lower minor
    ("sm_90a", "9.0", False),
])
def test_arch_check(arch, have, refused):
    why = _run_py().arch_problem(arch, have)
    if refused:
        assert why == f"the kernels are built for {arch}, this GPU is compute capability {have}"
    else:
        assert why == ""


def test_arch_check_on_unreadable_input():
    run = _run_py()
    assert "cannot read this GPU's compute capability ('?')" == run.arch_problem("sm_90", "?")
    assert "names no CUDA arch" in run.arch_problem("", "9.0")


def _fake_gpu_bundle(tmp_path: Path, compute_version: str, requires: dict, exist: bool = True,
                     entries: tuple = (), load_error: str = "") -> Path:
    """run.py and what it loads, a manifest, and a stand-in ``tvm`` that reports one GPU; its
    ``runtime.load_module`` notes the worker's pid in ``pids.txt`` and raises ``load_error``."""
    b = tmp_path / "bundle"
    common = b / "runtime" / "common" / "tvm"
    (common / "lib").mkdir(parents=True)
    (b / "runtime" / "cp{}{}".format(*sys.version_info[:2])).mkdir()
    shutil.copy2(TEMPLATE, b / "run.py")
    for path in (ROOT / "targets" / "cpu_flags.py", *(ROOT / "collector" / f"{n}.py"
                                                      for n in ("timing", "process", "machine", "gpu_fault"))):
        if path.is_file():
            shutil.copy2(path, b / path.name)
    (common / "__init__.py").write_text(
        "from . import base\n"
        "__version__ = '0.27.0'\n"
        "class _Device:\n"
        f"    exist = {exist}\n"
        f"    compute_version = {compute_version!r}\n"
        "    device_name = 'stand-in GPU'\n"
        "    multi_processor_count = 132\n"
        "    total_global_memory = 1 << 30\n"
        "def cuda(i=0):\n"
        "    return _Device()\n"
        "class runtime:\n"
        "    @staticmethod\n"
        "    def load_module(path):\n"
        "        import os\n"
        f"        with open({str(tmp_path / 'pids.txt')!r}, 'a') as fh:\n"
        "            fh.write(str(os.getpid()) + '\\n')\n"
        f"        raise RuntimeError({load_error!r})\n"
    )
    (common / "base.py").write_text("_LOADED_LIBS = {'tvm_runtime': None, 'tvm_runtime_cuda': None}\n")
    # setup_runtime loads TVM's CUDA runtime library: here an empty shared library stands in for it
    src = tmp_path / "empty.c"
    src.write_text("int opscope_stand_in;\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(common / "lib" / "libtvm_runtime_cuda.so"), str(src)],
                   check=True)
    manifest = {"bundle_id": "btest", "device": "cuda", "requires": requires, "preload": [],
                "entries": list(entries), "threads": [1], "timeout_s": 10,
                "protocol": {"warmup": 1, "number": 1, "repeat": 3, "min_repeat_ms": 0}}
    (b / "manifest.json").write_text(json.dumps(manifest))
    return b


def _check(bundle: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(bundle / "run.py"), "--check"], capture_output=True, text=True,
                          timeout=60, cwd=bundle)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler for the stand-in library")
def test_a_sm90_bundle_on_an_older_gpu_is_refused_in_one_line(tmp_path):
    proc = _check(_fake_gpu_bundle(tmp_path, "8.0", {"gpu": "cuda", "arch": "sm_90", "binary": "cubin"}))
    assert proc.returncode == 3
    assert proc.stderr.strip() == ("run.py: this device cannot run the bundle: the kernels are built for sm_90, "
                                   "this GPU is compute capability 8.0")


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler for the stand-in library")
def test_the_same_bundle_passes_the_check_on_its_own_gpu(tmp_path):
    proc = _check(_fake_gpu_bundle(tmp_path, "9.0", {"gpu": "cuda", "arch": "sm_90", "binary": "cubin"}))
    assert proc.returncode == 0, proc.stderr
    assert "this device can run the bundle" in proc.stdout


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler for the stand-in library")
def test_a_bundle_whose_kernels_carry_source_is_refused_before_loading_anything(tmp_path):
    # built by an opscope before kernels were compiled to cubins: "requires" has no "binary"
    b = _fake_gpu_bundle(tmp_path, "9.0", {"gpu": "cuda", "arch": "sm_90"})
    shutil.rmtree(b / "runtime")  # not even a runtime is needed to refuse it
    proc = _check(b)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "carry source that only a CUDA compiler could load" in lines[0]


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler for the stand-in library")
def test_no_visible_gpu_is_one_line(tmp_path):
    proc = _check(_fake_gpu_bundle(tmp_path, "9.0", {"gpu": "cuda", "arch": "sm_90", "binary": "cubin"},
                                   exist=False))
    assert proc.returncode == 3
    assert proc.stderr.strip() == ("run.py: this device cannot run the bundle: the kernels are built for a CUDA "
                                   "GPU (sm_90) and no GPU is visible")


def _cudart() -> str | None:
    import re

    lib = Path(importlib.util.find_spec("tvm").origin).parent / "lib" / "libtvm_runtime_cuda.so"
    if not lib.is_file():
        return None
    found = re.search(r"(libcudart\.so\.\d+) => (\S+)", subprocess.run(["ldd", str(lib)], capture_output=True,
                                                                       text=True).stdout)
    return found.group(2) if found else None


def test_cuda_versions_from_the_bundled_runtime():
    cudart = _cudart()
    if cudart is None:
        pytest.skip("no CUDA runtime library next to TVM's CUDA runtime")
    driver, runtime = _run_py().cuda_versions({"preload": [cudart]})  # an absolute path joins as itself
    major = cudart.rsplit(".so.", 1)[1].split(".")[0]  # libcudart.so.13 is CUDA 13.x
    assert runtime.split(".")[0] == major
    if not Path("/proc/driver/nvidia").exists():
        assert driver is None  # no NVIDIA driver on this machine


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler for the stand-in library")
def test_a_kernel_that_faults_the_gpu_is_a_crash_and_the_next_gets_a_fresh_worker(tmp_path):
    entries = [{"id": i, "op_name": f"op{i}", "artifact": f"kernels/{i}.so", "args": [[[4], "float32"]],
                "build_error": None, "reference": None} for i in range(2)]
    fault = "CUDA: an illegal memory access was encountered"  # the CUDA runtime's text for the sticky error
    b = _fake_gpu_bundle(tmp_path, "9.0", {"gpu": "cuda", "arch": "sm_90", "binary": "cubin"},
                         entries=tuple(entries), load_error=fault)
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(b / "run.py"), "--out", str(out)], capture_output=True, text=True,
                          timeout=120, cwd=b)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    measured = [r for r in rows if "entry" in r]
    assert [(r["entry"], r["status"]) for r in measured] == [(0, "crash"), (1, "crash")]
    assert all(r["error"].startswith("the kernel faulted the GPU") and fault in r["error"] for r in measured)
    pids = (tmp_path / "pids.txt").read_text().split()
    assert len(pids) == 2 and pids[0] != pids[1]  # the second kernel ran in a fresh worker


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler for the stand-in library")
def test_an_ordinary_run_error_keeps_its_worker(tmp_path):
    entries = [{"id": i, "op_name": f"op{i}", "artifact": f"kernels/{i}.so", "args": [[[4], "float32"]],
                "build_error": None, "reference": None} for i in range(2)]
    b = _fake_gpu_bundle(tmp_path, "9.0", {"gpu": "cuda", "arch": "sm_90", "binary": "cubin"},
                         entries=tuple(entries), load_error="CUDA: out of memory")
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(b / "run.py"), "--out", str(out)], capture_output=True, text=True,
                          timeout=120, cwd=b)
    assert proc.returncode == 0, proc.stderr[-2000:]
    statuses = [json.loads(line).get("status") for line in out.read_text().splitlines()[2:]]
    assert statuses == ["run_error", "run_error"]
    pids = (tmp_path / "pids.txt").read_text().split()
    assert len(pids) == 2 and pids[0] == pids[1]


def test_default_only_operators_get_no_sampled_schedules(tmp_path):
    """The GPU check's bundle carries the probe kernels with their default schedule only."""
    from opscope.bundle import write_bundle
    from opscope.collector.te_ops import add_operator, dense_operator

    dense, add = dense_operator(32, 32, 32), add_operator(256)
    info = write_bundle([dense, add], "host", 2, tmp_path / "b", progress=False, default_only={add.key})
    manifest = json.loads((info.path / "manifest.json").read_text())
    kinds = {}
    for e in manifest["entries"]:
        kinds.setdefault(e["op_name"], []).append(e["schedule_kind"])
    assert kinds[add.name] == ["default"]
    assert kinds[dense.name][0] == "default" and kinds[dense.name].count("sampled") == 2
