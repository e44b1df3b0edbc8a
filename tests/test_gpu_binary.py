"""Reading what an exported library's CUDA module carries, on hand-made bytes (no nvcc, no TVM)."""

from __future__ import annotations

import struct

import pytest

from opscope.collector.cuda_binary import EM_CUDA, check_cubin, cubin_arch, read_blob


def _elf(flags: int, abi_version: int, machine: int = EM_CUDA, size: int = 64) -> bytes:
    """A 64-bit ELF header: machine at byte 18, e_flags at byte 48, EI_ABIVERSION at byte 8."""
    head = bytearray(size)
    head[:4] = b"\x7fELF"
    head[4] = 2  # ELFCLASS64
    head[7] = 0x41  # ELFOSABI_CUDA, as nvcc writes it
    head[8] = abi_version
    struct.pack_into("<H", head, 18, machine)
    struct.pack_into("<I", head, 48, flags)
    return bytes(head)


def _s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def _cuda_record(fmt: str, code: bytes) -> bytes:
    """kind "cuda", then the module's bytes: format, one kernel in the function table, the code."""
    body = _s(fmt) + struct.pack("<Q", 1) + _s("main_kernel") + _s("main_kernel") + b"\x02" + b"\0" * 7 + _s(code)
    return _s("_lib") + _s("cuda") + struct.pack("<Q", len(body)) + body


@pytest.mark.parametrize("flags, abi, want", [
    (0x6005A04, 8, "sm_90"),  # nvcc 13.0 --cubin -arch sm_90: SM in bits 8-15
    (0x6005004, 8, "sm_80"),  # ... -arch sm_80 (0x50 = 80)
    (0x6006402, 8, "sm_100"),  # ... -arch sm_100 (0x64 = 100)
    (0x0005005A, 7, "sm_90"),  # older ELF ABI: SM in bits 0-7 (0x5a = 90)
])
def test_cubin_arch_from_the_elf_flags(flags, abi, want):
    assert cubin_arch(_elf(flags, abi)) == want


def test_not_a_cubin():
    assert cubin_arch(_elf(0x6005A04, 8, machine=62)) is None  # EM_X86_64: a host object
    assert cubin_arch(b"// generated CUDA source") is None


def test_read_blob_finds_each_cuda_module_and_its_format():
    blob = b"\0" * 100 + _cuda_record("cubin", _elf(0x6005A04, 8, size=300)) + b"junk" \
        + _cuda_record("cuda", b'extern "C" __global__ void main_kernel() {}')
    mods = read_blob(blob)
    assert [(m.format, m.arch) for m in mods] == [("cubin", "sm_90"), ("cuda", None)]
    assert mods[0].code_bytes == 300  # the cubin's own length prefix
    assert [m.compiled for m in mods] == [True, False]


@pytest.mark.parametrize("record, want", [
    (_cuda_record("cubin", _elf(0x6005A04, 8)), ""),
    (_cuda_record("cubin", _elf(0x6005004, 8)), "the cubin is for sm_80, not sm_90"),
    (_cuda_record("cuda", b"__global__ void k() {}"), "carries source, not compiled code"),
    (_cuda_record("ptx", b".version 8.0"), "the CUDA module is ptx, not a cubin for sm_90"),
    (b"\x7fELF no cuda module", "no CUDA module found"),
])
def test_check_cubin_says_in_one_line_what_is_wrong(tmp_path, record, want):
    lib = tmp_path / "k.so"
    lib.write_bytes(record)
    got = check_cubin(lib, "sm_90")
    if want:
        assert got.startswith("k.so: ") and want in got and "\n" not in got
    else:
        assert got == ""


def test_check_cubin_accepts_the_arch_specific_variant(tmp_path):
    lib = tmp_path / "k.so"
    lib.write_bytes(_cuda_record("cubin", _elf(0x6005A04, 8)))  # nvcc writes sm_90a's flags as sm_90's
    assert check_cubin(lib, "sm_90a") == ""


def test_the_driver_stub_answers_every_call_with_an_error(tmp_path):
    """The stub compiled for building without a driver: soname libcuda.so.1, every entry point an error."""
    import ctypes
    import shutil
    import subprocess

    from opscope.collector.cuda_build import CUDA_ERROR_STUB_LIBRARY, build_driver_stub

    if shutil.which("cc") is None or shutil.which("readelf") is None:
        pytest.skip("needs cc and readelf")
    lib_path = build_driver_stub(tmp_path)
    dynamic = subprocess.run(["readelf", "-d", str(lib_path)], capture_output=True, text=True).stdout
    assert "(SONAME)" in dynamic and "[libcuda.so.1]" in dynamic  # TVM's CUDA runtime links to that name
    lib = ctypes.CDLL(str(lib_path))
    assert lib.cuModuleLoadData() == CUDA_ERROR_STUB_LIBRARY == 34
    assert lib.cuInit() == 34
    name = ctypes.c_char_p()
    assert lib.cuGetErrorName(34, ctypes.byref(name)) == 0 and name.value == b"CUDA_ERROR_STUB_LIBRARY"
