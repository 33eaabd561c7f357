"""Shared fixtures: temporary config folders, a fixed clock, and the golden-file switch."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.servers import hostile_server  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_SEEDS = ROOT / "config" / "seeds"
GOLDEN = Path(__file__).resolve().parent / "golden"
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from current output")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


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
    path = folder / "newsletter.toml"
    path.write_text(
        '[storage]\nurl = "sqlite:///var/test.db"\n\n[seeds]\ndirs = ["seeds"]\n' + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``newsletter ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from newsletter.cli import main

    for var in [v for v in __import__("os").environ if v.startswith("NEWSLETTER_")]:
        monkeypatch.delenv(var)

    def run(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
