"""Golden numbers for the mapping search and register traffic, computed by hand here.

The layer is VGG-16's conv1 (3 -> 64 channels, 224 x 224 output, 3 x 3 filter, input given padded,
226 x 226) in float16 on eyeriss-like: 12 x 14 PEs, 520 B of registers per PE, 108 KB buffer; unit
costs per 16-bit word: MAC 1, RF 1, array 2, GLB 6, DRAM 200 (pJ).
"""

from __future__ import annotations

import pytest

from opscope.analytical import AnalysisOptions, estimate
from opscope.analytical.layer import layer_shape
from opscope.analytical.search import Costing, search
from opscope.targets import load_target
from opscope.targets.spec import MemoryLevel, PEArray, TargetSpec
from opscope.workloads.layer_table import conv_op, dense_op

EYERISS = load_target("eyeriss-like")
K, C, P, R = 64, 3, 224, 3
Y = P + R - 1  # 226: the padded input
MACS = K * C * P * P * R * R  # 86,704,128


def conv1():
    return conv_op("conv1", 1, K, C, Y, Y, R, R, stride=1, padding=0, groups=1, dtype="float16",
                   source="table", model="t")


def test_registers_are_read_per_mac_operand():
    e = estimate(conv1(), EYERISS)
    # row-stationary: input, weight, partial-sum read and write: 4 words of 2 B per MAC
    assert e.bytes_moved["RF"] == MACS * 4 * 2
    assert e.energy_by_part["RF"] == pytest.approx(MACS * 4 * 2 * 0.5e-12)
    assert e.energy_by_part["mac"] == pytest.approx(MACS * 1.0e-12)
    for name, words in (("weight-stationary", 1), ("output-stationary", 2)):
        other = estimate(conv1(), EYERISS, AnalysisOptions(dataflow=name))
        assert other.bytes_moved["RF"] == MACS * words * 2
    # without a mapping the registers are still charged per MAC operand, not per compulsory byte
    plain = estimate(conv1(), EYERISS, AnalysisOptions(mapping="none"))
    assert plain.bytes_moved["RF"] == MACS * 4 * 2
    assert plain.bytes_moved["DRAM"] == conv1().bytes


def test_vgg_conv1_mapping_traffic_and_energy_by_hand():
    e = estimate(conv1(), EYERISS)
    m = e.mapping
    # The mapping: filter rows r (3) and output rows p (4 x 14 = 56) on the array; each PE runs the
    # 1-D convolution of a whole row (q 224, s 3) for all 3 input channels; the buffer holds k 64;
    # off-chip, the 4 strips of 56 output rows go one after another; inputs and outputs bypass the GLB.
    assert dict(m.height) == {"p": 4, "r": 3} and dict(m.width) == {"p": 14}
    assert dict(m.pe_tile) == {"c": 3, "q": 224, "s": 3}
    assert m.buffer_order == ("k",) and m.offchip_order == ("p",) and m.bypass == ("input", "output")
    assert m.utilization == 1.0
    pes = 12 * 14
    strips, ks = 4, 64  # loops above the PEs: p strips (off-chip) > k (buffer)
    # per-PE tiles (words): weight c3 x s3; input c3 x 1 row x 226; output one row of 224
    weight_deliveries = 3 * 3 * (ks * strips)      # the weight changes with every k and strip
    input_deliveries = 3 * 226 * strips            # inputs ignore k: resident while k runs
    output_deliveries = 224 * (2 * ks * strips - ks * strips)  # each partial row written once, never revisited
    array_words = (weight_deliveries + input_deliveries + output_deliveries) * pes
    assert array_words == 10_476_480
    assert e.array_bytes == array_words * 2
    glb_words = 3 * 3 * 3 * ks * strips            # array tile of weights (c3 r3 s3), once per k and strip
    assert e.bytes_moved["GLB"] == glb_words * 2
    dram_words = (K * C * R * R                    # weights fill the GLB once (they ignore p)
                  + strips * 3 * (56 + 2) * 226    # input strips of 56 + 2 halo rows, straight to the PEs
                  + K * P * P)                     # outputs once
    assert dram_words == 3_370_288
    assert e.bytes_moved["DRAM"] == dram_words * 2
    pj = MACS * 1 + MACS * 4 * 1 + array_words * 2 + glb_words * 6 + dram_words * 200
    assert e.energy_j == pytest.approx(pj * 1e-12)
    assert sum(e.energy_by_part.values()) == pytest.approx(e.energy_j)
    # compute: every PE busy for MACS / 168 steps at 200 MHz
    assert e.compute_s == pytest.approx(MACS / pes / 200e6)


def test_one_pe_that_holds_everything_moves_each_tensor_once():
    # a 4 x 8 dense layer on one PE whose registers hold all of it: each tensor crosses every level
    # once, and going straight from DRAM to the PE is cheaper than through the buffer
    spec = TargetSpec(name="one", kind="accelerator", frequency_hz=1e9, pe_array=PEArray(1, 1, 1, bus_energy_pj_per_byte=1.0),
                      memory=(MemoryLevel("RF", 1024, 1e12, 0.5, in_pe=True), MemoryLevel("SRAM", 1 << 20, 1e11, 3.0),
                              MemoryLevel("DRAM", None, 1e10, 100.0)),
                      energy_pj_per_mac=1.0, dataflow="output-stationary")
    op = dense_op("fc", 1, 4, 8, "float16", source="table", model="t")
    e = estimate(op, spec)
    compulsory = 2 * (8 + 4 * 8 + 4)
    assert e.bytes_moved["DRAM"] == compulsory and e.array_bytes == compulsory
    assert e.bytes_moved["SRAM"] == 0 and set(e.mapping.bypass) == {"input", "weight", "output"}
    macs = 4 * 8
    assert e.bytes_moved["RF"] == macs * 2 * 2  # output-stationary: partial sum read and write
    assert e.energy_j == pytest.approx((macs * 1.0 + macs * 4 * 0.5 + compulsory * (1.0 + 100.0)) * 1e-12)
    assert e.latency_s == pytest.approx(max(e.compute_s, compulsory / 1e10))
    assert e.compute_s == pytest.approx(macs / 1e9)  # one PE, one MAC per cycle


def test_search_is_cached_per_layer_shape_and_spec():
    op = conv1()
    costing = Costing(peak_flops=EYERISS.peak_for("float16"), flops_factor=1.0, fixed_compute_s=None)
    first = search(layer_shape(op, {}), EYERISS, costing, ("row-stationary",))
    renamed = conv_op("other", 1, K, C, Y, Y, R, R, stride=1, padding=0, groups=1, dtype="float16",
                      source="table", model="u")
    assert search(layer_shape(renamed, {}), EYERISS, costing, ("row-stationary",)) is first


def _vgg(c, k, p):
    y = p + R - 1
    return conv_op("conv", 1, k, c, y, y, R, R, stride=1, padding=0, groups=1, dtype="float16",
                   source="table", model="t")


def test_row_stationary_folded_puts_only_output_rows_on_a_height_they_fill():
    # eyeriss-like: 12 x 14 PEs; the 3 filter rows take the height first, leaving 12 // 3 = 4.
    # VGG conv6 (256 -> 256, 56 x 56): its output rows folded over the width need ceil(56 / 14) = 4
    # of that height, all of it, so nn_dataflow's rule leaves nothing for channels.
    folded = estimate(_vgg(256, 256, 56), EYERISS, AnalysisOptions(dataflow="row-stationary-folded")).mapping
    assert dict(folded.height) == {"p": 4, "r": 3} and dict(folded.width) == {"p": 14}
    free = estimate(_vgg(256, 256, 56), EYERISS, AnalysisOptions(dataflow="row-stationary")).mapping
    assert {loop for loop, f in free.height if f > 1} - {"p", "r"}  # free search spreads channels there too
    assert free.energy_j <= folded.energy_j
    assert dict(free.traffic)["DRAM"] < dict(folded.traffic)["DRAM"]
    # VGG conv9 (512 -> 512, 28 x 28): ceil(28 / 14) = 2 < 4, so the rule does not bite and the two
    # dataflows choose the same mapping
    a = estimate(_vgg(512, 512, 28), EYERISS, AnalysisOptions(dataflow="row-stationary-folded")).mapping
    b = estimate(_vgg(512, 512, 28), EYERISS, AnalysisOptions(dataflow="row-stationary")).mapping
    assert a.energy_j == pytest.approx(b.energy_j) and a.traffic == b.traffic and a.height == b.height


def test_searched_dataflows_leave_out_the_folded_subset():
    # the search with no dataflow named tries row-, weight- and output-stationary only
    from opscope.targets.spec import DATAFLOWS, SEARCHED_DATAFLOWS

    assert SEARCHED_DATAFLOWS == ("row-stationary", "weight-stationary", "output-stationary")
    assert "row-stationary-folded" in DATAFLOWS and "row-stationary-folded" not in SEARCHED_DATAFLOWS
    spec = EYERISS.__class__(**{**EYERISS.__dict__, "dataflow": None})
    assert estimate(_vgg(256, 256, 56), spec).mapping.dataflow in SEARCHED_DATAFLOWS
