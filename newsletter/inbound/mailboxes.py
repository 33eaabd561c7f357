"""Where mail that comes back is read: a Maildir folder (a mail server that delivers to disk) or an IMAP mailbox;
imaplib's home. Reads each message once; knows nothing of what messages mean.

A :class:`Mailbox` yields the messages not read before and is told, for each, whether it was handled. Maildir: a new
message (``new/``) moves to ``cur/`` once read, flagged seen (``S``) when handled; what was left alone stays unread
for a person. IMAP: messages above the last UID read (kept in the database per mailbox and UIDVALIDITY); handled ones
are flagged ``\\Seen``, the rest are left untouched for a person.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ingest.core.config import Settings
from ingest.core.errors import MailboxError
from ingest.store import Store

__all__ = ["Incoming", "Mailbox", "open_mailbox"]

_FETCHED_UID = re.compile(rb"UID (\d+)")


@dataclass(frozen=True, slots=True)
class Incoming:
    key: str  # the Maildir file name, or the IMAP UID
    data: bytes


class Mailbox(Protocol):
    name: str

    def new(self) -> Iterator[Incoming]:
        """The messages not read before, oldest first."""
        ...

    def done(self, message: Incoming, *, handled: bool) -> None:
        """``message`` was read: never yield it again; mark it seen when ``handled``."""
        ...

    def close(self) -> None: ...


class MaildirBox:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = str(folder)
        if not (folder / "new").is_dir() or not (folder / "cur").is_dir():
            raise MailboxError(f"[inbound] maildir {folder}: not a Maildir folder (no new/ and cur/ in it)")

    def new(self) -> Iterator[Incoming]:
        try:
            names = sorted(n for n in os.listdir(self.folder / "new") if not n.startswith("."))
        except OSError as exc:
            raise MailboxError(f"[inbound] maildir {self.folder}: cannot read it: {exc.strerror}") from None
        for name in names:
            path = self.folder / "new" / name
            if not path.is_file() or path.is_symlink():
                continue
            try:
                yield Incoming(name, path.read_bytes())
            except FileNotFoundError:  # another reader took it meanwhile
                continue

    def done(self, message: Incoming, *, handled: bool) -> None:
        # Maildir: a message read moves to cur/ with its info ":2,FLAGS" (S: seen), in one rename.
        base = message.key.partition(":")[0]
        target = self.folder / "cur" / f"{base}:2,{'S' if handled else ''}"
        try:
            os.replace(self.folder / "new" / message.key, target)
        except OSError as exc:
            raise MailboxError(f"[inbound] maildir {self.folder}: cannot move {message.key}: {exc.strerror}") from None

    def close(self) -> None:
        return None


class ImapBox:
    def __init__(self, settings: Settings, store: Store) -> None:
        c = settings.inbound
        self.store = store
        self.name = f"imap://{c.username}@{c.host}:{c.port}/{c.folder}"
        self._progress_key = f"inbound {self.name}"
        password = settings.imap_password.get_secret_value() if settings.imap_password else ""
        context = _trusting(c.ca_file)
        conn: imaplib.IMAP4 | None = None
        try:
            if c.security == "tls":
                conn = imaplib.IMAP4_SSL(c.host, c.port, ssl_context=context, timeout=c.timeout)
            else:
                conn = imaplib.IMAP4(c.host, c.port, timeout=c.timeout)
                conn.starttls(ssl_context=context)
            conn.login(c.username, password)
            status, data = conn.select(_quoted(c.folder))
            if status != "OK":
                raise MailboxError(f"{self.name}: cannot open the folder: {_said(data)}")
            # "* OK [UIDVALIDITY n]": UIDs read before mean nothing once it changes (the folder was made anew).
            validity = conn.response("UIDVALIDITY")[1]
            self.validity = validity[0].decode("ascii", "replace") if validity and validity[0] else "0"
        except (imaplib.IMAP4.error, OSError) as exc:
            if conn is not None:
                _shut(conn)
            raise MailboxError(f"{self.name}: {_reason(exc)}") from None
        self.conn = conn

    def _last(self) -> int:
        stored = (self.store.meta_value(self._progress_key) or "").split(":")
        return int(stored[1]) if len(stored) == 2 and stored[0] == self.validity and stored[1].isdigit() else 0

    def new(self) -> Iterator[Incoming]:
        last = self._last()
        try:
            status, data = self.conn.uid("SEARCH", f"UID {last + 1}:*")
            if status != "OK":
                raise MailboxError(f"{self.name}: search refused: {_said(data)}")
            # "N:*" always matches the highest UID, even below N.
            uids = sorted(u for u in (int(x) for x in (data[0] or b"").split()) if u > last)
            for uid in uids:
                status, parts = self.conn.uid("FETCH", str(uid), "(UID BODY.PEEK[])")
                body = next((p[1] for p in parts if isinstance(p, tuple) and _FETCHED_UID.search(p[0])), None)
                if status == "OK" and body is not None:
                    yield Incoming(str(uid), body)
                else:  # gone meanwhile (expunged by a person): nothing to read
                    self.store.set_meta(self._progress_key, f"{self.validity}:{uid}")
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"{self.name}: {_reason(exc)}") from None

    def done(self, message: Incoming, *, handled: bool) -> None:
        try:
            if handled:
                self.conn.uid("STORE", message.key, "+FLAGS", "(\\Seen)")
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"{self.name}: {_reason(exc)}") from None
        self.store.set_meta(self._progress_key, f"{self.validity}:{message.key}")

    def close(self) -> None:
        _shut(self.conn)


def open_mailbox(settings: Settings, store: Store) -> Mailbox:
    """The ``[inbound]`` source. Raises :class:`MailboxError` when it cannot be opened."""
    if settings.inbound.source == "maildir":
        return MaildirBox(settings.inbound.maildir)
    if settings.inbound.source == "imap":
        if not settings.inbound.host or not settings.inbound.username:
            raise MailboxError("[inbound] source = 'imap' needs [inbound] host and username")
        return ImapBox(settings, store)
    raise MailboxError("[inbound] source is 'none': set it to 'maildir' or 'imap' to read mail that comes back")


def _trusting(ca_file: Path | None) -> ssl.SSLContext:
    """A context checking the server's certificate against ``ca_file``'s CAs, or the system's."""
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError:
        raise MailboxError(f"[inbound] ca_file {ca_file}: no PEM certificate in it") from None
    except OSError as exc:
        raise MailboxError(f"[inbound] ca_file {ca_file}: {exc.strerror}") from None


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data: object) -> str:
    if isinstance(data, list) and data and isinstance(data[0], bytes):
        return data[0].decode("utf-8", "replace")
    return str(data)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, imaplib.IMAP4.error):
        said = exc.args[0] if exc.args else ""
        text = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)  # the server's words
        return f"login refused: {text}" if "AUTHENTICATIONFAILED" in text or "LOGIN" in text.upper() else text
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the server's certificate is not trusted ({exc.verify_message}): "
            "[inbound] ca_file names the CA that signed it"
        )
    return f"cannot connect: {exc}"


def _shut(conn: imaplib.IMAP4) -> None:
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        conn.logout()
