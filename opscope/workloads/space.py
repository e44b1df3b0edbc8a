"""Operators generated from a space of shapes, for predictor training data.

``opscope collect --space default`` (or ``conv2d:200,dense:150,...``) measures operators drawn from
distributions of real layers instead of the operators of a few models.  A predictor trained on the
operators of four models has seen about twenty shapes; one trained on a space has seen hundreds, spread
the way real layers are (nn-Meter's kernel-level sampling).

The distributions are fitted to the zoo's layers (every conv, linear layer and attention shape of the
zoo models at their usual sizes) and to the ONNX files given: half the draws perturb one real layer
(channels and spatial size scaled by up to 2x either way), half combine the layers' marginals (channels,
sizes, kernels, strides, GEMM m/n/k, attention heads and lengths) independently.  Each operator carries a
fused epilogue of the kinds real models have (bias, batch norm, ReLU, a residual add).

Every operator is built as a small Relax function (conv2d + batch norm + relu, matmul + bias ...) and
goes through the same legalize / fuse / extract steps as an imported model, so it has the same kind of
TIR, key, features and store rows.  Draws are seeded: the same space and seed give the same operators, so
an interrupted collection resumes where it stopped.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from opscope.errors import OpscopeError

#: the kinds a space can hold
SPACE_KINDS = ("conv2d", "depthwise_conv2d", "dense", "batch_matmul", "pool", "softmax")
#: ``--space default``: the documented space for training a machine's own predictor (420 operators)
DEFAULT_SPACE = (("conv2d", 160), ("depthwise_conv2d", 40), ("dense", 120), ("batch_matmul", 60),
                 ("pool", 20), ("softmax", 20))
#: the model name generated operators carry (leave-one-model-out never holds them out)
SPACE_MODEL = "space"
#: operators above this many GFLOP are drawn again: their untuned default schedule would take seconds
MAX_GFLOP = 0.5
MIN_FLOPS = 1e5
#: operators whose tensors together exceed this are drawn again (a VGG-sized FC weight is 400 MB)
MAX_BYTES = 48e6
#: bands a kind can be drawn in (``dense/large:30``): the default band above, four at its edges, two
#: of convolutions as imported models have them (``torch``, ``lowres``), one of newer activations
#: (``act``) and one of patch embeddings (``patch``)
BANDS = ("nice", "small", "tiny", "large", "torch", "lowres", "act", "patch")
#: the ``small`` band: operators of MIN_FLOPS / 100 up to MIN_FLOPS (a classifier's last layer, 20 kFLOP);
#: its draws are shrunk until they are under MIN_FLOPS, so that most land in its upper half (14-98 kFLOP)
SMALL_MIN_FLOPS = 1e3
#: the ``tiny`` band: 200 FLOP up to 10 kFLOP, each draw shrunk until it is under a bound drawn
#: log-uniformly in 400 FLOP-10 kFLOP (twice the floor, so that the last halving mostly stays in the band;
#: a squeeze-and-excite layer over 64 channels is 512 FLOP, a 10-way head over 512 features 10 kFLOP)
TINY_FLOPS = (2e2, 1e4)
#: in the ``tiny`` band a GEMM's ``n`` and ``k`` may shrink to this (elsewhere 16): a squeeze-and-excite
#: layer over 48 channels reduces them to 3, a click-through head to 1
TINY_GEMM_FLOOR = 1
#: the ``large`` band (dense only): batch 1-8 over weights of MAX_BYTES up to this (VGG's 411 MB FC layer)
LARGE_MAX_BYTES = 480e6
#: ``--space edges``: where the default space does not reach.  ``nice`` draws like the default space but
#: rounds channels, GEMM dimensions and spatial sizes to the values real layers take (powers of two,
#: 3 or 7 times one: 64, 96, 768, 1024, 14, 28); the default space's multiples of 8 or 16 (1264, 704) give
#: other tile divisors and other strides between rows.  ``small`` and ``large`` reach
#: below the default space's FLOPs and above its bytes.  168 operators.
EDGES_SPACE = (("conv2d/nice", 40), ("depthwise_conv2d/nice", 12), ("dense/nice", 30), ("batch_matmul/nice", 10),
               ("pool/nice", 6), ("softmax/nice", 4), ("conv2d/small", 10), ("depthwise_conv2d/small", 4),
               ("dense/small", 10), ("batch_matmul/small", 4), ("pool/small", 4), ("softmax/small", 4),
               ("dense/large", 30))
#: the ``torch`` band (convolutions only): drawn like ``nice``, with the epilogue a PyTorch model imports
#: as: batch norm unfolded into subtract (mean), divide (sqrt(var + eps)), multiply (gamma), add (beta),
#: then ReLU, a residual add and ReLU, ReLU6 (``clip``) or nothing; the default space folds batch norm
#: into one multiply and add, which no imported model has
TORCH_EPILOGUES = {"conv2d": ("bnu_relu", "bnu_add_relu", "bnu", "bnu_clip"),
                   "depthwise_conv2d": ("bnu_clip", "bnu_relu")}
#: the ``lowres`` band (convolutions only): a ``torch`` draw at the resolution a model is often run at
#: instead of 224 px: its spatial size scaled by 64/224 to 1 (log-uniform), down to 2 x 2, where the
#: other bands stop at 4 x 4 (resnet18 at 64 px ends in 2 x 2 layers of 512 channels)
LOWRES = (64 / 224, 1.0)
LOWRES_MIN_SIZE = 2
#: the ``act`` band (convolutions and dense): drawn like ``nice``, with the activations of newer models
#: (SiLU, which calls a sigmoid per element, and exact GELU, an erf) after batch norm or bias, and the
#: depthwise kernels of MobileNetV3 / EfficientNet / ConvNeXt (3, 5 or 7); the other bands draw ReLU,
#: ReLU6 or nothing and the zoo's kernels
ACT_EPILOGUES = {"conv2d": ("bn_silu", "bnu_silu", "bn_gelu", "bias_gelu"),
                 "depthwise_conv2d": ("bn_silu", "bnu_silu", "bn_gelu"),
                 "dense": ("bias_gelu", "bias_silu")}
ACT_DEPTHWISE_KERNELS = (3, 5, 7)
#: the ``patch`` band (conv2d only): the patch embeddings and downsampling layers of vision transformers,
#: MLP-Mixers, Swin and ConvNeXt, whose kernel equals their stride (no padding, no overlap): 16 x 16 or
#: 14 x 14 patches of an image, 4 x 4 (Swin's and ConvNeXt's stems), 2 x 2 (ConvNeXt's downsampling over
#: a feature map); the other bands draw strides 1 and 2 under kernels of 1, 3, 5 or 7
PATCH_SIZES = (2, 4, 8, 14, 16)
PATCH_EPILOGUES = ("bias", "bias", "bn")
NAMED_SPACES = {"default": DEFAULT_SPACE, "edges": EDGES_SPACE}


@dataclass(frozen=True)
class Layer:
    """One drawn layer: its kind and shape parameters (sorted pairs), and the epilogue fused after it."""

    kind: str
    params: tuple[tuple[str, int], ...]
    epilogue: str = ""

    def get(self, key: str) -> int:
        return dict(self.params)[key]

    @property
    def label(self) -> str:
        p = "_".join(f"{k}{v}" for k, v in self.params)
        return f"{self.kind}_{p}" + (f"_{self.epilogue}" if self.epilogue else "")

    @classmethod
    def from_label(cls, label: str) -> Layer:
        """The layer a ``label`` names (``conv2d_c64_h56_k64_r3_stride1_w56_bn_relu``)."""
        kind = max((k for k in SPACE_KINDS if label.startswith(k + "_")), key=len, default=None)
        if kind is None:
            raise OpscopeError(f"space: {label!r} does not name a layer of a known kind")
        params, epilogue = [], []
        for token in label[len(kind) + 1:].split("_"):
            m = re.fullmatch(r"([a-z]+)(\d+)", token)
            if m:
                params.append((m.group(1), int(m.group(2))))
            elif token:
                epilogue.append(token)
        return cls(kind, tuple(sorted(params)), "_".join(epilogue))

    @property
    def flops(self) -> float:
        d = dict(self.params)
        if self.kind in ("conv2d", "depthwise_conv2d"):
            oh, ow = _out(d["h"], d["r"], d["stride"]), _out(d["w"], d["r"], d["stride"])
            cin = 1 if self.kind == "depthwise_conv2d" else d["c"]
            return 2.0 * d["k"] * cin * oh * ow * d["r"] * d["r"]
        if self.kind == "dense":
            return 2.0 * d["m"] * d["n"] * d["k"]
        if self.kind == "batch_matmul":
            return 2.0 * d["b"] * d["m"] * d["n"] * d["k"]
        if self.kind == "pool":
            return float(d["c"] * _out(d["h"], d["r"], d["stride"]) ** 2 * d["r"] ** 2)
        return 5.0 * d["b"] * d["m"] * d["n"]  # softmax: about 5 FLOP per element

    @property
    def elements(self) -> int:
        """Elements of the operator's main inputs, weights and output (float32: x4 bytes)."""
        d = dict(self.params)
        if self.kind in ("conv2d", "depthwise_conv2d"):
            oh = _out(d["h"], d["r"], d["stride"])
            cin = 1 if self.kind == "depthwise_conv2d" else d["c"]
            return d["c"] * d["h"] * d["w"] + d["k"] * cin * d["r"] ** 2 + d["k"] * oh * oh
        if self.kind == "dense":
            return d["m"] * d["k"] + d["n"] * d["k"] + d["m"] * d["n"]
        if self.kind == "batch_matmul":
            return d["b"] * (d["m"] * d["k"] + d["k"] * d["n"] + d["m"] * d["n"])
        if self.kind == "pool":
            return d["c"] * d["h"] ** 2 * 2
        return 2 * d["b"] * d["m"] * d["n"]


def _pad(kernel: int) -> int:
    """'same'-style padding: k // 2 for odd kernels, none for even ones (a 2x2 pool)."""
    return kernel // 2 if kernel % 2 else 0


def _out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * _pad(kernel) - kernel) // stride + 1


def parse_space(text: str) -> tuple[tuple[str, int], ...]:
    """``"default"``, ``"edges"`` or ``"conv2d:200,dense/large:30"`` (or a mix) -> ((kind[/band], count), ...).

    A bad token is named.
    """
    text = (text or "").strip()
    out: dict[str, int] = {}
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if token in NAMED_SPACES:
            for kind, n in NAMED_SPACES[token]:
                out[kind] = out.get(kind, 0) + n
            continue
        kind, sep, count = token.partition(":")
        kind = kind.strip()
        base, slash, band = kind.partition("/")
        if base not in SPACE_KINDS:
            raise OpscopeError(f"--space: unknown kind {base!r} in {token!r}; kinds: {', '.join(SPACE_KINDS)} "
                               f"(or {' / '.join(repr(n) for n in NAMED_SPACES)})")
        if slash and band not in BANDS:
            raise OpscopeError(f"--space: unknown band {band!r} in {token!r}; bands: {', '.join(BANDS)}")
        if band == "large" and base != "dense":
            raise OpscopeError(f"--space: {token!r}: the 'large' band is drawn for dense only")
        if band in ("torch", "lowres") and base not in TORCH_EPILOGUES:
            raise OpscopeError(f"--space: {token!r}: the {band!r} band is drawn for {' and '.join(TORCH_EPILOGUES)} "
                               "only")
        if band == "patch" and base != "conv2d":
            raise OpscopeError(f"--space: {token!r}: the 'patch' band is drawn for conv2d only")
        if band == "act" and base not in ACT_EPILOGUES:
            raise OpscopeError(f"--space: {token!r}: the 'act' band is drawn for {', '.join(ACT_EPILOGUES)} only")
        try:
            n = int(count) if sep else -1
        except ValueError:
            n = -1
        if n < 1:
            raise OpscopeError(f"--space: {token!r} needs a positive count, as in '{kind}:100'")
        out[kind] = out.get(kind, 0) + n
    if not out:
        raise OpscopeError("--space: give 'default', 'edges' or kind:count pairs, e.g. conv2d:200,dense:150")
    return tuple(out.items())


# -- the real layers the distributions are fitted to --------------------------------------------------
#: (model, params) whose layers make the reference set: the zoo at its usual sizes
_REFERENCE_MODELS = (
    ("resnet18", {"image_size": 224}), ("resnet50", {"image_size": 224}), ("mobilenet_v2", {"image_size": 224}),
    ("vgg16", {"image_size": 224}), ("alexnet", {"image_size": 224}), ("mlp", {}),
    ("bert", {"seq_len": 128, "layers": 1}), ("gpt2", {"seq_len": 128, "layers": 1}),
)


#: attention (heads, hidden) of the zoo's transformers and of their usual larger and smaller variants
#: (BERT-base / GPT-2: 12 x 64; BERT-large: 16 x 64; small: 8 x 64, 4 x 64), at usual sequence lengths
_ATTENTION_WIDTHS = ((12, 768), (16, 1024), (8, 512), (4, 256))
_SEQ_LENS = (32, 64, 128, 256, 384, 512)


def reference_layers(onnx_paths: Sequence[str] = ()) -> dict[str, list[dict[str, int]]]:
    """The zoo's layers (and those of the ONNX files given), by kind, as shape dicts.

    Read from the torch modules with forward hooks (no TVM import, well under a second per model);
    attention shapes come from the transformers' parameters.
    """
    import torch
    from torch import nn

    from opscope.workloads import zoo

    layers: dict[str, list[dict[str, int]]] = {k: [] for k in SPACE_KINDS}

    def hook(mod: Any, inputs: Any, _out: Any) -> None:
        shape = tuple(inputs[0].shape)
        if isinstance(mod, nn.Conv2d) and len(shape) == 4:
            d = {"c": mod.in_channels, "k": mod.out_channels, "h": shape[2], "w": shape[3],
                 "r": mod.kernel_size[0], "stride": mod.stride[0]}
            dw = mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels
            if dw or mod.groups == 1:
                layers["depthwise_conv2d" if dw else "conv2d"].append(d)
        elif isinstance(mod, nn.Linear):
            m = int(math.prod(shape[:-1]))
            layers["dense"].append({"m": m, "n": mod.out_features, "k": mod.in_features})
        elif isinstance(mod, nn.MaxPool2d) and len(shape) == 4:
            k = mod.kernel_size if isinstance(mod.kernel_size, int) else mod.kernel_size[0]
            s = mod.stride if isinstance(mod.stride, int) else mod.stride[0]
            layers["pool"].append({"c": shape[1], "h": shape[2], "r": k, "stride": s})

    for name, params in _REFERENCE_MODELS:
        module, example = zoo.build(name, 1, "float32", params)
        handles = [m.register_forward_hook(hook) for m in module.modules()
                   if isinstance(m, (nn.Conv2d, nn.Linear, nn.MaxPool2d))]
        with torch.no_grad():
            module(*example)
        for h in handles:
            h.remove()
    for heads, hidden in _ATTENTION_WIDTHS:
        for seq in _SEQ_LENS:
            dim = hidden // heads
            layers["batch_matmul"] += [{"b": heads, "m": seq, "n": seq, "k": dim},
                                       {"b": heads, "m": seq, "n": dim, "k": seq}]
            layers["softmax"].append({"b": heads, "m": seq, "n": seq})
    for path in onnx_paths:
        for kind, found in onnx_layers(path).items():
            layers[kind] += found
    return layers


def onnx_layers(path: str) -> dict[str, list[dict[str, int]]]:
    """Conv and GEMM shapes of an ONNX file (after ONNX's own shape inference)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    try:
        model = shape_inference.infer_shapes(onnx.load(str(path)))
    except (OSError, ValueError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise OpscopeError(f"{path}: cannot read it as an ONNX model ({str(exc).splitlines()[0][:200]})") from None
    g = model.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    for init in g.initializer:
        shapes[init.name] = tuple(numpy_helper.to_array(init).shape)
    out: dict[str, list[dict[str, int]]] = {k: [] for k in SPACE_KINDS}
    for node in g.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        ins = [shapes.get(n) for n in node.input]
        if node.op_type == "Conv" and ins and ins[0] and len(ins) > 1 and ins[1] and len(ins[0]) == 4:
            x, w = ins[0], ins[1]
            group = int(attrs.get("group", 1))
            d = {"c": x[1], "k": w[0], "h": x[2], "w": x[3], "r": w[2], "stride": int(attrs.get("strides", [1])[0])}
            if group == 1:
                out["conv2d"].append(d)
            elif group == x[1] == w[0]:
                out["depthwise_conv2d"].append(d)
        elif node.op_type in ("Gemm", "MatMul") and len(ins) > 1 and ins[0] and ins[1]:
            a, b = ins[0], ins[1]
            if node.input[1] in {i.name for i in g.initializer} and len(b) == 2:
                transposed = bool(attrs.get("transB", 0))
                out["dense"].append({"m": int(math.prod(a[:-1])), "k": a[-1], "n": b[0] if transposed else b[1]})
            elif len(a) >= 3 and len(b) >= 3:
                out["batch_matmul"].append({"b": int(math.prod(a[:-2])), "m": a[-2], "k": a[-1], "n": b[-1]})
    return out


# -- drawing -----------------------------------------------------------------------------------------
def _round(x: float, multiple: int, low: int) -> int:
    return max(low, int(round(x / multiple)) * multiple)


def _scale(rng: random.Random, x: int, spread: float = 1.0) -> float:
    return x * 2.0 ** rng.uniform(-spread, spread)


def _pick(rng: random.Random, refs: list[dict[str, int]], key: str) -> int:
    return rng.choice(refs)[key]


def _draw(kind: str, rng: random.Random, refs: list[dict[str, int]]) -> Layer:
    near = rng.random() < 0.5
    base = rng.choice(refs)

    def v(key: str) -> int:  # near a real layer: its value; otherwise the marginal of that key
        return base[key] if near else _pick(rng, refs, key)

    if kind in ("conv2d", "depthwise_conv2d"):
        r = v("r") if near or rng.random() < 0.9 else 5
        stride = v("stride")
        h = _round(_scale(rng, v("h")), 1, max(r, 4))
        k = _round(_scale(rng, v("k")), 8, 8)
        c = k if kind == "depthwise_conv2d" else _round(_scale(rng, v("c")), 8, 3 if v("c") == 3 else 8)
        if kind == "conv2d" and v("c") == 3 and rng.random() < 0.5:
            c = 3  # a stem
        epilogue = rng.choice(("bn_relu", "bn_relu", "bn", "bn_add_relu", "bias_relu")) if kind == "conv2d" \
            else rng.choice(("bn_relu", "bn"))
        return Layer(kind, tuple(sorted({"c": c, "k": k, "h": h, "w": h, "r": r, "stride": stride}.items())),
                     epilogue)
    if kind == "dense":
        m = _round(_scale(rng, v("m"), 1.5), 1, 1)
        n = _round(_scale(rng, v("n")), 16, 16)
        k_ = _round(_scale(rng, v("k")), 16, 16)
        return Layer(kind, tuple(sorted({"m": m, "n": n, "k": k_}.items())), rng.choice(("bias", "bias_relu")))
    if kind in ("batch_matmul", "softmax"):
        b = _round(_scale(rng, v("b"), 0.6), 1, 1)
        seq = _round(_scale(rng, v("m"), 1.5), 8, 8)
        if kind == "softmax":
            return Layer(kind, tuple(sorted({"b": b, "m": seq, "n": seq}.items())))
        k_ = _round(_scale(rng, v("k"), 0.6), 16, 16)
        if rng.random() < 0.5:  # Q.K^T: (seq x dim) x (dim x seq)
            d = {"b": b, "m": seq, "n": seq, "k": k_}
        else:  # P.V: (seq x seq) x (seq x dim)
            d = {"b": b, "m": seq, "n": k_, "k": seq}
        return Layer(kind, tuple(sorted(d.items())))
    if kind == "pool":
        r = v("r")
        return Layer(kind, tuple(sorted({"c": _round(_scale(rng, v("c")), 8, 8), "h": _round(_scale(rng, v("h")), 1, 4),
                                         "r": r, "stride": v("stride")}.items())))
    raise OpscopeError(f"space: unknown kind {kind!r}")


#: the values real layers' widths and sizes take: powers of two and 3 or 7 times one (the ``nice`` band)
_NICE = sorted({m * 2 ** e for m in (1, 3, 7) for e in range(0, 17)})


def _nice(x: int, low: int) -> int:
    """The nearest (in log) value at or above ``low`` that real layers use for a width or a size."""
    return min((v for v in _NICE if v >= low), key=lambda v: abs(math.log(v / x)))


def _nicer(layer: Layer, gemm_floor: int | None = None) -> Layer:
    """``layer`` with channels, GEMM dimensions and sizes rounded as real layers' are (a 3-channel stem
    kept); ``gemm_floor``, where given, is the least a GEMM's ``n`` and ``k`` are rounded to."""
    d = dict(layer.params)
    gemm = layer.kind in ("dense", "batch_matmul")
    n_low = gemm_floor if gemm and gemm_floor is not None else 16
    k_low = n_low if gemm else 8
    for key, low in (("c", 8), ("k", k_low), ("n", n_low), ("m", 1), ("b", 1), ("h", max(d.get("r", 1), 2))):
        if key in d and not (key == "c" and d[key] == 3):
            d[key] = _nice(d[key], low)
    return Layer(layer.kind, tuple(sorted(_tied(layer.kind, d).items())), layer.epilogue)


def _tied(kind: str, d: dict[str, int]) -> dict[str, int]:
    """``d`` with the parameters a kind ties together made equal again (square softmax rows, a depthwise
    conv's channels, square images)."""
    if kind == "softmax":
        d["n"] = d["m"]
    if kind == "depthwise_conv2d":
        d["c"] = d["k"]
    if "w" in d:
        d["w"] = d["h"]
    return d


#: the smallest value each shape parameter shrinks to in the ``small`` band
_FLOOR = {"c": 8, "k": 8, "n": 16, "m": 1, "b": 1, "h": 2}


def _shrunk(layer: Layer, rng: random.Random, below: float = MIN_FLOPS, gemm_floor: int | None = None) -> Layer:
    """``layer`` made smaller, one parameter at a time, until it is under ``below`` FLOPs (the ``small``
    and ``tiny`` bands); ``gemm_floor``, where given, is the least a GEMM's ``n`` and ``k`` shrink to."""
    d = dict(layer.params)
    floor = dict(_FLOOR)
    if gemm_floor is not None and layer.kind in ("dense", "batch_matmul"):
        floor.update(n=gemm_floor, k=gemm_floor)
    keys = [k for k in floor if k in d and not (k == "c" and d[k] == 3)]
    if layer.kind == "depthwise_conv2d":
        keys.remove("c")
    for _ in range(40):
        if Layer(layer.kind, tuple(sorted(d.items()))).flops < below:
            break
        room = [k for k in keys if d[k] > max(floor[k], d.get("r", 1) if k == "h" else 1)]
        if not room:
            break
        key = rng.choice(room)
        d[key] = max(floor[key], d.get("r", 1) if key == "h" else 1, int(d[key] / 2.0 ** rng.uniform(0.5, 1.5)))
        _tied(layer.kind, d)
    return _nicer(Layer(layer.kind, tuple(sorted(d.items())), layer.epilogue), gemm_floor)


def _lowres(layer: Layer, rng: random.Random) -> Layer:
    """``layer`` at a lower input resolution (the ``lowres`` band): its size scaled by LOWRES."""
    d = dict(layer.params)
    scale = math.exp(rng.uniform(math.log(LOWRES[0]), math.log(LOWRES[1])))
    d["h"] = d["w"] = max(LOWRES_MIN_SIZE, int(round(d["h"] * scale)))
    return replace(layer, params=tuple(sorted(d.items())))


def _large(rng: random.Random, refs: list[dict[str, int]]) -> Layer:
    """A fully-connected layer at batch 1-8 over a weight near one of the real layers' largest."""
    big = [r for r in refs if r["n"] * r["k"] >= 4e6] or refs
    base = rng.choice(big)
    d = {"m": rng.choice((1, 1, 1, 2, 4, 8)), "n": _round(_scale(rng, base["n"]), 16, 16),
         "k": _round(_scale(rng, base["k"]), 16, 16)}
    return _nicer(Layer("dense", tuple(sorted(d.items())), rng.choice(("bias", "bias_relu"))))


def _act(layer: Layer, rng: random.Random) -> Layer:
    """An ``act`` draw: ``nice`` widths, a newer activation, and a depthwise kernel of 3, 5 or 7."""
    d = dict(_nicer(layer).params)
    if layer.kind == "depthwise_conv2d":
        d["r"] = rng.choice(ACT_DEPTHWISE_KERNELS)
        d["h"] = d["w"] = max(d["h"], d["r"])
    return Layer(layer.kind, tuple(sorted(d.items())), rng.choice(ACT_EPILOGUES[layer.kind]))


def _patch(rng: random.Random) -> Layer:
    """A ``patch`` draw: kernel = stride, from an image's 3 channels (always for patches of 8 or more) or a
    feature map of a real layer's width, to a real layer's width, at 4-56 patches a side."""
    r = rng.choice(PATCH_SIZES)
    image = r >= 8 or rng.random() < 0.5
    c = 3 if image else rng.choice([v for v in _NICE if 32 <= v <= 768])
    k = rng.choice([v for v in _NICE if 32 <= v <= 1024])
    h = rng.choice([v for v in _NICE if 4 <= v <= 56]) * r
    return Layer("conv2d", tuple(sorted({"c": c, "k": k, "h": h, "w": h, "r": r, "stride": r}.items())),
                 rng.choice(PATCH_EPILOGUES))


def _in_band(layer: Layer, band: str, max_gflop: float) -> bool:
    size = layer.elements * 4
    if band == "small":
        return SMALL_MIN_FLOPS <= layer.flops < MIN_FLOPS and size <= MAX_BYTES
    if band == "tiny":
        return TINY_FLOPS[0] <= layer.flops < TINY_FLOPS[1] and size <= MAX_BYTES
    if band == "large":
        return layer.flops <= max_gflop * 1e9 and MAX_BYTES < size <= LARGE_MAX_BYTES
    return MIN_FLOPS <= layer.flops <= max_gflop * 1e9 and size <= MAX_BYTES


def draw_layers(space: Sequence[tuple[str, int]], seed: int = 0,
                refs: dict[str, list[dict[str, int]]] | None = None, max_gflop: float = MAX_GFLOP) -> list[Layer]:
    """``count`` distinct layers of each kind (and band), drawn with ``seed`` (the same arguments, the same
    layers; a kind's default band is drawn as it always was, whatever else the space holds)."""
    refs = refs if refs is not None else reference_layers()
    out: list[Layer] = []
    seen: set[Layer] = set()
    for name, count in space:
        kind, _, band = name.partition("/")
        if not refs.get(kind):
            raise OpscopeError(f"space: no reference layer of kind {kind!r} to draw from")
        rng = random.Random(f"{seed}:{name}")
        got, tries = 0, 0
        while got < count:
            tries += 1
            if tries > 200 * count + 1000:
                raise OpscopeError(f"space: could not draw {count} distinct {name} layers under {max_gflop} GFLOP "
                                   f"(got {got}); ask for fewer")
            if band == "large":
                layer = _large(rng, refs[kind])
            elif band == "patch":
                layer = _patch(rng)
            else:
                layer = _draw(kind, rng, refs[kind])
                if band == "nice":
                    layer = _nicer(layer)
                elif band in ("torch", "lowres"):
                    layer = replace(_nicer(layer), epilogue=rng.choice(TORCH_EPILOGUES[kind]))
                    if band == "lowres":
                        layer = _lowres(layer, rng)
                elif band == "small":
                    layer = _shrunk(layer, rng)
                elif band == "tiny":
                    low, high = TINY_FLOPS
                    layer = _shrunk(layer, rng, below=math.exp(rng.uniform(math.log(low * 2), math.log(high))),
                                    gemm_floor=TINY_GEMM_FLOOR)
                elif band == "act":
                    layer = _act(layer, rng)
            if layer in seen or not _in_band(layer, band, max_gflop):
                continue
            seen.add(layer)
            out.append(layer)
            got += 1
    return out


# -- building ----------------------------------------------------------------------------------------
def _relax_function(layer: Layer, dtype: str) -> Any:
    """A Relax module computing ``layer`` and its epilogue; the user input first, then the weights."""
    from tvm import relax

    d = dict(layer.params)
    t = relax.TensorType
    op = relax.op
    inputs: list[Any] = []
    weights: list[Any] = []

    def var(name: str, shape: tuple[int, ...], weight: bool) -> Any:
        v = relax.Var(name, t(shape, dtype))
        (weights if weight else inputs).append(v)
        return v

    def channel(name: str, c: int) -> Any:
        return var(name, (1, c, 1, 1), True)

    body: list[tuple[str, Any]] = []
    if layer.kind in ("conv2d", "depthwise_conv2d"):
        c, k, h, r, s = d["c"], d["k"], d["h"], d["r"], d["stride"]
        groups = c if layer.kind == "depthwise_conv2d" else 1
        x = var("x", (1, c, h, d["w"]), False)
        w = var("w", (k, c // groups, r, r), True)
        body.append(("conv", lambda: op.nn.conv2d(x, w, strides=(s, s), padding=(_pad(r), _pad(r)), groups=groups)))
        if layer.epilogue.startswith("bnu"):  # batch norm as imported: (y - mean) / std * gamma + beta
            mean, std, gamma, beta = (channel(f"bn_{n}", k) for n in ("mean", "std", "gamma", "beta"))
            body += [("mean", lambda y: op.subtract(y, mean)), ("std", lambda y: op.divide(y, std)),
                     ("gamma", lambda y: op.multiply(y, gamma)), ("beta", lambda y: op.add(y, beta))]
        elif layer.epilogue.startswith("bn"):
            scale, shift = channel("bn_scale", k), channel("bn_shift", k)
            body += [("scale", lambda y: op.multiply(y, scale)), ("shift", lambda y: op.add(y, shift))]
        if layer.epilogue.startswith("bias"):
            bias = channel("bias", k)
            body.append(("bias", lambda y: op.add(y, bias)))
        if "add" in layer.epilogue:
            oh = _out(h, r, s)
            res = var("residual", (1, k, oh, oh), False)
            body.append(("residual", lambda y: op.add(y, res)))
        if layer.epilogue.endswith("relu"):
            body.append(("relu", lambda y: op.nn.relu(y)))
        if layer.epilogue.endswith("clip"):  # ReLU6
            body.append(("clip", lambda y: op.clip(y, 0.0, 6.0)))
        body += _activation(layer.epilogue, op)
    elif layer.kind == "dense":
        x = var("x", (d["m"], d["k"]), False)
        w = var("w", (d["n"], d["k"]), True)
        bias = var("bias", (d["n"],), True)
        body += [("matmul", lambda: op.matmul(x, op.permute_dims(w))), ("bias", lambda y: op.add(y, bias))]
        if layer.epilogue.endswith("relu"):
            body.append(("relu", lambda y: op.nn.relu(y)))
        body += _activation(layer.epilogue, op)
    elif layer.kind == "batch_matmul":
        a = var("a", (1, d["b"], d["m"], d["k"]), False)
        b = var("b", (1, d["b"], d["k"], d["n"]), False)
        body.append(("matmul", lambda: op.matmul(a, b)))
    elif layer.kind == "pool":
        x = var("x", (1, d["c"], d["h"], d["h"]), False)
        r, s = d["r"], d["stride"]
        body.append(("pool", lambda: op.nn.max_pool2d(x, (r, r), (s, s), padding=(_pad(r), _pad(r)))))
    elif layer.kind == "softmax":
        x = var("x", (1, d["b"], d["m"], d["n"]), False)
        body.append(("softmax", lambda: op.nn.softmax(x, axis=-1)))
    else:
        raise OpscopeError(f"space: unknown kind {layer.kind!r}")

    bb = relax.BlockBuilder()
    with bb.function("main", inputs + weights):
        with bb.dataflow():
            y = bb.emit(body[0][1]())
            for _, f in body[1:]:
                y = bb.emit(f(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    mod = bb.get()
    mod["main"] = mod["main"].with_attr("num_input", len(inputs))
    return mod


def _activation(epilogue: str, op: Any) -> list[tuple[str, Any]]:
    """The ``act`` band's last step (``op``: ``relax.op``): SiLU (``x * sigmoid(x)``) or exact GELU
    (through ``erf``)."""
    if epilogue.endswith("silu"):
        return [("silu", lambda y: op.nn.silu(y))]
    if epilogue.endswith("gelu"):
        return [("gelu", lambda y: op.nn.gelu(y))]
    return []


def _interleaved(layers: list[Layer]) -> list[Layer]:
    """Kinds in turn (conv2d, dense, ..., conv2d, dense, ...): a collection stopped early still covers them."""
    by_kind: dict[str, list[Layer]] = {}
    for layer in layers:
        by_kind.setdefault(layer.kind, []).append(layer)
    out: list[Layer] = []
    while any(by_kind.values()):
        for kind in list(by_kind):
            if by_kind[kind]:
                out.append(by_kind[kind].pop(0))
    return out


def space_operators(space: Sequence[tuple[str, int]] | str | Sequence[Layer], seed: int = 0, dtype: str = "float32",
                    onnx_paths: Sequence[str] = (), max_gflop: float = MAX_GFLOP, progress: Any = None) -> list[Any]:
    """The operators of a space: one heavy operator per drawn layer (its fused epilogue included).

    ``progress(i, n)`` is called as they are built.  A layer TVM cannot lower is left out with its reason
    in ``space_operators.skipped`` (never fatal).
    """
    from dataclasses import replace

    from opscope.workloads.load import _finish

    if isinstance(space, str):
        space = parse_space(space)
    if space and isinstance(next(iter(space)), Layer):
        layers = list(space)  # already drawn (e.g. by adaptive_layers)
    else:
        layers = _interleaved(draw_layers(space, seed, reference_layers(onnx_paths), max_gflop))
    ops: list[Any] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, layer in enumerate(layers):
        if progress is not None:
            progress(i, len(layers))
        try:
            work = _finish(layer.label, _relax_function(layer, dtype), 1, {"space": layer.label})
        except OpscopeError as exc:
            skipped.append((layer.label, str(exc)))
            continue
        main = max(work.operators, key=lambda o: o.flops)
        if main.key in seen:
            continue
        seen.add(main.key)
        attrs = tuple(sorted(dict(main.attrs, space=layer.label).items()))
        ops.append(replace(main, name=f"space_{layer.label}", models=(SPACE_MODEL,), count=1, attrs=attrs))
    space_operators.skipped = skipped  # type: ignore[attr-defined]
    return ops


# -- adaptive sampling ---------------------------------------------------------------------------------
#: shape parameters a perturbation scales (kernel sizes and strides are kept)
_SCALED = {"c": 8, "k": 8, "h": 1, "w": 1, "m": 1, "n": 16, "b": 1}


def space_layer_of(operator_json: str) -> Layer | None:
    """The drawn layer of a stored space operator (None for an operator of a model)."""
    import json

    d = json.loads(operator_json)
    label = dict((k, v) for k, v in d.get("attrs", ())).get("space")
    if label is None and str(d.get("name", "")).startswith("space_") and SPACE_MODEL in d.get("models", ()):
        label = d["name"][len("space_"):]  # stored before the label became an attribute
    return Layer.from_label(label) if isinstance(label, str) else None


def adaptive_layers(frame: Any, count: int, seed: int = 0, label: str = "latency_min_s",
                    max_gflop: float = MAX_GFLOP, worst_share: float = 0.25) -> tuple[list[Layer], Any]:
    """``count`` new layers near the space operators a predictor gets most wrong (nn-Meter's adaptive
    sampling).

    A predictor is fitted on all but a fifth of the measured space operators at a time (unseen-shapes
    folds); the quarter of operators with the largest held-out median |log error| are perturbed (channels,
    sizes, GEMM dimensions scaled by up to 1.4x either way) into new layers not measured yet.  Returns
    the layers and a table of the operators they were drawn near, with their errors.
    """
    import numpy as np
    import pandas as pd

    from opscope.predictor.evaluation.evaluate import evaluate
    from opscope.predictor.models.persist import make_predictor

    if count < 1:
        raise OpscopeError(f"adaptive sampling: count must be >= 1, got {count}")
    rows = frame[frame["operator_json"].map(lambda j: space_layer_of(j) is not None)].reset_index(drop=True)
    if rows["workload_key"].nunique() < 10:
        raise OpscopeError(f"adaptive sampling needs measurements of at least 10 space operators; the store has "
                           f"{rows['workload_key'].nunique()}: collect --space default first")
    ev = evaluate({"xgboost": lambda: make_predictor("xgboost")}, rows, "unseen-shapes", seed=seed,
                  progress=None, label=label)
    p = ev.predictions
    # the error as |log(predicted / measured)|: symmetric, so an operator 8x under-predicted counts as
    # much as one 8x over-predicted (APE would cap the first at 0.875)
    err = pd.DataFrame({"workload_key": rows["workload_key"].to_numpy()[p["row"]],
                        "log_error": np.abs(np.log(p["predicted_s"] / p["measured_s"]))})
    per_op = err.groupby("workload_key")["log_error"].median().sort_values(ascending=False)
    worst = per_op.head(max(1, int(round(len(per_op) * worst_share))))
    by_key = rows.drop_duplicates("workload_key").set_index("workload_key")["operator_json"]
    bases = [space_layer_of(by_key[k]) for k in worst.index]
    known = {space_layer_of(j) for j in by_key}
    rng = random.Random(f"adaptive:{seed}:{len(rows)}")
    out: list[Layer] = []
    tries = 0
    while len(out) < count and tries < 200 * count:
        tries += 1
        base = bases[len(out) % len(bases)]
        d = dict(base.params)
        for key, multiple in _SCALED.items():
            if key in d and not (key == "c" and d[key] == 3):
                d[key] = _round(d[key] * 2.0 ** rng.uniform(-0.5, 0.5), multiple, multiple)
        if base.kind == "depthwise_conv2d":
            d["c"] = d["k"]
        if "w" in d:
            d["w"] = d["h"]
        layer = Layer(base.kind, tuple(sorted(d.items())), base.epilogue)
        if layer in known or not _in_band(layer, "", max_gflop):
            continue
        known.add(layer)
        out.append(layer)
    table = pd.DataFrame({"workload_key": worst.index, "median_log_error": worst.to_numpy(),
                          "layer": [b.label for b in bases]})
    return out, table
