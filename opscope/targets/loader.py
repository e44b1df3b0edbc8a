"""Target spec files: the TOML format, its validating loader, the writer and name resolution.

A spec file looks like this (every key is checked; an unknown key is an error, so a typo never
goes unnoticed)::

    name = "tpuv4-like"
    kind = "accelerator"                  # cpu | gpu | accelerator
    frequency_hz = 940e6
    compute_efficiency = 1.0              # optional, in (0, 1]
    memory_efficiency = 1.0               # optional, in (0, 1]
    energy_pj_per_mac = 0.52              # optional
    nominal = true                        # false once measured
    sources = ["where each figure comes from"]

    [peak_flops]                          # FLOP/s per dtype, and/or a [pe_array]
    float32 = 67e12

    [pe_array]
    instances = 4
    height = 128
    width = 128
    macs_per_pe = 1

    [pe_dtype_rates]                      # optional: PE-array speed per dtype relative to native
    float32 = 0.5

    [[memory]]                            # innermost first; the last one is off-chip
    name = "onchip"
    size_bytes = 134217728                # omit on the outermost level: unbounded
    bandwidth_Bps = 9.66e12
    energy_pj_per_byte = 1.06             # optional

    [tvm_target]                          # optional: how TVM compiles for it
    kind = "cuda"

    [extra]                               # optional: free-form
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

from opscope.errors import SpecError, unknown_name
from opscope.targets.spec import DATAFLOWS, DTYPES, TARGET_KINDS, MemoryLevel, PEArray, TargetSpec

#: Names resolved in code rather than from a shipped file.
BUILTIN_NAMES = ("host",)

_TOP_KEYS = {
    "name", "kind", "frequency_hz", "compute_efficiency", "memory_efficiency", "energy_pj_per_mac",
    "nominal", "cores", "vector_bits", "sources", "peak_flops", "pe_array", "pe_dtype_rates",
    "memory", "tvm_target", "extra", "dataflow",
}
_PE_KEYS = {"instances", "height", "width", "macs_per_pe", "bus_energy_pj_per_byte", "bus_bandwidth_Bps"}
_MEM_KEYS = {"name", "size_bytes", "bandwidth_Bps", "energy_pj_per_byte", "in_pe"}


def user_spec_dir() -> Path:
    """Where user specs live (``host-measured.toml`` from ``opscope probe``, own devices).

    ``$OPSCOPE_SPEC_DIR`` when set, else ``~/.config/opscope/specs``.  Not created here.
    """
    env = os.environ.get("OPSCOPE_SPEC_DIR")
    return Path(env).expanduser() if env else Path.home() / ".config" / "opscope" / "specs"


def _shipped_dir() -> Path:
    return Path(str(resources.files("opscope.targets") / "specs"))


def _spec_files() -> dict[str, Path]:
    """Shipped then user spec files by name; a user file of the same name wins."""
    found: dict[str, Path] = {}
    for folder in (_shipped_dir(), user_spec_dir()):
        if folder.is_dir():
            for f in sorted(folder.glob("*.toml")):
                found[f.stem] = f
    return found


def list_targets() -> list[str]:
    """Every target name ``load_target`` accepts (shipped, built in, and in the user spec dir)."""
    return sorted(set(_spec_files()) | set(BUILTIN_NAMES))


def load_target(name_or_path: str | os.PathLike[str] | TargetSpec) -> TargetSpec:
    """A validated spec from a shipped name, a user spec name, or a path to a TOML file."""
    if isinstance(name_or_path, TargetSpec):
        return name_or_path
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text.endswith(".toml") or os.sep in text or path.is_dir():
        if path.is_dir():
            raise SpecError(f"target spec {text}: is a folder; give a .toml spec file or a target name "
                            "(opscope targets lists them)")
        if not path.is_file():
            raise SpecError(f"target spec file {text} does not exist")
        return load_spec_file(path)
    files = _spec_files()
    if text in files:
        return load_spec_file(files[text])
    if text == "host":
        from opscope.targets.host import detect_host

        return detect_host()
    raise unknown_name("target", text, list_targets())


def load_spec_file(path: str | os.PathLike[str]) -> TargetSpec:
    """Parse and validate one TOML spec file; any problem is a ``SpecError`` naming file and field."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}); a spec is a TOML text file") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    return spec_from_dict(data, where=str(path))


def spec_from_dict(data: dict[str, Any], where: str = "<spec>") -> TargetSpec:
    """Validate a parsed spec (the TOML's dict) and build the ``TargetSpec``."""
    def fail(field: str, msg: str) -> SpecError:
        return SpecError(f"{where}: field '{field}': {msg}")

    extra_keys = set(data) - _TOP_KEYS
    if extra_keys:
        raise fail(sorted(extra_keys)[0], f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    for req in ("name", "kind", "frequency_hz", "memory"):
        if req not in data:
            raise fail(req, "missing")
    name = data["name"]
    if not isinstance(name, str) or not name:
        raise fail("name", "must be a non-empty string")
    kind = data["kind"]
    if kind not in TARGET_KINDS:
        raise fail("kind", f"{kind!r} is not one of {', '.join(TARGET_KINDS)}")
    freq = _positive(data["frequency_hz"], "frequency_hz", fail)

    peaks_raw = data.get("peak_flops", {})
    if not isinstance(peaks_raw, dict):
        raise fail("peak_flops", "must be a table of dtype = FLOP/s")
    peaks: dict[str, float] = {}
    for dt, v in peaks_raw.items():
        if dt not in DTYPES:
            raise fail(f"peak_flops.{dt}", f"unknown dtype (known: {', '.join(DTYPES)})")
        peaks[dt] = _positive(v, f"peak_flops.{dt}", fail)

    pe = None
    if "pe_array" in data:
        raw = data["pe_array"]
        if not isinstance(raw, dict):
            raise fail("pe_array", "must be a table")
        bad = set(raw) - _PE_KEYS
        if bad:
            raise fail(f"pe_array.{sorted(bad)[0]}", f"unknown key (known: {', '.join(sorted(_PE_KEYS))})")
        vals = {}
        for key in ("instances", "height", "width", "macs_per_pe"):
            if key not in raw and key != "macs_per_pe":
                raise fail(f"pe_array.{key}", "missing")
            vals[key] = _pos_int(raw.get(key, 1), f"pe_array.{key}", fail)
        if "bus_energy_pj_per_byte" in raw:
            vals["bus_energy_pj_per_byte"] = _nonneg(raw["bus_energy_pj_per_byte"], "pe_array.bus_energy_pj_per_byte", fail)
        if "bus_bandwidth_Bps" in raw:
            vals["bus_bandwidth_Bps"] = _positive(raw["bus_bandwidth_Bps"], "pe_array.bus_bandwidth_Bps", fail)
        pe = PEArray(**vals)
    if pe is None and not peaks:
        raise fail("peak_flops", "a spec needs peak_flops for at least one dtype or a [pe_array]")

    rates_raw = data.get("pe_dtype_rates", {})
    if not isinstance(rates_raw, dict):
        raise fail("pe_dtype_rates", "must be a table of dtype = relative rate")
    if rates_raw and pe is None:
        raise fail("pe_dtype_rates", "only meaningful with a [pe_array]")
    rates = {}
    for dt, v in rates_raw.items():
        if dt not in DTYPES:
            raise fail(f"pe_dtype_rates.{dt}", f"unknown dtype (known: {', '.join(DTYPES)})")
        rates[dt] = _positive(v, f"pe_dtype_rates.{dt}", fail)

    memory = _memory_levels(data["memory"], fail, pe)
    dataflow = data.get("dataflow")
    if dataflow is not None:
        if pe is None:
            raise fail("dataflow", "only meaningful with a [pe_array]")
        if dataflow not in DATAFLOWS:
            raise fail("dataflow", f"{dataflow!r} is not one of {', '.join(DATAFLOWS)} (omit it to let the mapping "
                                   "search choose)")

    effs = {}
    for key in ("compute_efficiency", "memory_efficiency"):
        v = _positive(data.get(key, 1.0), key, fail)
        if v > 1.0:
            raise fail(key, f"{v} is above 1")
        effs[key] = v
    e_mac = data.get("energy_pj_per_mac")
    if e_mac is not None:
        e_mac = _nonneg(e_mac, "energy_pj_per_mac", fail)
    nominal = data.get("nominal", True)
    if not isinstance(nominal, bool):
        raise fail("nominal", "must be true or false")
    cores = data.get("cores")
    if cores is not None:
        cores = _pos_int(cores, "cores", fail)
    vbits = data.get("vector_bits")
    if vbits is not None:
        vbits = _pos_int(vbits, "vector_bits", fail)
    sources = data.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise fail("sources", "must be a list of strings")
    tvm_t = data.get("tvm_target")
    if tvm_t is not None and (not isinstance(tvm_t, dict) or "kind" not in tvm_t):
        raise fail("tvm_target", "must be a table with at least 'kind' (a TVM JSON target)")
    extra = data.get("extra", {})
    if not isinstance(extra, dict):
        raise fail("extra", "must be a table")
    problem = special_ns_problem(extra.get("special_ns"))
    if problem:
        raise fail(*problem)
    return TargetSpec(
        name=name, kind=kind, frequency_hz=freq, memory=memory, peak_flops=peaks, pe_array=pe,
        compute_efficiency=effs["compute_efficiency"], memory_efficiency=effs["memory_efficiency"],
        energy_pj_per_mac=e_mac, nominal=nominal, cores=cores, vector_bits=vbits,
        tvm_target=dict(tvm_t) if tvm_t else None, sources=tuple(sources), extra=dict(extra),
        pe_dtype_rates=rates, dataflow=dataflow,
    )


#: the special functions ``opscope probe`` times (``[extra] special_ns``, read by the predictors'
#: ``features.special``)
SPECIAL_FUNCTIONS = ("exp", "sigmoid", "tanh", "erf")


def special_ns_problem(raw: Any) -> tuple[str, str] | None:
    """What is wrong with an ``[extra] special_ns`` value, as (field, message); None when it is absent or
    a table of known functions to positive nanoseconds per call."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        return "extra.special_ns", "must be a table of nanoseconds per call, e.g. {exp = 1.2, erf = 8.6}"
    for fn, ns in raw.items():
        if fn not in SPECIAL_FUNCTIONS:
            return f"extra.special_ns.{fn}", f"unknown function (known: {', '.join(SPECIAL_FUNCTIONS)})"
        if isinstance(ns, bool) or not isinstance(ns, (int, float)) or not math.isfinite(ns) or ns <= 0:
            return f"extra.special_ns.{fn}", f"must be a positive number of nanoseconds, got {ns!r}"
    return None


def _memory_levels(raw: Any, fail, pe: PEArray | None = None) -> tuple[MemoryLevel, ...]:
    if not isinstance(raw, list) or not raw:
        raise fail("memory", "must be a non-empty array of [[memory]] tables, innermost first")
    levels = []
    names = set()
    for i, lv in enumerate(raw):
        where = f"memory[{i}]"
        if not isinstance(lv, dict):
            raise fail(where, "must be a table")
        bad = set(lv) - _MEM_KEYS
        if bad:
            raise fail(f"{where}.{sorted(bad)[0]}", f"unknown key (known: {', '.join(sorted(_MEM_KEYS))})")
        for req in ("name", "bandwidth_Bps"):
            if req not in lv:
                raise fail(f"{where}.{req}", "missing")
        lname = lv["name"]
        if not isinstance(lname, str) or not lname:
            raise fail(f"{where}.name", "must be a non-empty string")
        if lname in names:
            raise fail(f"{where}.name", f"duplicate level name {lname!r}")
        names.add(lname)
        size = lv.get("size_bytes")
        last = i == len(raw) - 1
        if size is None and not last:
            raise fail(f"{where}.size_bytes", "missing (only the outermost level may be unbounded)")
        if size is not None:
            size = _pos_int(size, f"{where}.size_bytes", fail)
        bw = _positive(lv["bandwidth_Bps"], f"{where}.bandwidth_Bps", fail)
        e = lv.get("energy_pj_per_byte")
        if e is not None:
            e = _nonneg(e, f"{where}.energy_pj_per_byte", fail)
        in_pe = lv.get("in_pe", False)
        if not isinstance(in_pe, bool):
            raise fail(f"{where}.in_pe", "must be true or false")
        if in_pe and (i != 0 or last):
            raise fail(f"{where}.in_pe", "only the innermost level, inside an outer one, can be the PEs' registers")
        if in_pe and pe is None:
            raise fail(f"{where}.in_pe", "a level inside the PEs needs a [pe_array]")
        levels.append(MemoryLevel(name=lname, size_bytes=size, bandwidth_Bps=bw, energy_pj_per_byte=e, in_pe=in_pe))
    for inner, outer in zip(levels, levels[1:]):
        # a level inside the PEs is sized per PE: all of them together sit inside the next level
        inner_total = inner.size_bytes * pe.pes if (inner.in_pe and inner.size_bytes is not None) else inner.size_bytes
        if inner_total is not None and outer.size_bytes is not None and outer.size_bytes < inner_total:
            raise fail(f"memory.{outer.name}.size_bytes",
                       f"{outer.size_bytes} is smaller than the inner level {inner.name!r} ({inner_total}"
                       f"{' in all PEs' if inner.in_pe else ''}); levels go innermost first")
    return tuple(levels)


def _number(v: Any, field: str, fail) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise fail(field, f"must be a number, got {v!r}")
    if not math.isfinite(v):
        raise fail(field, f"must be finite, got {v!r}")
    return float(v)


def _positive(v: Any, field: str, fail) -> float:
    x = _number(v, field, fail)
    if x <= 0:
        raise fail(field, f"must be > 0, got {v!r}")
    return x


def _nonneg(v: Any, field: str, fail) -> float:
    x = _number(v, field, fail)
    if x < 0:
        raise fail(field, f"must be >= 0, got {v!r}")
    return x


def _pos_int(v: Any, field: str, fail) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise fail(field, f"must be a positive integer, got {v!r}")
    return int(v)


# -- writing ---------------------------------------------------------------------------------------
def save_target(spec: TargetSpec, path: str | os.PathLike[str]) -> Path:
    """Write ``spec`` as a TOML file that ``load_spec_file`` reads back to an equal spec."""
    path = Path(path)
    lines = [f"# opscope target spec {spec.name!r}", ""]
    lines.append(f"name = {_toml(spec.name)}")
    lines.append(f"kind = {_toml(spec.kind)}")
    lines.append(f"frequency_hz = {_toml(spec.frequency_hz)}")
    lines.append(f"compute_efficiency = {_toml(spec.compute_efficiency)}")
    lines.append(f"memory_efficiency = {_toml(spec.memory_efficiency)}")
    if spec.energy_pj_per_mac is not None:
        lines.append(f"energy_pj_per_mac = {_toml(spec.energy_pj_per_mac)}")
    lines.append(f"nominal = {_toml(spec.nominal)}")
    if spec.cores is not None:
        lines.append(f"cores = {spec.cores}")
    if spec.vector_bits is not None:
        lines.append(f"vector_bits = {spec.vector_bits}")
    lines.append("sources = [" + ", ".join(_toml(s) for s in spec.sources) + "]")
    if spec.dataflow is not None:
        lines.append(f"dataflow = {_toml(spec.dataflow)}")
    if spec.peak_flops:
        lines += ["", "[peak_flops]"] + [f"{k} = {_toml(v)}" for k, v in spec.peak_flops.items()]
    if spec.pe_array is not None:
        pe = spec.pe_array
        lines += ["", "[pe_array]", f"instances = {pe.instances}", f"height = {pe.height}",
                  f"width = {pe.width}", f"macs_per_pe = {pe.macs_per_pe}"]
        for key in ("bus_energy_pj_per_byte", "bus_bandwidth_Bps"):
            if getattr(pe, key) is not None:
                lines.append(f"{key} = {_toml(getattr(pe, key))}")
    if spec.pe_dtype_rates:
        lines += ["", "[pe_dtype_rates]"] + [f"{k} = {_toml(v)}" for k, v in spec.pe_dtype_rates.items()]
    for lv in spec.memory:
        lines += ["", "[[memory]]", f"name = {_toml(lv.name)}"]
        if lv.size_bytes is not None:
            lines.append(f"size_bytes = {lv.size_bytes}")
        lines.append(f"bandwidth_Bps = {_toml(lv.bandwidth_Bps)}")
        if lv.energy_pj_per_byte is not None:
            lines.append(f"energy_pj_per_byte = {_toml(lv.energy_pj_per_byte)}")
        if lv.in_pe:
            lines.append("in_pe = true")
    if spec.tvm_target:
        lines += ["", "[tvm_target]"] + [f"{_key(k)} = {_toml(v)}" for k, v in spec.tvm_target.items()]
    if spec.extra:
        lines += ["", "[extra]"] + [f"{_key(k)} = {_toml(v)}" for k, v in spec.extra.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml(k)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml(x)}" for k, x in v.items()) + "}"
    raise SpecError(f"cannot write {v!r} ({type(v).__name__}) into a TOML spec")
