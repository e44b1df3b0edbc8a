"""PE-array utilisation: how much of ``instances x height x width`` a GEMM keeps busy.

FRAME (``Operator.get_compute_efficiency``) sorts the GEMM's three dimensions, maps the two largest
onto the array's two sides (largest on largest), streams the smallest through it, and maps only the
outer batch onto the instances: a single CONV or FC (batch 1) then uses one of four instances, a
utilisation capped at 25%.  Here the independent work is spread over the instances instead:

- a *job* is one array-sized tile of the two spatial dimensions for one batch element:
  ``jobs = batch x ceil(a / H) x ceil(b / W)``;
- with at least as many jobs as instances, each instance runs ``ceil(jobs / instances)`` jobs, each
  streaming the smallest dimension ``s``: ``cycles = ceil(jobs / instances) x s``;
- with fewer jobs than instances, the streaming dimension is split over the idle instances
  (partial results summed at the end, which is not costed): ``cycles = min(s, ceil(s / (instances // jobs)))``.

Utilisation = useful MACs / (cycles x instances x H x W), at most 1.
"""

from __future__ import annotations

import math

from opscope.targets.spec import PEArray


def pe_utilization(batch: float, m: float, n: float, k: float, pe: PEArray) -> float:
    """Utilisation of ``pe`` by ``batch`` GEMMs of ``m x k`` by ``k x n`` (dimensions may be fractional
    after sparsity: FRAME shrinks the contraction by the densities)."""
    a, b, s = sorted((float(m), float(n), float(k)), reverse=True)
    h, w = sorted((pe.height, pe.width), reverse=True)
    if batch <= 0 or s <= 0:
        return 1.0
    jobs = math.ceil(batch) * math.ceil(a / h) * math.ceil(b / w)
    if jobs >= pe.instances:
        cycles = math.ceil(jobs / pe.instances) * s
    else:
        # never more than not splitting (s may be below 1 after FRAME's density scaling)
        cycles = min(s, math.ceil(s / (pe.instances // jobs)))
    util = batch * a * b * s / (cycles * pe.instances * h * w)
    return min(1.0, util)
