"""Operator spaces: parsing, seeded draws fitted to real layers, and operators built like imported ones."""

from __future__ import annotations

import math

import pytest

from opscope.errors import OpscopeError
from opscope.workloads.space import (
    DEFAULT_SPACE,
    EDGES_SPACE,
    MAX_BYTES,
    SPACE_MODEL,
    Layer,
    draw_layers,
    parse_space,
    space_operators,
)

#: a small reference set, so that drawing needs no torch
REFS = {
    "conv2d": [{"c": 64, "k": 64, "h": 56, "w": 56, "r": 3, "stride": 1},
               {"c": 3, "k": 64, "h": 224, "w": 224, "r": 7, "stride": 2},
               {"c": 256, "k": 512, "h": 28, "w": 28, "r": 1, "stride": 2}],
    "dense": [{"m": 128, "n": 768, "k": 768}, {"m": 1, "n": 1000, "k": 512}],
    "batch_matmul": [{"b": 12, "m": 128, "n": 128, "k": 64}],
}


def test_parse_space_default_counts_and_bad_tokens():
    assert parse_space("default") == DEFAULT_SPACE
    assert sum(n for _, n in DEFAULT_SPACE) == 420 and len(DEFAULT_SPACE) >= 5
    assert parse_space("conv2d:200, dense:150,conv2d:5") == (("conv2d", 205), ("dense", 150))
    with pytest.raises(OpscopeError, match="unknown kind 'convv2d' in 'convv2d:3'"):
        parse_space("convv2d:3,dense:2")
    for bad in ("dense", "dense:0", "dense:x", "dense:-4"):
        with pytest.raises(OpscopeError, match=f"{bad!r} needs a positive count"):
            parse_space(bad)
    with pytest.raises(OpscopeError, match="give 'default', 'edges' or kind:count"):
        parse_space(" , ")


def test_parse_space_named_spaces_and_bands():
    assert parse_space("edges") == EDGES_SPACE
    assert sum(n for _, n in EDGES_SPACE) == 168
    mixed = dict(parse_space("default,edges,dense/large:2"))
    assert mixed["conv2d"] == 160 and mixed["conv2d/nice"] == 40 and mixed["dense/large"] == 32
    with pytest.raises(OpscopeError, match="unknown band 'huge' in 'dense/huge:3'"):
        parse_space("dense/huge:3")
    with pytest.raises(OpscopeError, match="'conv2d/large:2': the 'large' band is drawn for dense only"):
        parse_space("conv2d/large:2")


def test_nice_rounding_by_hand():
    from opscope.workloads.space import _nice

    # 1264 lies between 1024 and 1536 (3 x 512): ln(1264/1024) = 0.211 > ln(1536/1264) = 0.195
    assert _nice(1264, 8) == 1536
    # 700: 768 (3 x 256) is nearer than 512 or 896 (7 x 128): ln(768/700) = 0.093, ln(700/512) = 0.313
    assert _nice(700, 16) == 768
    # sizes: 12 (3 x 4) for 11, ln(12/11) = 0.087; 16 for 15, ln(16/15) = 0.065 < ln(15/14) = 0.069
    assert _nice(3, 8) == 8 and _nice(11, 2) == 12 and _nice(15, 2) == 16


def test_bands_hold_their_bounds_and_leave_the_default_draws_alone():
    from opscope.workloads.space import _NICE, LARGE_MAX_BYTES, MIN_FLOPS, SMALL_MIN_FLOPS

    refs = dict(REFS, dense=REFS["dense"] + [{"m": 1, "n": 4096, "k": 25088}])
    plain = draw_layers((("conv2d", 6), ("dense", 4)), 3, refs)
    mixed = draw_layers((("conv2d", 6), ("conv2d/nice", 5), ("dense", 4), ("dense/small", 5),
                         ("dense/large", 5), ("conv2d/small", 4)), 3, refs)
    # a kind's default band is drawn from its own seeded stream: adding bands changes none of its layers
    assert [x for x in mixed if x in plain] == plain
    rest = [x for x in mixed if x not in plain]
    assert len(rest) == 19 and len(set(mixed)) == len(mixed)
    nice, small, large = rest[:5], rest[5:10] + rest[15:], rest[10:15]
    for layer in nice:
        d = dict(layer.params)
        assert all(d[k] in _NICE for k in ("k", "h")) and (d["c"] == 3 or d["c"] in _NICE)
        assert MIN_FLOPS <= layer.flops <= 0.5e9
    assert all(SMALL_MIN_FLOPS <= x.flops < MIN_FLOPS for x in small)
    for layer in large:
        d = dict(layer.params)
        assert layer.kind == "dense" and d["m"] <= 8 and MAX_BYTES < layer.elements * 4 <= LARGE_MAX_BYTES
        assert d["n"] in _NICE and d["k"] in _NICE


def test_tiny_band_spans_its_range_and_leaves_small_alone():
    from opscope.workloads.space import TINY_FLOPS

    small = (("dense/small", 6), ("conv2d/small", 4))
    before = draw_layers(small, 5, REFS)
    tiny = draw_layers((("dense/tiny", 24), ("conv2d/tiny", 8)), 5, REFS)
    # adding a tiny band leaves the small band's draws as they were
    assert [x for x in draw_layers(small + (("dense/tiny", 3),), 5, REFS) if x in before] == before
    assert len(set(tiny)) == 32 and sum(x.kind == "dense" for x in tiny) == 24
    assert all(TINY_FLOPS[0] <= x.flops < TINY_FLOPS[1] for x in tiny)
    # each draw is shrunk under its own bound, log-uniform in (400, 10k): some reach under 2 kFLOP, where a
    # bound of 10k for every draw would leave them all near it
    assert min(x.flops for x in tiny if x.kind == "dense") < 2e3
    with pytest.raises(OpscopeError, match="unknown band 'tinier'"):
        parse_space("dense/tinier:3")


def test_draws_are_seeded_distinct_and_bounded():
    space = (("conv2d", 30), ("dense", 20), ("batch_matmul", 10))
    a, b = draw_layers(space, 7, REFS), draw_layers(space, 7, REFS)
    assert a == b and draw_layers(space, 8, REFS) != a
    assert [sum(layer.kind == k for layer in a) for k, _ in space] == [30, 20, 10]
    assert len(set(a)) == len(a)
    assert all(1e5 <= layer.flops <= 0.5e9 and layer.elements * 4 <= MAX_BYTES for layer in a)
    with pytest.raises(OpscopeError, match="no reference layer of kind 'pool'"):
        draw_layers((("pool", 1),), 0, REFS)


def test_layer_flops_by_hand():
    conv = Layer("conv2d", (("c", 64), ("h", 56), ("k", 128), ("r", 3), ("stride", 2), ("w", 56)), "bn_relu")
    # out 28 x 28 ((56 + 2*1 - 3) // 2 + 1); 2 x K x C x OH x OW x R x S
    assert conv.flops == 2 * 128 * 64 * 28 * 28 * 3 * 3
    dw = Layer("depthwise_conv2d", (("c", 32), ("h", 14), ("k", 32), ("r", 3), ("stride", 1), ("w", 14)))
    assert dw.flops == 2 * 32 * 1 * 14 * 14 * 9
    assert Layer("dense", (("k", 768), ("m", 128), ("n", 3072))).flops == 2 * 128 * 3072 * 768


@pytest.mark.slow
def test_reference_layers_hold_the_zoo_layers():
    from opscope.workloads.space import reference_layers

    refs = reference_layers()
    # resnet18's stem and mobilenet_v2's first depthwise conv, bert's FFN at 128 tokens
    assert {"c": 3, "k": 64, "h": 224, "w": 224, "r": 7, "stride": 2} in refs["conv2d"]
    assert {"c": 32, "k": 32, "h": 112, "w": 112, "r": 3, "stride": 1} in refs["depthwise_conv2d"]
    assert {"m": 128, "n": 3072, "k": 768} in refs["dense"]
    assert {"b": 12, "m": 128, "n": 128, "k": 64} in refs["batch_matmul"]


@pytest.mark.slow
def test_space_operators_are_built_like_imported_ones():
    ops = space_operators("conv2d:2,depthwise_conv2d:1,dense:1,batch_matmul:1,softmax:1", seed=3)
    assert sorted(o.kind for o in ops) == ["batch_matmul", "conv2d", "conv2d", "dense", "depthwise_conv2d",
                                           "softmax"]
    assert len({o.key for o in ops}) == len(ops) and all(len(o.key) == 16 for o in ops)
    assert all(o.models == (SPACE_MODEL,) and o.prim_func is not None for o in ops)
    assert all(op.name.startswith(f"space_{op.kind}_") for op in ops)  # names carry the drawn layer
    conv = next(o for o in ops if o.kind == "conv2d")
    d = {t.name: t.shape for t in conv.tensors}
    assert conv.gemm is not None and conv.flops == 2 * conv.gemm.m * conv.gemm.n * conv.gemm.k
    assert conv.attr("groups") == 1 and len(d) >= 3


def test_layer_labels_round_trip():
    for layer in draw_layers((("conv2d", 5), ("dense", 5), ("batch_matmul", 5)), 1, REFS):
        assert Layer.from_label(layer.label) == layer
    with pytest.raises(OpscopeError, match="does not name a layer"):
        Layer.from_label("gemm_m1")


def test_adaptive_layers_are_drawn_near_the_operators_the_predictor_gets_wrong():
    from dataclasses import replace

    from opscope.predictor.frames import operator_frame
    from opscope.workloads.layer_table import conv_op
    from opscope.workloads.space import adaptive_layers

    ops, surprised = [], set()
    for i in range(24):
        c, h = 16 * (1 + i % 6), 14 + 4 * (i // 6)
        layer = Layer("conv2d", (("c", c), ("h", h), ("k", 64), ("r", 3), ("stride", 1), ("w", h)), "bn")
        op = conv_op(layer.label, 1, 64, c, h, h, 3, 3, 1, 1, 1, "float32", "table", SPACE_MODEL)
        op = replace(op, attrs=tuple(sorted(dict(op.attrs, space=layer.label).items())))
        ops.append(op)
        if i in (3, 10, 17, 22):  # 8x slower than the law, for no reason the features show
            surprised.add(op.key)
    frame = operator_frame(ops, "host", 1)
    frame["latency_min_s"] = [op.flops / 1e10 * (8.0 if op.key in surprised else 1.0) for op in ops]
    new, worst = adaptive_layers(frame, 12, seed=0)
    # a quarter of 24; a random pick of 6 would hold 1 of the 4 surprised operators on average
    assert len(worst) == 6 and len(surprised & set(worst["workload_key"])) >= 3
    bases = [Layer.from_label(lab) for lab in worst["layer"]]
    known = {Layer.from_label(o.attr("space")) for o in ops}
    assert len(new) == 12 and not set(new) & known
    for layer in new:  # each within 2^0.5 of some base in every scaled dimension, kernel and stride kept
        d = dict(layer.params)
        assert any(all(abs(math.log2(d[k] / dict(b.params)[k])) <= 0.5 + 0.2 for k in ("c", "h"))
                   and d["r"] == 3 and d["stride"] == 1 for b in bases)
    with pytest.raises(OpscopeError, match="at least 10 space operators"):
        adaptive_layers(frame.iloc[:5], 3)


def test_torch_band_draws_imported_epilogues_and_leaves_other_draws_alone():
    from opscope.workloads.space import _NICE, TORCH_EPILOGUES

    plain = draw_layers((("conv2d", 6),), 5, REFS)
    mixed = draw_layers((("conv2d", 6), ("conv2d/torch", 8)), 5, REFS)
    assert mixed[:6] == plain
    torch_layers = mixed[6:]
    assert len(torch_layers) == 8 and all(x.epilogue in TORCH_EPILOGUES["conv2d"] for x in torch_layers)
    assert all(dict(x.params)["k"] in _NICE for x in torch_layers)  # drawn like the nice band
    assert all(Layer.from_label(x.label) == x for x in torch_layers)
    with pytest.raises(OpscopeError, match="'dense/torch:3': the 'torch' band is drawn for conv2d and "
                                           "depthwise_conv2d only"):
        parse_space("dense/torch:3")


def test_patch_band_draws_non_overlapping_patches_and_leaves_other_draws_alone():
    from opscope.workloads.space import _NICE, PATCH_EPILOGUES, PATCH_SIZES, _out

    plain = draw_layers((("conv2d", 6),), 5, REFS)
    mixed = draw_layers((("conv2d", 6), ("conv2d/patch", 12)), 5, REFS)
    assert mixed[:6] == plain
    patches = mixed[6:]
    assert len(patches) == 12 and all(x.epilogue in PATCH_EPILOGUES for x in patches)
    for x in patches:
        d = dict(x.params)
        assert d["r"] == d["stride"] and d["r"] in PATCH_SIZES and d["h"] == d["w"]
        # no padding, no overlap: (h - r) // r + 1 patches a side, h / r exactly
        assert _out(d["h"], d["r"], d["stride"]) == d["h"] // d["r"] and d["h"] % d["r"] == 0
        assert d["k"] in _NICE and (d["c"] == 3 or d["r"] <= 4)  # large patches embed an image
        assert Layer.from_label(x.label) == x
    with pytest.raises(OpscopeError, match="'dense/patch:3': the 'patch' band is drawn for conv2d only"):
        parse_space("dense/patch:3")


@pytest.mark.slow
def test_torch_band_epilogue_is_batch_norm_as_imported():
    base = "conv2d_c32_h12_k64_r1_stride1_w12"
    ops = space_operators([Layer.from_label(f"{base}_{e}") for e in ("bn", "bnu", "bnu_clip", "bnu_add_relu")])
    out = 64 * 12 * 12
    # the TIR's FLOPs beyond the convolution's, per output element: folded batch norm (multiply, add) 2;
    # unfolded (subtract, divide, multiply, add) 4; + ReLU6 (a max and a min) 6; + residual add + ReLU 6
    assert [(o.attr("tir_flops") - o.flops) / out for o in ops] == [2, 4, 6, 6]
    # the unfolded batch norm's four per-channel vectors are weights, the residual an input
    assert [len(o.tensors) for o in ops] == [5, 7, 7, 8]


def test_lowres_band_scales_sizes_down_to_two_pixels():
    from opscope.workloads.space import TORCH_EPILOGUES

    refs = {"conv2d": [{"c": 512, "k": 512, "h": 7, "w": 7, "r": 3, "stride": 1}]}
    layers = draw_layers((("conv2d/lowres", 12),), 2, refs)
    sizes = {dict(x.params)["h"] for x in layers}
    # 7 px, perturbed by up to 2x either way and rounded as real sizes (3 .. 14), then scaled by
    # 64/224 .. 1: between 2 (the floor) and 14
    assert min(sizes) == 2 and max(sizes) <= 14 and len(sizes) >= 3
    assert all(dict(x.params)["w"] == dict(x.params)["h"] for x in layers)
    assert all(x.epilogue in TORCH_EPILOGUES["conv2d"] for x in layers)
    with pytest.raises(OpscopeError, match="the 'lowres' band is drawn for conv2d and depthwise_conv2d only"):
        parse_space("pool/lowres:2")


def test_act_band_draws_newer_activations_and_depthwise_kernels():
    from opscope.workloads.space import _NICE, ACT_DEPTHWISE_KERNELS, ACT_EPILOGUES

    refs = {**REFS, "depthwise_conv2d": [{"c": 96, "k": 96, "h": 28, "w": 28, "r": 3, "stride": 1}]}
    plain = draw_layers((("conv2d", 4), ("dense", 3)), 1, refs)
    mixed = draw_layers((("conv2d", 4), ("dense", 3), ("conv2d/act", 6), ("depthwise_conv2d/act", 12),
                         ("dense/act", 4)), 1, refs)
    assert mixed[:7] == plain  # the other bands' draws do not move
    act = mixed[7:]
    assert all(x.epilogue in ACT_EPILOGUES[x.kind] for x in act)
    assert all(dict(x.params)["k"] in _NICE for x in act if x.kind != "dense")  # drawn like the nice band
    depthwise = [dict(x.params) for x in act if x.kind == "depthwise_conv2d"]
    # the only reference kernel is 3; the band draws 3, 5 and 7 (12 draws: each at least once, p > 0.99)
    assert {d["r"] for d in depthwise} == set(ACT_DEPTHWISE_KERNELS)
    assert all(d["h"] >= d["r"] for d in depthwise)
    assert all(Layer.from_label(x.label) == x for x in act)
    with pytest.raises(OpscopeError, match="'pool/act:2': the 'act' band is drawn for conv2d, "
                                           "depthwise_conv2d, dense only"):
        parse_space("pool/act:2")


@pytest.mark.slow
def test_act_band_epilogues_call_sigmoid_and_erf():
    from opscope.predictor.features.special import calls_in_script

    names = ("conv2d_c16_h8_k32_r3_stride1_w8_bn_silu", "conv2d_c16_h8_k32_r1_stride1_w8_bias_gelu",
             "dense_k64_m4_n48_bias_gelu")
    ops = space_operators([Layer.from_label(n) for n in names])
    # one sigmoid (SiLU) or erf (GELU) per output element: 32 x 8 x 8 and 4 x 48
    assert [calls_in_script(o.prim_func.script()) for o in ops] == [{"sigmoid": 32 * 8 * 8}, {"erf": 32 * 8 * 8},
                                                                    {"erf": 4 * 48}]
