"""The search's traffic checked against a literal walk of the chosen mapping's loop nest.

For random small layers and specs, the chosen ``Mapping`` is replayed here with plain loops: the
off-chip and buffer loops run in the mapping's orders, a tensor's tile is loaded whenever its index
changes from one iteration to the next, an output tile is written on every load and read back on
every load after its first.  Bytes per level must equal the search's (vectorised, closed-form) ones.
"""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from opscope.analytical import estimate
from opscope.analytical.dataflow import LOOPS
from opscope.analytical.layer import RELEVANT, TENSORS, layer_shape
from opscope.targets.spec import DATAFLOWS, MemoryLevel, PEArray, TargetSpec
from opscope.workloads.layer_table import conv_op, dense_op


@st.composite
def cases(draw):
    if draw(st.booleans()):
        op = dense_op("fc", draw(st.integers(1, 4)), draw(st.integers(1, 48)), draw(st.integers(1, 48)),
                      "float16", source="table", model="t")
    else:
        k, c = draw(st.integers(1, 16)), draw(st.integers(1, 16))
        r = draw(st.sampled_from([1, 3]))
        y = draw(st.integers(r, 12))
        op = conv_op("conv", 1, k, c, y, y, r, r, stride=draw(st.sampled_from([1, 2])), padding=0,
                     groups=draw(st.sampled_from([1, c])) if k % c == 0 else 1, dtype="float16",
                     source="table", model="t")
    pe = PEArray(draw(st.integers(1, 2)), draw(st.integers(3, 6)), draw(st.integers(1, 6)), bus_energy_pj_per_byte=1.0)
    spec = TargetSpec(
        name="acc", kind="accelerator", frequency_hz=2e8, pe_array=pe, energy_pj_per_mac=1.0,
        dataflow=draw(st.sampled_from(DATAFLOWS)),
        memory=(MemoryLevel("RF", draw(st.integers(32, 256)), 1e12, 0.5, in_pe=True),
                MemoryLevel("GLB", draw(st.integers(256, 8192)), 1e10, 3.0), MemoryLevel("DRAM", None, 1e9, 100.0)))
    return op, spec


def walk_loads(order, counts, relevant):
    """Loads of one tensor's tile over the loops ``order`` (outermost first) by replaying them."""
    loads, last, seen = 0, None, set()
    for index in itertools.product(*[range(counts[loop]) for loop in order]):
        key = tuple(i for loop, i in zip(order, index) if loop in relevant)
        if key != last:
            loads += 1
            seen.add(key)
            last = key
    return loads, len(seen)


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_traffic_equals_a_walk_of_the_chosen_mapping(case):
    op, spec = case
    e = estimate(op, spec)
    m = e.mapping
    shape = layer_shape(op, {})
    ext = shape.full()
    sp = {loop: 1 for loop in LOOPS}
    for part in (m.height, m.width, m.instances):
        for loop, f in part:
            sp[loop] *= f
    t0 = {loop: 1 for loop in LOOPS} | dict(m.pe_tile)
    t_buf = {loop: 1 for loop in LOOPS} | dict(m.buffer_tile)
    t1 = {loop: math.ceil(t_buf[loop] / (sp[loop] * t0[loop])) for loop in LOOPS}
    t2 = {loop: math.ceil(ext[loop] / t_buf[loop]) for loop in LOOPS}
    assert all(sp[loop] * t0[loop] * t1[loop] * t2[loop] >= ext[loop] for loop in LOOPS)
    # every loop with more than one step off-chip or in the buffer is named in that level's order
    assert {loop for loop in LOOPS if t2[loop] > 1} == set(m.offchip_order)
    assert {loop for loop in LOOPS if t1[loop] > 1} == set(m.buffer_order)
    tile_array = {loop: min(ext[loop], sp[loop] * t0[loop]) for loop in LOOPS}
    pes = math.prod(sp.values())
    deliver = reads = 0.0
    glb = dram = shape.other_bytes
    for k, x in enumerate(TENSORS):
        eb = shape.elem_bytes[k]
        rel = RELEVANT[x]
        # loops above the PEs: off-chip (t2) then buffer (t1), each in its order; above the buffer: off-chip
        above_pe = [("2" + loop, t2[loop]) for loop in m.offchip_order] + [("1" + loop, t1[loop]) for loop in m.buffer_order]
        names = [name for name, _ in above_pe]
        lp, dp = walk_loads(names, dict(above_pe), {n for n in names if n[1:] in rel})
        lb, db = walk_loads(list(m.offchip_order), t2, rel)
        if x == "output":  # written on every load, read back on every load after the first
            lp, lb = 2 * lp - dp, 2 * lb - db
        d = shape.elems(x, t0) * eb * lp * pes
        a = shape.elems(x, tile_array) * eb * lp
        deliver += d
        if x in m.bypass:
            dram += a
        else:
            reads += a
            glb += a
            dram += shape.elems(x, t_buf) * eb * lb
    assert abs(e.array_bytes - deliver) <= 1e-9 * max(1.0, deliver)
    assert abs(e.bytes_moved["GLB"] - glb) <= 1e-9 * max(1.0, glb)
    assert abs(e.bytes_moved["DRAM"] - dram) <= 1e-9 * max(1.0, dram)
    assert e.bytes_moved["RF"] == op.flops / 2 * {"row-stationary": 4, "weight-stationary": 1,
                                                  "output-stationary": 2, "row-stationary-folded": 4}[m.dataflow] * 2
