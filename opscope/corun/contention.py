"""What two co-running tasks contend for: memory bandwidth per level, cache capacity, cores.

The interference model reads these features of a ``corun_frame`` row (a task beside its
partners), computed against the machine's memory hierarchy (``MemoryHierarchy``, from the
``host-measured`` spec when ``opscope probe`` wrote one, else the nominal ``host`` spec):

- ``level`` / ``partner_level``: index of the innermost memory level whose size holds the task's
  working set (its tensors' bytes); the last level is off-chip;
- ``bw_util`` / ``partner_bw_util``: the task's bandwidth demand alone (bytes / alone latency)
  over the bandwidth of that level, per core it runs on;
- ``shared_bw_util``: both demands that reach the shared levels (last cache and memory) over the
  bandwidth of the outermost level either reaches: above 1 the pair saturates what it shares;
- ``ws_ratio``: log2 of both working sets over the last cache's size (above 0 they cannot both
  stay in it);
- ``threads_per_core`` / ``partner_threads_per_core`` and ``oversubscription`` (threads of all
  tasks on the cores they share, per core; 1 when the cores are disjoint);
- ``overlap``: the partner's alone latency over the task's (log): how much of the task's run
  the partner is there at all.

Nothing here imports TVM; the hierarchy is plain numbers so a fitted model stores it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opscope.errors import PredictorError

CONTENTION_FEATURES = (
    "level", "partner_level", "bw_util", "partner_bw_util", "shared_bw_util", "ws_ratio",
    "threads_per_core", "partner_threads_per_core", "oversubscription", "overlap",
)
_REQUIRED = ("alone_s", "partner_alone_s", "bytes", "partner_bytes", "threads", "partner_threads", "cores",
             "total_cores", "shared")


@dataclass(frozen=True)
class MemoryHierarchy:
    """Sizes (bytes; the last level unbounded) and bandwidths (B/s) innermost first, and where they
    came from (a spec name)."""

    names: tuple[str, ...]
    sizes: tuple[float, ...]
    bandwidths: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.sizes) == len(self.bandwidths)) or len(self.names) < 2:
            raise PredictorError(f"memory hierarchy needs at least two levels with a size and a bandwidth each, "
                                 f"got {self.names}")
        if any(not b > 0 for b in self.bandwidths):
            raise PredictorError(f"memory hierarchy {self.source or self.names}: bandwidths must be positive")

    @classmethod
    def from_spec(cls, spec) -> MemoryHierarchy:
        levels = spec.memory
        sizes = tuple(float(lv.size_bytes) if lv.size_bytes else math.inf for lv in levels)
        return cls(tuple(lv.name for lv in levels), sizes[:-1] + (math.inf,),
                   tuple(float(lv.bandwidth_Bps) for lv in levels), spec.name)

    @classmethod
    def of_host(cls) -> MemoryHierarchy:
        """``host-measured`` (probed bandwidths) when it is listed, else the nominal ``host`` spec."""
        from opscope.targets import list_targets, load_target

        name = "host-measured" if "host-measured" in list_targets() else "host"
        return cls.from_spec(load_target(name))

    def to_dict(self) -> dict:
        return {"names": list(self.names), "sizes": [None if math.isinf(s) else s for s in self.sizes],
                "bandwidths": list(self.bandwidths), "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> MemoryHierarchy:
        return cls(tuple(d["names"]), tuple(math.inf if s is None else float(s) for s in d["sizes"]),
                   tuple(float(b) for b in d["bandwidths"]), d.get("source", ""))

    @property
    def last_cache(self) -> float:
        return self.sizes[-2]

    def level_of(self, working_set: np.ndarray) -> np.ndarray:
        """Index of the innermost level holding each working set."""
        bounds = np.array(self.sizes[:-1])
        return np.searchsorted(bounds, np.asarray(working_set, float), side="left")


def contention_features(frame: pd.DataFrame, memory: MemoryHierarchy) -> pd.DataFrame:
    """The ``CONTENTION_FEATURES`` of each row (a PredictorError names missing columns)."""
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise PredictorError(f"interference frame lacks columns {missing}")
    alone = frame["alone_s"].astype(float).clip(lower=1e-9).to_numpy()
    p_alone = frame["partner_alone_s"].astype(float).clip(lower=1e-9).to_numpy()
    ws = frame["bytes"].astype(float).to_numpy()
    p_ws = frame["partner_bytes"].astype(float).to_numpy()
    cores = frame["cores"].astype(float).clip(lower=1).to_numpy()
    threads = frame["threads"].astype(float).to_numpy()
    p_threads = frame["partner_threads"].astype(float).to_numpy()
    total_cores = frame["total_cores"].astype(float).clip(lower=1).to_numpy()
    shared = frame["shared"].astype(float).to_numpy()
    partners = frame["partners"].astype(float).clip(lower=1).to_numpy() if "partners" in frame else np.ones(len(frame))
    p_cores = np.where(shared > 0, cores, np.clip(total_cores - cores, 1, None) / partners)
    bw = np.array(memory.bandwidths)
    level, p_level = memory.level_of(ws), memory.level_of(p_ws)
    demand, p_demand = ws / alone, p_ws / p_alone
    shared_from = len(bw) - 2  # the last cache and memory are shared by every core
    reach = np.maximum(level, p_level)
    outer = np.maximum(reach, shared_from)
    f = pd.DataFrame(index=frame.index)
    f["level"] = level.astype(float)
    f["partner_level"] = p_level.astype(float)
    f["bw_util"] = demand / (bw[level] * cores)
    f["partner_bw_util"] = p_demand / (bw[p_level] * p_cores)
    f["shared_bw_util"] = (np.where(level >= shared_from, demand, 0.0)
                           + np.where(p_level >= shared_from, p_demand, 0.0)) / bw[outer]
    f["ws_ratio"] = np.log2((ws + p_ws) / memory.last_cache)
    f["threads_per_core"] = threads / cores
    f["partner_threads_per_core"] = p_threads / p_cores
    f["oversubscription"] = np.where(shared > 0, (threads + p_threads) / total_cores, 1.0)
    f["overlap"] = np.log(p_alone / alone)
    return f[list(CONTENTION_FEATURES)]
