"""Email addresses in the one canonical form we store and send to. The only home of email-validator. No I/O.

The canonical form is the envelope recipient: lower case, the domain in ASCII (an internationalized domain becomes
its ``xn--`` form, so ``bücher.example`` and ``xn--bcher-kva.example`` are one subscriber). A local part outside ASCII
(SMTPUTF8) is refused with a clear message: most relays cannot carry it.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from ingest.core.errors import AddressError

__all__ = ["MAX_ADDRESS", "normalize"]

MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3: the longest forward-path


def normalize(raw: str) -> str:
    """The canonical form of ``raw``, or :class:`AddressError` naming it and the reason."""
    text = raw.strip()
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
