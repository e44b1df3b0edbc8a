"""Features of the compiled kernel: what LLVM made of a schedule.

Two schedules with the same tiles can run 1.5x apart because of what the code generator did with
them: whether the innermost loop was vectorised and at which width, how many accumulators stayed in
registers and how many spilled to the stack, how much scalar code is left.  Held-out operators'
errors are 85% correlated between 1 and 2 threads for the same schedule: they belong to the
compiled code, not to the machine's state, and the TIR-level features do not carry them.

Each (machine, workload, schedule) is compiled once with TVM for the machine's LLVM CPU (that of the
machine that measured the row when a sidecar names it, else the row's target's: this host's ``mcpu``,
or the one of the fingerprint a pooled machine is described by), and
its x86 assembly is counted (``asm_stats``): the instructions and loops of the whole kernel, and of its
innermost loop that does arithmetic (the smallest loop closed by a backward jump that holds a vector
FMA, multiply or add) the instructions, FMAs, operands at each vector width, scalar single-precision
operations, memory operands, stack (spill) operands, broadcasts and shuffles.  Features are the
counts' ``log1p`` and three ratios.

Compiling takes 0.1-0.5 s per schedule, in a worker process that is killed after ``timeout_s`` (a
few schedules make LLVM take minutes); a schedule that fails or times out gets NaN features and a
reason.  Results are kept for the process, and in a dataset's sidecar ``X.compiled.parquet``
(``write_sidecar``; ``read_frame`` loads it), so a shipped dataset is not compiled again.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opscope.errors import PredictorError

#: raw counts of ``asm_stats``: the kernel's, then its innermost arithmetic loop's (``in_``)
COUNTS = ("n_ins", "n_loops", "in_len", "in_fma", "in_zmm", "in_ymm", "in_xmm", "in_ss", "in_load",
          "in_spill", "in_bcast", "in_shuffle", "all_fma", "all_spill", "all_ss")
#: the feature columns: log1p of each count, then FMAs and spills per innermost-loop instruction and
#: memory operands per FMA
COLUMNS = tuple(f"c_{c}" for c in COUNTS) + ("c_in_fma_frac", "c_in_spill_frac", "c_in_load_per_fma")
#: seconds one schedule may take to compile before its worker is killed
TIMEOUT_S = 20.0

_FMA = re.compile(r"vfn?madd")
_ARITH = re.compile(r"vfn?madd|vfmul|vmulps|vaddps")
_PATTERNS = {"in_fma": _FMA, "in_zmm": re.compile(r"%zmm"), "in_ymm": re.compile(r"%ymm"),
             "in_xmm": re.compile(r"%xmm"), "in_ss": re.compile(r"ss\s"), "in_load": re.compile(r"\(%"),
             "in_spill": re.compile(r"\(%rsp\)|\(%rbp\)"), "in_bcast": re.compile(r"vbroadcast"),
             "in_shuffle": re.compile(r"gather|vinsert|vperm|vshuf")}
_JUMP = re.compile(r"j\w+\s+(\S+)")

#: (mcpu, workload key, schedule id) -> the counts (NaN: could not be compiled)
_CACHE: dict[tuple[str, str, str], np.ndarray] = {}
#: (mcpu, workload key, schedule id) -> why its counts are NaN
_REASONS: dict[tuple[str, str, str], str] = {}
#: machine id -> the cache key of the CPU its kernels were built for (read from sidecars)
_MACHINE_KEYS: dict[str, str] = {}


def asm_stats(asm: str) -> dict[str, float]:
    """The counts of ``COUNTS`` in an x86 assembly listing (labels, directives and comments skipped)."""
    labels: dict[str, int] = {}
    body: list[str] = []
    for raw in asm.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head = line.split("#", 1)[0].strip()  # a label may carry a comment
        if head.endswith(":"):
            labels[head[:-1]] = len(body)
        elif not line.startswith("."):
            body.append(line)
    loops = []
    for i, line in enumerate(body):
        m = _JUMP.match(line)
        if m and m.group(1) in labels and labels[m.group(1)] <= i:
            loops.append(body[labels[m.group(1)]:i + 1])
    arith = [loop for loop in loops if any(_ARITH.search(x) for x in loop)]
    inner = min(arith, key=len) if arith else (min(loops, key=len) if loops else [])

    def count(lines: list[str], pattern: re.Pattern) -> float:
        return float(sum(1 for x in lines if pattern.search(x)))

    out = {"n_ins": float(len(body)), "n_loops": float(len(loops)), "in_len": float(len(inner))}
    out.update({name: count(inner, pattern) for name, pattern in _PATTERNS.items()})
    out.update(all_fma=count(body, _FMA), all_spill=count(body, re.compile(r"\(%rsp\)")),
               all_ss=count(body, _PATTERNS["in_ss"]))
    return out


def feature_matrix(counts: np.ndarray) -> np.ndarray:
    """(rows, ``COLUMNS``) from (rows, ``COUNTS``) raw counts (NaN rows stay NaN)."""
    c = {name: counts[:, i] for i, name in enumerate(COUNTS)}
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = [c["in_fma"] / np.maximum(c["in_len"], 1), c["in_spill"] / np.maximum(c["in_len"], 1),
                  c["in_load"] / np.maximum(c["in_fma"], 1)]
    return np.column_stack([np.log1p(counts), *ratios])


def _serve() -> int:  # pragma: no cover - runs in the worker process
    """The worker: one JSON task per stdin line (target, workload key, trace, script), one JSON answer
    per line on the original stdout (the counts, or ``{"error": why}``)."""
    import os

    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # compiler chatter goes to stderr, not into the answer stream
    import tvm

    from opscope.collector.ms_sampler import operator_module, replay
    from opscope.store.sqlite import workload_module

    modules: dict[str, Any] = {}
    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        target, key, trace, script = json.loads(line)
        try:
            if key not in modules:
                modules[key] = workload_module(script)

            class _Op:  # what replay needs of an operator
                prim_func, name = modules[key], key
            tgt = tvm.target.Target(target)
            steps = json.loads(trace) if trace and trace.strip() else []
            mod = replay(_Op, trace, tgt) if steps else operator_module(_Op)
            answer: dict[str, Any] = asm_stats(tvm.compile(mod, tgt).mod.inspect_source("asm"))
        except Exception as exc:  # TVM's parse, replay and build errors: this schedule gets NaN
            text = str(exc).strip()
            answer = {"error": f"{type(exc).__name__}: {text.splitlines()[-1][:160] if text else ''}"}
        out.write(json.dumps(answer) + "\n")
    return 0


class _Compiler:
    """One worker process (``python -m opscope.predictor.features.compiled``); a task that runs past
    ``timeout_s`` kills it, and the next task starts a new one."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.proc: Any = None

    def _read(self, timeout: float) -> dict[str, Any] | None:
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        return json.loads(line) if line else None

    def _start(self) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-m", "opscope.predictor.features.compiled"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1)
        if self._read(120.0) is None:  # TVM's import
            self.close()
            raise PredictorError("compiled features: the compile worker did not start (is TVM installed?)")

    def run(self, task: tuple) -> dict[str, float] | str:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps(task) + "\n")
        self.proc.stdin.flush()
        answer = self._read(self.timeout_s)
        if answer is None:
            crashed = self.proc.poll() is not None
            self.close()
            return ("the compiler process died on it" if crashed
                    else f"compiling took more than {self.timeout_s:g} s")
        return answer["error"] if "error" in answer else answer

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _target_of(spec: Any) -> dict[str, Any] | None:
    """The LLVM target a spec's kernels are built for, or None (not an x86 CPU target)."""
    from opscope.targets.tvm import tvm_target_dict

    try:
        target = tvm_target_dict(spec)
    except Exception:  # no TVM, no LLVM CPU for this spec
        return None
    if target.get("kind") != "llvm" or not str(target.get("mtriple", "x86_64")).startswith("x86_64"):
        return None
    return target


def _machine_key(spec: Any) -> tuple[str, dict[str, Any]] | None:
    """(the key the cache files a machine's kernels under: its mcpu, with the features it lacks, and
    its LLVM target), or None."""
    t = _target_of(spec)
    if t is None or not t.get("mcpu"):
        return None
    attrs = t.get("mattr")
    return (str(t["mcpu"]) + ("" if not attrs else "|" + ",".join(map(str, attrs))), t)


def _keys(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    sid = frame["schedule_id"].astype(str).to_numpy() if "schedule_id" in frame else np.full(len(frame), "default")
    kind = frame["schedule_kind"].astype(str).to_numpy() if "schedule_kind" in frame else np.full(len(frame), "default")
    sid = np.where(kind == "default", "default", sid)
    return frame["workload_key"].astype(str).to_numpy(), sid


class _Rows:
    """The frame's rows as distinct (CPU key, workload key, schedule id) kernels: ``keys[j]`` (None for
    a machine that is not an x86 LLVM CPU), ``targets[j]`` the LLVM target to compile it for,
    ``first[j]`` its first row, and ``inverse[i]`` row i's kernel.  A store predicted again holds a few
    thousand kernels in a few hundred thousand rows, so everything per kernel is done once.

    A measured row's kernel is the one built on the machine that measured it: when a sidecar has
    told which CPU a ``machine_id`` compiles for, that CPU, whatever target the row is described by
    (a dataset of another machine trained alone is described as ``host``).  Other rows: their
    target's CPU."""

    def __init__(self, frame: pd.DataFrame, specs: Any) -> None:
        n = len(frame)
        names = frame["target"].astype(str).to_numpy()
        wkeys, sids = _keys(frame)
        mids = frame["machine_id"].astype(str).to_numpy() if "machine_id" in frame else np.full(n, "")
        combined = np.zeros(n, dtype=np.int64)
        for column in (names, mids, wkeys, sids):
            codes, uniques = pd.factorize(column)
            combined, _ = pd.factorize(combined * len(uniques) + codes)
        _, self.first, self.inverse = np.unique(combined, return_index=True, return_inverse=True)
        self.inverse = self.inverse.reshape(-1)
        spec_of = {name: specs.get(name) for name in set(names[self.first])}
        by_target = {name: _machine_key(spec) for name, spec in spec_of.items()}
        cores = {name: getattr(spec, "cores", None) for name, spec in spec_of.items()}
        self.keys: list[tuple[str, str, str] | None] = []
        self.targets: list[dict[str, Any] | None] = []
        for i in self.first:
            machine = _machine_of(_MACHINE_KEYS.get(mids[i]), cores[names[i]]) or by_target[names[i]]
            self.keys.append(None if machine is None else (machine[0], wkeys[i], sids[i]))
            self.targets.append(None if machine is None else machine[1])
        self.names, self.mids = names, mids


def _machine_of(cpu: str | None, cores: int | None = None) -> tuple[str, dict[str, Any]] | None:
    """(cache key, LLVM target) of the CPU a sidecar said a machine's kernels were built for.  The target
    carries ``num-cores`` (the row's spec's cores, else 1): replaying a sampled schedule's trace needs
    it, and the kernel's code does not depend on it (so the cache key leaves it out)."""
    if cpu is None:
        return None
    mcpu, _, attrs = cpu.partition("|")
    target: dict[str, Any] = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu,
                              "num-cores": int(cores or 1)}
    if attrs:
        target["mattr"] = attrs.split(",")
    return cpu, target


def _compile_missing(frame: pd.DataFrame, rows: _Rows, timeout_s: float,
                     progress: Callable[[str], None] | None) -> dict[tuple[str, str, str], str]:
    """Compile the rows' schedules the process does not hold yet (into ``_CACHE``); returns the keys
    that could not even be tried (no TIR in the frame), with why: those are not remembered."""
    todo = [j for j, k in enumerate(rows.keys) if k is not None and k not in _CACHE]
    missing: dict[tuple[str, str, str], str] = {}
    if not todo:
        return missing
    n = len(frame)
    # without the operators' TIR nothing can be compiled: those rows get NaN, with why
    scripts = frame["workload_script"].to_numpy() if "workload_script" in frame else np.full(n, None)
    traces = frame["trace_json"].to_numpy() if "trace_json" in frame else np.full(n, "[]")
    compiler, t0 = _Compiler(timeout_s), time.perf_counter()
    try:
        for done, j in enumerate(todo):
            k, i = rows.keys[j], rows.first[j]
            script = scripts[i]
            if not isinstance(script, str) or not script.strip():
                missing[k] = "no stored TIR for this workload (workload_script)"
                continue
            trace = traces[i] if k[2] != "default" and isinstance(traces[i], str) else "[]"
            got = compiler.run((rows.targets[j], k[1], trace, script))
            if isinstance(got, dict):
                _CACHE[k] = np.array([got[c] for c in COUNTS], dtype=float)
            else:
                _CACHE[k] = np.full(len(COUNTS), np.nan)
                _REASONS[k] = got
            if progress is not None and (done + 1) % 200 == 0:
                progress(f"compiled features: {done + 1}/{len(todo)} schedules ({time.perf_counter() - t0:.0f} s)")
    finally:
        compiler.close()
    return missing


def compiled_features(frame: pd.DataFrame, specs: Any, timeout_s: float = TIMEOUT_S,
                      progress: Callable[[str], None] | None = None) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """(rows, ``COLUMNS``) features of each row's compiled kernel, and (row, reason) for rows left NaN.

    ``specs`` is the predictor's ``SpecCache``: a row's target names the machine (its ``mcpu``),
    unless a sidecar named the CPU of the machine that measured the row (``_Rows``).  Rows
    are compiled once per (CPU, workload, schedule), from the frame's ``workload_script`` and
    ``trace_json``; what the process or a sidecar already holds is not compiled again."""
    return _features(frame, _Rows(frame, specs), timeout_s, progress)


def _features(frame: pd.DataFrame, rows: _Rows, timeout_s: float,
              progress: Callable[[str], None] | None) -> tuple[np.ndarray, list[tuple[int, str]]]:
    missing = _compile_missing(frame, rows, timeout_s, progress)
    counts = np.full((len(rows.keys), len(COUNTS)), np.nan)
    reasons: dict[int, str] = {}
    for j, k in enumerate(rows.keys):
        if k is None:
            reasons[j] = f"target {rows.names[rows.first[j]]!r} is not an x86 LLVM CPU"
        elif k in missing:
            reasons[j] = missing[k]
        else:
            counts[j] = _CACHE[k]
            if k in _REASONS:
                reasons[j] = _REASONS[k]
    skipped: list[tuple[int, str]] = []
    if reasons:
        bad = np.isin(rows.inverse, list(reasons))
        skipped = [(int(i), reasons[int(rows.inverse[i])]) for i in np.flatnonzero(bad)]
    return feature_matrix(counts)[rows.inverse], skipped


def sidecar_path(data: str | Path) -> Path:
    """``X.compiled.parquet`` beside ``X.parquet`` / ``X.db``."""
    p = Path(data)
    return p.with_name(p.stem + ".compiled.parquet")


def load_sidecar(data: str | Path) -> int:
    """Put the sidecar's counts (when ``data`` has one) in the process's cache; the number read.

    A sidecar that is not one (unreadable, columns missing) is refused with one line naming it."""
    path = sidecar_path(data)
    if not path.exists():
        return 0
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow's errors for a file that is not parquet
        raise PredictorError(f"{path}: not a compiled-features sidecar ({type(exc).__name__})") from None
    missing = [c for c in ("mcpu", "workload_key", "schedule_id", *COUNTS) if c not in table.columns]
    if missing:
        raise PredictorError(f"{path}: not a compiled-features sidecar (missing {', '.join(missing)})")
    if "machine_id" in table.columns:
        for mid, mcpu in table[["machine_id", "mcpu"]].drop_duplicates().astype(str).itertuples(index=False):
            if mid:
                _MACHINE_KEYS.setdefault(mid, mcpu)
    values = table[list(COUNTS)].to_numpy(dtype=float)
    for (mcpu, key, sid), row in zip(table[["mcpu", "workload_key", "schedule_id"]].astype(str).itertuples(index=False),
                                     values):
        _CACHE.setdefault((mcpu, key, sid), row)
    return len(table)


def write_sidecar(frame: pd.DataFrame, data: str | Path, specs: Any, timeout_s: float = TIMEOUT_S,
                  progress: Callable[[str], None] | None = None) -> tuple[Path, int, list[tuple[int, str]]]:
    """Compile every distinct schedule of ``frame`` (read from ``data``) and write ``data``'s sidecar.

    Returns (the sidecar's path, its rows, the rows left NaN with why).  A file already there that is
    not a sidecar is refused, not replaced."""
    if sidecar_path(data).exists():
        load_sidecar(data)  # raises, naming it, when it is not one
    rows = _Rows(frame, specs)
    _, skipped = _features(frame, rows, timeout_s, progress)
    held: dict[tuple[str, str, str], tuple[str, np.ndarray]] = {}
    for j, k in enumerate(rows.keys):
        if k is not None:
            held.setdefault(k, (rows.mids[rows.first[j]], _CACHE.get(k, np.full(len(COUNTS), np.nan))))
    table = pd.DataFrame([[k[0], mid, k[1], k[2], *v] for k, (mid, v) in held.items()],
                         columns=["mcpu", "machine_id", "workload_key", "schedule_id", *COUNTS])
    out = sidecar_path(data)
    tmp = out.with_name(out.name + ".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(out)
    return out, len(table), skipped


if __name__ == "__main__":
    sys.exit(_serve())
