"""A mapping of one layer onto a PE array and its memories, and the traffic, time and energy it costs.

A mapping (``Mapping``) splits every loop of the layer (``opscope.analytical.layer``) into

    off-chip loops (t2)  >  buffer loops (t1)  >  spatial (the array: height x width x instances)
                                               >  PE loops (t0, inside one PE)

so that ``sp x t0 x t1 x t2`` covers the loop's extent.  Tiles: a PE holds ``t0``; the array
``sp x t0``; the buffer ``sp x t0 x t1``.  The buffer and off-chip loops run in a chosen order;
a tensor may bypass the buffer (then it goes from off-chip straight to the PEs and takes no room).

Traffic, per tensor, with the reuse rule of dMazeRunner / nn_dataflow: a tile is loaded once per
iteration of the loops above it (outermost first), except during the innermost run of loops it does
not depend on (it stays resident); an output tile is written on every load and read back on every
load after its first (partial sums): ``2 x loads - distinct tiles``.

- registers (a level with ``in_pe``): every MAC touches the dataflow's register words;
- array delivery: every PE receives its own tile on each load (multicast counted per PE);
- the buffer: its consumer, the array, reads the array tile on each load (multicast counted once);
- off-chip: the buffer reads its tile on each load, or, for a bypassing tensor, the array does.

Levels between the buffer and off-chip pass the off-chip traffic through.  A PE runs
``prod(t0 x t1 x t2)`` steps; PE utilisation = MACs / (steps x PEs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from opscope.analytical.dataflow import LOOPS

TENSORS = ("input", "weight", "output")


@dataclass(frozen=True)
class Mapping:
    """The chosen mapping of one layer and what it costs (per call; bytes, seconds, joules)."""

    dataflow: str
    #: loop -> factor on the array's height, width and instances (loops not named: 1)
    height: tuple[tuple[str, int], ...]
    width: tuple[tuple[str, int], ...]
    instances: tuple[tuple[str, int], ...]
    #: loop -> tile per PE, per buffer (the buffer's tile in elements of the loop)
    pe_tile: tuple[tuple[str, int], ...]
    buffer_tile: tuple[tuple[str, int], ...]
    #: loops outermost first, at the buffer level and off-chip (only loops with more than one step)
    buffer_order: tuple[str, ...]
    offchip_order: tuple[str, ...]
    #: tensors that skip the buffer
    bypass: tuple[str, ...]
    buffer: str
    utilization: float
    steps: int
    #: bytes per level (level name, and "array" for delivery into PEs)
    traffic: tuple[tuple[str, float], ...] = field(default=())
    energy_j: float | None = None
    latency_s: float = math.nan
    objective: str = "energy"

    def describe(self) -> str:
        def f(pairs):
            return " ".join(f"{k}{v}" for k, v in pairs if v > 1) or "-"

        by = f" bypass {','.join(self.bypass)}" if self.bypass else ""
        return (f"{self.dataflow}: array H[{f(self.height)}] W[{f(self.width)}] I[{f(self.instances)}] "
                f"util {self.utilization:.2f} | PE [{f(self.pe_tile)}] | {self.buffer} [{f(self.buffer_tile)}] "
                f"order {'>'.join(self.buffer_order) or '-'} | off-chip order {'>'.join(self.offchip_order) or '-'}{by}")

    def as_dict(self) -> dict:
        return {
            "dataflow": self.dataflow, "height": dict(self.height), "width": dict(self.width),
            "instances": dict(self.instances), "pe_tile": dict(self.pe_tile), "buffer_tile": dict(self.buffer_tile),
            "buffer_order": list(self.buffer_order), "offchip_order": list(self.offchip_order),
            "bypass": list(self.bypass), "utilization": self.utilization, "traffic": dict(self.traffic),
            "energy_j": self.energy_j, "latency_s": self.latency_s,
        }


def stationary_order(relevant: tuple[bool, ...]) -> tuple[int, ...]:
    """Loop indices outermost first, with the loops ``relevant`` marks False innermost: the tensor stays."""
    return tuple(sorted(range(len(LOOPS)), key=lambda i: (not relevant[i], i)))
