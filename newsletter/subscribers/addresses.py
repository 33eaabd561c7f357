"""Email addresses in the one canonical form we store and send to. The only home of email-validator. No I/O.

The canonical form is the envelope recipient: lower case, the domain in ASCII (an internationalized domain becomes
its ``xn--`` form, so ``bücher.example`` and ``xn--bcher-kva.example`` are one subscriber). A local part outside ASCII
(SMTPUTF8) is refused with a clear message: most relays cannot carry it.
"""

from __future__ import annotations

import re

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from ingest.core.errors import AddressError

__all__ = ["MAX_ADDRESS", "normalize"]

MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3: the longest forward-path
MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1

# The plain case, already canonical: a lower-case dot-atom local part, LDH labels, an alphabetic top-level label. Such
# an address is what email-validator returns unchanged, so the check of every stored address at each send (issue 13)
# takes a regular expression, not a parse (about 0.2 ms an address: 2 s of a 10,000-subscriber digest). Anything else
# (upper case, IDNA ``xn--`` labels, quoted local parts, special-use domains, lengths at the limits) takes the full
# check.
_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+[a-z]{{2,63}}")


def normalize(raw: str) -> str:
    """The canonical form of ``raw``, or :class:`AddressError` naming it and the reason."""
    text = raw.strip()
    if _plain(text):
        return text
    if not text:
        raise AddressError("an empty email address")
    if len(text) > MAX_ADDRESS:
        raise AddressError(f"{text[:40]!r}...: not a valid email address: longer than {MAX_ADDRESS} characters")
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise AddressError(f"{text!r}: not a valid email address: {exc}") from None
    address = checked.ascii_email
    if address is None:  # only without SMTPUTF8, which we refuse above
        raise AddressError(f"{text!r}: not a valid email address")
    return address.lower()


def _plain(text: str) -> bool:
    """``text`` is an address in canonical form that email-validator would accept unchanged (see :data:`_PLAIN`)."""
    if len(text) > MAX_ADDRESS or not _PLAIN.fullmatch(text):
        return False
    local, _, domain = text.rpartition("@")
    labels = domain.split(".")
    return (
        len(local) <= MAX_LOCAL
        and not any(label.startswith("xn--") or label[2:4] == "--" for label in labels)
        and not any(domain == d or domain.endswith(f".{d}") for d in SPECIAL_USE_DOMAIN_NAMES)
    )
