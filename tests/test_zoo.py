"""The model zoo: names, parameters, and architectures checked against published sizes."""

from __future__ import annotations

import pytest
import torch

from opscope.errors import OpscopeError
from opscope.workloads import list_models
from opscope.workloads.zoo import ZOO, build, cnn, transformer, zoo_model


def _params_on_meta(factory, **kwargs) -> int:
    with torch.device("meta"):
        module = factory(**kwargs)
    return sum(p.numel() for p in module.parameters())


def test_zoo_names():
    assert list_models() == sorted(
        ["alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v2", "mlp", "bert", "gpt2"]
    )


@pytest.mark.parametrize(
    ("factory", "published"),
    [
        # parameter counts published with torchvision's reference models (ImageNet, 1000 classes)
        (cnn.alexnet, 61_100_840),
        (cnn.vgg16, 138_357_544),
        (cnn.resnet18, 11_689_512),
        (cnn.resnet50, 25_557_032),
        (cnn.mobilenet_v2, 3_504_872),
    ],
)
def test_cnn_parameter_counts_match_published_architectures(factory, published):
    assert _params_on_meta(factory) == published


def test_bert_base_parameter_count_by_hand():
    h, ff, layers = 768, 3072, 12
    attention = 4 * (h * h + h)          # q, k, v, out projections with bias
    feed_forward = h * ff + ff + ff * h + h
    norms = 2 * 2 * h                    # two layer norms, weight and bias
    assert _params_on_meta(transformer.bert) == layers * (attention + feed_forward + norms)


def test_mlp_parameter_count_by_hand():
    expected = (784 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 10 + 10)
    assert _params_on_meta(cnn.mlp) == expected


def test_build_gives_eval_module_and_input_of_the_right_shape():
    module, (x,) = build("mlp", 4, "float32", {"hidden": 32})
    assert not module.training
    assert tuple(x.shape) == (4, 784)
    assert tuple(module(x).shape) == (4, 10)
    weights = torch.cat([p.flatten() for p in module.parameters()])
    assert torch.isfinite(weights).all() and weights.std() > 0.005


def test_build_image_size_and_dtype():
    module, (x,) = build("resnet18", 2, "bfloat16", {"image_size": 32, "num_classes": 7})
    assert tuple(x.shape) == (2, 3, 32, 32) and x.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in module.parameters())
    assert tuple(module(x).shape) == (2, 7)


def test_gpt2_mask_is_causal():
    module, (x,) = build("gpt2", 1, "float32", {"seq_len": 8, "hidden": 32, "heads": 4, "ff": 64})
    mask = module[0].attn.mask
    assert mask.tolist() == torch.tril(torch.ones(8, 8, dtype=torch.bool)).tolist()
    # causality: changing the last token leaves earlier outputs unchanged
    y1 = module(x)
    x2 = x.clone()
    x2[0, -1] += 1.0
    y2 = module(x2)
    assert torch.allclose(y1[0, :-1], y2[0, :-1], atol=1e-5)
    assert not torch.allclose(y1[0, -1], y2[0, -1])


def test_bert_batchnorm_free_layers_and_defaults():
    entry = zoo_model("bert")
    assert dict(entry.defaults) == {"seq_len": 128, "heads": 12, "hidden": 768, "ff": 3072, "layers": 12}
    module, (x,) = build("bert", 1, "float32", {"seq_len": 4, "hidden": 16, "heads": 2, "ff": 32, "layers": 3})
    assert len(module) == 3 and tuple(x.shape) == (1, 4, 16)


def test_unknown_model_lists_the_zoo():
    with pytest.raises(OpscopeError) as err:
        zoo_model("resnet19")
    assert "resnet19" in str(err.value)
    for name in ZOO:
        assert name in str(err.value)


def test_unknown_parameter_is_named_with_the_known_ones():
    with pytest.raises(OpscopeError, match="no parameter 'depth'.*image_size=224"):
        ZOO["resnet18"].resolve({"depth": 3})


@pytest.mark.parametrize("value", [0, -3, 2.5, "8", True])
def test_bad_parameter_values(value):
    with pytest.raises(OpscopeError, match="seq_len must be a positive int"):
        ZOO["bert"].resolve({"seq_len": value})


def test_heads_must_divide_hidden():
    with pytest.raises(OpscopeError, match="hidden=100 is not a multiple of heads=12"):
        build("bert", 1, "float32", {"hidden": 100, "layers": 1})


def test_unsupported_dtype():
    with pytest.raises(OpscopeError, match="int8"):
        build("mlp", 1, "int8", {})
