"""opscope: how fast a DNN operator runs on a device, how fast it should, and how well it can be predicted.

The public Python API is imported lazily so that ``import opscope`` stays fast and does not load
TVM or torch until they are needed.
"""

from __future__ import annotations

from opscope.lazy import lazy_exports

__version__ = "0.1.0"

_API = {
    "analyze_model": "opscope.analytical",
    "load_target": "opscope.targets",
    "load_model": "opscope.workloads",
    "list_models": "opscope.workloads",
    "list_targets": "opscope.targets",
    "collect": "opscope.collector",
    "load_dataframe": "opscope.store",
    "compare": "opscope.report",
}

__all__ = ["__version__", *_API]


__getattr__ = lazy_exports(__name__, _API)
