"""``thrifty fit``: fit a cascade, router or hybrid on a routing table and write a versioned artefact.

``--policy cascade`` (default) fits the cascade (scorers, models, order, thresholds); ``router`` a
query-only quality predictor and one λ per budget; ``hybrid`` both, jointly. The policy is fitted on
*all* prompts of the table (hyperparameters by cross-validation inside them); the artefact
(:mod:`thrifty.serving.artefact`) stores the selected point for ``--budget`` (highest training
quality at mean cost ≤ B) or ``--target-quality`` (cheapest at quality ≥ Q; default: the best
single model's cost as budget) and the whole training front, so the gateway can switch budgets
without refitting. Router and hybrid training numbers are out-of-fold (router predictions) /
exact replays of the live rule. Held-out numbers come from ``thrifty eval``, not from here.
"""

from __future__ import annotations

import argparse

from thrifty.cli.logs_cmd import add_store_args
from thrifty.cli.table_args import add_table_args, load_pool
from thrifty.errors import ConfigError

__all__ = ["register", "run"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "fit",
        help="fit a cascade, router or hybrid and write an artefact",
        description="Fit the budget-optimal cascade, router or hybrid on a routing table; write a versioned artefact.",
    )
    p.add_argument("--policy", default="cascade", choices=("cascade", "router", "hybrid"), help="what to fit (default cascade)")
    add_table_args(p)
    p.add_argument(
        "--from-logs",
        action="store_true",
        help="fit on the gateway's audited requests (the audits tables of the log store) instead of --data",
    )
    p.add_argument("--profile", metavar="P", help="with --from-logs: the profile whose audits to fit on (required there)")
    add_store_args(p, config_help="with --from-logs: thrifty.toml (locates the data dir)")
    p.add_argument("--max-tiers", type=int, default=3, metavar="L", help="most tiers in a cascade, 1–3 (default 3)")
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--budget", type=float, metavar="USD", help="target mean cost per query")
    goal.add_argument("--target-quality", type=float, metavar="Q", help="target mean quality (cheapest cascade reaching it)")
    p.add_argument(
        "--embed",
        default="none",
        choices=("full", "query", "none"),
        help="MiniLM embedding inputs of the scorers: full (query+answer), query, none (cheap features only; default — measured best held-out on AlpacaEval)",
    )
    p.add_argument("--heads", default="ridge", help="head kinds to choose from by nested CV: ridge, gbm, ridge,gbm (default ridge)")
    p.add_argument("--max-candidates", type=int, default=8, help="models the optimiser searches over (0 = whole pool; default 8)")
    p.add_argument(
        "--variant",
        choices=("knn", "mf", "linear", "gbm", "ensemble", "irt", "auto"),
        help="router / hybrid: the router's head (default mf)",
    )
    p.add_argument(
        "--embedder",
        default="minilm",
        metavar="NAME",
        help="router / hybrid: query embedder — minilm (default), static (distilled lookup table, no torch at run time) or module:Factory",
    )
    p.add_argument(
        "--opt", action="append", default=[], metavar="KEY=VALUE", help="further option of the policy (as in thrifty eval), repeatable"
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="embed with MiniLM on a Ray cluster (HOST:PORT of its head, or auto; "
        "pip install 'thrifty[ray]'); vectors land in the local embedding cache, the fit runs here",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="artefact directory to write")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON to stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.max_tiers <= 3:
        raise ConfigError(f"--max-tiers {args.max_tiers} is out of range", key="--max-tiers", fix="use 1, 2 or 3")
    if not args.ray:
        return _fit(args)
    from thrifty.calibration.executors import make_executor
    from thrifty.scoring.embedding import get_embedder

    embedder = get_embedder()
    embedder.executor = make_executor(args.ray)  # joins the cluster now: a bad --ray fails before any work
    try:
        return _fit(args)
    finally:
        embedder.executor.close()
        embedder.executor = None


def _fit(args: argparse.Namespace) -> int:
    from thrifty.cli.eval_options import parse_options
    from thrifty.offline.evaluate import default_knobs

    table = audited_pool(args) if args.from_logs else load_pool(args)
    knobs = sorted(set(float(k) for k in default_knobs(table)) | ({args.budget} if args.budget else set()))
    opts = parse_options(args.opt)
    from thrifty.cli.fit_kinds import fit_and_write

    return fit_and_write(args, table, knobs, opts)


def audited_pool(args: argparse.Namespace):
    """``--from-logs``: the audited rows of the log store as a routing table (``store.audits``)."""
    from thrifty.cli.logs_cmd import _store

    if not args.profile:
        raise ConfigError("--from-logs needs the profile whose audits to fit on", key="--profile", fix="add --profile NAME")
    try:
        from thrifty.store.audits import audited_table
    except ImportError:
        raise ConfigError(
            "this thrifty has no audit tables yet", key="--from-logs", fix="fit on an exported table: thrifty logs export"
        ) from None
    store = _store(args)
    try:
        table = audited_table(store, args.profile)
    finally:
        store.close()
    if table.n_prompts == 0:
        raise ConfigError(
            f"no audited requests of profile {args.profile!r} in the log",
            key="--profile",
            fix="enable [profiles.NAME.audit] and serve some traffic first",
        )
    return table
