"""The one exception tree of the service.

    NewsletterError                 anything the service reports to a person rather than crashing on
     ├── ConfigError                the config file or an environment override is wrong (CLI exit 2)
     ├── UsageError                 a command-line argument is wrong (bad URL, unknown id; CLI exit 2)
     │    └── AddressError          an email address that cannot be used (named, with the reason)
     ├── StoreError                 the database cannot be used (CLI exit 2)
     │    ├── SchemaTooNewError     the database was written by a newer version of this code
     │    ├── StoreBusyError        another process held the write lock past [storage] busy_timeout: nothing written
     │    ├── StoreFullError        the disk (or the database server's) is full: the transaction was rolled back
     │    └── StoreUnreachableError the database server cannot be reached (down, refused): nothing written
     ├── OutputError                a folder we write cannot be written (read-only, full): the files there stay as
     │                              they were (CLI exit 2)
     ├── TransportError             the mail server cannot be reached or refuses us: the run stops, nothing is lost
     ├── MailboxError               the [inbound] mailbox cannot be read: nothing read from it is lost
     └── SourceError                one source failed; stored on the source, the others go on
          └── PageError             a seed page cannot be read (empty, binary, undecodable, too big)

Only errors that are not bugs are wrapped: a bug surfaces with its traceback.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base class: a failure with a message meant for a person."""


class ConfigError(NewsletterError):
    """The config file or an environment override is invalid."""


class UsageError(NewsletterError):
    """A command-line argument is invalid."""


class AddressError(UsageError):
    """An email address that cannot be used; the message names it and says why."""


class TransportError(NewsletterError):
    """The mail server cannot be reached or refuses us (not one recipient): the run stops, nothing is lost."""


class MailboxError(NewsletterError):
    """The ``[inbound]`` mailbox (Maildir folder, IMAP server) cannot be read; what was read is kept."""


class StoreError(NewsletterError):
    """The database cannot be opened or used."""


class SchemaTooNewError(StoreError):
    """The database schema is newer than this code understands."""


class StoreBusyError(StoreError):
    """Another process held the database's write lock for longer than we wait; this command wrote nothing."""


class StoreFullError(StoreError):
    """The disk holding the database is full; the transaction was rolled back, nothing stored before is lost."""


class StoreUnreachableError(StoreError):
    """The database server could not be connected to; nothing was read or written."""


class OutputError(NewsletterError):
    """A folder the service writes (the published feeds) cannot be written; what was there before is unchanged."""


class SourceError(NewsletterError):
    """One source failed; the error is stored on the source."""


class PageError(SourceError):
    """A seed page cannot be read."""
