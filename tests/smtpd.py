"""A real SMTP server on 127.0.0.1 (aiosmtpd, port 0) for tests and benchmarks: it records what it receives and
answers 4xx or 5xx on demand for chosen recipients.

``with SmtpSink() as sink:``. ``sink.soft[address] = n`` answers the next ``n`` RCPTs for that address with 450;
``sink.hard.add(address)`` answers 550 at RCPT; ``sink.hard_data`` 554 after DATA; ``sink.hang`` never answers DATA
for those addresses (the client's timeout fires); ``sink.on_message`` runs for every accepted message before the 250
goes back (the SIGKILL test kills the sender from there). ``sink.mail_reply``, ``rcpt_reply`` and ``data_reply``,
when set, answer every MAIL, RCPT and message (a server closing with 421, one answering 451 to all);
``sink.mail_calls`` and ``data_calls`` count the MAIL commands and the messages that reached the end of DATA.
``sink.delay`` seconds pass before each DATA is answered (a relay's latency); ``sink.hold_until = n`` answers no DATA
until ``n`` messages wait for their answer at once (proof that ``n`` connections send together); ``sink.peers``
counts the messages of each client connection. ``tls`` and ``starttls`` take an ``ssl.SSLContext``; ``logins`` turns
AUTH on; ``keep=False`` only counts what arrives, per recipient too (``sink.recipients``; benchmarks).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True, slots=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    def parsed(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        with self.sink.lock:
            self.sink.mail_calls += 1
            if self.sink.mail_reply is not None:
                return self.sink.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        sink = self.sink
        with sink.lock:
            sink.rcpt_calls[address] += 1
            if sink.rcpt_reply is not None:
                return sink.rcpt_reply
            if sink.soft.get(address, 0) > 0:
                sink.soft[address] -= 1
                return "450 4.2.1 mailbox busy, try again later"
            if address in sink.hard:
                return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        sink = self.sink
        rcpts = tuple(envelope.rcpt_tos)
        with sink.lock:
            sink.data_calls += 1
            if sink.data_reply is not None:
                return sink.data_reply
        if sink.hold_until:
            sink.waiting += 1
            if sink.waiting >= sink.hold_until:
                sink.held.set()
            await sink.held.wait()
        if sink.delay:
            await asyncio.sleep(sink.delay)
        if any(r in sink.hang for r in rcpts):
            await sink.released.wait()
            return "451 4.3.0 gave up"
        if any(r in sink.hard_data for r in rcpts):
            return "554 5.7.1 message refused"
        content = envelope.original_content or b""
        assert isinstance(content, bytes)
        got = Received(str(envelope.mail_from), rcpts, content)
        with sink.lock:
            sink.count += 1
            sink.recipients.update(rcpts)
            sink.peers[str(session.peer)] += 1
            if sink.keep:
                sink.messages.append(got)
        if sink.on_message is not None:
            sink.on_message(got)
        return "250 2.0.0 queued"


class SmtpSink:
    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
        logins: dict[str, str] | None = None,
        keep: bool = True,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.lock = threading.Lock()
        self.messages: list[Received] = []
        self.rcpt_calls: Counter[str] = Counter()
        self.soft: dict[str, int] = {}
        self.hard: set[str] = set()
        self.hard_data: set[str] = set()
        self.hang: set[str] = set()
        self.mail_reply: str | None = None
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None
        self.mail_calls = 0
        self.data_calls = 0
        self.on_message: Callable[[Received], None] | None = None
        self.logins = logins
        self.keep = keep  # False: count messages, keep none (benchmarks)
        self.count = 0
        self.recipients: Counter[str] = Counter()
        self.peers: Counter[str] = Counter()
        self.delay = 0.0
        self.hold_until = 0
        self.waiting = 0
        self.auth_seen: list[str] = []
        self._tls = tls
        self._starttls = starttls
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self.released: asyncio.Event
        self.held: asyncio.Event

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self.logins is not None
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.logins.get(user) == password:
                self.auth_seen.append(user)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def _factory(self) -> SMTP:
        kwargs: dict[str, Any] = {"hostname": "sink.test", "enable_SMTPUTF8": True}
        if self._starttls is not None:
            kwargs.update(tls_context=self._starttls, require_starttls=True)
        if self.logins is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=True)
        return SMTP(_Handler(self), **kwargs)

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self.released = asyncio.Event()
            self.held = asyncio.Event()
            self._server = self._loop.run_until_complete(
                self._loop.create_server(self._factory, self.host, 0, ssl=self._tls)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="smtp-sink", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return

        async def shutdown() -> None:
            self.released.set()
            self.held.set()
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def received_by(self) -> Counter[str]:
        """How many messages each recipient got."""
        with self.lock:
            return Counter(r for m in self.messages for r in m.rcpt_tos)
