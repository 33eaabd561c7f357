"""Mail that comes back: delivery reports, complaints, mails to the unsubscribe address, and relays' webhook events.

- :mod:`~newsletter.inbound.classify`: what one message says (pure: bytes in, a :class:`Feedback` out).
- :mod:`~newsletter.inbound.mailboxes`: where messages are read (a Maildir folder, an IMAP mailbox); imaplib's home.
- :mod:`~newsletter.inbound.apply`: matching feedback to a delivery or a subscriber by its signed tag, and acting on it.
"""
