"""When the machine says no: the database locked by another writer, a full disk, a publish folder that cannot be
written. Each command gives one line naming what and where, exits 2, and nothing stored or published before is lost;
the service logs the step's error and goes on.

Real locks and real file systems: a second sqlite3 connection (or process) holding ``BEGIN IMMEDIATE``, a tiny tmpfs
filled to the last byte, a read-only bind mount (tests/filesystems.py; this machine runs the tests as root, where
``chmod 0555`` stops nothing).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ingest.core.config import load_settings
from ingest.store import Store
from newsletter.service.service import Service
from tests.conftest import BUNDLED_SEEDS, NOW, ROOT, write_config
from tests.filesystems import fill, read_only, small_disk

RunCli = Callable[..., tuple[int, str, str]]
#: [storage] busy_timeout for these tests: a locked database answers after a fifth of a second, not ten.
BUSY = "0.2"
PUBLISH = '[publish]\ndir = "public"\n\n[mail]\noutbox_dir = "outbox"\n'


def _new_page(folder: Path, name: str) -> None:
    """A seed page of stories no other page has (words of their own), so that the next ingest writes."""
    w = [hashlib.sha256(f"{name}{i}".encode()).hexdigest()[:7] for i in range(8)]
    (folder / f"{name}.txt").write_text(
        f"Investigators of study {w[0]} describe how {w[1]} changed care for {w[2]} patients.\n"
        "Stay up to date on recent advances in the multidisciplinary approach to cancer.\n"
        f"Trial {w[3]} reports {w[4]} outcomes\n"
        f"March 3rd 2025Researchers behind {w[5]} explain what {w[6]} means for {w[7]} clinics.\n",
        encoding="utf-8",
    )


def _stories(run_cli: RunCli, cfg: Path) -> list[dict[str, object]]:
    code, out, err = run_cli("--config", str(cfg), "stories", "--json")
    assert code == 0, err
    stories: list[dict[str, object]] = json.loads(out)
    return stories


def _error_line(err: str) -> str:
    """The one line a refused command prints."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def _files(folder: Path) -> dict[str, bytes]:
    """What a folder holds, name by name (the filler of a full disk aside)."""
    files = (p for p in folder.rglob("*") if p.is_file() and p.name != ".filler")
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Another connection holding the SQLite database's write lock while the block runs."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


@pytest.fixture
def ingested(project: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The bundled seed ingested; the config and the SQLite file. Commands wait :data:`BUSY` s for a write lock."""
    cfg = write_config(project, PUBLISH)
    assert run_cli("--config", str(cfg), "ingest")[0] == 0
    monkeypatch.setenv("NEWSLETTER_STORAGE_BUSY_TIMEOUT", BUSY)
    url = load_settings(cfg, environ={}).storage.url
    return cfg, Path(url.removeprefix("sqlite:///"))


@pytest.mark.sqlite_only
def test_a_write_lock_held_by_another_connection_is_one_line_and_exit_2(
    ingested: tuple[Path, Path], run_cli: RunCli
) -> None:
    cfg, db = ingested
    before = _stories(run_cli, cfg)
    _new_page(cfg.parent / "seeds", "extra")
    expected = (
        f"error: another process holds a write lock on {db}; waited 0.2 s ([storage] busy_timeout) and gave up: "
        "try again when it is done"
    )
    with write_lock(db):
        for args in (
            ("ingest",),
            ("feeds", "add", "--no-discover", "https://example.org/feed.xml"),
            ("subscribers", "add", "ann@example.org"),
            ("stories", "merge", str(before[0]["id"]), str(before[1]["id"])),
        ):
            code, _, err = run_cli("--config", str(cfg), *args)
            assert (code, _error_line(err)) == (2, expected), args
        assert _stories(run_cli, cfg) == before  # readers are not blocked (WAL), and nothing was lost
    code, _, err = run_cli("--config", str(cfg), "ingest")
    assert code == 0, err
    after = {s["id"]: s for s in _stories(run_cli, cfg)}
    assert len(after) > len(before)
    assert all(after[s["id"]] == s for s in before)


#: A stand-in for ``newsletter run`` caught writing: takes the instance lock (writing its pid to <db>.lock) and holds
#: the database's write lock until its stdin closes.
_RUN_HOLDING_THE_LOCK = """
import sqlite3, sys
from pathlib import Path
from ingest.core.config import load_settings
from newsletter.service.lock import instance_lock

with instance_lock(load_settings(Path(sys.argv[1]), environ={})):
    conn = sqlite3.connect(sys.argv[2], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("ready", flush=True)
    sys.stdin.read()
"""


@pytest.mark.sqlite_only
def test_the_holder_is_named_when_newsletter_run_holds_the_database(
    ingested: tuple[Path, Path], run_cli: RunCli
) -> None:
    cfg, db = ingested
    holder = subprocess.Popen(
        [sys.executable, "-c", _RUN_HOLDING_THE_LOCK, str(cfg), str(db)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        code, _, err = run_cli("--config", str(cfg), "feeds", "add", "--no-discover", "https://example.org/feed.xml")
        assert code == 2
        assert _error_line(err) == (
            f"error: another process holds a write lock on {db} (`newsletter run`, pid {holder.pid}, is using it); "
            "waited 0.2 s ([storage] busy_timeout) and gave up: try again when it is done"
        )
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", "--no-discover", "https://example.org/feed.xml")
    assert (code, out.strip()) == (0, "added feed #2: https://example.org/feed.xml"), err


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_row_lock_past_postgresqls_lock_timeout_is_one_line(
    project: Path, run_cli: RunCli, db_url: str, backend: str
) -> None:
    cfg = write_config(project, "")
    assert run_cli("--config", str(cfg), "feeds", "add", "--no-discover", "https://example.org/feed.xml")[0] == 0
    # The operator's own lock_timeout (in the URL's options): without it PostgreSQL waits for row locks for ever.
    cfg.write_text(cfg.read_text().replace("search_path%3D", "lock_timeout%3D200%20-csearch_path%3D"))
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT id FROM source FOR UPDATE"))  # another process, mid-transaction on the feed
            code, _, err = run_cli("--config", str(cfg), "feeds", "remove", "https://example.org/feed.xml")
    finally:
        engine.dispose()
    assert code == 2
    line = _error_line(err)
    assert "another process holds a lock this change needs" in line
    assert "lock_timeout" in line
    assert "newsletter_test" in line or "postgresql" in line


@pytest.mark.sqlite_only
def test_a_full_disk_under_the_database_loses_nothing(tmp_path: Path, run_cli: RunCli) -> None:
    seeds = tmp_path / "seeds"
    shutil.copytree(BUNDLED_SEEDS, seeds)
    with small_disk(tmp_path / "disk", "1m") as disk:
        db = disk / "news.db"
        cfg = tmp_path / "newsletter.toml"
        cfg.write_text(f'[storage]\nurl = "sqlite:///{db}"\n\n[seeds]\ndirs = ["seeds"]\n', encoding="utf-8")
        assert run_cli("--config", str(cfg), "ingest")[0] == 0
        before = _stories(run_cli, cfg)
        for n in range(8):
            _new_page(seeds, f"more-{n}")

        # Nobody has the database open: SQLite cannot even make its shared-memory file (an I/O error).
        filler = fill(disk)
        code, _, err = run_cli("--config", str(cfg), "ingest")
        assert code == 2
        assert _error_line(err).startswith(f"error: {db}: the disk is full (disk I/O error): free some space")
        filler.unlink()

        # A process has it open (as `newsletter run` would): the write itself finds the disk full.
        reader = sqlite3.connect(db)
        reader.execute("SELECT count(*) FROM story").fetchall()
        filler = fill(disk)
        try:
            for args in (("ingest",), ("feeds", "add", "--no-discover", "https://example.org/feed.xml")):
                code, _, err = run_cli("--config", str(cfg), *args)
                assert code == 2, args
                assert _error_line(err) == (
                    f"error: {db}: the disk is full (database or disk is full): free some space and try again; "
                    "this change was not saved, nothing stored before is lost"
                )
        finally:
            filler.unlink()
            reader.close()
        assert _stories(run_cli, cfg) == before
        code, _, err = run_cli("--config", str(cfg), "ingest")
        assert code == 0, err
        assert len(_stories(run_cli, cfg)) > len(before)


def test_publish_into_a_read_only_folder_is_one_line_and_keeps_the_files(
    ingested: tuple[Path, Path], run_cli: RunCli
) -> None:
    cfg, _ = ingested
    public = cfg.parent / "public"
    assert run_cli("--config", str(cfg), "publish")[0] == 0
    published = _files(public)
    _new_page(cfg.parent / "seeds", "extra")
    assert run_cli("--config", str(cfg), "ingest")[0] == 0
    with read_only(public) as reason:  # as root: a read-only bind mount (EROFS); else chmod 0555 (EACCES)
        code, _, err = run_cli("--config", str(cfg), "publish")
        assert code == 2
        assert _error_line(err) == (
            f"error: {public}: cannot write the published feeds: {reason} ([publish] dir); "
            "the files published before are unchanged"
        )
        assert _files(public) == published
    code, out, err = run_cli("--config", str(cfg), "publish")
    assert code == 0, err
    assert f"wrote  {public / 'feed.atom'}" in out


def test_publish_onto_a_full_disk_is_one_line_and_keeps_the_files(project: Path, run_cli: RunCli) -> None:
    cfg = write_config(project, PUBLISH)
    with small_disk(project / "public", "1m") as public:
        assert run_cli("--config", str(cfg), "ingest")[0] == 0
        assert run_cli("--config", str(cfg), "publish")[0] == 0
        published = _files(public)
        _new_page(project / "seeds", "extra")
        assert run_cli("--config", str(cfg), "ingest")[0] == 0
        filler = fill(public)
        code, _, err = run_cli("--config", str(cfg), "publish")
        assert code == 2
        assert _error_line(err).startswith(f"error: {public}: cannot write the published feeds: No space left on")
        assert _files(public) == published  # no half-written file, no temp file left behind
        filler.unlink()
        code, _, err = run_cli("--config", str(cfg), "publish")
        assert code == 0, err


@pytest.mark.sqlite_only
def test_the_service_logs_a_failed_step_and_goes_on(
    ingested: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cfg, db = ingested
    settings = load_settings(cfg, environ={"NEWSLETTER_STORAGE_BUSY_TIMEOUT": BUSY})
    _new_page(cfg.parent / "seeds", "extra")
    with Store.open(settings.storage.url, busy_timeout=settings.storage.busy_timeout) as store:
        service = Service(settings, store, clock=lambda: NOW)
        with caplog.at_level(logging.INFO, logger="newsletter.service"):
            with write_lock(db):
                locked = service.run_pass(NOW, force_publish=True)
            with read_only(settings.publish.dir) as reason:
                unwritable = service.run_pass(NOW + timedelta(minutes=1))
            healthy = service.run_pass(NOW + timedelta(minutes=2), force_publish=True)
    assert locked.errors[0].startswith(f"ingest: another process holds a write lock on {db}")
    assert locked.published is not None  # the steps after the failed one ran
    assert [e.split(":")[0] for e in unwritable.errors] == ["publish"]
    assert reason in unwritable.errors[0]
    assert healthy.errors == ()
    assert healthy.published is not None and healthy.published.written
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [*locked.errors, *unwritable.errors]
    assert all(r.exc_info is None for r in caplog.records)  # one line each, no traceback
