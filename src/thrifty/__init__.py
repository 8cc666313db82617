"""thrifty: answer each LLM request with the cheapest model that is good enough.

The public API is re-exported lazily so ``import thrifty`` stays cheap (no numpy, no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "RoutingTable",
    "load_table",
    "ThriftyError",
    "ConfigError",
    "DataError",
    "ProviderError",
    "BudgetExceeded",
]

_LAZY = {
    "RoutingTable": "thrifty.data.table",
    "load_table": "thrifty.data.table_io",
    "ThriftyError": "thrifty.errors",
    "ConfigError": "thrifty.errors",
    "DataError": "thrifty.errors",
    "ProviderError": "thrifty.errors",
    "BudgetExceeded": "thrifty.errors",
}

if TYPE_CHECKING:  # pragma: no cover
    from thrifty.data.table import RoutingTable
    from thrifty.data.table_io import load_table
    from thrifty.errors import BudgetExceeded, ConfigError, DataError, ProviderError, ThriftyError


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'thrifty' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
