"""Prometheus metrics of the sampled audits, on the gateway's own registry (:mod:`thrifty.gateway.metrics`).

Counters (this process's events):

- ``thrifty_audits_total{profile,outcome}``  outcome: ``queued`` | ``done`` | ``error`` | ``dropped_queue_full``
  | ``skipped_budget`` | ``requeued``
- ``thrifty_audit_cost_usd_total{profile}``  USD the audits paid (tier calls + judge), apart from serving

Gauges (the figures of ``thrifty audit report`` over all audits in the log, refreshed after audits
complete; ``bound`` is ``estimate`` | ``low`` | ``high`` of the 95% interval):

- ``thrifty_audit_audited{profile}``                          done audits
- ``thrifty_audit_served_at_least_as_good{profile,bound}``    share of served answers ≥ reference
- ``thrifty_audit_tier_at_least_as_good{profile,tier,bound}`` per tier
- ``thrifty_audit_tier_audited{profile,tier}``                judged answers per tier
- ``thrifty_audit_saving{profile,bound}``                     saving against always calling the reference
- ``thrifty_audit_spend_share{profile}``                      audit spend / serving spend
- ``thrifty_audit_drift{profile,bound}``                      last window's served share − first window's
- ``thrifty_audit_queue_depth``                               audits waiting in this process
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["AuditMetrics"]


class AuditMetrics:
    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge

        r = registry
        self.events = Counter("thrifty_audits", "Audits by outcome", ["profile", "outcome"], registry=r)
        self.cost = Counter("thrifty_audit_cost_usd", "USD paid by audits (apart from serving)", ["profile"], registry=r)
        # every worker computes these from the same shared log: "max" reports the freshest view
        gauge = dict(registry=r, multiprocess_mode="max")
        self.audited = Gauge("thrifty_audit_audited", "Done audits", ["profile"], **gauge)
        self.served = Gauge(
            "thrifty_audit_served_at_least_as_good",
            "Share of served answers judged at least as good as the reference",
            ["profile", "bound"],
            **gauge,
        )
        self.tier = Gauge(
            "thrifty_audit_tier_at_least_as_good",
            "Share of a tier's answers judged at least as good as the reference",
            ["profile", "tier", "bound"],
            **gauge,
        )
        self.tier_n = Gauge("thrifty_audit_tier_audited", "Judged answers per tier", ["profile", "tier"], **gauge)
        self.saving = Gauge("thrifty_audit_saving", "Estimated saving against always calling the reference", ["profile", "bound"], **gauge)
        self.spend_share = Gauge("thrifty_audit_spend_share", "Audit spend as a share of serving spend", ["profile"], **gauge)
        self.drift = Gauge("thrifty_audit_drift", "Served share: last window minus first window", ["profile", "bound"], **gauge)
        self.queue_depth = Gauge("thrifty_audit_queue_depth", "Audits waiting in this process", registry=r, multiprocess_mode="livesum")

    def count(self, profile: str, outcome: str, n: float = 1) -> None:
        self.events.labels(profile, outcome).inc(n)

    def publish(self, report: Mapping[str, Any]) -> None:
        """Set the gauges from :func:`thrifty.calibration.audit_report.audit_report`'s result."""
        for name, p in report.get("profiles", {}).items():
            self.audited.labels(name).set(p["audited"])
            _bounds(self.served, (name,), p["served"], "share")
            _bounds(self.saving, (name,), p["saving"], "saving")
            _bounds(self.drift, (name,), p["drift"], "difference")
            _set(self.spend_share.labels(name), p["audit_spend_share"])
            for tier, t in p["tiers"].items():
                self.tier_n.labels(name, tier).set(t["n"])
                _bounds(self.tier, (name, tier), t["at_least_as_good"], "share")


def _set(child: Any, value: float | None) -> None:
    child.set(math.nan if value is None else float(value))


def _bounds(gauge: Any, labels: tuple[str, ...], stat: Mapping[str, Any], key: str) -> None:
    _set(gauge.labels(*labels, "estimate"), stat.get(key))
    _set(gauge.labels(*labels, "low"), stat.get("low"))
    _set(gauge.labels(*labels, "high"), stat.get("high"))
