"""``thrifty logs list|show ID|label ID Q|export --out DIR``: read (and label) the gateway's SQLite request log.

The log lives at ``<data dir>/logs.sqlite3`` (``server.data_dir`` of the config, ``$THRIFTY_DATA_DIR``
or the user data directory); ``--db FILE`` points at another one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["add_store_args", "register"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "logs",
        help="list, show and export the gateway's request log",
        description="Read the gateway's request log; export it as a routing table for thrifty eval / thrifty fit.",
    )
    add_store_args(p)
    lsub = p.add_subparsers(dest="logs_command", metavar="COMMAND")
    ls = lsub.add_parser("list", help="newest requests first")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--json", action="store_true", help="one JSON array on stdout")
    ls.set_defaults(func=run_list)
    sh = lsub.add_parser("show", help="one request with every tier's answer, score, cost and decision")
    sh.add_argument("id")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=run_show)
    lb = lsub.add_parser("label", help="store a quality label in [0, 1] for a request's answer (or one tier's with --step)")
    lb.add_argument("id")
    lb.add_argument("quality", type=float, help="quality of the answer in [0, 1] (1 = good)")
    lb.add_argument("--step", type=int, metavar="IDX", help="label the answer of step IDX (see logs show) instead of the returned one")
    lb.set_defaults(func=run_label)
    ex = lsub.add_parser("export", help="write the log as a routing table (outcomes/prompts/models)")
    ex.add_argument("--out", required=True, metavar="DIR")
    ex.add_argument(
        "--quality",
        choices=["auto", "label"],
        default="auto",
        help="auto: label, else the live score; label: labelled answers only (default auto)",
    )
    ex.add_argument("--since", type=float, metavar="UNIX_TIME", help="only requests created at or after this time")
    ex.set_defaults(func=run_export)

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def add_store_args(p: argparse.ArgumentParser, *, config_help: str = "thrifty.toml (locates the data dir)") -> None:
    """``--config``, ``--db`` and ``--store``: where a command finds the log store (see :func:`_store`)."""
    p.add_argument("--config", metavar="FILE", help=config_help)
    p.add_argument("--db", metavar="FILE", help="the log database (default server.store, else <data dir>/logs.sqlite3)")
    p.add_argument("--store", metavar="URL", help="the log store: a SQLite path or postgresql://user@host/db (password from $PGPASSWORD)")


def _store(args: argparse.Namespace):
    """The log store of ``--store`` URL, else ``--db`` FILE, else ``[server] store`` of ``--config``."""
    from thrifty.config.settings import load_settings
    from thrifty.errors import ConfigError
    from thrifty.store import LogStore
    from thrifty.store.backend import parse_target

    target = getattr(args, "store", None) or getattr(args, "db", None)
    flag = "--store" if getattr(args, "store", None) else "--db"
    password_env = None
    if not target:
        server = load_settings(getattr(args, "config", None)).server
        target, password_env, flag = server.resolved_store(), server.store_password_env, "server.store"
    try:
        kind, where = parse_target(str(target))
        if kind == "postgresql":
            return LogStore(where, password_env=password_env)
    except ConfigError as e:  # the store layer says server.store; name the flag the user actually typed
        if e.key != "server.store" or flag == "server.store":
            raise
        raise ConfigError(str(e).removeprefix(f"{e.key}: ").split(" — fix: ")[0], key=flag, fix=e.fix) from None
    path = Path(where)
    if not path.exists():
        raise ConfigError(
            f"no request log at {path}", key=flag, fix="start `thrifty serve` and send a request, or pass --db FILE / --store URL"
        )
    return LogStore(path)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def run_list(args: argparse.Namespace) -> int:
    rows = _store(args).list(limit=args.limit)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"last {len(rows)} requests")
    for col in ("id", "time", "key", "model", "answered by", "tiers", "cost $", "latency s", "status", "cache", "prompt"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(
            r["id"],
            _when(r["created"]),
            r["key_name"] or "-",
            r["model_requested"],
            r["final_model"] or "-",
            " → ".join(r["tiers_tried"]),
            f"{r['cost_usd']:.6f}",
            f"{(r['latency_s'] or 0):.2f}",
            str(r["status"]),
            r.get("cache") or "-",
            (r["prompt"] or "")[:60],
        )
    Console().print(t)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from thrifty.errors import RequestError

    row = _store(args).get(args.id)
    if row is None:
        raise RequestError(f"no request {args.id!r} in the log", param="id")
    if args.json:
        print(json.dumps(row, ensure_ascii=False))
        return 0
    print(f"{row['id']}  {_when(row['created'])}  status {row['status']}  key {row['key_name'] or '-'}  model {row['model_requested']}")
    cache = f"  cache {row['cache']}" if row.get("cache") else ""
    print(
        f"answered by {row['final_model'] or '-'}  tiers {' → '.join(row['tiers_tried'])}  cost ${row['cost_usd']:.6f}  latency {(row['latency_s'] or 0):.2f}s{cache}"
    )
    if row["error"]:
        print(f"error: {row['error']}")
    print(f"prompt: {row['prompt']}")
    for s in row["steps"]:
        score = "-" if s["score"] is None else f"{s['score']:.3f}"
        th = "" if s["threshold"] is None else f" (threshold {s['threshold']:.3f})"
        step_cache = f"  cache {s['cache']}" if s.get("cache") else ""
        print(
            f"  [{s['idx']}] {s['model']}: {s['decision']}  score {score}{th}  ${s['cost_usd']:.6f}  {(s['latency_s'] or 0):.2f}s{step_cache}"
        )
        if s["error"]:
            print(f"      error: {s['error']}")
        if s["answer"]:
            print("      " + s["answer"].strip().replace("\n", "\n      ")[:800])
    return 0


def run_label(args: argparse.Namespace) -> int:
    from thrifty.errors import RequestError

    if not 0.0 <= args.quality <= 1.0:
        raise RequestError(f"quality must be in [0, 1], got {args.quality}", param="quality")
    what = f"step {args.step} of request {args.id!r}" if args.step is not None else f"request {args.id!r}"
    if not _store(args).set_label(args.id, args.quality, idx=args.step):
        raise RequestError(f"no {what} in the log", param="id")
    print(f"labelled {what}: quality {args.quality:g}", file=sys.stderr)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from thrifty.store.export import export_table

    summary = export_table(_store(args), args.out, quality=args.quality, since=args.since)
    print(
        f"wrote {summary['out_dir']}: {summary['prompts']} prompts, {summary['outcomes']} answers "
        f"({summary['labelled']} labelled, {summary['scored']} live-scored), {summary['pending']} pending labels",
        file=sys.stderr,
    )
    print(f"next: thrifty eval --data {summary['out_dir']} --policy oracle", file=sys.stderr)
    return 0
