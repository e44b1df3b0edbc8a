"""Bad input around mappings: one clear line naming the level, field or value; specs round-trip."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from opscope.analytical import AnalysisOptions, estimate
from opscope.analytical.search import MappingError
from opscope.cli import main
from opscope.errors import OpscopeError, SpecError
from opscope.targets import load_target, save_target
from opscope.targets.loader import spec_from_dict
from opscope.workloads.layer_table import conv_op

VGG = str(Path(__file__).resolve().parents[1] / "opscope" / "workloads" / "tables" / "vgg16_frame.csv")
EYERISS = load_target("eyeriss-like")


def conv1():
    return conv_op("conv1", 1, 64, 3, 226, 226, 3, 3, stride=1, padding=0, groups=1, dtype="float16",
                   source="table", model="t")


def tiny_registers(size=8, dataflow="row-stationary"):
    return replace(EYERISS, dataflow=dataflow, memory=(replace(EYERISS.memory[0], size_bytes=size),) + EYERISS.memory[1:])


def test_registers_too_small_for_one_tile_name_the_level_and_sizes():
    # row-stationary keeps a filter row (3 weights), a 3-input window and a partial sum: 7 words, 14 B
    with pytest.raises(MappingError, match=r"row-stationary: level 'RF' \(8 B per PE\) cannot hold one PE tile "
                                           r"of every operand it keeps: input 6 B \+ weight 6 B \+ output 2 B = 14 B"):
        estimate(conv1(), tiny_registers())


def test_no_legal_mapping_says_why_for_every_dataflow():
    with pytest.raises(MappingError) as info:
        estimate(conv1(), tiny_registers(size=1, dataflow=None))
    text = str(info.value)
    assert text.startswith("operator 'conv1': target 'eyeriss-like': no legal mapping: ")
    for name, need in (("row-stationary", "14 B"), ("weight-stationary", "weight 2 B"), ("output-stationary", "output 2 B")):
        assert f"{name}: level 'RF' (1 B per PE)" in text and need in text


def test_cli_reports_a_spec_that_cannot_be_mapped_on_one_line(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    save_target(tiny_registers(), path)
    assert main(["analyze", "--model", VGG, "--target", str(path), "--dtype", "float16"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("opscope analyze: operator 'vgg16_frame.1.CONV2D': target 'eyeriss-like': no legal mapping")
    assert "level 'RF' (8 B per PE)" in last and "Traceback" not in err


def test_search_on_a_spec_without_buffers_or_array_is_an_error():
    with pytest.raises(MappingError, match="needs a \\[pe_array\\] and an on-chip buffer"):
        estimate(conv1(), load_target("h100"), AnalysisOptions(mapping="search"))
    with pytest.raises(OpscopeError, match="give tiles or ask for the mapping search, not both"):
        estimate(conv1(), EYERISS, AnalysisOptions(mapping="search"), tiles={"GLB": {"k": 8}})


@pytest.mark.parametrize("kwargs, what", [
    ({"objective": "fast"}, "objective must be one of energy, latency, edp, got 'fast'"),
    ({"mapping": "maybe"}, "mapping must be one of auto, search, none, got 'maybe'"),
    ({"dataflow": "diagonal"}, "dataflow must be one of row-stationary"),
])
def test_bad_options_name_the_field(kwargs, what):
    with pytest.raises(OpscopeError, match=what):
        AnalysisOptions(**kwargs)


def _spec(**changes):
    data = {"name": "x", "kind": "accelerator", "frequency_hz": 1e9,
            "pe_array": {"instances": 1, "height": 4, "width": 4},
            "memory": [{"name": "RF", "size_bytes": 64, "bandwidth_Bps": 1e12, "in_pe": True},
                       {"name": "GLB", "size_bytes": 4096, "bandwidth_Bps": 1e11},
                       {"name": "DRAM", "bandwidth_Bps": 1e10}]}
    for key, value in changes.items():
        if key == "memory":
            data["memory"] = value
        elif key == "pe_array":
            data["pe_array"] = {**data["pe_array"], **value}
        else:
            data[key] = value
    return spec_from_dict(data, where="my.toml")


@pytest.mark.parametrize("changes, what", [
    ({"dataflow": "diagonal"}, "field 'dataflow': 'diagonal' is not one of row-stationary"),
    ({"pe_array": {"bus_energy_pj_per_byte": -1}}, "field 'pe_array.bus_energy_pj_per_byte': must be >= 0"),
    ({"pe_array": {"bus_bandwidth_Bps": "fast"}}, "field 'pe_array.bus_bandwidth_Bps': must be a number"),
    ({"memory": [{"name": "RF", "size_bytes": 64, "bandwidth_Bps": 1e12, "in_pe": "yes"},
                 {"name": "DRAM", "bandwidth_Bps": 1e10}]}, "field 'memory\\[0\\].in_pe': must be true or false"),
    ({"memory": [{"name": "GLB", "size_bytes": 4096, "bandwidth_Bps": 1e11},
                 {"name": "RF", "size_bytes": 64, "bandwidth_Bps": 1e12, "in_pe": True},
                 {"name": "DRAM", "bandwidth_Bps": 1e10}]}, "field 'memory\\[1\\].in_pe': only the innermost level"),
    # 16 PEs x 512 B of registers do not fit in a 4 KiB buffer
    ({"memory": [{"name": "RF", "size_bytes": 512, "bandwidth_Bps": 1e12, "in_pe": True},
                 {"name": "GLB", "size_bytes": 4096, "bandwidth_Bps": 1e11},
                 {"name": "DRAM", "bandwidth_Bps": 1e10}]},
     "field 'memory.GLB.size_bytes': 4096 is smaller than the inner level 'RF' \\(8192 in all PEs\\)"),
])
def test_spec_fields_are_validated(changes, what):
    with pytest.raises(SpecError, match=what):
        _spec(**changes)


def test_in_pe_and_dataflow_need_a_pe_array():
    with pytest.raises(SpecError, match="field 'memory\\[0\\].in_pe': a level inside the PEs needs a \\[pe_array\\]"):
        spec_from_dict({"name": "x", "kind": "cpu", "frequency_hz": 1e9, "peak_flops": {"float32": 1e12},
                        "memory": [{"name": "RF", "size_bytes": 64, "bandwidth_Bps": 1e12, "in_pe": True},
                                   {"name": "DRAM", "bandwidth_Bps": 1e10}]}, where="my.toml")
    with pytest.raises(SpecError, match="field 'dataflow': only meaningful with a \\[pe_array\\]"):
        spec_from_dict({"name": "x", "kind": "cpu", "frequency_hz": 1e9, "peak_flops": {"float32": 1e12},
                        "dataflow": "row-stationary", "memory": [{"name": "DRAM", "bandwidth_Bps": 1e10}]},
                       where="my.toml")


def test_new_spec_fields_round_trip(tmp_path):
    path = save_target(EYERISS, tmp_path / "e.toml")
    assert load_target(path) == EYERISS
    assert EYERISS.memory[0].in_pe and EYERISS.dataflow == "row-stationary"
    assert EYERISS.pe_array.bus_energy_pj_per_byte == 1.0
