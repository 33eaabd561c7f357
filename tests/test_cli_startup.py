"""Issue 15 item 5: the CLI's start-up, paid by every cron-style run, imports only what the command needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_config

HEAVY = ("sqlalchemy", "pydantic", "rich", "httpx", "feedparser", "nh3", "ingest.store", "ingest.feeds")

PROBE = """
import json, sys
from newsletter.cli import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = [m for m in json.loads(sys.stdin.read()) if m in sys.modules]
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def _imports(*args: str) -> dict[str, object]:
    """The exit code of ``newsletter ARGS`` in a fresh interpreter, and which of HEAVY it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=json.dumps(HEAVY),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    result: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    return result


@pytest.mark.no_database
def test_help_imports_neither_the_store_nor_the_config_model() -> None:
    assert _imports("--help") == {"code": 0, "heavy": []}
    assert _imports("feeds", "--help") == {"code": 0, "heavy": []}


@pytest.mark.sqlite_only
def test_an_ingest_with_nothing_to_do_imports_no_fetcher_parser_or_tables(tmp_path: Path) -> None:
    """Piped output (cron): no progress bar, so no rich; no feed due, so no httpx, feedparser or nh3."""
    (tmp_path / "seeds").mkdir()
    cfg = write_config(tmp_path, "")
    assert _imports("--config", str(cfg), "ingest") == {
        "code": 0,
        "heavy": ["sqlalchemy", "pydantic", "ingest.store"],
    }
