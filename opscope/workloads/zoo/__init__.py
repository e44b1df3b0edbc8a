"""The built-in model zoo: models defined in code with random weights, no downloads.

Each entry is a ``ZooModel``: a builder of a plain ``torch.nn.Module``, its parameters with
their defaults, and the shape of its example input.  Listing the zoo imports neither torch nor
TVM; ``build`` constructs the module cheaply (on the meta device, then uninitialised CPU storage
filled with a repeated block of small random numbers), so that even VGG-16's 138 M parameters
take well under a second to make.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opscope.errors import OpscopeError, unknown_name

#: dtypes a zoo model can be built in.
ZOO_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: name, one-line description, parameters with defaults, builder."""

    name: str
    description: str
    #: (parameter, default) pairs; every parameter is a positive int.
    defaults: tuple[tuple[str, int], ...]
    #: module path and function building the torch module from the non-input parameters.
    builder: str
    #: parameters that shape the input rather than the module.
    input_params: tuple[str, ...]
    input_shape: Callable[[int, dict[str, int]], tuple[int, ...]]

    def resolve(self, params: dict[str, Any]) -> dict[str, int]:
        """Defaults overlaid with ``params``; unknown or non-positive values are errors."""
        known = dict(self.defaults)
        for key, value in params.items():
            if key not in known:
                raise OpscopeError(
                    f"model {self.name!r} has no parameter {key!r}; its parameters: "
                    + ", ".join(f"{k}={v}" for k, v in self.defaults)
                )
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OpscopeError(f"model {self.name!r}: parameter {key} must be a positive int, got {value!r}")
            known[key] = value
        return known


def _image(batch: int, p: dict[str, int]) -> tuple[int, ...]:
    return (batch, 3, p["image_size"], p["image_size"])


def _tokens(batch: int, p: dict[str, int]) -> tuple[int, ...]:
    return (batch, p["seq_len"], p["hidden"])


def _flat(batch: int, p: dict[str, int]) -> tuple[int, ...]:
    return (batch, p["in_features"])


_CNN = "opscope.workloads.zoo.cnn"
_TRF = "opscope.workloads.zoo.transformer"
_IMG = (("image_size", 224), ("num_classes", 1000))
_BERT = (("seq_len", 128), ("heads", 12), ("hidden", 768), ("ff", 3072), ("layers", 12))
_GPT2 = (("seq_len", 128), ("heads", 12), ("hidden", 768), ("ff", 3072), ("layers", 1))

ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel("alexnet", "AlexNet, 5 conv + 3 FC", _IMG, f"{_CNN}:alexnet", ("image_size",), _image),
        ZooModel("vgg16", "VGG-16 (config D), 13 conv + 3 FC, 138 M params", _IMG, f"{_CNN}:vgg16",
                 ("image_size",), _image),
        ZooModel("resnet18", "ResNet-18, basic blocks", _IMG, f"{_CNN}:resnet18", ("image_size",), _image),
        ZooModel("resnet50", "ResNet-50 v1.5, bottleneck blocks", _IMG, f"{_CNN}:resnet50", ("image_size",), _image),
        ZooModel("mobilenet_v2", "MobileNetV2 1.0, inverted residuals, depthwise convs", _IMG,
                 f"{_CNN}:mobilenet_v2", ("image_size",), _image),
        ZooModel("mlp", "multi-layer perceptron (ReLU)",
                 (("in_features", 784), ("hidden", 1024), ("layers", 3), ("num_classes", 10)),
                 f"{_CNN}:mlp", (), _flat),
        ZooModel("bert", "BERT-base encoder (post-LN), embedded input", _BERT, f"{_TRF}:bert", (), _tokens),
        ZooModel("gpt2", "GPT-2 style decoder block(s), causal attention, embedded input", _GPT2,
                 f"{_TRF}:gpt2", (), _tokens),
    )
}


def list_models() -> list[str]:
    """Names of the zoo models, sorted."""
    return sorted(ZOO)


def zoo_model(name: str) -> ZooModel:
    try:
        return ZOO[name]
    except KeyError:
        raise unknown_name("model", name, list(ZOO)) from None


def build(name: str, batch_size: int, dtype: str, params: dict[str, int]) -> tuple[Any, tuple[Any, ...]]:
    """The torch module (eval mode, random weights) and its example inputs."""
    import importlib

    import torch

    entry = zoo_model(name)
    full = entry.resolve(params)
    if dtype not in ZOO_DTYPES:
        raise OpscopeError(f"zoo models are built in {', '.join(ZOO_DTYPES)}; got dtype {dtype!r}")
    module_name, func_name = entry.builder.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    kwargs = {k: v for k, v in full.items() if k not in entry.input_params}
    try:
        with torch.device("meta"):
            module = func(**kwargs)
    except ValueError as exc:
        raise OpscopeError(f"model {name!r}: {exc}") from None
    module = _materialise(module).to(getattr(torch, dtype)).eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(entry.input_shape(batch_size, full), generator=gen).to(getattr(torch, dtype))
    return module, (example,)


#: Weights are a block of this many normal(0, 0.02) numbers repeated: drawing 138 M fresh normals
#: costs seconds, and a weight's values do not change an operator's latency.
_RANDOM_BLOCK = 1 << 16


def _fill_tiled(flat: Any, block: Any) -> None:
    n, b = flat.numel(), block.numel()
    whole = n // b
    if whole:
        flat[: whole * b].view(whole, b).copy_(block.expand(whole, b))
    flat[whole * b :].copy_(block[: n - whole * b])


def _materialise(module: Any) -> Any:
    """Give a meta-device module CPU storage: small random weights, standard buffer values."""
    import torch

    module = module.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    block = torch.randn(_RANDOM_BLOCK, generator=gen) * 0.02
    with torch.no_grad():
        for p in module.parameters():
            _fill_tiled(p.view(-1), block)
        for sub in module.modules():
            if hasattr(sub, "reset_running_stats"):
                sub.reset_running_stats()
            if hasattr(sub, "mask"):
                n = sub.mask.shape[0]
                sub.mask.copy_(torch.tril(torch.ones(n, n, dtype=torch.bool)))
    return module
