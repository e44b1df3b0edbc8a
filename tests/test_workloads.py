"""Zoo CNNs through TVM Relax to operators: kinds, shapes, FLOPs by hand, dedup, PrimFuncs."""

from __future__ import annotations

import numpy as np
import pytest

from opscope.errors import OpscopeError
from opscope.workloads import Operator, load_model


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("workload-cache")))
        yield


@pytest.fixture(scope="module")
def resnet18():
    # importing ResNet-18 through torch.export and TVM: the tests that use it are marked slow
    return load_model("resnet18")


def _conv_ops(work):
    return [op for op in work.operators if op.kind == "conv2d"]


def _one(ops, **match):
    found = [op for op in ops if all(_get(op, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [op.name for op in found])
    return found[0]


def _get(op, key):
    if key in ("input", "weight", "output"):
        return op.tensors_of(key)[0].shape
    return op.attr(key)


@pytest.mark.slow
def test_resnet18_stem_conv_by_hand(resnet18):
    stem = _one(_conv_ops(resnet18), input=(1, 3, 224, 224))
    # 64 output channels x 112 x 112 outputs, each 3 x 7 x 7 multiply-accumulates, 2 FLOPs per MAC
    assert stem.flops == 2 * 64 * 112 * 112 * 3 * 7 * 7
    assert stem.tensors_of("weight")[0].shape == (64, 3, 7, 7)
    assert stem.tensors_of("output")[0].shape == (1, 64, 112, 112)
    assert (stem.gemm.batch, stem.gemm.m, stem.gemm.n, stem.gemm.k) == (1, 112 * 112, 64, 3 * 7 * 7)
    assert stem.loops == (("n", 1), ("k", 64), ("c", 3), ("p", 112), ("q", 112), ("r", 7), ("s", 7))
    assert stem.attr("stride") == (2, 2)
    assert stem.attr("padding") == (3, 3)
    assert stem.attr("kernel") == (7, 7) and stem.attr("groups") == 1
    assert stem.count == 1 and stem.models == ("resnet18",)
    # the fused batch norm and ReLU are extra element-wise work, kept out of the GEMM FLOPs
    assert stem.attr("tir_flops") > stem.flops


@pytest.mark.slow
def test_resnet18_dedup_counts(resnet18):
    convs = _conv_ops(resnet18)
    assert sum(op.count for op in convs) == 20  # 1 stem + 16 in blocks + 3 downsample 1x1
    layer1 = [op for op in convs if op.tensors_of("input")[0].shape == (1, 64, 56, 56)
              and op.tensors_of("weight")[0].shape == (64, 64, 3, 3)]
    # layer1: 4 identical 3x3 convs; two end a block (residual add fused), two do not
    assert sorted(op.count for op in layer1) == [2, 2]
    assert len({op.key for op in layer1}) == 2
    keys = [op.key for op in resnet18.operators]
    assert len(keys) == len(set(keys))
    assert all(len(k) == 16 and int(k, 16) >= 0 for k in keys)


@pytest.mark.slow
def test_resnet18_total_conv_macs_by_hand(resnet18):
    expected = 64 * 112 * 112 * 3 * 7 * 7  # stem
    c_in, size = 64, 56
    for stage, width in enumerate((64, 128, 256, 512)):
        out = size if stage == 0 else size // 2
        expected += width * out * out * c_in * 9 + 3 * width * out * out * width * 9  # 4 3x3 convs
        if stage > 0:
            expected += width * out * out * c_in  # 1x1 downsample
        c_in, size = width, out
    got = sum(op.flops * op.count for op in _conv_ops(resnet18)) // 2
    assert got == expected  # 1.814 GMAC, the figure usually quoted for ResNet-18


@pytest.mark.slow
def test_resnet18_fc_pool_and_mean(resnet18):
    ops = resnet18.operators
    fc = _one([op for op in ops if op.kind == "dense"])
    assert fc.flops == 2 * 512 * 1000
    assert (fc.gemm.m, fc.gemm.n, fc.gemm.k) == (1, 1000, 512)
    assert [t.role for t in fc.tensors] == ["input", "weight", "weight", "output"]
    pool = _one([op for op in ops if op.kind == "pool"])
    assert pool.attr("pool") == "max" and pool.attr("kernel") == (3, 3) and pool.attr("stride") == (2, 2)
    assert pool.tensors_of("output")[0].shape == (1, 64, 56, 56)
    mean = _one([op for op in ops if op.kind == "reduction"])
    assert mean.tensors_of("input")[0].shape == (1, 512, 7, 7)
    assert resnet18.kernel_count == 20 + 1 + 1 + 1


@pytest.mark.slow
def test_operator_dict_round_trip(resnet18):
    for op in resnet18.operators:
        back = Operator.from_dict(op.to_dict())
        assert back == op and back.key == op.key


@pytest.mark.slow
def test_prim_func_compiles_and_computes_the_fc_layer(resnet18):
    import tvm

    fc = _one([op for op in resnet18.operators if op.kind == "dense"])
    ex = tvm.compile(tvm.IRModule({"main": fc.prim_func}), target=tvm.target.Target({"kind": "llvm"}))
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(t.shape).astype(t.dtype) for t in fc.tensors]
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in arrays]
    ex["main"](*args)
    x, w, b, _ = arrays
    np.testing.assert_allclose(args[-1].numpy(), x @ w + b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_conv_prim_func_compiles_on_its_own(resnet18):
    import tvm

    stem = _one(_conv_ops(resnet18), input=(1, 3, 224, 224))
    assert stem.prim_func.attrs["global_symbol"] == "main"
    ex = tvm.compile(tvm.IRModule({"main": stem.prim_func}), target=tvm.target.Target({"kind": "llvm"}))
    assert ex is not None


@pytest.mark.slow
def test_whole_model_module_keeps_weights_as_inputs(resnet18):
    main = resnet18.ir_module["main"]
    assert int(main.attrs["num_input"]) == 1
    assert tuple(int(d) for d in main.params[0].ty.shape.values) == (1, 3, 224, 224)
    assert "params" not in main.attrs  # the weights' values are not kept


@pytest.mark.slow
def test_cache_round_trip(resnet18, monkeypatch):
    # the second load must come from the cache: the importer is made to fail, so a miss would raise
    # (a timing bound is not a test here: the import itself takes about a second on a fast CPU)
    import opscope.workloads.load as load_mod

    def no_import():
        raise AssertionError("the second load re-imported the model instead of reading the cache")

    monkeypatch.setattr(load_mod, "_relax_import", no_import)
    again = load_model("resnet18")
    assert again.operators == resnet18.operators
    assert [op.count for op in again.operators] == [op.count for op in resnet18.operators]
    from opscope.workloads.extract import structural_key

    assert all(structural_key(op.prim_func) == op.key for op in again.operators)
    renamed = load_model("resnet18", name="r18")
    assert renamed.name == "r18" and renamed.operators[0].models == ("r18",)


@pytest.mark.slow
def test_mobilenet_v2_depthwise():
    work = load_model("mobilenet_v2", image_size=64)
    dw = [op for op in work.operators if op.kind == "depthwise_conv2d"]
    assert sum(op.count for op in dw) == 17  # one per inverted residual block
    first = _one(dw, input=(1, 32, 32, 32))
    # 32 channels, each a 3x3 filter over a 32x32 output
    assert first.flops == 2 * 32 * 32 * 32 * 3 * 3
    assert (first.gemm.batch, first.gemm.m, first.gemm.n, first.gemm.k) == (32, 32 * 32, 1, 9)
    assert first.attr("groups") == 32 and first.attr("stride") == (1, 1)
    strided = [op for op in dw if op.attr("stride") == (2, 2)]
    assert sum(op.count for op in strided) == 4


def test_small_cnn_kinds_shapes_and_flops_by_hand():
    import torch
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),          # 16x16 -> 8x8
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(),          # depthwise
        nn.AvgPool2d(2),                                              # 8x8 -> 4x4
        nn.Flatten(), nn.Linear(8 * 4 * 4, 5), nn.Softmax(dim=-1),
    )
    work = load_model(net, batch_size=2, example_inputs=(torch.randn(2, 3, 16, 16),), name="tiny")
    kinds = {op.kind for op in work.operators}
    assert {"conv2d", "depthwise_conv2d", "pool", "dense", "softmax"} <= kinds
    conv = _one([op for op in work.operators if op.kind == "conv2d"])
    assert conv.flops == 2 * 2 * 8 * 8 * 8 * 3 * 3 * 3  # batch 2, K=8, 8x8 outputs, C=3, 3x3
    assert conv.attr("stride") == (2, 2) and conv.attr("padding") == (1, 1)
    assert (conv.gemm.m, conv.gemm.n, conv.gemm.k) == (2 * 8 * 8, 8, 27)
    dw = _one([op for op in work.operators if op.kind == "depthwise_conv2d"])
    assert dw.flops == 2 * 2 * 8 * 8 * 8 * 3 * 3 and dw.attr("groups") == 8
    pool = _one([op for op in work.operators if op.kind == "pool"])
    assert pool.attr("pool") == "avg" and pool.tensors_of("output")[0].shape == (2, 8, 4, 4)
    fc = _one([op for op in work.operators if op.kind == "dense"])
    assert fc.flops == 2 * 2 * 128 * 5 and fc.models == ("tiny",)
    soft = _one([op for op in work.operators if op.kind == "softmax"])
    assert soft.tensors_of("input")[0].shape == (2, 5)
    # TVM's count for softmax over 5 classes: max, subtract+exp, sum, divide -> about 5 per element
    assert 3 * 10 <= soft.flops <= 6 * 10
    relu6 = [op for op in work.operators if op.kind == "elementwise"]
    assert all(op.gemm is None for op in relu6)


def test_torch_module_with_example_inputs_and_matmul_kind():
    import torch

    class TwoInputs(torch.nn.Module):
        def forward(self, a, b):
            return torch.relu(a @ b)

    a, b = torch.randn(8, 16), torch.randn(16, 4)
    work = load_model(TwoInputs(), example_inputs=(a, b))
    assert work.name == "twoinputs"
    mm = _one([op for op in work.operators if op.kind == "matmul"])
    assert mm.flops == 2 * 8 * 4 * 16
    assert [t.role for t in mm.tensors] == ["input", "input", "output"]
    with pytest.raises(OpscopeError, match="example_inputs"):
        load_model(TwoInputs())


def test_bad_inputs():
    with pytest.raises(OpscopeError, match="unknown model 'resnet19'.*resnet18"):
        load_model("resnet19")
    with pytest.raises(OpscopeError, match="no parameter 'seq_len'"):
        load_model("resnet18", seq_len=3)
    with pytest.raises(OpscopeError, match="batch_size"):
        load_model("mlp", batch_size=0)
    with pytest.raises(OpscopeError, match="cannot load a model from int"):
        load_model(3)


@pytest.mark.slow
def test_layer_table_agrees_with_the_imported_model(resnet18):
    from pathlib import Path

    import opscope.workloads

    table = Path(opscope.workloads.__file__).parent / "tables" / "resnet18_convs.csv"
    work = load_model(str(table))
    assert work.ir_module is None and work.name == "resnet18_convs"
    assert len({op.key for op in work.operators}) == len(work.operators)  # deduplicated
    for kind in ("conv2d", "dense"):
        from_table = sum(op.flops * op.count for op in work.operators if op.kind == kind)
        imported = sum(op.flops * op.count for op in resnet18.operators if op.kind == kind)
        assert from_table == imported, kind


def test_half_precision_zoo_model():
    work = load_model("mlp", dtype="float16", hidden=64)
    assert [op.kind for op in work.operators] == ["dense", "dense", "dense"]
    first = work.operators[0]
    assert {t.dtype for t in first.tensors} == {"float16"}
    # x[1,784], W[784,64], b[64], y[1,64], 2 bytes each
    assert first.bytes == 2 * (784 + 784 * 64 + 64 + 64)
    assert first.flops == 2 * 784 * 64


def test_tvm_lowering_failure_is_one_clear_error():
    # TVM 0.27 legalises layer_norm for float32/float16 only
    with pytest.raises(OpscopeError, match="TVM could not lower.*layer_norm"):
        load_model("bert", dtype="bfloat16", seq_len=4, layers=1, hidden=8, heads=2, ff=8)


def test_conv1d_is_other_with_its_macs_and_the_reason():
    import torch

    net = torch.nn.Conv1d(4, 6, 3, bias=False)  # length 10 -> 8 outputs
    work = load_model(net, example_inputs=(torch.randn(1, 4, 10),))
    (op,) = work.operators
    assert op.kind == "other" and op.gemm is None
    assert op.flops == 2 * 6 * 8 * 4 * 3
    assert op.attr("unmapped") == "1-D convolution"
