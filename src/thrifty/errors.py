"""The one error hierarchy of thrifty.

::

    ThriftyError                      base; every error thrifty raises on purpose
    ├── ConfigError                   bad settings / TOML / CLI flags (says which key and the fix)
    ├── DataError                     bad routing-table input (says file, line, field, expected)
    ├── ProviderError                 an upstream model failed (provider, status, retryable, retry_after)
    ├── BudgetExceeded                a key or profile ran out of budget
    ├── AuthError                     missing or unknown API key
    └── RequestError                  a client request that cannot be served (bad shape, unknown model)

Each surface maps these to exit codes (CLI) or HTTP status (gateway) in exactly one place:
``EXIT_CODES`` here for the CLI, ``thrifty.gateway.errors`` for HTTP.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ThriftyError",
    "ConfigError",
    "DataError",
    "ProviderError",
    "BudgetExceeded",
    "AuthError",
    "RequestError",
    "exit_code_for",
]


class ThriftyError(Exception):
    """Base class: every error thrifty raises deliberately."""


class ConfigError(ThriftyError):
    """Invalid configuration. ``key`` names the setting, ``fix`` says what to do."""

    def __init__(self, message: str, *, key: str | None = None, fix: str | None = None) -> None:
        self.key = key
        self.fix = fix
        parts = [f"{key}: {message}" if key else message]
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__(" — ".join(parts))


class DataError(ThriftyError):
    """Invalid routing-table input, located as precisely as possible.

    ``file`` and ``line`` (1-based; for CSV the header is line 1) locate the row, ``field`` names the
    column, ``expected`` says what a valid value looks like.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.expected = expected
        where = ""
        if file:
            where = str(file) + (f":{line}" if line is not None else "")
        head = ": ".join(p for p in (where, f"field '{field}'" if field else "") if p)
        text = f"{head}: {message}" if head else message
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


class ProviderError(ThriftyError):
    """An upstream model call failed. ``retryable`` says whether trying again may help."""

    # set by the engine when the whole request failed: its Trace (a thrifty.serving.trace.Trace,
    # which this bottom layer cannot name), and whether answer text had already been streamed
    trace: Any = None
    partial: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "?",
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(f"{provider}: {message}" + (f" (HTTP {status})" if status else ""))


class BudgetExceeded(ThriftyError):
    """Spending this request would exceed a key's or profile's budget."""

    def __init__(self, message: str, *, limit_usd: float | None = None, spent_usd: float | None = None, scope: str | None = None):
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.scope = scope  # the limit that refused: "key" | "profile" (None: not said)
        super().__init__(message)


class AuthError(ThriftyError):
    """Missing or unknown API key (the key itself is never included in the message)."""


class RequestError(ThriftyError):
    """A request that cannot be served as sent (unknown model, no messages, wrong types)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        self.param = param
        self.code = code
        super().__init__(message)


_EXIT_CODES: dict[type[ThriftyError], int] = {
    ConfigError: 3,
    DataError: 4,
    ProviderError: 5,
    BudgetExceeded: 6,
    AuthError: 7,
    RequestError: 2,
}


def exit_code_for(exc: BaseException) -> int:
    """CLI exit code for an exception: 0 never, 1 for unexpected errors, 2–7 for ours."""
    for cls in type(exc).__mro__:
        if cls in _EXIT_CODES:
            return _EXIT_CODES[cls]
    return 1
