"""``opscope corun``: argument checks, and one end-to-end run on a small ResNet."""

from __future__ import annotations

import os

import pytest

from opscope.cli import main
from opscope.commands.corun import parse_cores, parse_params
from opscope.errors import OpscopeError


def test_parse_cores_and_params():
    allowed = sorted(os.sched_getaffinity(0))
    assert parse_cores(f"{allowed[0]}") == (allowed[0],)
    if len(allowed) >= 2:
        assert parse_cores(f"{allowed[0]}-{allowed[1]}") == tuple(range(allowed[0], allowed[1] + 1))
    with pytest.raises(OpscopeError, match="cannot read 'x'"):
        parse_cores("0,x")
    with pytest.raises(OpscopeError, match="not available"):
        parse_cores("4096")
    assert parse_params(["image_size=32", "heads = 2"]) == {"image_size": 32, "heads": 2}
    with pytest.raises(OpscopeError, match="expected KEY=INT"):
        parse_params(["image_size"])
    with pytest.raises(OpscopeError, match="not an integer"):
        parse_params(["image_size=big"])


def test_bad_options_are_one_line_errors(capsys):
    assert main(["corun", "--model", "resnet18", "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err
    assert main(["corun", "--model", "resnet18", "--target", "h100", "--no-store", "--quiet"]) == 2
    assert "is a gpu" in capsys.readouterr().err


def test_interference_from_an_empty_store_is_refused(tmp_path, capsys):
    from opscope.corun.table import save_corun

    missing = tmp_path / "none.db"
    assert main(["corun", "--model", "resnet18", "--interference", "store", "--store", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty.db"
    save_corun(empty, [])
    assert main(["corun", "--model", "resnet18", "--interference", "store", "--store", str(empty)]) == 2
    assert "has 0 co-run rows" in capsys.readouterr().err


@pytest.mark.slow
def test_corun_command_on_a_small_resnet(tmp_path, capsys):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores")
    db = tmp_path / "runs.db"
    rc = main(["corun", "--model", "resnet18", "--param", "image_size=32", "--max-regions", "1",
               "--rounds", "1", "--repeats", "3", "--window-ms", "20", "--store", str(db), "--quiet",
               "--cores", "0-1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "region 1: fork" in out
    for label in ("sequential(2c)", "split(1+1)", "shared(2c x2)"):
        assert label in out
    assert "chosen" in out and "measured best" in out
    from opscope.corun.table import load_corun

    recs = load_corun(db)
    assert len(recs) == 3 and {r.arrangement.kind for r in recs} == {"sequential", "disjoint", "shared"}
    assert all(r.label == "resnet18:region1" for r in recs)
