"""Reports: the comparison of analytical, measured and predicted latency, its figures and HTML.

``compare(model, target, store, predictor=None, out=None, ...) -> ComparisonResult``; the roofline
figure is ``opscope.report.roofline.plot_roofline``.  Imported lazily: TVM and matplotlib load only
when a comparison runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "compare": "opscope.report.comparison",
    "ComparisonResult": "opscope.report.comparison",
    "WholeModelResult": "opscope.report.whole_model",
    "plot_roofline": "opscope.report.roofline",
}

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'opscope.report' has no attribute {name!r}")
