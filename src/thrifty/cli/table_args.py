"""The routing-table options shared by ``thrifty fit`` and ``thrifty eval``: ``--data``, ``--models``, ``--exclude``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_table_args", "table_folder", "load_pool"]


def add_table_args(p: argparse.ArgumentParser) -> None:
    """Register ``--data`` (folder), ``--models`` (comma list) and ``--exclude`` (regex) on ``p``."""
    p.add_argument("--data", help="routing-table folder (default: the shared AlpacaEval routing data)")
    p.add_argument("--models", help="comma-separated model pool (default: all)")
    p.add_argument("--exclude", metavar="REGEX", help="drop models whose name matches REGEX (e.g. FuseChat)")


def table_folder(args: argparse.Namespace) -> Path:
    """``--data``, or the shared benchmark folder (:func:`thrifty.data.table_io.benchmark_dir`)."""
    from thrifty.data.table_io import benchmark_dir

    return Path(args.data) if args.data else benchmark_dir()


def load_pool(args: argparse.Namespace) -> Any:
    """The routing table of ``--data`` restricted to ``--models`` (all when absent) minus ``--exclude``."""
    from thrifty.cli.collect_cmd import comma_list
    from thrifty.data.table_io import load_table

    return load_table(table_folder(args), models=comma_list(args.models) if args.models else None, exclude=args.exclude)
