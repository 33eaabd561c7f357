"""What every part of the store shares: rows into records, batches of ids, ``IN`` lists, following merges.

:func:`record` is the one row -> record mapping: a record's fields are read from the row's columns of the same name
(labels included), so a query names its columns after the record and nothing maps field by field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Dialect, Integer, Row, Table, Text, any_, bindparam
from sqlalchemy.dialects import postgresql

__all__ = ["CHUNK", "MAX_HOPS", "aware", "chunks", "follow", "insert_many", "one_of", "record", "update_many"]

R = TypeVar("R")
T = TypeVar("T")

#: SQLite's default limit on bound parameters is 32,766; PostgreSQL's is 65,535. Stay well below both.
CHUNK = 500
#: The longest chain of merges followed (folding flattens chains, so one hop is the rule; a cycle is a bug elsewhere
#: and must not hang a page or a command).
MAX_HOPS = 32


@cache
def _names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def record(cls: Callable[..., R], row: Row[*tuple[Any, ...]]) -> R:
    """The record ``cls`` (a dataclass) from a row: each field from the column of its name; a field the row lacks
    keeps its default."""
    # Zipped once: asking the row's mapping for each name costs a key lookup through SQLAlchemy's machinery, which
    # for 10,000 deliveries was a quarter of a digest's build.
    values = dict(zip(row._fields, row, strict=True))
    return cls(**{name: values[name] for name in _names(cls) if name in values})


def chunks(values: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def one_of(dialect: str, column: ColumnElement[Any], values: Sequence[str] | Sequence[int]) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(array)``, one parameter instead of one per value: psycopg
    parses each statement's text for its placeholders, which for a few hundred of them cost more than the query."""
    if dialect != "postgresql":
        return column.in_(values)
    item: type[Text] | type[Integer] = Text if values and isinstance(values[0], str) else Integer
    return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(item)))


def insert_many(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]], returning: Sequence[str] = ()
) -> list[Row[Any]]:
    """Insert ``rows`` (values in the order of ``columns``) with few multi-row statements; returns the ``returning``
    columns of each new row.

    The values go through each column's own type (:class:`~ingest.store.schema.CleanText`, the UTC times, the tags'
    JSON) as with a table insert, but straight to the driver: for the thousands of rows of a batch of feeds,
    SQLAlchemy's generic handling of each parameter cost several times the insert itself."""
    if not rows:
        return []
    processors, names, slot = _inserting(conn.dialect, table, tuple(columns))
    tail = f" RETURNING {', '.join(returning)}" if returning else ""
    found: list[Row[Any]] = []
    per_statement = max(1, min(len(rows), _MAX_PARAMETERS // len(columns)))
    for part in chunks(rows, per_statement):
        processed = [_processed(p, column) for p, column in zip(processors, zip(*part, strict=True), strict=True)]
        values = tuple(v for row in zip(*processed, strict=True) for v in row)
        # Names from our own schema, values bound: nothing from outside is spliced into the text.
        statement = f"INSERT INTO {table.name} ({names}) VALUES {', '.join([slot] * len(part))}{tail}"  # noqa: S608
        result = conn.exec_driver_sql(statement, values)
        if returning:
            found += result.all()
    return found


def _processed(process: Callable[[Any], Any] | None, column: Sequence[Any]) -> Sequence[Any]:
    """One column's values as the driver takes them. Anything but text is processed once per distinct value: the
    times of a batch are mostly its ``now`` (turning an aware time into SQLite's text takes microseconds), its tags
    mostly the same few."""
    if process is None:
        return column
    if not isinstance(column[0], str):
        done: dict[Any, Any] = {}
        try:
            return [done[v] if v in done else done.setdefault(v, process(v)) for v in column]
        except TypeError:  # an unhashable value (a list of tags)
            pass
    return [process(v) for v in column]


#: Bound parameters per statement: below SQLite's 32,766 and PostgreSQL's 65,535.
_MAX_PARAMETERS = 30_000


def update_many(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``UPDATE table SET column = value, ... WHERE id = ...`` for each row (the values of ``columns``, then the id),
    as one executemany straight to the driver (see :func:`insert_many`)."""
    if not rows:
        return
    processors, placeholders = _slots(conn.dialect, table, (*columns, "id"))
    sets = ", ".join(f"{c} = {p}" for c, p in zip(columns, placeholders, strict=False))
    processed = [_processed(p, column) for p, column in zip(processors, zip(*rows, strict=True), strict=True)]
    # Names from our own schema, values bound: nothing from outside is spliced into the text.
    statement = f"UPDATE {table.name} SET {sets} WHERE id = {placeholders[-1]}"  # noqa: S608
    conn.exec_driver_sql(statement, list(zip(*processed, strict=True)))


@cache
def _inserting(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> tuple[list[Any], str, str]:
    """Each column's value processor, the column list, and one row's placeholders."""
    processors, placeholders = _slots(dialect, table, columns)
    return processors, ", ".join(columns), "(" + ", ".join(placeholders) + ")"


@cache
def _slots(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> tuple[list[Any], list[str]]:
    """Each column's value processor and placeholder (typed on PostgreSQL, where the driver sends text as
    "unknown")."""
    cols = [table.c[name] for name in columns]
    processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in cols]
    if dialect.name == "postgresql":
        return processors, [f"CAST(%s AS {c.type.compile(dialect=dialect)})" for c in cols]
    return processors, ["?" for _ in cols]


def follow(start: int, merged_into: Callable[[int], int | None], max_hops: int = MAX_HOPS) -> int | None:
    """Where ``merged_into`` links lead from ``start``: the first id that was not merged away. None after
    ``max_hops`` hops (a cycle)."""
    current = start
    for _ in range(max_hops + 1):
        nxt = merged_into(current)
        if nxt is None:
            return current
        current = nxt
    return None


def aware(value: Any) -> datetime | None:
    """min() and max() keep their column's type, so they come back as aware datetimes like the column."""
    assert value is None or (isinstance(value, datetime) and value.tzinfo is not None), value
    return value
