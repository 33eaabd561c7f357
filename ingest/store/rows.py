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

from sqlalchemy import ColumnElement, Integer, Row, Text, any_, bindparam
from sqlalchemy.dialects import postgresql

__all__ = ["CHUNK", "MAX_HOPS", "aware", "chunks", "follow", "one_of", "record"]

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
