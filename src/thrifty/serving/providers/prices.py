"""Token prices in USD per 1M tokens: configured prices win, else ``genai-prices`` for known models.

``resolve_prices(model, price_in=..., price_out=...)`` returns ``(price_in, price_out)``. A model
that ``genai-prices`` does not know and that has no configured price raises :class:`ConfigError`
naming the config key to set — thrifty never silently treats an unknown model as free.
"""

from __future__ import annotations

from functools import lru_cache

from thrifty.errors import ConfigError

__all__ = ["resolve_prices", "lookup_prices", "cache_prices"]

#: Anthropic's published prompt-cache multipliers of the input price (5-minute writes), used for a
#: model genai-prices does not price for caching or whose input price is configured
CACHE_READ_FACTOR, CACHE_WRITE_FACTOR = 0.1, 1.25

_PROBE_TOKENS = 1000  # price a small call, then scale: avoids long-context price tiers


@lru_cache(maxsize=256)
def lookup_prices(model: str, provider_id: str | None = None) -> tuple[float, float] | None:
    """``(input, output)`` USD per 1M tokens from ``genai-prices``, or None if the model is unknown."""
    try:
        import genai_prices
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "genai-prices is not installed, so prices of hosted models cannot be looked up",
            key="price_in",
            fix="pip install 'thrifty[serve]' or set price_in / price_out for every tier",
        ) from exc
    try:
        calc_in = genai_prices.calc_price(genai_prices.Usage(input_tokens=_PROBE_TOKENS), model, provider_id=provider_id)
        calc_out = genai_prices.calc_price(genai_prices.Usage(output_tokens=_PROBE_TOKENS), model, provider_id=provider_id)
    except LookupError:
        return None
    scale = 1_000_000 / _PROBE_TOKENS
    return float(calc_in.total_price) * scale, float(calc_out.total_price) * scale


def resolve_prices(
    model: str,
    *,
    price_in: float | None = None,
    price_out: float | None = None,
    provider_id: str | None = None,
    key: str = "price_in",
) -> tuple[float, float]:
    """Prices for ``model``: configured values override the ``genai-prices`` lookup.

    ``key`` names the setting in error messages (e.g. ``profiles.default.tiers[1].price_in``).
    """
    for name, value in (("price_in", price_in), ("price_out", price_out)):
        if value is not None and (value != value or value < 0):
            raise ConfigError(f"{name} must be a non-negative number, got {value!r}", key=key)
    if price_in is not None and price_out is not None:
        return float(price_in), float(price_out)
    found = lookup_prices(model, provider_id)
    if found is None:
        raise ConfigError(
            f"no price known for model {model!r} (genai-prices does not list it)",
            key=key,
            fix="set price_in and price_out (USD per 1M tokens; 0 for a local model)",
        )
    return (
        float(price_in) if price_in is not None else found[0],
        float(price_out) if price_out is not None else found[1],
    )


@lru_cache(maxsize=256)
def _lookup_cache_prices(model: str, provider_id: str | None) -> tuple[float, float] | None:
    try:
        import genai_prices
    except ImportError:  # pragma: no cover - depends on the install
        return None
    out = []
    # input_tokens counts every prompt token, the cached ones included (genai-prices' convention too)
    for usage in (
        genai_prices.Usage(input_tokens=_PROBE_TOKENS, cache_read_tokens=_PROBE_TOKENS),
        genai_prices.Usage(input_tokens=_PROBE_TOKENS, cache_write_tokens=_PROBE_TOKENS),
    ):
        try:
            out.append(float(genai_prices.calc_price(usage, model, provider_id=provider_id).total_price) * 1_000_000 / _PROBE_TOKENS)
        except (LookupError, ValueError):
            return None
    return out[0], out[1]


def cache_prices(model: str, price_in: float, *, provider_id: str | None = None, configured: bool = False) -> tuple[float, float]:
    """``(cache read, cache write)`` USD per 1M tokens: genai-prices' when it prices the model's
    cache (and the input price is not configured), else the input price × Anthropic's multipliers."""
    if not configured:
        found = _lookup_cache_prices(model, provider_id)
        if found is not None and any(found):
            return found
    return price_in * CACHE_READ_FACTOR, price_in * CACHE_WRITE_FACTOR
