"""opscope's mapping search beside nn_dataflow on AlexNet and VGG-16 (batch 1, Eyeriss-like hardware).

The layers are nn_dataflow's own (``nn_dataflow/nns/alex_net.py``, ``vgg_net.py``: AlexNet's two
groups are separate layers there, and so here), written as opscope operators: a convolution's input
is the padded ``(P - 1) x stride + R``, a fully connected layer is a dense one over the flattened
input.  opscope runs ``eyeriss-like`` with float16 (2-byte words).  nn_dataflow's numbers are read
from its JSON output, when given:

    python -m venv /tmp/nnd && /tmp/nnd/bin/pip install nn-dataflow sympy==1.5.1
    for net in vgg_net alex_net; do
      /tmp/nnd/bin/python -m nn_dataflow.tools.nn_dataflow_search $net --batch 1 --word 16 --nodes 1 1 \\
          --array 12 14 --regf 520 --gbuf 110592 --op-cost 1 --hier-cost 200 6 2 1 --hop-cost 0 \\
          --unit-idle-cost 0 -p 2 > $net.json
    done
    python benchmarks/mapping_vs_nn_dataflow.py --vgg vgg_net.json --alexnet alex_net.json
    python benchmarks/mapping_vs_nn_dataflow.py --vgg vgg_net.json --alexnet alex_net.json \\
        --dataflow row-stationary-folded        # nn_dataflow's own mapping space

Energies are compared in mJ (nn_dataflow's cost is in pJ with these unit costs), DRAM traffic in
16-bit words.  Pooling layers are left out of both (opscope does not map them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from opscope.analytical import AnalysisOptions, analyze_operators, estimate
from opscope.analytical.search import _CACHE
from opscope.targets import load_target
from opscope.targets.spec import DATAFLOWS
from opscope.workloads.layer_table import conv_op, dense_op

# name: (input channels, output channels, output size, filter, stride) as in nn_dataflow; FC: (in, out)
VGG = {
    "conv1": (3, 64, 224, 3, 1), "conv2": (64, 64, 224, 3, 1), "conv3": (64, 128, 112, 3, 1),
    "conv4": (128, 128, 112, 3, 1), "conv5": (128, 256, 56, 3, 1), "conv6": (256, 256, 56, 3, 1),
    "conv7": (256, 256, 56, 3, 1), "conv8": (256, 512, 28, 3, 1), "conv9": (512, 512, 28, 3, 1),
    "conv10": (512, 512, 28, 3, 1), "conv11": (512, 512, 14, 3, 1), "conv12": (512, 512, 14, 3, 1),
    "conv13": (512, 512, 14, 3, 1), "fc1": (512 * 7 * 7, 4096), "fc2": (4096, 4096), "fc3": (4096, 1000),
}
ALEXNET = {
    "conv1_a": (3, 48, 55, 11, 4), "conv1_b": (3, 48, 55, 11, 4), "conv2_a": (48, 128, 27, 5, 1),
    "conv2_b": (48, 128, 27, 5, 1), "conv3_a": (256, 192, 13, 3, 1), "conv3_b": (256, 192, 13, 3, 1),
    "conv4_a": (192, 192, 13, 3, 1), "conv4_b": (192, 192, 13, 3, 1), "conv5_a": (192, 128, 13, 3, 1),
    "conv5_b": (192, 128, 13, 3, 1), "fc1": (256 * 6 * 6, 4096), "fc2": (4096, 4096), "fc3": (4096, 1000),
}


EYERISS = load_target("eyeriss-like")


def operators(layers: dict, model: str) -> list:
    ops = []
    for name, dims in layers.items():
        if len(dims) == 2:
            ops.append(dense_op(name, 1, dims[1], dims[0], "float16", source="table", model=model))
        else:
            c, k, p, r, stride = dims
            y = (p - 1) * stride + r
            ops.append(conv_op(name, 1, k, c, y, y, r, r, stride=stride, padding=0, groups=1, dtype="float16",
                               source="table", model=model))
    return ops


def nn_dataflow_layers(path: str) -> dict:
    data = json.loads(Path(path).read_text())
    return {name: {"energy_pj": s[0]["cost"], "dram_words": sum(s[0]["access"][0])}
            for name, s in data["schedules"].items()}


def table(model: str, layers: dict, nnd: dict | None, options: AnalysisOptions) -> list[str]:
    ops = operators(layers, model)
    _CACHE.clear()  # time the search itself, not the cache
    per_layer = []
    for op in ops:
        t = time.perf_counter()
        estimate(op, EYERISS, options)
        per_layer.append((time.perf_counter() - t, op.name))
    _CACHE.clear()
    t0 = time.perf_counter()
    df = analyze_operators(ops, EYERISS, options).set_index("op")
    took = time.perf_counter() - t0
    slow = max(per_layer)
    lines = [f"{model}: {len(ops)} layers analysed in {took:.2f} s (cache cleared first; slowest layer alone "
             f"{slow[0]:.2f} s, {slow[1]})", "",
             "| layer | opscope mJ | nn_dataflow mJ | ratio | opscope DRAM Mword | nn_dataflow DRAM Mword | ratio |",
             "|---|---|---|---|---|---|---|"]
    tot_o = tot_n = 0.0
    for name in layers:
        e = df.loc[name, "energy_j"] * 1e3
        dram = df.loc[name, "bytes_DRAM"] / 2 / 1e6
        tot_o += e
        if nnd and name in nnd:
            ne, nd = nnd[name]["energy_pj"] * 1e-9, nnd[name]["dram_words"] / 1e6
            tot_n += ne
            lines.append(f"| {name} | {e:.3f} | {ne:.3f} | {e / ne:.3f} | {dram:.3f} | {nd:.3f} | {dram / nd:.3f} |")
        else:
            lines.append(f"| {name} | {e:.3f} | | | {dram:.3f} | | |")
    ratio = f"{tot_o / tot_n:.3f}" if tot_n else ""
    lines.append(f"| total (conv + FC) | {tot_o:.2f} | {tot_n:.2f} | {ratio} | | | |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vgg", help="nn_dataflow's JSON output for vgg_net")
    ap.add_argument("--alexnet", help="nn_dataflow's JSON output for alex_net")
    ap.add_argument("--no-double-buffer", action="store_true")
    ap.add_argument("--dataflow", choices=DATAFLOWS,
                    help="the dataflow for every layer (default: searched over row-, weight- and output-"
                         "stationary); row-stationary-folded is nn_dataflow's row-stationary folding rule")
    args = ap.parse_args()
    options = AnalysisOptions(double_buffer=not args.no_double_buffer, dataflow=args.dataflow)
    for model, layers, path in (("alexnet", ALEXNET, args.alexnet), ("vgg16", VGG, args.vgg)):
        print("\n".join(table(model, layers, nn_dataflow_layers(path) if path else None, options)))
        print()


if __name__ == "__main__":
    main()
