#!/usr/bin/env python3
"""Measure the kernels of an opscope bundle on this device:  python run.py --out results.json

Needs only Python 3 and numpy: the bundle carries TVM's runtime (imported with
TVM_USE_RUNTIME_LIB=1), the compiled kernels, and opscope's own timing core, worker-process helper
and machine fingerprint (timing.py, process.py, machine.py, copied verbatim), so a kernel is
checked and timed here exactly as opscope times it on its own machine.  Before measuring it checks that this device can
run them (CPU architecture and instruction-set flags from /proc/cpuinfo, or a CUDA GPU of the
right compute capability) and refuses with one line saying what is missing.

Each thread count is measured in its own worker process (TVM_NUM_THREADS is read when TVM's thread
pool starts).  Every result is appended to the results file and flushed to disk at once, so a
crash loses nothing already measured; a kernel that kills its worker is recorded as a crash, one
that runs past --timeout as a timeout, and measuring goes on.  Running again with the same --out
resumes: what the file already holds is not measured again.

Bring results.json back and load it with:  opscope import-results results.json --store runs.db

This file is written by `opscope bundle` and is not imported by opscope itself.
"""

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_FORMAT = "opscope-bundle-results"
RESULTS_VERSION = 1


def _load_cpu_flags():
    """The CPU-flag table the kernels were built with: cpu_flags.py beside this file in a bundle (its
    source, opscope/targets/cpu_flags.py, when this file is read from opscope's own tree)."""
    import importlib.util

    for folder in (HERE, os.path.join(HERE, os.pardir, "targets")):
        path = os.path.join(folder, "cpu_flags.py")
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("opscope_bundle_cpu_flags", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    fail(f"cpu_flags.py is missing from {HERE}: the bundle is incomplete, build it again")


def fail(msg):
    print("run.py: " + msg, file=sys.stderr)
    sys.exit(3)


def require_numpy():
    """numpy is the one package run.py needs beyond Python itself: say so in one line."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        fail(f"needs numpy, which this Python ({sys.executable}) does not have: install it (python3 -m pip install numpy, "
             "or the system's python3-numpy package) and run again")


CPU_FLAGS = _load_cpu_flags()


def load_manifest():
    path = os.path.join(HERE, "manifest.json")
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        fail(f"cannot read {path}: {exc}")


# -- the device check ------------------------------------------------------------------------------
def cpu_flags(cpuinfo_text):
    """The CPU feature flags listed in /proc/cpuinfo text (x86 'flags', Arm 'Features')."""
    return CPU_FLAGS.cpu_flags(cpuinfo_text)


def read_cpuinfo():
    """/proc/cpuinfo, or the file $OPSCOPE_CPUINFO names."""
    return CPU_FLAGS.read_cpuinfo()


def cpu_problems(requires, machine, cpuinfo_text):
    """Why this CPU cannot run kernels built for ``requires`` (an empty list when it can)."""
    problems = []
    want = requires.get("machine")
    same_arm32 = want in CPU_FLAGS.ARM32 and machine in CPU_FLAGS.ARM32
    if want and want != machine and not same_arm32:
        problems.append(f"the kernels are built for {want}, this machine is {machine}")
        return problems
    names = CPU_FLAGS.cpuinfo_names(machine)
    missing = [f"{f} ({names[f]})" for f in CPU_FLAGS.missing_features(requires.get("cpu_features", ()),
                                                                         machine, cpuinfo_text)]
    if missing:
        problems.append("the kernels are built for {} (mcpu {}) but this CPU lacks {}".format(
            want, requires.get("mcpu"), ", ".join(missing)))
    return problems


def setup_runtime(manifest):
    """Put the bundled runtime first on sys.path and load TVM's runtime (and its CUDA part)."""
    runtime = os.path.join(HERE, "runtime")
    tag = "cp{}{}".format(*sys.version_info[:2])
    ffi = os.path.join(runtime, tag)
    if not os.path.isdir(ffi):
        have = sorted(d for d in os.listdir(runtime) if d.startswith("cp")) if os.path.isdir(runtime) else []
        version = "{}.{}".format(*sys.version_info[:2])
        fail(f"this bundle has no tvm_ffi for Python {version} (it has {', '.join(have) or 'none'}); "
             f"rebuild it with `opscope bundle ... --python {version}`")
    sys.path[:0] = [os.path.join(runtime, "common"), ffi]
    os.environ["TVM_USE_RUNTIME_LIB"] = "1"
    if manifest["device"] == "cuda":
        import ctypes

        libdir = os.path.join(runtime, "common", "tvm", "lib")
        try:
            for name in manifest.get("preload", []):
                ctypes.CDLL(os.path.join(runtime, name), ctypes.RTLD_GLOBAL)
            import tvm  # noqa: F401  (loads libtvm_runtime.so, which the CUDA part links to)

            ctypes.CDLL(os.path.join(libdir, "libtvm_runtime_cuda.so"), ctypes.RTLD_GLOBAL)
        except OSError as exc:
            fail(f"cannot load the CUDA runtime (is an NVIDIA driver installed?): {exc}")
    import tvm

    return tvm


def arch_problem(arch, compute_version):
    """Why a GPU of ``compute_version`` ("8.0") cannot run cubins for ``arch`` ("sm_90"), or "".

    A cubin runs on its own major version at the same or a higher minor one (sm_86 on 8.6 and 8.9,
    never on 8.0 or 9.0); an arch-specific one (sm_90a) only on exactly that version.
    """
    digits = "".join(c for c in arch if c.isdigit())
    try:
        major, minor = (int(x) for x in str(compute_version).split(".")[:2])
    except ValueError:
        return f"cannot read this GPU's compute capability ({compute_version!r})"
    if len(digits) < 2:
        return f"the bundle names no CUDA arch it can be checked against ({arch!r})"
    want_major, want_minor = int(digits[:-1]), int(digits[-1])
    exact = arch.endswith("a")
    if major != want_major or minor < want_minor or (exact and minor != want_minor):
        return f"the kernels are built for {arch}, this GPU is compute capability {major}.{minor}"
    return ""


def cuda_versions(manifest):
    """(driver, runtime) CUDA versions as "12.4" from the bundled CUDA runtime, None where unknown."""
    import ctypes

    got = []
    for name in manifest.get("preload", []):
        if "libcudart" not in name:
            continue
        lib = ctypes.CDLL(os.path.join(HERE, "runtime", name))
        for func in (lib.cudaDriverGetVersion, lib.cudaRuntimeGetVersion):
            value = ctypes.c_int(0)
            ok = func(ctypes.byref(value)) == 0 and value.value > 0
            got.append(f"{value.value // 1000}.{value.value % 1000 // 10}" if ok else None)
        return tuple(got)
    return None, None


def gpu_fault():
    """opscope's table of CUDA errors that leave a worker's GPU context unusable (gpu_fault.py)."""
    if "opscope_bundle_gpu_fault" not in sys.modules:
        sys.modules["opscope_bundle_gpu_fault"] = _load_shipped("gpu_fault", "collector")
    return sys.modules["opscope_bundle_gpu_fault"]


def gpu_problems(requires, manifest):
    """Why this machine cannot run the bundle's CUDA kernels (loads the bundled runtime first)."""
    if requires.get("binary") != "cubin":
        return ["its CUDA kernels carry source that only a CUDA compiler could load (a bundle from an older "
                "opscope); build it again with `opscope bundle`"]
    tvm = setup_runtime(manifest)
    dev = tvm.cuda(0)
    if not dev.exist:
        why = "the kernels are built for a CUDA GPU ({}) and no GPU is visible".format(requires.get("arch"))
        driver, runtime = cuda_versions(manifest)
        if driver and runtime:
            why += f" (the driver supports CUDA {driver}, the bundled CUDA runtime is {runtime})"
        elif runtime:
            why += f" (no CUDA driver answers; the bundled CUDA runtime is {runtime})"
        return [why]
    why = arch_problem(requires.get("arch", ""), dev.compute_version)
    return [why] if why else []


# -- the measuring worker: opscope's own timing core, carried verbatim -------------------------------
def _load_shipped(name, tree):
    """``name``.py beside this file in a bundle (in opscope's own tree: ``opscope/<tree>/name.py``)."""
    import importlib.util

    for folder in (HERE, os.path.join(HERE, os.pardir, tree)):
        path = os.path.join(folder, name + ".py")
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("opscope_bundle_" + name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    fail(f"{name}.py is missing from {HERE}: the bundle is incomplete, build it again")


TIMING = _load_shipped("timing", "collector")
PROCESS = _load_shipped("process", "collector")
MACHINE = _load_shipped("machine", "collector")


def check_against(tvm, dev, mod, ref, specs):
    """The timing core's reference check ('' when ``mod`` agrees with ``ref`` on random inputs)."""
    return TIMING.check_against(mod, ref, specs, dev)


def measure(tvm, dev, manifest, entry):
    mod = tvm.runtime.load_module(os.path.join(HERE, entry["artifact"]))
    ref = None
    if entry.get("reference") is not None:
        ref_entry = manifest["entries"][entry["reference"]]
        ref = tvm.runtime.load_module(os.path.join(HERE, ref_entry["artifact"]))
    return TIMING.measure(mod, entry["args"], manifest["protocol"], dev, reference=ref,
                          cpu=manifest["device"] == "cpu")


def worker_main():
    out, inp = TIMING.protocol_stream()
    manifest = load_manifest()
    tvm = setup_runtime(manifest)
    dev = tvm.cuda(0) if manifest["device"] == "cuda" else tvm.cpu(0)
    if manifest["device"] == "cuda":
        threads = 1
    else:
        threads = int(tvm.get_global_func("runtime.NumThreads")())
    out.write(json.dumps({"ready": True, "threads": threads, "tvm_version": tvm.__version__,
                          "timing_version": TIMING.TIMING_VERSION}) + "\n")

    def handle(request):
        return measure(tvm, dev, manifest, manifest["entries"][request["entry"]])
    TIMING.serve(handle, inp, out, {"threads": threads})
    return 0


# -- the parent: plan, run workers, write results ----------------------------------------------------
class Worker:
    def __init__(self, threads, pin, startup_s):
        argv = [sys.executable, os.path.abspath(__file__), "--worker"]
        try:
            self.proc = PROCESS.LineProcess(argv, PROCESS.worker_env(threads, pin), "measuring worker",
                                            startup_s, stderr="inherit")
        except PROCESS.WorkerStartError:
            fail(f"the measuring worker did not start (threads={threads}); see the messages above")
        self.threads = self.proc.hello["threads"]

    def ask(self, entry_id, timeout_s):
        reply = self.proc.ask({"entry": entry_id}, timeout_s)
        if reply is None:
            return {"status": "timeout", "error": f"no result after {timeout_s:.1f} s; worker killed"}
        if reply is PROCESS.EOF:
            return {"status": "crash",
                    "error": f"the measuring worker died (exit status {self.proc.exit_status()})"}
        return reply

    def kill(self):
        self.proc.kill()

    def close(self):
        self.proc.close()


class LibraryWorker:
    """library_worker.py from this bundle: times the torch call of a library entry."""

    def __init__(self, threads, pin, device, startup_s):
        argv = [sys.executable, os.path.join(HERE, "library_worker.py")]
        env = PROCESS.worker_env(threads, pin, OPSCOPE_LIBRARY_DEVICE=device)  # timing.py: beside the script
        self.proc = PROCESS.LineProcess(argv, env, "library worker", startup_s)  # WorkerStartError if no torch
        self.hello = self.proc.hello
        self.threads = self.hello["threads"]

    def ask(self, case, protocol, timeout_s):
        reply = self.proc.ask({"artifact": json.dumps(case, sort_keys=True), "protocol": protocol}, timeout_s)
        if reply is None:
            return {"status": "timeout", "error": f"no result after {timeout_s:.1f} s; worker killed"}
        if reply is PROCESS.EOF:
            return {"status": "crash", "error": f"the library worker died (exit status {self.proc.exit_status()})"}
        return reply

    def origin(self, case):
        return {"library": "torch", "version": self.hello.get("torch", ""), "backend": self.hello.get("backend", ""),
                "call": case["op"]}

    def kill(self):
        self.proc.kill()

    def close(self):
        self.proc.close()


def library_entries_skipped(entries, why):
    """One line for the library entries this device cannot time; they stay unmeasured (a later run resumes)."""
    n = sum(1 for e in entries if e.get("library"))
    if n:
        print(f"run.py: {why}: its {n} library row(s) (torch beside the kernels) are skipped", file=sys.stderr)


def read_text(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def bundled_tvm_version():
    for line in read_text(os.path.join(HERE, "runtime", "common", "tvm", "_version.py")).splitlines():
        if line.startswith("__version__") and ("'" in line or '"' in line):
            quote = "'" if "'" in line else '"'
            return line.split(quote)[1]
    return None


def fingerprint(manifest, tvm_version):
    """The machine as opscope's own fingerprint describes it (``host_facts``), plus the bundle's
    versions and, for CUDA, the GPU: the importer computes the machine id from it."""
    return {
        **MACHINE.host_facts(),
        "tvm_version": tvm_version,
        "opscope_version": manifest.get("opscope_version"),
        "llvm_cpu": None,  # the runtime has no LLVM; the CPU model identifies the machine
        "measured_by": "bundle " + manifest["bundle_id"],
        "timing_version": TIMING.TIMING_VERSION,
        "gpu": gpu_info() if manifest["device"] == "cuda" else None,
    }


def gpu_info():
    """Name, compute capability and memory of the first GPU (the runtime is loaded by then)."""
    tvm = sys.modules.get("tvm")
    if tvm is None:
        return None
    dev = tvm.cuda(0)
    return {"name": str(dev.device_name), "compute_version": str(dev.compute_version),
            "multi_processors": int(dev.multi_processor_count), "memory_bytes": int(dev.total_global_memory)}


def open_results(path, manifest):
    """The set of (entry, threads) already in ``path`` (resume), or None when it is new."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    done = set()
    with open(path) as fh:
        lines = fh.read().split("\n")
    try:
        header = json.loads(lines[0])
    except ValueError:
        fail(f"{path} exists and is not an opscope results file; choose another --out")
    if header.get("format") != RESULTS_FORMAT or header.get("bundle_id") != manifest["bundle_id"]:
        fail(f"{path} holds results of another bundle; choose another --out")
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except ValueError:
            if line is lines[-1]:
                continue  # an incomplete last line from a crash; that job runs again
            fail(f"{path}: a damaged line in the middle; choose another --out")
        if "entry" in row:
            done.add((row["entry"], row["threads_requested"]))
    if lines[-1].strip():
        # the last line was being written when the run stopped: cut it off (that job runs again)
        with open(path, "r+b") as fh:
            fh.truncate(len("\n".join(lines[:-1]).encode()) + 1)
    return done


def append(fh, row):
    fh.write(json.dumps(row, separators=(",", ":")) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def now_utc():
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def main(argv=None):
    parser = argparse.ArgumentParser(description="Measure this bundle's kernels on this device.")
    parser.add_argument("--out", default="results.json", help="results file (appended to; resumes)")
    parser.add_argument("--threads", default="", help="comma list overriding the manifest's thread counts")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per measurement (default: manifest)")
    parser.add_argument("--pin", action="store_true", help="pin worker threads to cores (TVM_BIND_THREADS=1)")
    parser.add_argument("--check", action="store_true", help="only check that this device can run the bundle")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    require_numpy()
    if args.worker:
        return worker_main()
    manifest = load_manifest()
    requires = manifest["requires"]
    problems = cpu_problems(requires, platform.machine(), read_cpuinfo()) if manifest["device"] == "cpu" else []
    if problems:
        fail("this device cannot run the bundle: " + "; ".join(problems))
    if manifest["device"] == "cuda":
        problems = gpu_problems(requires, manifest)
        if problems:
            fail("this device cannot run the bundle: " + "; ".join(problems))
    if args.check:
        tvm = setup_runtime(manifest) if manifest["device"] == "cpu" else sys.modules["tvm"]
        print("run.py: this device can run the bundle")
        print("run.py: tvm runtime {} (libraries: {})".format(
            os.path.dirname(tvm.__file__), ", ".join(sorted(tvm.base._LOADED_LIBS))))
        return 0
    threads = [int(t) for t in args.threads.split(",") if t.strip()] or manifest["threads"]
    timeout = args.timeout if args.timeout is not None else manifest["timeout_s"]
    proto = manifest["protocol"]
    limit = timeout + proto["repeat"] * (proto["min_repeat_ms"] + proto.get("cooldown_ms", 0)) / 1000.0
    done = open_results(args.out, manifest)
    fh = open(args.out, "a")
    if done is None:
        done = set()
        append(fh, {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "bundle_id": manifest["bundle_id"],
                    "pinned": bool(args.pin), "manifest": manifest})
    entries = manifest["entries"]
    todo = [(e["id"], t) for t in threads for e in entries if (e["id"], t) not in done]
    total, count, t0 = len(todo), 0, time.monotonic()
    append(fh, {"fingerprint": fingerprint(manifest, bundled_tvm_version())})
    import importlib.util

    no_library = "torch is not installed here" if importlib.util.find_spec("torch") is None else ""
    if no_library:
        library_entries_skipped([e for e in entries if any(eid == e["id"] for eid, _ in todo)], no_library)
    for t in threads:
        jobs = [eid for eid, tt in todo if tt == t]
        worker = None
        lib = None
        for eid in jobs:
            entry = entries[eid]
            if entry.get("library"):
                if no_library:
                    continue
                if lib is None:
                    try:
                        lib = LibraryWorker(t, args.pin, manifest["device"], 300.0)
                    except PROCESS.WorkerStartError as exc:
                        no_library = f"torch does not start here ({str(exc)[:200]})"
                        library_entries_skipped([entries[e] for e, tt in todo if tt >= t], no_library)
                        continue
                reply = lib.ask(entry["library"], proto, limit)
                if reply["status"] in ("crash", "timeout"):
                    lib.kill()
                    lib = None
                append(fh, {"entry": eid, "threads_requested": t, "threads": reply.get("threads", t),
                            "status": reply["status"], "error": reply.get("error", ""),
                            "latencies_s": reply.get("latencies_s", []), "pinned": bool(args.pin),
                            "created_at": now_utc(),
                            "origin": lib.origin(entry["library"]) if lib is not None else {"library": "torch"}})
                count += 1
                continue
            if entry.get("build_error"):
                reply = {"status": "build_error", "error": entry["build_error"], "threads": t}
            else:
                if worker is None:
                    worker = Worker(t, args.pin, 300.0)
                reply = worker.ask(eid, limit)
                if manifest["device"] == "cuda":
                    reply = gpu_fault().as_crash(reply)  # a faulted GPU context: a fresh worker goes on
                if reply["status"] in ("crash", "timeout"):
                    worker.kill()
                    worker = None
                    reply["threads"] = t
            append(fh, {"entry": eid, "threads_requested": t, "threads": reply.get("threads", t),
                        "status": reply["status"], "error": reply.get("error", ""),
                        "latencies_s": reply.get("latencies_s", []), "pinned": bool(args.pin),
                        "created_at": now_utc()})
            count += 1
            print("\r[{}/{}] threads {}  {:40s} {}   {:.0f}s".format(
                count, total, t, entry["op_name"][:40], reply["status"], time.monotonic() - t0),
                end="", file=sys.stderr, flush=True)
        if worker is not None:
            worker.close()
        if lib is not None:
            lib.close()
    fh.close()
    print(f"\nrun.py: {count} measurements written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
