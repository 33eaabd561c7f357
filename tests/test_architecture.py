"""The layout rules of DESIGN.md, checked: data flows one way, and each outside library has one home module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.no_database  # opens no database: one run

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ingest", "newsletter")

#: library -> the only modules allowed to import it
HOMES: dict[str, set[str]] = {
    "feedparser": {"ingest/parse"},
    "httpx": {"ingest/fetch/transport.py", "ingest/fetch/fetcher.py"},
    "httpcore": {"ingest/fetch/transport.py"},
    "sqlalchemy": {"ingest/store"},
    "nh3": {"ingest/sanitize.py"},
    "feedgen": {"newsletter/publish/documents.py"},
    "jinja2": {"newsletter/render.py"},
    "smtplib": {"newsletter/digest/transports.py"},
    "apscheduler": {"newsletter/service/scheduler.py"},
    "starlette": {"newsletter/web"},
    "uvicorn": {"newsletter/web", "newsletter/service/service.py"},
    "pydantic": {"ingest/core/config.py"},
    "click": {"newsletter/cli.py"},
    "email_validator": {"newsletter/subscribers/addresses.py"},
    "itsdangerous": {"newsletter/subscribers/tokens.py"},
    "css_inline": {"newsletter/digest/compose.py"},
    "listparser": {"ingest/opml.py"},
    # test-only libraries: never imported by the packages
    "aiosmtpd": set(),
    "selenium": set(),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_ingest_never_imports_newsletter() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "ingest").rglob("*.py") if "newsletter" in _imports(p)]
    assert offenders == []


@pytest.mark.parametrize("library", sorted(HOMES))
def test_library_has_one_home(library: str) -> None:
    homes = HOMES[library]
    offenders = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if library in _imports(path) and not any(rel == h or rel.startswith(h + "/") for h in homes):
            offenders.append(rel)
    assert offenders == [], f"{library} imported outside {sorted(homes)}"


def test_the_address_policy_is_pure() -> None:
    # The SSRF rules must stay testable and readable without a network stack: ipaddress only.
    imported = _imports(ROOT / "ingest/fetch/policy.py")
    assert imported.isdisjoint({"httpx", "httpcore", "socket"}), sorted(imported)
