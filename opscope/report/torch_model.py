"""The same model in torch, end to end: the baseline a whole-model TVM latency is set beside.

``time_torch_model`` runs ``python -m opscope.report.torch_model REQUEST.json`` in a fresh process
with the requested thread count (``torch.set_num_threads``, one inter-op thread), builds the zoo
model with the same batch, dtype and parameters as opscope imported it (``opscope.workloads.zoo``:
the same module and random weights), and times ``model(x)`` in eager mode under
``torch.inference_mode`` with the whole-model protocol (``timing.time_callable``); with ``compile``
it also times ``torch.compile(model)`` (its compilation is not timed; a failure is a note, not an
error).  Only zoo models have a torch module here; anything else gets a note.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from opscope.store.record import LatencyStats


def time_torch_model(name: str, params: dict, threads: int, protocol, compile: bool = False,
                     timeout_s: float = 600.0) -> tuple[float, float, str]:
    """(eager median s, torch.compile median s or NaN, note) for zoo model ``name``."""
    from opscope.collector.library import torch_version
    from opscope.workloads.zoo import ZOO

    if name not in ZOO:
        return math.nan, math.nan, "not a zoo model (no torch module to time)"
    if torch_version() is None:
        return math.nan, math.nan, "torch is not installed"
    zoo_keys = {k for k, _ in ZOO[name].defaults}
    req = {"name": name, "batch_size": int(params.get("batch_size", 1)), "dtype": str(params.get("dtype", "float32")),
           "params": {k: int(v) for k, v in params.items() if k in zoo_keys}, "threads": int(threads),
           "protocol": protocol.timing(), "compile": bool(compile)}
    with tempfile.TemporaryDirectory(prefix="opscope-torch-") as tmp:
        path = Path(tmp) / "request.json"
        path.write_text(json.dumps(req))
        env = dict(os.environ)
        env.pop("OMP_NUM_THREADS", None)
        try:
            proc = subprocess.run([sys.executable, "-m", "opscope.report.torch_model", str(path)], env=env,
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return math.nan, math.nan, f"torch timing did not finish within {timeout_s:.0f} s"
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return math.nan, math.nan, f"torch timing failed: {tail[0][:200]}"
    eager = LatencyStats.of(out.get("eager_s", [])).median_s
    compiled = LatencyStats.of(out.get("compile_s", [])).median_s
    return eager, compiled, out.get("note", "")


def _main(path: str) -> int:
    req = json.loads(Path(path).read_text())
    import torch

    from opscope.collector import timing
    from opscope.workloads.zoo import build

    torch.set_num_threads(int(req["threads"]))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    model, inputs = build(req["name"], req["batch_size"], req["dtype"], req["params"])
    out: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    with torch.inference_mode():
        out["eager_s"] = timing.time_callable(lambda: model(*inputs), req["protocol"])
    if req.get("compile"):
        try:
            compiled = torch.compile(model)
            with torch.inference_mode():
                compiled(*inputs)  # compiles
                out["compile_s"] = timing.time_callable(lambda: compiled(*inputs), req["protocol"])
        except Exception as exc:  # inductor needs a C++ toolchain and more; its failure is a note
            out["note"] = f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
