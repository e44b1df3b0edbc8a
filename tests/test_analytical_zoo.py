"""The analytical model on operators imported through TVM Relax from the model zoo."""

from __future__ import annotations

import pytest

from opscope.analytical import AnalysisOptions, analyze_model, analyze_operators
from opscope.analytical.frame import load_operators
from opscope.errors import OpscopeError

pytest.importorskip("tvm")
workloads = pytest.importorskip("opscope.workloads")
if not hasattr(workloads, "load_model"):
    pytest.skip("model import not in this build", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bert_ops():
    return load_operators("bert", seq_len=32)


def test_bert_attention_rows_and_variants(bert_ops):
    logits = [op for op in bert_ops if op.attr("attention") == "logit"]
    attends = [op for op in bert_ops if op.attr("attention") == "attend"]
    assert logits and attends
    base = analyze_operators(bert_ops, "tpuv4-like")
    # seq_len reached the zoo: the logit is (heads) x 32 x 32 x head_dim per layer
    heads, dh = logits[0].attr("heads"), logits[0].attr("head_dim")
    assert logits[0].flops == 2 * heads * 32 * 32 * dh
    totals = {m: analyze_operators(bert_ops, "tpuv4-like", AnalysisOptions(attention=m)).iloc[-1]
              for m in ("sparse", "lowrank", "kernel")}
    attn_flops = sum(op.flops * op.count for op in logits + attends)
    # sparse keeps 10% of the scores: the attention FLOPs shrink by 90%
    assert base.iloc[-1].flops_executed - totals["sparse"].flops_executed == pytest.approx(0.9 * attn_flops)
    assert totals["lowrank"].flops != base.iloc[-1].flops
    assert totals["kernel"].flops != base.iloc[-1].flops
    assert set(base["bound"].iloc[:-1]) <= {"compute", "onchip", "offchip"}


def test_mlp_zoo_model_and_option_errors():
    df = analyze_model("mlp", "h100", batch_size=4)
    assert df.iloc[-1].op == "TOTAL" and (df["kind"] == "dense").any()
    with pytest.raises(OpscopeError, match="no attention operators"):
        analyze_model("mlp", "h100", options=AnalysisOptions(attention="kernel"))
    with pytest.raises(OpscopeError, match="unknown model"):
        analyze_model("no-such-model", "h100")
