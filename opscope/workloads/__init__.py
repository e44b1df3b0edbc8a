"""Models to operators: the zoo, ONNX files, torch modules and layer tables.

``load_model`` turns any of them into a ``Workload``: the model's deduplicated ``Operator``s
(each with its count and, for models imported through TVM Relax, its TIR PrimFunc) and the fused
Relax module.  Nothing here imports torch or TVM until a model is loaded.
"""

from __future__ import annotations

from opscope.workloads.load import Workload, list_models, load_model
from opscope.workloads.operator import KINDS, GemmView, Operator, TensorInfo

__all__ = ["KINDS", "GemmView", "Operator", "TensorInfo", "Workload", "list_models", "load_model"]
