"""Synthetic measurement frames in the store's format, for tests and for timing the predictors.

The latencies follow a known law (a roofline on a small two-core spec, slowed by how well the
schedule's tile factor fits the operator and by thread count, with multiplicative noise), so a test
can check that a predictor learns it and that splits hold out what they name.  Not measurements.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from opscope.targets.spec import MemoryLevel, TargetSpec
from opscope.workloads.operator import GemmView, Operator, TensorInfo

TARGET = "synthetic-cpu"


def synthetic_spec() -> TargetSpec:
    return TargetSpec(
        name=TARGET, kind="cpu", frequency_hz=3.0e9, cores=2, vector_bits=256,
        memory=(MemoryLevel("L1", 32 * 1024, 400e9), MemoryLevel("L2", 1 << 20, 200e9),
                MemoryLevel("DRAM", None, 20e9)),
        peak_flops={"float32": 2 * 96e9},
    )


def _dense(m: int, n: int, k: int, model: str) -> Operator:
    t = (TensorInfo("x", (m, k), "float32", "input"), TensorInfo("w", (n, k), "float32", "weight"),
         TensorInfo("y", (m, n), "float32", "output"))
    return Operator(name=f"dense_{m}_{n}_{k}", kind="dense", tensors=t, flops=2 * m * n * k,
                    gemm=GemmView(1, m, n, k), loops=(("b", 1), ("m", m), ("n", n), ("k", k)), models=(model,))


def _conv(c: int, k: int, hw: int, r: int, model: str) -> Operator:
    t = (TensorInfo("x", (1, c, hw, hw), "float32", "input"), TensorInfo("w", (k, c, r, r), "float32", "weight"),
         TensorInfo("y", (1, k, hw, hw), "float32", "output"))
    loops = (("n", 1), ("k", k), ("c", c), ("p", hw), ("q", hw), ("r", r), ("s", r))
    return Operator(name=f"conv_{c}_{k}_{hw}_{r}", kind="conv2d", tensors=t, flops=2 * k * c * hw * hw * r * r,
                    gemm=GemmView(1, hw * hw, k, c * r * r), loops=loops, models=(model,),
                    attrs=(("kernel", (r, r)), ("stride", (1, 1))))


def _eltwise(n: int, model: str) -> Operator:
    t = (TensorInfo("x", (n,), "float32", "input"), TensorInfo("y", (n,), "float32", "output"))
    return Operator(name=f"add_{n}", kind="elementwise", tensors=t, flops=n, loops=(("m", n),), models=(model,))


def synthetic_operators(seed: int = 0, models: int = 4, per_model: int = 6) -> list[Operator]:
    rng = np.random.default_rng(seed)
    ops = []
    for mi in range(models):
        model = f"model{mi}"
        for j in range(per_model):
            which = j % 3
            if which == 0:
                ops.append(_dense(int(rng.choice([1, 16, 64, 128])), int(rng.choice([256, 512, 1024])),
                                  int(rng.choice([256, 512, 768])), model))
            elif which == 1:
                ops.append(_conv(int(rng.choice([16, 32, 64])), int(rng.choice([16, 32, 64])),
                                 int(rng.choice([14, 28, 56])), int(rng.choice([1, 3])), model))
            else:
                ops.append(_eltwise(int(rng.choice([1 << 14, 1 << 16, 1 << 18])), model))
    return ops


def true_latency(op: Operator, tile: int, threads: int, spec: TargetSpec) -> float:
    """The law behind the synthetic latencies."""
    inner = op.loops[-1][1] if op.loops else 1
    fit = 1.0 + abs(np.log2(max(tile, 1)) - 4.0) * 0.25 + (0.5 if inner % max(tile, 1) else 0.0)
    compute = op.flops / (spec.peak_for("float32") * 0.3 * threads / (spec.cores or 1)) * fit
    memory = op.bytes / spec.offchip.bandwidth_Bps * (1.0 + 0.2 / threads)
    return max(compute, memory) + 2e-6


def synthetic_frame(seed: int = 0, models: int = 4, per_model: int = 6, schedules: int = 8,
                    threads: tuple[int, ...] = (1, 2), noise: float = 0.03) -> pd.DataFrame:
    spec = synthetic_spec()
    rng = np.random.default_rng(seed + 1)
    rows = []
    for op in synthetic_operators(seed, models, per_model):
        opj = json.dumps(op.to_dict(), default=str)
        for s in range(schedules):
            inner_name, inner = op.loops[-1]
            tiles = [t for t in (1, 2, 4, 8, 16, 32, 64) if inner % t == 0]
            tile = 1 if s == 0 else int(rng.choice(tiles))
            unroll = int(rng.choice([0, 16, 64]))
            # a sampled schedule records its tiles and unroll; TVM's default lowering (tile 1) records the
            # loop knobs the collector reads from the unscheduled function (collector.knobs.loop_knobs)
            knobs = ({f"knob_tile_v{inner_name}_0": inner // tile, f"knob_tile_v{inner_name}_1": 1,
                      f"knob_tile_v{inner_name}_2": 1, f"knob_tile_v{inner_name}_3": tile,
                      "knob_loop_order": f"v{inner_name}0 v{inner_name}1 v{inner_name}2 v{inner_name}3",
                      "knob_unroll": unroll} if s else
                     {"knob_parallel_extent": 1, "knob_vector_len": 1, "knob_main_inner": inner})
            for t in threads:
                lat = true_latency(op, tile, t, spec) * float(np.exp(rng.normal(0, noise)))
                rows.append({**knobs,
                    "measurement_id": len(rows), "workload_key": op.key, "op_name": op.name, "kind": op.kind,
                    "dtype": op.dtype, "models": ",".join(op.models), "operator_json": opj, "flops": op.flops,
                    "bytes": op.bytes, "bytes_input": op.bytes_of("input"), "bytes_weight": op.bytes_of("weight"),
                    "bytes_output": op.bytes_of("output"), "count": op.count,
                    "schedule_id": f"{op.key}-{s}", "schedule_kind": "default" if s == 0 else "sampled",
                    "trace_json": None, "knobs_json": json.dumps({k.removeprefix("knob_"): v for k, v in knobs.items()}),
                    "threads": t, "pinned": False, "target": TARGET, "machine_id": "synthetic",
                    "status": "ok", "error": None, "raw_latencies_s": json.dumps([lat]),
                    "latency_median_s": lat, "latency_mean_s": lat, "latency_min_s": lat,
                    "latency_std_s": 0.0, "cv": 0.0, "noisy": False, "protocol_json": "{}", "created_at": "",
                })
    return pd.DataFrame(rows)
