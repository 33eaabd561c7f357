"""Operations (issue 17 item 6): /healthz, /metrics, JSON logs, and the container files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from ingest.core.config import load_settings
from ingest.store import Store
from ingest.store.engine import make_engine
from newsletter.metrics import names
from newsletter.service.service import Service
from newsletter.web.app import site
from newsletter.web.ops import LAST_PASS
from tests.conftest import NOW, ROOT, write_config
from tests.mailsite import serve_app
from tests.servers import HostileServer

FEED_TOML = '[fetch]\ntrusted_networks = ["127.0.0.1/32"]\n\n[[feeds]]\nurl = "{url}"\nname = "Test feed"\n'


@pytest.fixture
def project_with_feed(project: Path, hostile_server: HostileServer) -> Path:
    write_config(project, FEED_TOML.format(url=hostile_server.url("/feed")))
    return project


def _serve(config: Path, service: Service | None = None) -> Iterator[str]:
    settings = load_settings(config, environ={})
    store = service.store if service else Store.open(settings.storage.url)
    try:
        with serve_app(site(settings, store, service.metrics if service else None)) as url:
            yield url
    finally:
        if service is None:
            store.close()


def test_healthz_reports_the_database_and_the_last_pass(project_with_feed: Path) -> None:
    config = project_with_feed / "newsletter.toml"
    settings = load_settings(config, environ={})
    now = datetime.now(UTC)  # /healthz reads the wall clock: it tells how the service is doing now
    with Store.open(settings.storage.url) as store:
        service = Service(settings, store)
        for url in _serve(config, service):
            fresh = httpx.get(f"{url}/healthz")
            assert (fresh.status_code, fresh.json()) == (200, {"status": "ok", "database": "ok", "last_pass": None})
            assert fresh.headers["cache-control"] == "no-store"
            service.run_pass(now)
            after = httpx.get(f"{url}/healthz").json()
            assert after["status"] == "ok" and after["last_pass"]["ok"] is True
            assert 0 <= after["last_pass"]["age_seconds"] < 600
            # A pass that ended longer ago than [web] health_max_pass_age (60 minutes): the work has stopped moving.
            store.set_meta(LAST_PASS, json.dumps({"at": (now - timedelta(hours=2)).isoformat(), "ok": True}))
            stale = httpx.get(f"{url}/healthz")
            assert stale.status_code == 503 and stale.json()["status"] == "stale"


def test_healthz_is_503_when_the_database_cannot_be_reached(project: Path) -> None:
    settings = load_settings(project / "newsletter.toml", environ={})
    store = Store(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"))
    try:
        with serve_app(site(settings, store)) as url:
            answer = httpx.get(f"{url}/healthz", timeout=20)
            metrics = httpx.get(f"{url}/metrics", timeout=20)
        assert metrics.status_code == 200 and "newsletter_database_up 0.0" in metrics.text
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable"
        assert answer.json()["database"] == "unreachable"
        assert "nobody" not in answer.text  # no user, host or password in a public answer
    finally:
        store.close()


def test_metrics_count_from_the_database_and_time_this_process(project_with_feed: Path) -> None:
    config = project_with_feed / "newsletter.toml"
    settings = load_settings(config, environ={})
    with Store.open(settings.storage.url) as store:
        service = Service(settings, store, clock=lambda: NOW)
        service.run_pass(NOW)
        store.insert_subscriber("reader@example.org", "confirmed", NOW)
        for url in _serve(config, service):
            answer = httpx.get(f"{url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    body = answer.content
    assert {
        "newsletter_deliveries",
        "newsletter_digest_run_seconds",
        "newsletter_feeds",
        "newsletter_fetch_seconds",
        "newsletter_stories",
        "newsletter_subscribers",
    } <= set(names(body))
    text = body.decode()
    assert 'newsletter_feeds{status="active"} 1.0' in text
    assert re.search(r"^newsletter_stories \d+\.0$", text, re.M) and "newsletter_stories 0.0" not in text
    assert 'newsletter_subscribers{status="confirmed"} 1.0' in text
    assert "newsletter_fetch_seconds_count 1.0" in text  # the one feed fetched by this process
    assert "newsletter_digest_run_seconds_count 1.0" in text


def test_metrics_can_be_switched_off(project: Path) -> None:
    write_config(project, "[web]\nmetrics = false\n")
    for url in _serve(project / "newsletter.toml"):
        assert httpx.get(f"{url}/metrics").status_code == 404
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_json_logs_one_object_a_line(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_") or k.startswith("NEWSLETTER_TEST_")}
    env |= {"NEWSLETTER_LOG_FORMAT": "json", "NEWSLETTER_CONFIG": str(project / "newsletter.toml")}
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "run", "--once"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert any(line["logger"] == "newsletter.service" and line["message"].startswith("pass ok") for line in lines)


# ---- the container files -----------------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, argument) pairs, continuation lines joined, comments left out."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    pairs = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            instruction, _, argument = line.partition(" ")
            pairs.append((instruction.upper(), argument.strip()))
    return pairs


@pytest.mark.no_database
def test_the_dockerfile_builds_what_the_project_is() -> None:
    pairs = _dockerfile()
    assert pairs[0][0] == "FROM" and pairs[0][1].startswith("python:3.11")
    copied = [arg.split()[0] for ins, arg in pairs if ins == "COPY"]
    for source in copied:
        for name in source.split():
            assert (ROOT / name).exists(), f"COPY {name}: no such file in the project"
    assert {"ingest", "newsletter", "templates", "config"} <= set(copied)
    assert any(ins == "USER" and arg != "root" for ins, arg in pairs)  # not as root
    assert ("EXPOSE", "8080") in pairs
    health = next(arg for ins, arg in pairs if ins == "HEALTHCHECK")
    assert "/healthz" in health
    assert ("ENTRYPOINT", '["newsletter"]') in pairs and ("CMD", '["run"]') in pairs
    assert 'newsletter = "newsletter.cli:main"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


@pytest.mark.no_database
def test_the_compose_file_runs_the_app_on_postgresql() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"app", "db"}
    app, db = services["app"], services["db"]
    assert app["build"] == "."
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["environment"]["NEWSLETTER_STORAGE_URL"].startswith("postgresql+psycopg://")
    assert "NEWSLETTER_SECRET_KEY" in app["environment"]
    assert db["image"].startswith("postgres:")
    assert "healthcheck" in db
    # Secrets come from the environment, never written in the file.
    assert all("${" in str(v) for k, v in db["environment"].items() if "PASSWORD" in k)
    # Every NEWSLETTER_ variable names a real config key (a typo would be silently ignored by the app).
    settings = load_settings(ROOT / "config" / "newsletter.toml", environ={})
    for name in app["environment"]:
        if name in ("NEWSLETTER_SECRET_KEY", "NEWSLETTER_SMTP_PASSWORD", "NEWSLETTER_CONFIG"):
            continue
        section, _, key = name.removeprefix("NEWSLETTER_").lower().partition("_")
        assert key in type(getattr(settings, section)).model_fields, name


@pytest.mark.no_database
def test_the_image_builds_where_a_container_tool_runs(tmp_path: Path) -> None:
    tool = shutil.which("docker") or shutil.which("podman")
    if tool is None or subprocess.run([tool, "info"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no container engine runs here (docker info fails): the Dockerfile is checked by parsing only")
    subprocess.run([tool, "build", "-t", "feed-newsletter-test", str(ROOT)], check=True, timeout=900)
