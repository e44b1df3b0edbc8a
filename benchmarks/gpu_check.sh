#!/usr/bin/env bash
# GPU check across an air gap: build one CUDA bundle here, run it on a GPU machine, bring it back.
#
#   benchmarks/gpu_check.sh build  [DIR]            # here (no GPU needed): writes DIR (default gpu_check/)
#   ... copy DIR to the GPU machine, run the one command this prints, copy DIR back ...
#   benchmarks/gpu_check.sh import [DIR]            # here: import-results, probe, compare
#
# The bundle holds the operators of resnet18 and bert (seq_len 128, one layer; 5 operators each,
# the dlight default and 6 sampled schedules per operator), the GPU probe's TVM kernels (8192^3
# float32/float16 GEMM, 1 GiB copy; default schedule only) and library.py (PyTorch's GEMM and copy), all compiled here to
# cubins for the target's arch.  The GPU machine needs Python 3, numpy and torch with CUDA: no TVM,
# nothing downloaded.  The bundle carries tvm_ffi for this Python and for $PYTHONS (default 3.12,
# fetched once here with pip).
#
# Environment: TARGET (default h200; any GPU spec), PYTHONS (comma list, default 3.12), TRIALS (6),
# MAX_OPS (5), GEMM (8192), COPY_MIB (1024), MODELS (resnet18,bert).
set -euo pipefail

MODE=${1:-build}
DIR=${2:-gpu_check}
TARGET=${TARGET:-h200}
PYTHONS=${PYTHONS:-3.12}
TRIALS=${TRIALS:-6}
MAX_OPS=${MAX_OPS:-5}
GEMM=${GEMM:-8192}
COPY_MIB=${COPY_MIB:-1024}
MODELS=${MODELS:-resnet18,bert}

case "$MODE" in
build)
    if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
        echo "gpu_check.sh: $DIR exists and is not empty; give another folder" >&2
        exit 2
    fi
    command -v nvcc >/dev/null || { echo "gpu_check.sh: needs nvcc (the CUDA toolkit) to compile the kernels" >&2; exit 2; }
    start=$(date +%s)
    python - "$DIR" "$TARGET" "$PYTHONS" "$TRIALS" "$MAX_OPS" "$GEMM" "$COPY_MIB" "$MODELS" <<'EOF'
import shutil
import sys
from pathlib import Path

from opscope.bundle import write_bundle
from opscope.collector import gpu_library
from opscope.collector.gpu_probe import probe_operators
from opscope.collector.sweep import select_operators
from opscope.store.protocol import Protocol
from opscope.targets import load_target
from opscope.workloads import load_model

out, target, pythons, trials, max_ops, gemm, copy_mib, models = sys.argv[1:]
ops = []
for name in models.split(","):
    params = {"seq_len": 128, "layers": 1} if name in ("bert", "gpt2") else {}
    ops += select_operators(load_model(name, **params), None, int(max_ops))
probe = probe_operators(int(gemm), int(copy_mib) << 20)
info = write_bundle(ops + probe, load_target(target), int(trials), out, protocol=Protocol(repeat=5, min_repeat_ms=20),
                    timeout_s=30.0, pythons=[p for p in pythons.split(",") if p], default_only={op.key for op in probe})
shutil.copy2(Path(gpu_library.__file__), Path(out) / "library.py")
print(f"bundle {info.bundle_id}: {info.operators} operators, {info.kernels} kernels ({info.build_errors} build "
      f"errors), {info.size_bytes / 1e6:.1f} MB (runtime {info.runtime_bytes / 1e6:.1f} MB)")
EOF
    size=$(du -sm "$DIR" | cut -f1)
    echo "built in $(( $(date +%s) - start )) s; $DIR is ${size} MB"
    echo
    B=$(basename "$DIR")
    echo "on the GPU machine (Python 3 with numpy and torch), in the folder you copied $B into:"
    echo "  python3 $B/run.py --check && python3 $B/run.py --out $B/results.json && python3 $B/library.py --out $B/library.json --gemm-size $GEMM --copy-mib $COPY_MIB"
    echo
    echo "then bring $DIR back and run here:  benchmarks/gpu_check.sh import $DIR"
    ;;
import)
    for f in results.json library.json; do
        [ -f "$DIR/$f" ] || { echo "gpu_check.sh: $DIR/$f is missing: run the printed command on the GPU first" >&2; exit 2; }
    done
    STORE=${STORE:-$DIR/runs.db}
    opscope import-results "$DIR/results.json" --store "$STORE"
    # writes <target>-measured into the user spec directory, where compare finds its ceilings
    opscope probe --target "$TARGET" --results "$DIR/results.json" --library "$DIR/library.json"
    for model in ${MODELS//,/ }; do
        params=()
        if [ "$model" = bert ] || [ "$model" = gpt2 ]; then params=(--param seq_len=128 --param layers=1); fi
        opscope compare --model "$model" "${params[@]}" --target "$TARGET" --store "$STORE" --out "$DIR/compare-$model"
    done
    ;;
*)
    echo "usage: benchmarks/gpu_check.sh build|import [DIR]" >&2
    exit 2
    ;;
esac
