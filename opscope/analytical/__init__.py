"""The analytical model: roofline, PE-array utilisation, sparsity, attention variants, data movement.

``estimate(op, spec, options=None, tiles=None) -> Estimate`` for one operator;
``analyze_operators(ops, spec, options)`` and ``analyze_model(model, target, ...)`` for whole models
(a DataFrame with a ``TOTAL`` row).  See docs/analytical.md.
"""

from opscope.analytical.frame import analyze_model, analyze_operators, load_operators
from opscope.analytical.model import Estimate, estimate
from opscope.analytical.options import ATTENTION_METHODS, AnalysisOptions, load_densities
from opscope.analytical.pe_array import pe_utilization

__all__ = [
    "ATTENTION_METHODS", "AnalysisOptions", "Estimate", "analyze_model", "analyze_operators", "estimate",
    "load_densities", "load_operators", "pe_utilization",
]
