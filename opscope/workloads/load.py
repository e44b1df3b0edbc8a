"""``load_model``: any model source to a ``Workload`` of deduplicated operators."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opscope.errors import OpscopeError, WorkloadError
from opscope.workloads import cache, zoo
from opscope.workloads.operator import Operator


@dataclass(frozen=True)
class Workload:
    """A model as opscope sees it.

    ``operators`` are deduplicated by key, each with its count in the model.  ``ir_module`` is
    the fused Relax module (parameters as inputs after ``main``'s ``num_input`` user inputs,
    weight preprocessing lifted into ``main_transform_params``), used to build the whole model;
    None for layer tables.  ``params`` are the values the model was built with (batch size,
    dtype, zoo parameters such as ``image_size`` or ``seq_len``, the ONNX file's path).
    """

    name: str
    operators: tuple[Operator, ...]
    ir_module: Any = field(default=None, compare=False, repr=False)
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def total_flops(self) -> int:
        return sum(op.flops * op.count for op in self.operators)

    @property
    def kernel_count(self) -> int:
        """Kernel launches per inference (operators weighted by their counts)."""
        return sum(op.count for op in self.operators)


def list_models() -> list[str]:
    """The names of the built-in zoo models."""
    return zoo.list_models()


def load_model(
    model: Any,
    batch_size: int = 1,
    dtype: str = "float32",
    *,
    example_inputs: tuple[Any, ...] | None = None,
    name: str | None = None,
    use_cache: bool = True,
    with_tir: bool = True,
    **params: int,
) -> Workload:
    """Turn a model into a ``Workload``.

    ``model`` is a zoo name (``list_models()``; ``params`` set its parameters, e.g.
    ``image_size=112`` or ``seq_len=64``), a path to an ``.onnx`` file, a path to a layer-table
    ``.csv`` file, or a ``torch.nn.Module`` (then ``example_inputs``, a tuple of tensors, is
    required; its batch size and dtype are those of the inputs and module).  ``name`` overrides
    the workload's name.
    Zoo models and ONNX files are cached on disk (see ``opscope.workloads.cache``).
    ``with_tir=False`` allows a cached model to come back without PrimFuncs and Relax module and
    without importing TVM (fast; for analytical use); on a cache miss they are there anyway.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OpscopeError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(model, (str, Path)):
        text = str(model)
        suffix = Path(text).suffix.lower()
        if suffix == ".onnx":
            _no_params(text, params)
            return _load_onnx(Path(text), batch_size, dtype, name, use_cache, with_tir)
        if suffix == ".csv":
            _no_params(text, params)
            return _load_table(Path(text), batch_size, dtype, name)
        if text in zoo.ZOO:
            return _load_zoo(text, batch_size, dtype, params, name, use_cache, with_tir)
        raise OpscopeError(
            f"unknown model {text!r}: not a zoo model ({', '.join(zoo.list_models())}), .onnx or .csv file"
        )
    if _is_torch_module(model):
        _no_params(type(model).__name__, params)
        if example_inputs is None:
            raise OpscopeError("a torch.nn.Module needs example_inputs=(tensor, ...)")
        label = name or type(model).__name__.lower()
        batch_size = _example_batch(example_inputs, batch_size)
        start = time.perf_counter()
        mod = _relax_import().import_torch(model, tuple(example_inputs), label)
        meta = {"batch_size": batch_size, "source": "torch", "import_s": round(time.perf_counter() - start, 3)}
        return _finish(label, mod, batch_size, meta)
    raise OpscopeError(f"cannot load a model from {type(model).__name__}: give a zoo name, a path or a torch.nn.Module")


def _example_batch(example_inputs: Any, batch_size: int) -> int:
    """The batch size of a torch module's example inputs (their leading dimension)."""
    first = example_inputs[0] if isinstance(example_inputs, (tuple, list)) and example_inputs else None
    shape = tuple(getattr(first, "shape", ()))
    if not shape:
        return batch_size
    if batch_size not in (1, shape[0]):
        raise OpscopeError(f"batch_size={batch_size} does not match the example inputs' leading dimension {shape[0]}")
    return int(shape[0])


def _relax_import() -> Any:
    from opscope.workloads import relax_import

    return relax_import


def _is_torch_module(obj: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(obj, torch.nn.Module)


def _no_params(what: str, params: dict[str, Any]) -> None:
    if params:
        raise OpscopeError(f"{what}: model parameters {', '.join(sorted(params))} apply only to zoo models")


def _load_zoo(name: str, batch_size: int, dtype: str, params: dict[str, Any], label: str | None, use_cache: bool,
              with_tir: bool) -> Workload:
    entry = zoo.zoo_model(name)
    full = entry.resolve(params)
    if dtype not in zoo.ZOO_DTYPES:
        raise OpscopeError(f"zoo models are built in {', '.join(zoo.ZOO_DTYPES)}; got dtype {dtype!r}")
    meta = {"batch_size": batch_size, "dtype": dtype, **full}
    key = cache.cache_key({"zoo": name, "params": full}, batch_size, dtype)

    def build() -> Any:
        module, inputs = zoo.build(name, batch_size, dtype, full)
        return _relax_import().import_torch(module, inputs, name, copy_module=False)

    return _cached(key, label or name, meta, build, batch_size, use_cache, with_tir)


def _load_onnx(path: Path, batch_size: int, dtype: str, label: str | None, use_cache: bool,
               with_tir: bool) -> Workload:
    if not path.is_file():
        raise WorkloadError(f"{path}: no such file")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    meta = {"batch_size": batch_size, "dtype": dtype, "path": str(path)}
    key = cache.cache_key({"onnx": digest}, batch_size, dtype)

    def build() -> Any:
        mod = _relax_import().import_onnx(path, batch_size)
        _check_dtype(path, mod, dtype)
        return mod

    return _cached(key, label or path.stem, meta, build, batch_size, use_cache, with_tir)


def _check_dtype(path: Path, mod: Any, dtype: str) -> None:
    main = mod["main"]
    n = int(main.attrs["num_input"]) if "num_input" in main.attrs else len(main.params)
    found = {str(p.ty.dtype) for p in main.params[:n] if hasattr(p.ty, "dtype") and "float" in str(p.ty.dtype)}
    if found and dtype not in found:
        raise WorkloadError(f"{path}: the model's inputs are {', '.join(sorted(found))}, not {dtype}; "
                            "an ONNX file keeps its own dtypes")


def _load_table(path: Path, batch_size: int, dtype: str, label: str | None) -> Workload:
    try:
        from opscope.workloads.layer_table import load_layer_table
    except ImportError as exc:
        raise OpscopeError(f"{path}: layer tables are not supported in this build ({exc})") from None
    ops = _dedup(load_layer_table(path, batch_size, dtype))
    return Workload(label or path.stem, ops, None, {"batch_size": batch_size, "dtype": dtype, "path": str(path)})


def _dedup(ops: Any) -> tuple[Operator, ...]:
    """Merge operators with the same key (a table's repeated layers), summing their counts."""
    merged: dict[str, Operator] = {}
    for op in ops:
        first = merged.get(op.key)
        merged[op.key] = op if first is None else first.with_count(first.count + op.count)
    return tuple(merged.values())


def _cached(key: str, label: str, meta: dict[str, Any], build: Any, batch_size: int, use_cache: bool,
            with_tir: bool) -> Workload:
    hit = cache.load(key, with_tir) if use_cache else None
    if hit is not None:
        stored, ops, mod = hit
        if stored.get("name") != label:
            ops = tuple(_rename_model(op, label) for op in ops)
        return Workload(label, ops, mod, dict(stored.get("params", meta)))
    start = time.perf_counter()
    mod = build()
    meta = dict(meta, import_s=round(time.perf_counter() - start, 3))
    work = _finish(label, mod, batch_size, meta)
    if use_cache:
        cache.store(key, {"name": label, "params": work.params}, work.operators, work.ir_module)
    return work


def _finish(label: str, mod: Any, batch_size: int, meta: dict[str, Any]) -> Workload:
    from opscope.workloads.extract import extract_operators, relax_op_attrs

    start = time.perf_counter()
    relax = _relax_import()
    attrs = relax_op_attrs(mod)
    fused = relax.fuse(mod)
    ops = extract_operators(fused, label, batch_size, attrs)
    meta = dict(meta)
    meta["extract_s"] = round(time.perf_counter() - start, 3)
    return Workload(label, ops, fused, meta)


def _rename_model(op: Operator, label: str) -> Operator:
    from dataclasses import replace

    return replace(op, models=(label,))
