"""The ``agentdock`` console script: ``serve``, ``migrate``, ``openapi``, ``asyncapi``."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from service.errors import ConfigurationError
from service.settings import Settings


def _openapi(path: str | None) -> int:
    from service.app import create_app

    settings = Settings.from_env()
    app = create_app(settings, api_token="schema-only")  # noqa: S106 - no server runs
    _write(json.dumps(app.openapi_schema.to_schema(), indent=2, sort_keys=True) + "\n", path)
    return 0


def _asyncapi(path: str | None) -> int:
    from service.api.asyncapi import asyncapi_document

    _write(json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n", path)
    return 0


def _write(text: str, path: str | None) -> None:
    if path in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)


def _migrate(settings: Settings) -> int:
    from service.db.migrate import upgrade
    from service.logs import configure_logging, get_logger

    # First, before anything logs: every line this process writes is then one event on stdout
    # (uvicorn's, Alembic's and an uncaught exception's too; see service/logs.py).
    configure_logging(settings.log_format, settings.log_level, capture_uncaught=True)
    upgrade(settings)
    log = get_logger("service.cli")
    log.info("database.migrated", database=_safe_url(settings.database_url))
    return 0


def _serve(settings: Settings) -> int:
    import uvicorn

    from service.app import create_app
    from service.terminal.websocket import MAX_MESSAGE_BYTES

    _migrate(settings)  # before the server's event loop starts: Alembic runs its own loop
    app = create_app(settings)
    # What the imports and the app made lives as long as the process: out of the collector's
    # sight, so that a full collection no longer walks it. Such a collection took 100-260 ms
    # with the service's imports (about 130 ms for the imports alone, here), a pause in every
    # terminal's echo (docs/benchmarks.md); after the freeze, a few milliseconds.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # uvicorn's loggers propagate to the root handler of service.logs
        access_log=False,
        # Protocol pings every 20 s; a peer that has not answered for 60 s in all is closed.
        ws_ping_interval=20.0,
        ws_ping_timeout=40.0,
        # A frame over the terminal's message limit is refused (close 1009) before it is buffered.
        ws_max_size=MAX_MESSAGE_BYTES,
        # No permessage-deflate: compressing terminal output cost about 20 ms of CPU per MB
        # (py-spy: 89 % of the service's time while `cat` printed 20 MB, for a quarter saved on
        # base64 text) and held a viewer to 0.5-0.7 x the exec stream; see docs/benchmarks.md.
        ws_per_message_deflate=False,
        lifespan="on",
    )
    return 0


def _safe_url(url: str) -> str:
    """A database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentdock", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="apply pending migrations, then serve")
    commands.add_parser("migrate", help="apply pending database migrations")
    openapi = commands.add_parser("openapi", help="write the OpenAPI schema as JSON")
    openapi.add_argument("path", nargs="?", help="output file (stdout when omitted or '-')")
    asyncapi = commands.add_parser("asyncapi", help="write the AsyncAPI document of the WebSockets as JSON")
    asyncapi.add_argument("path", nargs="?", help="output file (stdout when omitted or '-')")
    args = parser.parse_args(argv)
    try:
        if args.command == "openapi":
            return _openapi(args.path)
        if args.command == "asyncapi":
            return _asyncapi(args.path)
        settings = Settings.from_env()
        if args.command == "migrate":
            return _migrate(settings)
        return _serve(settings)
    except ConfigurationError as exc:
        print(f"agentdock: configuration error: {exc}", file=sys.stderr)
        return 2
