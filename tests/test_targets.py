"""Target specs: the shipped files, the validating loader, host detection, saving, TVM targets."""

from __future__ import annotations

import textwrap

import pytest

from opscope.errors import OpscopeError, SpecError
from opscope.targets import (
    MemoryLevel,
    TargetSpec,
    detect_host,
    list_targets,
    load_spec_file,
    load_target,
    save_target,
    tvm_target_dict,
    user_spec_dir,
)

SHIPPED = ("h100", "h200", "tpuv4-like", "eyeriss-like", "pynq-accel")

GOOD = textwrap.dedent("""
    name = "toy"
    kind = "accelerator"
    frequency_hz = 1e9
    [pe_array]
    instances = 2
    height = 4
    width = 8
    [[memory]]
    name = "sram"
    size_bytes = 1024
    bandwidth_Bps = 1e11
    [[memory]]
    name = "dram"
    bandwidth_Bps = 1e10
""")


def write(tmp_path, text, name="spec.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_specs_load_and_cite_sources(name):
    spec = load_target(name)
    assert spec.name == name
    assert spec.sources, "every shipped spec says where its figures come from"
    assert spec.memory[-1].bandwidth_Bps < spec.memory[0].bandwidth_Bps
    assert spec.peak_for("float16") > 0


def test_list_targets_has_shipped_and_host():
    names = list_targets()
    for n in (*SHIPPED, "host"):
        assert n in names


def test_tpuv4_like_is_frames_default_system():
    spec = load_target("tpuv4-like")
    # FRAME: 4 x 128 x 128 MXU at 940 MHz, 2 FLOP per MAC -> 123.2 TFLOPS (bf16)
    assert spec.peak_for("bfloat16") == pytest.approx(4 * 128 * 128 * 940e6 * 2)
    # FRAME's compute multiplier: f32 runs at half the bf16 rate
    assert spec.peak_for("float32") == pytest.approx(4 * 128 * 128 * 940e6 * 2 / 2)
    # FRAME's "900 GBsec" is 900 * 2^30 bytes/s in its Unit arithmetic
    assert spec.offchip.bandwidth_Bps == pytest.approx(900 * 2**30)


def test_h100_datasheet_figures():
    spec = load_target("h100")
    assert spec.peak_for("bfloat16") == pytest.approx(989.4e12)
    assert spec.offchip.bandwidth_Bps == pytest.approx(3.35e12)
    assert load_target("h200").offchip.bandwidth_Bps == pytest.approx(4.8e12)


def test_eyeriss_has_168_pes():
    pe = load_target("eyeriss-like").pe_array
    assert (pe.height, pe.width, pe.pes) == (12, 14, 168)


def test_path_to_toml_works_anywhere(tmp_path):
    spec = load_target(str(write(tmp_path, GOOD)))
    assert spec.name == "toy"
    assert spec.peak_for("int8") == pytest.approx(2 * 2 * 4 * 8 * 1e9)
    assert spec.memory[-1].size_bytes is None


def test_unknown_target_lists_known():
    with pytest.raises(OpscopeError, match="unknown target 'nope'.*h100"):
        load_target("nope")


@pytest.mark.parametrize("edit, field", [
    (lambda s: s.replace('kind = "accelerator"', 'kind = "fpga"'), "kind"),
    (lambda s: s.replace("frequency_hz = 1e9", "frequency_hz = -1"), "frequency_hz"),
    (lambda s: s.replace("height = 4", "height = 0"), "pe_array.height"),
    (lambda s: s.replace("bandwidth_Bps = 1e11", 'bandwidth_Bps = "fast"'), "memory[0].bandwidth_Bps"),
    (lambda s: s.replace("size_bytes = 1024\n", ""), "memory[0].size_bytes"),
    (lambda s: s.replace('name = "toy"', 'name = "toy"\nfrequncy = 3'), "frequncy"),
    (lambda s: s.replace("[pe_array]\ninstances = 2\nheight = 4\nwidth = 8\n", ""), "peak_flops"),
    (lambda s: s + '[peak_flops]\nfloat64 = 1e12\n', "peak_flops.float64"),
    (lambda s: s.replace('name = "dram"', 'name = "sram"'), "memory[1].name"),
    (lambda s: s + '[extra]\nspecial_ns = {gelu = 3.0}\n', "extra.special_ns.gelu"),
    (lambda s: s + '[extra]\nspecial_ns = {erf = -1.0}\n', "extra.special_ns.erf"),
    (lambda s: s + '[extra]\nspecial_ns = 8.6\n', "extra.special_ns"),
])
def test_bad_spec_names_file_and_field(tmp_path, edit, field):
    p = write(tmp_path, edit(GOOD))
    with pytest.raises(SpecError) as info:
        load_spec_file(p)
    msg = str(info.value)
    assert str(p) in msg and f"'{field}'" in msg


def test_special_ns_names_the_functions_the_predictors_count(tmp_path):
    from opscope.predictor.features.special import NOMINAL_CYCLES
    from opscope.targets.loader import SPECIAL_FUNCTIONS

    assert set(SPECIAL_FUNCTIONS) == set(NOMINAL_CYCLES)
    spec = load_spec_file(write(tmp_path, GOOD + '[extra]\nspecial_ns = {exp = 1.25, erf = 8}\n'))
    assert spec.extra == {"special_ns": {"exp": 1.25, "erf": 8}}


def test_invalid_toml_is_a_spec_error(tmp_path):
    p = write(tmp_path, "name = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec_file(p)


def test_memory_must_grow_outward(tmp_path):
    text = GOOD.replace("size_bytes = 1024", "size_bytes = 4096").replace(
        'name = "dram"\n', 'name = "dram"\nsize_bytes = 1024\n')
    with pytest.raises(SpecError, match="smaller than the inner level"):
        load_spec_file(write(tmp_path, text))


@pytest.mark.parametrize("name", SHIPPED)
def test_save_then_load_round_trips(tmp_path, name):
    spec = load_target(name)
    back = load_spec_file(save_target(spec, tmp_path / f"{name}.toml"))
    assert back == spec


def test_user_spec_dir_and_host_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSCOPE_SPEC_DIR", str(tmp_path))
    assert user_spec_dir() == tmp_path
    measured = TargetSpec(name="host-measured", kind="cpu", frequency_hz=2e9, nominal=False,
                          memory=(MemoryLevel("L1", 65536, 2e11), MemoryLevel("DRAM", None, 1.5e10)),
                          peak_flops={"float32": 5.4e10})
    save_target(measured, user_spec_dir() / "host-measured.toml")
    assert "host-measured" in list_targets()
    got = load_target("host-measured")
    assert got.nominal is False and got.peak_for("float32") == 5.4e10


def fake_machine(tmp_path, flags="fpu sse2 avx avx2 fma avx512f", mhz="3000.000", max_khz="3500000"):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "".join(f"processor\t: {i}\nmodel name\t: Test CPU 9000\ncpu MHz\t\t: {mhz}\nflags\t\t: {flags}\n\n"
                for i in range(4)))
    sysfs = tmp_path / "cpu"
    (sysfs).mkdir()
    (sysfs / "online").write_text("0-3\n")
    for cpu in range(4):
        d = sysfs / f"cpu{cpu}"
        if max_khz and cpu == 0:
            (d / "cpufreq").mkdir(parents=True)
            (d / "cpufreq" / "cpuinfo_max_freq").write_text(max_khz + "\n")
        caches = [(1, "Data", "48K", str(cpu)), (1, "Instruction", "32K", str(cpu)),
                  (2, "Unified", "1024K", str(cpu)), (3, "Unified", "16384K", "0-3")]
        for i, (lv, ty, size, shared) in enumerate(caches):
            c = d / "cache" / f"index{i}"
            c.mkdir(parents=True)
            (c / "level").write_text(f"{lv}\n")
            (c / "type").write_text(ty + "\n")
            (c / "size").write_text(size + "\n")
            (c / "shared_cpu_list").write_text(shared + "\n")
    return cpuinfo, sysfs


def test_detect_host_from_fake_machine(tmp_path):
    cpuinfo, sysfs = fake_machine(tmp_path)
    spec = detect_host(cpuinfo, sysfs)
    assert spec.name == "host" and spec.kind == "cpu" and spec.nominal
    assert spec.cores == 4 and spec.vector_bits == 512
    assert spec.frequency_hz == pytest.approx(3.5e9)  # cpuinfo_max_freq wins over cpu MHz
    # nominal peak = cores x freq x 2 FMA units x 16 float32 lanes x 2 FLOP
    assert spec.peak_for("float32") == pytest.approx(4 * 3.5e9 * 2 * (512 // 32) * 2)
    sizes = {m.name: m.size_bytes for m in spec.memory}
    # private L1d and L2 count once per core, the shared L3 once; instruction caches not at all
    assert sizes["L1"] == 4 * 48 * 1024
    assert sizes["L2"] == 4 * 1024 * 1024
    assert sizes["L3"] == 16 * 1024 * 1024
    assert [m.name for m in spec.memory] == ["L1", "L2", "L3", "DRAM"]
    # L1: 2 loads of a 64-byte vector per cycle per core
    assert spec.memory[0].bandwidth_Bps == pytest.approx(2 * 64 * 4 * 3.5e9)
    assert any("nominal" in s for s in spec.sources)


def test_detect_host_avx2_and_cpu_mhz(tmp_path):
    cpuinfo, sysfs = fake_machine(tmp_path, flags="fpu sse2 avx avx2 fma", max_khz="")
    spec = detect_host(cpuinfo, sysfs)
    assert spec.vector_bits == 256
    assert spec.peak_for("float32") == pytest.approx(4 * 3.0e9 * 2 * 8 * 2)


def test_detect_this_host_is_sane():
    spec = detect_host()
    assert spec.cores >= 1 and spec.peak_for("float32") > 1e9
    assert spec.memory[-1].name == "DRAM"


def test_tvm_target_for_host_sets_triple_and_mcpu():
    tvm = pytest.importorskip("tvm")
    from opscope.targets import tvm_target

    spec = detect_host()
    d = tvm_target_dict(spec)
    assert d["mtriple"] == "x86_64-linux-gnu"
    assert d["mcpu"] == str(tvm.target.codegen.llvm_get_system_cpu())
    assert d["num-cores"] == spec.cores
    t = tvm_target(spec)
    assert t.kind.name == "llvm"
    assert tvm_target(load_target("h100")).kind.name == "cuda"


def test_analytical_only_target_has_no_tvm_target():
    with pytest.raises(OpscopeError, match="analytical only"):
        tvm_target_dict(load_target("pynq-accel"))
