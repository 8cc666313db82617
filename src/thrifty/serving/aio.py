"""Small asyncio helpers of the live path: a cheap per-call time limit, quiet closing of abandoned streams."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["within", "aclose_quietly"]

_TIMEOUT = getattr(asyncio, "timeout", None)  # Python ≥ 3.11


async def within(awaitable: Any, seconds: float) -> Any:
    """``await awaitable`` or raise TimeoutError after ``seconds`` — without the extra Task that
    ``asyncio.wait_for`` creates per call on Python 3.11 (that Task is a visible share of the
    gateway's CPU per request)."""
    if _TIMEOUT is None:  # pragma: no cover - Python 3.10
        return await asyncio.wait_for(awaitable, seconds)
    async with _TIMEOUT(seconds):
        return await awaitable


async def aclose_quietly(iterator: Any) -> None:
    """Close an async iterator if it can be closed, ignoring errors (an abandoned upstream stream)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # noqa: BLE001 - best effort cleanup of an abandoned upstream stream
            pass
