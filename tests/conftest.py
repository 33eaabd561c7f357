"""Shared fixtures: temporary config folders, the database of each test (SQLite, or PostgreSQL too), a fixed clock,
and the golden-file switch.

Every test runs twice, on a SQLite file and on PostgreSQL (a schema of its own per test in the server
``NEWSLETTER_TEST_PG_URL`` names; ``make test`` starts one with scripts/with_postgres.sh), unless it says otherwise:
``@pytest.mark.no_database`` for pure code that never opens one (a module of such tests sets ``pytestmark``), and
``@pytest.mark.sqlite_only`` for a test of SQLite itself (files, pragmas, locks). The default is both: a new test that
forgets a marker costs a second run, never a silent miss of PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text

from tests.servers import hostile_server  # noqa: F401
from tests.smtpd import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_SEEDS = ROOT / "config" / "seeds"
GOLDEN = Path(__file__).resolve().parent / "golden"
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
PG_URL_ENV = "NEWSLETTER_TEST_PG_URL"
#: The database of the running test (set by the ``db_url`` fixture; :func:`write_config` writes it).
_current_url: str | None = None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    definition = metafunc.definition
    if any(definition.get_closest_marker(m) is not None for m in ("sqlite_only", "no_database")):
        return
    chosen = any("backend" in str(m.args[0]) for m in definition.iter_markers("parametrize"))  # e.g. PostgreSQL only
    if "db_url" in metafunc.fixturenames and not chosen:
        metafunc.parametrize("backend", ["sqlite", "postgresql"])


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine | None]:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        yield None
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def db_url(backend: str, tmp_path: Path, pg_engine: Engine | None) -> Iterator[str]:
    """This test's database URL: a SQLite file in its tmp folder, or a fresh PostgreSQL schema."""
    global _current_url  # noqa: PLW0603 - write_config reads it: one test runs at a time in a process
    with _database(backend, tmp_path / "var" / "test.db", pg_engine) as url:
        _current_url = url
        yield url
        _current_url = None


@pytest.fixture
def other_db_url(backend: str, tmp_path: Path, pg_engine: Engine | None) -> Iterator[str]:
    """A second empty database on the same backend, for comparing two ways of doing one thing."""
    with _database(backend, tmp_path / "var" / "other.db", pg_engine) as url:
        yield url


@contextmanager
def _database(backend: str, file: Path, pg_engine: Engine | None) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{file}"
        return
    if pg_engine is None:
        pytest.skip(f"PostgreSQL tests need {PG_URL_ENV} (make test starts a server: scripts/with_postgres.sh)")
    schema = f"t_{secrets.token_hex(6)}"
    with pg_engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    base = os.environ[PG_URL_ENV]
    try:
        yield f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"
    finally:
        with pg_engine.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from current output")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server on 127.0.0.1 that keeps what it receives (tests/smtpd.py)."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config folder of our own: the bundled seed copied in, a config pointing at it and a SQLite file in tmp."""
    (tmp_path / "seeds").mkdir()
    for page in BUNDLED_SEEDS.glob("*.txt"):
        shutil.copy(page, tmp_path / "seeds" / page.name)
    write_config(tmp_path, "")
    return tmp_path


def write_config(folder: Path, extra: str) -> Path:
    """A config in ``folder`` on the running test's database, reading seeds from ``folder/seeds``."""
    url = _current_url or "sqlite:///var/test.db"
    path = folder / "newsletter.toml"
    path.write_text(f'[storage]\nurl = "{url}"\n\n[seeds]\ndirs = ["seeds"]\n' + extra, encoding="utf-8")
    return path


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``newsletter ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from newsletter.cli import main

    for var in [v for v in os.environ if v.startswith("NEWSLETTER_") and not v.startswith("NEWSLETTER_TEST_")]:
        monkeypatch.delenv(var)

    def run(*args: str) -> tuple[int, str, str]:
        code = 0
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            # A command that set up logging left a handler on this call's captured stderr, closed once the test
            # ends: a later test's log line would go there ("--- Logging error ---").
            root.handlers[:], root.level = handlers, level
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
