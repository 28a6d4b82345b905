"""deploy/compose.yaml as it is shipped: every service, volume and secret consistent, every
CODEXGATE_ variable a real setting, the secrets made by the commands its header gives, the
codexgate services' environment (on top of the image's) accepted by codexgate, nginx's upstream
the codexgate services, the published port the one docs/install.md gives; and the mounted
nginx.conf run with Debian's nginx in front of two codexgate processes started with the compose
environment, the host names of the instances the only change."""

from __future__ import annotations

import asyncio
import random
import re
import shlex
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

import orjson
import pytest
import yaml
from aiohttp import ClientSession, ClientTimeout

from codexgate.config import (
    ENV_PREFIX,
    SECRET_FILE_SETTINGS,
    SECRET_FILE_SUFFIX,
    SETTINGS,
    Config,
    resolve,
)
from codexgate.storage.location import PostgresURL
from tests.helpers.admin_client import ADMIN
from tests.helpers.balancers import start_nginx
from tests.helpers.fake_upstream import sse_events
from tests.helpers.paths import REPO
from tests.helpers.processes import GatewayProcess, UpstreamProcess, free_port
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

DEPLOY: Final = REPO / "deploy"
COMPOSE: Final = DEPLOY / "compose.yaml"
NGINX_CONF: Final = DEPLOY / "compose" / "nginx.conf"
DOCKERFILE: Final = REPO / "Dockerfile"
INSTALL_DOC: Final = REPO / "docs" / "install.md"
DEPLOYMENT_DOC: Final = REPO / "docs" / "deployment.md"
CODEXGATE_SERVICES: Final = ("codexgate-1", "codexgate-2")
SECRETS_IN_CONTAINER: Final = PurePosixPath("/run/secrets")
# Every CODEXGATE_ variable codexgate reads: a setting, a secret setting's _FILE, the file.
SETTING_VARIABLES: Final = frozenset(
    {
        ENV_PREFIX + "CONFIG",
        *(ENV_PREFIX + setting.name.upper() for setting in SETTINGS),
        *(ENV_PREFIX + name.upper() + SECRET_FILE_SUFFIX for name in SECRET_FILE_SETTINGS),
    }
)
# After shutdown_grace, what is still open is closed within 2 s, then the queued snapshots are
# written: compose must wait at least this much longer before it sends SIGKILL.
STOP_MARGIN: Final = 5.0
# The upstream streams a turn of 6 + DELTAS events, EVENT_DELAY seconds apart (1.35 s): a
# buffering nginx would hand it over in one piece at the end.
DELTAS: Final = 4
EVENT_DELAY: Final = 0.15
TURN_SECONDS: Final = (5 + DELTAS) * EVENT_DELAY


def compose() -> dict[str, Any]:
    """deploy/compose.yaml, parsed (anchors and aliases resolved)."""
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of its two forms, as strings."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        return dict(entry.partition("=")[::2] for entry in raw)
    return {key: str(value) for key, value in raw.items()}


def secrets_of(service: Mapping[str, Any]) -> dict[str, str]:
    """The secrets a service mounts: the file name under /run/secrets by secret name."""
    mounted: dict[str, str] = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            mounted[entry] = entry
        else:
            mounted[entry["source"]] = entry.get("target", entry["source"])
    return mounted


def named_volumes_of(service: Mapping[str, Any]) -> set[str]:
    """The named volumes a service mounts (not bind mounts of a host path)."""
    names: set[str] = set()
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source = entry.split(":", 1)[0]
            if ":" in entry and not source.startswith(("/", ".", "~")):
                names.add(source)
        elif entry.get("type", "volume") == "volume" and "source" in entry:
            names.add(entry["source"])
    return names


def depends_on_of(service: Mapping[str, Any]) -> dict[str, str]:
    """What a service waits for: the service by name, and its condition."""
    raw = service.get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def dockerfile_stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """A Dockerfile's instructions, per stage (by its name or number; "" is the last)."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    number = 0
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            name = words[-1].lower() if len(words) >= 3 and words[-2].upper() == "AS" else ""
            image = next(word for word in words if not word.startswith("--")).lower()
            # A stage built on an earlier one starts from that one's instructions.
            current = list(stages.get(image, []))
            stages[str(number)] = stages[""] = current
            if name:
                stages[name] = current
            number += 1
        current.append((keyword, rest.strip()))
    return stages


def image_environment() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage: what every container of the image starts with."""
    assert DOCKERFILE.exists(), "compose.yaml builds the Dockerfile at the repository root"
    environment: dict[str, str] = {}
    for keyword, rest in dockerfile_stages(DOCKERFILE.read_text())[""]:
        if keyword != "ENV":
            continue
        words = shlex.split(rest)
        if all("=" in word for word in words):
            environment.update(word.partition("=")[::2] for word in words)
        else:  # the old form, ENV NAME value with spaces
            environment[words[0]] = rest.split(None, 1)[1]
    return environment


def image_has_healthcheck() -> bool:
    instructions = dockerfile_stages(DOCKERFILE.read_text())[""]
    checks = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    return bool(checks) and checks[-1].upper() != "NONE"


def header_commands() -> list[str]:
    """The commands compose.yaml's header gives to make the secrets: its first indented block."""
    lines = COMPOSE.read_text().splitlines()
    start = next(number for number, line in enumerate(lines) if line.startswith("#   "))
    commands: list[str] = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        commands.append(line.removeprefix("#   "))
    return commands


@pytest.fixture(scope="module")
def made_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/compose/secrets as the header's commands make it, in a folder of its own."""
    folder = tmp_path_factory.mktemp("deploy")
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(header_commands())],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return folder / "compose" / "secrets"


def container_environment(name: str, secret_files: Mapping[str, Path]) -> dict[str, str]:
    """The CODEXGATE_ variables of a codexgate service's container: its image's, then its own,
    with each /run/secrets/ path moved to the file that holds that secret here."""
    service = services()[name]
    environment = {
        variable: value
        for variable, value in {**image_environment(), **environment_of(service)}.items()
        if variable.startswith(ENV_PREFIX)
    }
    in_container = {
        str(SECRETS_IN_CONTAINER / target): source for source, target in secrets_of(service).items()
    }
    for variable, value in environment.items():
        if value.startswith(f"{SECRETS_IN_CONTAINER}/"):
            assert value in in_container, f"{name}: {variable} names a secret it does not mount"
            environment[variable] = str(secret_files[in_container[value]])
    return environment


def service_config(name: str, secret_files: Mapping[str, Path]) -> Config:
    """The configuration a codexgate service's container starts with."""
    return resolve({}, container_environment(name, secret_files)).config


def upstream_servers(nginx_conf: str) -> list[str]:
    """The `server` addresses of the upstream block."""
    block = re.search(r"^upstream codexgate \{(.*?)^\}", nginx_conf, re.MULTILINE | re.DOTALL)
    assert block is not None, "nginx.conf has no upstream codexgate block"
    return re.findall(r"^\s*server\s+(\S+)", block.group(1), re.MULTILINE)


def nginx_statements(config: str) -> list[str]:
    """nginx directives without comments, one string each, with the addresses left out: the
    `listen` and upstream `server` addresses are what a deployment chooses."""
    without_comments = re.sub(r"#[^\n]*", "", config)
    statements = []
    for piece in re.split(r"(?<=[;{}])", without_comments):
        words = piece.split()
        if words and words[0] == "listen":
            words = words[:1]
        elif words and words[0] == "server" and words[-1] != "{":
            words = [words[0], *words[2:]]
        if words:
            statements.append(" ".join(words))
    return statements


def documented_nginx() -> str:
    found = re.search(
        r"^<!-- tested: nginx\b[^\n]*-->\n```nginx\n(.*?)^```$",
        DEPLOYMENT_DOC.read_text(),
        re.MULTILINE | re.DOTALL,
    )
    assert found is not None, "docs/deployment.md has no tested nginx block"
    return found.group(1)


def published_port() -> tuple[str, int, int]:
    """nginx's one published port: the host address, the host port, the container port."""
    [mapping] = services()["nginx"]["ports"]
    address, host_port, container_port = str(mapping).removesuffix("/tcp").rsplit(":", 2)
    return address, int(host_port), int(container_port)


def test_every_service_has_an_image_or_a_build() -> None:
    for name, service in services().items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert context == REPO, name
            assert service["build"].get("dockerfile", "Dockerfile") == DOCKERFILE.name
    assert set(services()) == {"postgres", "nginx", *CODEXGATE_SERVICES}


def test_the_codexgate_services_run_one_image_built_from_the_dockerfile() -> None:
    built = {name for name, service in services().items() if "build" in service}
    assert built == set(CODEXGATE_SERVICES)
    images = {services()[name]["image"] for name in CODEXGATE_SERVICES}
    assert len(images) == 1, images


def test_every_named_volume_and_secret_is_declared_and_used() -> None:
    declared_volumes = set(compose().get("volumes") or {})
    used_volumes = set().union(*(named_volumes_of(s) for s in services().values()))
    assert used_volumes == declared_volumes
    declared_secrets = set(compose().get("secrets") or {})
    used_secrets = set().union(*(secrets_of(s) for s in services().values()))
    assert used_secrets == declared_secrets
    secrets_folder = DEPLOY / "compose" / "secrets"
    for name, secret in compose()["secrets"].items():
        # A file that nobody commits: made by the header's commands, ignored by git.
        path = (DEPLOY / secret["file"]).resolve()
        assert path.parent == secrets_folder, name
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False)
        assert ignored.returncode == 0, f"{path} is not ignored by git"


def test_every_codexgate_variable_is_a_real_setting() -> None:
    for path in (COMPOSE, INSTALL_DOC):
        named = set(re.findall(rf"\b{ENV_PREFIX}[A-Z0-9_]+", path.read_text()))
        assert named, path
        assert named <= SETTING_VARIABLES, f"{path.name}: {sorted(named - SETTING_VARIABLES)}"


def test_depends_on_names_services_that_exist_and_can_be_healthy() -> None:
    for name, service in services().items():
        for target, condition in depends_on_of(service).items():
            assert target in services(), f"{name} depends on {target}"
            if condition == "service_healthy":
                has_check = "healthcheck" in services()[target]
                if target in CODEXGATE_SERVICES:
                    has_check = has_check or image_has_healthcheck()
                assert has_check, f"{name} waits for {target} to be healthy: it has no check"
    for name in CODEXGATE_SERVICES:
        assert depends_on_of(services()[name]) == {"postgres": "service_healthy"}


def test_the_header_commands_make_every_secret_and_they_agree(made_secrets: Path) -> None:
    install = INSTALL_DOC.read_text()
    for command in header_commands():
        assert f"\n{command}\n" in install, f"docs/install.md lacks: {command}"
    assert {path.name for path in made_secrets.iterdir()} == set(compose()["secrets"])
    assert stat.S_IMODE(made_secrets.stat().st_mode) == 0o700
    for path in made_secrets.iterdir():
        # codexgate runs as a user of its own in the container, and compose mounts each file as
        # it is: the others of this machine are kept out by the folder.
        assert stat.S_IMODE(path.stat().st_mode) & stat.S_IROTH, path
    postgres = environment_of(services()["postgres"])
    password = (made_secrets / "postgres_password").read_text().strip()
    assert len(password) >= 24
    assert postgres["POSTGRES_PASSWORD_FILE"] == str(SECRETS_IN_CONTAINER / "postgres_password")
    url = PostgresURL((made_secrets / "codexgate_db_url").read_text().strip())
    user, database = postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]
    assert url.dsn == f"postgresql://{user}:{password}@postgres:5432/{database}"


def test_the_codexgate_services_start_with_the_secrets(made_secrets: Path) -> None:
    """The image's environment, then the service's: codexgate takes the database URL and the
    admin token from the secret files, listens where nginx sends, and is given time to drain."""
    secret_files = {name: made_secrets / name for name in compose()["secrets"]}
    for name in CODEXGATE_SERVICES:
        config = service_config(name, secret_files)
        assert isinstance(config.db, PostgresURL), name
        assert config.db.dsn == (made_secrets / "codexgate_db_url").read_text().strip()
        assert config.admin_token == (made_secrets / "codexgate_admin_token").read_text().strip()
        assert config.host == "0.0.0.0"  # nginx reaches it from another container
        assert config.max_connections_per_address == 0  # every client comes from nginx
        grace = services()[name]["stop_grace_period"]
        assert float(grace.removesuffix("s")) >= config.shutdown_grace + STOP_MARGIN


def test_nginx_sends_to_the_codexgate_services_on_their_port(made_secrets: Path) -> None:
    secret_files = {name: made_secrets / name for name in compose()["secrets"]}
    expected = [f"{name}:{service_config(name, secret_files).port}" for name in CODEXGATE_SERVICES]
    assert upstream_servers(NGINX_CONF.read_text()) == expected
    mounts = services()["nginx"]["volumes"]
    assert mounts == ["./compose/nginx.conf:/etc/nginx/conf.d/default.conf:ro"]
    _, _, container_port = published_port()
    assert re.search(rf"^\s*listen {container_port};", NGINX_CONF.read_text(), re.MULTILINE)


def test_the_nginx_conf_keeps_the_tested_settings_of_the_deployment_docs() -> None:
    assert nginx_statements(NGINX_CONF.read_text()) == nginx_statements(documented_nginx())


def test_the_published_port_is_the_one_install_md_gives() -> None:
    address, host_port, _ = published_port()
    assert address == "127.0.0.1"
    install = INSTALL_DOC.read_text()
    assert f"http://{address}:{host_port}/codexgate/" in install
    assert f'"{address}:{host_port}:' in install  # where it says how to open it to others


def compose_command() -> list[str] | None:
    """`docker compose` (v2) or `docker-compose`, whichever this machine has, or None."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return None if legacy is None else [legacy]


def test_docker_compose_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    done = subprocess.run(
        [*command, "-f", COMPOSE, "config", "-q"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


class AddressedGateway(GatewayProcess):
    """A codexgate process whose --host is a loopback address other than 127.0.0.1."""

    def __init__(self, host: str, args: list[str], workdir: Path, **options: Any) -> None:
        self.host = host
        super().__init__([*args, "--host", host], workdir, **options)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


def loopback_pair(port: int) -> tuple[str, str]:
    """Two addresses of the loopback network, both free on `port`, for the two instances: the
    compose services share one port, each at its own address."""
    for _ in range(20):
        prefix = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}"
        pair = (f"{prefix}.1", f"{prefix}.2")
        try:
            for address in pair:
                with socket.socket() as probe:
                    probe.bind((address, port))
        except OSError:
            continue
        return pair
    raise AssertionError(f"no two free loopback addresses for port {port}")


@dataclass
class Instances:
    """The fake upstream and the two codexgate services as processes, by service name."""

    gateways: dict[str, AddressedGateway]
    upstream: UpstreamProcess


@pytest.fixture
async def instances(tmp_path: Path, postgres_database: str) -> AsyncIterator[Instances]:
    """The codexgate services started with their compose environment on top of the image's,
    the secrets holding this test's database URL and token; only --host and --upstream added."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    contents = {"codexgate_db_url": postgres_database, "codexgate_admin_token": ADMIN}
    secret_files = {name: folder / name for name in contents}
    for name, text in contents.items():
        secret_files[name].write_text(text + "\n")
    port = service_config(CODEXGATE_SERVICES[0], secret_files).port
    upstream = UpstreamProcess(free_port(), EVENT_DELAY, DELTAS, tmp_path / "upstream.log")
    gateways: dict[str, AddressedGateway] = {}
    try:
        await upstream.wait_ready()
        for name, address in zip(CODEXGATE_SERVICES, loopback_pair(port), strict=True):
            workdir = tmp_path / name
            workdir.mkdir()
            gateways[name] = AddressedGateway(
                address,
                ["serve", "--upstream", upstream.base],
                workdir,
                env=container_environment(name, secret_files),
                port=port,
            )
        await asyncio.gather(*(gateway.wait_ready() for gateway in gateways.values()))
        yield Instances(gateways, upstream)
    finally:
        for gateway in gateways.values():
            await gateway.stop()
        await upstream.kill()


async def test_the_mounted_nginx_conf_streams_a_turn_to_the_codexgate_services(
    tmp_path: Path, instances: Instances
) -> None:
    nginx_port = free_port()
    config = NGINX_CONF.read_text()
    _, _, container_port = published_port()
    replacements = {f"listen {container_port};": f"listen 127.0.0.1:{nginx_port};"}
    for name, gateway in instances.gateways.items():
        replacements[f"server {name}:"] = f"server {gateway.host}:"
    for written, here in replacements.items():
        assert config.count(written) == 1, written
        config = config.replace(written, here)
    balancer = start_nginx(tmp_path / "nginx", config, nginx_port)
    try:
        await balancer.wait_ready()
        async with ClientSession(timeout=ClientTimeout(total=30)) as http:
            arrivals: list[float] = []
            body = b""
            async with http.post(
                f"{balancer.base}/backend-api/codex/responses",
                data=b"{}",
                headers={"Authorization": bearer("seat_a")},
            ) as response:
                assert response.status == 200, await response.text()
                async for piece in response.content.iter_any():
                    arrivals.append(time.monotonic())
                    body += piece
            events = sse_events("stream-basic.sse")
            assert body == b"".join([*events[:3], *[events[2]] * DELTAS, *events[3:]])
            spread = arrivals[-1] - arrivals[0]
            assert spread > 0.6 * TURN_SECONDS, f"{len(arrivals)} piece(s) in {spread:.2f} s"

            # Through nginx, with the admin token of the secret file: both instances share the
            # database of the secret URL, and the turn is recorded there.
            async def admin_get(path: str) -> Any:
                async with http.get(
                    f"{balancer.base}/codexgate/api/v1/{path}",
                    headers={"Authorization": f"Bearer {ADMIN}"},
                ) as answer:
                    assert answer.status == 200, await answer.text()
                    return orjson.loads(await answer.read())

            pids = {gateway.process.pid for gateway in instances.gateways.values()}
            await eventually(
                lambda: admin_get("instances"),
                accept=lambda found: {i["pid"] for i in found["instances"] if i["alive"]} == pids,
            )
            requests = await eventually(lambda: admin_get("requests"), accept=lambda r: r["items"])
            assert [item["path"] for item in requests["items"]] == ["/backend-api/codex/responses"]
    finally:
        await balancer.stop()
