"""Offline bundles: bundle -> run.py with TVM's runtime only -> import, against a direct collect."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opscope.errors import OpscopeError

TEMPLATE = Path(__file__).resolve().parents[1] / "opscope" / "bundle" / "run_template.py"
ZNVER3_FLAGS = ("fpu sse sse2 pni ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c abm "
                "bmi1 avx2 bmi2 sha_ni vaes")


def _run_py():
    spec = importlib.util.spec_from_file_location("bundle_run", TEMPLATE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _host_flags() -> set[str]:
    try:
        return _run_py().cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return set()


# -- the device check, without TVM -----------------------------------------------------------------
def test_cpu_check_refuses_missing_isa_and_names_it():
    run = _run_py()
    cpuinfo = f"processor : 0\nflags : {ZNVER3_FLAGS}\n"
    need = {"machine": "x86_64", "mcpu": "x86-64-v4", "cpu_features": ["avx2", "avx512f", "avx512bw", "fma"]}
    problems = run.cpu_problems(need, "x86_64", cpuinfo)
    assert len(problems) == 1
    assert "avx512f (avx512f)" in problems[0] and "avx512bw" in problems[0] and "avx2" not in problems[0]
    ok = {"machine": "x86_64", "mcpu": "x86-64-v3", "cpu_features": ["avx2", "bmi", "lzcnt", "fma", "sse4.1"]}
    assert run.cpu_problems(ok, "x86_64", cpuinfo) == []  # bmi->bmi1, lzcnt->abm, sse4.1->sse4_1


def test_cpu_check_refuses_another_architecture_and_reads_arm_features():
    run = _run_py()
    arm = "processor : 0\nFeatures : fp asimd evtstrm aes crc32 asimddp\n"
    assert "built for x86_64, this machine is aarch64" in run.cpu_problems(
        {"machine": "x86_64", "cpu_features": []}, "aarch64", arm)[0]
    assert run.cpu_problems({"machine": "aarch64", "cpu_features": ["neon", "dotprod"]}, "aarch64", arm) == []
    assert "sve" in run.cpu_problems({"machine": "aarch64", "cpu_features": ["neon", "sve"]}, "aarch64", arm)[0]
    pynq = "processor : 0\nFeatures : half thumb fastmult vfp edsp neon vfpv3 tls vfpd32\n"
    assert run.cpu_problems({"machine": "armv7l", "cpu_features": ["neon", "vfp3"]}, "armv7l", pynq) == []


def test_requirements_follow_llvm_features_of_the_mcpu():
    from opscope.bundle.writer import requirements

    v3 = requirements({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v3"})
    v4 = requirements({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v4"})
    assert v3["machine"] == "x86_64" and {"avx2", "fma", "bmi2"} <= set(v3["cpu_features"])
    assert "avx512f" not in v3["cpu_features"]
    assert {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= set(v4["cpu_features"])
    arm = requirements({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72"})
    assert arm["machine"] == "aarch64" and "neon" in arm["cpu_features"]
    assert requirements({"kind": "cuda", "arch": "sm_90"}) == {"gpu": "cuda", "arch": "sm_90", "binary": "cubin"}


def test_an_existing_bundle_folder_is_never_overwritten(tmp_path):
    from opscope.bundle import write_bundle

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.txt").write_text("x")
    with pytest.raises(OpscopeError, match="exists and is not empty"):
        write_bundle([], "host", 1, tmp_path / "b")
    assert (tmp_path / "b" / "mine.txt").read_text() == "x"
    (tmp_path / "plain").write_text("y")
    with pytest.raises(OpscopeError, match="plain is a file; choose another --out"):
        write_bundle([], "host", 1, tmp_path / "plain")
    assert (tmp_path / "plain").read_text() == "y"


# -- round trip ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory):

    from opscope.bundle import write_bundle
    from opscope.collector.te_ops import dense_operator

    out = tmp_path_factory.mktemp("bundle") / "b"
    op = dense_operator(128, 128, 128)
    info = write_bundle([op], "host", 2, out, threads=(1,), seed=3, mcpu="native", progress=False,
                        library=False)  # library entries: test_a_bundle_times_torch_beside_its_kernels
    return info, op


def _run(bundle_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TVM_", "PYTHONPATH"))}
    return subprocess.run([sys.executable, str(bundle_dir / "run.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=bundle_dir.parent)


def _rows(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()[1:]) if "entry" in r]


@pytest.mark.slow
def test_bundle_round_trip_matches_a_direct_collect(bundle, tmp_path):
    from opscope.bundle import import_results
    from opscope.collector import collect
    from opscope.store import load_dataframe, open_store

    info, op = bundle
    assert info.kernels == 3 and info.build_errors == 0  # default + 2 sampled
    assert info.size_bytes < 60e6
    names = {p.name for p in (info.path / "runtime" / "common" / "tvm" / "lib").iterdir()}
    assert "libtvm_runtime.so" in names and "libtvm_compiler.so" not in names
    # the device side imports only the bundled runtime, without the compiler library
    check = _run(info.path, "--check")
    assert check.returncode == 0, check.stderr
    assert f"tvm runtime {info.path / 'runtime' / 'common' / 'tvm'}" in check.stdout
    assert "(libraries: tvm_runtime)" in check.stdout
    results = tmp_path / "results.json"
    proc = _run(info.path, "--out", str(results))
    assert proc.returncode == 0, proc.stderr
    rows = _rows(results)
    assert [r["status"] for r in rows] == ["ok"] * 3

    bundled = tmp_path / "bundled.db"
    first = import_results(results, bundled)
    again = import_results(results, bundled)
    assert (first.added, first.duplicates) == (3, 0)
    assert (again.added, again.duplicates) == (0, 3)  # importing twice adds nothing

    direct = tmp_path / "direct.db"
    collect([op], target="host", trials=2, threads=(1,), store=direct, seed=3, progress=False,
            library=False)  # bundles carry TVM schedules only
    a = load_dataframe(bundled).set_index("schedule_id")
    b = load_dataframe(direct).set_index("schedule_id")
    assert sorted(a.index) == sorted(b.index)  # the same schedules
    assert len(a) == 3 and (a["status"] == "ok").all() and (b["status"] == "ok").all()
    for sid in a.index:
        assert a.loc[sid, "knobs_json"] == b.loc[sid, "knobs_json"]
        assert a.loc[sid, "threads"] == b.loc[sid, "threads"] == 1
        # within noise: this 2-core machine is shared, so allow a factor of 2.5 either way
        ratio = a.loc[sid, "latency_median_s"] / b.loc[sid, "latency_median_s"]
        assert abs(math.log(ratio)) < math.log(2.5), (sid, ratio)
    with open_store(bundled) as st:
        stored = st.machine(a["machine_id"].iloc[0])
    assert stored["measured_by"] == f"bundle {info.bundle_id}" and stored["cores"] == os.cpu_count()


@pytest.mark.slow
def test_a_killed_run_loses_nothing_and_resumes(bundle, tmp_path):
    from opscope.bundle import import_results

    info, _ = bundle
    results = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TVM_")}
    log = tmp_path / "run.stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, str(info.path / "run.py"), "--out", str(results),
                                 "--threads", "1,2"], stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)

    def measured() -> int:
        return len(_rows(results)) if results.exists() else 0

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and measured() < 2:
        # a run that dies at once (a refused CPU, a broken runtime) fails here in seconds, with its reason
        assert proc.poll() is None or measured() >= 2, f"run.py exited {proc.returncode}: {log.read_text()[-2000:]}"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(results)
    assert 2 <= len(before) < 6
    with open(results, "a") as fh:  # as if the kill hit in the middle of writing a line
        fh.write('{"entry": 2, "threads_requ')
    done = _run(info.path, "--out", str(results), "--threads", "1,2")
    assert done.returncode == 0, done.stderr
    after = _rows(results)
    keys = [(r["entry"], r["threads_requested"]) for r in after]
    assert sorted(keys) == sorted({(e, t) for e in range(3) for t in (1, 2)})  # each once
    assert after[:len(before)] == before  # what was measured before the kill is kept as it was
    summary = import_results(results, tmp_path / "s.db")
    assert summary.added == 6 and not summary.incomplete_last_line


@pytest.mark.slow
def test_bundle_for_an_isa_this_cpu_lacks_is_refused(tmp_path):
    from opscope.bundle import write_bundle
    from opscope.collector.te_ops import dense_operator

    if "avx512f" in _host_flags() or os.uname().machine != "x86_64":
        pytest.skip("this CPU has AVX-512 (or is not x86): nothing to refuse")
    info = write_bundle([dense_operator(32, 32, 32)], "host", 0, tmp_path / "b", mcpu="x86-64-v4", progress=False)
    proc = _run(info.path, "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 3
    assert "cannot run the bundle" in proc.stderr and "avx512f" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_import_reports_bad_lines_by_number(tmp_path):
    from opscope.bundle.importer import read_results

    header = {"format": "opscope-bundle-results", "version": 1, "bundle_id": "b1",
              "manifest": {"entries": [{"id": 0}], "protocol": {}}}
    fp = {"fingerprint": {"cpu_model": "x"}}
    good = {"entry": 0, "threads_requested": 1, "status": "ok", "latencies_s": [1e-3]}
    path = tmp_path / "r.json"
    path.write_text("\n".join(json.dumps(x) for x in (header, fp, good)) + "\n" + '{"entry": 0, "thr')
    _, rows, incomplete = read_results(path)
    assert len(rows) == 1 and incomplete  # the torn last line is reported, not silently dropped
    path.write_text("\n".join([json.dumps(header), json.dumps(fp), "{oops", json.dumps(good)]) + "\n")
    with pytest.raises(OpscopeError, match=r"r.json, line 3: not valid JSON"):
        read_results(path)
    path.write_text("\n".join(json.dumps(x) for x in (header, fp, dict(good, entry=7))) + "\n")
    with pytest.raises(OpscopeError, match=r"line 3: field 'entry' 7"):
        read_results(path)
    path.write_text("\n".join(json.dumps(x) for x in (header, good)) + "\n")
    with pytest.raises(OpscopeError, match="before any fingerprint"):
        read_results(path)


@pytest.mark.slow
def test_bundle_runs_under_another_python_with_only_numpy(bundle, tmp_path):
    """A bundle with --python X.Y runs under that interpreter (GPU machines run 3.12, this one 3.11).

    Needs an interpreter with numpy and nothing else: ``OPSCOPE_TEST_PYTHONS`` lists them
    (e.g. a venv of Python 3.12 with numpy); skipped when none is given.
    """
    import shutil

    from opscope.bundle.runtime import add_ffi_wheel

    pythons = [p for p in os.environ.get("OPSCOPE_TEST_PYTHONS", "").split(os.pathsep) if p]
    if not pythons:
        pytest.skip("set OPSCOPE_TEST_PYTHONS to interpreters that have numpy (and no tvm)")
    info, _ = bundle
    copy = tmp_path / "b"
    shutil.copytree(info.path, copy)
    for py in pythons:
        version = subprocess.run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        has_tvm = subprocess.run([py, "-c", "import tvm"], capture_output=True).returncode == 0
        assert not has_tvm, f"{py} has its own tvm: it would not test the bundled runtime"
        if not (copy / "runtime" / f"cp{version.replace('.', '')}").is_dir():
            add_ffi_wheel(copy / "runtime", version)  # pip download of the matching tvm-ffi wheel
        out = tmp_path / f"r{version}.json"
        proc = subprocess.run([py, str(copy / "run.py"), "--out", str(out)], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        rows = _rows(out)
        assert [r["status"] for r in rows] == ["ok"] * 3
        fp = json.loads(out.read_text().splitlines()[1])["fingerprint"]
        assert fp["python"].startswith(version) and fp["tvm_version"]


def test_result_check_scales_with_the_output_range():
    """A float32 rounding difference next to large outputs passes; an error of one unit does not."""
    import tvm

    run = _run_py()

    def kernel(noise: float):
        def main(x, y):
            out = x.numpy().astype("float64") * 5000.0
            out[0] = noise  # an element the reference has at exactly 0
            y.copyfrom(out.astype("float32"))
        return {"main": main}

    specs = [((64,), "float32"), ((64,), "float32")]
    ref = kernel(0.0)
    # |diff| 4e-3 where the other outputs reach 5000: float32 keeps ~7 digits, so this is rounding
    assert run.check_against(tvm, tvm.cpu(), kernel(4e-3), ref, specs) == ""
    assert "argument 1 differs" in run.check_against(tvm, tvm.cpu(), kernel(1.0), ref, specs)


def test_bundle_carries_the_timing_core_verbatim(bundle):
    """run.py times with opscope's own timing core, worker helper and fingerprint, byte for byte."""
    from opscope.collector import machine, process, timing

    info, _ = bundle
    for module in (timing, process, machine):
        source = Path(module.__file__)
        assert (info.path / source.name).read_bytes() == source.read_bytes(), source.name
    run = _run_py()
    assert run.TIMING.TIMING_VERSION == timing.TIMING_VERSION
    assert run.TIMING.ATOL_SCALE == timing.ATOL_SCALE == 1e-5


@pytest.mark.slow
def test_a_bundle_times_torch_beside_its_kernels_and_skips_it_in_one_line_without_torch(tmp_path):
    from opscope.bundle import import_results, write_bundle
    from opscope.collector.te_ops import add_operator, dense_operator
    from opscope.store import load_dataframe

    ops = [dense_operator(64, 64, 64), add_operator(256)]  # a library covers the dense only
    info = write_bundle(ops, "host", 0, tmp_path / "b", threads=(1,), mcpu="native", progress=False)
    assert (info.kernels, info.library_rows) == (2, 1)
    results = tmp_path / "r.json"
    proc = _run(info.path, "--out", str(results))
    assert proc.returncode == 0, proc.stderr
    rows = _rows(results)
    assert [r["status"] for r in rows] == ["ok"] * 3
    lib = [r for r in rows if r.get("origin", {}).get("library") == "torch"]
    assert len(lib) == 1 and lib[0]["origin"]["call"] == "linear" and lib[0]["origin"]["version"]
    store = tmp_path / "s.db"
    assert import_results(results, store).added == 3
    df = load_dataframe(store)
    row = df[df["schedule_kind"] == "library"].iloc[0]
    assert row["schedule_id"] == "lib:torch-" + lib[0]["origin"]["version"]  # as collect names it
    assert json.loads(row["origin_json"])["backend"] in ("oneDNN", "native")
    # a device whose torch does not import: one line, the kernels measured, the library row left for later
    shim = tmp_path / "shim" / "torch"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('torch is broken on this device (test)')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TVM_", "PYTHONPATH"))}
    env["PYTHONPATH"] = str(tmp_path / "shim")
    out2 = tmp_path / "r2.json"
    proc = subprocess.run([sys.executable, str(info.path / "run.py"), "--out", str(out2)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "library row" in line]
    assert len(said) == 1 and "torch does not start here" in said[0], proc.stderr
    assert [r["status"] for r in _rows(out2)] == ["ok"] * 2
