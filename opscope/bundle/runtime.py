"""The TVM runtime a bundle carries: the installed ``tvm`` package without its compiler.

A bundle runs where no compiler fits, so it carries a copy of the installed ``tvm`` package
without ``lib/libtvm_compiler.so`` (260 MB), its ``3rdparty/``, ``src/`` and ``include/`` folders,
plus ``tvm_ffi`` (without its C++ sources and headers).  ``run.py`` imports it with
``TVM_USE_RUNTIME_LIB=1``, so only ``libtvm_runtime.so`` (a few MB) is loaded.

``tvm_ffi`` has a compiled core per Python version.  The copy of this machine's goes to
``runtime/cp<XY>/`` (e.g. ``cp311``); ``add_ffi_wheel`` unpacks the tvm-ffi wheel for another
Python version (``pip download --only-binary=:all: --python-version 3.12 ...``) into
``runtime/cp312/``.  The version-independent ``tvm`` package and ``typing_extensions`` (which
tvm_ffi imports) go to ``runtime/common/``; the device needs only Python and numpy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from opscope.errors import OpscopeError

#: what the runtime copy leaves out of ``tvm`` (relative paths) and of both packages (names)
_TVM_SKIP = {"lib/libtvm_compiler.so", "3rdparty", "src", "include", "web"}
_FFI_SKIP = {"3rdparty", "src", "include", "share"}
_ANY_SKIP = {"__pycache__"}
FFI_DIST = "apache-tvm-ffi"


def python_tag(version: str | None = None) -> str:
    """``cp311`` for this interpreter, ``cp312`` for ``"3.12"``."""
    if version is None:
        return f"cp{sys.version_info.major}{sys.version_info.minor}"
    parts = version.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise OpscopeError(f"python version {version!r}: expected MAJOR.MINOR such as 3.12")
    return f"cp{parts[0]}{parts[1]}"


def _package_dir(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise OpscopeError(f"the {name!r} package is not installed: cannot copy its runtime")
    return Path(list(spec.submodule_search_locations)[0])


def _copy_tree(src: Path, dst: Path, skip: set[str]) -> None:
    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(src)
        return {n for n in names if n in _ANY_SKIP or (rel / n).as_posix() in skip or n.endswith(".pyc")}

    shutil.copytree(src, dst, ignore=ignore, symlinks=False)


def copy_runtime(dest: str | os.PathLike[str]) -> Path:
    """Copy the runtime-only ``tvm`` and this Python's ``tvm_ffi`` under ``dest``; returns ``dest``."""
    dest = Path(dest)
    tvm_dir, ffi_dir = _package_dir("tvm"), _package_dir("tvm_ffi")
    if not (tvm_dir / "lib" / "libtvm_runtime.so").is_file():
        raise OpscopeError(f"{tvm_dir}/lib/libtvm_runtime.so is missing: this TVM install has no runtime library")
    _copy_tree(tvm_dir, dest / "common" / "tvm", _TVM_SKIP)
    _copy_tree(ffi_dir, dest / python_tag() / "tvm_ffi", _FFI_SKIP)
    # tvm_ffi imports typing_extensions (one pure-Python file); numpy is the device's own
    import typing_extensions

    shutil.copy2(typing_extensions.__file__, dest / "common" / "typing_extensions.py")
    return dest


def add_ffi_wheel(dest: str | os.PathLike[str], python_version: str, wheel: str | os.PathLike[str] | None = None) -> Path:
    """Unpack the tvm-ffi wheel for ``python_version`` into ``dest/cp<XY>/``.

    ``wheel`` is a downloaded ``.whl``; without it ``pip download`` fetches the one matching the
    installed tvm-ffi version (the device must run the same tvm-ffi ABI as this TVM build).
    """
    from importlib import metadata

    dest = Path(dest)
    tag = python_tag(python_version)
    if wheel is None:
        version = metadata.version(FFI_DIST)
        tmp = dest / ".download"
        tmp.mkdir(parents=True, exist_ok=True)
        # the device has this machine's architecture (its tvm package is copied from here), so
        # pip's own platform tags for this machine are the right ones
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "-d", str(tmp), f"{FFI_DIST}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(tmp.glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            shutil.rmtree(tmp, ignore_errors=True)
            last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise OpscopeError(f"pip download of {FFI_DIST}=={version} for Python {python_version} failed: {last}")
        wheel = wheels[0]
    wheel = Path(wheel)
    if not zipfile.is_zipfile(wheel):
        raise OpscopeError(f"{wheel}: not a wheel (zip) file")
    out = dest / tag
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith("tvm_ffi/")
                   and not any(part in _FFI_SKIP | _ANY_SKIP for part in Path(m).parts[1:2])]
        if not any(m.endswith(".so") and f"cpython-{tag[2:]}" in m for m in members):
            raise OpscopeError(f"{wheel.name}: has no compiled tvm_ffi core for {tag}")
        zf.extractall(out, members)
    shutil.rmtree(dest / ".download", ignore_errors=True)
    return out


def tree_size(path: str | os.PathLike[str]) -> int:
    """Bytes of all files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
