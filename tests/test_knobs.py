"""Loop knobs read from a scheduled function's TVMScript, and read again from a store's traces."""

from __future__ import annotations

from opscope.collector.knobs import loop_knobs, loop_nest

#: a MetaSchedule-scheduled dense + bias + relu as TVM 0.27 prints it (reads/writes lines left out)
SCRIPT = """
@T.prim_func(s_tir=True)
def main(x: T.Buffer((T.int64(137), T.int64(992)), "float32")):
    matmul_intermediate = T.sblock_alloc_buffer((T.int64(137), T.int64(704)))
    for i0_0_fused in T.parallel(T.int64(137), annotations={"pragma_auto_unroll_max_step": 16}):
        for i1_0, i0_1, i1_1 in T.grid(T.int64(4), T.int64(1), T.int64(8)):
            for i1_3_fused_init in T.vectorized(T.int64(11)):
                with T.sblock("matmul_init"):
                    matmul_intermediate[v_i0, v_i1] = T.float32(0.0)
            for k_0, i0_2, i1_2, k_1, i0_3 in T.grid(T.int64(496), T.int64(1), T.int64(2), T.int64(2), T.int64(1)):
                for i1_3_fused in T.vectorized(T.int64(11)):
                    with T.sblock("matmul_update"):
                        v_k = T.axis.reduce(T.int64(992), k_0 * T.int64(2) + k_1)
    for i0_i1_fused_0 in T.parallel(T.int64(1507)):
        for i0_i1_fused_1 in T.vectorized(T.int64(64)):
            with T.sblock("compute"):
                compute_intermediate[v_i0, v_i1] = T.max(matmul_intermediate[v_i0, v_i1], T.float32(0.0))
"""


def test_loop_nest_reads_kinds_extents_and_nesting():
    nest = loop_nest(SCRIPT)
    assert nest["compute"] == [("parallel", 1507), ("vectorized", 64)]
    assert nest["matmul_init"] == [("parallel", 137), ("serial", 4), ("serial", 1), ("serial", 8), ("vectorized", 11)]
    # the update's loops: the parallel one, the first grid (its siblings' init loop closed), the second grid
    assert nest["matmul_update"] == [("parallel", 137), ("serial", 4), ("serial", 1), ("serial", 8),
                                     ("serial", 496), ("serial", 1), ("serial", 2), ("serial", 2), ("serial", 1),
                                     ("vectorized", 11)]


def test_loop_knobs_of_the_main_block():
    k = loop_knobs(SCRIPT)
    # the main block has the largest loop nest: matmul_update, 137*4*8*496*2*2*11 iterations
    assert k["parallel_extent"] == 137 and k["main_vector_len"] == 11 and k["main_inner"] == 11
    # over the whole function: the largest vectorized loop (the epilogue's), and how many loops of each kind
    assert k["vector_len"] == 64 and k["vector_loops"] == 3 and k["parallel_loops"] == 2
    assert k["main_unroll_len"] == 1


def test_loop_knobs_of_an_unscheduled_function_and_plain_ranges():
    script = """
def main():
    for i0, i1, k in T.grid(1, 1024, 784):
        with T.sblock("matmul"):
            pass
    for ax0 in range(1024):
        for ax1 in T.unroll(4):
            with T.sblock("T_add"):
                pass
"""
    k = loop_knobs(script)
    assert k == {"parallel_extent": 1, "parallel_loops": 0, "vector_len": 1, "vector_loops": 0,
                 "main_vector_len": 1, "main_unroll_len": 1, "main_inner": 784}
    assert loop_nest(script)["T_add"] == [("serial", 1024), ("unroll", 4)]


def test_threads_used_is_capped_by_the_parallel_extent_the_current_reader_recorded():
    import numpy as np
    import pandas as pd

    from opscope.predictor.features.build import threads_used

    frame = pd.DataFrame({"knob_parallel_extent": [1, 64, np.nan, 1, 1],
                          "knob_main_inner": [784, 3, np.nan, np.nan, 2]})
    threads = np.array([2.0, 2.0, 2.0, 2.0, 4.0])
    # a default schedule (no parallel loop) uses 1 thread; 64 parallel iterations keep 2 busy; unknown
    # knobs, and a parallel extent of 1 from the old reader (no main_inner), leave the threads asked for
    assert threads_used(frame, threads).tolist() == [1.0, 2.0, 2.0, 2.0, 1.0]
    assert threads_used(frame.drop(columns="knob_main_inner"), threads).tolist() == threads.tolist()
