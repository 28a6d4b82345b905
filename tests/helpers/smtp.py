"""A real SMTP server (aiosmtpd) on loopback with STARTTLS, and the self-signed certificate it
uses, made by the openssl command for each run (nothing is kept in the repository)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

PASSWORD = "XsmtpXpasswordXsecretX"  # the one password the server takes, for user "alerts"


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and its key."""

    cert: Path
    key: Path


def make_certificate(folder: Path) -> Certificate:
    """A fresh certificate for 127.0.0.1, made by openssl (which `make test` installs)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed; run `make test` (it installs Debian's openssl)")
    made = Certificate(folder / "cert.pem", folder / "key.pem")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=codexgate test",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(made.key), "-out", str(made.cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return made


@dataclass(frozen=True)
class Mail:
    """One mail as the server took it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    over_tls: bool
    login: bytes | None

    @property
    def text(self) -> str:
        return str(self.message.get_content()).replace("\r\n", "\n")


@dataclass
class Inbox:
    """What the SMTP server took, and DATA answers to give before taking anything."""

    mails: list[Mail] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Take a mail, or give the next scripted refusal."""
        if self.refusals:
            return self.refusals.pop(0)
        parsed = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data if isinstance(session.auth_data, bytes) else None
        over_tls = session.ssl is not None
        self.mails.append(
            Mail(envelope.mail_from or "", list(envelope.rcpt_tos), parsed, over_tls, login)
        )
        return "250 OK"


def _check_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD.encode()
    # handled=False: aiosmtpd answers (235, or 535 on a wrong password) itself.
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


@dataclass
class SmtpServer:
    """A running server: its inbox and port."""

    inbox: Inbox
    port: int
    server: asyncio.Server


async def start_smtp(certificate: Certificate | None) -> SmtpServer:
    """Serve SMTP on 127.0.0.1 in the running loop; with a certificate, STARTTLS is required."""
    inbox = Inbox()
    context = None
    if certificate is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate.cert, certificate.key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            inbox,
            hostname="codexgate-test",  # else it asks DNS for this machine's name
            tls_context=context,
            require_starttls=context is not None,
            authenticator=_check_login,
            auth_require_tls=True,
        ),
        "127.0.0.1",
        0,
    )
    return SmtpServer(inbox, server.sockets[0].getsockname()[1], server)
