"""XGBoost boosters evaluated by a small compiled kernel: the same sums, several times faster.

XGBoost's own predictor walks each tree node by node, one row at a time.  Here every tree is laid
out as a complete binary tree of the ensemble's depth (a leaf above the last level becomes a chain
of nodes whose threshold is +inf, so every row goes left down to a copy of the leaf's value).  Then
a tree is walked by all rows of a block together, one level per step, with no branch but the
comparison: ``node = 2 * node + 1 + right``.  The compiler turns that loop into vector gathers.

Splits are XGBoost's: a row goes left when ``x < threshold`` (both float32), and a missing value
(NaN) goes where the node's ``default_left`` says.  Per booster the kernel returns the sum of its
trees' leaves; the caller adds the base score or the base margin, as XGBoost does.

The C source below is compiled once per machine with the system's C compiler (``cc``, or ``$CC``)
into ``$OPSCOPE_CACHE_DIR`` (default ``~/.cache/opscope``) under ``kernels/``.  Where no compiler
works, or ``OPSCOPE_TREES=xgboost`` is set, ``packed`` returns None and the caller uses XGBoost.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

#: deeper trees are left to XGBoost (a complete tree of depth 13 would take 64 KiB a tree)
MAX_DEPTH = 12

#: rows walked together through one tree (``BLOCK`` in the C source)
BLOCK = 64

SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#define BLOCK 64
#define BLOCK_LOG2 6

/* X: n x F doubles, row-major.  Per tree t (of T): inner nodes (2^D - 1) in heap order, code =
   feature index, negative (bit 31 set) when a missing value goes left; thr = threshold; leaves (2^D)
   values.  out: n x G doubles, out[r * G + booster[t]] += the leaf row r reaches in tree t.  A row
   goes left when (float) x < thr, or when x is missing and the code is negative.  Rows are taken
   BLOCK at a time, converted to float and transposed (xt[f * BLOCK + i]), so that every row of the
   block reads the first levels' features with plain vector loads. */

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX2__)
#define LANES 8
#else
#define LANES 1
#endif

int forest_lanes(void) { return LANES; }

#if LANES == 16
/* one level for the 16 rows of group j: x given, node data (cc, s) given; returns the left mask */
static inline __mmask16 goes_left(__m512 x, __m512 s, __m512i cc) {
    return _mm512_cmp_ps_mask(x, s, _CMP_LT_OQ)
        | (_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q) & _mm512_cmplt_epi32_mask(cc, _mm512_setzero_si512()));
}
#endif

int forest_sums(const double *X, int64_t n, int64_t F, const int32_t *code, const float *thr,
                const float *leaf, const int32_t *booster, int32_t T, int32_t D, int32_t G,
                double *out)
{
    const int32_t inner = (1 << D) - 1, leaves = 1 << D;
    double *acc = (double *)malloc(sizeof(double) * (size_t)G * BLOCK);
    float *xt = (float *)malloc(sizeof(float) * (size_t)F * BLOCK);
    if (!acc || !xt) { free(acc); free(xt); return 1; }
    for (int64_t r0 = 0; r0 < n; r0 += BLOCK) {
        const int32_t nb = (int32_t)(n - r0 < BLOCK ? n - r0 : BLOCK);
        for (int32_t i = 0; i < BLOCK; ++i) {  /* rows past the end repeat the block's first */
            const double *row = X + (r0 + (i < nb ? i : 0)) * F;
            for (int64_t f = 0; f < F; ++f) xt[f * BLOCK + i] = (float)row[f];
        }
        for (int32_t i = 0; i < G * BLOCK; ++i) acc[i] = 0.0;
        for (int32_t t = 0; t < T; ++t) {
            const int32_t *c = code + (int64_t)t * inner;
            const float *h = thr + (int64_t)t * inner;
            const float *v = leaf + (int64_t)t * leaves;
            double *a = acc + (int64_t)booster[t] * BLOCK;
#if LANES == 16
            /* the 16-row groups of the block walk the tree together, level by level, so that their
               gathers overlap.  Levels 0-3 read x with vector loads from the transposed block (a row's
               node there is told by its earlier turns); the node data of levels 0-4 (nodes 0-30) are
               in two registers, picked by permutes; deeper levels gather. */
            __m512i k[BLOCK / 16], ri[BLOCK / 16];
            __mmask16 r0m[BLOCK / 16], r1m[BLOCK / 16], r2m[BLOCK / 16];
            const __m512i low = _mm512_set1_epi32(0x7fffffff), two = _mm512_set1_epi32(2);
            const __m512i one = _mm512_set1_epi32(1);
            const __m512i c0 = _mm512_loadu_si512((const void *)c), c1 = _mm512_loadu_si512((const void *)(c + 16));
            const __m512 h0 = _mm512_loadu_ps(h), h1 = _mm512_loadu_ps(h + 16);
            const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
#pragma GCC unroll 16
            for (int32_t j = 0; j < BLOCK / 16; ++j) {
                k[j] = _mm512_setzero_si512();
                ri[j] = _mm512_add_epi32(lane, _mm512_set1_epi32(16 * j));
            }
#define COL(node) (xt + (int64_t)(c[node] & 0x7fffffff) * BLOCK + 16 * j)
            for (int32_t d = 0; d < D; ++d) {
#pragma GCC unroll 16
                for (int32_t j = 0; j < BLOCK / 16; ++j) {
                    __m512i cc;
                    __m512 x, s;
                    if (d < 5) {
                        cc = _mm512_permutex2var_epi32(c0, k[j], c1);
                        s = _mm512_permutex2var_ps(h0, k[j], h1);
                    } else {
                        cc = _mm512_i32gather_epi32(k[j], (const void *)c, 4);
                        s = _mm512_i32gather_ps(k[j], (const void *)h, 4);
                    }
                    if (d == 0) {
                        x = _mm512_loadu_ps(COL(0));
                    } else if (d == 1) {
                        x = _mm512_mask_blend_ps(r0m[j], _mm512_loadu_ps(COL(1)), _mm512_loadu_ps(COL(2)));
                    } else if (d == 2) {
                        const __m512 xl = _mm512_mask_blend_ps(r1m[j], _mm512_loadu_ps(COL(3)), _mm512_loadu_ps(COL(4)));
                        const __m512 xr = _mm512_mask_blend_ps(r1m[j], _mm512_loadu_ps(COL(5)), _mm512_loadu_ps(COL(6)));
                        x = _mm512_mask_blend_ps(r0m[j], xl, xr);
                    } else if (d == 3) {
                        const __m512 xll = _mm512_mask_blend_ps(r2m[j], _mm512_loadu_ps(COL(7)), _mm512_loadu_ps(COL(8)));
                        const __m512 xlr = _mm512_mask_blend_ps(r2m[j], _mm512_loadu_ps(COL(9)), _mm512_loadu_ps(COL(10)));
                        const __m512 xrl = _mm512_mask_blend_ps(r2m[j], _mm512_loadu_ps(COL(11)), _mm512_loadu_ps(COL(12)));
                        const __m512 xrr = _mm512_mask_blend_ps(r2m[j], _mm512_loadu_ps(COL(13)), _mm512_loadu_ps(COL(14)));
                        x = _mm512_mask_blend_ps(r0m[j], _mm512_mask_blend_ps(r1m[j], xll, xlr),
                                                 _mm512_mask_blend_ps(r1m[j], xrl, xrr));
                    } else {
                        const __m512i f = _mm512_and_si512(cc, low);
                        x = _mm512_i32gather_ps(_mm512_add_epi32(_mm512_slli_epi32(f, BLOCK_LOG2), ri[j]),
                                                (const void *)xt, 4);
                    }
                    const __mmask16 left = goes_left(x, s, cc);
                    if (d == 0) r0m[j] = _knot_mask16(left);
                    if (d == 1) r1m[j] = _knot_mask16(left);
                    if (d == 2) r2m[j] = _knot_mask16(left);
                    const __m512i down = _mm512_add_epi32(_mm512_add_epi32(k[j], k[j]), two);
                    k[j] = _mm512_mask_sub_epi32(down, left, down, one);
                }
            }
#undef COL
#pragma GCC unroll 16
            for (int32_t j = 0; j < BLOCK / 16; ++j) {
                const __m512 val = _mm512_i32gather_ps(_mm512_sub_epi32(k[j], _mm512_set1_epi32(inner)),
                                                       (const void *)v, 4);
                double *aj = a + 16 * j;
                _mm512_storeu_pd(aj, _mm512_add_pd(_mm512_loadu_pd(aj), _mm512_cvtps_pd(_mm512_castps512_ps256(val))));
                _mm512_storeu_pd(aj + 8, _mm512_add_pd(_mm512_loadu_pd(aj + 8),
                                 _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(val), 1)))));
            }
#elif LANES == 8
            __m256i k[BLOCK / 8], ri[BLOCK / 8];
            const __m256i low = _mm256_set1_epi32(0x7fffffff), two = _mm256_set1_epi32(2);
            const __m256i lane = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
#pragma GCC unroll 16
            for (int32_t j = 0; j < BLOCK / 8; ++j) {
                k[j] = _mm256_setzero_si256();
                ri[j] = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * j));
            }
            for (int32_t d = 0; d < D; ++d) {
#pragma GCC unroll 16
                for (int32_t j = 0; j < BLOCK / 8; ++j) {
                    const __m256i cc = _mm256_i32gather_epi32((const int *)c, k[j], 4);
                    const __m256i f = _mm256_and_si256(cc, low);
                    const __m256 x = _mm256_i32gather_ps(xt, _mm256_add_epi32(_mm256_slli_epi32(f, BLOCK_LOG2), ri[j]), 4);
                    const __m256 s = _mm256_i32gather_ps(h, k[j], 4);
                    /* all ones where the row goes left: x < s, or missing and default-left */
                    const __m256 left = _mm256_or_ps(_mm256_cmp_ps(x, s, _CMP_LT_OQ),
                        _mm256_and_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q), _mm256_castsi256_ps(_mm256_srai_epi32(cc, 31))));
                    k[j] = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(k[j], k[j]), two), _mm256_castps_si256(left));
                }
            }
#pragma GCC unroll 16
            for (int32_t j = 0; j < BLOCK / 8; ++j) {
                const __m256 val = _mm256_i32gather_ps(v, _mm256_sub_epi32(k[j], _mm256_set1_epi32(inner)), 4);
                double *aj = a + 8 * j;
                _mm256_storeu_pd(aj, _mm256_add_pd(_mm256_loadu_pd(aj), _mm256_cvtps_pd(_mm256_castps256_ps128(val))));
                _mm256_storeu_pd(aj + 4, _mm256_add_pd(_mm256_loadu_pd(aj + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(val, 1))));
            }
#else
            for (int32_t i = 0; i < nb; ++i) {
                int32_t k = 0;
                for (int32_t d = 0; d < D; ++d) {
                    const int32_t cc = c[k];
                    const float x = xt[(int64_t)(cc & 0x7fffffff) * BLOCK + i];
                    const int32_t left = (x < h[k]) || (x != x && cc < 0);
                    k = 2 * k + 2 - left;
                }
                a[i] += (double)v[k - inner];
            }
#endif
        }
        double *ob = out + r0 * G;
        for (int32_t g = 0; g < G; ++g)
            for (int32_t i = 0; i < nb; ++i) ob[(int64_t)i * G + g] += acc[(int64_t)g * BLOCK + i];
    }
    free(acc);
    free(xt);
    return 0;
}
"""

_lock = threading.Lock()
_lib: Any = None
_lib_tried = False


def _cache_root() -> Path | None:
    root = os.environ.get("OPSCOPE_CACHE_DIR", "")
    if root.lower() == "off":
        return None
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "opscope") / "kernels"


def _cpu_identity() -> str:
    """What ``-march=native`` depends on: the CPU's model and flags (Linux), else the platform."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor() + platform.machine()


def _compile(target: Path) -> bool:
    src = SOURCE
    cc = os.environ.get("CC", "cc")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        c_file, so_file = Path(tmp) / "forest.c", Path(tmp) / target.name
        c_file.write_text(src)
        for flags in (["-O3", "-march=native"], ["-O3"]):
            try:
                done = subprocess.run([cc, *flags, "-fPIC", "-shared", "-o", str(so_file), str(c_file)],
                                      capture_output=True, timeout=120)
            except (OSError, subprocess.SubprocessError):
                return False
            if done.returncode == 0:
                os.replace(so_file, target)  # atomic: another process sees the old file or the whole new one
                return True
    return False


class Kernel:
    """A loaded build of ``SOURCE``: ``fn`` (``forest_sums``) and ``lanes`` (rows per vector: 16, 8 or 1)."""

    def __init__(self, lib: Any, keep: Any = None) -> None:
        p = ctypes.c_void_p
        self.lib, self.keep = lib, keep  # keep: a temporary folder the library lies in, alive as long as it
        self.fn = lib.forest_sums
        self.fn.argtypes = [p, ctypes.c_int64, ctypes.c_int64, p, p, p, p, ctypes.c_int32, ctypes.c_int32,
                            ctypes.c_int32, p]
        self.fn.restype = ctypes.c_int
        lanes = lib.forest_lanes
        lanes.restype = ctypes.c_int
        self.lanes = int(lanes())


def bind(lib: Any, keep: Any = None) -> Kernel:
    """A ``Kernel`` for a loaded (``ctypes.CDLL``) build of ``SOURCE``."""
    return Kernel(lib, keep)


def kernel() -> Kernel | None:
    """This machine's build of the kernel (compiled on first use, then cached on disk), or None where it
    cannot be built or ``OPSCOPE_TREES=xgboost`` switches it off."""
    global _lib, _lib_tried
    if os.environ.get("OPSCOPE_TREES", "").lower() == "xgboost":
        return None
    with _lock:
        if _lib_tried:
            return _lib
        _lib_tried = True
        digest = hashlib.sha256((SOURCE + _cpu_identity() + os.environ.get("CC", "cc")).encode())
        name = f"forest-{digest.hexdigest()[:16]}.so"
        root = _cache_root()
        holder = None
        if root is None:
            holder = tempfile.TemporaryDirectory()
            root = Path(holder.name)
        path = root / name
        try:
            if not path.exists() and not _compile(path):
                return None
            _lib = bind(ctypes.CDLL(str(path)), holder)
        except (OSError, AttributeError):  # unloadable, or a file without the kernel's symbols
            return None
        return _lib


def _trees(booster: Any) -> tuple[list[dict[str, Any]], float]:
    """A booster's trees (XGBoost's JSON model) and its base score (in margin units)."""
    model = json.loads(bytes(booster.save_raw("json")))
    learner = model["learner"]
    gb = learner["gradient_booster"]
    if gb.get("name") != "gbtree":
        raise ValueError(f"booster {gb.get('name')!r}")
    base = learner["learner_model_param"]["base_score"]
    base = json.loads(base)[0] if str(base).startswith("[") else float(base)
    objective = learner.get("objective", {}).get("name", "")
    if objective.startswith("reg:logistic") or objective.startswith("binary:"):
        raise ValueError(f"objective {objective!r}")  # base score is a probability there, not a margin
    return gb["model"]["trees"], float(base)


def _depth(tree: dict[str, Any]) -> int:
    """The deepest leaf's depth (the root's is 0)."""
    left = np.asarray(tree["left_children"], dtype=np.int64)
    right = np.asarray(tree["right_children"], dtype=np.int64)
    nodes, depth = np.array([0]), 0
    while True:
        nodes = nodes[left[nodes] != -1]
        if not nodes.size:
            return depth
        nodes, depth = np.concatenate([left[nodes], right[nodes]]), depth + 1
        if depth > MAX_DEPTH:
            return depth


class PackedForest:
    """Boosters' trees as complete binary trees, in arrays the kernel walks.  ``sums(X)`` is, per row
    and booster, the sum of that booster's leaves (``X`` float32, NaN where missing); ``base[j]`` is
    booster j's base score."""

    def __init__(self, boosters: list[Any], n_features: int) -> None:
        loaded = [_trees(b) for b in boosters]
        self.base = np.array([base for _, base in loaded])
        trees = [(j, t) for j, (ts, _) in enumerate(loaded) for t in ts]
        if any(t.get("categories_nodes") for _, t in trees):
            raise ValueError("categorical splits")
        self.depth = max(1, max((_depth(t) for _, t in trees), default=1))
        if self.depth > MAX_DEPTH:
            raise ValueError(f"trees of depth {self.depth}")
        D = self.depth
        inner, leaves = (1 << D) - 1, 1 << D
        T = len(trees)
        # 32 entries past the last tree: the kernel loads each tree's first 32 nodes at once
        self._code = np.zeros(T * inner + 32, dtype=np.int32)
        self._thr = np.full(T * inner + 32, np.inf, dtype=np.float32)
        self.code, self.thr = self._code[:T * inner].reshape(T, inner), self._thr[:T * inner].reshape(T, inner)
        self.leaf = np.zeros((T, leaves), dtype=np.float32)
        self.booster = np.array([j for j, _ in trees], dtype=np.int32)
        self.n_boosters = len(boosters)
        self.n_features = n_features
        for t, (_, tree) in enumerate(trees):
            self._lay(t, tree, D)

    def _lay(self, t: int, tree: dict[str, Any], D: int) -> None:
        """Tree ``t`` into row ``t`` of the arrays, one depth level at a time (numpy over the level's nodes)."""
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        feat = np.asarray(tree["split_indices"], dtype=np.int64)
        cond = np.asarray(tree["split_conditions"], dtype=np.float32)
        dleft = np.asarray(tree["default_left"], dtype=bool)
        inner = (1 << D) - 1
        code, thr, leaf = self.code[t], self.thr[t], self.leaf[t]
        nodes, pos = np.array([0]), np.array([0])  # XGBoost's nodes at this depth, their heap positions
        for d in range(D + 1):
            is_leaf = left[nodes] == -1
            lk, lp = nodes[is_leaf], pos[is_leaf]
            if lk.size:
                # a leaf at depth d: its subtree of the complete tree always goes left (threshold +inf,
                # missing left) down to its first leaf slot; all its slots get the value
                chain = lp.copy()
                while chain[0] < inner:  # all leaves of one depth are equally far from the last level
                    code[chain] = np.int32(-(2**31))
                    chain = 2 * chain + 1
                span = 1 << (D - d)
                leaf[(chain - inner)[:, None] + np.arange(span)] = cond[lk][:, None]
            nodes, pos = nodes[~is_leaf], pos[~is_leaf]
            if not nodes.size:
                return
            if d == D:
                raise ValueError("tree deeper than its depth")
            f = feat[nodes]
            if f.min() < 0 or f.max() >= self.n_features:
                raise ValueError(f"split on feature {int(f.max())} of {self.n_features}")
            code[pos] = (f | np.where(dleft[nodes], -(2**31), 0)).astype(np.int32)
            thr[pos] = cond[nodes]
            nodes = np.concatenate([left[nodes], right[nodes]])
            pos = np.concatenate([2 * pos + 1, 2 * pos + 2])

    def sums(self, X: np.ndarray, threads: int = 1, lib: Kernel | None = None) -> np.ndarray:
        """Per row of ``X`` (float64 or float32; NaN where missing) and booster, the sum of its leaves (by
        ``lib``, default this machine's build)."""
        lib = lib or kernel()
        if lib is None:
            raise RuntimeError("the tree kernel is not available")
        fn = lib.fn
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {X.shape}")
        n = len(X)
        out = np.zeros((n, self.n_boosters))
        if n == 0:
            return out
        failed = []

        def run(lo: int, hi: int) -> None:
            if fn(X[lo:].ctypes.data, hi - lo, self.n_features, self.code.ctypes.data, self.thr.ctypes.data,
                  self.leaf.ctypes.data, self.booster.ctypes.data, len(self.booster), self.depth,
                  self.n_boosters, out[lo:].ctypes.data):
                failed.append((lo, hi))

        threads = max(1, min(threads, (n + BLOCK - 1) // BLOCK))
        if threads == 1:
            run(0, n)
        else:  # ctypes lets go of the GIL during the call: the chunks run on separate cores
            edges = np.linspace(0, n, threads + 1).astype(int)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda k: run(edges[k], edges[k + 1]), range(threads)))
        if failed:
            raise MemoryError("the tree kernel could not allocate its block buffers")
        return out


def packed(boosters: list[Any], n_features: int) -> PackedForest | None:
    """The boosters packed for the kernel, or None where the kernel is unavailable or they do not fit it
    (then XGBoost predicts them)."""
    lib = kernel()
    if not boosters or lib is None or lib.lanes < 8:  # without vector gathers XGBoost's own walk is as fast
        return None
    try:
        return PackedForest(boosters, n_features)
    except (ValueError, KeyError, TypeError, IndexError):
        return None
