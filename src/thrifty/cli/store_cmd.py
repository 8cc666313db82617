"""``thrifty store migrate|check|publish``: move the request log between SQLite and PostgreSQL, and
tell every replica sharing a store to reload an artefact.

``migrate --from sqlite:///logs.sqlite3 --to postgresql://thrifty@db/thrifty`` (or back) copies
every table, idempotent and resumable, and verifies counts and checksums
(:mod:`thrifty.store.transfer`). Passwords come from ``$PGPASSWORD`` (or ``--password-env VAR``),
never from the command line.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "store",
        help="copy the request log between SQLite and PostgreSQL; publish artefact versions",
        description="Manage the log store shared by gateway replicas.",
    )
    ssub = p.add_subparsers(dest="store_command", metavar="COMMAND")
    m = ssub.add_parser("migrate", help="copy a store to another (SQLite ⇄ PostgreSQL): idempotent, resumable, verified")
    m.add_argument("--from", dest="source", required=True, metavar="URL", help="sqlite:///path, a path, or postgresql://user@host/db")
    m.add_argument("--to", dest="target", required=True, metavar="URL", help="sqlite:///path, a path, or postgresql://user@host/db")
    m.add_argument("--batch", type=int, default=5000, help="rows per transaction (default 5000)")
    m.add_argument("--password-env", metavar="VAR", help="env var with the PostgreSQL password (default $PGPASSWORD)")
    m.set_defaults(func=run_migrate)
    c = ssub.add_parser("check", help="open a store (migrating its schema) and print its tables' row counts and checksums")
    c.add_argument("--store", required=True, metavar="URL")
    c.add_argument("--password-env", metavar="VAR")
    c.set_defaults(func=run_check)
    pub = ssub.add_parser("publish", help="record a profile's artefact as a new version: every replica on the store reloads")
    pub.add_argument("--store", required=True, metavar="URL")
    pub.add_argument("--profile", required=True)
    pub.add_argument("--artefact", metavar="PATH", help="the artefact file (its digest is recorded); omitted: force a reload everywhere")
    pub.add_argument("--password-env", metavar="VAR")
    pub.set_defaults(func=run_publish)

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def _open(url: str, password_env: str | None, *, must_exist: bool, flag: str):
    from pathlib import Path

    from thrifty.errors import ConfigError
    from thrifty.store import LogStore
    from thrifty.store.backend import parse_target

    kind, where = parse_target(url)
    if kind == "sqlite" and must_exist and not Path(where).exists():
        raise ConfigError(
            f"no request log at {where}", key=flag, fix="pass the SQLite file the gateway wrote (sqlite:///path/logs.sqlite3)"
        )
    try:
        return LogStore(url, password_env=password_env)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("server.store: ", f"{flag}: ", 1)) from None  # name the flag the user typed


def run_migrate(args: argparse.Namespace) -> int:
    import time

    from thrifty.store.transfer import copy_store

    src = _open(args.source, args.password_env, must_exist=True, flag="--from")
    dst = _open(args.target, args.password_env, must_exist=False, flag="--to")
    t0 = time.perf_counter()
    last = [0.0]

    def progress(table: str, n: int) -> None:
        if time.perf_counter() - last[0] > 2.0:
            last[0] = time.perf_counter()
            print(f"  {table}: {n} rows copied", file=sys.stderr, flush=True)

    try:
        report = copy_store(src, dst, batch=args.batch, progress=progress)
    finally:
        src.close()
        dst.close()
    for name, t in report.tables.items():
        print(f"{name:24s} {t['rows']:>10d} rows  {t['copied']:>10d} copied now  checksum {t['checksum'][:16]}")
    print(
        f"verified: {report.rows} rows in {len(report.tables)} tables match ({report.copied} copied in {time.perf_counter() - t0:.1f}s)",
        file=sys.stderr,
    )
    return 0


def run_check(args: argparse.Namespace) -> int:
    from thrifty.store.transfer import SKIPPED_TABLES, list_tables, table_summary

    store = _open(args.store, args.password_env, must_exist=True, flag="--store")
    try:
        for table in store.read(list_tables, store.dialect):
            if table not in SKIPPED_TABLES:
                n, checksum = table_summary(store, table)
                print(f"{table:24s} {n:>10d} rows  checksum {checksum[:16]}")
    finally:
        store.close()
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from thrifty.store.versions import artefact_digest, bump_in, publish_in

    store = _open(args.store, args.password_env, must_exist=True, flag="--store")
    try:
        if args.artefact:
            digest = artefact_digest(args.artefact)
            version = store.run_in_transaction(publish_in, args.profile, digest, path=args.artefact, source="cli")
        else:
            version = store.run_in_transaction(bump_in, args.profile, source="cli")
    finally:
        store.close()
    print(f"profile {args.profile}: artefact version {version}; replicas reload within server.artefact_poll_s", file=sys.stderr)
    return 0
