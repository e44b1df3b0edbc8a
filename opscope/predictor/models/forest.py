"""XGBoost boosters evaluated by a small compiled kernel: the same sums, several times faster.

XGBoost's own predictor walks each tree node by node, one row at a time.  Here every tree is laid
out as a complete binary tree of the ensemble's depth (a leaf above the last level becomes a chain
of nodes every row leaves to the left, down to copies of the leaf's value), and every threshold as
its rank among the thresholds of its feature, so that a node is one 32-bit code (feature, where a
missing value goes, threshold rank).  A row's features are turned into ranks once per call, and then
"x < threshold" is "rank <= the node's rank".  Rows walk a tree a block at a time, level by level,
many to a vector (``node = 2 * node + 1 + right``, no branch): the first levels read the rows' ranks
with plain loads and their codes from registers, the deeper ones gather.

Splits are XGBoost's: a row goes left when ``x < threshold`` (both float32), and a missing value
(NaN) goes where the node's ``default_left`` says.  Per booster the kernel returns the sum of its
trees' leaves; the caller adds the base score or the base margin, as XGBoost does.

The C source below (AVX-512, AVX2, and a plain loop) is compiled once per machine with the system's
C compiler (``cc``, or ``$CC``) into ``$OPSCOPE_CACHE_DIR`` (default ``~/.cache/opscope``) under
``kernels/``.  Where no compiler works, the build has no vector gathers, or ``OPSCOPE_TREES=xgboost``
is set, ``packed`` returns None and the caller uses XGBoost.
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
BLOCK = 128

#: a node's code holds its feature in 15 bits and its threshold's rank among its feature's in 16
MAX_FEATURES = 1 << 15
RANKS = (1 << 16) - 1

SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#define BLOCK 128  /* rows that walk a tree together */
#define BLOCK_LOG2 7
#define NBLK 8  /* blocks whose ranks are made at once; the trees go over them TCHUNK at a time */
#define TCHUNK 32

/* X: n x F doubles, row-major.  cuts[off[f] .. off[f + 1]): the thresholds the trees compare feature f
   with, sorted.  A row's value of f is first turned into its rank among them (how many are <= the
   float value; -1 when missing), so that "x < the j-th threshold" is "rank <= j".  Per tree t (of T):
   inner nodes (2^D - 1) in heap order, code = j << 16 | (missing goes left) << 15 | f; leaves (2^D)
   values.  out: n x G doubles, out[r * G + booster[t]] += the leaf row r reaches in tree t.  Rows are
   taken BLOCK at a time and their ranks transposed (xr[f * BLOCK + i]), so that every row of the block
   reads the first levels' features with plain vector loads. */

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX2__)
#define LANES 8
#else
#define LANES 1
#endif

int forest_lanes(void) { return LANES; }

int forest_sums(const double *X, int64_t n, int64_t F, const float *cuts, const int32_t *off,
                const int32_t *code, const float *leaf, const int32_t *booster, int32_t T, int32_t D,
                int32_t G, double *out)
{
    const int32_t inner = (1 << D) - 1, leaves = 1 << D;
    double *accs = (double *)malloc(sizeof(double) * (size_t)G * BLOCK * NBLK);
    int32_t *xrs = (int32_t *)malloc(sizeof(int32_t) * (size_t)F * BLOCK * NBLK);
    if (!accs || !xrs) { free(accs); free(xrs); return 1; }
    for (int64_t s0 = 0; s0 < n; s0 += (int64_t)BLOCK * NBLK) {
        const int32_t nblk = (int32_t)((n - s0 + BLOCK - 1) / BLOCK < NBLK ? (n - s0 + BLOCK - 1) / BLOCK : NBLK);
        for (int32_t b = 0; b < nblk; ++b) {
            const int64_t r0 = s0 + (int64_t)b * BLOCK;
            const int32_t nb = (int32_t)(n - r0 < BLOCK ? n - r0 : BLOCK);
            int32_t *xr = xrs + (int64_t)b * F * BLOCK;
            for (int32_t i = 0; i < BLOCK; ++i) {  /* rows past the end repeat the block's first */
                const double *row = X + (r0 + (i < nb ? i : 0)) * F;
                for (int64_t f = 0; f < F; ++f) {
                    const float x = (float)row[f];
                    const float *cu = cuts + off[f];
                    int32_t lo = 0, hi = off[f + 1] - off[f];
                    if (x != x) {
                        lo = -1;
                    } else {
                        while (lo < hi) {
                            const int32_t mid = (lo + hi) >> 1;
                            if (cu[mid] <= x) lo = mid + 1; else hi = mid;
                        }
                    }
                    xr[f * BLOCK + i] = lo;
                }
            }
        }
        for (int64_t i = 0; i < (int64_t)G * BLOCK * nblk; ++i) accs[i] = 0.0;
        /* TCHUNK trees at a time over all the blocks: their nodes stay in cache while the blocks pass */
        for (int32_t t0 = 0; t0 < T; t0 += TCHUNK)
        for (int32_t b = 0; b < nblk; ++b) {
        const int32_t nb = (int32_t)(n - s0 - (int64_t)b * BLOCK < BLOCK ? n - s0 - (int64_t)b * BLOCK : BLOCK);
        (void)nb;  /* the vector paths walk whole blocks */
        const int32_t *xr = xrs + (int64_t)b * F * BLOCK;
        double *acc = accs + (int64_t)b * G * BLOCK;
        const int32_t t1 = t0 + TCHUNK < T ? t0 + TCHUNK : T;
        for (int32_t t = t0; t < t1; ++t) {
            const int32_t *c = code + (int64_t)t * inner;
            const float *v = leaf + (int64_t)t * leaves;
            double *a = acc + (int64_t)booster[t] * BLOCK;
#if LANES == 16
            /* the 16-row groups of the block walk the tree together, level by level, so that their
               gathers overlap.  Levels 0-3 read ranks with vector loads from the transposed block (a
               row's node there is told by its earlier turns); the codes of levels 0-4 (nodes 0-30) are
               in two registers, picked by permutes; deeper levels gather. */
            __m512i k[BLOCK / 16], ri[BLOCK / 16];
            __mmask16 r0m[BLOCK / 16], r1m[BLOCK / 16], r2m[BLOCK / 16];
            const __m512i low = _mm512_set1_epi32(0x7fff), dlbit = _mm512_set1_epi32(0x8000);
            const __m512i two = _mm512_set1_epi32(2), one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512();
            const __m512i c0 = _mm512_loadu_si512((const void *)c), c1 = _mm512_loadu_si512((const void *)(c + 16));
            const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
#pragma GCC unroll 16
            for (int32_t j = 0; j < BLOCK / 16; ++j) {
                k[j] = zero;
                ri[j] = _mm512_add_epi32(lane, _mm512_set1_epi32(16 * j));
            }
#define COL(node) _mm512_loadu_si512((const void *)(xr + (int64_t)(c[node] & 0x7fff) * BLOCK + 16 * j))
/* one level for group j: CC the node codes, X the ranks; MASK (or nothing) keeps the turn */
#define STEP(CC, X, KEEP)                                                                              \
    {                                                                                                  \
        const __m512i cc = (CC);                                                                       \
        const __m512i x = (X);                                                                         \
        const __mmask16 missing = _mm512_cmplt_epi32_mask(x, zero);                                    \
        const __mmask16 left = (_mm512_cmple_epi32_mask(x, _mm512_srli_epi32(cc, 16)) & ~missing)     \
                               | (missing & _mm512_test_epi32_mask(cc, dlbit));                        \
        KEEP;                                                                                          \
        const __m512i down = _mm512_add_epi32(_mm512_add_epi32(k[j], k[j]), two);                      \
        k[j] = _mm512_mask_sub_epi32(down, left, down, one);                                           \
    }
#define PERMUTED _mm512_permutex2var_epi32(c0, k[j], c1)
#define GATHERED _mm512_i32gather_epi32(k[j], (const void *)c, 4)
#define RANKS_OF(cc) _mm512_i32gather_epi32(_mm512_add_epi32(_mm512_slli_epi32(_mm512_and_si512((cc), low), \
                                            BLOCK_LOG2), ri[j]), (const void *)xr, 4)
            if (D > 0) {
#pragma GCC unroll 16
                for (int32_t j = 0; j < BLOCK / 16; ++j) STEP(PERMUTED, COL(0), r0m[j] = _knot_mask16(left))
            }
            if (D > 1) {
#pragma GCC unroll 16
                for (int32_t j = 0; j < BLOCK / 16; ++j)
                    STEP(PERMUTED, _mm512_mask_blend_epi32(r0m[j], COL(1), COL(2)), r1m[j] = _knot_mask16(left))
            }
            if (D > 2) {
#pragma GCC unroll 16
                for (int32_t j = 0; j < BLOCK / 16; ++j)
                    STEP(PERMUTED, _mm512_mask_blend_epi32(r0m[j], _mm512_mask_blend_epi32(r1m[j], COL(3), COL(4)),
                                                           _mm512_mask_blend_epi32(r1m[j], COL(5), COL(6))),
                         r2m[j] = _knot_mask16(left))
            }
            if (D > 3) {
#pragma GCC unroll 16
                for (int32_t j = 0; j < BLOCK / 16; ++j) {
                    const __m512i xll = _mm512_mask_blend_epi32(r2m[j], COL(7), COL(8));
                    const __m512i xlr = _mm512_mask_blend_epi32(r2m[j], COL(9), COL(10));
                    const __m512i xrl = _mm512_mask_blend_epi32(r2m[j], COL(11), COL(12));
                    const __m512i xrr = _mm512_mask_blend_epi32(r2m[j], COL(13), COL(14));
                    STEP(PERMUTED, _mm512_mask_blend_epi32(r0m[j], _mm512_mask_blend_epi32(r1m[j], xll, xlr),
                                                           _mm512_mask_blend_epi32(r1m[j], xrl, xrr)), (void)0)
                }
            }
            if (D > 4) {
#pragma GCC unroll 16
                for (int32_t j = 0; j < BLOCK / 16; ++j) {
                    const __m512i p = PERMUTED;
                    STEP(p, RANKS_OF(p), (void)0)
                }
            }
            for (int32_t d = 5; d < D; ++d) {
#pragma GCC unroll 16
                for (int32_t j = 0; j < BLOCK / 16; ++j) {
                    const __m512i g = GATHERED;
                    STEP(g, RANKS_OF(g), (void)0)
                }
            }
#undef STEP
#undef PERMUTED
#undef GATHERED
#undef RANKS_OF
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
            const __m256i low = _mm256_set1_epi32(0x7fff), dlbit = _mm256_set1_epi32(0x8000);
            const __m256i two = _mm256_set1_epi32(2), zero = _mm256_setzero_si256();
            const __m256i lane = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
#pragma GCC unroll 16
            for (int32_t j = 0; j < BLOCK / 8; ++j) {
                k[j] = zero;
                ri[j] = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * j));
            }
            for (int32_t d = 0; d < D; ++d) {
#pragma GCC unroll 16
                for (int32_t j = 0; j < BLOCK / 8; ++j) {
                    const __m256i cc = _mm256_i32gather_epi32((const int *)c, k[j], 4);
                    const __m256i f = _mm256_and_si256(cc, low);
                    const __m256i x = _mm256_i32gather_epi32((const int *)xr,
                                                             _mm256_add_epi32(_mm256_slli_epi32(f, BLOCK_LOG2), ri[j]), 4);
                    /* all ones where the row goes left: rank <= j, or missing and default-left */
                    const __m256i missing = _mm256_cmpgt_epi32(zero, x);
                    const __m256i le = _mm256_cmpgt_epi32(_mm256_add_epi32(_mm256_srli_epi32(cc, 16), _mm256_set1_epi32(1)), x);
                    const __m256i dl = _mm256_cmpeq_epi32(_mm256_and_si256(cc, dlbit), dlbit);
                    const __m256i left = _mm256_or_si256(_mm256_andnot_si256(missing, le), _mm256_and_si256(missing, dl));
                    k[j] = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(k[j], k[j]), two), left);
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
                    const uint32_t cc = (uint32_t)c[k];
                    const int32_t x = xr[(int64_t)(cc & 0x7fff) * BLOCK + i];
                    const int32_t left = x < 0 ? (cc & 0x8000) != 0 : x <= (int32_t)(cc >> 16);
                    k = 2 * k + 2 - left;
                }
                a[i] += (double)v[k - inner];
            }
#endif
        }
        }
        for (int32_t b = 0; b < nblk; ++b) {
            const int64_t r0 = s0 + (int64_t)b * BLOCK;
            const int32_t nb = (int32_t)(n - r0 < BLOCK ? n - r0 : BLOCK);
            double *ob = out + r0 * G;
            const double *acc = accs + (int64_t)b * G * BLOCK;
            for (int32_t g = 0; g < G; ++g)
                for (int32_t i = 0; i < nb; ++i) ob[(int64_t)i * G + g] += acc[(int64_t)g * BLOCK + i];
        }
    }
    free(accs);
    free(xrs);
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
    """Build ``SOURCE`` into ``target``: for this CPU (``-march=native``), else for AVX2 where the CPU has it
    (a compiler older than the CPU), else plain."""
    cc = os.environ.get("CC", "cc")
    tries = [["-O3", "-march=native"]]
    if " avx2" in _cpu_identity():
        tries.append(["-O3", "-mavx2", "-mfma"])
    tries.append(["-O3"])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        c_file, so_file = Path(tmp) / "forest.c", Path(tmp) / target.name
        c_file.write_text(SOURCE)
        for flags in tries:
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
    """A loaded (``ctypes.CDLL``) build of ``SOURCE``: ``fn`` (``forest_sums``) and ``lanes`` (rows per
    vector: 16, 8 or 1)."""

    def __init__(self, lib: Any, keep: Any = None) -> None:
        p = ctypes.c_void_p
        self.lib, self.keep = lib, keep  # keep: a temporary folder the library lies in, alive as long as it
        self.fn = lib.forest_sums
        self.fn.argtypes = [p, ctypes.c_int64, ctypes.c_int64, p, p, p, p, p, ctypes.c_int32, ctypes.c_int32,
                            ctypes.c_int32, p]
        self.fn.restype = ctypes.c_int
        lanes = lib.forest_lanes
        lanes.restype = ctypes.c_int
        self.lanes = int(lanes())


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
        holder = None
        for root in (_cache_root(), None):
            if root is None:  # no cache folder, or one this process may not write: a folder of its own
                holder = tempfile.TemporaryDirectory()
                root = Path(holder.name)
            path = root / name
            try:
                if not path.exists() and not _compile(path):
                    return None
                _lib = Kernel(ctypes.CDLL(str(path)), holder)
                break
            except AttributeError:  # a file without the kernel's symbols
                return None
            except OSError:  # unwritable or unloadable: try a folder of its own, then give up
                if holder is not None:
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
        if n_features > MAX_FEATURES:
            raise ValueError(f"{n_features} features")
        feat = np.zeros((T, inner), dtype=np.int64)
        thr = np.full((T, inner), np.nan, dtype=np.float32)  # NaN: a padding node (always left)
        dleft = np.ones((T, inner), dtype=bool)
        self.leaf = np.zeros((T, leaves), dtype=np.float32)
        self.booster = np.array([j for j, _ in trees], dtype=np.int32)
        self.n_boosters = len(boosters)
        self.n_features = n_features
        for t, (_, tree) in enumerate(trees):
            self._lay(tree, D, feat[t], thr[t], dleft[t], self.leaf[t])
        # per feature, the thresholds it is compared with, sorted; each node's as its rank among them
        real = ~np.isnan(thr)
        if real.any() and feat[real].max() >= n_features:
            raise ValueError(f"split on feature {int(feat[real].max())} of {n_features}")
        pairs = np.unique(np.stack([feat[real].astype(np.float64), thr[real].astype(np.float64)], axis=1), axis=0)
        f_of, t_of = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.float32)
        self.off = np.searchsorted(f_of, np.arange(n_features + 1)).astype(np.int32)
        self.cuts = np.append(t_of, np.float32(0))  # (one past the end: never an empty array)
        if len(f_of) and np.diff(self.off).max() >= RANKS:
            raise ValueError("too many thresholds of one feature")
        rank = np.full((T, inner), RANKS, dtype=np.int64)  # padding: rank <= RANKS always holds: left
        node_f, node_t = feat[real], thr[real]
        within = np.empty(len(node_f), dtype=np.int64)
        for f in np.unique(node_f):  # a node's rank: its threshold's place among its feature's (exact)
            sel = node_f == f
            within[sel] = np.searchsorted(t_of[self.off[f]:self.off[f + 1]], node_t[sel])
        rank[real] = within
        code = (rank << 16) | (dleft.astype(np.int64) << 15) | feat
        # 32 entries past the last tree: the kernel loads each tree's first 32 codes at once
        self._code = np.zeros(T * inner + 32, dtype=np.uint32)
        self._code[:T * inner] = code.ravel().astype(np.uint32)
        self._code = self._code.view(np.int32)
        self.code = self._code[:T * inner].reshape(T, inner)

    @staticmethod
    def _lay(tree: dict[str, Any], D: int, feat: np.ndarray, thr: np.ndarray, dleft: np.ndarray,
             leaf: np.ndarray) -> None:
        """A tree into one row of the arrays (heap order), one depth level at a time (numpy over the
        level's nodes).  Padding nodes keep threshold NaN and missing-left: every row goes left there."""
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        split = np.asarray(tree["split_indices"], dtype=np.int64)
        cond = np.asarray(tree["split_conditions"], dtype=np.float32)
        dl = np.asarray(tree["default_left"], dtype=bool)
        inner = (1 << D) - 1
        nodes, pos = np.array([0]), np.array([0])  # XGBoost's nodes at this depth, their heap positions
        for d in range(D + 1):
            is_leaf = left[nodes] == -1
            lk, lp = nodes[is_leaf], pos[is_leaf]
            if lk.size:
                # a leaf at depth d: its subtree of the complete tree always goes left down to its first
                # leaf slot; all its slots get the value
                first = lp.copy()
                while first[0] < inner:  # all leaves of one depth are equally far from the last level
                    first = 2 * first + 1
                span = 1 << (D - d)
                leaf[(first - inner)[:, None] + np.arange(span)] = cond[lk][:, None]
            nodes, pos = nodes[~is_leaf], pos[~is_leaf]
            if not nodes.size:
                return
            if d == D:
                raise ValueError("tree deeper than its depth")
            f = split[nodes]
            if f.min() < 0:
                raise ValueError(f"split on feature {int(f.min())}")
            feat[pos], thr[pos], dleft[pos] = f, cond[nodes], dl[nodes]
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
            if fn(X[lo:].ctypes.data, hi - lo, self.n_features, self.cuts.ctypes.data, self.off.ctypes.data,
                  self.code.ctypes.data, self.leaf.ctypes.data, self.booster.ctypes.data, len(self.booster), self.depth,
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
