"""The ``host`` target: this machine's CPU, detected at run time.

What is read (Linux): ``/proc/cpuinfo`` (model name, flags, MHz), ``/sys/devices/system/cpu``
(online CPUs, cache sizes and which CPUs share each cache, ``cpufreq/cpuinfo_max_freq`` when
present).  Everything derived from it is *nominal*: the peak is what the ISA could do at best, the
bandwidths are per-cycle textbook figures.  ``opscope probe`` measures the real ones and writes a
``host-measured`` spec.

Nominal figures and where they come from:

- peak FLOP/s = cores x frequency x FMA units x vector lanes x 2 (an FMA is 2 FLOP).  Two FMA
  pipes per core on every x86 core with AVX2 since Haswell and Zen 2 (Intel optimisation manual,
  AMD Zen 2/3/4 software optimisation guides); lanes = vector width / element width.
- L1 bandwidth: 2 loads per cycle of one vector each, per core (the same manuals).
- L2: 32 B/cycle per core; L3: 16 B/cycle per core (Zen and Skylake-SP manuals give 32 B/cycle
  L2->L1 and 32 B/cycle L3->L2 fill widths; sustained L3 is about half, hence 16).
- DRAM: 12.8 GB/s per core, a deliberately modest nominal placeholder (one DDR4-3200 channel is
  25.6 GB/s, shared by several cores on servers); ``opscope probe`` replaces it.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from opscope.targets.spec import MemoryLevel, TargetSpec

#: ISA flag -> vector register width in bits, widest first.
_VECTOR_FLAGS = (("avx512f", 512), ("avx2", 256), ("avx", 256), ("sse2", 128), ("asimd", 128), ("neon", 128))
FMA_UNITS = 2
L1_LOADS_PER_CYCLE = 2
L2_BYTES_PER_CYCLE = 32
L3_BYTES_PER_CYCLE = 16
DRAM_BPS_PER_CORE = 12.8e9


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)\s*", text)
    if not m:
        return 0
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)]


def _cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            cpus.update(range(int(a), int(b) + 1))
        elif part:
            cpus.add(int(part))
    return cpus


def detect_host(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo",
                sysfs_cpu: str | os.PathLike[str] = "/sys/devices/system/cpu") -> TargetSpec:
    """A nominal spec of this machine (see the module docstring for every figure's source)."""
    sysfs = Path(sysfs_cpu)
    info = _read(Path(cpuinfo)) or ""
    model = _field(info, "model name") or platform.processor() or "unknown CPU"
    flags = set((_field(info, "flags") or _field(info, "Features") or "").split())
    vector_bits = next((bits for flag, bits in _VECTOR_FLAGS if flag in flags), 64)
    has_fma = "fma" in flags or "avx512f" in flags or "asimd" in flags
    online = _read(sysfs / "online")
    cores = len(_cpu_list(online)) if online else (os.cpu_count() or 1)
    freq_hz = _frequency(info, sysfs)

    lanes = vector_bits // 32
    fma = FMA_UNITS if has_fma else 1
    # Without FMA, a multiply and an add pipe still give 2 FLOP per lane per cycle at best.
    peak32 = cores * freq_hz * fma * lanes * 2
    peaks = {"float32": peak32}
    if vector_bits >= 256 or "avx512_bf16" in flags:
        # float16/bfloat16 are converted to float32 to compute on x86 without AMX/AVX512-FP16.
        peaks["float16"] = peak32
        peaks["bfloat16"] = peak32
    # int8 via vpmaddubsw/vpdpbusd: 4 int8 MACs per 32-bit lane, on FMA-width pipes.
    peaks["int8"] = peak32 * 4

    caches = _caches(sysfs, cores)
    per_cycle = {1: L1_LOADS_PER_CYCLE * vector_bits // 8, 2: L2_BYTES_PER_CYCLE, 3: L3_BYTES_PER_CYCLE}
    memory = []
    for level, size in sorted(caches.items()):
        memory.append(MemoryLevel(name=f"L{level}", size_bytes=size,
                                  bandwidth_Bps=float(per_cycle.get(level, 16) * cores * freq_hz)))
    memory.append(MemoryLevel(name="DRAM", size_bytes=_dram_bytes(), bandwidth_Bps=DRAM_BPS_PER_CORE * cores))

    sources = (
        f"detected at run time from {cpuinfo} and {sysfs}: {model}, {cores} online CPUs, "
        f"{vector_bits}-bit vectors, {'FMA' if has_fma else 'no FMA'}, {freq_hz / 1e9:.3f} GHz",
        f"nominal peak float32 = {cores} cores x {freq_hz / 1e9:.3f} GHz x {fma} FMA units x {lanes} lanes x 2",
        "cache bandwidths: per-cycle figures from the x86 optimisation manuals (see opscope/targets/host.py)",
        "DRAM bandwidth: nominal placeholder, 12.8 GB/s per core; run `opscope probe` to measure",
    )
    return TargetSpec(
        name="host", kind="cpu", frequency_hz=freq_hz, memory=tuple(memory), peak_flops=peaks,
        nominal=True, cores=cores, vector_bits=vector_bits,
        # mcpu is filled in by tvm_target() from LLVM's own detection (needs TVM, imported lazily)
        tvm_target={"kind": "llvm", "mtriple": _triple(), "num-cores": cores},
        sources=sources, extra={"model_name": model},
    )


def _field(info: str, key: str) -> str | None:
    for line in info.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            if k.strip() == key:
                return v.strip()
    return None


def _frequency(info: str, sysfs: Path) -> float:
    from opscope.collector.machine import clock_hz  # the reading the fingerprint records

    # nothing readable: a plausible nominal clock, recorded in sources
    return clock_hz(info, str(sysfs)) or 2.0e9


def _caches(sysfs: Path, cores: int) -> dict[int, int]:
    """Aggregate data-cache bytes per level: each distinct cache instance counted once."""
    seen: dict[int, dict[str, int]] = {}
    for cpu_dir in sorted(sysfs.glob("cpu[0-9]*")):
        for idx in sorted((cpu_dir / "cache").glob("index*")):
            ctype = (_read(idx / "type") or "").strip()
            if ctype == "Instruction":
                continue
            level_txt = (_read(idx / "level") or "").strip()
            if not level_txt.isdigit():
                continue
            shared = (_read(idx / "shared_cpu_list") or cpu_dir.name).strip()
            size = _parse_size(_read(idx / "size") or "")
            if size:
                seen.setdefault(int(level_txt), {})[shared] = size
    return {lv: sum(inst.values()) for lv, inst in seen.items()}


def _dram_bytes() -> int | None:
    from opscope.collector.machine import memory_bytes  # the reading the fingerprint records

    return memory_bytes()


def _triple() -> str:
    machine = platform.machine() or "x86_64"
    return f"{machine}-linux-gnu" if platform.system() == "Linux" else machine
