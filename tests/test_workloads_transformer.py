"""BERT and GPT-2 through TVM Relax: attention tagging, GEMM shapes and counts by hand."""

from __future__ import annotations

import pytest

from opscope.workloads import load_model

# a small BERT: 2 layers, 3 heads of 8, sequence 12, FF 40 (import time does not need the full size)
S, H, D, FF, LAYERS = 12, 3, 8, 40, 2
HID = H * D


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("workload-cache")))
        yield


@pytest.fixture(scope="module")
def bert():
    return load_model("bert", batch_size=2, seq_len=S, heads=H, hidden=HID, ff=FF, layers=LAYERS)


def _attention(work, role):
    ops = [op for op in work.operators if op.attr("attention") == role]
    assert len(ops) == 1, [op.name for op in work.operators]
    return ops[0]


def test_bert_attention_logit(bert):
    logit = _attention(bert, "logit")
    assert logit.kind == "batch_matmul"
    assert (logit.attr("seq_len"), logit.attr("heads"), logit.attr("head_dim")) == (S, H, D)
    # Q.K^T per (batch, head): S x S outputs, each a dot product of length D
    assert logit.flops == 2 * (2 * H) * S * S * D
    assert (logit.gemm.batch, logit.gemm.m, logit.gemm.n, logit.gemm.k) == (2 * H, S, S, D)
    assert logit.loops == (("b", 2 * H), ("m", S), ("n", S), ("k", D))
    assert logit.count == LAYERS
    assert all(t.role != "weight" for t in logit.tensors)


def test_bert_attention_attend(bert):
    attend = _attention(bert, "attend")
    assert attend.kind == "batch_matmul"
    assert (attend.attr("seq_len"), attend.attr("heads"), attend.attr("head_dim")) == (S, H, D)
    # P.V per (batch, head): S x D outputs, each a dot product of length S
    assert attend.flops == 2 * (2 * H) * S * D * S
    assert attend.count == LAYERS


def test_bert_dense_layers_and_counts(bert):
    dense = [op for op in bert.operators if op.kind == "dense"]
    by_shape = {(op.gemm.m, op.gemm.n, op.gemm.k): op.count for op in dense}
    tokens = 2 * S
    assert by_shape[(tokens, HID, HID)] == 4 * LAYERS     # q, k, v and output projections
    assert by_shape[(tokens, FF, HID)] == LAYERS          # FF up
    assert by_shape[(tokens, HID, FF)] == LAYERS          # FF down
    assert sum(op.count for op in bert.operators if op.kind == "softmax") == LAYERS
    assert sum(op.count for op in bert.operators if op.kind == "layernorm") == 2 * LAYERS
    total_gemm = sum(op.flops * op.count for op in dense)
    assert total_gemm == LAYERS * 2 * tokens * (4 * HID * HID + 2 * HID * FF)


def test_bert_layernorm_and_no_other_kinds(bert):
    ln = next(op for op in bert.operators if op.kind == "layernorm")
    assert ln.tensors_of("input")[0].shape == (2, S, HID)
    assert [t.shape for t in ln.tensors_of("weight")] == [(HID,), (HID,)]
    assert all(op.kind != "other" for op in bert.operators)


def test_gpt2_causal_block():
    work = load_model("gpt2", seq_len=S, heads=H, hidden=HID, ff=FF)
    logit = _attention(work, "logit")
    attend = _attention(work, "attend")
    assert logit.count == attend.count == 1
    assert (logit.gemm.batch, logit.gemm.m, logit.gemm.n, logit.gemm.k) == (H, S, S, D)
    assert attend.flops == 2 * H * S * D * S
    # the causal mask is a model constant: the masking kernel reads it as a weight
    masking = [op for op in work.operators if any(t.dtype == "bool" for t in op.tensors)]
    assert len(masking) == 1 and masking[0].kind == "elementwise"
    assert all(t.role == "weight" for t in masking[0].tensors if t.dtype == "bool")
    kinds = [op.kind for op in work.operators]
    assert kinds.count("softmax") == 1 and kinds.count("layernorm") == 1
    assert sum(op.count for op in work.operators if op.kind == "layernorm") == 2


def test_torch_attention_module_takes_its_batch_from_the_inputs():
    import torch

    from opscope.errors import OpscopeError
    from opscope.workloads.zoo.transformer import SelfAttention

    attn = SelfAttention(hidden=16, heads=4, causal=False, seq_len=6).eval()
    x = torch.randn(2, 6, 16)
    work = load_model(attn, example_inputs=(x,))
    assert work.params["batch_size"] == 2
    logit = _attention(work, "logit")
    assert (logit.attr("heads"), logit.attr("seq_len"), logit.attr("head_dim")) == (4, 6, 4)
    with pytest.raises(OpscopeError, match="batch_size=3 does not match"):
        load_model(attn, batch_size=3, example_inputs=(x,))


def test_logit_and_attend_stay_apart_when_seq_len_equals_head_dim():
    # With seq_len == head_dim, Q.K^T ([S x D] x [D x S]) and P.V ([S x S] x [S x D]) are the same
    # kernel; they must remain two operators (same kernel key) so attention variants apply to each.
    d = 8
    work = load_model("bert", batch_size=1, seq_len=d, heads=2, hidden=2 * d, ff=24, layers=2)
    logit, attend = _attention(work, "logit"), _attention(work, "attend")
    assert logit.key == attend.key
    assert logit.name != attend.name
    assert logit.count == attend.count == 2
    assert logit.flops == attend.flops == 2 * 2 * d * d * d
