"""Turn validated settings into live objects: providers, one Engine per profile, pass-through routes.

``build_routes(settings)`` is called once in the app's lifespan. Model ids served:

- ``thrifty/<profile>`` for every configured profile, and always ``thrifty/default``: the profile
  named ``default`` if configured, else the first profile, else (no profiles at all) the embedded
  local cascade from :func:`thrifty.local.embedded_default`;
- every provider name (pass-through: a one-tier route straight to that provider).
"""

from __future__ import annotations

import contextvars
import importlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping

from thrifty.budget import TierPrice
from thrifty.config import DEFAULT_PROFILE, ProfileSettings, ProviderSettings, Settings
from thrifty.errors import ConfigError
from thrifty.types import ChatRequest, Completion

__all__ = ["Route", "build_routes", "build_provider", "SCORERS", "cost_meter"]

#: scorer names usable in ``profiles.NAME.scorer`` → "module:factory" (imported lazily)
SCORERS: dict[str, str] = {
    "heuristic": "thrifty.scoring.heuristic:HeuristicScorer",
}

#: per-request list the metered providers append each answer's cost to (see :class:`Metered`)
cost_meter: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("thrifty_cost_meter", default=None)


class Metered:
    """A provider that reports every answer's cost to :data:`cost_meter` (the stream cost header)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.name = getattr(inner, "name", "?")

    def __getattr__(self, attr: str) -> Any:  # capability flags, prices, model, aclose …
        return getattr(self._inner, attr)

    def _note(self, c: Completion) -> None:
        meter = cost_meter.get()
        if meter is not None:
            meter.append(float(c.cost_usd))

    async def complete(self, request: ChatRequest) -> Completion:
        c = await self._inner.complete(request)
        self._note(c)
        return c

    async def stream(self, request: ChatRequest) -> AsyncIterator[Any]:
        async for item in self._inner.stream(request):
            if isinstance(item, Completion):
                self._note(item)
            yield item


@dataclass
class Route:
    """What a model id runs: its engine, the profile (None: pass-through) and its tiers' prices."""

    model_id: str
    engine: Any
    profile: ProfileSettings | None
    tier_prices: tuple[TierPrice, ...]
    system: str | None = None
    budget_name: str | None = None  # profile name for budget/logs; None for pass-through
    owner: str = "thrifty"
    vision: tuple[bool, ...] = field(default_factory=tuple)

    @property
    def baseline_price(self) -> tuple[float, float] | None:
        """(in, out) prices of the most expensive tier (by output price, then input)."""
        priced = [(t.price_out or 0.0, t.price_in or 0.0) for t in self.tier_prices]
        if not priced:
            return None
        out, inp = max(priced)
        return inp, out


def build_provider(p: ProviderSettings) -> Any:
    """One provider object for ``[providers.NAME]`` (its optional library imported lazily)."""
    key = f"providers.{p.name}"
    opts = dict(p.options)
    try:
        if p.kind == "openai":
            from thrifty.providers.openai_compat import OpenAICompatProvider

            return OpenAICompatProvider(p.name, p.model, p.base_url or "", p.api_key_env, p.price_input, p.price_output,
                                        p.vision, p.timeout_s, config_key=key, **opts)
        if p.kind == "anthropic":
            from thrifty.providers.anthropic import AnthropicProvider

            return AnthropicProvider(p.name, p.model, api_key_env=p.api_key_env or "ANTHROPIC_API_KEY", base_url=p.base_url,
                                     price_in=p.price_input, price_out=p.price_output, vision=p.vision,
                                     timeout_s=p.timeout_s, max_tokens=p.max_tokens, config_key=key, **opts)
        if p.kind == "student":  # a distilled classifier tier (thrifty student train)
            from thrifty.student import StudentProvider

            return StudentProvider.load(p.model_path or "", name=p.name, cost_per_call=float(opts.get("cost_per_call", 0.0)))
        from thrifty.providers.llamacpp import LlamaCppProvider

        defaults = {"max_tokens": p.max_tokens, **dict(opts.pop("defaults", {}))}
        if p.model_path == "builtin:gemma3" and p.mode == "completion" and "examples" not in opts:
            from thrifty.local import GEMMA_EXAMPLES  # the base model needs a few-shot transcript

            opts["examples"] = GEMMA_EXAMPLES
        return LlamaCppProvider(p.name, builtin_model_path(p.model_path or "", key=f"{key}.model_path"), model=p.model,
                                mode=p.mode, price_in=p.price_input or 0.0, price_out=p.price_output or 0.0,
                                defaults=defaults, **opts)
    except ImportError as exc:
        extra = {"anthropic": "serve", "llamacpp": "local"}.get(p.kind, "serve")
        raise ConfigError(f"cannot load the {p.kind} provider: {exc}", key=f"{key}.kind", fix=f"pip install 'thrifty[{extra}]'") from exc
    except TypeError as exc:
        raise ConfigError(f"bad provider options: {exc}", key=f"{key}.options", fix="remove options the provider does not take") from exc


def builtin_model_path(spec: str, *, key: str = "model_path") -> str:
    """``builtin:smollm2`` / ``builtin:gemma3`` → the GGUF shipped in the PyPI packages; else ``spec``."""
    if not spec.startswith("builtin:"):
        return spec
    from thrifty.local import builtin_model_path as resolve

    return resolve(spec)


def _scorer(profile: ProfileSettings) -> Any:
    target = SCORERS.get(profile.scorer)
    if target is None and ":" in profile.scorer:
        target = profile.scorer  # "package.module:Factory"
    if target is None:
        raise ConfigError(f"unknown scorer {profile.scorer!r}", key=f"profiles.{profile.name}.scorer",
                          fix=f"use one of: {', '.join(SCORERS)} or 'module:Factory'")
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load scorer {target!r}: {exc}", key=f"profiles.{profile.name}.scorer") from exc


def _policy(profile: ProfileSettings) -> Any:
    from thrifty.policy.cascade import CascadePolicy

    if profile.artefact is not None:
        try:
            from thrifty.offline.artefact import load_artefact
        except ImportError as exc:
            raise ConfigError("this install cannot read thrifty-fit artefacts", key=f"profiles.{profile.name}.artefact",
                              fix="give thresholds instead") from exc
        policy = load_artefact(profile.artefact)
        if tuple(policy.tiers) != profile.tiers:
            raise ConfigError(f"the artefact was fitted for tiers {list(policy.tiers)}", key=f"profiles.{profile.name}.tiers",
                              fix=f"set tiers = {list(policy.tiers)} or refit with these tiers")
        return policy
    scorer = _scorer(profile) if len(profile.tiers) > 1 else None
    return CascadePolicy(profile.tiers, profile.thresholds or (), scorer)


def _tier_price(provider: Any, max_tokens: int) -> TierPrice:
    return TierPrice(getattr(provider, "price_in", None), getattr(provider, "price_out", None), max_tokens)


def build_routes(settings: Settings, *, deadline_s: float | None = None) -> tuple[dict[str, Route], dict[str, Any]]:
    """Model id → Route for every profile and provider; plus the provider objects (to close)."""
    from thrifty.engine import Engine
    from thrifty.policy.cascade import CascadePolicy

    deadline = deadline_s or settings.server.request_timeout_s
    providers: dict[str, Any] = {n: Metered(build_provider(p)) for n, p in settings.providers.items()}
    caps: dict[str, int] = {n: p.max_tokens for n, p in settings.providers.items()}
    routes: dict[str, Route] = {}

    def add_profile(model_id: str, profile: ProfileSettings, policy: Any, pool: Mapping[str, Any]) -> None:
        tiers = {t: pool[t] for t in policy.tiers}
        if profile.cache is not None:
            tiers = cached_tiers(profile, tiers, settings)
        engine = Engine(policy, tiers, deadline_s=deadline, name=model_id)
        prices = tuple(_tier_price(pool[t], caps.get(t, 512)) for t in policy.tiers)
        routes[model_id] = Route(model_id, engine, profile, prices, system=profile.system, budget_name=profile.name,
                                 vision=tuple(bool(getattr(pool[t], "vision", False)) for t in policy.tiers))

    for name, profile in settings.profiles.items():
        add_profile(f"thrifty/{name}", profile, _policy(profile), providers)
    default_id = f"thrifty/{DEFAULT_PROFILE}"
    if default_id not in routes:
        if settings.profiles:
            first = next(iter(settings.profiles.values()))
            routes[default_id] = routes[f"thrifty/{first.name}"]
        else:
            from thrifty.local import embedded_default

            policy, local = embedded_default(settings.server.resolved_data_dir(), max_tokens=256)
            local = {n: Metered(p) for n, p in dict(local).items()}
            for n, p in local.items():
                providers.setdefault(n, p)
                caps.setdefault(n, 256)
            add_profile(default_id, ProfileSettings(DEFAULT_PROFILE, tuple(policy.tiers), None), policy, local)
    for name, provider in providers.items():
        engine = Engine(CascadePolicy([name], [], None), {name: provider}, deadline_s=deadline, name=name)
        routes.setdefault(name, Route(name, engine, None, (_tier_price(provider, caps.get(name, 512)),), owner=name,
                                      vision=(bool(getattr(provider, "vision", False)),)))
    return routes, providers


def cached_tiers(profile: ProfileSettings, tiers: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Each tier of ``profile`` behind a :class:`~thrifty.cache.CachedProvider` per ``[profiles.NAME.cache]``.

    Namespace ``<profile>/<tier>/<upstream model>``: answers are never shared across profiles, tiers
    or a provider whose model was changed. One store (SQLite file or Redis) serves all of them.
    """
    import os

    from thrifty.cache import CachedProvider, SemanticMatcher, make_store
    from thrifty.cache.semantic import DEFAULT_THRESHOLD

    cfg = profile.cache
    assert cfg is not None
    key = f"profiles.{profile.name}.cache"
    redis_url = None
    if cfg.redis_url_env:
        redis_url = os.environ.get(cfg.redis_url_env)
        if not redis_url:
            raise ConfigError(f"${cfg.redis_url_env} is not set", key=f"{key}.redis_url_env",
                              fix=f"export {cfg.redis_url_env}=redis://host:6379/0, or remove redis_url_env to use SQLite")
    path = cfg.path or (settings.server.resolved_data_dir() / "cache.sqlite")
    store = make_store(redis_url=redis_url, path=str(path), ttl_s=cfg.ttl_s, max_entries=cfg.max_entries, max_bytes=cfg.max_bytes)
    semantic: Any = False
    if cfg.mode == "semantic":
        threshold = DEFAULT_THRESHOLD if cfg.semantic_threshold is None else cfg.semantic_threshold
        semantic = SemanticMatcher(threshold=threshold, guard=cfg.guard)
    return {
        name: CachedProvider(p, store, namespace=f"{profile.name}/{name}/{getattr(p, 'model', '')}", semantic=semantic,
                             cache_sampled=cfg.cache_sampled, default_temperature=cfg.default_temperature)
        for name, p in tiers.items()
    }
