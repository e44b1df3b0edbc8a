"""``write_bundle``: compile every sampled schedule here and write a self-contained folder.

Layout of a bundle::

    bundle/
      run.py              the device-side runner (Python + numpy only)
      manifest.json       workloads, schedules, thread counts, protocol, what the device must have
      kernels/*.so        one compiled module per (operator, schedule)
      runtime/common/tvm  TVM's runtime (no compiler library), imported with TVM_USE_RUNTIME_LIB=1
      runtime/cp3XY/      tvm_ffi for each Python version the bundle supports

Schedules come from the same roles ``collect`` uses for the target (the CPU sampler/builder, or the
CUDA ones), so a bundle's measurements and a direct collection of the same schedules are
comparable row for row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opscope.bundle.runtime import add_ffi_wheel, copy_runtime, tree_size

#: opscope modules a bundle carries verbatim beside run.py (standard library, numpy, TVM runtime only)
from opscope.collector import library_worker as _library_worker  # noqa: E402
from opscope.collector import machine as _machine
from opscope.collector import process as _process
from opscope.collector import timing as _timing
from opscope.errors import OpscopeError
from opscope.targets import cpu_flags
from opscope.targets.spec import MemoryLevel, TargetSpec

SHIPPED_MODULES = (_timing, _process, _machine, _library_worker)
SHIPPED_FILES = tuple(Path(m.__file__).name for m in SHIPPED_MODULES)

MANIFEST_FORMAT = "opscope-bundle"
MANIFEST_VERSION = 1
#: the CPU a host bundle is built for unless told otherwise: any x86-64 CPU with AVX2/FMA (2013+)
PORTABLE_X86_MCPU = "x86-64-v3"


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    bundle_id: str
    operators: int
    kernels: int
    build_errors: int
    size_bytes: int
    runtime_bytes: int
    #: entries timed in torch on the device (operators a library covers), when it has torch
    library_rows: int = 0


def resolve_spec(target: str | TargetSpec, mcpu: str | None = None, arch: str | None = None) -> TargetSpec:
    """The spec a bundle is built for; ``cuda`` is a plain CUDA GPU, ``mcpu``/``arch`` override."""
    from opscope.targets import load_target

    if isinstance(target, str) and target == "cuda":
        try:
            spec = load_target("cuda")
        except OpscopeError:
            spec = TargetSpec(name="cuda", kind="gpu", frequency_hz=1.0, memory=(MemoryLevel("DRAM", None, 1.0),),
                              tvm_target={"kind": "cuda", "arch": "sm_90"},
                              sources=("a plain CUDA target for measurement bundles",))
    else:
        spec = load_target(target)
    tt = dict(spec.tvm_target or {})
    if tt.get("kind") == "cuda":
        if arch:
            spec = dataclasses.replace(spec, tvm_target=dict(tt, arch=arch))
        return spec
    if tt.get("kind") != "llvm":
        raise OpscopeError(f"target {spec.name!r}: a bundle needs a CPU (llvm) or CUDA target, "
                           f"its [tvm_target] is {tt or 'missing'}")
    if mcpu == "native":
        # this machine's CPU as it really is: LLVM's model name, minus the features /proc/cpuinfo hides
        from opscope.targets.tvm import host_llvm_cpu

        tt.pop("mattr", None)
        tt.update(host_llvm_cpu(str(tt.get("mtriple", "x86_64-linux-gnu"))))
    elif mcpu:
        tt["mcpu"] = mcpu
        tt.pop("mattr", None)
    elif "mcpu" not in tt and platform.machine() == "x86_64":
        tt["mcpu"] = PORTABLE_X86_MCPU
    return dataclasses.replace(spec, tvm_target=tt)


def requirements(target_dict: dict[str, Any]) -> dict[str, Any]:
    """What a device must have to run kernels compiled for ``target_dict`` (its ``mattr`` applied)."""
    from opscope.targets.cpu_flags import LLVM_TO_CPUINFO
    from opscope.targets.tvm import llvm_features, target_string

    if target_dict["kind"] == "cuda":
        # "binary": the kernels carry a cubin for the arch, so the device needs no CUDA compiler
        return {"gpu": "cuda", "arch": target_dict["arch"], "binary": "cubin"}
    triple = str(target_dict.get("mtriple", "x86_64-linux-gnu"))
    arch = triple.split("-")[0]
    machine = "aarch64" if arch in ("aarch64", "arm64") else "armv7l" if arch.startswith("arm") else arch
    have = llvm_features(target_dict)
    return {"machine": machine, "mcpu": target_dict.get("mcpu"), "target": target_string(target_dict),
            "cpu_features": sorted(f for f in LLVM_TO_CPUINFO if f in have)}


def _cudart_preload(dest: Path) -> list[str]:
    """Copy the CUDA runtime library TVM's CUDA module links to; returns paths relative to runtime/."""
    import re
    import subprocess

    lib = dest / "common" / "tvm" / "lib" / "libtvm_runtime_cuda.so"
    if not lib.is_file():
        raise OpscopeError("this TVM install has no libtvm_runtime_cuda.so: cannot bundle CUDA kernels")
    out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
    found = re.search(r"(libcudart\.so\.\d+) => (\S+)", out)
    if not found or not os.path.isfile(found.group(2)):
        raise OpscopeError(f"cannot find the CUDA runtime (libcudart) that {lib.name} links to")
    (dest / "cuda").mkdir(exist_ok=True)
    shutil.copy2(os.path.realpath(found.group(2)), dest / "cuda" / found.group(1))
    return [f"cuda/{found.group(1)}"]


def write_bundle(model_or_ops: Any, target: str | TargetSpec, trials: int, out: str | os.PathLike[str],
                 threads: Sequence[int] = (1,), seed: int = 0, protocol: Any = None, ops: Any = None,
                 max_ops: int | None = None, mcpu: str | None = None, arch: str | None = None,
                 timeout_s: float = 10.0, pythons: Sequence[str] = (), ffi_wheels: Sequence[str] = (),
                 progress: bool = True, default_only: Collection[str] = (), library: bool = True) -> BundleInfo:
    """Compile ``trials`` sampled schedules (plus the default) of each operator into a bundle at ``out``.

    ``pythons`` adds tvm_ffi for other Python versions (``"3.12"``; downloaded with pip unless
    ``ffi_wheels`` gives the wheel files, in the same order).  Operators whose key is in
    ``default_only`` get their default schedule only (the GPU probe's kernels: a random GPU draw of
    an 8192^3 GEMM can take seconds a call).  ``library`` adds, for each operator a library covers,
    an entry the device times in torch when it has torch (``schedule_kind = "library"``).
    """
    from opscope.collector.protocol import Protocol
    from opscope.collector.registry import make_roles
    from opscope.collector.sweep import parse_threads, select_operators

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OpscopeError(f"bundle folder {out} is a file; choose another --out")
    if out.exists() and any(out.iterdir()):
        raise OpscopeError(f"bundle folder {out} exists and is not empty; choose another --out")
    if trials < 0:
        raise OpscopeError(f"trials must be >= 0, got {trials}")
    if ffi_wheels and len(ffi_wheels) != len(pythons):
        raise OpscopeError("give one tvm-ffi wheel per --python version")
    spec = resolve_spec(target, mcpu, arch)
    device = "cuda" if (spec.tvm_target or {}).get("kind") == "cuda" else "cpu"
    thread_counts = (1,) if device == "cuda" else parse_threads(threads)
    protocol = protocol or Protocol()
    operators = select_operators(model_or_ops, ops, max_ops)
    if not operators:
        raise OpscopeError("bundle: no operator with a TIR function to compile")
    target_dict = _target_dict(spec)
    requires = requirements(target_dict)
    roles = make_roles(spec)
    created = not out.exists()
    (out / "kernels").mkdir(parents=True, exist_ok=True)
    try:
        return _write(out, spec, device, target_dict, requires, thread_counts, protocol, operators, roles,
                      trials, seed, timeout_s, pythons, ffi_wheels, progress, frozenset(default_only), library)
    except BaseException:
        shutil.rmtree(out if created else out / "kernels", ignore_errors=True)
        if not created:
            for leftover in ("runtime", "manifest.json", "run.py", "cpu_flags.py", "gpu_fault.py", *SHIPPED_FILES):
                p = out / leftover
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise


def _write(out: Path, spec: TargetSpec, device: str, target_dict: dict[str, Any], requires: dict[str, Any],
           thread_counts: tuple[int, ...], protocol: Any, operators: list[Any], roles: Any, trials: int,
           seed: int, timeout_s: float, pythons: Sequence[str], ffi_wheels: Sequence[str],
           progress: bool, default_only: frozenset[str] = frozenset(), library: bool = True) -> BundleInfo:
    import opscope
    from opscope.collector.library import library_case
    from opscope.collector.roles import arg_specs

    # the runtime first: a failed download must not cost the compile time that follows
    runtime = out / "runtime"
    copy_runtime(runtime)
    for i, version in enumerate(pythons):
        add_ffi_wheel(runtime, version, ffi_wheels[i] if ffi_wheels else None)
    preload = _cudart_preload(runtime) if device == "cuda" else []
    if device == "cuda":  # run.py replaces a worker whose kernel faulted the GPU
        from opscope.collector import gpu_fault

        shutil.copy2(Path(gpu_fault.__file__), out / "gpu_fault.py")
    entries: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        for n, op in enumerate(operators):
            cands = roles.sampler.candidates(op, 0 if op.key in default_only else trials, seed)
            built = roles.builder.build(cands)
            args = arg_specs(op.prim_func if not hasattr(op.prim_func, "functions") else op.prim_func["main"])
            default_id = None
            first_sampled = True
            for b in built:
                c = b.candidate
                entry: dict[str, Any] = {
                    "id": len(entries), "op_key": op.key, "op_name": op.name, "operator": op.to_dict(),
                    "schedule_id": c.schedule_id, "schedule_kind": c.schedule_kind, "trace_json": c.trace_json,
                    "knobs": [[k, v] for k, v in c.knobs], "args": [[list(s), d] for s, d in args],
                    "artifact": None, "build_error": b.error or None, "reference": None,
                }
                if b.ok and device == "cuda":
                    entry["build_error"] = _cubin_problem(b.artifact, target_dict["arch"])
                if b.ok and not entry["build_error"]:
                    name = f"kernels/{n:03d}-{c.schedule_id}.so"
                    shutil.copy2(b.artifact, out / name)
                    entry["artifact"] = name
                    if c.schedule_kind == "default":
                        default_id = entry["id"]
                    elif first_sampled and protocol.check_first and default_id is not None:
                        entry["reference"] = default_id
                        first_sampled = False
                entries.append(entry)
            case = library_case(op) if library else None
            if case is not None:  # timed in torch on the device, when it has torch
                entries.append({
                    "id": len(entries), "op_key": op.key, "op_name": op.name, "operator": op.to_dict(),
                    "schedule_id": "lib:torch", "schedule_kind": "library", "trace_json": "[]", "knobs": [],
                    "args": [], "artifact": None, "build_error": None, "reference": None, "library": case,
                })
            roles.builder.discard(built)
            if progress:
                ok = sum(b.ok for b in built)
                print(f"\r[{n + 1}/{len(operators)}] {op.name[:40]:40s} built {ok}/{len(built)} "
                      f"{time.monotonic() - t0:.0f}s", end="", file=sys.stderr, flush=True)
    finally:
        roles.builder.close()
        roles.runner.close()
    if progress:
        print(file=sys.stderr)
    body = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "target": spec.name, "device": device,
        "tvm_target": target_dict, "requires": requires, "threads": list(thread_counts),
        "protocol": json.loads(protocol.to_json()), "timeout_s": timeout_s, "seed": seed, "trials": trials,
        "preload": preload, "opscope_version": opscope.__version__, "tvm_version": _tvm_version(),
        "entries": entries,
    }
    bundle_id = "b" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:15]
    manifest = {"bundle_id": bundle_id, **body, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    template = Path(__file__).with_name("run_template.py")
    shutil.copy2(template, out / "run.py")
    # the device check reads CPU flags with the same table the host target is derived with
    shutil.copy2(Path(cpu_flags.__file__), out / "cpu_flags.py")
    # the device times kernels with opscope's own timing core and describes itself with its fingerprint
    for module in SHIPPED_MODULES:
        shutil.copy2(Path(module.__file__), out / Path(module.__file__).name)
    return BundleInfo(path=out, bundle_id=bundle_id, operators=len(operators),
                      kernels=sum(e["artifact"] is not None for e in entries),
                      library_rows=sum("library" in e for e in entries),
                      build_errors=sum(e["build_error"] is not None for e in entries),
                      size_bytes=tree_size(out), runtime_bytes=tree_size(runtime))


def _cubin_problem(artifact: str, arch: str) -> str | None:
    """None when the built library carries a cubin for ``arch``; else why it cannot go in the bundle."""
    from opscope.collector.cuda_binary import check_cubin

    return check_cubin(artifact, arch) or None


def _target_dict(spec: TargetSpec) -> dict[str, Any]:
    """The JSON dict of the ``tvm.target.Target`` the kernels were compiled for."""
    if spec.tvm_target and spec.tvm_target.get("kind") == "cuda":
        from opscope.collector.cuda import cuda_target_dict

        return cuda_target_dict(spec)
    from opscope.targets import tvm_target_dict

    return tvm_target_dict(spec)


def _tvm_version() -> str:
    import tvm

    return str(tvm.__version__)
