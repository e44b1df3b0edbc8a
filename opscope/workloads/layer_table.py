"""Layer tables: models described as one CSV row per layer, turned into ``Operator``s (no PrimFunc).

Two formats, told apart by the header:

**FRAME's format, unchanged** (maestro-project/frame ``data/model/*.csv``).  Header ``K,C,Y,X,R,S,T``
for CNNs or ``M,N,D,H,Z,Z,T`` for language models; the header names are only labels: FRAME prepends
the batch size to the six numbers and reads them by position according to the type code ``T``
(``src/operators.py``).  With ``d1..d6`` the six numbers and ``B`` the batch:

====  ========  ==================================  ====================================
T     FRAME     meaning of d1..d6                   MACs (FRAME's ``get_num_ops``)
====  ========  ==================================  ====================================
0     FC        out=d1, in=d2                       B*out*in
1     CONV2D    K=d1, C=d2, Y=d3, X=d4, R=d5, S=d6  B*K*C*(Y-R+1)*(X-S+1)*R*S (no stride/pad)
2     DWCONV    C=d2, Y=d3, X=d4, R=d5, S=d6        B*C*Y*X*R*S (output keeps Y x X)
3     GEMM      M=d1, N=d2, K=d3                    B*M*N*K: weight (M,K) x input (K,N)
4     Logit     H=d1, M=d2, N=d3, D=d4              B*H*M*N*D: Q (M,D) x K^T -> (M,N)
5     Attend    H=d1, M=d2, N=d3, D=d4              B*H*M*N*D: P (M,N) x V (N,D) -> (M,D)
====  ========  ==================================  ====================================

Where FRAME's tensor shapes are wrong we use the right ones: its CONV2D output is listed as
``(B,K,Y,X)`` although it computes ``(Y-R+1) x (X-S+1)`` pixels; ours is the computed size.

**opscope's format**: a header with a ``type`` column; columns (empty cells take the default)::

    name,type,K,C,Y,X,R,S,stride,padding,groups,M,N,D,H,count

``type`` is ``conv2d`` (K out channels, C in channels, Y x X input, R x S kernel, stride,
symmetric padding, groups), ``depthwise_conv2d`` (C, Y, X, R, S, stride, padding; K defaults to C),
``dense`` (K out features, C in features), ``matmul`` ((M x D) @ (D x N) between activations),
``logit``/``attend`` (H heads, M queries, N keys, D head dim).  Output size of a conv:
``(Y + 2*padding - R) // stride + 1``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from opscope.errors import WorkloadError
from opscope.workloads.operator import GemmView, Operator, TensorInfo, dtype_bytes

FRAME_TYPES = {0: "FC", 1: "CONV2D", 2: "DWCONV", 3: "GEMM", 4: "Logit", 5: "Attend"}
OPSCOPE_TYPES = ("conv2d", "depthwise_conv2d", "dense", "matmul", "logit", "attend")
OPSCOPE_COLUMNS = ("name", "type", "K", "C", "Y", "X", "R", "S", "stride", "padding", "groups",
                   "M", "N", "D", "H", "count")
#: Largest dimension accepted: TVM indexes tensors with (at most) 64-bit integers and every real
#: layer is far below 2**31; a larger value is a typo (``1e300`` gave 300-digit FLOP counts).
MAX_DIM = 2**31 - 1
#: Most rows read from one table: real models have hundreds of layers; a million-row file held
#: every row as an operator at once (about 5 KB each, 4.95 GB for 22 MB of CSV).
MAX_ROWS = 20_000


def load_layer_table(path: str | os.PathLike[str], batch_size: int = 1, dtype: str = "float32") -> list[Operator]:
    """The operators of a FRAME or opscope layer table, in file order (one per row, not deduplicated)."""
    path = Path(path)
    if batch_size < 1:
        raise WorkloadError(f"{path}: batch_size must be >= 1, got {batch_size}")
    try:
        dtype_bytes(dtype)
    except ValueError:
        raise WorkloadError(f"{path}: unknown dtype {dtype!r}") from None
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # a BOM (spreadsheet export) is dropped
            rows = []
            for row in csv.reader(fh):
                rows.append(row)
                if len(rows) > MAX_ROWS + 1:
                    raise WorkloadError(f"{path}: more than {MAX_ROWS} layers; a layer table describes one model "
                                        "(split it, or pass the operators from Python)")
    except csv.Error as exc:
        raise WorkloadError(f"{path}: not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read layer table: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise WorkloadError(f"{path}: not a text CSV file") from None
    rows = [(i + 1, r) for i, r in enumerate(rows) if r and any(c.strip() for c in r)]
    if not rows:
        raise WorkloadError(f"{path}: empty layer table")
    _, header = rows[0]
    header = [h.strip() for h in header]
    model = path.stem
    if "type" in header:
        ops = [_opscope_row(path, ln, header, r, batch_size, dtype, model) for ln, r in rows[1:]]
    elif len(header) == 7 and header[-1] == "T":
        ops = [_frame_row(path, ln, r, batch_size, dtype, model) for ln, r in rows[1:]]
    else:
        raise WorkloadError(
            f"{path}:{rows[0][0]}: unknown header {','.join(header)!r}; expected FRAME's K,C,Y,X,R,S,T or "
            f"M,N,D,H,Z,Z,T, or an opscope table with a 'type' column ({','.join(OPSCOPE_COLUMNS)})"
        )
    if not ops:
        raise WorkloadError(f"{path}: the layer table has a header but no rows")
    return ops


# -- FRAME rows --------------------------------------------------------------------------------------
def _frame_row(path: Path, line: int, row: list[str], b: int, dtype: str, model: str) -> Operator:
    where = f"{path}:{line}"
    if len(row) != 7:
        raise WorkloadError(f"{where}: expected 7 values (6 dimensions and the type T), got {len(row)}")
    vals = []
    for i, cell in enumerate(row):
        try:
            vals.append(int(float(cell)) if float(cell).is_integer() else None)
        except ValueError:
            vals.append(None)
        if vals[-1] is None:
            raise WorkloadError(f"{where}: column {i + 1} is {cell.strip()!r}, not an integer")
    *d, t = vals
    if t not in FRAME_TYPES:
        raise WorkloadError(f"{where}: type T={t} is not one of FRAME's codes {FRAME_TYPES}")
    if any(x < 1 for x in d):
        raise WorkloadError(f"{where}: dimensions must be >= 1, got {d}")
    if any(x > MAX_DIM for x in d):
        big = next(x for x in d if x > MAX_DIM)
        raise WorkloadError(f"{where}: dimension {big:.3g} is above {MAX_DIM} (2^31 - 1); check the row")
    name = f"{model}.{line - 1}.{FRAME_TYPES[t]}"
    if t == 0:
        return dense_op(name, b, d[0], d[1], dtype, source="frame", model=model)
    if t == 1:
        k, c, y, x, r, s = d
        if r > y or s > x:
            raise WorkloadError(f"{where}: CONV2D kernel {r}x{s} larger than its input {y}x{x} (FRAME: no padding)")
        return conv_op(name, b, k, c, y, x, r, s, stride=1, padding=0, groups=1, dtype=dtype,
                       source="frame", model=model)
    if t == 2:
        _, c, y, x, r, s = d
        return frame_dwconv_op(name, b, c, y, x, r, s, dtype, model)
    if t == 3:
        m, n, k = d[0], d[1], d[2]
        return frame_gemm_op(name, b, m, n, k, dtype, model)
    h, m, n, dh = d[0], d[1], d[2], d[3]
    return attention_op(name, "logit" if t == 4 else "attend", b, h, m, n, dh, dtype, source="frame", model=model)


# -- opscope rows ------------------------------------------------------------------------------------
def _opscope_row(path: Path, line: int, header: list[str], row: list[str], b: int, dtype: str,
                 model: str) -> Operator:
    where = f"{path}:{line}"
    unknown = [h for h in header if h not in OPSCOPE_COLUMNS]
    if unknown:
        raise WorkloadError(f"{path}:1: unknown column {unknown[0]!r}; columns are {','.join(OPSCOPE_COLUMNS)}")
    if len(row) > len(header):
        raise WorkloadError(f"{where}: {len(row)} values but the header has {len(header)} columns")
    cells = {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}
    kind = cells.get("type", "")
    if kind not in OPSCOPE_TYPES:
        raise WorkloadError(f"{where}: type {kind!r} is not one of {', '.join(OPSCOPE_TYPES)}")

    def num(col: str, default: int | None = None) -> int:
        text = cells.get(col, "")
        if not text:
            if default is None:
                raise WorkloadError(f"{where}: column {col!r} is required for type {kind}")
            return default
        try:
            v = int(text)
        except ValueError:
            raise WorkloadError(f"{where}: column {col!r} is {text!r}, not an integer") from None
        if v < (0 if col == "padding" else 1):
            raise WorkloadError(f"{where}: column {col!r} must be >= {0 if col == 'padding' else 1}, got {v}")
        if v > MAX_DIM:
            raise WorkloadError(f"{where}: column {col!r} is {v:.3g}, above {MAX_DIM} (2^31 - 1); check the row")
        return v

    name = cells.get("name") or f"{model}.{line - 1}.{kind}"
    count = num("count", 1)
    if kind in ("conv2d", "depthwise_conv2d"):
        c = num("C")
        k = num("K", c if kind == "depthwise_conv2d" else None)
        groups = num("groups", c if kind == "depthwise_conv2d" else 1)
        if c % groups or k % groups:
            raise WorkloadError(f"{where}: groups={groups} must divide C={c} and K={k}")
        y, x, r, s = num("Y"), num("X"), num("R"), num("S")
        stride, pad = num("stride", 1), num("padding", 0)
        if y + 2 * pad < r or x + 2 * pad < s:
            raise WorkloadError(f"{where}: kernel {r}x{s} larger than the padded input {y + 2 * pad}x{x + 2 * pad}")
        op = conv_op(name, b, k, c, y, x, r, s, stride, pad, groups, dtype, source="table", model=model)
    elif kind == "dense":
        op = dense_op(name, b, num("K"), num("C"), dtype, source="table", model=model)
    elif kind == "matmul":
        op = matmul_op(name, b, num("M"), num("N"), num("D"), dtype, model)
    else:
        op = attention_op(name, kind, b, num("H"), num("M"), num("N"), num("D"), dtype, source="table", model=model)
    return op.with_count(count) if count != 1 else op


# -- operator builders -------------------------------------------------------------------------------
def conv_op(name: str, b: int, k: int, c: int, y: int, x: int, r: int, s: int, stride: int, padding: int,
            groups: int, dtype: str, source: str, model: str) -> Operator:
    """A 2-D convolution, NCHW, ``k`` output channels, ``c`` input channels, ``groups`` groups."""
    p = (y + 2 * padding - r) // stride + 1
    q = (x + 2 * padding - s) // stride + 1
    cg = c // groups
    depthwise = groups == c and groups > 1 and k % c == 0
    macs = b * k * cg * p * q * r * s
    tensors = (TensorInfo("data", (b, c, y, x), dtype, "input"),
               TensorInfo("weight", (k, cg, r, s), dtype, "weight"),
               TensorInfo("output", (b, k, p, q), dtype, "output"))
    if depthwise:
        gemm = GemmView(batch=k, m=b * p * q, n=1, k=cg * r * s)
    elif groups > 1:
        gemm = GemmView(batch=groups, m=b * p * q, n=k // groups, k=cg * r * s)
    else:
        gemm = GemmView(batch=1, m=b * p * q, n=k, k=c * r * s)
    return Operator(
        name=name, kind="depthwise_conv2d" if depthwise else "conv2d", tensors=tensors, flops=2 * macs,
        gemm=gemm, loops=(("n", b), ("k", k), ("c", cg), ("p", p), ("q", q), ("r", r), ("s", s)),
        attrs={"stride": (stride, stride), "padding": (padding, padding), "groups": groups,
               "kernel": (r, s), "source": source},
        models=(model,),
    )


def frame_dwconv_op(name: str, b: int, c: int, y: int, x: int, r: int, s: int, dtype: str, model: str) -> Operator:
    """FRAME's DWCONV: the output keeps the input's Y x X (as with 'same' padding); MACs B*C*Y*X*R*S."""
    macs = b * c * y * x * r * s
    tensors = (TensorInfo("data", (b, c, y, x), dtype, "input"),
               TensorInfo("weight", (c, 1, r, s), dtype, "weight"),
               TensorInfo("output", (b, c, y, x), dtype, "output"))
    return Operator(
        name=name, kind="depthwise_conv2d", tensors=tensors, flops=2 * macs,
        gemm=GemmView(batch=c, m=b * y * x, n=1, k=r * s),
        loops=(("n", b), ("k", c), ("c", 1), ("p", y), ("q", x), ("r", r), ("s", s)),
        attrs={"stride": (1, 1), "padding": ((r - 1) // 2, (s - 1) // 2), "groups": c, "kernel": (r, s),
               "source": "frame"},
        models=(model,),
    )


def dense_op(name: str, b: int, out_features: int, in_features: int, dtype: str, source: str, model: str) -> Operator:
    """A fully connected layer: ``(b, in) x (out, in)^T -> (b, out)``."""
    tensors = (TensorInfo("data", (b, in_features), dtype, "input"),
               TensorInfo("weight", (out_features, in_features), dtype, "weight"),
               TensorInfo("output", (b, out_features), dtype, "output"))
    return Operator(
        name=name, kind="dense", tensors=tensors, flops=2 * b * out_features * in_features,
        gemm=GemmView(1, b, out_features, in_features),
        loops=(("b", 1), ("m", b), ("n", out_features), ("k", in_features)),
        attrs={"source": source}, models=(model,),
    )


def frame_gemm_op(name: str, b: int, m: int, n: int, k: int, dtype: str, model: str) -> Operator:
    """FRAME's GEMM: weight ``(M, K)`` times input ``(B, K, N)`` gives ``(B, M, N)``; MACs B*M*N*K."""
    tensors = (TensorInfo("data", (b, k, n), dtype, "input"),
               TensorInfo("weight", (m, k), dtype, "weight"),
               TensorInfo("output", (b, m, n), dtype, "output"))
    return Operator(
        name=name, kind="matmul", tensors=tensors, flops=2 * b * m * n * k,
        gemm=GemmView(b, n, m, k), loops=(("b", b), ("m", n), ("n", m), ("k", k)),
        attrs={"source": "frame"}, models=(model,),
    )


def matmul_op(name: str, b: int, m: int, n: int, d: int, dtype: str, model: str) -> Operator:
    """``(b, M, D) @ (b, D, N) -> (b, M, N)`` between activations."""
    tensors = (TensorInfo("a", (b, m, d), dtype, "input"),
               TensorInfo("b", (b, d, n), dtype, "input"),
               TensorInfo("output", (b, m, n), dtype, "output"))
    kind = "batch_matmul" if b > 1 else "matmul"
    return Operator(name=name, kind=kind, tensors=tensors, flops=2 * b * m * n * d, gemm=GemmView(b, m, n, d),
                    loops=(("b", b), ("m", m), ("n", n), ("k", d)), attrs={"source": "table"}, models=(model,))


def attention_op(name: str, role: str, b: int, heads: int, m: int, n: int, head_dim: int, dtype: str,
                 source: str, model: str) -> Operator:
    """Attention's logit ``Q K^T`` (``role='logit'``) or attend ``P V`` (``role='attend'``), per head."""
    if role == "logit":
        tensors = (TensorInfo("query", (b, heads, m, head_dim), dtype, "input"),
                   TensorInfo("key", (b, heads, n, head_dim), dtype, "input"),
                   TensorInfo("output", (b, heads, m, n), dtype, "output"))
        gemm = GemmView(b * heads, m, n, head_dim)
    else:
        tensors = (TensorInfo("probs", (b, heads, m, n), dtype, "input"),
                   TensorInfo("value", (b, heads, n, head_dim), dtype, "input"),
                   TensorInfo("output", (b, heads, m, head_dim), dtype, "output"))
        gemm = GemmView(b * heads, m, head_dim, n)
    return Operator(
        name=name, kind="batch_matmul", tensors=tensors, flops=2 * b * heads * m * n * head_dim, gemm=gemm,
        loops=(("b", gemm.batch), ("m", gemm.m), ("n", gemm.n), ("k", gemm.k)),
        attrs={"attention": role, "seq_len": n, "heads": heads, "head_dim": head_dim, "source": source},
        models=(model,),
    )
