"""The ``opscope`` command: a thin shell over functions callable from Python.

Each sub-command lives in ``opscope/commands/<name>.py`` and provides ``add_arguments(parser)`` and
``run(args) -> int``.  Library code never parses argv.  User errors (``OpscopeError``), and the
operating-system, SQLite, JSON and text-decoding errors that bad files cause at the edges, are
printed on one line, ``opscope <command>: <what> (<file, field or value>): <what to do>``, exit
status 2; ``opscope --debug <command>`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sqlite3
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
    "reread-knobs": ("opscope.commands.reread_knobs", "read a store's schedule knobs again from the stored traces"),
    "compile-features": ("opscope.commands.compile_features",
                         "compile a dataset's schedules and write their kernels' counts beside it"),
    "train": ("opscope.commands.train", "train a latency predictor on measurements"),
    "evaluate": ("opscope.commands.evaluate", "evaluate a predictor on held-out splits"),
    "predict": ("opscope.commands.predict", "predict operator latencies of a model"),
    "tune": ("opscope.commands.tune", "predictor-guided schedule search for one operator"),
    "adapt": ("opscope.commands.adapt", "adapt a predictor trained elsewhere to this machine (probe + K measurements)"),
    "compare": ("opscope.commands.compare", "analytical vs measured vs predicted report"),
    "bundle": ("opscope.commands.bundle", "compile an offline measurement bundle for a device"),
    "import-results": ("opscope.commands.import_results", "import a bundle's results.json into a store"),
    "corun": ("opscope.commands.corun", "co-run independent operators and choose a partition"),
}


def build_parser() -> argparse.ArgumentParser:
    from opscope import __version__

    parser = argparse.ArgumentParser(prog="opscope", description="DNN operator profiling on TVM")
    parser.add_argument("--version", action="version", version=f"opscope {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
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
    except KeyboardInterrupt:
        print(f"opscope {args.command}: interrupted", file=sys.stderr)
        return 130
    except (OpscopeError, OSError, sqlite3.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        if args.debug:
            raise
        print(f"opscope {args.command}: {one_line(exc)}", file=sys.stderr)
        return 2


def run_script(main, name: str) -> None:
    """Exit with ``main()``'s status; a user error (``OpscopeError``) ends it on one line, ``<name>:
    <what>``, instead of a traceback (the benchmark scripts' entry point)."""
    try:
        code = main()
    except OpscopeError as exc:
        sys.exit(f"{name}: {one_line(exc)}")
    sys.exit(code)


def one_line(exc: BaseException) -> str:
    """The message of an error at the edges, on one line, naming the file and what to do."""
    if isinstance(exc, OpscopeError):
        text = str(exc)
    elif isinstance(exc, UnicodeDecodeError):
        text = (f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}): give a text file "
                "(--debug shows which one)")
    elif isinstance(exc, json.JSONDecodeError):
        text = f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}): check the file"
    elif isinstance(exc, sqlite3.Error):
        text = f"SQLite error ({exc}): the store may be damaged; restore it from a copy or use another --store"
    elif isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else "?"
        text = f"{exc.strerror or exc} ({where}): check the path and its permissions"
    else:  # pragma: no cover - main() catches only the types above
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__

if __name__ == "__main__":
    sys.exit(main())
