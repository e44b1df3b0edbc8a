"""This machine's fingerprint, stored once per machine in the store.

The id hashes what makes measurements comparable: CPU model, core count, cache sizes, OS and
kernel, and the TVM and opscope versions.  The CPU governor and current frequency are recorded
(when readable) but not hashed: they drift while the machine is the same.  So are the clock and the
memory size that ``opscope.targets.host.detect_host`` reads (``frequency_hz``, ``memory_bytes``), from
which a spec of the machine is made elsewhere exactly as here.  So is the effective TVM
target of the host (``tvm_target``: LLVM's CPU name and the features turned off because the CPU hides
them), which says what the kernels were compiled for.

This is the one fingerprint: the collector, co-run and the importer of bundle results use it, and
bundles carry this file verbatim (``host_facts`` needs only the standard library).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _caches() -> dict[str, str]:
    out: dict[str, str] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(base.glob("index*")) if base.is_dir() else []:
        level, kind, size = _read(idx / "level"), _read(idx / "type"), _read(idx / "size")
        if level and size:
            out[f"L{level}{'d' if kind == 'Data' else 'i' if kind == 'Instruction' else ''}"] = size
    return out


def clock_hz(cpuinfo: str | None = None, sysfs_cpu: str = "/sys/devices/system/cpu") -> float | None:
    """This machine's clock: cpufreq's maximum, else ``cpu MHz`` of ``cpuinfo`` (the text of
    /proc/cpuinfo, read when not given); None when neither can be read.  ``detect_host`` reads it too,
    so a spec made of the fingerprint has the clock the machine's own spec has."""
    khz = _read(f"{sysfs_cpu}/cpu0/cpufreq/cpuinfo_max_freq")
    if khz.isdigit():
        return int(khz) * 1e3
    info = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    for line in info.splitlines():
        if line.split(":", 1)[0].strip() == "cpu MHz":
            try:
                return float(line.split(":", 1)[1]) * 1e6
            except ValueError:
                return None
    return None


def memory_bytes() -> int | None:
    """MemTotal of /proc/meminfo in bytes, or None (``detect_host``'s DRAM size too)."""
    for line in _read("/proc/meminfo").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "MemTotal:" and parts[1].isdigit():
            return int(parts[1]) * 1024
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _host_target() -> str | None:
    """The TVM target opscope compiles this host's kernels for (mcpu and the features turned off)."""
    from opscope.errors import OpscopeError
    from opscope.targets import detect_host
    from opscope.targets.tvm import target_string, tvm_target_dict

    try:
        return target_string(tvm_target_dict(detect_host()))
    except (OpscopeError, ImportError):
        return None


def host_facts() -> dict[str, Any]:
    """What this machine is, read from the OS alone (no opscope, no TVM): bundles carry this file
    and describe the device with it, so a device and this machine are described alike."""
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "caches": _caches(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or None,
        "cur_freq_khz": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq") or None,
        "frequency_hz": clock_hz(),
        "memory_bytes": memory_bytes(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def fingerprint() -> dict[str, Any]:
    """``host_facts`` plus the installed TVM and opscope versions and the host's TVM target."""
    import opscope

    return {
        **host_facts(),
        "tvm_version": _version("apache-tvm"),
        "tvm_ffi_version": _version("apache-tvm-ffi"),
        "opscope_version": opscope.__version__,
        # recorded, not hashed: the same machine keeps its id when the target derivation changes
        "tvm_target": _host_target(),
    }


_HASHED = ("cpu_model", "cores", "caches", "os", "machine", "tvm_version", "opscope_version")


def machine_id(fp: dict[str, Any]) -> str:
    blob = json.dumps({k: fp.get(k) for k in _HASHED}, sort_keys=True)
    return "m" + hashlib.sha256(blob.encode()).hexdigest()[:15]
