"""Workload edges: static adaptive pools are accepted, symbolic shapes refused, every zoo model
comes back from the workload cache, and ``--param`` reaches analyze and ``models --show``."""

from __future__ import annotations

import json
import math

import pytest

from opscope.cli import main
from opscope.errors import WorkloadError


def _window(i: int, n_in: int, n_out: int) -> int:
    """Adaptive pooling's window for output ``i``: [floor(i*in/out), ceil((i+1)*in/out))."""
    return math.ceil((i + 1) * n_in / n_out) - (i * n_in) // n_out


@pytest.mark.parametrize("size,out,op", [((5, 5), (3, 3), "avg"), ((7, 6), (3, 4), "max")])
def test_adaptive_pool_window_is_a_static_loop_nest(size, out, op):
    from tvm import te, topi

    from opscope.workloads.classify import blocks_of

    data = te.placeholder((1, 8, *size), name="x")
    blocks = blocks_of(te.create_prim_func([data, topi.nn.adaptive_pool(data, out, op)]))
    reduce = [b for b in blocks if b.is_reduction]
    assert len(reduce) == 1
    # 5 -> 3: windows 2, 3, 2; 7 -> 3: 3, 3, 3; 6 -> 4: 2, 2, 2, 2 (the largest is the extent)
    want = tuple(max(_window(i, n_in, n_out) for i in range(n_out)) for n_in, n_out in zip(size, out))
    assert reduce[0].reduce == want


def test_truly_symbolic_shapes_are_still_refused():
    import tvm
    from tvm import te

    from opscope.workloads.classify import blocks_of

    n = tvm.tirx.Var("n", "int64")
    a = te.placeholder((n, 4), name="A")
    b = te.compute((n, 4), lambda i, j: a[i, j] * 2, name="B")
    with pytest.raises(WorkloadError, match=r"block B: symbolic extent n \(dynamic shapes are not supported\)"):
        blocks_of(te.create_prim_func([a, b]))


#: Every zoo model at a small size; bert's seq_len equals its head dim (hidden / heads = 64), so
#: its logit and attend operators share one function, the case whose cache entries never hit.
SMALL = {
    "alexnet": {"image_size": 64}, "vgg16": {"image_size": 64}, "resnet18": {"image_size": 64},
    "resnet50": {"image_size": 64}, "mobilenet_v2": {"image_size": 64},
    "mlp": {"in_features": 32, "hidden": 32, "layers": 1},
    "bert": {"seq_len": 64, "heads": 2, "hidden": 128, "ff": 256, "layers": 1},
    "gpt2": {"seq_len": 64, "heads": 2, "hidden": 128, "ff": 256, "layers": 1},
}


def test_small_sizes_cover_the_whole_zoo():
    from opscope.workloads import list_models

    assert sorted(SMALL) == sorted(list_models())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_zoo_model_round_trips_through_the_cache(name, tmp_path, monkeypatch):
    from opscope.workloads import cache, load

    monkeypatch.setenv("OPSCOPE_CACHE_DIR", str(tmp_path))
    first = load.load_model(name, **SMALL[name])
    entries = list((tmp_path / "workloads").glob("*[0-9a-f].json"))
    assert len(entries) == 1

    def rebuilt(*_a, **_k):
        raise AssertionError("the model was rebuilt instead of coming from the cache")

    monkeypatch.setattr(load, "_finish", rebuilt)
    again = load.load_model(name, **SMALL[name])
    assert [op.key for op in again.operators] == [op.key for op in first.operators]
    assert [op.name for op in again.operators] == [op.name for op in first.operators]
    assert all(op.prim_func is not None for op in again.operators)
    meta = json.loads(entries[0].read_text())
    names = cache.prim_func_names(first.ir_module)
    assert [e["prim_func"] for e in meta["operators"]] == [names[op.key] for op in first.operators]
    if name == "bert":  # the shared kernel: operator names that are not function names
        assert {"matmul1_logit", "matmul1_attend"} <= {op.name for op in first.operators}
        assert {e["prim_func"] for e in meta["operators"] if e["operator"]["name"].endswith("_logit")} == {"matmul1"}


def test_analyze_takes_param_and_batch_size(tmp_path, capsys):
    import pandas as pd

    # mlp with in_features=32, hidden=16, layers=2 (32 -> 16 -> 10) at batch 2: two dense layers,
    # 2 FLOPs per MAC: 2 * 2 * (32*16 + 16*10) = 2688
    out = tmp_path / "t.csv"
    assert main(["analyze", "--model", "mlp", "--target", "h100", "--param", "in_features=32",
                 "--param", "hidden=16", "--param", "layers=2", "--batch-size", "2", "--out", str(out)]) == 0
    assert "batch 2" in capsys.readouterr().out
    table = pd.read_csv(out)
    dense = table[table["kind"] == "dense"]
    assert sorted(dense["flops"]) == [2 * 2 * 16 * 10, 2 * 2 * 32 * 16]
    assert main(["analyze", "--model", "mlp", "--target", "h100", "--param", "depth=3"]) == 2
    assert "model 'mlp' has no parameter 'depth'" in capsys.readouterr().err


def test_models_show_takes_param(capsys):
    assert main(["models", "--show", "mlp", "--param", "in_features=32", "--param", "hidden=16",
                 "--param", "layers=2"]) == 0
    out = capsys.readouterr().out
    assert "i[1, 32] w[32, 16]" in out and "i[1, 16] w[16, 10]" in out
