"""``opscope compare`` on the command line: a layer-table model, a store of known records."""

from __future__ import annotations

import pytest

from opscope.cli import main
from opscope.collector.protocol import Protocol
from opscope.store import Record, open_store
from opscope.workloads import load_model

TABLE = """name,type,K,C,Y,X,R,S,stride,padding,groups,count
big,dense,1024,1024,,,,,,,,1
small,dense,64,256,,,,,,,,2
conv,conv2d,16,8,14,14,3,3,1,1,,1
"""


def rec(op, machine, lat, threads=1):
    return Record(op=op, schedule_id="default", schedule_kind="default", trace_json="[]", knobs={},
                  threads=threads, target="host", machine_id=machine, protocol=Protocol(), status="ok",
                  raw_latencies_s=lat)


@pytest.fixture()
def model_and_store(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSCOPE_SPEC_DIR", str(tmp_path / "no-specs"))
    monkeypatch.setattr("opscope.report.machine.this_machine", lambda: ("m-here", {"cpu_model": "here"}))
    csv = tmp_path / "mlp.csv"
    csv.write_text(TABLE)
    ops = {o.name: o for o in load_model(str(csv)).operators}
    db = tmp_path / "runs.db"
    with open_store(db) as st:
        st.add_machine("m-here", {"cpu_model": "here"})
        st.add(rec(ops["big"], "m-here", (2e-3, 2.2e-3, 2.1e-3)))
        st.add(rec(ops["small"], "m-here", (1e-4, 1e-4, 1e-4)))
    return csv, db, ops


def test_prints_table_slowest_first_and_three_line_summary(model_and_store, tmp_path, capsys):
    csv, db, _ops = model_and_store
    rc = main(["compare", "--model", str(csv), "--store", str(db), "--out", str(tmp_path / "rep"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    body = lines[2:lines.index("")]
    assert [ln.split()[0] for ln in body] == ["big", "small", "conv", "TOTAL"]
    assert "2.1 ms" in body[0] and "unmeasured" in body[2]
    summary = lines[lines.index("") + 1:][:3]
    assert summary[0].startswith("measured 2/3 operators")
    assert "sum of best measured 2.3 ms" in summary[0]        # 2.1 ms + 2 x 0.1 ms
    assert summary[1].startswith("analytical: MAPE")
    assert summary[2] == "whole model: not measured: the model has no Relax module (a layer table cannot be built)"
    assert f"report: {tmp_path / 'rep' / 'report.html'}" in out
    assert (tmp_path / "rep" / "roofline.png").is_file()


def test_other_machine_refused_then_allowed(model_and_store, capsys):
    csv, db, ops = model_and_store
    with open_store(db) as st:
        st.add_machine("m-elsewhere", {"cpu_model": "elsewhere cpu", "cores": 64})
        st.add(rec(ops["conv"], "m-elsewhere", (5e-4,)))
    rc = main(["compare", "--model", str(csv), "--store", str(db), "--out", "", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "m-elsewhere" in err and "m-here" in err and "elsewhere cpu" in err
    rc = main(["compare", "--model", str(csv), "--store", str(db), "--quiet", "--no-whole-model",
               "--allow-other-machine", "--out", ""])
    assert rc == 0
    assert "measured 3/3 operators" in capsys.readouterr().out


def test_bad_arguments_are_one_line_errors(model_and_store, capsys):
    csv, db, _ops = model_and_store
    assert main(["compare", "--model", str(csv), "--store", str(db), "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
    assert main(["compare", "--model", str(csv), "--store", str(db) + ".missing", "--out", ""]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["compare", "--model", str(csv), "--store", str(db), "--param", "image_size"]) == 2
    assert "--param 'image_size': expected KEY=INT" in capsys.readouterr().err
    # a layer table takes no zoo parameters: one clear line, no traceback
    assert main(["compare", "--model", str(csv), "--store", str(db), "--param", "image_size=64", "--out", ""]) == 2
    assert "apply only to zoo models" in capsys.readouterr().err
