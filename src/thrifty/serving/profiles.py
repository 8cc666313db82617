"""Validated settings → live objects: provider objects, and each profile's policy, tiers and Engine.

Shared by every surface that runs configured models — the gateway (:mod:`thrifty.gateway.build`),
``thrifty collect`` and ``thrifty ask`` — so none of them imports another's wiring. This is a
composition module: it sits on the gateway/offline floor and reaches down into ``engine``,
``policy``, ``cache``, ``scoring`` and ``providers``; fitted artefacts are read through
:func:`thrifty.serving.artefact.load_artefact` (imported lazily, only for a profile that names one).

What ``thrifty/default`` runs (:func:`default_profile`):

- the profile named ``default``, if configured;
- else the first configured profile;
- else, when providers are configured but no profile, the first provider (in file order) as a
  one-tier profile named ``default`` — a pure pass-through gateway never loads llama-cpp;
- else (no configuration at all) the embedded local cascade (:func:`thrifty.serving.local.embedded_default`).
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

from thrifty.config.settings import DEFAULT_PROFILE, ProfileSettings, ProviderSettings, Settings
from thrifty.errors import ConfigError, DataError
from thrifty.policy.cascade import CascadePolicy
from thrifty.scoring.embedders import LazyEmbedder
from thrifty.scoring.verifiers import VerifiedScorer, build_checks
from thrifty.serving.adapted_provider import AdaptedProvider, FewShotAdapter, read_examples
from thrifty.serving.budget import TierPrice
from thrifty.serving.cache import CachedProvider, SemanticMatcher, make_store
from thrifty.serving.cache.semantic import DEFAULT_THRESHOLD
from thrifty.serving.engine import Engine

__all__ = [
    "SCORERS",
    "BuiltProfile",
    "build_provider",
    "build_providers",
    "build_profile",
    "default_profile",
    "profile_policy",
    "cached_tiers",
    "adapted_tiers",
    "tier_price",
]

#: scorer names usable in ``profiles.NAME.scorer`` → "module:factory" (imported lazily)
SCORERS: dict[str, str] = {
    "heuristic": "thrifty.scoring.heuristic:HeuristicScorer",
}


def build_provider(p: ProviderSettings) -> Any:
    """One provider object for ``[providers.NAME]`` (its optional library imported lazily)."""
    key = f"providers.{p.name}"
    opts = dict(p.options)
    try:
        if p.kind == "openai":
            from thrifty.serving.providers.openai_compat import OpenAICompatProvider

            return OpenAICompatProvider(
                p.name,
                p.model,
                p.base_url or "",
                p.api_key_env,
                p.price_input,
                p.price_output,
                p.vision,
                p.timeout_s,
                config_key=key,
                **opts,
            )
        if p.kind == "anthropic":
            from thrifty.serving.providers.anthropic import AnthropicProvider

            return AnthropicProvider(
                p.name,
                p.model,
                api_key_env=p.api_key_env or "ANTHROPIC_API_KEY",
                base_url=p.base_url,
                price_in=p.price_input,
                price_out=p.price_output,
                vision=p.vision,
                timeout_s=p.timeout_s,
                max_tokens=p.max_tokens,
                config_key=key,
                **opts,
            )
        if p.kind == "student":  # a distilled classifier tier (thrifty student train)
            from thrifty.serving.providers.student import StudentProvider

            return StudentProvider.load(p.model_path or "", name=p.name, cost_per_call=float(opts.get("cost_per_call", 0.0)))
        from thrifty.serving.local import builtin_model_path
        from thrifty.serving.providers.llamacpp import LlamaCppProvider

        defaults = {"max_tokens": p.max_tokens, **dict(opts.pop("defaults", {}))}
        if p.model_path == "builtin:gemma3" and p.mode == "completion" and "examples" not in opts:
            from thrifty.serving.local import GEMMA_EXAMPLES  # the base model needs a few-shot transcript

            opts["examples"] = GEMMA_EXAMPLES
        return LlamaCppProvider(
            p.name,
            builtin_model_path(p.model_path or ""),
            model=p.model,
            mode=p.mode,
            price_in=p.price_input or 0.0,
            price_out=p.price_output or 0.0,
            defaults=defaults,
            **opts,
        )
    except ImportError as exc:
        extra = {"anthropic": "serve", "llamacpp": "local"}.get(p.kind, "serve")
        raise ConfigError(f"cannot load the {p.kind} provider: {exc}", key=f"{key}.kind", fix=f"pip install 'thrifty[{extra}]'") from exc
    except TypeError as exc:
        raise ConfigError(f"bad provider options: {exc}", key=f"{key}.options", fix="remove options the provider does not take") from exc
    except ConfigError as exc:
        # an unknown builtin:…, an unreadable student artefact: name the config key
        if exc.key == "model_path" or (p.kind == "student" and exc.key == "student"):
            raise _rekey(exc, f"{key}.model_path") from exc
        raise


def _rekey(exc: ConfigError, key: str) -> ConfigError:
    """``exc`` again, located at config key ``key``."""
    text = str(exc)
    if exc.key and text.startswith(f"{exc.key}: "):
        text = text[len(exc.key) + 2 :]
    if exc.fix:
        text = text.rsplit(" — fix: ", 1)[0]
    return ConfigError(text, key=key, fix=exc.fix)


def build_providers(settings: Settings) -> dict[str, Any]:
    """Every ``[providers.NAME]`` as a provider object."""
    return {name: build_provider(p) for name, p in settings.providers.items()}


def _scorer(profile: ProfileSettings) -> Any:
    target = SCORERS.get(profile.scorer)
    if target is None and ":" in profile.scorer:
        target = profile.scorer  # "package.module:Factory"
    if target is None:
        raise ConfigError(
            f"unknown scorer {profile.scorer!r}",
            key=f"profiles.{profile.name}.scorer",
            fix=f"use one of: {', '.join(SCORERS)} or 'module:Factory'",
        )
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load scorer {target!r}: {exc}", key=f"profiles.{profile.name}.scorer") from exc


def profile_policy(profile: ProfileSettings) -> Any:
    """The live policy of ``profile``: its fitted artefact's policy for the selected point — a cascade
    (with the artefact's answer scorer), a router or a hybrid, per the artefact's ``kind`` — else a
    :class:`~thrifty.policy.cascade.CascadePolicy` over its hand-set thresholds.

    An artefact's cascade may use a subset of the profile's tiers (the fit can drop a model that never
    pays off) but never a model the profile does not list; a router may call every model it was
    fitted on, so the profile must list them all. A router or hybrid embeds each query with the
    embedder it was fitted with (loaded on the first request; a missing extra fails here).
    """

    if profile.artefact is not None:
        key = f"profiles.{profile.name}.artefact"
        try:
            from thrifty.serving.artefact import load_artefact
        except ImportError as exc:
            raise ConfigError(
                "this install cannot read thrifty-fit artefacts",
                key=key,
                fix="pip install 'thrifty[lab]' (scikit-learn, for fitted heads), or give thresholds instead",
            ) from exc
        try:
            artefact = load_artefact(profile.artefact)
        except ConfigError as exc:
            raise _rekey(exc, key) from exc
        missing = [t for t in artefact.tiers if t not in profile.tiers]
        if missing:
            raise ConfigError(
                f"the artefact's {artefact.kind} uses {missing}, which the profile does not list",
                key=f"profiles.{profile.name}.tiers",
                fix=f"add them to tiers (and [providers.*]) or refit on models named {list(profile.tiers)}",
            )
        try:
            policy = artefact.policy()
        except ConfigError as exc:  # e.g. the router's query embedder needs an extra that is missing
            raise _rekey(exc, key) from exc
        cascade = getattr(policy, "cascade", policy)  # a hybrid's cascade, or the cascade itself
        if profile.checks and getattr(cascade, "scorer", None) is not None:
            cascade.scorer = _with_checks(cascade.scorer, profile)
        return policy
    scorer = _with_checks(_scorer(profile), profile) if len(profile.tiers) > 1 else None
    return CascadePolicy(profile.tiers, profile.thresholds or (), scorer)


def _with_checks(scorer: Any, profile: ProfileSettings) -> Any:
    """``scorer`` behind the profile's answer checks (issue #16); unchanged when it declares none."""
    if not profile.checks:
        return scorer

    specs = [c if isinstance(c, str) else {c[0]: c[1]} for c in profile.checks]
    return VerifiedScorer(scorer, build_checks(specs))


def system_prompt(template: str, profile: str) -> str:
    """A profile's ``system`` text with ``{date}`` (today, UTC, YYYY-MM-DD) and ``{profile}`` filled in."""
    today = time.strftime("%Y-%m-%d", time.gmtime(time.time()))
    return template.replace("{date}", today).replace("{profile}", profile)


def tier_price(provider: Any, max_tokens: int) -> TierPrice:
    """The provider's (input, output) prices and the token cap used for budget holds."""
    return TierPrice(getattr(provider, "price_in", None), getattr(provider, "price_out", None), max_tokens)


@dataclass
class BuiltProfile:
    """One profile, live: its policy, the provider of each tier (cached when configured), its engine."""

    name: str
    settings: ProfileSettings
    policy: Any
    tiers: dict[str, Any]
    engine: Any
    prices: tuple[TierPrice, ...]


def build_profile(
    settings: Settings,
    profile: ProfileSettings,
    providers: Mapping[str, Any],
    *,
    policy: Any = None,
    caps: Mapping[str, int] | None = None,
    deadline_s: float | None = None,
    engine_name: str | None = None,
) -> BuiltProfile:
    """Policy (:func:`profile_policy` unless given), tiers from ``providers`` and an Engine for ``profile``."""

    policy = profile_policy(profile) if policy is None else policy
    caps = caps if caps is not None else {n: p.max_tokens for n, p in settings.providers.items()}
    tiers = {t: providers[t] for t in policy.tiers}
    # Order: cache(adapt(tier)). The cache keys the request the client sent, not the adapted one: the
    # adaptation is a deterministic function of that request and of the adapter's settings, whose
    # fingerprint is part of the cache namespace (a changed examples file cannot serve stale
    # answers); a hit then skips the embedding and selection; and the semantic cache compares the
    # client's question in the client's context — the selected shots differ between near-identical
    # questions, so keyed on the adapted request it would (almost) never match.
    if profile.prompt_adaptation is not None:
        tiers = adapted_tiers(profile, tiers)
    if profile.cache is not None:
        tiers = cached_tiers(profile, tiers, settings)
    engine = Engine(
        policy, tiers, deadline_s=deadline_s or settings.server.request_timeout_s, name=engine_name or f"thrifty/{profile.name}"
    )
    prices = tuple(tier_price(providers[t], caps.get(t, 512)) for t in policy.tiers)
    return BuiltProfile(profile.name, profile, policy, tiers, engine, prices)


def default_profile(settings: Settings, *, max_tokens: int = 256) -> tuple[ProfileSettings, Any, dict[str, Any]]:
    """What ``thrifty/default`` runs when no profile is named ``default`` (see the module docstring).

    Returns ``(profile, policy, extra providers)``: the providers the default needs that are not in
    ``[providers.*]`` (the embedded local models; empty otherwise). ``policy`` is None when the
    profile's own settings say what to run (:func:`profile_policy`).
    """
    if DEFAULT_PROFILE in settings.profiles:
        return settings.profiles[DEFAULT_PROFILE], None, {}
    if settings.profiles:
        return next(iter(settings.profiles.values())), None, {}
    if settings.providers:
        first = next(iter(settings.providers))
        return ProfileSettings(DEFAULT_PROFILE, (first,)), None, {}
    from thrifty.serving.local import embedded_default

    policy, local = embedded_default(settings.server.resolved_data_dir(), max_tokens=max_tokens)
    return ProfileSettings(DEFAULT_PROFILE, tuple(policy.tiers)), policy, dict(local)


def cached_tiers(profile: ProfileSettings, tiers: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Each tier of ``profile`` behind a :class:`~thrifty.serving.cache.CachedProvider` per ``[profiles.NAME.cache]``.

    Namespace ``<profile>/<tier>/<upstream model>``: answers are never shared across profiles, tiers
    or a provider whose model was changed. One store (SQLite file or Redis) serves all of them.
    """

    cfg = profile.cache
    assert cfg is not None
    key = f"profiles.{profile.name}.cache"
    redis_url = None
    if cfg.redis_url_env:
        redis_url = os.environ.get(cfg.redis_url_env)
        if not redis_url:
            raise ConfigError(
                f"${cfg.redis_url_env} is not set",
                key=f"{key}.redis_url_env",
                fix=f"export {cfg.redis_url_env}=redis://host:6379/0, or remove redis_url_env to use SQLite",
            )
    path = cfg.path or (settings.server.resolved_data_dir() / "cache.sqlite")
    store = make_store(redis_url=redis_url, path=str(path), ttl_s=cfg.ttl_s, max_entries=cfg.max_entries, max_bytes=cfg.max_bytes)
    semantic: Any = False
    if cfg.mode == "semantic":
        threshold = DEFAULT_THRESHOLD if cfg.semantic_threshold is None else cfg.semantic_threshold
        semantic = SemanticMatcher(threshold=threshold, guard=cfg.guard)

    def namespace(name: str, p: Any) -> str:
        shots = getattr(p, "fingerprint", None)  # an AdaptedProvider: its adaptation settings are part of the key
        return f"{profile.name}/{name}/{getattr(p, 'model', '')}" + (f"/shots:{shots}" if shots else "")

    return {
        name: CachedProvider(
            p,
            store,
            namespace=namespace(name, p),
            semantic=semantic,
            cache_sampled=cfg.cache_sampled,
            default_temperature=cfg.default_temperature,
        )
        for name, p in tiers.items()
    }


def adapted_tiers(profile: ProfileSettings, tiers: Mapping[str, Any]) -> dict[str, Any]:
    """The tiers of ``profile`` named by ``[profiles.NAME.prompt_adaptation]`` (all by default) behind
    one shared :class:`~thrifty.serving.adapted_provider.FewShotAdapter` (so an escalated request reuses its
    selection). The examples file is read here; a bad row is a ConfigError naming file, line and field."""

    cfg = profile.prompt_adaptation
    assert cfg is not None
    key = f"profiles.{profile.name}.prompt_adaptation"
    try:
        pool = read_examples(cfg.examples)
    except DataError as exc:
        raise ConfigError(
            f"bad examples file: {exc}",
            key=f"{key}.examples",
            fix='give every row a non-empty "input" and "output" (JSONL or CSV with a header)',
        ) from exc
    prefix = None
    if cfg.strip_prefix is not None:
        try:
            prefix = cfg.strip_prefix.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read {cfg.strip_prefix}: {exc}", key=f"{key}.strip_prefix", fix="point it at a UTF-8 text file"
            ) from exc
    try:
        embedder = LazyEmbedder(cfg.embedder)  # checks the extra is installed; the model loads on first use
    except ConfigError as exc:
        raise _rekey(exc, f"{key}.embedder") from exc
    adapter = FewShotAdapter(
        pool, embedder.embed, k=cfg.k, budget_tokens=cfg.budget_tokens, layout=cfg.layout, strip_prefix=prefix, embedder_name=cfg.embedder
    )
    only = set(cfg.tiers) if cfg.tiers is not None else set(tiers)
    return {name: AdaptedProvider(p, adapter) if name in only else p for name, p in tiers.items()}
