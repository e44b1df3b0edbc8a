"""MetaSchedule's per-store program features, rebuilt from a row's workload_script and trace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def _rows():
    import tvm
    from tvm.s_tir import Schedule

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
    from opscope.collector.ms_sampler import trace_to_json

    tuned = trace_to_json(sch.trace)
    return op, pd.DataFrame({
        "workload_key": [op.key] * 4 + ["other"],
        "schedule_id": ["default", "s1", "s1", "sbad", "default"],
        "workload_script": [script, script, script, script, ""],
        "trace_json": ["[]", tuned, tuned, '[["NotAnInstruction"]]', "[]"],
    })


def test_program_features_of_scheduled_functions():
    from opscope.predictor.features.program import COLUMNS, program_features

    _op, frame = _rows()
    X, skipped = program_features(frame)
    assert X.shape == (5, len(COLUMNS)) == (5, 328)
    assert np.isfinite(X[0]).all() and np.isfinite(X[1]).all()
    assert (X[1] == X[2]).all()  # the same schedule, once computed
    assert not np.allclose(X[0], X[1])  # vectorising and parallelising show in the features
    assert np.isnan(X[3]).all() and np.isnan(X[4]).all()
    reasons = dict(skipped)
    assert "other" in reasons and "stored without its TIR" in reasons["other"]
    assert any(k == frame["workload_key"].iloc[3] for k, _ in skipped)  # the bad trace is named too
