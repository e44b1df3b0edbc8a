"""Bring a model into TVM Relax and fuse it into one TIR PrimFunc per fused operator.

Two front doors: a ``torch.nn.Module`` (through ``torch.export`` and
``relax.frontend.torch.from_exported_program``) and an ONNX file (``relax.frontend.onnx.from_onnx``).
Both keep the model's parameters as function inputs (after the ``num_input`` user inputs), so
that weights are never embedded as constants: a 138 M-parameter VGG-16 stays cheap, and an
operator's weight tensors can be told apart from its activations.

``fuse`` then runs the passes of TVM's own build, up to the point where each kernel is one
PrimFunc:

1. ``DecomposeOpsForInference`` (batch norm becomes scale/shift), ``CanonicalizeBindings`` and
   ``DeadCodeElimination`` (drop the tuple batch norm leaves behind, which otherwise blocks the
   fusion of the following ReLU);
2. ``LiftTransformParams``: computations on weights only (transposed FC weights, reshaped
   biases, ``sqrt(var + eps)``) move to ``main_transform_params``, which a deployment runs once;
3. ``LegalizeOps``, ``AnnotateTIROpPattern``, ``FuseOps``, ``FuseTIR``;
4. ``RewriteDataflowReshape`` and ``DeadCodeElimination``: reshapes become views, not kernels.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from opscope.errors import WorkloadError


def import_torch(module: Any, example_inputs: tuple[Any, ...], name: str = "model", copy_module: bool = True) -> Any:
    """Relax IRModule of a torch module, parameters (and buffers) as inputs, arrays dropped."""
    import torch
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    if not isinstance(module, torch.nn.Module):
        raise WorkloadError(f"{name}: expected a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(example_inputs, tuple) or not example_inputs:
        raise WorkloadError(f"{name}: example_inputs must be a non-empty tuple of tensors")
    if copy_module:
        module = copy.deepcopy(module)
    module = module.eval()
    _buffers_to_parameters(module)
    try:
        with torch.no_grad():
            program = torch.export.export(module, example_inputs)
    except Exception as exc:  # torch raises many unrelated types here; all mean "cannot trace"
        raise WorkloadError(f"{name}: torch.export failed: {type(exc).__name__}: {_first_line(exc)}") from None
    try:
        mod = from_exported_program(program, keep_params_as_input=True, custom_convert_map=_dtype_fixes(module))
    except Exception as exc:  # the frontend raises bare AssertionError/KeyError/ValueError
        raise WorkloadError(f"{name}: TVM's torch importer failed: {type(exc).__name__}: {_first_line(exc)}") from None
    mod, _ = relax.frontend.detach_params(mod)
    return mod


#: torch ops whose TVM 0.27 converter produces float32 whatever its inputs (-> importer method)
_FLOAT32_CONVS = {
    "conv1d.default": "_conv1d", "conv2d.default": "_conv2d", "conv3d.default": "_conv3d",
    "convolution.default": "_convolution", "conv_transpose1d.default": "_conv_transpose1d",
    "conv_transpose2d.input": "_conv_transpose2d",
}
_FLOAT32_MATMULS = ("matmul.default", "mm.default", "bmm.default")


def _dtype_fixes(module: Any) -> dict[str, Any] | None:
    """Converters that keep a float16/bfloat16 model in its dtype (None for float32 models).

    TVM 0.27's torch frontend gives convolutions and matmuls a float32 result whatever their
    inputs, so the next op of a half-precision model (a bias add, a batch norm) fails on mixed
    dtypes.  These converters keep the float32 accumulation and cast the result back to the
    dtype torch says the op has, which is what half-precision kernels do.
    """
    dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()}
    if not dtypes or {str(d) for d in dtypes} == {"torch.float32"}:
        return None
    fixes: dict[str, Any] = {name: _cast_back(method) for name, method in _FLOAT32_CONVS.items()}
    fixes.update({name: _cast_back(None) for name in _FLOAT32_MATMULS})
    fixes["addmm.default"] = _addmm_keeping_dtype
    return fixes


def _cast_back(method: str | None) -> Any:
    def convert(node: Any, importer: Any) -> Any:
        import operator
        from functools import partial

        from tvm import relax

        if method is None:
            out = importer._binary_op(partial(relax.op.matmul, out_dtype="float32"), operator.matmul)(node)
        else:
            out = getattr(importer, method)(node)
        want = str(node.meta["val"].dtype).replace("torch.", "")
        if str(out.ty.dtype) != want:
            out = importer.block_builder.emit(relax.op.astype(out, want))
        return out

    return convert


def _addmm_keeping_dtype(node: Any, importer: Any) -> Any:
    """``addmm`` (a 2-D ``nn.Linear``) in the operands' dtype (see ``_dtype_fixes``)."""
    from tvm import relax

    bias, a, b = (importer.env[arg] for arg in node.args[:3])
    alpha, beta = node.kwargs.get("alpha", 1), node.kwargs.get("beta", 1)
    dtype = str(a.ty.dtype)
    bb = importer.block_builder
    out = bb.emit(relax.op.matmul(a, b, out_dtype=dtype))
    if alpha != 1:
        out = bb.emit(relax.op.multiply(out, relax.const(alpha, dtype)))
    if beta == 0:
        return out
    if beta != 1:
        bias = bb.emit(relax.op.multiply(bias, relax.const(beta, dtype)))
    return bb.emit(relax.op.add(bias, out))


def _buffers_to_parameters(module: Any) -> None:
    """Turn buffers (batch-norm statistics, masks) into frozen parameters.

    The torch importer binds buffers as constants; constants get folded or stay in the graph as
    weight-only computations, while parameters are kept as inputs and their preprocessing is
    lifted out by ``LiftTransformParams``.
    """
    import torch

    for sub in module.modules():
        for key, value in list(sub._buffers.items()):
            if value is None:
                continue
            del sub._buffers[key]
            sub.register_parameter(key, torch.nn.Parameter(value, requires_grad=False))


def onnx_input_shapes(graph: Any, batch_size: int, path: str) -> dict[str, list[int]]:
    """Input shapes of an ONNX graph, with a symbolic leading dimension set to ``batch_size``."""
    initializers = {t.name for t in graph.initializer}
    shapes: dict[str, list[int]] = {}
    for inp in graph.input:
        if inp.name in initializers:
            continue
        dims: list[int] = []
        for axis, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif axis == 0:
                dims.append(batch_size)
            else:
                raise WorkloadError(
                    f"{path}: input {inp.name!r} has a symbolic dimension {d.dim_param or '?'} at axis {axis}; "
                    "only the batch axis (0) may be symbolic"
                )
        shapes[inp.name] = dims
    return shapes


def unsupported_onnx_ops(graph: Any) -> list[tuple[str, str]]:
    """(op_type, node name) of every node TVM's ONNX frontend has no converter for."""
    from tvm.relax.frontend.onnx import onnx_frontend

    known = set(onnx_frontend._get_convert_map()) | {"If", "Constant"}
    return [(n.op_type, n.name or f"#{i}") for i, n in enumerate(graph.node) if n.op_type not in known]


def import_onnx(path: str | Path, batch_size: int = 1) -> Any:
    """Relax IRModule of an ONNX file, initializers as inputs, arrays dropped."""
    import onnx
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    path = str(path)
    try:
        model = onnx.load(path)
    except FileNotFoundError:
        raise WorkloadError(f"{path}: no such file") from None
    except Exception as exc:  # protobuf DecodeError and friends
        raise WorkloadError(f"{path}: not a readable ONNX model: {_first_line(exc)}") from None
    missing = unsupported_onnx_ops(model.graph)
    if missing:
        ops = sorted({op for op, _ in missing})
        where = ", ".join(f"{op} (node {node})" for op, node in missing[:5])
        raise WorkloadError(
            f"{path}: TVM's ONNX importer does not support operator(s) {', '.join(ops)}: {where}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    shapes = onnx_input_shapes(model.graph, batch_size, path)
    try:
        mod = from_onnx(model, shape_dict=shapes, keep_params_in_input=True)
    except Exception as exc:  # converter errors come as NotImplementedError, ValueError, TVMError...
        raise WorkloadError(f"{path}: TVM's ONNX importer failed: {type(exc).__name__}: {_first_line(exc)}") from None
    if "params" in mod["main"].attrs:
        mod, _ = relax.frontend.detach_params(mod)
    return mod


def fuse(mod: Any) -> Any:
    """The fused Relax module (see the module docstring for the passes and why)."""
    import tvm
    from tvm import relax

    t = relax.transform
    passes = [t.DecomposeOpsForInference(), t.CanonicalizeBindings(), t.DeadCodeElimination()]
    if "num_input" in (mod["main"].attrs or {}):
        passes.append(t.LiftTransformParams())
    passes += [
        t.LegalizeOps(), t.AnnotateTIROpPattern(), t.FuseOps(), t.FuseTIR(),
        t.RewriteDataflowReshape(), t.DeadCodeElimination(),
    ]
    try:
        return tvm.transform.Sequential(passes)(mod)
    except (RuntimeError, ValueError, TypeError) as exc:  # TVM's InternalError is a RuntimeError
        raise WorkloadError(f"TVM could not lower the model to fused operators: {_last_line(exc)}") from None


def _last_line(exc: BaseException) -> str:
    """The message of a TVM error: its last line (the lines before are TVM's traceback)."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
