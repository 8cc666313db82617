"""``thrifty artefacts list|show|rollback``: the learning loop's artefact history.

Every refit of a profile with ``[profiles.NAME.refit]`` leaves a row: ``serving`` (swapped in, with
its artefact directory), ``refused`` (validated worse, or crashed) or ``rolled_back``; each with the
evidence it was decided on (:mod:`thrifty.store.artefacts`). ``rollback`` marks the artefact in
service rolled back and publishes the one below it (or the config's policy) in the store's version
row: every running replica on the store serves it within ``server.artefact_poll_s`` (and from the
next start).
"""

from __future__ import annotations

import argparse
import json
import time

from thrifty.cli.logs_cmd import add_store_args

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "artefacts",
        help="the learning loop's artefact history: list, show, rollback",
        description="List, show and roll back the artefacts the gateway's learning loop swapped in or refused.",
    )
    add_store_args(p)
    asub = p.add_subparsers(dest="artefacts_command", metavar="COMMAND")
    ls = asub.add_parser("list", help="every refit, newest first")
    ls.add_argument("--profile", metavar="P")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    sh = asub.add_parser("show", help="one version with its evidence")
    sh.add_argument("profile")
    sh.add_argument("version", type=int)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=run_show)
    rb = asub.add_parser(
        "rollback", help="stop serving the profile's current artefact: every replica serves the previous one (or the config's policy)"
    )
    rb.add_argument("profile")
    rb.set_defaults(func=run_rollback)

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def _store(args: argparse.Namespace):
    from thrifty.cli.logs_cmd import _store as log_store

    return log_store(args)


def _line(r) -> str:
    cv = r.evidence.get("evidence", {}) if isinstance(r.evidence.get("evidence"), dict) else {}
    cand = cv.get("candidate_cv") or {}
    serv = cv.get("serving_cv") or {}
    what = cv.get("rule") or cv.get("error") or ""
    nums = (
        f"cv cand q={cand.get('quality', float('nan')):.3f} ${cand.get('cost_usd', float('nan')):.3g} share={cand.get('good_share', float('nan')):.3f}"
        f" | serving q={serv.get('quality', float('nan')):.3f} ${serv.get('cost_usd', float('nan')):.3g} share={serv.get('good_share', float('nan')):.3f}"
        if cand and serv
        else ""
    )
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
    return f"{r.profile:<12} v{r.version:<4} {r.status:<11} {when}  {nums}  {what}"


def run_list(args: argparse.Namespace) -> int:
    from thrifty.store import artefacts

    store = _store(args)
    try:
        rows = store.run_in_transaction(artefacts.history, args.profile)
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return 0
    if not rows:
        print("no refits recorded yet")
    for r in rows:
        print(_line(r))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from thrifty.errors import ConfigError
    from thrifty.store import artefacts

    store = _store(args)
    try:
        row = store.run_in_transaction(artefacts.get, args.profile, args.version)
    finally:
        store.close()
    if row is None:
        raise ConfigError(f"no version {args.version} of profile {args.profile!r}", key="version", fix="see `thrifty artefacts list`")
    print(json.dumps(row.to_json(), indent=2) if args.json else _line(row) + "\n" + json.dumps(row.evidence, indent=2))
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from thrifty.errors import ConfigError
    from thrifty.store import artefacts

    store = _store(args)
    try:
        old, now = store.run_in_transaction(artefacts.rollback_and_publish, args.profile, source="cli rollback")
    finally:
        store.close()
    if old is None:
        raise ConfigError(
            f"profile {args.profile!r} has no learned artefact in service",
            key="profile",
            fix="see `thrifty artefacts list`; the config's policy is already serving",
        )
    after = f"v{now.version} ({now.path})" if now is not None else "the policy in the config file"
    print(f"rolled back {args.profile} v{old.version}; it now serves {after} (running replicas within server.artefact_poll_s)")
    return 0
