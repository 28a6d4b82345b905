"""Debian's nginx as the reverse proxy an administrator would put there instead of codexgate."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .processes import LOOPBACK, Service

PACKAGES: Final = ("nginx-light", "nginx")  # the smallest Debian build first
SBIN: Final = Path("/usr/sbin/nginx")  # not on a regular user's PATH
INSTALL_WITHIN: Final = 600.0
WORKER_CONNECTIONS: Final = 8192  # 1,000 idle streams are 2,000 connections, maybe on one worker
UPSTREAM_KEEPALIVE: Final = 128  # idle upstream connections each worker keeps, as codexgate does

# What an administrator would write to put nginx in front of the Codex backend: HTTP/1.1 with a
# keep-alive pool to the upstream, nothing buffered either way (SSE must flow event by event),
# WebSocket upgrades passed through, no access log (codexgate writes none either). With several
# upstream servers nginx takes them in turn (round-robin), each request to the next one.
CONFIG: Final = """\
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile {nofile};
events {{
    worker_connections {connections};
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    upstream codex {{
{servers}
        keepalive {keepalive};
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        "" "";
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://codex;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }}
    }}
}}
"""


def find() -> Path | None:
    """The nginx binary, on PATH or where Debian puts it."""
    found = shutil.which("nginx")
    if found is not None:
        return Path(found)
    return SBIN if os.access(SBIN, os.X_OK) else None


def _apt_prefix() -> list[str] | None:
    """How to run apt-get here: directly as root, through passwordless sudo, or not at all."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") is None:
        return None
    probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False)
    return ["sudo", "-n"] if probe.returncode == 0 else None


def install() -> tuple[Path | None, str]:
    """nginx, installed from Debian's packages if it is missing; the path and what happened."""
    found = find()
    if found is not None:
        return found, f"nginx found at {found}"
    prefix = _apt_prefix()
    if prefix is None:
        return None, "nginx is not installed and apt-get cannot run here as root or via sudo -n"
    print("installing Debian's nginx for the comparison (apt-get)", flush=True)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    try:
        subprocess.run(
            [*apt, "update", "-qq"], env=environment, check=False, timeout=INSTALL_WITHIN
        )
        for package in PACKAGES:
            installed = subprocess.run(
                [*apt, "install", "-y", "-qq", "--no-install-recommends", package],
                env=environment,
                stdout=subprocess.DEVNULL,
                check=False,
                timeout=INSTALL_WITHIN,
            )
            if installed.returncode == 0 and (found := find()) is not None:
                return found, f"installed {package}"
    except subprocess.TimeoutExpired:
        return None, f"installing nginx took over {INSTALL_WITHIN:g} s"
    return None, f"apt-get could not install any of {', '.join(PACKAGES)}"


def version(binary: Path) -> str:
    """`nginx/1.22.1`, as `nginx -v` prints it."""
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    text = (done.stderr or done.stdout).strip()
    return text.removeprefix("nginx version: ") or "nginx (unknown version)"


def workers() -> int:
    """One worker per core: nginx's own advice (`auto`) and what a deployment runs."""
    return os.cpu_count() or 1


def write_config(workdir: Path, port: int, upstream_ports: Sequence[int]) -> Path:
    """The config of a bench nginx listening on `port` in front of the upstream server(s)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "nginx.conf"
    path.write_text(
        CONFIG.format(
            workers=workers(),
            dir=workdir,
            nofile=2 * WORKER_CONNECTIONS,
            connections=WORKER_CONNECTIONS,
            host=LOOPBACK,
            servers="\n".join(
                f"        server {LOOPBACK}:{upstream};" for upstream in upstream_ports
            ),
            port=port,
            keepalive=UPSTREAM_KEEPALIVE,
        )
    )
    return path


def service(binary: Path, workdir: Path, port: int, upstream_ports: Sequence[int]) -> Service:
    """nginx in the foreground as a child of the bench, with its own prefix, config and logs."""
    config = write_config(workdir, port, upstream_ports)
    return Service(
        name="nginx",
        argv=[
            str(binary),
            "-p",
            str(workdir),
            "-c",
            str(config),
            "-e",
            str(workdir / "error.log"),  # not /var/log/nginx, which a user may not write
            "-g",
            "daemon off;",
        ],
        cwd=workdir,
        log_path=workdir / "stderr.log",
    )
