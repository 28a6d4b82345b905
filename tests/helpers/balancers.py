"""A load balancer (Debian's nginx, or any program given a config) in the foreground, as a child
of a test, in front of codexgate processes: for the configurations the docs and deploy/ ship."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.helpers.processes import wait_answering

NGINX: Final = Path("/usr/sbin/nginx")  # Debian's; not on a regular user's PATH

# Only what nginx needs around a file meant for its http block to run unprivileged in a temporary
# folder: pid, logs and temporary files there, no access log.
NGINX_MAIN: Final = """\
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    include {dir}/codexgate.conf;
}}
"""


@dataclass
class Balancer:
    """nginx or HAProxy in the foreground, as a child of the test."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self) -> None:
        """Wait until healthz answers through it, or fail with its log."""
        if not await wait_answering(f"{self.base}/codexgate/healthz", self.process, 15):
            raise AssertionError(f"the balancer did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(self.process.wait), 10)
            except TimeoutError:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)


def checked_config(command: list[str | Path]) -> None:
    """Run a balancer's own configuration check: it must pass without a warning."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "warn" not in said.lower(), said


def start_nginx(workdir: Path, http_block: str, port: int) -> Balancer:
    """Debian's nginx with `http_block` (a file for nginx's http block, listening on 127.0.0.1
    at `port`), wrapped in NGINX_MAIN, checked with `nginx -t`, in the foreground."""
    assert NGINX.exists(), "nginx is missing: `make test` installs Debian's nginx"
    workdir.mkdir()
    (workdir / "codexgate.conf").write_text(http_block)
    (workdir / "nginx.conf").write_text(NGINX_MAIN.format(dir=workdir))
    # The error log in the folder, not /var/log/nginx, which a user may not write.
    options: list[str | Path] = ["-p", workdir, "-c", workdir / "nginx.conf"]
    options += ["-e", workdir / "error.log"]
    checked_config([NGINX, "-t", "-q", *options])
    log_path = workdir / "stderr.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [NGINX, *options, "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT
        )
    return Balancer(process, port, log_path)
