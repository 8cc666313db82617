"""What the dashboard reads from the running gateway instead of the log: the profiles in service
(tiers, thresholds or artefact, budget), the configured keys and their limits, the dearest tier's
prices (the "always the best model" baseline)."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from thrifty.errors import DataError
from thrifty.serving.adapted_provider import read_examples
from thrifty.serving.budget import period_key
from thrifty.serving.prompt_adapt import example_id

__all__ = ["baseline_prices", "profiles_in_service", "keys_configured", "artefact_summary", "shot_texts"]


def _profile_routes(rt: Any) -> dict[str, Any]:
    """Profile name → its route (``thrifty/<name>``; an alias such as thrifty/default counts once)."""
    out: dict[str, Any] = {}
    for route in rt.routes.values():
        if route.profile is not None:
            out.setdefault(route.profile.name, route)
    return out


def baseline_prices(rt: Any) -> dict[str, tuple[float, float]]:
    """Profile → (input, output) USD per 1M tokens of its dearest tier (the gateway's own baseline)."""
    out: dict[str, tuple[float, float]] = {}
    for name, route in _profile_routes(rt).items():
        price = route.baseline_price
        if price is not None:
            out[name] = (float(price[0]), float(price[1]))
    return out


def artefact_summary(path: Path | None) -> dict[str, Any] | None:
    """Version, kind, fit time, data and held-out front of the artefact at ``path`` (its manifest)."""
    if path is None:
        return None
    try:
        manifest = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"path": str(path), "error": f"cannot read manifest.json: {exc}"}
    data = manifest.get("data") or {}
    created = manifest.get("created")
    return {
        "path": str(path),
        "kind": manifest.get("kind", "cascade"),
        "version": manifest.get("version"),
        "thrifty_version": manifest.get("thrifty_version") or manifest.get("thrifty"),
        "created": created,
        "data": {k: data.get(k) for k in ("source", "hash", "n_prompts", "prompts") if k in data},
        "selected": manifest.get("selected"),
        "front": [
            {"cost": p.get("train_cost", p.get("cost")), "quality": p.get("train_quality", p.get("quality"))}
            for p in manifest.get("front") or []
            if isinstance(p, dict)
        ],
    }


def profiles_in_service(rt: Any) -> list[dict[str, Any]]:
    """One entry per profile: what the live policy runs, the artefact it came from, its budget."""

    now = time.time()
    out = []
    for name, route in sorted(_profile_routes(rt).items()):
        profile, policy = route.profile, route.engine.policy
        out.append(
            {
                "name": name,
                "model_id": f"thrifty/{name}",
                "policy": type(policy).__name__,
                "tiers": list(getattr(policy, "tiers", profile.tiers)),
                "thresholds": [float(t) for t in getattr(policy, "thresholds", ()) or ()],
                "scorer": profile.scorer,
                "artefact": artefact_summary(profile.artefact),
                "cache": profile.cache.mode if profile.cache is not None else None,
                "prompt_adaptation": (
                    {
                        "k": profile.prompt_adaptation.k,
                        "layout": profile.prompt_adaptation.layout,
                        "examples": str(profile.prompt_adaptation.examples),
                    }
                    if profile.prompt_adaptation is not None
                    else None
                ),
                "budget_usd": profile.budget_usd,
                "budget_period": profile.budget_period,
                "budget_period_key": period_key(profile.budget_period, now),
                "baseline_price": list(route.baseline_price) if route.baseline_price else None,
            }
        )
    return out


def keys_configured(rt: Any) -> list[dict[str, Any]]:
    """Configured keys by name with their limit (never the key or its hash)."""

    now = time.time()
    return [
        {"name": k.name, "limit_usd": k.limit_usd, "limit_period": k.limit_period, "period_key": period_key(k.limit_period, now)}
        for k in sorted(rt.settings.keys.values(), key=lambda k: k.name)
    ]


def shot_texts(path: str | None) -> dict[str, tuple[str, str]]:
    """Example id → (input, output) of a profile's examples file, to show the text of the shots a
    request's log row names ({} when the file is gone or unreadable: the ids are shown alone)."""
    if not path:
        return {}
    try:
        mtime = Path(path).stat().st_mtime_ns
    except OSError:
        return {}
    return _shot_texts(path, mtime)


@lru_cache(maxsize=8)
def _shot_texts(path: str, mtime_ns: int) -> dict[str, tuple[str, str]]:  # keyed by mtime: an edited file is read again
    try:
        return {example_id(e): (e.input, e.output) for e in read_examples(path)}
    except (DataError, OSError):
        return {}
