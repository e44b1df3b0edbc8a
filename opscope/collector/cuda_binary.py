"""What the CUDA modules inside an exported library carry: compiled code (and for which arch) or source.

``export_library`` embeds every imported module, serialised, in the shared library: a module of
kind ``cuda`` is a length-prefixed record (little-endian ``u64`` lengths) holding its format
(``cubin``, ``fatbin``, ``ptx``, or ``cuda`` for source), a table of kernel functions and the code.
A cubin is an ELF file of machine ``EM_CUDA`` (190) whose ``e_flags`` name the SM version (bits 8-15
from ELF ABI version 8, CUDA 12.8 and later; bits 0-7 before).  Reading this needs no TVM, so the
same check runs here, in tests and on a device.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

EM_CUDA = 190
FORMATS = ("cubin", "fatbin", "ptx", "cuda")
_KIND = struct.pack("<Q", 4) + b"cuda"


@dataclass(frozen=True)
class CudaBinary:
    """One CUDA module found in a library: its format, the SM arch of a cubin, the code's size."""

    format: str  # cubin | fatbin | ptx | cuda (source: needs a compiler when loaded)
    arch: str | None  # "sm_90" for a cubin, else None
    code_bytes: int  # a cubin's length; for other formats the rest of the record (function table included)

    @property
    def compiled(self) -> bool:
        return self.format in ("cubin", "fatbin")


def cubin_arch(elf: bytes) -> str | None:
    """The SM arch ("sm_90") of a cubin ELF, or None when ``elf`` is not one."""
    if len(elf) < 52 or elf[:4] != b"\x7fELF" or elf[4] != 2:
        return None
    machine = struct.unpack_from("<H", elf, 18)[0]
    if machine != EM_CUDA:
        return None
    flags = struct.unpack_from("<I", elf, 48)[0]
    sm = (flags >> 8) & 0xFF if elf[8] >= 8 else flags & 0xFF
    return f"sm_{sm}"


def _string(blob: bytes, at: int) -> tuple[str, int] | None:
    if at + 8 > len(blob):
        return None
    n = struct.unpack_from("<Q", blob, at)[0]
    if n > 64 or at + 8 + n > len(blob):
        return None
    return blob[at + 8:at + 8 + n].decode("latin-1"), at + 8 + n


def _parse_module(record: bytes) -> CudaBinary | None:
    got = _string(record, 0)
    if got is None:
        return None
    fmt, at = got
    if fmt.startswith("cuda.module.v"):  # newer TVM: a version string before the format
        got = _string(record, at)
        if got is None:
            return None
        fmt, at = got
    if fmt not in FORMATS:
        return None
    if fmt in ("cubin", "fatbin"):
        elf_at = record.find(b"\x7fELF", at)
        if elf_at >= 8:
            size = struct.unpack_from("<Q", record, elf_at - 8)[0]
            arch = cubin_arch(record[elf_at:elf_at + size]) if fmt == "cubin" else None
            return CudaBinary(fmt, arch, int(size))
        return CudaBinary(fmt, None, 0)
    return CudaBinary(fmt, None, len(record) - at)


def read_blob(blob: bytes) -> list[CudaBinary]:
    """The CUDA modules serialised in ``blob`` (a library's bytes), in order."""
    found = []
    at = blob.find(_KIND)
    while at >= 0:
        start = at + len(_KIND)
        if start + 8 <= len(blob):
            size = struct.unpack_from("<Q", blob, start)[0]
            if 0 < size <= len(blob) - start - 8:
                parsed = _parse_module(blob[start + 8:start + 8 + size])
                if parsed is not None:
                    found.append(parsed)
        at = blob.find(_KIND, at + 1)
    return found


def cuda_binaries(path: str | os.PathLike[str]) -> list[CudaBinary]:
    """The CUDA modules embedded in the exported library at ``path``."""
    with open(path, "rb") as fh:
        return read_blob(fh.read())


def check_cubin(path: str | os.PathLike[str], arch: str) -> str:
    """"" when every CUDA module in ``path`` is a cubin for ``arch``; else why not, in one line."""
    mods = cuda_binaries(path)
    if not mods:
        return f"{os.path.basename(path)}: no CUDA module found in the library"
    for m in mods:
        if m.format == "cuda":
            return (f"{os.path.basename(path)}: the CUDA module carries source, not compiled code "
                    "(loading it would need a CUDA compiler on the device)")
        if m.format != "cubin":
            return f"{os.path.basename(path)}: the CUDA module is {m.format}, not a cubin for {arch}"
        if m.arch != arch.rstrip("af"):  # sm_90a's cubin says sm_90
            return f"{os.path.basename(path)}: the cubin is for {m.arch}, not {arch}"
    return ""
