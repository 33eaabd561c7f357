"""DKIM signatures (RFC 6376) on the messages we send; dkimpy's home. Signs bytes; sends nothing.

Optional: with ``[mail] dkim_selector`` and ``dkim_domain`` set and the private key in the file
``NEWSLETTER_DKIM_KEY_FILE`` names (an RSA key in PEM, 2048 bits as the DNS allows), every message gets a
``DKIM-Signature`` (rsa-sha256, relaxed/relaxed) over From, To, Subject, Date, Message-ID, MIME-Version,
Content-Type, List-Id, and the List-Unsubscribe pair RFC 8058 section 4 asks to be signed (so a mailbox provider can
trust a one-click unsubscribe).
Each header is listed once more than it appears ("oversigning"), so nobody can add a second From or Subject after we
signed. The key is read and checked once, when the signer is made: a bad file is a config error, not a failed send.
"""

from __future__ import annotations

from pathlib import Path

import dkim

from ingest.core.config import Settings
from ingest.core.errors import ConfigError

__all__ = ["SIGNED_HEADERS", "Signer", "signer"]

SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"MIME-Version",
    b"Content-Type",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)
_KEY_ENV = "NEWSLETTER_DKIM_KEY_FILE"


class Signer:
    def __init__(self, selector: str, domain: str, key: bytes) -> None:
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("ascii")
        self.key = key

    def sign(self, message: bytes) -> bytes:
        """``message`` with its ``DKIM-Signature`` header in front."""
        present = {h.lower() for h in SIGNED_HEADERS if _has_header(message, h)}
        headers = [h for h in SIGNED_HEADERS if h.lower() in present] * 2  # signed, and signed as absent once more
        signature = dkim.sign(
            message,
            self.selector,
            self.domain,
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=b"rsa-sha256",
            include_headers=headers,
        )
        return bytes(signature) + message


def signer(settings: Settings) -> Signer | None:
    """The signer ``[mail]`` asks for, or None. Raises :class:`ConfigError` naming what is missing or wrong."""
    c = settings.mail
    if not c.dkim_selector and not c.dkim_domain:
        return None
    if not (c.dkim_selector and c.dkim_domain):
        raise ConfigError("[mail] dkim_selector and dkim_domain: set both (or neither) to sign messages with DKIM")
    path = settings.dkim_key_file
    if path is None:
        raise ConfigError(f"[mail] dkim_selector is set: {_KEY_ENV} must name the file of the DKIM private key")
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{_KEY_ENV}={path}: cannot read the DKIM private key: {exc.strerror}") from None
    made = Signer(c.dkim_selector, c.dkim_domain, key)
    try:
        made.sign(b"From: check@example.org\r\nSubject: check\r\n\r\ncheck\r\n")
    except (dkim.DKIMException, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"{_KEY_ENV}={path}: not a usable PEM private key for DKIM ({exc})") from None
    return made


def _has_header(message: bytes, name: bytes) -> bool:
    head = message.partition(b"\r\n\r\n")[0].lower()
    return head.startswith(name.lower() + b":") or b"\r\n" + name.lower() + b":" in head
