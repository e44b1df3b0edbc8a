"""A sweep of bad arguments and files over every command: each ends in one line
``opscope <command>: ...``, a non-zero exit and no traceback.  The table in test_bad_inputs.py checks
the exact messages of the classes of the issue; this sweep checks the shape over many more."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_bad_inputs import TABLE, _any_table, make_predictor, make_store, results_lines

from opscope.cli import main

T = Path("/SWEEP")  # stands for the module's folder; replaced in each test


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    t = tmp_path_factory.mktemp("sweep")
    make_store(t / "a.db")
    make_predictor(t / "pred")
    (t / "file").write_text("x")
    (t / "bin").write_bytes(bytes(range(256)) * 4)
    (t / "dir").mkdir()
    (t / "r.json").write_text(results_lines())
    (t / "empty.csv").write_text("")
    (t / "hdr.csv").write_text("K,C,Y,X,R,S,T\n")
    (t / "neg.csv").write_text("K,C,Y,X,R,S,T\n-1,3,3,3,1,1,1\n")
    (t / "bin.csv").write_bytes(b"\xff\xfe" * 50)
    (t / "bad.onnx").write_bytes(b"not onnx")
    (t / "dens.csv").write_text("I,W,O\nx,y,z\n")
    yield t
    shutil.rmtree(t, ignore_errors=True)


db, pred, tab = T / "a.db", T / "pred", str(TABLE / _any_table())
CASES = [
    ["analyze", "--model", "nosuch", "--target", "h100"],
    ["analyze", "--model", tab, "--target", "nosuch"],
    ["analyze", "--model", str(T / "empty.csv"), "--target", "h100"],
    ["analyze", "--model", str(T / "hdr.csv"), "--target", "h100"],
    ["analyze", "--model", str(T / "neg.csv"), "--target", "h100"],
    ["analyze", "--model", str(T / "bin.csv"), "--target", "h100"],
    ["analyze", "--model", str(T / "bad.onnx"), "--target", "h100"],
    ["analyze", "--model", str(T / "dir"), "--target", "h100"],
    ["analyze", "--model", tab, "--target", "h100", "--batch", "0"],
    ["analyze", "--model", tab, "--target", "h100", "--dtype", "float7"],
    ["analyze", "--model", tab, "--target", "h100", "--density", "2", "1", "1"],
    ["analyze", "--model", tab, "--target", "h100", "--density", "-1", "1", "1"],
    ["analyze", "--model", tab, "--target", "h100", "--densities-csv", str(T / "dens.csv")],
    ["analyze", "--model", tab, "--target", "h100", "--densities-csv", str(T / "nope.csv")],
    ["analyze", "--model", tab, "--target", "h100", "--densities-csv", str(T / "bin")],
    ["analyze", "--model", tab, "--target", "h100", "--min-density", "0"],
    ["analyze", "--model", tab, "--target", "h100", "--attention", "lowrank", "--low-rank-ratio", "-3"],
    ["analyze", "--model", tab, "--target", "h100", "--seq-len", "0"],
    ["analyze", "--model", "bert", "--target", "h100", "--seq-len", "-5"],
    ["analyze", "--model", tab, "--target", "h100", "--out", str(T / "file" / "x.csv")],
    ["models", "--show", "nosuch"],
    ["models", "--show", "mlp", "--param", "layers=0"],
    ["models", "--show", "mlp", "--batch", "0"],
    ["models", "--show", str(T / "bin")],
    ["targets", "nosuch"],
    ["targets", str(T / "bin")],
    ["export", "--store", str(T / "dir"), "--out", str(T / "o.csv")],
    ["export", "--store", str(T / "file"), "--out", str(T / "o.csv")],
    ["export", "--store", str(T / "bin"), "--out", str(T / "o.csv")],
    ["export", "--store", str(db), "--out", str(T / "o.json")],
    ["export", "--store", str(db), "--out", ""],
    ["train", "--store", str(T / "nope.db"), "--out", str(T / "p1")],
    ["train", "--store", str(T / "bin"), "--out", str(T / "p1")],
    ["train", "--store", str(T / "empty.csv"), "--out", str(T / "p1")],
    ["train", "--store", str(T / "hdr.csv"), "--out", str(T / "p1")],
    ["train", "--store", str(T / "bin.csv"), "--out", str(T / "p1")],
    ["train", "--store", str(db), "--out", str(T / "p1"), "--label", "nope"],
    ["train", "--store", str(db), "--out", str(T / "p1"), "--model", "nope"],
    ["evaluate", "--data", str(db), "--folds", "1"],
    ["evaluate", "--data", str(db), "--predictor", str(T / "dir")],
    ["evaluate", "--data", str(db), "--predictor", str(T / "file")],
    ["evaluate", "--data", str(db), "--as-is"],
    ["evaluate", "--data", str(db), "--models", "nope"],
    ["predict", "--predictor", str(T / "nope"), "--model", tab],
    ["predict", "--predictor", str(pred), "--model", "nosuch"],
    ["predict", "--predictor", str(pred), "--model", tab, "--target", "nosuch"],
    ["predict", "--predictor", str(pred), "--model", tab, "--threads", "0"],
    ["predict", "--predictor", str(pred), "--model", tab, "--out", str(T / "dir")],
    ["tune", "--model", tab, "--op", "0", "--predictor", str(pred), "--budget", "0"],
    ["tune", "--model", tab, "--op", "0", "--predictor", str(pred), "--threads", "999"],
    ["tune", "--model", tab, "--op", "zzz", "--predictor", str(pred)],
    ["tune", "--model", tab, "--op", "0", "--predictor", str(T / "nope")],
    ["compare", "--model", tab, "--store", str(T / "nope.db")],
    ["compare", "--model", tab, "--store", str(T / "bin"), "--out", ""],
    ["compare", "--model", tab, "--store", str(db), "--predictor", str(T / "dir"), "--out", "", "--no-whole-model"],
    ["compare", "--model", tab, "--store", str(db), "--repeat", "0"],
    ["compare", "--model", tab, "--store", str(db), "--target", "nosuch", "--out", ""],
    ["collect", "--model", "nosuch", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--target", "nosuch", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--target", "h100x", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--target", "tpuv4-like", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--threads", "0", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--threads", "a", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--threads", "", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--trials", "-1", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--timeout", "0", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--store", str(T / "dir")],
    ["collect", "--model", "mlp", "--store", str(T / "nofolder" / "c.db")],
    ["collect", "--model", "mlp", "--param", "x", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--param", "mlp.depth=3", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--ops", "nokind", "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--max-ops", "0", "--store", str(T / "c.db")],
    ["collect", "--model", str(T / "bad.onnx"), "--store", str(T / "c.db")],
    ["collect", "--model", "mlp", "--tracker", "nohost", "--store", str(T / "c.db")],
    ["import-results", str(T / "dir"), "--store", str(T / "i.db")],
    ["import-results", str(T / "empty.csv"), "--store", str(T / "i.db")],
    ["import-results", str(T / "r.json"), "--store", str(T / "bin")],
    ["import-results", str(T / "r.json"), "--store", str(T / "dir")],
    ["corun", "--model", "nosuch", "--no-store"],
    ["corun", "--model", "mlp", "--cores", "0-99", "--no-store"],
    ["corun", "--model", "mlp", "--cores", "x", "--no-store"],
    ["corun", "--model", "mlp", "--store", str(T / "bin")],
    ["corun", "--model", "mlp", "--interference", str(T / "nope"), "--no-store"],
    ["corun", "--model", "mlp", "--interference", str(T / "bin"), "--no-store"],
    ["corun", "--model", "mlp", "--repeats", "0", "--no-store"],
    ["bundle", "--model", "nosuch", "--out", str(T / "b")],
    ["bundle", "--model", "mlp", "--out", str(T / "file")],
    ["bundle", "--model", "mlp", "--out", str(T / "b"), "--threads", "x"],
    ["bundle", "--model", "mlp", "--out", str(T / "b"), "--target", "tpuv4-like"],
    ["probe", "--gemm-size", "3"],
]


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(a).replace(tab, "TABLE").replace(str(T) + "/", "")[:70]
                                              for a in CASES])
def test_bad_argument_is_one_line(argv, folder, capsys):
    argv = [a.replace(str(T), str(folder)) for a in argv]
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("opscope ")]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"opscope {argv[0]}: "), err
    assert "Traceback" not in err
