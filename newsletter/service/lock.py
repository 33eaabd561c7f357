"""The single-instance lock: one ``newsletter run`` per SQLite database, held for the process's life. Nothing else.

An exclusive ``flock`` on ``<database>.lock``: the kernel drops it when the process dies, so a crash never leaves it
stuck (decision 0011). Other engines need no lock: processes sharing PostgreSQL coordinate through the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from typing import IO

from ingest.core.config import Settings
from ingest.core.errors import StoreError
from ingest.store import instance_lock_path

__all__ = ["SingleInstanceError", "instance_lock"]


class SingleInstanceError(StoreError):
    """Another ``newsletter run`` holds the database."""


@contextlib.contextmanager
def instance_lock(settings: Settings) -> Iterator[None]:
    """On SQLite, one ``newsletter run`` per database: an exclusive lock on ``<database>.lock`` for the process's
    life (the kernel drops it if the process dies, so a crash never leaves it stuck). Other engines: no lock."""
    url = settings.storage.url
    path = instance_lock_path(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = path.open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SingleInstanceError(
                f"{url.removeprefix('sqlite:///')}: another `newsletter run` is already using this database "
                f"(pid {holder}); stop it first, or point [storage] url at another database"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
