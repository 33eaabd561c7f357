"""WebSub: with ``[publish] websub_hubs``, feed.atom and the tag feeds name the hubs (``rel="hub"``) and themselves
(``rel="self"``), and each publish that changes a feed pings every hub for it (a real local hub on 127.0.0.1); a hub
that cannot be reached costs a warning, never the publish."""

from __future__ import annotations

import json
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from ingest.core.config import load_settings
from tests.conftest import write_config

RunCli = Callable[..., tuple[int, str, str]]
ATOM = "{http://www.w3.org/2005/Atom}"
PUBLIC = "https://news.example.org/"


class Hub:
    """A WebSub hub stub: records each publish ping (its form fields) and answers 204 No Content."""

    def __init__(self) -> None:
        pings = self.pings = list[dict[str, list[str]]]()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                assert self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
                pings.append(parse_qs(self.rfile.read(length).decode()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def topics(self) -> list[str]:
        assert all(p["hub.mode"] == ["publish"] for p in self.pings)
        return sorted(url for p in self.pings for url in p["hub.url"])


@pytest.fixture
def hub() -> Iterator[Hub]:
    stub = Hub()
    stub.thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(project: Path, hubs: list[str]) -> str:
    listed = ", ".join(f'"{h}"' for h in hubs)
    cfg = write_config(
        project,
        f'[publish]\ndir = "public"\nbase_url = "{PUBLIC}"\nmax_entries = 3\nwebsub_hubs = [{listed}]\n',
    )
    return str(cfg)


def _links(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for link in ET.fromstring(path.read_bytes()).findall(f"{ATOM}link"):
        found.setdefault(link.get("rel", ""), []).append(link.get("href", ""))
    return found


def test_each_publish_that_changes_a_feed_pings_the_hubs(
    project: Path, run_cli: RunCli, hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    second = f"http://127.0.0.1:{_closed_port()}/hub"  # nobody listens: a warning, not a failure
    cli = ("--config", _config(project, [hub.url, second]))
    assert run_cli(*cli, "ingest")[0] == 0
    code, _, err = run_cli(*cli, "publish")
    assert code == 0, err
    assert any(second in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    public = project / "public"
    main = _links(public / "feed.atom")
    assert main["hub"] == [hub.url, second]
    assert main["self"] == [f"{PUBLIC}feed.atom"]
    tags = sorted(p.name for p in (public / "tags").glob("*.atom"))
    assert tags
    for name in tags:
        assert _links(public / "tags" / name)["hub"] == [hub.url, second]
    archive = next((public / "archive").glob("*.atom"))
    assert "hub" not in _links(archive)  # an archive page does not change: nothing to subscribe to
    topics = sorted(p.name for p in (public / "topics").glob("*.atom"))
    assert topics
    assert all(_links(public / "topics" / name)["hub"] == [hub.url, second] for name in topics)
    expected = [f"{PUBLIC}feed.atom", *(f"{PUBLIC}tags/{n}" for n in tags), *(f"{PUBLIC}topics/{n}" for n in topics)]
    assert hub.topics() == sorted(expected)

    hub.pings.clear()
    assert "up to date" in run_cli(*cli, "publish")[1]
    assert hub.pings == []  # nothing changed: no ping

    newest = json.loads(run_cli(*cli, "stories", "--json")[1])[0]["id"]
    assert run_cli(*cli, "stories", "hide", str(newest))[0] == 0
    assert run_cli(*cli, "publish")[0] == 0
    assert f"{PUBLIC}feed.atom" in hub.topics()


def test_without_hubs_the_feeds_name_none(project: Path, run_cli: RunCli) -> None:
    cli = ("--config", _config(project, []))
    assert run_cli(*cli, "ingest")[0] == 0
    assert run_cli(*cli, "publish")[0] == 0
    assert "hub" not in _links(project / "public" / "feed.atom")


@pytest.mark.no_database
def test_a_hub_must_be_an_http_url(tmp_path: Path) -> None:
    from ingest.core.errors import ConfigError

    (tmp_path / "seeds").mkdir()
    cfg = write_config(tmp_path, '[publish]\nwebsub_hubs = ["ftp://hub.example.org/"]\n')
    with pytest.raises(ConfigError, match="websub_hubs"):
        load_settings(cfg, environ={})
