"""What the analytical model is asked to assume: sparsity, attention variant, buffering.

Sparsity follows FRAME (maestro-project/frame ``src/operator_base.py``): each operator has densities
for its input ``a``, its weight ``w`` (the second operand when there is no weight) and its output
``o``.  ``compress_mem`` stores every tensor compressed (bytes x density); ``skip_compute`` skips the
MACs with a zero operand (MACs x d_a x d_w, and x d_o too with ``skip_compute_on_noopt_output``);
``min_density`` is a structured accelerator's finest granularity: the executed fraction is rounded
up to a multiple of it (FRAME's ``pe_min_density_support``; None means unstructured, no rounding).

Unlike FRAME, an option that would change nothing is an error rather than silently dropped:
densities below 1 with neither ``compress_mem`` nor ``skip_compute``, ``min_density`` without
``skip_compute``, attention parameters with another attention method.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from opscope.errors import OpscopeError

ATTENTION_METHODS = ("vanilla", "sparse", "lowrank", "kernel")
#: FRAME's defaults for each method's parameter (``analyze_model`` signature).
DEFAULT_LOW_RANK_RATIO = 0.1
DEFAULT_SPATTN_DENSITY = 0.1
DEFAULT_M_RATIO = 4.0

Densities = tuple[float, float, float]
MAPPING_MODES = ("auto", "search", "none")


@dataclass(frozen=True)
class AnalysisOptions:
    """Options of the analytical model; validated when built (``OpscopeError`` naming the field)."""

    #: (input, weight, output) densities applied to every operator
    densities: Densities = (1.0, 1.0, 1.0)
    #: per-operator densities, in operator order (overrides ``densities``); see ``load_densities``
    layer_densities: tuple[Densities, ...] | None = None
    compress_mem: bool = False
    skip_compute: bool = False
    skip_compute_on_noopt_output: bool = True
    min_density: float | None = None
    #: attention variant applied to operators with the ``attention`` attribute
    attention: str = "vanilla"
    low_rank_ratio: float | None = None
    spattn_density: float | None = None
    m_ratio: float | None = None
    #: with a tiling or a mapping: overlap transfers with compute (buffer tiles take twice the space)
    double_buffer: bool = True
    #: mapping search: "auto" (for accelerator specs with a PE array and an on-chip buffer, when no tiles
    #: are given), "search" (always; an error where the spec cannot be mapped) or "none"
    mapping: str = "auto"
    #: what the search minimises: "energy", "latency" or "edp" (energy x latency)
    objective: str = "energy"
    #: the PE array's dataflow, overriding the spec's (None: the spec's, or the search chooses)
    dataflow: str | None = None

    def __post_init__(self) -> None:
        from opscope.analytical.search import OBJECTIVES
        from opscope.targets.spec import DATAFLOWS

        if self.mapping not in MAPPING_MODES:
            raise OpscopeError(f"mapping must be one of {', '.join(MAPPING_MODES)}, got {self.mapping!r}")
        if self.objective not in OBJECTIVES:
            raise OpscopeError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.dataflow is not None and self.dataflow not in DATAFLOWS:
            raise OpscopeError(f"dataflow must be one of {', '.join(DATAFLOWS)}, got {self.dataflow!r}")
        object.__setattr__(self, "densities", _check_densities(self.densities, "densities"))
        if self.layer_densities is not None:
            object.__setattr__(self, "layer_densities", tuple(
                _check_densities(d, f"layer_densities[{i}]") for i, d in enumerate(self.layer_densities)))
        sparse_given = self.densities != (1.0, 1.0, 1.0) or (
            self.layer_densities is not None and any(d != (1.0, 1.0, 1.0) for d in self.layer_densities))
        if sparse_given and not (self.compress_mem or self.skip_compute):
            raise OpscopeError(
                "densities below 1 are given but neither compress_mem nor skip_compute is on: they would "
                "change nothing (turn one of them on)")
        if self.min_density is not None:
            if not (0.0 < self.min_density <= 1.0):
                raise OpscopeError(f"min_density must be in (0, 1], got {self.min_density}")
            if not self.skip_compute:
                raise OpscopeError("min_density is given but skip_compute is off: it would change nothing")
        if self.attention not in ATTENTION_METHODS:
            raise OpscopeError(f"unknown attention method {self.attention!r}; known: {', '.join(ATTENTION_METHODS)}")
        for name, method in (("low_rank_ratio", "lowrank"), ("spattn_density", "sparse"), ("m_ratio", "kernel")):
            v = getattr(self, name)
            if v is None:
                continue
            if self.attention != method:
                raise OpscopeError(f"{name} applies to attention method {method!r}, not {self.attention!r}")
            if not math.isfinite(v) or v <= 0 or (name != "m_ratio" and v > 1):
                raise OpscopeError(f"{name} must be in (0, {'inf' if name == 'm_ratio' else 1}], got {v}")

    # -- the effective attention parameters (FRAME's defaults when not given) ---------------------
    @property
    def effective_low_rank_ratio(self) -> float:
        return DEFAULT_LOW_RANK_RATIO if self.low_rank_ratio is None else self.low_rank_ratio

    @property
    def effective_spattn_density(self) -> float:
        return DEFAULT_SPATTN_DENSITY if self.spattn_density is None else self.spattn_density

    @property
    def effective_m_ratio(self) -> float:
        return DEFAULT_M_RATIO if self.m_ratio is None else self.m_ratio

    @property
    def touches_attention(self) -> bool:
        """True when an option only makes sense for a model with attention operators."""
        return self.attention != "vanilla"


def _check_densities(d, field: str) -> Densities:
    try:
        vals = tuple(float(x) for x in d)
    except (TypeError, ValueError):
        raise OpscopeError(f"{field} must be three numbers (input, weight, output), got {d!r}") from None
    if len(vals) != 3:
        raise OpscopeError(f"{field} must be three numbers (input, weight, output), got {len(vals)}")
    for name, v in zip(("input", "weight", "output"), vals):
        if not (0.0 < v <= 1.0) or not math.isfinite(v):
            raise OpscopeError(f"{field}: {name} density must be in (0, 1], got {v}")
    return vals  # type: ignore[return-value]


def load_densities(path: str | os.PathLike[str]) -> tuple[Densities, ...]:
    """Per-layer densities from a FRAME sparsity CSV (header ``I,W,O``, one row per operator)."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = [(i + 1, r) for i, r in enumerate(csv.reader(fh)) if r and any(c.strip() for c in r)]
    except OSError as exc:
        raise OpscopeError(f"{path}: cannot read densities: {exc.strerror}") from None
    if not rows or [c.strip() for c in rows[0][1]] != ["I", "W", "O"]:
        raise OpscopeError(f"{path}:1: a densities file starts with the header I,W,O (FRAME's sparsity format)")
    out = []
    for line, row in rows[1:]:
        if len(row) != 3:
            raise OpscopeError(f"{path}:{line}: expected 3 densities (I,W,O), got {len(row)} values")
        try:
            out.append(_check_densities(row, f"{path}:{line}"))
        except OpscopeError as exc:
            raise OpscopeError(str(exc) if str(exc).startswith(str(path)) else f"{path}:{line}: {exc}") from None
    if not out:
        raise OpscopeError(f"{path}: no density rows after the header")
    return tuple(out)
