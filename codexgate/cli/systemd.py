"""Telling systemd how the gateway is doing, when a `Type=notify` unit started it.

systemd passes the address of its notification socket in `NOTIFY_SOCKET`; `READY=1` sent there
makes `systemctl start` return only once the gateway listens, which a rolling restart needs
before it stops the old instance. Without the variable nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Final

log = logging.getLogger(__name__)

READY: Final = "READY=1"
STOPPING: Final = "STOPPING=1"


def notify(state: str) -> None:
    """Send `state` to systemd's notification socket, if systemd gave one; never raises."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket: its name starts with a NUL byte
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        # Never wait on the event loop: systemd reads these at once, a full queue is its problem.
        sock.setblocking(False)
        try:
            sock.sendto(state.encode(), address)
        except OSError as exc:
            log.warning("could not tell systemd %s: %s", state, exc)
