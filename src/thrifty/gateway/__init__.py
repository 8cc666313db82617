"""The OpenAI-compatible gateway (``thrifty serve``): ``create_app(settings)`` builds it."""

__all__ = ["create_app"]


def __getattr__(name: str):  # FastAPI is imported only when the gateway is used
    if name == "create_app":
        from thrifty.gateway.app import create_app

        return create_app
    raise AttributeError(name)
