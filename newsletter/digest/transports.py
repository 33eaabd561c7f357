"""The ``outbox`` and ``smtp`` transports, one message at a time; smtplib's only home. Knows no digest, no database.

A transport knows nothing of digests, subscribers or the database: it takes an envelope and bytes and says what
became of them (:class:`SendResult`). Answers: 2xx sent; 4xx, timeouts and a lost connection retry later; 5xx failed.
After a 421 the server closes the connection (RFC 5321 3.8), so we drop it too; the next message opens a new one.
A transport that cannot send at all (no connection, login refused, an outbox it cannot write) raises
:class:`TransportError`.
"""

from __future__ import annotations

import os
import re
import secrets
import smtplib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from ingest.core.config import Settings
from ingest.core.errors import TransportError
from newsletter.digest import compose
from newsletter.digest.dkim import signer as dkim_signer

__all__ = [
    "OutboxTransport",
    "SendResult",
    "SmtpTransport",
    "Transport",
    "TransportError",
    "open_transport",
    "open_transports",
    "send",
    "send_one",
]

_DOT = re.compile(rb"(?m)^\.")


#: RFC 5321 3.8: "service not available, closing transmission channel": about the server, not the recipient.
CLOSING = 421


@dataclass(frozen=True, slots=True)
class SendResult:
    status: Literal["sent", "retry", "failed"]
    reply: str
    code: int = 0  # the SMTP reply code; 0 when there was none (a timeout, a lost connection, the outbox)


class Transport(Protocol):
    """Sends one message at a time, in three steps so the caller can work while the server does:

    :meth:`submit` hands over everything but the very end (SMTP: the message without its final ``.`` line; outbox:
    a temp file), :meth:`finish` ends it (the server may now accept it), :meth:`result` waits for the verdict. Until
    :meth:`finish`, nothing can have been delivered.
    """

    def submit(self, sender: str, recipient: str, message: bytes, name: str) -> None:
        """Start sending ``message`` to ``recipient`` (the envelope: the subscriber's address, checked again by the
        caller); ``name`` is unique per delivery. Raises :class:`TransportError` when nothing can be sent at all."""
        ...

    def finish(self) -> None:
        """Let the message of the last :meth:`submit` go."""
        ...

    def result(self) -> SendResult:
        """What became of it."""
        ...

    def close(self) -> None: ...


def send(transport: Transport, sender: str, recipient: str, message: bytes, name: str) -> SendResult:
    """One message, start to end."""
    transport.submit(sender, recipient, message, name)
    transport.finish()
    return transport.result()


class OutboxTransport:
    """One ``.eml`` file per message in ``[mail] outbox_dir``, written atomically (temp file, fsync, rename): the
    rename is the delivery, and a second delivery of the same message replaces the first file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._temp: Path | None = None
        self._target: Path | None = None

    def submit(self, sender: str, recipient: str, message: bytes, name: str) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._target = self.folder / f"{name}.eml"
            self._temp = self.folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            with self._temp.open("wb") as fh:
                fh.write(message)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise TransportError(f"{self.folder}: cannot write to the outbox: {exc.strerror}") from None

    def finish(self) -> None:
        assert self._temp is not None
        assert self._target is not None
        try:
            os.replace(self._temp, self._target)
        except OSError as exc:
            raise TransportError(f"{self.folder}: cannot write to the outbox: {exc.strerror}") from None

    def result(self) -> SendResult:
        assert self._target is not None
        return SendResult("sent", f"written to {self._target.name}")

    def close(self) -> None:
        return None


class SmtpTransport:
    """One SMTP connection, reused for every message, reopened when the server drops it. Opened at the first message,
    so a connection with nothing to send never connects. (The sending rate is the caller's: it is shared.)"""

    def __init__(self, settings: Settings) -> None:
        self.config = settings.mail
        self.password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        self._conn: smtplib.SMTP | None = None
        self._early: SendResult | None = None  # an answer known before the message went (or the connection lost)

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        where = f"{c.host}:{c.port}"
        conn: smtplib.SMTP | None = None
        try:
            context = ssl.create_default_context()
            if c.security == "tls":
                conn = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=context)
            else:
                conn = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
            if conn.sock is not None:
                # The final "." goes apart from the message (see Transport): without this, Nagle's algorithm holds
                # it until the message is acknowledged, and delayed ACKs make that ~40 ms per message.
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.ehlo()
            if c.security == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if c.username:
                conn.login(c.username, self.password or "")
        except (smtplib.SMTPException, OSError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, smtplib.SMTPAuthenticationError):
                raise TransportError(f"SMTP {where}: login as {c.username!r} refused: {_reply(exc)}") from None
            if isinstance(exc, smtplib.SMTPNotSupportedError):
                raise TransportError(f"SMTP {where}: {exc}") from None
            raise TransportError(f"SMTP {where}: cannot connect: {exc}") from None
        return conn

    def submit(self, sender: str, recipient: str, message: bytes, name: str) -> None:
        """MAIL, RCPT, DATA and the message but its final "." line (:meth:`finish`); the answer is :meth:`result`."""
        self._early = None
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        try:
            code, resp = conn.mail(sender)
            if code == CLOSING:  # the server is going away, not refusing us: an answer like any other 421
                self._refused(code, resp)
                return
            if code != 250:
                self._reset()
                raise TransportError(f"SMTP server refuses the sender {sender}: {code} {_text(resp)}")
            code, resp = conn.rcpt(recipient)
            if code not in (250, 251):
                self._refused(code, resp)
                return
            code, resp = conn.docmd("data")
            if code != 354:
                self._refused(code, resp)
                return
            # RFC 5321 4.5.2: a line starting with "." gets another; the message ends with CRLF "." CRLF.
            body = _DOT.sub(b"..", message)
            conn.send(body if body.endswith(b"\r\n") else body + b"\r\n")
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as exc:
            self._lost(exc)

    def finish(self) -> None:
        if self._early is not None or self._conn is None:
            return
        try:
            self._conn.send(b".\r\n")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._lost(exc)

    def result(self) -> SendResult:
        if self._early is not None:
            return self._early
        conn = self._conn
        if conn is None:
            return SendResult("retry", "connection lost")
        try:
            code, resp = conn.getreply()
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as exc:
            return self._lost(exc)
        if code == CLOSING:
            self._drop()
        return _answer(code, resp)

    def _refused(self, code: int, resp: bytes) -> None:
        """An answer before the message went: the verdict is known early; the session is reset, or dropped when the
        server said it is closing."""
        if code == CLOSING:
            self._drop()
        else:
            self._reset()
        self._early = _answer(code, resp)

    def _lost(self, exc: BaseException) -> SendResult:
        self._drop()
        # The message may or may not have arrived: try again later (at worst a second copy, same Message-ID).
        self._early = SendResult("retry", f"connection lost: {exc or type(exc).__name__}")
        return self._early

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                self._drop()


def open_transport(settings: Settings) -> Transport:
    if settings.mail.transport == "smtp":
        return SmtpTransport(settings)
    return OutboxTransport(settings.mail.outbox_dir)


def open_transports(settings: Settings) -> list[Transport]:
    """The transports of one sending process: ``[mail] connections`` SMTP sessions, or the one outbox writer (files
    on one disk gain nothing from several writers)."""
    count = settings.mail.connections if settings.mail.transport == "smtp" else 1
    return [open_transport(settings) for _ in range(count)]


def send_one(settings: Settings, recipient: str, message: bytes, name: str) -> SendResult:
    """One message outside any digest (a confirmation, a test send), through the configured transport."""
    _, envelope_from = compose.sender(settings)
    dkim = dkim_signer(settings)
    transport = open_transport(settings)
    try:
        return send(transport, envelope_from, recipient, dkim.sign(message) if dkim else message, name)
    finally:
        transport.close()


def _text(resp: bytes | str) -> str:
    return (resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp).replace("\r\n", " ").strip()


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _answer(code: int, resp: bytes | str) -> SendResult:
    reply = f"{code} {_text(resp)}"
    if 200 <= code < 300:
        return SendResult("sent", reply, code)
    if 500 <= code < 600:
        return SendResult("failed", reply, code)
    return SendResult("retry", reply, code)  # 4xx, and anything odd: never give up on a surprise
