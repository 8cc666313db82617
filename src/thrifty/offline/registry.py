"""Policy registry: names → factories, imported lazily so heavy policies cost nothing until used.

Names: ``oracle``, ``random``, ``single:<model>``, and whatever later modules register in
``_FACTORIES`` (``cascade``, ``frugalgpt``, ``router``, ``hybrid`` …). A factory is called with the
options dict given on the command line (``--opt key=value``) and returns an ``OfflinePolicy``.
"""

from __future__ import annotations

import importlib
from typing import Any

from thrifty.errors import ConfigError
from thrifty.offline.api import OfflinePolicy

__all__ = ["get_policy", "policy_names"]

# name -> "module:factory"; the module is imported only when the policy is asked for.
_FACTORIES: dict[str, str] = {
    "oracle": "thrifty.offline.baselines:OraclePolicy",
    "random": "thrifty.offline.baselines:RandomPolicy",
    "single": "thrifty.offline.baselines:SinglePolicy",
    "cascade": "thrifty.offline.cascade_policy:CascadeOffline",
    "frugalgpt": "thrifty.offline.frugalgpt:FrugalGPTOffline",
    "router": "thrifty.offline.router_policy:RouterOffline",
    "hybrid": "thrifty.offline.hybrid_policy:HybridOffline",
}


def policy_names() -> list[str]:
    return sorted(_FACTORIES)


def get_policy(name: str, options: dict[str, Any] | None = None) -> OfflinePolicy:
    """Build the policy called ``name`` (``single:<model>`` passes the model as ``model``)."""
    options = dict(options or {})
    base, _, arg = name.partition(":")
    if base not in _FACTORIES:
        raise ConfigError(f"unknown policy {name!r}", key="--policy", fix=f"choose one of: {', '.join(policy_names())}")
    if arg:
        options.setdefault("variant", arg)
    module, _, attr = _FACTORIES[base].partition(":")
    factory = getattr(importlib.import_module(module), attr)
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for policy {name!r}: {exc}", key="--opt") from None
