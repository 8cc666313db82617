"""``thrifty eval`` additions of issue #16: honest ceilings beside the oracle, and peers side by side
with a paired bootstrap interval of each difference (:mod:`thrifty.offline.ceilings`, :mod:`thrifty.offline.peers`)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_arguments", "extras", "print_extras"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ceilings and peers")
    g.add_argument(
        "--peers",
        action="store_true",
        help="also evaluate kNN-50 (router:knn k=50) and FrugalGPT, and print each policy's paired bootstrap difference from them and the best single model",
    )
    g.add_argument(
        "--label-reliability",
        type=float,
        metavar="R",
        help="share of label variance that is signal (e.g. a replicate correlation), for the de-noised oracle (default: from a replicate pair in the table, if any)",
    )
    g.add_argument("--ceiling-tiers", type=int, default=3, metavar="L", help="tiers of the perfect-scorer cascade ceiling (1-3, default 3)")


def extras(args: argparse.Namespace, table: Any, reports: list, evaluate_peer) -> dict[str, Any]:
    """The ceilings of ``table`` and, with ``--peers``, the paired comparisons (``evaluate_peer(name, options)`` → report)."""
    from thrifty.errors import ConfigError
    from thrifty.offline.ceilings import ceilings

    if args.label_reliability is not None and not 0 < args.label_reliability <= 1:
        raise ConfigError(
            f"label reliability must be in (0, 1], got {args.label_reliability}",
            key="--label-reliability",
            fix="pass e.g. 0.65 (the per-prompt correlation of two runs of one model)",
        )
    if not 1 <= args.ceiling_tiers <= 3:
        raise ConfigError("the ceiling cascade has 1 to 3 tiers", key="--ceiling-tiers", fix="pass 1, 2 or 3")
    r0 = reports[0]
    b = r0.best_single
    out: dict[str, Any] = {"ceilings": ceilings(r0.table, args.ceiling_tiers, args.label_reliability).to_json(b.cost, b.quality)}
    if args.peers:
        from thrifty.offline.peers import PEERS, compare

        peers = [evaluate_peer(name, opts) for name, opts in PEERS]
        out["peers"] = {
            p.policy: {k: p.metrics[k] for k in ("quality_at_best_single_cost", "savings_at_parity", "oracle_gap_closed")} for p in peers
        }
        out["paired"] = compare(reports, peers, max(args.bootstrap, 50), args.seed)
    return out


def _f(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "—"
    return f"{100 * x:+.1f}%" if pct else f"{x:+.4f}"


def print_extras(console: Any, reports: list, extra: dict[str, Any]) -> None:
    from rich.table import Table

    c = extra["ceilings"]
    pc, dn = c["perfect_scorer_cascade"], c["denoised_oracle"]
    line = (
        f"ceilings: perfect-scorer cascade (≤{pc['max_tiers']} tiers) {pc['quality_at_best_single_cost']:.4f} at the best single cost, "
        f"{100 * (pc['savings_at_parity'] or 0):.1f}% savings at parity"
    )
    if dn:
        line += (
            f"; de-noised oracle (reliability {dn['reliability']:.2f}, {dn['source']}) {dn['quality_at_best_single_cost']:.4f}, "
            f"{100 * (dn['savings_at_parity'] or 0):.1f}% savings"
        )
    console.print(line)
    for r in reports:
        corr = r.metrics.get("oof_pred_corr")
        if corr is not None:
            console.print(f"{r.policy}: out-of-fold prediction–label correlation {corr:.3f} (mean over models)")
    if "paired" not in extra:
        return
    t = Table(title="paired differences, policy − peer (95% bootstrap intervals over prompts)")
    for col in ("policy", "peer", "quality @ best cost", "savings at parity", "gap closed"):
        t.add_column(col)
    for pol, row in extra["paired"].items():
        for peer, d in row.items():
            cells = []
            for k, pct in (("quality_at_best_single_cost", False), ("savings_at_parity", True), ("oracle_gap_closed", True)):
                v = d[k]
                cells.append(
                    "—" if v["diff"] is None else f"{_f(v['diff'], pct)} [{_f(v['ci95'][0], pct)}, {_f(v['ci95'][1], pct)}] {v['verdict']}"
                )
            t.add_row(pol, peer, *cells)
    console.print(t)
