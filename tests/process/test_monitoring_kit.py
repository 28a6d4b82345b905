"""The monitoring kit of deploy/: the Grafana dashboard (deploy/grafana/codexgate.json) and the
Prometheus alerting rules (deploy/prometheus/alerts.yml, with their unit tests alerts.test.yml).

promtool accepts the rules and every query of the dashboard, the rules' unit tests pass, the
dashboard is laid out as Grafana imports it, and every metric that either names is one a real
codexgate process exports after proxying a turn (and every family it exports is used)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
import yaml
from aiohttp import ClientSession
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from codexgate.storage.sqlite.store import Store
from tests.helpers import many_accounts
from tests.helpers.fake_upstream import sse_events
from tests.helpers.paths import REPO
from tests.helpers.processes import GatewayProcess, UpstreamProcess, free_port
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

DASHBOARD: Final = REPO / "deploy" / "grafana" / "codexgate.json"
ALERTS: Final = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS: Final = REPO / "deploy" / "prometheus" / "alerts.test.yml"
DOCS: Final = REPO / "docs" / "api.md"
METRICS_TOKEN: Final = "monitoring-kit-metrics-token-1"
# Series that Prometheus makes itself for every target; codexgate cannot export them.
PROMETHEUS_OWN: Final = frozenset({"up"})
SEVERITIES: Final = frozenset({"info", "warning", "critical"})
GRID_COLUMNS: Final = 24
# Grafana's own interval variables, which it fills in when it sends a query.
GRAFANA_INTERVALS: Final = ("$__rate_interval", "$__range", "$__interval")

# PromQL, reduced to its metric names: strings, label matchers, range and subquery brackets and
# label lists are cut out, then every identifier that is not a keyword or a function call is one.
_STRINGS: Final = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS: Final = re.compile(r"\{[^{}]*\}")
_BRACKETS: Final = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS: Final = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)"
)
_IDENTIFIERS: Final = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS: Final = frozenset(
    {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
)
_SUM: Final = re.compile(r"\bsum\s*(?:(?:by|without)\s*\([^()]*\)\s*)?\(")
_VARIABLE: Final = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_LABEL_VALUES: Final = re.compile(r"label_values\((.*),\s*\w+\)$", re.DOTALL)


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _STRINGS.sub('""', expression)
    text = _MATCHERS.sub("", text)
    text = _BRACKETS.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    return {name for name in _IDENTIFIERS.findall(text) if name not in _KEYWORDS}


def test_metric_names_reads_the_metrics_out_of_promql() -> None:
    expression = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job="$job", x=~"b|c"}[5m])))\n'
        "  / on (job) group_left (instance_id) max without (x) (b_total offset 5m) > 3 * 3600\n"
        "unless count(c:recorded) or vector(1e3) and sum(rate(d[$__rate_interval]))"
    )
    assert metric_names(expression) == {"a_bucket", "b_total", "c:recorded", "d"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerting_rules() -> list[dict[str, Any]]:
    """Every rule of alerts.yml, in file order."""
    groups: list[dict[str, Any]] = load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(DASHBOARD.read_bytes())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel, rows included, and the panels of a collapsed row."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and of every query variable's metric selector."""
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            found = _LABEL_VALUES.match(variable["query"])
            assert found, f"variable {variable['name']}: not label_values(selector, label)"
            yield f"variable {variable['name']}", found[1]


def as_sent(expression: str) -> str:
    """The query as Grafana sends it: its own and the dashboard's variables filled in."""
    for interval in GRAFANA_INTERVALS:
        expression = expression.replace(interval, "5m")
    return _VARIABLE.sub("x", expression)


@pytest.fixture(scope="module")
def promtool() -> Path:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is missing: install Debian's prometheus package")
    return Path(found)


def run_promtool(promtool: Path, *arguments: str | Path) -> None:
    ran = subprocess.run(
        [promtool, *arguments], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_promtool_accepts_the_alerting_rules(promtool: Path) -> None:
    run_promtool(promtool, "check", "rules", ALERTS)


def test_the_alerting_rules_pass_their_promtool_unit_tests(promtool: Path) -> None:
    run_promtool(promtool, "test", "rules", ALERT_TESTS)


def test_promtool_accepts_every_dashboard_query_as_promql(promtool: Path, tmp_path: Path) -> None:
    queries = list(dashboard_queries())
    assert len({where for where, _ in queries}) == len(queries)
    # Each recording rule is named after where its query is, so that promtool's error says.
    rules = [
        {"record": "dashboard:" + re.sub(r"\W+", "_", where), "expr": as_sent(expression)}
        for where, expression in queries
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool(promtool, "check", "rules", path)


def test_every_alert_says_how_bad_it_is_and_what_to_do() -> None:
    rules = alerting_rules()
    assert all("alert" in rule for rule in rules), "alerts.yml holds alerting rules only"
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    documented = DOCS.read_text()
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no for:"
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        assert len(rule["annotations"]["description"]) > 120, f"{name}: say what to do"
        assert f"`{name}`" in documented, f"{name} is not described in docs/api.md"


def summed(expression: str) -> Iterator[str]:
    """The argument of every sum() in a PromQL expression."""
    for aggregation in _SUM.finditer(expression):
        depth = 0
        for end in range(aggregation.end() - 1, len(expression)):
            depth += {"(": 1, ")": -1}.get(expression[end], 0)
            if depth == 0:
                yield expression[aggregation.end() : end]
                break


def test_the_window_gauges_are_never_summed_across_instances() -> None:
    # Every instance reports the same window values (they come from the shared database): a sum
    # would count them once per instance.
    assert list(summed("sum by (a) (rate(x[5m])) + sum(y)")) == ["rate(x[5m])", "y"]
    expressions = [rule["expr"] for rule in alerting_rules()]
    expressions += [expression for _, expression in dashboard_queries()]
    for expression in expressions:
        for argument in summed(expression):
            assert "codexgate_window_" not in argument, expression


def test_the_dashboard_is_laid_out_as_grafana_imports_it() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39  # Grafana 11 and later: older ones may not load it
    assert board["uid"] == "codexgate"
    assert board.get("id") is None  # an id is the saving instance's own; import gives one
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    prometheus = {"type": "prometheus", "uid": "${datasource}"}

    panels = dashboard_panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        where = f"panel {panel['id']} {panel.get('title')!r}"
        grid = panel["gridPos"]
        assert min(grid["w"], grid["h"]) > 0, where
        assert min(grid["x"], grid["y"]) >= 0, where
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, where
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{where} overlaps another panel"
        taken |= cells
        if panel["type"] == "row":
            continue
        assert panel["title"], where
        assert panel["description"], where
        assert panel["datasource"] == prometheus, where
        targets = panel["targets"]
        assert targets, where
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), where
        for target in targets:
            assert target["datasource"] == prometheus, where
            assert target["expr"].strip(), where
    for where, expression in dashboard_queries():
        for found in _VARIABLE.finditer(expression):
            name = found[1] or found[2]
            assert f"${name}" in GRAFANA_INTERVALS or name in variables, f"{where}: ${name}"


def seed_a_forecast(db: Path, now: float) -> None:
    """An account whose 5-hour window has climbed 10 points every 15 minutes: it has a forecast
    (three samples and 5 % of the window are the least a forecast needs)."""
    many_accounts.add_account(db, 1, "Forecast seat", None)
    resets_at = int(now) + 4 * 3600
    for used, ago in ((10.0, 2700), (20.0, 1800), (30.0, 900), (40.0, 60)):
        many_accounts.add_usage(
            db,
            1,
            "codex",
            now - ago,
            five_hour_used_percent=used,
            five_hour_window_minutes=300,
            five_hour_resets_at=resets_at,
        )


def parse_families(exposition: str) -> dict[str, Metric]:
    """Every metric family of a text exposition, by name."""
    return {family.name: family for family in text_string_to_metric_families(exposition)}


def has_every_kind(families: dict[str, Metric]) -> bool:
    """Whether the proxied seat's window gauges, the seeded seat's forecast and the turn's
    request count are all there."""
    accounts = {
        sample.labels["account_id"] for sample in families["codexgate_window_used_percent"].samples
    }
    return (
        len(accounts) == 2
        and bool(families["codexgate_window_forecast_exhaustion_seconds"].samples)
        and bool(families["codexgate_requests"].samples)
    )


async def test_every_metric_the_kit_names_is_one_codexgate_exports(tmp_path: Path) -> None:
    db = tmp_path / "codexgate.db"
    store = await Store.open(db)  # the schema, migrated
    await store.close()
    seed_a_forecast(db, time.time())
    upstream = UpstreamProcess(free_port(), 0.0, 0, tmp_path / "upstream.log")
    gateway: GatewayProcess | None = None
    try:
        await upstream.wait_ready()
        gateway = GatewayProcess(
            ["serve", "--upstream", upstream.base, "--db", str(db)],
            tmp_path,
            env={"CODEXGATE_METRICS_TOKEN": METRICS_TOKEN},
        )
        await gateway.wait_ready()
        base = gateway.base
        async with ClientSession() as http:
            # One turn whose answer carries the rate-limit headers: the seat's window gauges.
            async with http.post(
                f"{base}/backend-api/codex/responses",
                data=b'{"stream": true}',
                headers={"Authorization": bearer("seat_a")},
            ) as response:
                assert response.status == 200
                assert await response.read() == b"".join(sse_events("stream-basic.sse"))

            async def scrape() -> dict[str, Metric]:
                async with http.get(
                    f"{base}/codexgate/metrics",
                    headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                ) as response:
                    assert response.status == 200
                    return parse_families(await response.text())

            families = {
                name: {sample.name for sample in family.samples}
                for name, family in (await eventually(scrape, accept=has_every_kind)).items()
            }
    finally:
        if gateway is not None:
            if gateway.process.poll() is None:
                await gateway.terminate()
            gateway.kill()
        await upstream.kill()

    exported = {name for names in families.values() for name in names}
    named_by = {
        "alerts.yml": {name for rule in alerting_rules() for name in metric_names(rule["expr"])},
        "the dashboard": {name for _, query in dashboard_queries() for name in metric_names(query)},
        "alerts.test.yml": {
            name
            for test in load_yaml(ALERT_TESTS)["tests"]
            for series in test["input_series"]
            for name in metric_names(series["series"])
        },
    }
    for where, names in named_by.items():
        assert names, f"no metric found in {where}"
        assert names - exported - PROMETHEUS_OWN == set(), f"{where} names metrics not exported"
    # And the other way: a family codexgate exports and the kit leaves out is a gap in the kit.
    used = named_by["alerts.yml"] | named_by["the dashboard"]
    # (prometheus_client's `_created` series, when each counter started, come as families of
    # their own: nothing to chart.)
    unused = {
        family
        for family, names in families.items()
        if not family.endswith("_created") and not names & used
    }
    assert unused == set(), "exported, but on no panel and in no rule"
