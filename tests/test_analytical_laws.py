"""The analytical model's monotonic laws, as hypothesis properties.

- more bandwidth or more peak (frequency, PE instances) never increases latency;
- a smaller memory level never decreases modelled traffic or latency for the same mapping
  (ZigZag issue 52: shrinking memories there lowered the modelled load cycles);
- latency is linear in batch when compute-bound (on a flat-peak spec).

These are the laws of the model without a mapping search (``mapping="none"``); the search's own
laws are in test_mapping_laws.py.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from opscope.analytical import AnalysisOptions, estimate
from opscope.targets.spec import MemoryLevel, PEArray, TargetSpec
from opscope.workloads.layer_table import conv_op, dense_op, matmul_op

SETTINGS = settings(max_examples=150, deadline=None)
NONE = AnalysisOptions(mapping="none")

dims = st.integers(min_value=1, max_value=512)
small = st.integers(min_value=1, max_value=64)
scale = st.floats(min_value=1.0, max_value=100.0)


@st.composite
def operators(draw):
    if draw(st.booleans()):
        return dense_op("fc", draw(small), draw(dims), draw(dims), "float32", source="table", model="t")
    k, c = draw(small), draw(small)
    y = draw(st.integers(min_value=3, max_value=40))
    r = draw(st.sampled_from([1, 3, 5]))
    stride = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, c])) if k % c == 0 else 1
    return conv_op("conv", draw(st.integers(1, 4)), k, c, y, y, r, r, stride=stride, padding=r // 2,
                   groups=groups, dtype="float32", source="table", model="t")


@st.composite
def specs(draw):
    levels = (MemoryLevel("L1", 1 << 15, draw(st.floats(1e10, 1e13))),
              MemoryLevel("L2", 1 << 20, draw(st.floats(1e10, 1e13))),
              MemoryLevel("DRAM", None, draw(st.floats(1e9, 1e12))))
    if draw(st.booleans()):
        return TargetSpec(name="flat", kind="cpu", frequency_hz=1e9, memory=levels,
                          peak_flops={"float32": draw(st.floats(1e9, 1e14))})
    pe = PEArray(draw(st.integers(1, 8)), draw(st.sampled_from([4, 8, 16, 128])), draw(st.sampled_from([4, 8, 14, 128])))
    return TargetSpec(name="pe", kind="accelerator", frequency_hz=draw(st.floats(1e8, 2e9)), memory=levels,
                      pe_array=pe)


sparsity = st.one_of(
    st.just(NONE),
    st.builds(lambda a, w, o, c, s: AnalysisOptions(densities=(a, w, o), compress_mem=c, skip_compute=not c or s,
                                                    mapping="none"),
              st.floats(0.05, 1.0), st.floats(0.05, 1.0), st.floats(0.05, 1.0), st.booleans(), st.booleans()),
)


@SETTINGS
@given(op=operators(), spec=specs(), opts=sparsity, level=st.integers(0, 2), k=scale)
def test_more_bandwidth_never_increases_latency(op, spec, opts, level, k):
    mem = list(spec.memory)
    mem[level] = replace(mem[level], bandwidth_Bps=mem[level].bandwidth_Bps * k)
    faster = replace(spec, memory=tuple(mem))
    assert estimate(op, faster, opts).latency_s <= estimate(op, spec, opts).latency_s * (1 + 1e-12)


@SETTINGS
@given(op=operators(), spec=specs(), opts=sparsity, k=scale, extra=st.integers(0, 8))
def test_more_peak_never_increases_latency(op, spec, opts, k, extra):
    if spec.pe_array is None:
        faster = replace(spec, peak_flops={"float32": spec.peak_flops["float32"] * k})
    else:
        faster = replace(spec, frequency_hz=spec.frequency_hz * k)
        more = replace(spec, pe_array=replace(spec.pe_array, instances=spec.pe_array.instances + extra))
        assert estimate(op, more, opts).latency_s <= estimate(op, spec, opts).latency_s * (1 + 1e-12)
    assert estimate(op, faster, opts).latency_s <= estimate(op, spec, opts).latency_s * (1 + 1e-12)


def _tile(draw, extent):
    return draw(st.integers(1, extent))


@st.composite
def tiled_gemms(draw):
    m, n, k = draw(small), draw(small), draw(small)
    op = matmul_op("mm", 1, m, n, k, "float32", "t")
    l1 = {"m": _tile(draw, m), "n": _tile(draw, n), "k": _tile(draw, k)}
    l2 = {name: draw(st.integers(v, ext)) for (name, v), ext in zip(l1.items(), (m, n, k))}
    tiles = {}
    if draw(st.booleans()):
        tiles["L1"] = l1
    if draw(st.booleans()) or not tiles:
        tiles["L2"] = l2
    return op, tiles


@SETTINGS
@given(case=tiled_gemms(), spec=specs(), level=st.integers(0, 1), shrink=st.floats(1.0, 1e4),
       double=st.booleans())
def test_smaller_memory_never_decreases_traffic_or_latency(case, spec, level, shrink, double):
    op, tiles = case
    mem = list(spec.memory)
    big = replace(mem[0], size_bytes=1 << 20), replace(mem[1], size_bytes=1 << 24), mem[2]
    spec = replace(spec, memory=big)
    mem = list(big)
    mem[level] = replace(mem[level], size_bytes=max(1, int(mem[level].size_bytes / shrink)))
    smaller = replace(spec, memory=tuple(mem))
    opts = AnalysisOptions(double_buffer=double, mapping="none")
    before, after = estimate(op, spec, opts, tiles=tiles), estimate(op, smaller, opts, tiles=tiles)
    for name in before.bytes_moved:
        assert after.bytes_moved[name] >= before.bytes_moved[name]
    assert after.latency_s >= before.latency_s * (1 - 1e-12)


@SETTINGS
@given(b=st.integers(1, 16), times=st.integers(2, 8), out=dims, inp=dims, peak=st.floats(1e9, 1e12))
def test_latency_linear_in_batch_when_compute_bound(b, times, out, inp, peak):
    spec = TargetSpec(name="flat", kind="cpu", frequency_hz=1e9, peak_flops={"float32": peak},
                      memory=(MemoryLevel("DRAM", None, 1e15),))
    one = estimate(dense_op("fc", b, out, inp, "float32", source="table", model="t"), spec)
    many = estimate(dense_op("fc", b * times, out, inp, "float32", source="table", model="t"), spec)
    assume(one.bound == "compute" and many.bound == "compute")
    assert abs(many.latency_s - times * one.latency_s) <= 1e-9 * many.latency_s


@SETTINGS
@given(op=operators(), spec=specs())
def test_untiled_traffic_is_compulsory_and_latency_is_the_max(op, spec):
    e = estimate(op, spec, NONE)
    assert all(v == op.bytes for v in e.bytes_moved.values())
    assert e.latency_s == max(e.compute_s, *e.memory_s.values())
    assert 0 < e.pe_utilization <= 1


@SETTINGS
@given(batch=st.integers(1, 4), m=st.floats(0.01, 300), n=st.floats(0.01, 300), k=st.floats(0.01, 300),
       inst=st.integers(1, 8), extra=st.integers(1, 8), h=st.sampled_from([4, 8, 128]), w=st.sampled_from([4, 14, 128]))
def test_more_instances_never_lengthen_the_mapped_gemm(batch, m, n, k, inst, extra, h, w):
    """Cycles = MACs / (utilisation x PEs) must not grow with instances, even for the fractional
    dimensions FRAME's sparsity scaling produces."""
    from opscope.analytical import pe_utilization

    def cycles(i):
        return batch * m * n * k / (pe_utilization(batch, m, n, k, PEArray(i, h, w)) * i * h * w)

    assert cycles(inst + extra) <= cycles(inst) * (1 + 1e-9)
