"""``opscope compare``: analytical vs measured vs predicted, per operator and for the whole model."""

from __future__ import annotations

import argparse
import os
import sys

from opscope.errors import OpscopeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="zoo name, .onnx file or layer-table .csv")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=INT",
                        help="zoo model parameter as given to collect, e.g. image_size=64 (repeatable)")
    parser.add_argument("--target", default="host", help="target spec name or TOML path (default: host)")
    parser.add_argument("--store", default=os.environ.get("OPSCOPE_STORE", "runs.db"),
                        help="measurement store (default: $OPSCOPE_STORE or runs.db)")
    parser.add_argument("--predictor", default=None, help="saved predictor directory (opscope train --out)")
    parser.add_argument("--out", default="report", help="folder for report.html, figures and comparison.csv "
                        "(default: report/; an empty value writes no files)")
    parser.add_argument("--allow-other-machine", action="store_true",
                        help="use measurements taken on another machine than this one")
    parser.add_argument("--threads", type=int, default=None,
                        help="thread count of the whole-model run (default: the largest measured)")
    parser.add_argument("--no-whole-model", action="store_true", help="skip building and timing the whole model")
    parser.add_argument("--repeat", type=int, default=5, help="whole-model timing repeats (default: 5)")
    parser.add_argument("--no-torch", action="store_true",
                        help="do not time the same zoo model in torch eager beside the whole-model run")
    parser.add_argument("--torch-compile", action="store_true",
                        help="also time it under torch.compile (compiles first; a failure is noted, not fatal)")
    parser.add_argument("--tune", type=int, default=None, metavar="N",
                        help="first search N schedules of every operator of the model at the whole-model "
                             "thread count (collect --search evolutionary; resumes what the store holds)")
    parser.add_argument("--cost-model", default="xgb", metavar="xgb|random|DIR|DIR+xgb",
                        help="the cost model of --tune's search (docs/collector.md)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    from opscope.edges import at_least, out_dir, thread_count, zoo_params
    from opscope.report.comparison import compare
    from opscope.report.whole_model import VMProtocol

    if args.threads is not None and args.threads < 1:
        raise OpscopeError(f"--threads must be >= 1, got {args.threads}")
    if not args.no_whole_model:  # the whole model runs here, on this machine's CPUs
        thread_count(args.threads)
    at_least(args.batch_size, 1, "--batch-size")
    if args.out:
        out_dir(args.out, "--out")
    if args.repeat < 1:
        raise OpscopeError(f"--repeat must be >= 1, got {args.repeat}")
    params = zoo_params(args.param)
    # the store and the predictor are checked before the model is loaded
    from pathlib import Path

    from opscope.store.sqlite import sniff_store

    if Path(args.store).is_dir():
        raise OpscopeError(f"store {args.store}: is a directory, expected a SQLite file")
    if args.tune is not None and not Path(args.store).is_file():
        from opscope.store.sqlite import check_writable_store

        check_writable_store(args.store)  # --tune measures into a new store
    elif not Path(args.store).is_file():
        raise OpscopeError(f"store {args.store}: no such file (measure with `opscope collect ... --store "
                           f"{args.store}`)")
    if Path(args.store).is_file():
        sniff_store(args.store)
    if args.predictor:
        from opscope.predictor.models.persist import read_metadata

        read_metadata(args.predictor)
    if args.tune is not None:
        from opscope.collector.search import SearchConfig

        SearchConfig(cost_model=args.cost_model)  # a bad --cost-model is refused before anything runs
        _tune_first(args, params)
    result = compare(
        args.model, target=args.target, store=args.store, predictor=args.predictor, out=args.out or None,
        allow_other_machine=args.allow_other_machine, whole_model=not args.no_whole_model,
        threads=args.threads, batch_size=args.batch_size, dtype=args.dtype, params=params,
        protocol=VMProtocol(repeat=args.repeat), progress=not args.quiet,
        torch_baseline=not args.no_torch, torch_compile=args.torch_compile,
    )
    print(result.table_text())
    print()
    for line in result.summary:
        print(line)
    if result.html_path is not None:
        print(f"report: {result.html_path}")
        for name in sorted(result.figures):
            png = result.png(name)
            if png is not None:
                print(f"figure: {png}")
    return 0


def _tune_first(args: argparse.Namespace, params: dict) -> None:
    """``--tune N``: the evolutionary search of every operator of the model before comparing."""
    from opscope.collector import collect
    from opscope.collector.search import SearchConfig
    from opscope.edges import at_least
    from opscope.workloads import load_model

    at_least(args.tune, 1, "--tune")
    threads = args.threads or 1
    workload = load_model(args.model, batch_size=args.batch_size, dtype=args.dtype, **params)
    ops = [op for op in workload.operators if op.prim_func is not None]
    if not args.quiet:
        print(f"tuning {len(ops)} operators of {workload.name}: {args.tune} searched schedules each at "
              f"{threads} thread(s) (store {args.store})", file=sys.stderr, flush=True)
    collect(ops, target=args.target, trials=args.tune, threads=(threads,), store=args.store,
            search="evolutionary", search_config=SearchConfig(trials=args.tune, cost_model=args.cost_model),
            progress=not args.quiet)
