"""Opening the database: engine settings per dialect, the numbered migrations with their stored version, and the one
place where the database's own failures become errors for a person.

SQLite gets WAL, a busy timeout and foreign keys; PostgreSQL needs nothing special. A database newer than this
code, or a file that is not a database, is refused with a :class:`StoreError` for a person, not a traceback. While
running, a write lock held by another process past the busy timeout, a full disk or a read-only file become
:class:`StoreBusyError`, :class:`StoreFullError` or :class:`StoreError` naming the database (:func:`_translate`,
hooked on every engine): the transaction is rolled back, and nothing stored before is lost.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, bindparam, create_engine, event, inspect, select, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from ingest.core.errors import SchemaTooNewError, StoreBusyError, StoreError, StoreFullError, StoreUnreachableError
from ingest.core.links import DEFAULT_UID_AUTHORITY, mint_uid
from ingest.core.search import search_text
from ingest.store import locks, schema

Migration = Callable[[Connection], None]


def _v1(conn: Connection) -> None:
    """Version 1 made every table; on a fresh database the head schema is created at once (see migrate)."""
    schema.metadata.create_all(conn)


def _v2(conn: Connection) -> None:
    """Story uids (Atom ids), blocking keys for dedupe, operator overrides."""
    if "uid" not in {c["name"] for c in inspect(conn).get_columns("story")}:
        conn.execute(text("ALTER TABLE story ADD COLUMN uid TEXT"))
        rows = conn.execute(select(schema.story.c.id, schema.story.c.first_seen)).all()
        for row in rows:
            conn.execute(
                schema.story.update()
                .where(schema.story.c.id == row.id)
                .values(uid=mint_uid(DEFAULT_UID_AUTHORITY, row.first_seen))
            )
        conn.execute(text("CREATE UNIQUE INDEX uq_story_uid ON story (uid)"))
    schema.metadata.create_all(conn, tables=[schema.sighting_key, schema.story_override])


def _v3(conn: Connection) -> None:
    """Indexes for publishing: newest live stories first, and stories updated since a time."""
    existing = {i["name"] for i in inspect(conn).get_indexes("story")}
    for index in schema.story.indexes:
        if index.name in ("ix_story_recency", "ix_story_updated") and index.name not in existing:
            index.create(conn)


def _v4(conn: Connection) -> None:
    """story.informative for the matcher; stories made before it are informative when a sighting has a date or blurb."""
    if "informative" not in {c["name"] for c in inspect(conn).get_columns("story")}:
        conn.execute(text("ALTER TABLE story ADD COLUMN informative BOOLEAN NOT NULL DEFAULT FALSE"))
        conn.execute(
            text(
                "UPDATE story SET informative = TRUE WHERE id IN (SELECT story_id FROM sighting"
                " WHERE story_id IS NOT NULL AND (published IS NOT NULL OR summary <> ''))"
            )
        )


def _v5(conn: Connection) -> None:
    """The meta table (the per-database signing key) and an index for delivery counts by status."""
    schema.metadata.create_all(conn, tables=[schema.meta])  # checkfirst: a table made before this step is kept
    existing = {i["name"] for i in inspect(conn).get_indexes("delivery")}
    for index in schema.delivery.indexes:
        if index.name not in existing:
            index.create(conn)


def _v6(conn: Connection) -> None:
    """sighting_key becomes one B-tree: primary key (key, sighting_id), WITHOUT ROWID on SQLite, no other index."""
    conn.execute(text("ALTER TABLE sighting_key RENAME TO sighting_key_v5"))
    for index in ("ix_sighting_key_key", "ix_sighting_key_sighting_id"):
        conn.execute(text(f"DROP INDEX IF EXISTS {index}"))
    schema.sighting_key.create(conn)
    conn.execute(
        text("INSERT INTO sighting_key (key, sighting_id) SELECT DISTINCT key, sighting_id FROM sighting_key_v5")
    )
    conn.execute(text("DROP TABLE sighting_key_v5"))


def _v7(conn: Connection) -> None:
    """subscriber.soft_bounces: soft bounces have a count of their own (decision 0015); everyone starts at 0."""
    if "soft_bounces" not in {c["name"] for c in inspect(conn).get_columns("subscriber")}:
        conn.execute(text("ALTER TABLE subscriber ADD COLUMN soft_bounces INTEGER NOT NULL DEFAULT 0"))


def _v8(conn: Connection) -> None:
    """source.failing_since: when a feed's failure streak began, so that a feed failing for weeks is paused."""
    if "failing_since" not in {c["name"] for c in inspect(conn).get_columns("source")}:
        kind = schema.source.c.failing_since.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE source ADD COLUMN failing_since {kind}"))


def _v9(conn: Connection) -> None:
    """subscribe_request: the subscribe form's requests of the last hour, for its limits."""
    schema.metadata.create_all(conn, tables=[schema.subscribe_request])  # checkfirst: an existing table is kept


def _v10(conn: Connection) -> None:
    """story.hidden_at and hidden_reason: a story the operator hid (retracted); none is hidden before."""
    columns = {c["name"] for c in inspect(conn).get_columns("story")}
    for column in (schema.story.c.hidden_at, schema.story.c.hidden_reason):
        if column.name not in columns:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE story ADD COLUMN {column.name} {kind}"))


def _v11(conn: Connection) -> None:
    """source.site_url: the site readers may visit (a feed's own link, a seed folder's url), linked on story pages."""
    if "site_url" not in {c["name"] for c in inspect(conn).get_columns("source")}:
        conn.execute(text("ALTER TABLE source ADD COLUMN site_url TEXT"))


def _v12(conn: Connection) -> None:
    """send_slot: the sending rate as one budget for every process sharing the database; delivery.bounce: which
    failed deliveries counted as bounces (none before: a report coming later counts from here on)."""
    schema.metadata.create_all(conn, tables=[schema.send_slot])  # checkfirst: an existing table is kept
    if "bounce" not in {c["name"] for c in inspect(conn).get_columns("delivery")}:
        conn.execute(text("ALTER TABLE delivery ADD COLUMN bounce VARCHAR(8)"))


def _v13(conn: Connection) -> None:
    """source.suggested_url: where a broken feed may have gone; nothing is suggested before."""
    if "suggested_url" not in {c["name"] for c in inspect(conn).get_columns("source")}:
        kind = schema.source.c.suggested_url.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE source ADD COLUMN suggested_url {kind}"))


def _v14(conn: Connection) -> None:
    """Topics: sighting.topics and story.topics (none until `stories retag` or the next ingest tags them), and the
    operator's story_topic_override."""
    for table in (schema.sighting, schema.story):
        if "topics" not in {c["name"] for c in inspect(conn).get_columns(table.name)}:
            kind = table.c.topics.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN topics {kind} NOT NULL DEFAULT '[]'"))
    schema.metadata.create_all(conn, tables=[schema.story_topic_override])  # checkfirst


def _v15(conn: Connection) -> None:
    """subscriber.topics: each subscriber's choice of topics; everyone so far gets every topic."""
    if "topics" not in {c["name"] for c in inspect(conn).get_columns("subscriber")}:
        kind = schema.subscriber.c.topics.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE subscriber ADD COLUMN topics {kind} NOT NULL DEFAULT '[]'"))


def _v16(conn: Connection) -> None:
    """digest_edition and delivery.edition_id: a digest rendered once per topic set; deliveries so far got the whole
    digest (None)."""
    schema.metadata.create_all(conn, tables=[schema.digest_edition])  # checkfirst
    if "edition_id" not in {c["name"] for c in inspect(conn).get_columns("delivery")}:
        conn.execute(text("ALTER TABLE delivery ADD COLUMN edition_id INTEGER REFERENCES digest_edition (id)"))


#: Migration N brings a database from version N-1 to N. Append only; never edit a released step.
def _v17(conn: Connection) -> None:
    """publish_generation: what every serving process compares with the generation it last published."""
    schema.metadata.create_all(conn, tables=[schema.publish_generation])  # checkfirst: an existing table is kept


def _v18(conn: Connection) -> None:
    """Indexes for the hot queries: the feed claim, a source's first read, the digest's "not carried yet", and
    (PostgreSQL) the stories of a tag."""
    indexes = [i for t in (schema.source, schema.sighting, schema.digest_story) for i in t.indexes]
    if conn.dialect.name == "postgresql":
        indexes.append(schema.ix_story_tags)
    for index in indexes:
        index.create(conn, checkfirst=True)  # an index made before this step is kept


def _v19(conn: Connection) -> None:
    """Full-text search: story.search_title and search_body (tokens of the title and summary), filled for every
    story; an FTS5 table kept by triggers on SQLite, a stored tsvector column in a GIN index on PostgreSQL."""
    columns = {c["name"] for c in inspect(conn).get_columns("story")}
    for column in ("search_title", "search_body"):
        if column not in columns:
            conn.execute(text(f"ALTER TABLE story ADD COLUMN {column} TEXT NOT NULL DEFAULT ''"))
    st = schema.story
    fill = (
        st.update().where(st.c.id == bindparam("sid")).values(search_title=bindparam("t"), search_body=bindparam("b"))
    )
    last = 0
    while rows := conn.execute(
        select(st.c.id, st.c.title, st.c.summary).where(st.c.id > last).order_by(st.c.id).limit(1000)
    ).all():
        conn.execute(fill, [{"sid": r.id, "t": search_text(r.title), "b": search_text(r.summary)} for r in rows])
        last = rows[-1].id
    if conn.dialect.name == "postgresql":
        for statement in schema.POSTGRES_SEARCH_DDL:
            conn.execute(text(statement))
    elif schema.SEARCH_TABLE not in inspect(conn).get_table_names():
        for statement in schema.SQLITE_SEARCH_DDL:  # the last one indexes the rows already there
            conn.execute(text(statement))


def _v20(conn: Connection) -> None:
    """story.folded_sightings: copies removed by retention, still counted; none before."""
    if "folded_sightings" not in {c["name"] for c in inspect(conn).get_columns("story")}:
        conn.execute(text("ALTER TABLE story ADD COLUMN folded_sightings INTEGER NOT NULL DEFAULT 0"))


#: Migration N brings a database from version N-1 to N. Append only; never edit a released step.
MIGRATIONS: tuple[Migration, ...] = (
    _v1,
    _v2,
    _v3,
    _v4,
    _v5,
    _v6,
    _v7,
    _v8,
    _v9,
    _v10,
    _v11,
    _v12,
    _v13,
    _v14,
    _v15,
    _v16,
    _v17,
    _v18,
    _v19,
    _v20,
)

HEAD = len(MIGRATIONS)

#: Seconds a SQLite write waits for another process's write lock before giving up ([storage] busy_timeout).
DEFAULT_BUSY_TIMEOUT = 10.0
#: The PostgreSQL advisory lock taken while migrating (any constant; this one spells "migrate").
MIGRATION_LOCK = "migrate"  # an advisory lock's name (ingest.store.locks)


def make_engine(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"[storage] url: not a database URL: {url!r}") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            path = Path(db)
            if path.is_dir():
                raise StoreError(f"{path}: is a directory, expected a SQLite database file")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{path.parent}: cannot create the database folder: {exc.strerror}") from None
        kwargs["connect_args"] = {"timeout": busy_timeout}
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"[storage] url: no driver for {parsed.drivername!r} ({exc})") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", partial(_sqlite_pragmas, busy_timeout))
    event.listen(engine, "handle_error", partial(_translate, parsed, busy_timeout))
    return engine


def instance_lock_path(url: str) -> Path | None:
    """``<database>.lock``, where ``newsletter run`` keeps its pid while it uses a SQLite database; None for other
    engines (decision 0011)."""
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return None
    return Path(url.removeprefix("sqlite:///") + ".lock")


def lock_holder(url: str) -> int | None:
    """The pid of the live ``newsletter run`` the database's lock file names, other than this process; else None."""
    path = instance_lock_path(url)
    try:
        written = path.read_text(encoding="ascii").strip() if path is not None else ""
    except (OSError, UnicodeDecodeError):
        return None
    if not written.isdigit() or int(written) == os.getpid():
        return None
    try:
        os.kill(int(written), 0)  # signal 0: is it alive? (a dead run's pid stays in the file)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return int(written)


def _translate(url: URL, busy_timeout: float, context: ExceptionContext) -> None:
    """The database's failures that are not bugs, as errors naming the database and what to do. Everything else
    (a bug) keeps its traceback."""
    orig = context.original_exception
    sqlite_name = str(getattr(orig, "sqlite_errorname", ""))
    sqlstate = str(getattr(orig, "sqlstate", "") or "")
    where = url.database if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=True)
    unconnected = context.connection is None and url.get_backend_name() != "sqlite"  # SQLite's are about its files
    if unconnected and isinstance(context.sqlalchemy_exception, OperationalError):
        # Could not even connect (a server down, refused, unreachable): not a bug, a state of the service.
        raise StoreUnreachableError(f"{where}: the database cannot be reached ({type(orig).__name__})") from None
    if not (sqlite_name or sqlstate):
        return
    detail = str(orig).strip()
    if sqlstate == "55P03":
        raise StoreBusyError(
            f"{where}: another process holds a lock this change needs, past the server's lock_timeout: try again "
            "when it is done"
        ) from None
    if sqlite_name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        holder = lock_holder(url.render_as_string(hide_password=False))
        who = f" (`newsletter run`, pid {holder}, is using it)" if holder else ""
        raise StoreBusyError(
            f"another process holds a write lock on {where}{who}; waited {busy_timeout:g} s "
            "([storage] busy_timeout) and gave up: try again when it is done"
        ) from None
    # A full disk also shows as an I/O error: SQLite cannot grow its shared-memory file (SQLITE_IOERR_SHMSIZE).
    full = sqlite_name.startswith("SQLITE_IOERR") and url.database is not None and _disk_full(Path(url.database))
    if sqlite_name == "SQLITE_FULL" or sqlstate == "53100" or full:
        raise StoreFullError(
            f"{where}: the disk is full ({detail}): free some space and try again; this change was not saved, "
            "nothing stored before is lost"
        ) from None
    if sqlite_name.startswith("SQLITE_READONLY") or sqlstate == "25006":
        raise StoreError(f"{where}: the database cannot be written ({detail}): check its file and folder") from None
    if sqlite_name.startswith("SQLITE_IOERR"):
        raise StoreError(f"{where}: {detail} ({sqlite_name}): is the disk failing?") from None


def _disk_full(database: Path) -> bool:
    try:
        return os.statvfs(database.parent).f_bavail == 0
    except OSError:
        return False


def _sqlite_pragmas(busy_timeout: float, dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # Turning a new file to WAL needs it to itself, and SQLite answers "locked" at once instead of waiting (the busy
    # timeout does not apply): processes opening a new database together retry for as long as the timeout.
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # another connection is making the file: wait for it
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    # A checkpoint (the one fsync of WAL mode at synchronous=NORMAL) every ~40 MB of WAL instead of every 4 MB:
    # ingest writes a lot, and each checkpoint's fsync cost more than the writes it followed.
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.close()


def migrate(engine: Engine) -> int:
    """Create or upgrade the schema to :data:`HEAD`; returns the version found before."""
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Processes starting together on one database migrate one at a time (the others then find the
                # schema made): PostgreSQL's DDL is transactional, but two CREATE TABLEs of one name still collide.
                locks.hold_for_transaction(conn, MIGRATION_LOCK)
            found = _stored_version(conn)
            if conn.dialect.name == "sqlite" and found < HEAD:
                # The same on SQLite: take the write lock, then read the version again (the driver would otherwise
                # run the DDL outside any transaction, and two processes opening a new file both create tables).
                # Only then: opening a database that is up to date takes no write lock.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                found = _stored_version(conn)
            if found > HEAD:
                raise SchemaTooNewError(
                    f"{where}: the database is at schema version {found}, newer than this code (version {HEAD}); "
                    "upgrade feed-newsletter or point [storage] url at another database"
                )
            if found == 0:
                schema.metadata.create_all(conn)  # a fresh database gets the head schema at once
            else:
                for step in range(found, HEAD):
                    MIGRATIONS[step](conn)
            if found == 0:
                conn.execute(schema.schema_version.insert().values(version=HEAD))
            elif found < HEAD:
                conn.execute(schema.schema_version.update().values(version=HEAD))
            return found
    except OperationalError as exc:
        raise StoreError(f"{where}: cannot open the database: {_dbapi_message(exc)}") from None
    except DBAPIError as exc:
        message = _dbapi_message(exc)
        if "not a database" in message or "malformed" in message:
            raise StoreError(f"{where}: this file is not a SQLite database ({message})") from None
        raise StoreError(f"{where}: database error: {message}") from None


def _stored_version(conn: Connection) -> int:
    tables = set(inspect(conn).get_table_names())
    if "schema_version" not in tables:
        if tables & {"source", "story", "sighting"}:
            raise StoreError("the database holds tables but no schema version: it was not made by feed-newsletter")
        return 0
    version = conn.execute(select(schema.schema_version.c.version)).scalar()
    return int(version or 0)


def _dbapi_message(exc: DBAPIError) -> str:
    return str(exc.orig).strip() if exc.orig is not None else str(exc)
