"""Collector throughput: opscope's harness against MetaSchedule's LocalBuilder + LocalRunner.

Both measure the same candidates (MetaSchedule-sampled schedules of one operator, seed 0) under
the same protocol (number, repeat, min_repeat_ms, no cache flush, TVM's default thread count in
the measuring process).  Printed for each harness:

- measurements per minute (wall clock, builds included).  MetaSchedule starts fresh worker
  processes in every ``build``/``run`` call, so its figure includes their start-up; opscope starts
  its workers once per collection, so its figure is given both without (steady state) and with
  that one-off start-up;
- harness efficiency = kernel time / wall time, where kernel time is what ``time_evaluator``
  spends calling the kernel: per repeat ``max(min_repeat_ms, number x latency)``;
- reproducibility: opscope measures the first 20 schedules again in a second, separate set of
  worker processes at the end; the median absolute relative difference of the medians between
  the first opscope run and that one.

Usage: ``python benchmarks/collector_throughput.py [--candidates 16] [--size 256]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _kernel_s(latencies: list[list[float]], number: int, min_repeat_ms: int) -> float:
    return sum(max(min_repeat_ms / 1000.0, number * x) for lat in latencies for x in lat)


def run_opscope(cands, args_spec, target_dict, protocol, overlap=False, batch=4, timeout_s=600.0):
    """Build and measure ``cands`` with opscope's roles; with ``overlap`` the next batch builds
    (in the build workers) while the current one is measured."""
    from concurrent.futures import ThreadPoolExecutor

    from opscope.collector.local_builder import LocalBuilder
    from opscope.collector.local_runner import LocalRunner
    from opscope.collector.roles import RunJob

    builder, runner = LocalBuilder(target_dict), LocalRunner()
    pool = ThreadPoolExecutor(1)
    batches = [cands[i:i + batch] for i in range(0, len(cands), batch)]
    results = []
    try:
        t_start = time.perf_counter()
        builder._pool()  # start the workers before the clock, as a long collection does once
        runner._worker(1, False)
        t0 = time.perf_counter()
        startup = t0 - t_start
        ahead = None
        for i, b in enumerate(batches):
            if overlap:
                built = (ahead or pool.submit(builder.build, b)).result()
                ahead = pool.submit(builder.build, batches[i + 1]) if i + 1 < len(batches) else None
            else:
                built = builder.build(b)
            results += runner.run([RunJob(x.artifact, args_spec, 1, protocol, timeout_s) for x in built if x.ok])
        wall = time.perf_counter() - t0
    finally:
        pool.shutdown()
        builder.close()
        runner.close()
    lat = [list(r.latencies_s) for r in results if r.status == "ok"]
    return wall, lat, startup


def run_metaschedule(cands, func, target, protocol):
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.builder import BuilderInput
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, RunnerInput

    # generous time limits: on a busy machine the default 30 s (which includes each fresh worker's
    # TVM import) times builds out, and the comparison is about throughput, not about time-outs
    builder = ms.builder.LocalBuilder(max_workers=os.cpu_count(), timeout_sec=600)
    runner = ms.runner.LocalRunner(timeout_sec=600, evaluator_config=EvaluatorConfig(
        number=protocol.number, repeat=protocol.repeat, min_repeat_ms=protocol.min_repeat_ms,
        enable_cpu_cache_flush=False))
    info = ArgInfo.from_prim_func(func)
    mods = [tvm.ir.load_json(c.module_json) for c in cands]
    t0 = time.perf_counter()
    built = builder.build([BuilderInput(m, target) for m in mods])
    futures = runner.run([RunnerInput(b.artifact_path, "cpu", info) for b in built if b.error_msg is None])
    results = [f.result() for f in futures]
    wall = time.perf_counter() - t0
    lat = [[float(x) for x in r.run_secs] for r in results if r.error_msg is None]
    return wall, lat, 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", type=int, default=20)
    p.add_argument("--size", type=int, default=256, help="square dense operator size")
    p.add_argument("--repro", type=int, default=20, help="schedules measured twice for reproducibility")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--min-repeat-ms", type=int, default=100, help="MetaSchedule's default is 100")
    a = p.parse_args(argv)

    from opscope.collector.ms_sampler import MetaScheduleSampler
    from opscope.collector.protocol import Protocol
    from opscope.collector.roles import arg_specs
    from opscope.collector.te_ops import dense_operator
    from opscope.targets import detect_host, tvm_target, tvm_target_dict

    spec = detect_host()
    target = tvm_target(spec)
    op = dense_operator(a.size, a.size, a.size)
    n = max(a.candidates, a.repro)
    print(f"sampling {n} schedules of {op.name} ...", file=sys.stderr, flush=True)
    cands = MetaScheduleSampler(target).candidates(op, n, seed=0)[1:]
    protocol = Protocol(number=1, repeat=a.repeat, min_repeat_ms=a.min_repeat_ms)
    args_spec = arg_specs(op.prim_func)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)

    rows = []
    print("opscope ...", file=sys.stderr, flush=True)
    w1, lat1, start1 = run_opscope(cands[:a.candidates], args_spec, tvm_target_dict(spec), protocol)
    rows.append(("opscope", w1, lat1, 0.0))
    rows.append(("opscope+start", w1 + start1, lat1, start1))
    print("opscope, builds overlapped with measuring ...", file=sys.stderr, flush=True)
    w3, lat3, _ = run_opscope(cands[:a.candidates], args_spec, tvm_target_dict(spec), protocol, overlap=True)
    rows.append(("opscope-overlap", w3, lat3, 0.0))
    print("MetaSchedule LocalBuilder + LocalRunner ...", file=sys.stderr, flush=True)
    w2, lat2, _ = run_metaschedule(cands[:a.candidates], op.prim_func.with_attr("global_symbol", "main"),
                                     target, protocol)
    rows.append(("metaschedule", w2, lat2, 0.0))

    print(f"\n{a.candidates} candidates of {op.name}, protocol number={protocol.number} repeat={protocol.repeat} "
          f"min_repeat_ms={protocol.min_repeat_ms}")
    print(f"{'harness':16s} {'ok':>4s} {'wall s':>8s} {'kernel s':>9s} {'meas/min':>9s} {'efficiency':>10s}")
    rates = {}
    for name, wall, lat, _start in rows:
        kernel = _kernel_s(lat, protocol.number, protocol.min_repeat_ms)
        rates[name] = len(lat) / wall * 60
        print(f"{name:16s} {len(lat):4d} {wall:8.1f} {kernel:9.1f} {rates[name]:9.1f} {kernel / wall:10.2f}")
    print(f"opscope / MetaSchedule rate: {rates['opscope'] / rates['metaschedule']:.2f}x steady, "
          f"{rates['opscope+start'] / rates['metaschedule']:.2f}x with start-up (goal >= 1.5x); "
          "efficiency goal >= 0.7")

    print(f"\nreproducibility: the first {a.repro} schedules in two separate opscope runs ...", file=sys.stderr)
    # the first run is the measured opscope run above when it covered them
    r1 = lat1[:a.repro] if a.candidates >= a.repro else run_opscope(
        cands[:a.repro], args_spec, tvm_target_dict(spec), protocol)[1]
    r2 = run_opscope(cands[:a.repro], args_spec, tvm_target_dict(spec), protocol)[1]
    for stat in (statistics.median, min):
        diffs = [abs(stat(x) - stat(y)) / stat(x) for x, y in zip(r1, r2)]
        print(f"reproducibility over {len(diffs)} schedules, {stat.__name__} of the repeats: median "
              f"|run1 - run2| / run1 = {100 * statistics.median(diffs):.1f}% (goal <= 3%), max {100 * max(diffs):.1f}%")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
