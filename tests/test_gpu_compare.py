"""compare --target h200 on GPU measurements imported from a bundle's results file (synthetic here)."""

from __future__ import annotations

import json
import statistics

import pytest

from opscope.collector.gpu_probe import Timing, measured_gpu_spec, result_from_timings
from opscope.targets import load_target, save_target

#: per operator (in model order): (default schedule's repeats, sampled schedule's repeats), seconds
LATENCIES = [((12e-6, 11e-6, 13e-6), (9e-6, 9.5e-6, 10e-6)),
             ((8e-6, 8.2e-6, 8.1e-6), (8.4e-6, 8.6e-6, 8.5e-6)),
             ((4e-6, 4.1e-6, 3.9e-6), (6e-6, 6.1e-6, 5.9e-6))]
GPU = {"name": "NVIDIA H200", "compute_version": "9.0", "multi_processors": 132, "memory_bytes": 150 << 30}


@pytest.fixture(scope="module")
def mlp():
    from opscope.workloads import load_model

    return load_model("mlp")


def _results_file(path, ops):
    """What run.py writes for a CUDA bundle of ``ops`` (a default and a sampled schedule each)."""
    entries = []
    for op in ops:
        for kind, sid in (("default", "default"), ("sampled", "s1")):
            entries.append({"id": len(entries), "op_key": op.key, "op_name": op.name, "operator": op.to_dict(),
                            "schedule_id": sid, "schedule_kind": kind,
                            "trace_json": '["dlight"]' if kind == "default" else "[]", "knobs": [], "args": [],
                            "artifact": f"kernels/{len(entries)}.so", "build_error": None, "reference": None})
    manifest = {"bundle_id": "bgpu", "target": "h200", "device": "cuda", "entries": entries, "threads": [1],
                "requires": {"gpu": "cuda", "arch": "sm_90", "binary": "cubin"},
                "protocol": {"warmup": 1, "number": 1, "repeat": 3, "min_repeat_ms": 20}}
    fp = {"cpu_model": "Intel Xeon Platinum 8480+", "cores": 16, "caches": {}, "os": "Linux 6.8", "machine": "x86_64",
          "python": "3.12.3", "tvm_version": "0.27.0", "llvm_cpu": None, "measured_by": "bundle bgpu", "gpu": GPU}
    lines = [{"format": "opscope-bundle-results", "version": 1, "bundle_id": "bgpu", "pinned": False,
              "manifest": manifest}, {"fingerprint": fp}]
    for i, (default, sampled) in enumerate(LATENCIES):
        for j, secs in enumerate((default, sampled)):
            lines.append({"entry": 2 * i + j, "threads_requested": 1, "threads": 1, "status": "ok", "error": "",
                          "latencies_s": list(secs), "pinned": False, "created_at": "2026-12-01T08:00:00+00:00"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_compare_h200_on_imported_gpu_rows(mlp, tmp_path, monkeypatch):
    from opscope.analytical import estimate
    from opscope.bundle import import_results
    from opscope.report import compare

    monkeypatch.setenv("OPSCOPE_SPEC_DIR", str(tmp_path / "specs"))
    # the probed ceilings, as `opscope probe --target h200 --results ... --library ...` writes them
    probe = result_from_timings([Timing("gemm", "float32", "library", 8192, (0.024,)),
                                 Timing("gemm", "float16", "library", 8192, (0.0014,)),
                                 Timing("copy", "float32", "library", 1 << 30, (0.0005,))], "NVIDIA H200", "test")
    measured_spec = measured_gpu_spec(load_target("h200"), probe)
    save_target(measured_spec, tmp_path / "specs" / "h200-measured.toml")

    store = tmp_path / "runs.db"
    summary = import_results(_results_file(tmp_path / "results.json", mlp.operators), store)
    assert summary.added == 6 and len(summary.machine_ids) == 1
    res = compare(mlp, target="h200", store=str(store), out=tmp_path / "out", progress=False)
    table = res.frame.set_index("op")
    for op, (default, sampled) in zip(mlp.operators, LATENCIES):
        row = table.loc[op.name]
        assert row["default_s"] == pytest.approx(statistics.median(default))
        assert row["best_s"] == pytest.approx(min(statistics.median(default), statistics.median(sampled)))
        assert row["analytical_s"] == pytest.approx(estimate(op, load_target("h200")).latency_s)
        assert row["analytical_measured_s"] == pytest.approx(estimate(op, measured_spec).latency_s)
    # the first operator's sampled schedule wins, the other two keep the default
    assert list(table.loc[[op.name for op in mlp.operators], "best_schedule_id"]) == ["s1", "default", "default"]
    assert set(res.figures) >= {"roofline", "layers"} and all(p.is_file() for p in res.figures["roofline"])
    # this machine has no GPU: the whole model is not run here, and the summary says why
    from opscope.collector.cuda import have_gpu

    if not have_gpu():
        assert res.whole_model is None
        assert any("none is visible on this machine" in line for line in res.summary), res.summary
