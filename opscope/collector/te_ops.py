"""Small operators built from TVM TE, wrapped as ``Operator``s.

For tests, the throughput benchmark and the probe: they need real TIR kernels of a known shape
without importing a whole model.
"""

from __future__ import annotations

from opscope.workloads.operator import GemmView, Operator, TensorInfo


def _key(func) -> str:
    from opscope.workloads.extract import structural_key

    return structural_key(func)


def dense_operator(m: int, n: int, k: int, dtype: str = "float32", name: str = "") -> Operator:
    """``Y[m, n] = sum_k X[m, k] * W[n, k]`` (an FC layer)."""
    from tvm import te

    x = te.placeholder((m, k), dtype, name="X")
    w = te.placeholder((n, k), dtype, name="W")
    r = te.reduce_axis((0, k), name="k")
    y = te.compute((m, n), lambda i, j: te.sum(x[i, r] * w[j, r], axis=r), name="Y")
    func = te.create_prim_func([x, w, y])
    return Operator(
        name=name or f"dense_{m}x{n}x{k}", kind="dense",
        tensors=(TensorInfo("X", (m, k), dtype, "input"), TensorInfo("W", (n, k), dtype, "weight"),
                 TensorInfo("Y", (m, n), dtype, "output")),
        flops=2 * m * n * k, gemm=GemmView(1, m, n, k), loops=(("b", 1), ("m", m), ("n", n), ("k", k)),
        key=_key(func), prim_func=func,
    )


def add_operator(n: int, dtype: str = "float32", name: str = "") -> Operator:
    """``B[i] = A[i] + 1`` (an elementwise operator)."""
    from tvm import te

    a = te.placeholder((n,), dtype, name="A")
    b = te.compute((n,), lambda i: a[i] + 1, name="B")
    func = te.create_prim_func([a, b])
    return Operator(
        name=name or f"add_{n}", kind="elementwise",
        tensors=(TensorInfo("A", (n,), dtype, "input"), TensorInfo("B", (n,), dtype, "output")),
        flops=n, loops=(("i", n),), key=_key(func), prim_func=func,
    )
