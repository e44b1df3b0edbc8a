"""Laws of the mapping search (ZigZag issue 52), as hypothesis properties over random layers and specs.

- a larger buffer or register file never raises the best mapping's energy (objective energy), nor,
  on a spec whose only energy is off-chip, its off-chip traffic;
- more PEs (instances, height, width) never raise the best latency (objective latency, a named
  dataflow: the mapping sets the compute time);
- off-chip traffic is never below the compulsory bytes (every tensor comes from off-chip once; a
  strided convolution whose stride exceeds its filter never reads the pixels it skips);
- the chosen mapping's cost is the estimate's: energy parts add up, latency is the max of the terms.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from opscope.analytical import AnalysisOptions, estimate
from opscope.targets.spec import DATAFLOWS, MemoryLevel, PEArray, TargetSpec
from opscope.workloads.layer_table import conv_op, dense_op

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def layers(draw):
    if draw(st.booleans()):
        return dense_op("fc", draw(st.integers(1, 8)), draw(st.integers(1, 96)), draw(st.integers(1, 96)),
                        "float16", source="table", model="t")
    k, c = draw(st.integers(1, 32)), draw(st.integers(1, 32))
    r = draw(st.sampled_from([1, 3]))
    y = draw(st.integers(r, 20))
    groups = draw(st.sampled_from([1, c])) if k % c == 0 else 1
    return conv_op("conv", draw(st.integers(1, 2)), k, c, y, y, r, r, stride=draw(st.sampled_from([1, 2])),
                   padding=0, groups=groups, dtype="float16", source="table", model="t")


@st.composite
def specs(draw, energies=True, dataflows=DATAFLOWS):
    pe = PEArray(draw(st.integers(1, 2)), draw(st.integers(3, 8)), draw(st.integers(1, 8)),
                 bus_energy_pj_per_byte=1.0 if energies else None)
    regs = MemoryLevel("RF", draw(st.integers(64, 512)), 1e12, 0.5 if energies else None, in_pe=True)
    buf = MemoryLevel("GLB", draw(st.integers(1 << 10, 1 << 16)), draw(st.floats(1e9, 1e11)), 3.0 if energies else None)
    dram = MemoryLevel("DRAM", None, draw(st.floats(1e8, 1e10)), 100.0)
    return TargetSpec(name="acc", kind="accelerator", frequency_hz=2e8, pe_array=pe, memory=(regs, buf, dram),
                      energy_pj_per_mac=1.0 if energies else None, dataflow=draw(st.sampled_from(dataflows)))


def _grow(spec, level, k):
    mem = list(spec.memory)
    mem[level] = replace(mem[level], size_bytes=mem[level].size_bytes * k)
    return replace(spec, memory=tuple(mem))


@SETTINGS
@given(op=layers(), spec=specs(dataflows=(*DATAFLOWS, None)), level=st.sampled_from([0, 1]), k=st.integers(2, 16),
       double=st.booleans())
def test_a_larger_memory_never_raises_the_best_energy(op, spec, level, k, double):
    opts = AnalysisOptions(double_buffer=double)
    before, after = estimate(op, spec, opts), estimate(op, _grow(spec, level, k), opts)
    assert after.energy_j <= before.energy_j * (1 + 1e-12)


@SETTINGS
@given(op=layers(), spec=specs(energies=False), k=st.integers(2, 16))
def test_a_larger_buffer_never_raises_offchip_traffic_when_only_offchip_costs_energy(op, spec, k):
    before, after = estimate(op, spec), estimate(op, _grow(spec, 1, k))
    assert after.bytes_moved["DRAM"] <= before.bytes_moved["DRAM"] * (1 + 1e-12)


@SETTINGS
@given(op=layers(), spec=specs(), which=st.sampled_from(["instances", "height", "width"]), extra=st.integers(1, 6))
def test_more_pes_never_raise_the_best_latency(op, spec, which, extra):
    opts = AnalysisOptions(objective="latency")
    more = replace(spec, pe_array=replace(spec.pe_array, **{which: getattr(spec.pe_array, which) + extra}))
    assert estimate(op, more, opts).latency_s <= estimate(op, spec, opts).latency_s * (1 + 1e-12)


@SETTINGS
@given(op=layers(), spec=specs(), objective=st.sampled_from(["energy", "latency", "edp"]))
def test_offchip_traffic_is_at_least_compulsory_and_the_costs_add_up(op, spec, objective):
    e = estimate(op, spec, AnalysisOptions(objective=objective))
    assert e.mapping is not None
    stride, r = op.attr("stride", (1, 1))[0], op.attr("kernel", (1, 1))[0]
    compulsory = op.bytes if stride <= r else op.bytes - op.bytes_of("input")
    assert e.bytes_moved["DRAM"] >= compulsory * (1 - 1e-12)
    assert sum(e.energy_by_part.values()) == e.energy_j
    assert abs(e.mapping.energy_j - e.energy_j) <= 1e-9 * e.energy_j
    terms = [e.compute_s, *e.memory_s.values()]
    assert e.latency_s == max(terms)
    assert 0 < e.pe_utilization <= 1
