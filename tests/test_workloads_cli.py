"""``opscope models`` and the workload cache's failure modes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import opscope.workloads
from opscope.cli import main
from opscope.workloads import load_model
from opscope.workloads.cache import cache_dir

TABLE = Path(opscope.workloads.__file__).parent / "tables" / "resnet18_convs.csv"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSCOPE_CACHE_DIR", str(tmp_path / "cache"))


def test_listing_imports_neither_torch_nor_tvm(tmp_path):
    code = (
        "import sys\n"
        "from opscope.cli import main\n"
        "assert main(['models']) == 0\n"
        "assert 'torch' not in sys.modules and 'tvm' not in sys.modules, 'listing loaded a heavy module'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"OPSCOPE_CACHE_DIR": str(tmp_path / "c"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in opscope.workloads.list_models():
        row = next(line for line in lines if line.startswith(name + " "))
        assert " - " in row  # nothing cached: no counts
    assert "seq_len=128 heads=12 hidden=768 ff=3072 layers=12" in done.stdout


def test_listing_shows_counts_of_cached_models(capsys):
    load_model("mlp")
    assert main(["models"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("mlp "))
    assert "3 ops / 3 kernels" in row


def test_show_a_layer_table(capsys):
    assert main(["models", "--show", str(TABLE)]) == 0
    out = capsys.readouterr()
    assert "layer1.conv" in out.out and "conv2d" in out.out
    assert "21 kernels" in out.err


def test_show_errors_are_one_line(capsys):
    assert main(["models", "--show", "resnet18", "--set", "depth=3"]) == 2
    assert "no parameter 'depth'" in capsys.readouterr().err
    assert main(["models", "--show", "resnet18", "--set", "image_size"]) == 2
    assert "expected NAME=INT" in capsys.readouterr().err
    assert main(["models", "--set", "image_size=32"]) == 2
    assert "--set applies to --show" in capsys.readouterr().err


def test_corrupt_cache_entry_is_rebuilt(capsys):
    first = load_model("mlp", hidden=16)
    entries = sorted(cache_dir().glob("*.tvm.json"))
    assert len(entries) == 1
    entries[0].write_text("{ not json")
    again = load_model("mlp", hidden=16)
    assert again.operators == first.operators
    assert "ignoring unreadable workload cache entry" in capsys.readouterr().err
    # the rebuilt entry is whole again
    meta = json.loads(entries[0].with_name(entries[0].name.replace(".tvm.json", ".json")).read_text())
    assert len(meta["operators"]) == 3


def test_cache_off(monkeypatch):
    monkeypatch.setenv("OPSCOPE_CACHE_DIR", "off")
    assert cache_dir() is None
    work = load_model("mlp", hidden=16)
    assert len(work.operators) == 3


def test_cached_model_without_tir_needs_no_tvm(tmp_path, monkeypatch):
    cache_root = tmp_path / "shared"
    monkeypatch.setenv("OPSCOPE_CACHE_DIR", str(cache_root))
    full = load_model("mlp", hidden=16)
    code = (
        "import sys, json\n"
        "from opscope.workloads import load_model\n"
        "w = load_model('mlp', hidden=16, with_tir=False)\n"
        "assert 'tvm' not in sys.modules and 'torch' not in sys.modules\n"
        "assert w.ir_module is None and all(op.prim_func is None for op in w.operators)\n"
        "print(json.dumps([op.to_dict() for op in w.operators]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"OPSCOPE_CACHE_DIR": str(cache_root), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [op.to_dict() for op in full.operators]
