"""``thrifty`` entry point: ``main(argv) -> exit code``. Errors map to exit codes here, once.

Each command group is a module in ``COMMANDS`` exposing ``register(subparsers)``, which adds its
sub-commands and sets ``func`` (``args -> int``) on each. Modules are imported when the parser is
built, so a command module must keep its own heavy imports inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from thrifty import __version__
from thrifty.errors import ThriftyError, exit_code_for

__all__ = ["main", "entry", "COMMANDS"]

COMMANDS: list[str] = [
    "thrifty.cli.eval_cmd",
    "thrifty.cli.fit_cmd",
    "thrifty.cli.collect_cmd",
    "thrifty.cli.label_cmd",
    "thrifty.cli.student_cmd",
    "thrifty.cli.ask_cmd",
    "thrifty.cli.serve_cmd",
    "thrifty.cli.logs_cmd",
    "thrifty.cli.audit_cmd",
    "thrifty.cli.store_cmd",
    "thrifty.cli.artefacts_cmd",
    "thrifty.cli.simulate_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thrifty", description="Answer each LLM request with the cheapest model that is good enough.")
    parser.add_argument("--version", action="version", version=f"thrifty {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ThriftyError as exc:
        print(f"thrifty: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("thrifty: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())
