"""The live policy of a learning profile: the loop's view of a cascade, putting a policy in service
on a route, and the loop's ``/metrics`` (split from :mod:`thrifty.gateway.learning`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from thrifty.calibration.refit import ServingPolicy
from thrifty.policy.cascade import CascadePolicy
from thrifty.serving.engine import Engine
from thrifty.serving.profiles import tier_price

__all__ = ["serving_from_policy", "install_policy", "learning_metrics"]


def serving_from_policy(policy: Any, version: int = 0, source: str = "config") -> ServingPolicy | None:
    """The loop's view of a live cascade policy (None for a router or hybrid: not learnable here)."""

    if not isinstance(policy, CascadePolicy):
        return None
    return ServingPolicy(version, policy.tiers, policy.thresholds, policy.scorer, policy.select, source)


def install_policy(rt: Any, model_id: str, policy: Any) -> None:
    """Replace the engine of ``model_id``'s route (and of every id aliasing that route) by one that
    runs ``policy`` over the same tier providers. Call on the event loop."""

    route = rt.routes[model_id]
    old = route.engine
    by_name = dict(zip(old.tiers, old.providers))
    prices = dict(zip(old.tiers, route.tier_prices))
    caps = {n: p.max_tokens for n, p in rt.settings.providers.items()}
    for t in policy.tiers:
        if t not in by_name:  # a tier the old policy skipped: the bare provider
            by_name[t] = rt.providers[t]
            prices[t] = tier_price(rt.providers[t], caps.get(t, 512))
    engine = Engine(policy, by_name, deadline_s=old.deadline_s, max_retries=old.max_retries, backoff_s=old.backoff_s, name=old.name)
    new = replace(route, engine=engine, tier_prices=tuple(prices[t] for t in policy.tiers))
    for mid, r in list(rt.routes.items()):
        if r is route:
            rt.routes[mid] = new


def learning_metrics(rt: Any) -> dict[str, Any]:
    try:
        from prometheus_client import Counter, Gauge
    except ImportError:  # pragma: no cover - comes with the serve extra
        return {}
    reg = rt.metrics.registry
    return {
        "events": Counter(
            "thrifty_learning_events", "Learning-loop events (swap, refuse, refit_failed, guardrail)", ["profile", "kind"], registry=reg
        ),
        "offset": Gauge(
            "thrifty_guardrail_offset", "Guardrail offset on the thresholds in service", ["profile"], registry=reg, multiprocess_mode="max"
        ),
        "version": Gauge(
            "thrifty_artefact_version", "Loop version in service (0: configured policy)", ["profile"], registry=reg, multiprocess_mode="max"
        ),
    }
