"""``thrifty serve``: run the OpenAI-compatible gateway; ``thrifty keys hash``: hash an API key for the config.

With no ``--config`` and no ``$THRIFTY_CONFIG`` the gateway serves the embedded local default (two
GGUF models in-process, no key, no network). It binds 127.0.0.1 unless told otherwise.

The server runs on uvloop with the httptools HTTP parser when they are installed (the ``serve``
extra installs both), with one worker or many; otherwise on stock asyncio and h11. The banner and
``/healthz`` (``event_loop``) say which.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import ipaddress
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

__all__ = ["register", "run_serve", "run_keys_hash"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "serve",
        help="run the OpenAI-compatible gateway",
        description="Serve /v1/chat/completions, /v1/models, /healthz and /metrics. Without a config file: the embedded local cascade.",
    )
    p.add_argument("--config", metavar="FILE", help="thrifty.toml (default: $THRIFTY_CONFIG, else the embedded local default)")
    p.add_argument("--host", help="bind address (default 127.0.0.1; anything else exposes the gateway to the network)")
    p.add_argument("--port", type=int, help="port (default 8080, or server.port)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1; each loads its own models)")
    p.add_argument("--data-dir", metavar="DIR", help="where the SQLite log lives (default server.data_dir or the user data dir)")
    p.add_argument(
        "--store",
        metavar="URL",
        help="the log store: a SQLite path or postgresql://user@host:5432/db shared by replicas"
        " (default server.store, else <data dir>/logs.sqlite3; password from $PGPASSWORD or server.store_password_env)",
    )
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"], help="server log level")
    p.set_defaults(func=run_serve)

    k = sub.add_parser("keys", help="API key helpers", description="Helpers for [keys.NAME] entries in thrifty.toml.")
    ksub = k.add_subparsers(dest="keys_command", metavar="COMMAND")
    h = ksub.add_parser("hash", help="print the sha256 to store in [keys.NAME] (reads the key from stdin or a prompt)")
    h.add_argument("--name", default="NAME", help="key name for the printed TOML snippet")
    h.set_defaults(func=run_keys_hash)

    def usage(args: argparse.Namespace) -> int:
        k.print_help()
        return 2

    k.set_defaults(func=usage)


def run_keys_hash(args: argparse.Namespace) -> int:
    from thrifty.config.settings import hash_key
    from thrifty.errors import ConfigError

    key = getpass.getpass("API key: ") if sys.stdin.isatty() else sys.stdin.readline()
    key = key.strip()
    if not key:
        raise ConfigError("no key given", key="stdin", fix='echo -n "$KEY" | thrifty keys hash')
    print(f'[keys.{args.name}]\nsha256 = "{hash_key(key)}"\n# limit_usd = 10.0')
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def banner(url: str, settings: Any, seconds: float, models: list[str]) -> str:
    key = "<your key>" if settings.auth_required else "unused"
    return "\n".join(
        [
            f"thrifty gateway ready in {seconds:.1f}s at {url}  (config: {settings.source or 'embedded local default'})",
            f"models: {', '.join(models)}",
            "",
            "call it with the openai client:",
            "  from openai import OpenAI",
            f'  client = OpenAI(base_url="{url}/v1", api_key="{key}")',
            '  r = client.chat.completions.with_raw_response.create(model="thrifty/default", messages=[{"role": "user", "content": "Hi!"}], max_tokens=32)',
            '  print(r.parse().choices[0].message.content, r.headers["x-thrifty-model"], r.headers["x-thrifty-cost-usd"])',
            "or with curl:",
            f"  curl -s {url}/v1/chat/completions -H 'content-type: application/json'"
            + (" -H 'authorization: Bearer <your key>'" if settings.auth_required else "")
            + ' -d \'{"model": "thrifty/default", "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 32}\'',
            f"logs: thrifty logs list   metrics: {url}/metrics   dashboard: {url}/ui",
        ]
    )


@contextlib.contextmanager
def _shared_metrics_dir() -> Iterator[None]:
    """A fresh folder for prometheus_client's multiprocess mode, set in the environment the workers
    inherit, so /metrics sums every worker (see thrifty.gateway.metrics); removed afterwards. A
    folder the operator already set is used as is and kept."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    folder = tempfile.mkdtemp(prefix="thrifty-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def _store_arg(value: str | None) -> str | None:
    """``--store``: a postgresql:// URL without a password (a command line is visible to every user), or a path."""
    if not value:
        return None
    from urllib.parse import urlsplit

    from thrifty.errors import ConfigError

    if value.startswith(("postgresql://", "postgres://")):
        if urlsplit(value).password is not None:
            raise ConfigError(
                "the --store URL contains a password (visible to every user of this machine)",
                key="--store",
                fix="remove it from the URL and export PGPASSWORD (or set server.store_password_env)",
            )
        return value
    if value.startswith("sqlite://"):
        return value[len("sqlite:///") :] if value.startswith("sqlite:///") else value[len("sqlite://") :]
    return str(Path(value).resolve())


def fast_server() -> tuple[str, str]:
    """(uvicorn ``loop``, uvicorn ``http``): uvloop and httptools when importable, else asyncio and h11."""
    import importlib.util

    loop = "uvloop" if sys.platform != "win32" and importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def run_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from thrifty.config.settings import config_path, load_settings

    t0 = time.perf_counter()
    try:
        import uvicorn
    except ImportError:
        from thrifty.errors import ConfigError

        raise ConfigError("the gateway needs uvicorn and FastAPI", key="serve", fix="pip install 'thrifty[serve]'") from None
    settings = load_settings(args.config).with_server(
        host=args.host, port=args.port, data_dir=Path(args.data_dir) if args.data_dir else None, store=_store_arg(args.store)
    )
    host, port = settings.server.host, settings.server.port
    if not _is_loopback(host):
        print(
            f"thrifty: warning: binding {host} exposes the gateway beyond this machine"
            + ("" if settings.auth_required else " and no API keys are configured"),
            file=sys.stderr,
        )
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    if args.workers > 1:
        path = config_path(args.config)
        if path is not None:
            os.environ["THRIFTY_CONFIG"] = str(path.resolve())
        os.environ["THRIFTY_SERVER_HOST"], os.environ["THRIFTY_SERVER_PORT"] = host, str(port)
        if args.data_dir:
            os.environ["THRIFTY_SERVER_DATA_DIR"] = str(Path(args.data_dir).resolve())
        if args.store:
            os.environ["THRIFTY_SERVER_STORE"] = _store_arg(args.store) or ""
        print(f"thrifty: starting {args.workers} workers at {url} (each loads its own models)", file=sys.stderr, flush=True)
        loop_kind, http_kind = fast_server()
        with _shared_metrics_dir():
            uvicorn.run(
                "thrifty.ui.serve:app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=args.workers,
                log_level=args.log_level,
                timeout_graceful_shutdown=5,
                loop=loop_kind,
                http=http_kind,
            )
        return 0

    from thrifty.gateway.app import build_runtime, create_app
    from thrifty.ui.serve import with_dashboard

    app = with_dashboard(create_app(settings, runtime=build_runtime(settings)))  # config errors stop here, before binding
    loop_kind, http_kind = fast_server()
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level=args.log_level, timeout_graceful_shutdown=5, loop=loop_kind, http=http_kind)
    )

    import asyncio

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.02)
        models = list(app.state.runtime.routes)
        print(banner(url, settings, time.perf_counter() - t0, models), flush=True)
        print(f"server: {type(asyncio.get_running_loop()).__module__.split('.')[0]} event loop, {http_kind} HTTP parser", flush=True)

    async def main() -> None:
        task = asyncio.create_task(announce())
        try:
            await server.serve()
        finally:
            task.cancel()

    if loop_kind == "uvloop":  # the loop uvicorn.run would pick; asyncio.run alone would give stock asyncio
        import uvloop

        if hasattr(asyncio, "Runner"):  # Python ≥ 3.11
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())
        else:  # pragma: no cover - Python 3.10
            uvloop.install()
            asyncio.run(main())
    else:
        asyncio.run(main())
    return 0 if server.started else 1
