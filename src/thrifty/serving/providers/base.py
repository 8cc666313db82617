"""What every provider offers: ``complete()``, optionally ``stream()``, and capability flags.

A provider is any object with ``name`` and ``async complete(request) -> Completion`` (the
:class:`~thrifty.types.Provider` protocol). Optional behaviour is expressed as flags, not subclasses:

- ``streams`` — it has ``async stream(request)`` yielding text deltas (``str``) then one final
  :class:`~thrifty.types.Completion` (with usage and cost).
- ``tools`` — it passes ``tools`` / ``tool_choice`` through and returns ``tool_calls``.
- ``vision`` — it accepts image content parts.

:func:`info` reads those flags (defaults: no streaming, no tools, no vision) and
:func:`stream_of` gives a stream for any provider (a non-streaming one yields its whole answer once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping, Protocol, Union, runtime_checkable

from thrifty.types import ChatRequest, Completion, Provider, Usage

__all__ = [
    "Provider",
    "StreamingProvider",
    "StreamItem",
    "ProviderInfo",
    "Wrapper",
    "info",
    "stream_of",
    "cost_usd",
    "param",
]

#: What ``stream()`` yields: text deltas, then exactly one final Completion.
StreamItem = Union[str, Completion]


@runtime_checkable
class StreamingProvider(Provider, Protocol):
    def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]: ...


@dataclass(frozen=True)
class ProviderInfo:
    """Static description of a provider: the model it serves, its capabilities, its prices.

    Prices are USD per 1M tokens (``None`` = unknown).
    """

    name: str
    model: str
    streams: bool = False
    tools: bool = False
    vision: bool = False
    price_in: float | None = None
    price_out: float | None = None


def info(provider: Any) -> ProviderInfo:
    """The capability flags of ``provider`` (missing attributes read as False / None)."""
    return ProviderInfo(
        name=str(getattr(provider, "name", type(provider).__name__)),
        model=str(getattr(provider, "model", getattr(provider, "name", "?"))),
        streams=bool(getattr(provider, "streams", False)) and callable(getattr(provider, "stream", None)),
        tools=bool(getattr(provider, "tools", False)),
        vision=bool(getattr(provider, "vision", False)),
        price_in=getattr(provider, "price_in", None),
        price_out=getattr(provider, "price_out", None),
    )


class Wrapper:
    """Base of a provider that wraps ``inner`` (a cache, a prompt adapter): the inner's capability
    flags and prices are its own, and so is its ability to stream. ``close()`` releases what the
    wrapper itself holds (the gateway calls it when a reload retires the wrapper); ``aclose()``
    closes the inner provider, then the wrapper."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = str(getattr(inner, "name", type(inner).__name__))
        for flag in ("tools", "vision", "model", "price_in", "price_out"):
            if hasattr(inner, flag):
                setattr(self, flag, getattr(inner, flag))

    @property
    def streams(self) -> bool:
        return bool(getattr(self.inner, "streams", False)) and callable(getattr(self.inner, "stream", None))

    def close(self) -> None:
        """Nothing held by default."""

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()
        self.close()


async def stream_of(provider: Any, request: ChatRequest) -> AsyncIterator[StreamItem]:
    """Stream ``request`` through ``provider``; a provider without ``stream`` yields its whole text once."""
    if info(provider).streams:
        async for item in provider.stream(request):
            yield item
        return
    completion = await provider.complete(request)
    if completion.text:
        yield completion.text
    yield completion


def cost_usd(usage: Usage, price_in: float | None, price_out: float | None, cache_prices: tuple[float, float] | None = None) -> float:
    """USD cost of ``usage`` at per-1M-token prices (an unknown price counts as 0).

    ``cache_prices`` = (cache read, cache write) per 1M tokens: those parts of ``input_tokens`` are
    priced at them; without it every input token costs ``price_in``."""
    pin = price_in or 0.0
    total = usage.input_tokens * pin + usage.output_tokens * (price_out or 0.0)
    if cache_prices is not None:
        total += usage.cache_read_tokens * (cache_prices[0] - pin) + usage.cache_write_tokens * (cache_prices[1] - pin)
    return total / 1e6


def param(request: ChatRequest, *names: str, default: Any = None) -> Any:
    """The first of ``names`` present (and not None) in ``request.params``."""
    params: Mapping[str, Any] = request.params or {}
    for n in names:
        if params.get(n) is not None:
            return params[n]
    return default
