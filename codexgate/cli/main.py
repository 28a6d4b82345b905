"""The command line: `codexgate [serve]` runs the gateway; the other commands read and manage."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from codexgate import __version__, listener, logs
from codexgate.app import SERVER_OPTIONS, create_app
from codexgate.cli import codex_config, commands, systemd
from codexgate.config import (
    SETTINGS,
    Config,
    ConfigError,
    add_arguments,
    default_database_why,
    log_level_number,
    mask_credentials,
    resolve,
)
from codexgate.keys import CONNECTIONS
from codexgate.proxy.relay import environment_proxy
from codexgate.services import feed
from codexgate.storage.interface import StorageSetupError
from codexgate.storage.location import describe

log = logging.getLogger("codexgate")

# Once the shutdown grace has passed, what still runs gets this long to finish, then it is
# cancelled and gets this long again to clean up (aiohttp's shutdown timeout).
CUT_SECONDS: Final = 1.0


def _log_banner(config: Config) -> None:
    log.info("codexgate %s listening on %s", __version__, config.public_base)
    upstream_proxy = config.upstream_proxy or environment_proxy(config.upstream)
    # A proxy URL may carry a password (user:secret@host): it never reaches a log.
    via = f" via proxy {mask_credentials(upstream_proxy)}" if upstream_proxy else ""
    log.info("upstream %s%s", config.upstream, via)
    # A PostgreSQL URL shows without its password.
    database = config.db.resolve() if isinstance(config.db, Path) else config.db.masked
    why = default_database_why(config.db)
    log.info("database %s%s", database, f" ({why})" if why else "")
    log.info("health %s/%s/healthz", config.public_base, config.admin_prefix)
    log.info(
        "point the Codex CLI here with ~/.codex/config.toml (codexgate codex-config --write):\n%s",
        codex_config.client_settings(config),
    )


async def _drain(
    app: web.Application, site: listener.Listener, connections: listener.Connections, grace: float
) -> None:
    """Stop listening and let every connection finish, within `grace` seconds."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    systemd.notify(systemd.STOPPING)
    taken = site.start_draining()
    log.info(
        "draining: stopped listening (%d queued connections taken); %d connections open, "
        "%d of them with a request in flight, get %gs to finish",
        taken,
        connections.open,
        connections.busy,
        grace,
    )
    # Feed streams never end by themselves: end them now, their clients reconnect elsewhere.
    await feed.close_streams(app)
    if await connections.wait_closed(grace):
        log.info("drained in %.1fs: every connection closed", loop.time() - began)
    else:
        log.warning(
            "drain: %d connections still open after %gs (shutdown_grace), %d with a request "
            "in flight; closing them",
            connections.open,
            grace,
            connections.busy,
        )


async def serve(config: Config) -> None:
    """Run the gateway until SIGINT or SIGTERM, then drain connections and flush snapshots."""
    file_limit = listener.raise_file_limit()
    app = create_app(config)
    connections = app[CONNECTIONS]
    app.on_response_prepare.append(connections.close_when_draining)
    connections.fit_file_limit(file_limit)
    if connections.limit < config.max_connections:
        log.warning(
            "open-files limit %d allows %d connections, not max_connections %d",
            file_limit,
            connections.limit,
            config.max_connections,
        )
    runner = web.AppRunner(
        app,
        **SERVER_OPTIONS,
        access_log=None,
        # The drain gives connections the grace; aiohttp then ends what is left.
        shutdown_timeout=CUT_SECONDS,
    )
    await runner.setup()
    try:
        site = listener.Listener(
            runner, config.host, config.port, connections, reuse_port=config.reuse_port
        )
        await site.start()
        _log_banner(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        systemd.notify(systemd.READY)
        await stop.wait()
        await _drain(app, site, connections, config.shutdown_grace)
    finally:
        await runner.cleanup()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# Settings given before the command (`codexgate --db x status`) land under this prefix, so that
# the command's own (`codexgate status --db x`) can win and the rest can be checked.
_EARLY: Final = "early_"
# What codex-config reads: the address it points the Codex CLI at.
_CODEX_CONFIG_SETTINGS: Final = ("host", "port")


def _settings_used(command: str) -> tuple[str, ...]:
    """The settings a command reads; serve reads them all."""
    if command == "serve":
        return tuple(setting.name for setting in SETTINGS)
    if command == "codex-config":
        return _CODEX_CONFIG_SETTINGS
    return commands.SETTINGS_USED[command]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codexgate",
        description="A streaming gateway for Codex clients that records usage windows. "
        "Without a command it runs the gateway (serve) with the settings below; "
        "`codexgate COMMAND --help` lists each command's own.",
    )
    parser.add_argument("--version", action="version", version=f"codexgate {__version__}")
    add_arguments(parser, dest_prefix=_EARLY, suppress=True)
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve_parser = subcommands.add_parser("serve", help="run the gateway (the default)")
    add_arguments(serve_parser)
    codex_parser = subcommands.add_parser(
        "codex-config",
        help="print the Codex CLI config.toml settings for this instance, or --write them",
    )
    add_arguments(codex_parser, _CODEX_CONFIG_SETTINGS)
    codex_config.add_arguments(codex_parser)
    commands.add_parsers(subcommands, early_prefix=_EARLY)
    return parser


def _flags(namespace: argparse.Namespace) -> dict[str, Any]:
    """The settings flags, wherever they were given (after the command wins).

    Raises ConfigError for a setting the command does not read given before it (after it,
    argparse refuses it already).
    """
    given = vars(namespace)
    used = {"config", *_settings_used(namespace.command)}
    flags: dict[str, Any] = {}
    for name in ("config", *(setting.name for setting in SETTINGS)):
        early = given.get(_EARLY + name)
        if early is not None and name not in used:
            raise ConfigError(
                name,
                f"`codexgate {namespace.command}` does not use it "
                f"(see codexgate {namespace.command} --help)",
            )
        late = given.get(name)
        flags[name] = late if late is not None else early
    return flags


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `codexgate` and `python -m codexgate`; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    namespace = _parser().parse_args(args)
    if namespace.command is None:
        namespace.command = "serve"
    try:
        loaded = resolve(_flags(namespace))
    except ConfigError as exc:
        print(f"codexgate: {exc}", file=sys.stderr)  # noqa: T201 - logging is not set up yet
        return 2
    config = loaded.config
    if namespace.command in commands.NAMES:
        return commands.run(namespace, loaded)
    if namespace.command == "codex-config":
        return codex_config.run(
            config,
            write_file=namespace.write,
            home=namespace.codex_home,
            transport=namespace.transport,
        )
    logs.configure(log_level_number(config))
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(config))
    except StorageSetupError as exc:
        log.error("cannot open the database %s: %s", describe(config.db), exc)
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
