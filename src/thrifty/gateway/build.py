"""Gateway wiring: model ids → routes (engine, prices, budget scope).

``build_routes(settings)`` is called when the app starts (and on an admin reload). Providers,
policies and engines are built by :mod:`thrifty.serving.profiles`; this module only adds what the gateway
needs on top: the route table. Model ids served:

- ``thrifty/<profile>`` for every configured profile, and always ``thrifty/default``
  (what it runs: :func:`thrifty.serving.profiles.default_profile`);
- every provider name (pass-through: a one-tier route straight to that provider).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from thrifty.config.settings import DEFAULT_PROFILE, ProfileSettings, Settings
from thrifty.policy.cascade import CascadePolicy
from thrifty.serving.budget import TierPrice
from thrifty.serving.engine import Engine
from thrifty.serving.profiles import build_profile, build_providers, default_profile, tier_price
from thrifty.types import Policy

__all__ = ["Route", "build_routes"]


@dataclass
class Route:
    """What a model id runs: its engine, the profile (None: pass-through) and its tiers' prices.

    Everything else about a route follows from these (properties below), so it cannot disagree.
    """

    model_id: str
    engine: Any
    profile: ProfileSettings | None
    tier_prices: tuple[TierPrice, ...]

    @property
    def budget_name(self) -> str | None:
        """The profile's name (its budget and log scope); None for pass-through."""
        return self.profile.name if self.profile is not None else None

    @property
    def system(self) -> str | None:
        """The profile's system prompt template, if any."""
        return self.profile.system if self.profile is not None else None

    @property
    def owner(self) -> str:
        """``owned_by`` in ``GET /v1/models``: thrifty for a profile, the provider for pass-through."""
        return "thrifty" if self.profile is not None else self.model_id

    @property
    def vision(self) -> bool:
        """True when some tier of the engine reads images."""
        return any(getattr(p, "vision", False) for p in self.engine.providers)

    @property
    def baseline_price(self) -> tuple[float, float] | None:
        """(in, out) prices of the most expensive tier (by output price, then input)."""
        priced = [(t.price_out or 0.0, t.price_in or 0.0) for t in self.tier_prices]
        if not priced:
            return None
        out, inp = max(priced)
        return inp, out


def build_routes(settings: Settings, *, deadline_s: float | None = None) -> tuple[dict[str, Route], dict[str, Any]]:
    """Model id → Route for every profile and provider; plus the provider objects (to close)."""

    deadline = deadline_s or settings.server.request_timeout_s
    providers: dict[str, Any] = build_providers(settings)
    caps: dict[str, int] = {n: p.max_tokens for n, p in settings.providers.items()}
    routes: dict[str, Route] = {}

    def add_profile(model_id: str, profile: ProfileSettings, pool: dict[str, Any], policy: Any = None) -> None:
        built = build_profile(settings, profile, pool, policy=policy, caps=caps, deadline_s=deadline, engine_name=model_id)
        routes[model_id] = Route(model_id, built.engine, profile, built.prices)

    for name, profile in settings.profiles.items():
        add_profile(f"thrifty/{name}", profile, providers)
    default_id = f"thrifty/{DEFAULT_PROFILE}"
    if default_id not in routes:
        profile, policy, extra = default_profile(settings, max_tokens=256)
        if profile.name != DEFAULT_PROFILE and f"thrifty/{profile.name}" in routes:
            routes[default_id] = routes[f"thrifty/{profile.name}"]
        else:
            for n, p in extra.items():
                providers.setdefault(n, p)
                caps.setdefault(n, 256)
            add_profile(default_id, profile, providers, policy)
    for name, provider in providers.items():
        single = cast(
            Policy, CascadePolicy([name], [], None)
        )  # CascadePolicy.tiers is a tuple; types.Policy declares a mutable Sequence attribute
        engine = Engine(single, {name: provider}, deadline_s=deadline, name=name)
        routes.setdefault(name, Route(name, engine, None, (tier_price(provider, caps.get(name, 512)),)))
    return routes, providers
