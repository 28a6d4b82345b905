"""`codexgate check-config`: the effective settings and where each came from, secrets masked."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final, TextIO

from yarl import URL

from codexgate.cli.common import open_database
from codexgate.cli.output import table
from codexgate.config import (
    SETTINGS,
    AlertConfig,
    Config,
    Loaded,
    default_database_why,
    mask_credentials,
    mask_url,
)
from codexgate.security import TOKEN_SETTING
from codexgate.storage import schema_status
from codexgate.storage.interface import StorageSetupError, StorageUnavailable
from codexgate.storage.location import PostgresURL

HEADERS: Final = ("setting", "value", "source")
SECRETS: Final = frozenset({"admin_token", "metrics_token"})
MASK: Final = "***set***"
# An unset admin_token: the one the server generated (and logged once) on its first start.
GENERATED: Final = "generated on the first start (the database keeps only its hash)"
NOT_GENERATED: Final = "none yet: the first start generates one and logs it once"


def shown(value: object) -> str:
    """A setting's value as the command line would take it; URLs without credentials."""
    match value:
        case None:
            return "none"
        case bool():
            return "on" if value else "off"
        case float():
            return f"{value:g}"
        case URL():
            return mask_credentials(value)
        case PostgresURL():
            return value.masked
        case Path():
            return str(value)
    return str(value)


def _alert_rows(alerts: AlertConfig, source: str) -> list[list[str]]:
    """One row per alert rule, one per webhook (its URL masked)."""
    rows = [
        ["alerts.thresholds", ", ".join(f"{t:g}" for t in alerts.thresholds) or "none", source],
        ["alerts.limit_hit", shown(alerts.limit_hit), source],
        ["alerts.limit_reset", shown(alerts.limit_reset), source],
        ["alerts.forecast", shown(alerts.forecast), source],
        ["alerts.stale_minutes", shown(alerts.stale_minutes), source],
    ]
    if not alerts.webhooks:
        rows.append(["alerts.webhooks", "none", source])
    for i, hook in enumerate(alerts.webhooks):
        name = f", {hook.name}" if hook.name else ""
        rows.append(
            [f"alerts.webhooks[{i}]", f"{mask_url(hook.url)} ({hook.format}{name})", source]
        )
    return rows


async def stored_admin_token(config: Config) -> str:
    """Without an admin_token setting: whether the database holds a generated token's hash.

    Reads only a database at the newest schema, and changes nothing.
    """
    if isinstance(config.db, Path) and not await asyncio.to_thread(config.db.exists):
        return NOT_GENERATED
    try:
        version, latest = await schema_status(config.db, connect_timeout=config.db_connect_timeout)
        if version == 0:
            return NOT_GENERATED  # an empty PostgreSQL database (or SQLite file): no start yet
        if version != latest:
            return "unknown until `codexgate migrate` (older database)"
        store = await open_database(config)
        try:
            digest = await store.get_setting(TOKEN_SETTING)
        finally:
            await store.close()
    except (StorageSetupError, StorageUnavailable) as exc:
        return f"unknown: {exc}"
    return NOT_GENERATED if digest is None else GENERATED


def render(loaded: Loaded, out: TextIO, admin_token: str | None = None) -> None:
    """Every setting, its value (secrets as ***set***) and flag, env, env_file, file or default.

    admin_token says what stands in for an unset admin_token (stored_admin_token).
    """
    config, sources = loaded.config, loaded.sources
    rows = [["config", shown(config.config_file), sources["config_file"]]]
    for setting in SETTINGS:
        value = getattr(config, setting.name)
        text = MASK if setting.name in SECRETS and value is not None else shown(value)
        source: str = sources[setting.name]
        if setting.name == "admin_token" and value is None and admin_token is not None:
            text, source = admin_token, "database"
        if setting.name == "db" and source == "default" and isinstance(value, Path):
            # As the start-up log says it: the whole path, and why it is the default.
            why = default_database_why(value)
            text = f"{value.resolve()} ({why})" if why else text
        rows.append([setting.name, text, source])
    rows += _alert_rows(config.alerts, sources["alerts"])
    out.write(table(HEADERS, rows, colour=False))


async def run(loaded: Loaded, out: TextIO) -> None:
    """`codexgate check-config`: the table, with where the admin token comes from."""
    state = None if loaded.config.admin_token else await stored_admin_token(loaded.config)
    render(loaded, out, state)
