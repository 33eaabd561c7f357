"""PostgreSQL advisory locks, keyed by name *and schema*.

Advisory locks are server-wide (per database), but one server may hold several newsletters, a schema each (and the
tests do exactly that, one schema per test). A key made of the name alone let one instance's "only one of us ingests
the seeds" skip another instance's ingest; so every key hashes the schema the connection works in with the name.
SQLite needs none of this: it has one writer at a time.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

# hashtextextended (PostgreSQL 11+) turns text into the bigint an advisory lock takes.
_KEY = "hashtextextended(coalesce(current_schema(), '') || '/' || :name, 0)"


def hold_for_transaction(conn: Connection, name: str) -> None:
    """Wait for the lock ``name`` and hold it until this transaction ends."""
    conn.execute(text(f"SELECT pg_advisory_xact_lock({_KEY})"), {"name": name})


def try_for_session(conn: Connection, name: str) -> bool:
    """Take the lock ``name`` for this connection's session if no one holds it; whether it was taken."""
    return bool(conn.execute(text(f"SELECT pg_try_advisory_lock({_KEY})"), {"name": name}).scalar())


def release_for_session(conn: Connection, name: str) -> None:
    conn.execute(text(f"SELECT pg_advisory_unlock({_KEY})"), {"name": name})
