"""The gateway app with the dashboard mounted at ``/ui`` — what ``thrifty serve`` runs.

The gateway (:mod:`thrifty.gateway.app`) knows nothing of the dashboard (imports point down:
``gateway`` < ``ui`` < ``cli``); this module adds it to an app the gateway built.
"""

from __future__ import annotations

from typing import Any

from thrifty.gateway.app import app_from_env as gateway_app
from thrifty.ui.pages import register_dashboard

__all__ = ["with_dashboard", "app_from_env"]


def with_dashboard(app: Any) -> Any:
    """``app`` with ``/ui``, ``/ui/api/...`` and ``/ui/static/...`` added; returns it."""

    register_dashboard(app)
    return app


def app_from_env() -> Any:
    """Factory for ``uvicorn --factory`` / several workers: :func:`thrifty.gateway.app.app_from_env` plus ``/ui``."""

    return with_dashboard(gateway_app())
