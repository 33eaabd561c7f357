"""The layout rules of DESIGN.md and decision 0014, checked by reading every module's imports.

Layers, bottom up; a module imports only from its own layer and those below it:

    foundation   ingest/core          config, errors, records, text, urls, links
    rules        ingest/dedupe        what "same story" means, the one planner (pure)
    store        ingest/store         every SQL statement
    in-stage     the rest of ingest   fetch, parse, seeds, the passes: never anything of newsletter
    out-stages   newsletter/publish, digest, subscribers, web (and render, status)
    service      newsletter/service, newsletter/cli

Pure modules import no SQL and no HTTP client; every outside library is imported in its home and nowhere else.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.no_database  # opens no database: one run

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ingest", "newsletter")

#: library -> the only modules (or folders) allowed to import it. Every outside library the packages import is here.
HOMES: dict[str, set[str]] = {
    "feedparser": {"ingest/parse"},
    "httpx": {"ingest/fetch/transport.py", "ingest/fetch/fetcher.py", "newsletter/publish/websub.py"},
    "httpcore": {"ingest/fetch/transport.py"},
    "sqlalchemy": {"ingest/store"},
    "nh3": {"ingest/sanitize.py"},
    "lxml": {"ingest/webpage.py"},
    "readability": {"ingest/webpage.py"},
    "listparser": {"ingest/opml.py"},
    "pydantic": {"ingest/core/config.py"},
    "feedgen": {"newsletter/publish/documents.py"},
    "jinja2": {"newsletter/render.py"},
    "css_inline": {"newsletter/digest/compose.py"},
    "dkim": {"newsletter/digest/dkim.py"},
    "cryptography": {"newsletter/inbound/signatures.py"},
    "smtplib": {"newsletter/digest/transports.py"},
    "imaplib": {"newsletter/inbound/mailboxes.py"},
    "email_validator": {"newsletter/subscribers/addresses.py"},
    "itsdangerous": {"newsletter/subscribers/tokens.py"},
    "starlette": {"newsletter/web"},
    "uvicorn": {"newsletter/web/app.py"},
    "apscheduler": {"newsletter/service/scheduler.py"},
    "prometheus_client": {"newsletter/metrics.py"},
    "click": {"newsletter/cli.py"},
    "rich": {"newsletter/cli.py"},
    # test-only libraries: never imported by the packages
    "aiosmtpd": set(),
    "selenium": set(),
}

#: Modules that take data and return data: no SQL, no HTTP, no sockets, no mail, no clock-reading service.
PURE = (
    "ingest/core",
    "ingest/dedupe",
    "ingest/fetch/policy.py",
    "ingest/parse",
    "ingest/polling.py",
    "ingest/sanitize.py",
    "ingest/seeds.py",
    "ingest/topics.py",
    "ingest/webpage.py",
    "newsletter/digest/select.py",
    "newsletter/digest/compose.py",
    "newsletter/render.py",
    "newsletter/inbound/classify.py",
    "newsletter/inbound/relays.py",
    "newsletter/inbound/signatures.py",
)
IMPURE = {
    "sqlalchemy", "psycopg", "sqlite3", "httpx", "httpcore", "socket", "smtplib", "imaplib", "ssl", "urllib.request",
}  # fmt: skip

#: Project modules each layer may import (prefixes of dotted names).
ALLOWED: dict[str, tuple[str, ...]] = {
    "ingest/core": ("ingest.core",),
    "ingest/dedupe": ("ingest.core", "ingest.dedupe"),
    "ingest/store": ("ingest.core", "ingest.dedupe", "ingest.store"),
    "ingest": ("ingest",),
    # ingest.sanitize: the one HTML sanitizer, applied again on the way out (nothing from a feed is trusted)
    "newsletter/publish": ("ingest.core", "ingest.sanitize", "ingest.store", "newsletter.publish", "newsletter.render"),
    "newsletter/digest": (
        "ingest.core",
        "ingest.store",
        "newsletter.digest",
        "newsletter.render",
        "newsletter.subscribers",
    ),
    "newsletter/subscribers": ("ingest.core", "ingest.store", "newsletter.subscribers", "newsletter.digest"),
    "newsletter/inbound": ("ingest.core", "ingest.store", "newsletter.inbound", "newsletter.subscribers",
                           "newsletter.digest"),
    "newsletter/web": ("ingest", "newsletter.web", "newsletter.publish", "newsletter.digest", "newsletter.subscribers",
                       "newsletter.render", "newsletter.inbound", "newsletter.metrics"),
    "newsletter/render.py": ("ingest.core",),
    "newsletter/metrics.py": ("ingest.core", "ingest.store"),
    "newsletter/status.py": ("ingest", "newsletter.digest", "newsletter.status"),
    "newsletter/service": ("ingest", "newsletter"),
    "newsletter/cli.py": ("ingest", "newsletter"),
    "newsletter/__main__.py": ("newsletter.cli",),
    "newsletter/__init__.py": (),
}  # fmt: skip


def _imports(path: Path, *, dotted: bool = False) -> set[str]:
    """Top-level names of what ``path`` imports (``dotted``: the full module names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name if dotted else a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module if dotted else node.module.split(".")[0])
            if dotted:  # "from ingest import dedupe" imports the module ingest.dedupe
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _modules() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _under(rel: str, place: str) -> bool:
    return rel == place or rel.startswith(place + "/")


def _layer(rel: str) -> str:
    """The most specific entry of ALLOWED that holds ``rel``."""
    found = [place for place in ALLOWED if _under(rel, place)]
    assert found, f"{rel}: in no layer of ALLOWED: add it (and to decision 0014)"
    return max(found, key=len)


def _project_imports(path: Path) -> set[str]:
    return {m for m in _imports(path, dotted=True) if m.split(".")[0] in PACKAGES}


@pytest.mark.parametrize("library", sorted(HOMES))
def test_library_has_one_home(library: str) -> None:
    homes = HOMES[library]
    offenders = [_rel(p) for p in _modules() if library in _imports(p) and not any(_under(_rel(p), h) for h in homes)]
    assert offenders == [], f"{library} imported outside {sorted(homes)}"


def test_every_outside_library_has_a_home() -> None:
    """A library nobody gave a home to would creep into every module: name its home in HOMES first."""
    outside = {
        name
        for path in _modules()
        for name in _imports(path)
        if name not in sys.stdlib_module_names and name not in (*PACKAGES, "__future__")
    }
    assert outside - HOMES.keys() == set()


def test_each_layer_imports_only_itself_and_below() -> None:
    offenders = []
    for path in _modules():
        rel = _rel(path)
        allowed = ALLOWED[_layer(rel)]
        for module in sorted(_project_imports(path)):
            if module in PACKAGES:
                continue  # "from ingest import x" is checked as ingest.x
            if not any(module == a or module.startswith(a + ".") for a in allowed):
                offenders.append(f"{rel} imports {module}")
    assert offenders == []


def test_the_in_stage_never_imports_the_out_side() -> None:
    offenders = [_rel(p) for p in (ROOT / "ingest").rglob("*.py") if "newsletter" in _imports(p)]
    assert offenders == []


@pytest.mark.parametrize("place", PURE)
def test_pure_modules_import_no_sql_and_no_network(place: str) -> None:
    paths = [p for p in _modules() if _under(_rel(p), place)]
    assert paths, f"{place}: no such module"
    offenders = []
    for path in paths:
        dotted = _imports(path, dotted=True)
        found = {m for m in dotted if m in IMPURE or m.split(".")[0] in IMPURE or m.startswith("ingest.store")}
        if found:
            offenders.append(f"{_rel(path)}: {sorted(found)}")
    assert offenders == []


def test_the_ssrf_policy_is_pure() -> None:
    assert _imports(ROOT / "ingest" / "fetch" / "policy.py") & {"httpx", "httpcore", "socket"} == set()


def test_the_scheduler_does_not_import_the_service() -> None:
    """scheduler <-> service was a cycle: the scheduler knows the service only through a Protocol."""
    assert "newsletter.service.service" not in _imports(ROOT / "newsletter/service/scheduler.py", dotted=True)
