"""Which instruction-set features a CPU really offers, as ``/proc/cpuinfo`` lists them.

LLVM names a CPU by its model (``emeraldrapids``, ``znver4``) and assumes every feature of that model.
A hypervisor may hide some of them (AMX, AVX-512 FP16/BF16, AVX-VNNI are often hidden on cloud VMs):
code built for the model's full feature set can then die with SIGILL on the very machine that built it.
This module maps LLVM's feature names to the flags the kernel reports, so that the host target turns
off what the CPU lacks, and a bundle's ``run.py`` refuses kernels that need what the device lacks.

Standard library only: ``opscope bundle`` copies this file verbatim next to the device-side ``run.py``,
which runs with Python and numpy alone.
"""

import os

#: LLVM feature name -> the flag /proc/cpuinfo shows for it (x86 "flags", Arm "Features").  These are the
#: instruction sets code generation may emit in a numeric kernel; a feature missing here is never checked.
LLVM_TO_CPUINFO = {
    # x86
    "sse3": "pni", "ssse3": "ssse3", "sse4.1": "sse4_1", "sse4.2": "sse4_2", "sse4a": "sse4a",
    "popcnt": "popcnt", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "bmi": "bmi1",
    "bmi2": "bmi2", "lzcnt": "abm", "movbe": "movbe", "adx": "adx", "aes": "aes", "pclmul": "pclmulqdq",
    "sha": "sha_ni", "gfni": "gfni", "vaes": "vaes", "vpclmulqdq": "vpclmulqdq",
    "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512cd": "avx512cd", "avx512dq": "avx512dq",
    "avx512vl": "avx512vl", "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16",
    "avx512fp16": "avx512_fp16", "avx512vbmi": "avx512vbmi", "avx512vbmi2": "avx512_vbmi2",
    "avx512ifma": "avx512ifma", "avx512bitalg": "avx512_bitalg", "avx512vpopcntdq": "avx512_vpopcntdq",
    "avx512vp2intersect": "avx512_vp2intersect", "avxvnni": "avx_vnni", "avxifma": "avx_ifma",
    "avxvnniint8": "avx_vnni_int8", "avxneconvert": "avx_ne_convert",
    "amx-tile": "amx_tile", "amx-int8": "amx_int8", "amx-bf16": "amx_bf16", "amx-fp16": "amx_fp16",
    # Arm
    "neon": "asimd", "dotprod": "asimddp", "fullfp16": "asimdhp", "i8mm": "i8mm", "sve": "sve",
    "sve2": "sve2", "bf16": "bf16", "vfp3": "vfpv3", "vfp4": "vfpv4",
}
#: 32-bit Arm kernels call Advanced SIMD "neon" in /proc/cpuinfo, 64-bit ones "asimd"
ARM32 = ("armv7l", "armv7", "armv8l")
#: where the CPU's flags are read; OPSCOPE_CPUINFO names another file (a machine whose /proc/cpuinfo is
#: not the CPU's, or a test that plays a CPU with features hidden)
CPUINFO_ENV = "OPSCOPE_CPUINFO"


def cpuinfo_path():
    return os.environ.get(CPUINFO_ENV) or "/proc/cpuinfo"


def read_cpuinfo(path=None):
    """The text of the cpuinfo file (``""`` when it cannot be read, e.g. not Linux)."""
    try:
        with open(path or cpuinfo_path(), encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def cpu_flags(cpuinfo_text):
    """The CPU feature flags listed in /proc/cpuinfo text (x86 'flags', Arm 'Features')."""
    flags = set()
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def cpuinfo_names(machine):
    """LLVM feature -> cpuinfo flag on ``machine`` (``platform.machine()`` spelling)."""
    return dict(LLVM_TO_CPUINFO, neon="neon") if machine in ARM32 else LLVM_TO_CPUINFO


def missing_features(llvm_features, machine, cpuinfo_text):
    """The LLVM features of ``llvm_features`` that the CPU described by ``cpuinfo_text`` lacks, sorted.

    Only features this module maps are judged; with no flags to read (no cpuinfo) nothing is missing.
    """
    have = cpu_flags(cpuinfo_text)
    if not have:
        return []
    names = cpuinfo_names(machine)
    return sorted(f for f in llvm_features if f in names and names[f] not in have)
