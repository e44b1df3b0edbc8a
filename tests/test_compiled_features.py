"""Features of the compiled kernel (features.compiled): the assembly counts by hand, the sidecar a
dataset carries them in, a predictor that learns a law only they reveal, and one real TVM compile."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from opscope.cli import main
from opscope.errors import PredictorError
from opscope.predictor.evaluation.synthetic import TARGET, synthetic_frame, synthetic_spec
from opscope.predictor.features.compiled import COLUMNS, COUNTS, asm_stats, feature_matrix, load_sidecar

ASM = """
	.text
	.globl	main
main:                                   # @main
	pushq	%rbp
	movq	%rsp, %rbp
.LBB0_1:                                # outer loop
	movq	%rdi, %rax
.LBB0_2:                                # inner loop: 3 FMAs, a broadcast, a spill
	vbroadcastss	(%rsi), %zmm1
	vfmadd231ps	(%rdx), %zmm1, %zmm0
	vfmadd231ps	64(%rdx), %zmm1, %zmm2
	vfmadd231ps	%ymm3, %ymm4, %ymm5
	vmovups	%zmm0, 8(%rsp)
	addq	$4, %rsi
	jne	.LBB0_2
	vaddss	%xmm1, %xmm2, %xmm3
	jne	.LBB0_1
	retq
"""


def test_asm_stats_counts_the_kernel_and_its_innermost_arithmetic_loop():
    s = asm_stats(ASM)
    # instructions: pushq, movq, movq (3); the inner loop's vbroadcastss, 3 vfmadd, vmovups, addq, jne
    # (7); vaddss, jne, retq (3): 13 (labels, directives and comment lines are not instructions)
    assert s["n_ins"] == 13
    assert s["n_loops"] == 2  # two backward jumps
    # the inner loop: vbroadcastss .. jne .LBB0_2 = 7 instructions
    assert s["in_len"] == 7 and s["in_fma"] == 3 and s["all_fma"] == 3
    assert s["in_zmm"] == 4 and s["in_ymm"] == 1 and s["in_xmm"] == 0  # lines naming each register width
    assert s["in_load"] == 4  # (%rsi), (%rdx), 64(%rdx), 8(%rsp)
    assert s["in_spill"] == 1 and s["all_spill"] == 1 and s["in_bcast"] == 1
    assert s["in_ss"] == 1 and s["all_ss"] == 2  # vbroadcastss inside; vaddss outside
    assert set(s) == set(COUNTS)


def test_feature_matrix_is_log1p_of_the_counts_then_three_ratios():
    counts = np.zeros((2, len(COUNTS)))
    counts[1] = np.nan
    c = dict(zip(COUNTS, range(len(COUNTS))))
    counts[0, c["in_len"]], counts[0, c["in_fma"]], counts[0, c["in_spill"]], counts[0, c["in_load"]] = 20, 8, 2, 12
    X = feature_matrix(counts)
    assert X.shape == (2, len(COLUMNS))
    assert X[0, c["in_fma"]] == pytest.approx(np.log(1 + 8))
    # FMAs per inner instruction 8 / 20, spills 2 / 20, memory operands per FMA 12 / 8
    assert X[0, -3:] == pytest.approx([0.4, 0.1, 1.5])
    assert np.isnan(X[1]).all()


def _data(tmp_path, seed=0):
    """Synthetic rows where a schedule whose kernel spills runs four times as slow: nothing but the compiled
    kernel's counts tells which schedules spill.  Written as a parquet with its sidecar."""
    frame = synthetic_frame(seed=seed, models=3, per_model=5, schedules=8)
    rng = np.random.default_rng(seed)
    sids = frame["schedule_id"].unique()
    spills = dict(zip(sids, rng.choice([0, 40], size=len(sids))))
    sampled = frame["schedule_kind"] == "sampled"
    slow = sampled & frame["schedule_id"].map(spills).gt(0)
    for col in ("latency_median_s", "latency_mean_s", "latency_min_s"):
        frame.loc[slow, col] *= 4.0
    side = frame[["workload_key", "schedule_id", "schedule_kind"]].drop_duplicates(["workload_key", "schedule_id"])
    side = side.assign(schedule_id=np.where(side["schedule_kind"] == "default", "default", side["schedule_id"]))
    table = pd.DataFrame({"mcpu": "synthcpu", "workload_key": side["workload_key"], "schedule_id": side["schedule_id"]})
    for name in COUNTS:
        table[name] = 10.0
    table["in_spill"] = [spills[s] if k == "sampled" else 0 for s, k in zip(frame.drop_duplicates(
        ["workload_key", "schedule_id"])["schedule_id"], side["schedule_kind"])]
    path = tmp_path / f"m{seed}.parquet"
    frame.to_parquet(path)
    table.to_parquet(tmp_path / f"m{seed}.compiled.parquet")
    return path


SPEC = dataclasses.replace(synthetic_spec(), tvm_target={"kind": "llvm", "mcpu": "synthcpu"})


def test_a_predictor_learns_what_only_the_compiled_kernel_shows_and_keeps_it_when_saved(tmp_path):
    from opscope.predictor.frames import labels, read_frame
    from opscope.predictor.models.persist import load_predictor, save_predictor
    from opscope.predictor.models.xgb import XGBoostPredictor

    frame = read_frame(_data(tmp_path), label="latency_min_s")  # loads the sidecar
    models = frame["models"].astype(str)
    test = models == models.iloc[-1]  # one model's operators held out
    train, held = frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)
    y = held["latency_min_s"].to_numpy()
    small = dict(n_estimators=150, n_models=1, nn_weight=0.0, relative_weight=0.0, specs={TARGET: SPEC})
    errors = {}
    for flag in (False, True):
        pred = XGBoostPredictor(compiled_features=flag, **small).fit(train, labels(train, "latency_min_s"))
        errors[flag] = float(np.median(np.abs(pred.predict(held) / y - 1)))
    # the 4x of spilling schedules is invisible without the counts and learnt with them (what is left
    # is the held-out operators' own error)
    assert errors[True] < 0.2 and errors[True] < 0.5 * errors[False]
    out = save_predictor(pred, tmp_path / "P", training=train, label="latency_min_s")
    again = load_predictor(out, specs={TARGET: SPEC})
    assert again.compiled_features is True
    assert np.allclose(again.predict(held), pred.predict(held))


def test_a_bad_sidecar_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "x.parquet"
    synthetic_frame(models=1, per_model=1, schedules=2).to_parquet(path)
    (tmp_path / "x.compiled.parquet").write_text("not parquet")
    with pytest.raises(PredictorError, match=r"x\.compiled\.parquet: not a compiled-features sidecar"):
        load_sidecar(path)
    pd.DataFrame({"mcpu": ["a"], "workload_key": ["k"]}).to_parquet(tmp_path / "x.compiled.parquet")
    with pytest.raises(PredictorError, match="missing schedule_id, n_ins"):
        load_sidecar(path)
    # a file of that name that is not ours is not replaced: compile-features stops on it first
    (tmp_path / "x.compiled.parquet").write_text("someone else's")
    capsys.readouterr()
    assert main(["compile-features", "--data", str(path)]) != 0
    err = capsys.readouterr().err.strip()
    assert "x.compiled.parquet: not a compiled-features sidecar" in err and len(err.splitlines()) == 1
    assert (tmp_path / "x.compiled.parquet").read_text() == "someone else's"


def test_train_refuses_compiled_features_for_a_model_without_them(tmp_path, capsys):
    path = tmp_path / "x.parquet"
    synthetic_frame(models=2, per_model=3, schedules=3).to_parquet(path)
    assert main(["train", "--store", str(path), "--model", "calibrated", "--compiled-features",
                 "--out", str(tmp_path / "P")]) != 0
    assert "--compiled-features: --model calibrated does not take them" in capsys.readouterr().err


@pytest.mark.slow
def test_real_kernels_are_compiled_once_and_written_beside_the_data(tmp_path):
    from dense_rows import dense_rows

    from opscope.predictor.features.compiled import compiled_features, sidecar_path, write_sidecar
    from opscope.predictor.features.estimates import SpecCache

    _op, frame = dense_rows()
    X, skipped = compiled_features(frame, SpecCache())
    assert X.shape == (5, len(COLUMNS))
    assert np.isfinite(X[:3]).all() and (X[1] == X[2]).all()
    assert not np.allclose(X[0], X[1])  # the vectorised schedule's kernel differs from the default one
    assert np.isnan(X[3]).all() and np.isnan(X[4]).all()
    reasons = dict(skipped)
    assert 4 in reasons and "no stored TIR" in reasons[4] and 3 in reasons
    # a compile past the time limit is cut, with its reason, and the rest goes on
    late = frame.iloc[[1]].assign(workload_key="fresh-key")
    X2, skipped2 = compiled_features(late, SpecCache(), timeout_s=0.001)
    assert np.isnan(X2).all() and "compiling took more than" in dict(skipped2)[0]
    out, n, _ = write_sidecar(frame, tmp_path / "d.parquet", SpecCache())
    assert out == sidecar_path(tmp_path / "d.parquet") and n == 4  # default, s1, sbad, other's default
    table = pd.read_parquet(out)
    assert sorted(table["schedule_id"]) == ["default", "default", "s1", "sbad"]


def test_a_schedule_the_sidecar_lacks_is_compiled_for_the_cpu_the_sidecar_names(tmp_path):
    """Rows of a machine whose sidecar was read (it names the machine's CPU) but that the sidecar does not
    hold (its later measurements) are compiled for that CPU; replaying a sampled schedule's trace needs
    the target's core count, which such a target once lacked (the rows got NaN, and the predictions
    with them went far off)."""
    from dense_rows import dense_rows

    from opscope.predictor.features.compiled import compiled_features
    from opscope.predictor.features.estimates import SpecCache

    _op, frame = dense_rows()
    frame = frame.iloc[[0, 1]].assign(machine_id="m-sidecar")  # the default and the tuned schedule
    table = pd.DataFrame({"mcpu": "x86-64-v3", "machine_id": "m-sidecar", "workload_key": frame["workload_key"][:1],
                          "schedule_id": "default", **{c: 3.0 for c in COUNTS}})
    table.to_parquet(tmp_path / "s.compiled.parquet")
    assert load_sidecar(tmp_path / "s.parquet") == 1  # the sidecar: this machine builds for x86-64-v3
    X, skipped = compiled_features(frame, SpecCache())
    assert skipped == [] and np.allclose(X[0, 0], np.log1p(3.0))
    assert np.isfinite(X[1]).all() and X[1, COLUMNS.index("c_n_ins")] > np.log1p(3.0)


def test_a_measured_row_takes_the_counts_of_the_machine_that_measured_it(tmp_path):
    """A dataset of another machine, trained alone, is described as this machine ('host' or here the
    synthetic target); its rows' kernels are still the ones its own machine built, which its sidecar
    names by machine id: those counts are used, and nothing is compiled (the frame has no TIR)."""
    from opscope.predictor.features.compiled import compiled_features
    from opscope.predictor.features.estimates import SpecCache
    from opscope.predictor.frames import read_frame

    frame = synthetic_frame(seed=5, models=1, per_model=2, schedules=3).assign(machine_id="m-elsewhere")
    path = tmp_path / "e.parquet"
    frame.to_parquet(path)
    side = frame.drop_duplicates(["workload_key", "schedule_id"])
    sid = np.where(side["schedule_kind"] == "default", "default", side["schedule_id"])
    table = pd.DataFrame({"mcpu": "elsewherecpu", "machine_id": "m-elsewhere", "workload_key": side["workload_key"],
                          "schedule_id": sid, **{c: 3.0 for c in COUNTS}})
    table.to_parquet(tmp_path / "e.compiled.parquet")
    X, skipped = compiled_features(read_frame(path), SpecCache({TARGET: SPEC}))  # SPEC says "synthcpu"
    assert skipped == [] and np.allclose(X[:, 0], np.log1p(3.0))


def test_every_row_gets_its_own_kernels_counts_when_rows_repeat_and_machines_mix(tmp_path):
    """Counts are looked up once per distinct kernel and spread back to the rows: shuffled, repeated
    rows of two machines each get the counts of their own (machine, workload, schedule), and only the
    rows of the machine nothing is known of are skipped, each with its reason."""
    from opscope.predictor.features.compiled import compiled_features
    from opscope.predictor.features.estimates import SpecCache
    from opscope.predictor.frames import read_frame

    known = synthetic_frame(seed=6, models=1, per_model=3, schedules=4).assign(machine_id="m-known")
    path = tmp_path / "k.parquet"
    known.to_parquet(path)
    side = known.drop_duplicates(["workload_key", "schedule_id"]).reset_index(drop=True)
    sid = np.where(side["schedule_kind"] == "default", "default", side["schedule_id"])
    value = np.arange(len(side), dtype=float) + 1.0  # a count of its own for every kernel
    table = pd.DataFrame({"mcpu": "knowncpu", "machine_id": "m-known", "workload_key": side["workload_key"],
                          "schedule_id": sid, **{c: value for c in COUNTS}})
    table.to_parquet(tmp_path / "k.compiled.parquet")
    read_frame(path)  # loads the sidecar
    other = known.assign(machine_id="m-nobody")
    frame = pd.concat([known, other, known], ignore_index=True).sample(frac=1.0, random_state=0)
    frame = frame.reset_index(drop=True)
    nobody = dataclasses.replace(synthetic_spec(), tvm_target={"kind": "llvm", "mcpu": "nobodycpu"})
    X, skipped = compiled_features(frame, SpecCache({TARGET: nobody}))  # a CPU no other test caches
    lookup = {(k, s): v for k, s, v in zip(side["workload_key"], sid, value)}
    rows_sid = np.where(frame["schedule_kind"] == "default", "default", frame["schedule_id"])
    mine = (frame["machine_id"] == "m-known").to_numpy()
    want = np.array([lookup[(k, s)] for k, s in zip(frame["workload_key"], rows_sid)])
    assert np.allclose(X[mine, 0], np.log1p(want[mine]))
    assert np.isnan(X[~mine]).all()
    assert [i for i, _ in skipped] == list(np.flatnonzero(~mine))
    assert all("no stored TIR" in why for _, why in skipped)


def test_rows_that_cannot_be_compiled_get_nan_and_a_reason_not_an_error():
    from opscope.predictor.features.compiled import compiled_features
    from opscope.predictor.features.estimates import SpecCache

    frame = synthetic_frame(seed=9, models=1, per_model=1, schedules=2).assign(machine_id="m-unknown")
    assert "workload_script" not in frame  # no TIR, and nothing cached for these rows
    X, skipped = compiled_features(frame, SpecCache({TARGET: SPEC}))
    assert np.isnan(X).all() and [i for i, _ in skipped] == list(range(len(frame)))
    assert all("no stored TIR" in why for _, why in skipped)


def test_tvmscript_names_that_start_with_a_digit_are_renamed_and_numbers_are_not():
    from opscope.store.sqlite import _python_names

    # ONNX initializers such as "2.f.4.weight" reach TVMScript as 2_f_4_weight, which Python rejects
    text = "def main(2_f_4_weight: T.Buffer((1,)), x=1e-05, y=1e5, z=0x1F, w=1_000, q=2.5e-3, j=1j):\n  2_f_4_weight[0] = 3"
    assert _python_names(text) == ("def main(v_2_f_4_weight: T.Buffer((1,)), x=1e-05, y=1e5, z=0x1F, w=1_000, "
                                   "q=2.5e-3, j=1j):\n  v_2_f_4_weight[0] = 3")
