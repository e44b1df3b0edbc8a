"""Reports: the comparison of analytical, measured and predicted latency, its figures and HTML.

``compare(model, target, store, predictor=None, out=None, ...) -> ComparisonResult``; the roofline
figure is ``opscope.report.roofline.plot_roofline``.  Imported lazily: TVM and matplotlib load only
when a comparison runs.
"""

from __future__ import annotations

from opscope.lazy import lazy_exports

_API = {
    "compare": "opscope.report.comparison",
    "ComparisonResult": "opscope.report.comparison",
    "WholeModelResult": "opscope.report.whole_model",
    "plot_roofline": "opscope.report.roofline",
}

__all__ = list(_API)


__getattr__ = lazy_exports(__name__, _API)
