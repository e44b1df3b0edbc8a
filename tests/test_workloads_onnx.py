"""ONNX files through TVM Relax: a graph built with onnx.helper, and the errors a user can cause."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from opscope.errors import OpscopeError, WorkloadError
from opscope.workloads import load_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSCOPE_CACHE_DIR", str(tmp_path / "cache"))


def _init(name, shape):
    return numpy_helper.from_array(np.random.default_rng(0).standard_normal(shape).astype("float32"), name)


def _cnn_graph(extra_nodes=(), batch="N"):
    """X[N,3,8,8] -> Conv(4, 3x3, stride 1, pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(2)."""
    nodes = [
        helper.make_node("Conv", ["X", "W", "B"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1],
                         name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        *extra_nodes,
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "W2", "B2"], ["Y"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [batch, 2])],
        [_init("W", (4, 3, 3, 3)), _init("B", (4,)), _init("W2", (2, 4)), _init("B2", (2,))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_round_trip(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(_cnn_graph(), path)
    work = load_model(str(path), batch_size=2)
    assert work.name == "tiny" and work.params["path"] == str(path)
    conv = next(op for op in work.operators if op.kind == "conv2d")
    # batch 2, 4 output channels, 8x8 outputs, 3 input channels x 3x3 kernel, 2 FLOPs per MAC
    assert conv.flops == 2 * 2 * 4 * 8 * 8 * 3 * 3 * 3
    assert conv.tensors_of("input")[0].shape == (2, 3, 8, 8)
    assert conv.tensors_of("weight")[0].shape == (4, 3, 3, 3)
    assert conv.attr("padding") == (1, 1) and conv.attr("stride") == (1, 1)
    fc = next(op for op in work.operators if op.kind == "dense")
    assert fc.flops == 2 * 2 * 2 * 4
    # TVM lowers GlobalAveragePool to a mean over H, W: a reduction kernel
    assert {op.kind for op in work.operators} >= {"conv2d", "dense", "reduction"}
    assert all(op.models == ("tiny",) for op in work.operators)
    # cached: a second load gives the same operators, with working PrimFuncs
    again = load_model(path, batch_size=2)
    assert again.operators == work.operators
    assert all(op.prim_func is not None for op in again.operators)


def test_onnx_unsupported_operators_are_named(tmp_path):
    extra = [
        helper.make_node("Celu", ["r"], ["r1"], name="my_celu"),
        helper.make_node("ReverseSequence", ["r1", "lens"], ["r2"], name="rev"),
    ]
    model = _cnn_graph(extra)
    path = tmp_path / "odd.onnx"
    onnx.save(model, path)
    with pytest.raises(WorkloadError) as err:
        load_model(str(path))
    text = str(err.value)
    assert str(path) in text
    assert "Celu" in text and "ReverseSequence" in text
    assert "my_celu" in text and "rev" in text
    assert "Conv" not in text.split("operator(s)")[1].split(":")[0]


def test_onnx_symbolic_non_batch_dimension(tmp_path):
    model = _cnn_graph()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    path = tmp_path / "dyn.onnx"
    onnx.save(model, path)
    with pytest.raises(WorkloadError, match="input 'X' has a symbolic dimension H at axis 2"):
        load_model(str(path))


def test_onnx_missing_and_garbage_files(tmp_path):
    with pytest.raises(WorkloadError, match="no such file"):
        load_model(str(tmp_path / "absent.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01 definitely not protobuf \xff" * 10)
    with pytest.raises(WorkloadError, match="bad.onnx"):
        load_model(str(bad))


def test_onnx_dtype_and_params_errors(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(_cnn_graph(), path)
    with pytest.raises(OpscopeError, match="image_size apply only to zoo models"):
        load_model(str(path), image_size=32)
    with pytest.raises(OpscopeError, match="float32, not float16"):
        load_model(str(path), dtype="float16")


@pytest.mark.slow
def test_torch_exported_onnx_matches_the_torch_import(tmp_path):
    import torch

    from opscope.workloads.zoo import build

    module, inputs = build("resnet18", 1, "float32", {"image_size": 32})
    path = tmp_path / "resnet18.onnx"
    # the TorchScript-based exporter works offline; it folds batch norm into the convs
    torch.onnx.export(module, inputs, str(path), dynamo=False)
    from_onnx = load_model(str(path))
    from_torch = load_model("resnet18", image_size=32)
    for kind in ("conv2d", "dense"):
        totals = [sum(op.flops * op.count for op in w.operators if op.kind == kind) for w in (from_onnx, from_torch)]
        assert totals[0] == totals[1] > 0, kind
    assert sum(op.count for op in from_onnx.operators if op.kind == "conv2d") == 20
    stem = next(op for op in from_onnx.operators if op.kind == "conv2d" and op.attr("kernel") == (7, 7))
    assert stem.attr("stride") == (2, 2) and stem.attr("padding") == (3, 3)


def test_onnx_asymmetric_padding_is_kept_in_full(tmp_path):
    node = helper.make_node("Conv", ["X", "W"], ["Y"], kernel_shape=[2, 2], pads=[0, 0, 1, 1], name="conv")
    graph = helper.make_graph(
        [node], "asym",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [_init("W", (4, 3, 2, 2))],
    )
    path = tmp_path / "asym.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    (conv,) = load_model(str(path)).operators
    assert conv.attr("padding") == (0, 0, 1, 1)  # top, left, bottom, right
    assert conv.flops == 2 * 4 * 8 * 8 * 3 * 2 * 2
    assert conv.tensors_of("output")[0].shape == (1, 4, 8, 8)
