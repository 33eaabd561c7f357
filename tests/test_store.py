"""The store on a real SQLite file: pragmas, migrations, refusal of foreign or newer databases."""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, text

from ingest.core.errors import SchemaTooNewError, StoreError
from ingest.core.models import ParsedItem
from ingest.store import HEAD, Store
from ingest.store.engine import MIGRATIONS, _v8
from tests.conftest import GOLDEN, PG_URL_ENV

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _item(key: str, title: str = "A title") -> ParsedItem:
    return ParsedItem(kind="teaser", key=key, position=1, title=title, published=NOW, summary="blurb", tags=("recap",))


@pytest.mark.sqlite_only
def test_sqlite_file_gets_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "n.db"
    with Store.open(f"sqlite:///{db}") as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
    assert db.exists()
    tables = {r[0] for r in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")}
    assert {"source", "sighting", "story", "digest", "subscriber", "delivery", "schema_version"} <= tables
    assert sqlite3.connect(db).execute("select version from schema_version").fetchall() == [(HEAD,)]


def test_reopening_keeps_data_and_version(db_url: str) -> None:
    url = db_url
    with Store.open(url) as store:
        src = store.page_source("/p/a.txt", "/p", NOW)
        store.save_page(src.id, [_item("k1")], content_hash="h", warning=None, now=NOW)
    with Store.open(url) as store:
        assert [s.title for s in store.stories()] == ["A title"]
        assert store.sightings()[0].tags == ("recap",)
        assert store.sightings()[0].published == NOW


@pytest.mark.sqlite_only
def test_newer_database_refuses_to_start(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    Store.open(f"sqlite:///{db}").close()
    con = sqlite3.connect(db)
    con.execute("update schema_version set version = ?", (HEAD + 1,))
    con.commit()
    con.close()
    with pytest.raises(SchemaTooNewError, match=rf"schema version {HEAD + 1}, newer than this code"):
        Store.open(f"sqlite:///{db}")


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "content", [b"this is not a database, just text\n" * 200, b"SQLite format 3\x00" + b"\xff" * 4000]
)
def test_file_that_is_not_a_database(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "n.db"
    db.write_bytes(content)
    with pytest.raises(StoreError, match=r"not a SQLite database|cannot open"):
        Store.open(f"sqlite:///{db}")
    assert db.read_bytes() == content  # nothing overwritten


@pytest.mark.sqlite_only
def test_foreign_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    con = sqlite3.connect(db)
    con.execute("create table story (x int)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not made by feed-newsletter"):
        Store.open(f"sqlite:///{db}")


@pytest.mark.sqlite_only
def test_bad_url_and_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        Store.open("not a url")
    with pytest.raises(StoreError, match="is a directory"):
        Store.open(f"sqlite:///{tmp_path}")


def test_save_is_idempotent_and_keeps_first_seen(db_url: str) -> None:
    later = datetime(2026, 11, 28, tzinfo=UTC)
    with Store.open(db_url) as store:
        src = store.page_source("/p/a.txt", "/p", NOW)
        first = store.save_page(src.id, [_item("k1"), _item("k2", "B")], content_hash="h1", warning=None, now=NOW)
        again = store.save_page(src.id, [_item("k1"), _item("k2", "B")], content_hash="h1", warning=None, now=later)
        assert (first.new, again.new, again.seen) == (2, 0, 2)
        sightings = store.sightings()
        assert {s.first_seen for s in sightings} == {NOW}
        assert {s.last_seen for s in sightings} == {later}
        assert store.counts() == {"sources": 1, "sightings": 2, "stories": 2}


def test_naive_datetimes_are_refused(db_url: str) -> None:
    with (
        Store.open(db_url) as store,
        pytest.raises(Exception, match="naive datetime"),
    ):
        store.page_source("/p/a.txt", "/p", datetime(2026, 1, 1))


@pytest.mark.sqlite_only
def test_version_1_database_is_migrated_to_head(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    con = sqlite3.connect(db)
    con.executescript((GOLDEN / "schema_v1.sqlite.sql").read_text())
    con.execute("insert into schema_version values (1)")
    con.execute(
        "insert into story (title, title_derived, summary, content, first_seen, updated, tags, content_hash)"
        " values ('Old story', 0, '', '', '2026-01-02 03:04:05', '2026-01-02 03:04:05', '[]', '')"
    )
    con.commit()
    con.close()
    with Store.open(f"sqlite:///{db}") as store:
        (story,) = store.stories()
        assert story.title == "Old story"
        assert story.uid.startswith("tag:feed-newsletter.invalid,2026-01-02:story:")
        src = store.page_source("/p/a.txt", "/p", NOW)
        store.save_page(src.id, [_item("k1")], content_hash="h", warning=None, now=NOW)
        assert len(store.stories()) == 2
    assert sqlite3.connect(db).execute("select version from schema_version").fetchall() == [(HEAD,)]
    with Store.open(f"sqlite:///{db}") as store:  # migrating is done once
        assert store.stories()[-1].uid == story.uid


def test_a_database_from_before_paused_feeds_and_subscribe_limits_is_migrated(db_url: str) -> None:
    """Migrations _v8 (source.failing_since) and _v9 (subscribe_request) on a database without either, on both
    engines."""
    with Store.open(db_url) as store:
        store.upsert_feed("https://x.example/feed", name=None, tags=[], interval=None, origin="cli", now=NOW)
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE source DROP COLUMN failing_since"))
            conn.execute(text("DROP TABLE subscribe_request"))
            conn.execute(text("UPDATE schema_version SET version = :v"), {"v": MIGRATIONS.index(_v8)})
    for n in range(2):  # the second open finds nothing to do
        with Store.open(db_url) as store:
            (feed,) = store.sources(kind="feed")
            assert (feed.failing_since, feed.created_at) == (None, NOW)
            noted = store.note_subscribe_request(f"192.0.2.{n}", NOW, NOW - timedelta(hours=1))
            assert (noted.client_requests, noted.mails) == (1, 0)
            with store.engine.connect() as conn:
                assert conn.execute(text("SELECT version FROM schema_version")).scalar() == HEAD


def test_due_feeds_are_leased_in_batches_to_one_owner(db_url: str) -> None:
    from datetime import timedelta

    with Store.open(db_url) as store:
        for i in range(30):
            store.upsert_feed(f"https://x.example/{i}", name=None, tags=[], interval=None, origin="cli", now=NOW)
        lease = NOW + timedelta(minutes=5)
        a = store.claim_due_feeds(NOW, owner="a", lease_until=lease, limit=8)
        b = store.claim_due_feeds(NOW, owner="b", lease_until=lease, limit=8)
        assert (len(a), len(b)) == (8, 8)
        assert not {s.id for s in a} & {s.id for s in b}
        assert store.count_due_feeds(NOW) == 14
        # A lease that ran out (its process died) gives the feed back; until then nobody else takes it.
        later = store.claim_due_feeds(lease, owner="c", lease_until=lease + timedelta(minutes=5), limit=100)
        assert len(later) == 30
        store.release_feeds("c", [s.id for s in later])
        assert store.count_due_feeds(NOW) == 30


def test_processes_opening_a_new_database_together_all_start(db_url: str) -> None:
    """Six openers at once on a database nobody made yet (threads, each with its own engine, as processes would
    have): one makes the schema, the others wait for it; none fails on a half-made schema or a locked file."""
    errors: list[BaseException] = []
    usable: list[bool] = []
    go = threading.Barrier(6)

    def opener() -> None:
        go.wait()
        try:
            with Store.open(db_url) as store:
                usable.append(store.stories() == [] and store.sources() == [])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert usable == [True] * 6


@pytest.mark.sqlite_only
def test_opening_an_up_to_date_database_takes_no_write_lock(tmp_path: Path) -> None:
    """A command beside a busy service (`newsletter status` while a pass writes) opens the store at once."""
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    Store.open(url).close()
    writer = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        with Store.open(url) as store:
            assert store.stories() == []
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("kind", ["newer", "not a database"])
def test_the_cli_refuses_a_database_it_cannot_use_without_a_traceback(
    project: Path, run_cli: Callable[..., tuple[int, str, str]], db_url: str, kind: str
) -> None:
    db = Path(db_url.removeprefix("sqlite:///"))
    if kind == "newer":
        Store.open(db_url).close()
        con = sqlite3.connect(db)
        con.execute("update schema_version set version = ?", (HEAD + 1,))
        con.commit()
        con.close()
    else:
        db.parent.mkdir(parents=True, exist_ok=True)
        db.write_bytes(b"this is not a database, just text\n" * 200)
    code, _, err = run_cli("--config", str(project / "newsletter.toml"), "stories")
    assert code == 2
    assert str(db) in err
    assert ("newer than this code" if kind == "newer" else "not a SQLite database") in err
    assert "Traceback" not in err


def test_subscribers_of_a_version_6_database_get_a_soft_bounce_count(db_url: str) -> None:
    with Store.open(db_url) as store, store.engine.begin() as conn:  # back to version 6: no soft_bounces column
        conn.execute(text("ALTER TABLE subscriber DROP COLUMN soft_bounces"))
        conn.execute(text("UPDATE schema_version SET version = 6"))
        conn.execute(
            text(
                "INSERT INTO subscriber (email, status, created_at, bounces)"
                " VALUES ('old@example.org', 'confirmed', CURRENT_TIMESTAMP, 2)"
            )
        )
    with Store.open(db_url) as store:
        old = store.subscriber_by_email("old@example.org")
        assert old is not None
        assert (old.bounces, old.soft_bounces) == (2, 0)
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version FROM schema_version")).scalar() == HEAD


@pytest.mark.parametrize("backend", ["postgresql"])
def test_exclusive_work_is_scoped_to_the_schema_so_two_instances_on_one_server_never_skip_each_other(
    db_url: str, pg_engine: Engine
) -> None:
    """Two newsletters on one PostgreSQL server (a schema each) must not share "only one of us does this": the
    advisory lock behind ``Store.exclusive`` is server-wide, so its key names the schema too. Before, the second
    instance's seed ingest was silently skipped while the first one's ran (the xdist flakes of round 2)."""
    other = f"t_{secrets.token_hex(6)}"
    with pg_engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {other}"))
    base = os.environ[PG_URL_ENV]
    other_url = f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={other}')}"
    try:
        with (
            Store.open(db_url) as mine,
            Store.open(other_url) as theirs,
            Store.open(db_url) as twin,
            mine.exclusive("ingest-seeds") as got,
        ):
            assert got
            with theirs.exclusive("ingest-seeds") as also:
                assert also, "another schema's lock blocked this one"
            with twin.exclusive("ingest-seeds") as same:
                assert not same, "the same schema must still be exclusive"
    finally:
        with pg_engine.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {other} CASCADE"))
