"""What a device is: the validated target spec.

A spec is what the analytical model needs (peaks, PE array, memory hierarchy, efficiencies,
energies) plus, for devices we can measure on, how TVM compiles for it.  Specs are loaded from TOML
files (``opscope/targets/specs/*.toml`` ship with the package; any path works too) by
``opscope.targets.load_target`` and validated there; the dataclasses here check their own invariants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TARGET_KINDS = ("cpu", "gpu", "accelerator")
DTYPES = ("int8", "float16", "bfloat16", "float32")
#: How a PE array's PEs use their operands (see opscope/analytical/dataflow.py); a spec may name one,
#: or leave the mapping search to choose.
DATAFLOWS = ("row-stationary", "weight-stationary", "output-stationary", "row-stationary-folded")
#: the dataflows the mapping search tries when neither the spec nor the options name one
#: (row-stationary-folded is a part of row-stationary's space, so it is only used when named)
SEARCHED_DATAFLOWS = DATAFLOWS[:3]


@dataclass(frozen=True)
class MemoryLevel:
    """One level of the memory hierarchy, innermost first (registers/L1 ... DRAM/HBM)."""

    name: str
    size_bytes: int | None  # None: unbounded (the outermost level)
    bandwidth_Bps: float  # bytes per second between this level and the compute side
    energy_pj_per_byte: float | None = None
    #: the PEs' own register files: ``size_bytes`` is per PE, and compute reads its operands from it
    #: on every MAC (how many words each MAC touches is the dataflow's); only the innermost level
    in_pe: bool = False


@dataclass(frozen=True)
class PEArray:
    """``instances`` arrays of ``height x width`` PEs, each doing ``macs_per_pe`` MACs per cycle."""

    instances: int
    height: int
    width: int
    macs_per_pe: int = 1
    #: the array's delivery network (buffer to PEs, PE to PE): pJ per byte delivered to a PE and its
    #: bandwidth; None where the spec does not model it
    bus_energy_pj_per_byte: float | None = None
    bus_bandwidth_Bps: float | None = None

    @property
    def pes(self) -> int:
        return self.instances * self.height * self.width


@dataclass(frozen=True)
class TargetSpec:
    name: str
    kind: str  # one of TARGET_KINDS
    frequency_hz: float
    memory: tuple[MemoryLevel, ...]  # innermost first; the last one is off-chip
    #: peak FLOP/s per dtype (keys from DTYPES); may be empty when ``pe_array`` is given
    peak_flops: dict[str, float] = field(default_factory=dict)
    pe_array: PEArray | None = None
    compute_efficiency: float = 1.0
    memory_efficiency: float = 1.0
    energy_pj_per_mac: float | None = None
    #: True when the peaks are datasheet/derived figures, False once measured (``host-measured``)
    nominal: bool = True
    cores: int | None = None
    vector_bits: int | None = None
    #: how TVM compiles for it: a JSON target dict (``{"kind": "llvm", "mtriple": ..., "mcpu": ...}``)
    tvm_target: dict[str, Any] | None = None
    #: free-form provenance (datasheet links, how it was detected or measured)
    sources: tuple[str, ...] = ()
    #: anything else the TOML had under [extra] (cross compiler, rpc key ...)
    extra: dict[str, Any] = field(default_factory=dict)
    #: PE-array throughput per dtype relative to the array's native one (1.0 when absent); e.g.
    #: FRAME's TPU model runs float32 at half the bf16 rate (0.5) and int8 at twice (2.0).
    pe_dtype_rates: dict[str, float] = field(default_factory=dict)
    #: the PE array's dataflow (one of DATAFLOWS), or None to let the mapping search choose
    dataflow: str | None = None

    def peak_for(self, dtype: str) -> float:
        """Peak FLOP/s for ``dtype``: from the PE array (2 FLOP per MAC) or the per-dtype table."""
        if self.pe_array is not None:
            pe = self.pe_array
            rate = self.pe_dtype_rates.get(dtype, 1.0)
            return 2.0 * pe.pes * pe.macs_per_pe * self.frequency_hz * rate
        if dtype in self.peak_flops:
            return self.peak_flops[dtype]
        raise KeyError(f"target {self.name!r} has no peak for dtype {dtype!r} (has {sorted(self.peak_flops)})")

    @property
    def offchip(self) -> MemoryLevel:
        return self.memory[-1]

    def level(self, name: str) -> MemoryLevel:
        """The memory level called ``name`` (KeyError listing the levels if there is none)."""
        for m in self.memory:
            if m.name == name:
                return m
        raise KeyError(f"target {self.name!r} has no memory level {name!r} (has {[m.name for m in self.memory]})")
