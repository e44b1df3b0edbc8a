"""Fork-join regions: hand-made graphs with known branches, and a real fused Relax module."""

from __future__ import annotations

import pytest

from opscope.corun.branches import _Node, find_regions, regions_from_nodes


def n(name, func, *inputs):
    return _Node(name, func, tuple(inputs))


def test_downsample_block():
    # x -> conv_a -> relu -> conv_b -> add(., ds) ; x -> ds_conv -> add
    nodes = [n("a", "conv_a", "x"), n("r", "relu", "a"), n("b", "conv_b", "r"),
             n("d", "ds_conv", "x"), n("j", "add", "b", "d"), n("y", "dense", "j")]
    (region,) = regions_from_nodes(nodes)
    assert region.fork == "x" and region.join == "j"
    assert sorted(b.funcs for b in region.branches) == [("conv_a", "relu", "conv_b"), ("ds_conv",)]


def test_identity_shortcut_is_not_a_region():
    # x -> conv -> add(., x): the shortcut branch is empty, nothing runs beside the conv
    nodes = [n("a", "conv", "x"), n("j", "add", "a", "x")]
    assert regions_from_nodes(nodes) == []


def test_qkv_projections_with_partial_joins():
    # q and k meet at the logit matmul, v only at the attend matmul: the exclusive parts of each
    # branch are its projection and reshape; logit/softmax (reached from q and k) belong to none.
    nodes = [n("q", "dense_q", "x"), n("qr", "reshape", "q"),
             n("k", "dense_k", "x"), n("kr", "reshape_t", "k"),
             n("v", "dense_v", "x"), n("vr", "reshape", "v"),
             n("s", "logit", "qr", "kr"), n("p", "softmax", "s"), n("o", "attend", "p", "vr"),
             n("res", "add", "o", "x")]
    (region,) = regions_from_nodes(nodes)
    assert region.join == "res"
    assert sorted(b.funcs for b in region.branches) == [
        ("dense_k", "reshape_t"), ("dense_q", "reshape"), ("dense_v", "reshape")]


def test_repeated_blocks_are_counted_once():
    def block(p, x):
        return [n(f"{p}a", "conv_a", x), n(f"{p}d", "ds", x), n(f"{p}j", "add", f"{p}a", f"{p}d")]
    nodes = block("1", "x") + block("2", "1j")
    (region,) = regions_from_nodes(nodes)
    assert region.count == 2


def test_branch_without_join_is_ignored():
    # two outputs that never meet (multi-output model): no join, no region
    nodes = [n("a", "head1", "x"), n("b", "head2", "x")]
    assert regions_from_nodes(nodes) == []


@pytest.mark.slow
def test_regions_of_a_real_fused_relax_module():
    import torch
    import tvm
    from torch import nn
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    class Down(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1)
            self.ds = nn.Conv2d(4, 8, 1, stride=2)

        def forward(self, x):
            return torch.relu(self.c2(torch.relu(self.c1(x))) + self.ds(x))

    ep = torch.export.export(Down().eval(), (torch.randn(1, 4, 8, 8),))
    mod, _ = relax.frontend.detach_params(from_exported_program(ep, keep_params_as_input=True))
    mod = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                    relax.transform.FuseOps(), relax.transform.FuseTIR()])(mod)
    (region,) = find_regions(mod)
    lengths = sorted(len(b.funcs) for b in region.branches)
    # the shortcut is one fused kernel (conv + bias); the main path at least the first conv
    assert len(region.branches) == 2 and lengths[0] == 1
    names = [f for b in region.branches for f in b.funcs]
    assert all(isinstance(mod[f], tvm.tirx.PrimFunc) for f in names)
