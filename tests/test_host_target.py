"""The host's TVM target follows what the CPU really reports, not the features LLVM assumes of its model.

A VM may hide features of the CPU model LLVM names (AMX, AVX-512 BF16/FP16, AVX-VNNI on cloud Xeons):
the tests play such a CPU with a cpuinfo file (``$OPSCOPE_CPUINFO``) that leaves some flags out.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from opscope.targets.cpu_flags import cpu_flags, missing_features

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the fake cpuinfo files are x86 ones")

REAL = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
#: cpuinfo flags this test hides; AVX2 and FMA sit under every AVX-512 feature in LLVM's implications,
#: so hiding them must take the whole AVX-512 family down with them
HIDDEN = ("avx2", "fma")


def _fake_cpuinfo(tmp_path: Path, hide: tuple[str, ...]) -> Path:
    flags = sorted(cpu_flags(REAL) - set(hide))
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: a CPU with {' '.join(hide)} hidden\nflags\t\t: {' '.join(flags)}\n")
    return path


def test_missing_features_reads_cpuinfo_names():
    text = "processor : 0\nflags : fpu sse2 pni ssse3 avx avx2 fma abm bmi1\n"
    # lzcnt is "abm" and bmi is "bmi1" in /proc/cpuinfo; avx512f is absent; "mmx" is not a checked feature
    assert missing_features({"avx2", "lzcnt", "bmi", "avx512f", "mmx"}, "x86_64", text) == ["avx512f"]
    assert missing_features({"avx512f"}, "x86_64", "") == []  # nothing to read: nothing judged


def test_host_target_turns_off_what_the_cpu_hides(tmp_path, monkeypatch):
    from opscope.targets import detect_host
    from opscope.targets.tvm import llvm_features, tvm_target_dict

    full = tvm_target_dict(detect_host())
    if not {"avx2", "fma"} <= llvm_features(full):
        pytest.skip("LLVM's model of this CPU has no AVX2/FMA to hide")
    monkeypatch.setenv("OPSCOPE_CPUINFO", str(_fake_cpuinfo(tmp_path, HIDDEN)))
    d = tvm_target_dict(detect_host())
    assert d["mcpu"] == full["mcpu"]  # the same CPU model, with features off
    assert {"-avx2", "-fma"} <= set(d["mattr"])
    left = llvm_features(d)
    assert "avx2" not in left and "fma" not in left and not any(f.startswith("avx512") for f in left)
    assert "sse4.2" in left  # what the CPU does report stays on
    # every feature the derived target enables is one the fake CPU lists
    assert missing_features(left, "x86_64", Path(os.environ["OPSCOPE_CPUINFO"]).read_text()) == []


def test_host_target_is_unchanged_when_nothing_is_hidden(tmp_path, monkeypatch):
    from opscope.targets import detect_host
    from opscope.targets.tvm import llvm_features, tvm_target_dict

    d = tvm_target_dict(detect_host())
    # on this machine, whatever the derived target enables, /proc/cpuinfo lists
    assert missing_features(llvm_features(d), "x86_64", REAL) == []
    monkeypatch.setenv("OPSCOPE_CPUINFO", str(_fake_cpuinfo(tmp_path, ())))
    assert tvm_target_dict(detect_host()) == d


def test_fingerprint_records_the_effective_target_without_hashing_it(tmp_path, monkeypatch):
    from opscope.collector.machine import fingerprint, machine_id

    fp = fingerprint()
    monkeypatch.setenv("OPSCOPE_CPUINFO", str(_fake_cpuinfo(tmp_path, HIDDEN)))
    hidden = fingerprint()
    assert '"mcpu":' in fp["tvm_target"] and '"-avx2"' in hidden["tvm_target"] and '"-avx2"' not in fp["tvm_target"]
    assert machine_id(fp) == machine_id(hidden)  # the same machine keeps its id


def _check(bundle: Path, cpuinfo: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TVM_", "PYTHONPATH"))}
    env["OPSCOPE_CPUINFO"] = str(cpuinfo)
    return subprocess.run([sys.executable, str(bundle / "run.py"), "--check"], capture_output=True, text=True,
                          timeout=120, env=env, cwd=bundle.parent)


@pytest.mark.slow
def test_a_bundle_for_this_host_passes_its_own_check_and_a_richer_one_is_refused(tmp_path, monkeypatch):
    from opscope.bundle import write_bundle
    from opscope.collector.te_ops import dense_operator

    fake = _fake_cpuinfo(tmp_path, HIDDEN)
    monkeypatch.setenv("OPSCOPE_CPUINFO", str(fake))
    op = dense_operator(16, 16, 16)
    mine = write_bundle([op], "host", 0, tmp_path / "mine", mcpu="native", progress=False)
    check = _check(mine.path, fake)
    assert check.returncode == 0, check.stderr
    # x86-64-v3 needs AVX2 and FMA, which this CPU hides: refused with one line naming them
    richer = write_bundle([op], "host", 0, tmp_path / "v3", mcpu="x86-64-v3", progress=False)
    refused = _check(richer.path, fake)
    assert refused.returncode == 3
    assert "avx2 (avx2)" in refused.stderr and "fma (fma)" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
