"""`codexgate check-config`: the effective settings and where each came from, secrets masked."""

from __future__ import annotations

from pathlib import Path
from typing import Final, TextIO

from yarl import URL

from codexgate.cli.output import table
from codexgate.config import SETTINGS, AlertConfig, Loaded, mask_credentials, mask_url

HEADERS: Final = ("setting", "value", "source")
SECRETS: Final = frozenset({"admin_token", "metrics_token"})
MASK: Final = "***set***"


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


def render(loaded: Loaded, out: TextIO) -> None:
    """Every setting, its value (secrets as ***set***) and flag, env, file or default."""
    config, sources = loaded.config, loaded.sources
    rows = [["config", shown(config.config_file), sources["config_file"]]]
    for setting in SETTINGS:
        value = getattr(config, setting.name)
        text = MASK if setting.name in SECRETS and value is not None else shown(value)
        rows.append([setting.name, text, sources[setting.name]])
    rows += _alert_rows(config.alerts, sources["alerts"])
    out.write(table(HEADERS, rows, colour=False))
