"""The part of the store every table family stands on: the engine, the dialect, a lock among processes, the meta table.

Each table family (``sources``, ``stories``, ...) is a mixin of :class:`StoreBase`; :class:`ingest.store.Store` is all
of them over one engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from ingest.core.links import DEFAULT_UID_AUTHORITY
from ingest.store import locks, schema

__all__ = ["StoreBase"]


class StoreBase:
    def __init__(self, engine: Engine, *, uid_authority: str = DEFAULT_UID_AUTHORITY) -> None:
        self.engine = engine
        self.uid_authority = uid_authority  # names us in new stories' tag: URIs

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this process may do ``name`` now, alone among the processes sharing the database.

        PostgreSQL: a session advisory lock of this schema (:mod:`ingest.store.locks`), held while the block runs
        (False when another process holds it).
        SQLite: always True: one ``newsletter run`` per SQLite database holds the instance lock.
        """
        if self.dialect != "postgresql":
            yield True
            return
        with self.engine.connect() as conn:
            got = locks.try_for_session(conn, name)
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    locks.release_for_session(conn, name)
                    conn.commit()

    def ping(self) -> None:
        """One round trip to the database; :class:`StoreError` when it cannot be reached (for the health check)."""
        with self.engine.connect() as conn:  # a failure to connect arrives as StoreUnreachableError (engine)
            conn.execute(select(1)).scalar_one()

    def meta_value(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == name)).scalar()
        return None if found is None else str(found)

    def set_meta(self, name: str, value: str) -> None:
        """Keep ``value`` under ``name`` in the meta table (replacing what was there)."""
        table = schema.meta
        with self.engine.begin() as conn:
            if not conn.execute(table.update().where(table.c.key == name).values(value=value)).rowcount:
                try:
                    with conn.begin_nested():
                        conn.execute(table.insert().values(key=name, value=value))
                except IntegrityError:  # another process inserted it a moment ago: ours is the newer value
                    conn.execute(table.update().where(table.c.key == name).values(value=value))

    def stored_secret(self, name: str, make: Callable[[], str]) -> tuple[str, bool]:
        """The value kept in the meta table under ``name``, created with ``make()`` on first use: (value, created).

        Two processes racing to create it both end with the one that was inserted first.
        """
        table = schema.meta
        with self.engine.begin() as conn:
            found = conn.execute(select(table.c.value).where(table.c.key == name)).scalar()
            if found is not None:
                return str(found), False
        try:
            with self.engine.begin() as conn:
                value = make()
                conn.execute(table.insert().values(key=name, value=value))
                return value, True
        except IntegrityError:
            with self.engine.connect() as conn:
                return str(conn.execute(select(table.c.value).where(table.c.key == name)).scalar_one()), False
