"""Features from store rows: a named, versioned schema.

One feature row per measurement row, in four groups (prefixes in brackets):

- the operator [``k_`` kind one-hot, ``f_`` sizes, ``g_`` GEMM view, ``l_`` loop extents,
  ``at_`` attributes]: kind, dtype width, FLOPs, bytes per tensor role, intensity, shapes, and
  (version 4) how large a power of two the byte strides of each role's tensor share (cache-set aliasing);
- the schedule [``s_`` and ``knob_``]: default or sampled, and every ``knob_*`` column the
  collector recorded (numbers as they are, words through a vocabulary learned at fit time);
- threads and the machine [``t_``, ``m_``]: threads, share of cores, pinning, cores, cache sizes,
  peaks and bandwidths (nominal, and measured ones when a ``<target>-measured`` spec exists);
- the analytical model [``a_``]: compute time, memory time per level (tiling-aware when the
  schedule's tile factors map onto the operator's loops), bound, roofline bound;
- the default loop nest's reduction walk [``d_``] (version 5): the cache lines its reads touch and how
  many of them share one cache set (``opscope.predictor.features.walk``), which tells a GEMM that reads
  its weight down a power-of-two-strided column from one of the same size that does not;
- the schedule relative to the operator and the machine [``r_``] (version 2), which carry a schedule's
  effect from one shape to another where absolute tile sizes do not: how evenly the parallel loop's
  iterations divide among the threads, the vector length over the machine's lanes, the innermost and
  first-level tile footprints in bytes over the L1 and L2 sizes, the work per thread, and the tile
  factors as fractions of their loops' extents (version 4:) and the vector registers the innermost
  spatial tile's accumulators fill.

Sizes and times enter as log2.  The schema (``FeatureSchema``) is fixed when a predictor is fitted
and saved with it; a frame is always turned into exactly the schema's columns, in its order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from opscope.errors import PredictorError
from opscope.predictor.features import tiles as tiles_mod
from opscope.predictor.features import walk as walk_mod
from opscope.predictor.features.estimates import MAX_LEVELS, SpecCache, analytical_terms, machine_features
from opscope.predictor.frames import check_columns
from opscope.targets.spec import TargetSpec
from opscope.workloads.operator import KINDS, Operator, dtype_bytes

SCHEMA_NAME = "opscope-features"
SCHEMA_VERSION = 5

LOOP_NAMES = ("n", "k", "c", "p", "q", "r", "s", "b", "m")
_ATTRS = ("stride", "groups", "kernel", "seq_len", "heads", "head_dim")


def _log2(x: float) -> float:
    return math.log2(x) if x and x > 0 and math.isfinite(x) else math.nan


def _first(v: Any) -> float:
    if isinstance(v, (list, tuple)):
        v = v[0] if v else math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


#: the largest power of two a stride is tested against: a 64 KiB way of a 1 MiB 16-way L2 (an L1
#: way is 4 KiB); strides sharing a large power of two map onto few cache sets and evict each other
ALIAS_CAP = 1 << 16


def _alias_log2(op: Operator, role: str) -> float:
    """log2 of the largest power of two (at most ``ALIAS_CAP``) that divides the byte stride of an
    outer dimension of the role's largest tensor (row-major; the innermost, contiguous one and
    dimensions of extent 1 left out); NaN when there is no such dimension.

    A default GEMV reading its [K, N] weight down a column with N = 1024 float32 steps 4 KiB at a time:
    every element falls into the same L1 set, and it runs at 0.58-0.85 ns per weight byte here against
    0.21-0.30 for N that is not a multiple of 512 (space datasets, 1 thread, weights 1-8 MB)."""
    tensors = op.tensors_of(role)
    if not tensors:
        return math.nan
    t = max(tensors, key=lambda x: x.nbytes)
    dims, stride, best = t.shape, dtype_bytes(t.dtype), 0
    for i in range(len(dims) - 1, 0, -1):
        stride *= dims[i]
        if dims[i - 1] > 1:
            best = max(best, math.gcd(stride, ALIAS_CAP))
    return math.log2(best) if best else math.nan


def operator_features(op: Operator) -> dict[str, float]:
    out = {f"k_{k}": float(op.kind == k) for k in KINDS}
    out.update(
        f_dtype_bytes=float(dtype_bytes(op.dtype)),
        f_flops_log2=_log2(op.flops),
        f_bytes_log2=_log2(op.bytes),
        f_input_log2=_log2(op.bytes_of("input")),
        f_weight_log2=_log2(op.bytes_of("weight")),
        f_output_log2=_log2(op.bytes_of("output")),
        f_intensity_log2=_log2(op.intensity),
        f_tensors=float(len(op.tensors)),
        f_loops=float(len(op.loops)),
        f_input_alias_log2=_alias_log2(op, "input"),
        f_weight_alias_log2=_alias_log2(op, "weight"),
        f_output_alias_log2=_alias_log2(op, "output"),
    )
    g = op.gemm
    for name in ("batch", "m", "n", "k"):
        out[f"g_{name}_log2"] = _log2(getattr(g, name)) if g else math.nan
    extents = dict(op.loops)
    for name in LOOP_NAMES:
        out[f"l_{name}_log2"] = _log2(extents[name]) if name in extents else math.nan
    out["l_inner_log2"] = _log2(op.loops[-1][1]) if op.loops else math.nan
    for name in _ATTRS:
        out[f"at_{name}"] = _first(op.attr(name, math.nan))
    return out


@dataclass(frozen=True)
class FeatureSchema:
    """Which columns a predictor was fitted on; saved with it and checked on load."""

    name: str
    version: int
    columns: tuple[str, ...]
    knob_columns: tuple[str, ...]
    #: string-valued knob -> its vocabulary (ordinal code = index; unseen words are NaN)
    knob_vocab: tuple[tuple[str, tuple[str, ...]], ...]
    analytical: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "columns": list(self.columns),
            "knob_columns": list(self.knob_columns),
            "knob_vocab": {k: list(v) for k, v in self.knob_vocab},
            "analytical": self.analytical,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSchema:
        try:
            return cls(
                name=str(d["name"]),
                version=int(d["version"]),
                columns=tuple(d["columns"]),
                knob_columns=tuple(d["knob_columns"]),
                knob_vocab=tuple((k, tuple(v)) for k, v in sorted(d["knob_vocab"].items())),
                analytical=bool(d["analytical"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictorError(f"feature schema: malformed ({exc!r})") from exc

    def check_current(self, where: str) -> None:
        """Raise when this schema was written by a different feature code than the running one."""
        if self.name != SCHEMA_NAME or self.version != SCHEMA_VERSION:
            raise PredictorError(
                f"{where}: feature schema {self.name} v{self.version} does not match this opscope's "
                f"{SCHEMA_NAME} v{SCHEMA_VERSION}; retrain the predictor"
            )
        expected = expected_columns(self.knob_columns, self.analytical)
        if list(self.columns) != expected:
            extra = sorted(set(self.columns) - set(expected))
            missing = sorted(set(expected) - set(self.columns))
            raise PredictorError(
                f"{where}: feature columns do not match schema v{self.version} "
                f"(unknown: {extra[:5]}, missing: {missing[:5]}); retrain the predictor"
            )


def _fixed_columns(analytical: bool) -> list[str]:
    probe = Operator(name="probe", kind="other", tensors=(), flops=0)
    cols = list(operator_features(probe))
    cols += ["s_default", "t_threads", "t_threads_used", "t_share_cores", "t_pinned"]
    cols += [f"sk_{loop}_{lvl}_log2" for loop in LOOP_NAMES for lvl in range(tiles_mod.LEVELS)]
    cols += list(_TILE_SUMMARY)
    cols += ["m_cores", "m_freq_log2", "m_vector_bits", "m_peak_log2"]
    for i in range(MAX_LEVELS):
        cols += [f"m_l{i}_size_log2", f"m_l{i}_bw_log2"]
    cols += ["m_offchip_bw_log2", "m_meas_peak_log2", "m_meas_offchip_bw_log2"]
    cols += list(_RELATIVE)
    cols += list(walk_mod.COLUMNS)
    if analytical:
        cols += ["a_compute_log2", "a_compute_threads_log2", "a_latency_log2", "a_pe_util"]
        cols += [f"a_l{i}_log2" for i in range(MAX_LEVELS)]
        cols += ["a_offchip_log2", "a_bound_compute", "a_bound_level", "a_roofline_log2", "a_fallback"]
    return cols


def expected_columns(knob_columns: tuple[str, ...], analytical: bool) -> list[str]:
    return _fixed_columns(analytical) + list(knob_columns)


@dataclass(frozen=True)
class Features:
    """A feature matrix with what the calibrated model needs beside it."""

    X: np.ndarray  # (rows, columns) float64, NaN where unknown
    columns: tuple[str, ...]
    analytical_s: np.ndarray  # the analytical model's latency per row (whole machine)
    analytical_threads_s: np.ndarray  # the same with the compute peak scaled to threads / cores
    roofline_s: np.ndarray  # the plain roofline bound per row
    kind: np.ndarray  # operator kind per row


def fit_schema(frame: pd.DataFrame, analytical: bool = True) -> FeatureSchema:
    """The schema for a training frame: the fixed columns plus the knobs it has.

    Tile knobs enter through the fixed ``sk_<loop>_<level>`` columns (contract loop names), not
    as raw TIR-variable columns; the loop order enters in loop names too.
    """
    check_columns(frame, "training frame")
    tile_cols = set(tiles_mod.tile_columns(frame.columns))
    knobs = tuple(sorted(c for c in frame.columns
                         if c.startswith("knob_") and c not in tile_cols and frame[c].notna().any()))
    vocab = []
    for c in knobs:
        if c == tiles_mod.ORDER:
            op_codes, ops = _parse_ops(frame)
            words = _canonical_orders(frame, op_codes, ops).dropna()
            vocab.append((c, tuple(sorted(set(words)))))
            continue
        col = frame[c].dropna()
        if not pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            numeric = pd.to_numeric(col, errors="coerce")
            if numeric.notna().all():
                continue
            vocab.append((c, tuple(sorted({_word(v) for v in col}))))
    return FeatureSchema(SCHEMA_NAME, SCHEMA_VERSION, tuple(expected_columns(knobs, analytical)), knobs,
                         tuple(vocab), analytical)


def _parse_ops(frame: pd.DataFrame) -> tuple[np.ndarray, list[Operator]]:
    op_codes, op_json = pd.factorize(frame["operator_json"].astype(str))
    ops = []
    for j, text in enumerate(op_json):
        try:
            ops.append(Operator.from_dict(json.loads(text)))
        except (ValueError, KeyError, TypeError) as exc:
            row = int(np.flatnonzero(op_codes == j)[0])
            raise PredictorError(f"row {row}: operator_json is not an operator ({exc})") from exc
    return op_codes, ops


def _unique_rows(frame: pd.DataFrame, op_codes: np.ndarray, cols: list[str],
                 extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct (operator, extra, cols) combination, code of each row).

    Rows are told apart by a 64-bit hash of those values (a hash table, linear in the rows).
    """
    key = pd.DataFrame({"_op": op_codes, "_extra": 0 if extra is None else extra})
    for c in cols:
        key[c] = frame[c].to_numpy()
    codes, _ = pd.factorize(pd.util.hash_pandas_object(key, index=False).to_numpy())
    first = np.full(codes.max() + 1 if len(codes) else 0, len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))
    return first, codes


def _canonical_orders(frame: pd.DataFrame, op_codes: np.ndarray, ops: list[Operator]) -> pd.Series:
    cols = [tiles_mod.ORDER, *tiles_mod.tile_columns(frame.columns)]
    first, codes = _unique_rows(frame, op_codes, cols)
    records = frame[cols].iloc[first].to_dict("records")
    words = [tiles_mod.canonical_order(ops[op_codes[r]], rec) for r, rec in zip(first, records)]
    return pd.Series(np.asarray(words, dtype=object)[codes], index=frame.index)


#: schedule features relative to the operator and the machine (see the module docstring)
_RELATIVE = ("r_par_balance", "r_par_per_thread_log2", "r_vector_lanes_log2", "r_main_vector_lanes_log2",
             "r_inner_vs_l1_log2", "r_l1_vs_l2_log2", "r_flops_per_thread_log2", "r_inner_frac_log2",
             "r_outer_frac_log2", "r_acc_vregs_log2")


def threads_used(frame: pd.DataFrame, threads: np.ndarray) -> np.ndarray:
    """Threads a schedule can keep busy: the threads asked for, at most its parallel loop's extent (1 for a
    schedule without one, such as TVM's default CPU lowering); the threads asked for when unknown.

    Only rows whose loop knobs come from the current reader count (they carry ``knob_main_inner``): the
    reader before it recorded a parallel extent of 1 for every schedule (``opscope reread-knobs``)."""
    if "knob_parallel_extent" not in frame or "knob_main_inner" not in frame:
        return threads
    par = pd.to_numeric(frame["knob_parallel_extent"], errors="coerce").to_numpy(dtype=float)
    known = np.isfinite(par) & (par >= 1) & frame["knob_main_inner"].notna().to_numpy()
    return np.where(known, np.minimum(threads, par), threads)


def _relative_features(X: np.ndarray, cols: dict[str, int], frame: pd.DataFrame, threads: np.ndarray,
                       used: np.ndarray) -> None:
    """Fill the ``r_`` columns from columns already in ``X`` and the frame's knobs."""
    def col(name: str) -> np.ndarray:
        return X[:, cols[name]] if name in cols else np.full(len(X), np.nan)

    def knob(name: str) -> np.ndarray:
        if name not in frame:
            return np.full(len(X), np.nan)
        return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)

    with np.errstate(divide="ignore", invalid="ignore"):
        par = knob("knob_parallel_extent")
        t = np.where(threads > 0, threads, np.nan)
        X[:, cols["r_par_balance"]] = par / (np.ceil(par / t) * t)
        X[:, cols["r_par_per_thread_log2"]] = np.log2(par / t)
        lanes = col("m_vector_bits") / (8.0 * col("f_dtype_bytes"))
        X[:, cols["r_vector_lanes_log2"]] = np.log2(knob("knob_vector_len") / lanes)
        X[:, cols["r_main_vector_lanes_log2"]] = np.log2(knob("knob_main_vector_len") / lanes)
        dtype_log2 = np.log2(col("f_dtype_bytes"))
        X[:, cols["r_inner_vs_l1_log2"]] = col("sk_inner_vol_log2") + dtype_log2 - col("m_l0_size_log2")
        X[:, cols["r_l1_vs_l2_log2"]] = col("sk_l1_vol_log2") + dtype_log2 - col("m_l1_size_log2")
        X[:, cols["r_flops_per_thread_log2"]] = col("f_flops_log2") - np.log2(np.where(used > 0, used, np.nan))
        # the log2 volume of all loops (sum of log2 extents) against the tiles' volumes
        loops = np.nansum(np.stack([col(f"l_{n}_log2") for n in LOOP_NAMES]), axis=0)
        loops = np.where(loops > 0, loops, np.nan)
        X[:, cols["r_inner_frac_log2"]] = col("sk_inner_vol_log2") - loops
        X[:, cols["r_outer_frac_log2"]] = col("sk_outer_iters_log2") - loops
        # vector registers the innermost spatial tile's accumulators fill (log2)
        X[:, cols["r_acc_vregs_log2"]] = col("sk_inner_spatial_log2") - np.log2(lanes)


#: per schedule, summed over loops (log2): the innermost (register) tile volume, the tile volume
#: inside the first reduction tile loop (what the innermost cache holds), the iterations of the
#: outermost tile loops (the parallel work), and how many loops were tiled (version 4:) then the
#: innermost tile of the spatial loops alone (the outputs accumulated at once, in registers when
#: they fit) and of the reduction loops alone (the steps each accumulation takes in there); spatial
#: loops are those split in 4 (MetaSchedule's SSRSRS), reduction loops those split in 2
_TILE_SUMMARY = ("sk_inner_vol_log2", "sk_l1_vol_log2", "sk_outer_iters_log2", "sk_tiled_loops",
                 "sk_inner_spatial_log2", "sk_inner_reduce_log2")


def _tile_features(frame: pd.DataFrame, op_codes: np.ndarray, ops: list[Operator]) -> dict[str, np.ndarray]:
    cols = tiles_mod.tile_columns(frame.columns)
    if not cols:
        return {}
    first, codes = _unique_rows(frame, op_codes, cols)
    records = frame[cols].iloc[first].to_dict("records")
    per_level = len(LOOP_NAMES) * tiles_mod.LEVELS
    table = np.full((len(first), per_level + len(_TILE_SUMMARY)), np.nan)
    for i, r in enumerate(first):
        per_loop = tiles_mod.loop_tiles(ops[op_codes[r]], records[i])
        for loop, fs in per_loop.items():
            if loop in LOOP_NAMES:
                j = LOOP_NAMES.index(loop) * tiles_mod.LEVELS
                for lvl, f in enumerate(fs[: tiles_mod.LEVELS]):
                    table[i, j + lvl] = math.log2(f)
        if per_loop:
            table[i, per_level:] = (
                sum(math.log2(fs[-1]) for fs in per_loop.values()),
                sum(math.log2(math.prod(fs[len(fs) // 2:])) for fs in per_loop.values()),
                sum(math.log2(fs[0]) for fs in per_loop.values()),
                float(len(per_loop)),
                sum(math.log2(fs[-1]) for fs in per_loop.values() if len(fs) == 4),
                sum(math.log2(fs[-1]) for fs in per_loop.values() if len(fs) == 2),
            )
    names = [f"sk_{loop}_{lvl}_log2" for loop in LOOP_NAMES for lvl in range(tiles_mod.LEVELS)]
    names += list(_TILE_SUMMARY)
    return {name: table[codes, k] for k, name in enumerate(names)}


def _word(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


#: frames at least this long are turned into features once per distinct row (then copied to the others)
DEDUP_ROWS = 4096
#: besides every ``knob_*`` column, the columns a row's features depend on
_ROW_COLUMNS = ("operator_json", "target", "threads", "pinned", "schedule_kind")


def build_features(frame: pd.DataFrame, schema: FeatureSchema, specs: SpecCache | None = None) -> Features:
    """Turn a store frame into the schema's feature matrix (one row per frame row).

    A row's features depend only on its operator, target, threads, pinning, schedule kind and knobs, so a
    long frame (the same operators and schedules under several labels, attempts or predictions) is turned
    into features once per distinct combination of those, in one hash over the rows.
    """
    check_columns(frame)
    if len(frame) >= DEDUP_ROWS:
        _, first, codes = np.unique(row_keys(frame), return_index=True, return_inverse=True)
        codes = codes.ravel()
        if len(first) <= len(frame) // 2:
            try:
                part = _build_features(frame.iloc[first].reset_index(drop=True), schema, specs)
            except PredictorError:
                return _build_features(frame, schema, specs)  # so that the error names the frame's own row
            return Features(part.X[codes], part.columns, part.analytical_s[codes],
                            part.analytical_threads_s[codes], part.roofline_s[codes],
                            frame["kind"].astype(str).to_numpy())
    return _build_features(frame, schema, specs)


def row_keys(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash per row of everything its features depend on (``_ROW_COLUMNS`` and the knobs).

    A text column is hashed once per distinct value (its rows share few: one operator's JSON is on
    every row of that operator), then the columns' hashes are hashed together per row.
    """
    cols = [c for c in (*_ROW_COLUMNS, *sorted(c for c in frame.columns if c.startswith("knob_"))) if c in frame.columns]
    parts = {}
    for i, c in enumerate(cols):
        values = frame[c]
        if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
            parts[i] = values.to_numpy()
            continue
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        hashed = pd.util.hash_pandas_object(pd.Series(np.asarray(uniques, dtype=object).astype(str), dtype=object),
                                            index=False).to_numpy(dtype=np.uint64)
        parts[i] = np.append(hashed, np.uint64(0))[codes]  # a missing value (code -1): 0
    return pd.util.hash_pandas_object(pd.DataFrame(parts, index=None), index=False).to_numpy()


class FeatureCache:
    """The features of rows already turned into features once, for one schema and one set of specs: a
    predictor asked again about rows it has seen (a report, a search's re-ranking, a store predicted
    twice) computes features only for the rows it has not.  Rows are matched by ``row_keys``; at most
    ``max_rows`` distinct rows are kept (past that the cache starts again with the newest call's rows).
    """

    def __init__(self, schema: FeatureSchema, specs: SpecCache, max_rows: int = 65_536) -> None:
        self.schema, self.specs, self.max_rows = schema, specs, max_rows
        self.source: Any = None  # what the owner made ``specs`` from (to notice when it changes)
        self._n = 0
        # rows in the order they came, in buffers that double when full (no copy of the whole cache per
        # call); ``_sorted`` / ``_order``: the keys sorted, and where each sorted key's row is
        self._keys = np.empty(0, dtype=np.uint64)
        self._X = np.empty((0, len(schema.columns)))
        self._extra = np.empty((0, 3))  # analytical_s, analytical_threads_s, roofline_s
        self._sorted, self._order = self._keys, np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return self._n

    def _add(self, keys: np.ndarray, X: np.ndarray, extra: np.ndarray) -> None:
        end = self._n + len(keys)
        if end > len(self._keys):
            size = max(end, 2 * len(self._keys), 256)
            grown = [np.empty((size, *a.shape[1:]), dtype=a.dtype) for a in (self._keys, self._X, self._extra)]
            for new, old in zip(grown, (self._keys, self._X, self._extra)):
                new[:self._n] = old[:self._n]
            self._keys, self._X, self._extra = grown
        self._keys[self._n:end], self._X[self._n:end], self._extra[self._n:end] = keys, X, extra
        self._n = end
        self._order = np.argsort(self._keys[:end], kind="stable")
        self._sorted = self._keys[:end][self._order]

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(per key, whether it is cached; its row in the buffers where it is)."""
        pos = np.minimum(np.searchsorted(self._sorted, keys), max(self._n - 1, 0))
        hit = (self._sorted[pos] == keys) if self._n else np.zeros(len(keys), dtype=bool)
        return hit, (self._order[pos] if self._n else np.zeros(len(keys), dtype=np.int64))

    def features(self, frame: pd.DataFrame) -> Features:
        check_columns(frame)
        if not len(frame):
            return build_features(frame, self.schema, self.specs)
        keys = row_keys(frame)
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        hit, _ = self._find(uniq)
        if not hit.all():
            try:
                new = build_features(frame.iloc[first[~hit]].reset_index(drop=True), self.schema, self.specs)
            except PredictorError:
                build_features(frame, self.schema, self.specs)  # so that the error names the frame's own row
                raise
            extra = np.column_stack([new.analytical_s, new.analytical_threads_s, new.roofline_s])
            keys_new, X_new = uniq[~hit], new.X
            if self._n + len(keys_new) > self.max_rows:  # full: start again, with this call's rows
                _, where = self._find(uniq[hit])
                keys_new = np.concatenate([uniq[hit], keys_new])
                X_new = np.vstack([self._X[where], X_new])
                extra = np.vstack([self._extra[where], extra])
                self._n = 0
            self._add(keys_new, X_new, extra)
        _, where = self._find(uniq)
        rows = where[inverse.ravel()]
        X, extra = self._X[rows], self._extra[rows]
        return Features(X, self.schema.columns, extra[:, 0], extra[:, 1], extra[:, 2],
                        frame["kind"].astype(str).to_numpy())


def _build_features(frame: pd.DataFrame, schema: FeatureSchema, specs: SpecCache | None = None) -> Features:
    specs = specs or SpecCache()
    n = len(frame)
    cols = {c: i for i, c in enumerate(schema.columns)}
    X = np.full((n, len(cols)), np.nan)

    op_codes, ops = _parse_ops(frame)
    op_table = pd.DataFrame([operator_features(op) for op in ops])
    for c in op_table.columns:
        X[:, cols[c]] = op_table[c].to_numpy(dtype=float)[op_codes]
    # the default loop nest's walk, from each operator's first row's script
    if "workload_script" in frame:
        firsts = np.unique(op_codes, return_index=True)[1]  # codes are 0 .. operators - 1
        walks = walk_mod.walk_features(frame[["workload_script"]].iloc[firsts])
        for k, c in enumerate(walk_mod.COLUMNS):
            X[:, cols[c]] = walks[op_codes, k]

    threads = pd.to_numeric(frame["threads"], errors="coerce").to_numpy(dtype=float)
    used = threads_used(frame, threads)
    X[:, cols["t_threads"]] = threads
    X[:, cols["t_threads_used"]] = used
    X[:, cols["t_pinned"]] = frame["pinned"].astype(float).to_numpy() if "pinned" in frame else 0.0
    kind_col = frame["schedule_kind"] if "schedule_kind" in frame else pd.Series("default", index=frame.index)
    X[:, cols["s_default"]] = (kind_col.astype(str) == "default").to_numpy(dtype=float)

    # machine features per (target, dtype)
    tgt_codes, tgt_names = pd.factorize(frame["target"].astype(str))
    cores = np.full(n, np.nan)
    for t, name in enumerate(tgt_names):
        spec = specs.get(name)
        rows_t = tgt_codes == t
        for dt in {ops[c].dtype for c in np.unique(op_codes[rows_t])}:
            rows = rows_t & np.isin(op_codes, [i for i, op in enumerate(ops) if op.dtype == dt])
            for c, v in machine_features(spec, dt, specs.measured(name)).items():
                X[rows, cols[c]] = v
        cores[rows_t] = spec.cores or np.nan
    X[:, cols["t_share_cores"]] = used / cores

    # the analytical model, once per (operator, target, tile factors); always computed, because
    # the analytical and calibrated predictors build on it even when it is not a feature
    tile_cols = tiles_mod.tile_columns(frame.columns)
    first_row, key_codes = _unique_rows(frame, op_codes, tile_cols, extra=tgt_codes)
    records = frame[tile_cols].iloc[first_row].to_dict("records") if tile_cols else None
    terms_rows = []
    for i, r in enumerate(first_row):
        op = ops[op_codes[r]]
        spec = specs.get(tgt_names[tgt_codes[r]])
        tiles = tiles_mod.tiles_for(op, records[i], spec) if records is not None else None
        terms_rows.append(analytical_terms(op, spec, tiles))
    terms = pd.DataFrame(terms_rows)
    a_lat = terms["a_latency_s"].to_numpy(dtype=float)[key_codes]
    roof = terms["a_roofline_s"].to_numpy(dtype=float)[key_codes]
    compute = terms["a_compute_s"].to_numpy(dtype=float)[key_codes]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(np.isfinite(cores / used), np.maximum(cores / used, 1.0), 1.0)
        a_thr = np.maximum(a_lat, compute * share)
        if schema.analytical:
            lg = {c: np.log2(np.where(terms[c] > 0, terms[c], np.nan))[key_codes]
                  for c in terms.columns if c.endswith("_s")}
            X[:, cols["a_compute_log2"]] = lg["a_compute_s"]
            X[:, cols["a_compute_threads_log2"]] = lg["a_compute_s"] + np.log2(share)
            X[:, cols["a_latency_log2"]] = lg["a_latency_s"]
            X[:, cols["a_offchip_log2"]] = lg["a_offchip_s"]
            X[:, cols["a_roofline_log2"]] = lg["a_roofline_s"]
            for i in range(MAX_LEVELS):
                X[:, cols[f"a_l{i}_log2"]] = lg[f"a_l{i}_s"]
            for c in ("a_pe_util", "a_bound_compute", "a_bound_level", "a_fallback"):
                X[:, cols[c]] = terms[c].to_numpy(dtype=float)[key_codes]

    for c, values in _tile_features(frame, op_codes, ops).items():
        X[:, cols[c]] = values
    _relative_features(X, cols, frame, threads, used)
    vocab = dict(schema.knob_vocab)
    for c in schema.knob_columns:
        if c not in frame.columns:
            continue  # absent knob: NaN, as in training rows that lacked it
        if c == tiles_mod.ORDER:
            index = {w: i for i, w in enumerate(vocab.get(c, ()))}
            words = _canonical_orders(frame, op_codes, ops)
            X[:, cols[c]] = _lookup(words, index, lambda v: v)
        elif c in vocab:
            index = {w: i for i, w in enumerate(vocab[c])}
            X[:, cols[c]] = _lookup(frame[c], index, _word)
        else:
            X[:, cols[c]] = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)

    return Features(X, schema.columns, a_lat, a_thr, roof, frame["kind"].astype(str).to_numpy())


def _lookup(values: pd.Series, index: dict[str, int], word: Any) -> np.ndarray:
    """Vocabulary code of each value (NaN when missing or unseen), looked up once per distinct value."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    table = np.array([index.get(word(u), np.nan) for u in uniques] + [np.nan], dtype=float)
    return table[codes]


def specs_from(specs: Mapping[str, TargetSpec] | SpecCache | None) -> SpecCache:
    return specs if isinstance(specs, SpecCache) else SpecCache(specs)
