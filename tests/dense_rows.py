"""Store-format rows of one real operator (a 64^3 dense) under TVM's default schedule, a tuned
schedule (vectorised and parallel) twice, a trace that does not apply, and a workload without TIR:
what the features rebuilt from a row's ``workload_script`` and ``trace_json`` are tested on."""

from __future__ import annotations

import pandas as pd


def dense_rows():
    """(the operator, its five rows)."""
    import tvm
    from tvm.s_tir import Schedule

    from opscope.collector.ms_sampler import trace_to_json
    from opscope.collector.te_ops import dense_operator
    from opscope.store.sqlite import workload_script

    op = dense_operator(64, 64, 64)
    script = workload_script(op)
    sch = Schedule(tvm.IRModule({"main": op.prim_func}))
    block = sch.get_child_blocks(sch.get_sblock("root"))[0]
    loops = sch.get_loops(block)
    _, inner = sch.split(loops[1], [None, 16])
    sch.vectorize(inner)
    sch.parallel(loops[0])
    tuned = trace_to_json(sch.trace)
    return op, pd.DataFrame({
        "workload_key": [op.key] * 4 + ["other"], "target": "host",
        "schedule_id": ["default", "s1", "s1", "sbad", "default"],
        "schedule_kind": ["default", "sampled", "sampled", "sampled", "default"],
        "workload_script": [script, script, script, script, ""],
        "trace_json": ["[]", tuned, tuned, '[["NotAnInstruction"]]', "[]"],
    })
