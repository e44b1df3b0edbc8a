"""The ``opscope`` command: a thin shell over functions callable from Python.

Each sub-command lives in ``opscope/commands/<name>.py`` and provides ``add_arguments(parser)`` and
``run(args) -> int``.  Library code never parses argv.  User errors (``OpscopeError``) are printed
on one line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from opscope.errors import OpscopeError

#: sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": ("opscope.commands.analyze", "analytical per-operator latency/traffic of a model on a target"),
    "targets": ("opscope.commands.targets", "list the shipped target specs"),
    "models": ("opscope.commands.models", "list the built-in model zoo"),
    "probe": ("opscope.commands.probe", "measure this machine's peaks and bandwidths (host-measured spec)"),
    "collect": ("opscope.commands.collect", "measure operators under sampled schedules and thread counts"),
    "export": ("opscope.commands.export", "export a store to Parquet or CSV"),
    "train": ("opscope.commands.train", "train a latency predictor on measurements"),
    "evaluate": ("opscope.commands.evaluate", "evaluate a predictor on held-out splits"),
    "predict": ("opscope.commands.predict", "predict operator latencies of a model"),
    "tune": ("opscope.commands.tune", "predictor-guided schedule search for one operator"),
    "compare": ("opscope.commands.compare", "analytical vs measured vs predicted report"),
    "bundle": ("opscope.commands.bundle", "compile an offline measurement bundle for a device"),
    "import-results": ("opscope.commands.import_results", "import a bundle's results.json into a store"),
    "corun": ("opscope.commands.corun", "co-run independent operators and choose a partition"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opscope", description="DNN operator profiling on TVM")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            p.set_defaults(_missing=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    # torch.export and TVM's frontends emit deprecation chatter that says nothing to a user.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    if getattr(args, "_missing", False):
        print(f"opscope {args.command}: not available in this build", file=sys.stderr)
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except OpscopeError as exc:
        print(f"opscope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"opscope {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
