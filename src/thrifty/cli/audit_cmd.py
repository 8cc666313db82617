"""``thrifty audit report [--profile P] [--since T] [--json]``: what the gateway's sampled audits say.

Per profile and per tier: audited n, the share of served answers judged at least as good as the
reference (95% Wilson interval), the estimated saving against always calling the reference (95%
bootstrap interval), audit spend as a share of serving spend, and the drift between the first and the
last window (:mod:`thrifty.calibration.audit_report`). The log store is found like ``thrifty logs``'s:
``--store URL`` (SQLite path or ``postgresql://…``), ``--db FILE``, else ``[server] store``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import datetime, timezone
from typing import Any

from thrifty.cli.logs_cmd import _store, add_store_args

__all__ = ["register", "parse_since"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: unix seconds (``1764633600``), an ISO date/time (``2026-12-01``,
    ``2026-12-01T08:00``; UTC unless it says otherwise) or an age (``90m``, ``24h``, ``7d``)."""
    from thrifty.errors import ConfigError

    s = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", s)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(s)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        raise ConfigError(
            f"cannot read the time {text!r}",
            key="--since",
            fix="pass unix seconds, an ISO date such as 2026-12-01 (UTC), or an age such as 24h or 7d",
        ) from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "audit",
        help="the gateway's sampled audits: quality and savings with error bars",
        description="Report what the sampled audits ([profiles.NAME.audit]) found in the gateway's log.",
    )
    asub = p.add_subparsers(dest="audit_command", metavar="COMMAND")
    r = asub.add_parser("report", help="per profile and tier: audited n, share at least as good as the reference, saving, spend, drift")
    add_store_args(r)
    r.add_argument("--profile", help="only this profile")
    r.add_argument("--since", help="only requests since: unix seconds, an ISO date (UTC) or an age such as 24h / 7d")
    r.add_argument("--windows", type=int, default=5, help="drift: compare the first and last of this many equal-count windows (default 5)")
    r.add_argument("--json", action="store_true", help="the report as one JSON object on stdout")
    r.set_defaults(func=run_report)

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def _pct(stat: dict[str, Any], key: str) -> str:
    v = stat.get(key)
    if v is None:
        return "-"
    return f"{100 * v:.1f}% [{100 * stat['low']:.1f}, {100 * stat['high']:.1f}]" if stat.get("low") is not None else f"{100 * v:.1f}%"


def run_report(args: argparse.Namespace) -> int:
    from thrifty.calibration.audit_report import audit_report
    from thrifty.errors import ConfigError

    if args.windows < 2:
        raise ConfigError(
            f"drift needs at least 2 windows, got {args.windows}", key="--windows", fix="pass --windows 2 or more (default 5)"
        )
    since = parse_since(args.since) if args.since else None
    store = _store(args)
    try:
        report = audit_report(store, args.profile, since, windows=args.windows)
    finally:
        store.close()
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    if not report["profiles"]:
        print(
            "no audits"
            + (f" for profile {args.profile!r}" if args.profile else "")
            + " in the log"
            + (" since then" if since else "")
            + "; configure [profiles.NAME.audit] and serve some requests"
        )
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for name, p in report["profiles"].items():
        st = p["status"]
        share = p["audit_spend_share"]
        d = p["drift"]
        console.print(
            f"[bold]{name}[/bold]: {p['audited']} audited of {p['requests']} requests "
            f"(pending {st.get('pending', 0)}, error {st.get('error', 0)}, skipped {st.get('skipped', 0)}); reference {p['reference']}"
        )
        console.print(f"  served answers at least as good as the reference: {_pct(p['served'], 'share')}")
        console.print(f"  saving against always calling the reference: {_pct(p['saving'], 'saving')}")
        console.print(
            f"  audit spend ${p['audit_cost_usd']:.6f} = "
            + ("-" if share is None else f"{100 * share:.1f}%")
            + f" of serving spend ${p['serving_cost_usd']:.6f}"
        )
        if d["difference"] is not None:
            console.print(
                f"  drift (window {d['windows']} − window 1, served share): {100 * d['difference']:+.1f} points "
                f"[{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"
            )
        t = Table()
        for col in (
            "tier",
            "n",
            "≥ reference (95% CI)",
            "mean quality",
            "mean cost $",
            "served",
            "reused",
            "errors",
            "saving if always this tier",
        ):
            t.add_column(col, overflow="fold")
        for tier, x in p["tiers"].items():
            t.add_row(
                tier,
                str(x["n"]),
                _pct(x["at_least_as_good"], "share"),
                "-" if x["mean_quality"] is None else f"{x['mean_quality']:.3f}",
                "-" if x["mean_cost_usd"] is None else f"{x['mean_cost_usd']:.8f}",
                str(x["served"]),
                str(x["reused"]),
                str(x["errors"]),
                _pct(x["saving_if_always"], "saving"),
            )
        console.print(t)
    return 0
