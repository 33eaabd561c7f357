"""Feed sources from the CLI and the config: add, list, remove, OPML import and export, URL checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.opml import read_opml

RunCli = Callable[..., tuple[int, str, str]]


def _feeds(run_cli: RunCli, cfg: Path, *extra: str) -> list[dict[str, object]]:
    code, out, err = run_cli("--config", str(cfg), "feeds", "list", "--json", *extra)
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, list)
    return data


def test_add_list_remove(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    code, out, _ = run_cli(
        "--config", str(cfg), "feeds", "add", "HTTPS://Example.org/feed.xml#x", "--name", "Ex", "--tag", "Prostate"
    )
    assert code == 0
    assert "added feed #" in out
    feeds = _feeds(run_cli, cfg)
    assert [(f["url"], f["name"], f["tags"], f["status"]) for f in feeds] == [
        ("https://example.org/feed.xml", "Ex", ["prostate"], "active")
    ]
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", "https://example.org/feed.xml")
    assert (code, err.splitlines()[-1]) == (
        2,
        "error: https://example.org/feed.xml is already followed: feed #1 (https://example.org/feed.xml)",
    )
    code, out, _ = run_cli("--config", str(cfg), "feeds", "add", "https://example.org/feed.xml", "--name", "Ex2")
    assert "updated feed" in out
    assert len(_feeds(run_cli, cfg)) == 1
    code, out, _ = run_cli("--config", str(cfg), "feeds", "remove", str(feeds[0]["id"]))
    assert code == 0
    assert "removed feed" in out
    assert _feeds(run_cli, cfg) == []
    assert [f["status"] for f in _feeds(run_cli, cfg, "--all")] == ["removed"]
    code, _, err = run_cli("--config", str(cfg), "feeds", "remove", "https://nowhere.example/")
    assert code == 2
    assert "no feed with id or URL" in err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.org/feed", "only http:// and https:// feeds can be followed, got 'ftp:'"),
        ("file:///etc/passwd", "got 'file:'"),
        ("example.org/feed", "got no scheme"),
        ("http:///feed", "has no host name"),
        ("http://exa mple.org/", "cannot contain spaces"),
        ("http://example.org:99999/", "not a well-formed URL"),
    ],
)
def test_bad_urls_are_refused(project: Path, run_cli: RunCli, url: str, message: str) -> None:
    code, _out, err = run_cli("--config", str(project / "newsletter.toml"), "feeds", "add", url)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_config_feeds_are_listed_and_checked(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '\n[[feeds]]\nurl = "https://a.example/rss"\nname = "A"\ntags = ["Onc"]\n')
    assert [(f["url"], f["origin"], f["tags"]) for f in _feeds(run_cli, cfg)] == [
        ("https://a.example/rss", "config", ["onc"])
    ]
    cfg.write_text(cfg.read_text().replace("https://a.example/rss", "gopher://a.example/rss"))
    code, _, err = run_cli("--config", str(cfg), "feeds", "list")
    assert code == 2
    assert "[[feeds]] #1 url (line 8): expected an http:// or https:// feed URL (only http:// and https://" in err


def test_a_feed_dropped_from_config_stops(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    base = cfg.read_text()
    cfg.write_text(base + '\n[[feeds]]\nurl = "https://a.example/rss"\n')
    assert len(_feeds(run_cli, cfg)) == 1
    cfg.write_text(base)
    assert _feeds(run_cli, cfg) == []


OPML = b"""<?xml version="1.0"?>
<opml version="2.0"><head><title>mine</title></head><body>
<outline text="Oncology"><outline text="A feed" type="rss" xmlUrl="https://a.example/rss"/></outline>
<outline text="B" type="rss" xmlUrl="http://b.example/atom.xml" category="/lung"/>
<outline text="Bad" type="rss" xmlUrl="javascript:alert(1)"/>
</body></opml>"""


def test_opml_import_and_export_round_trip(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    opml = project / "subs.opml"
    opml.write_bytes(OPML)
    code, out, err = run_cli("--config", str(cfg), "feeds", "import", str(opml))
    assert code == 1  # one refused
    assert "2 added, 0 already followed, 1 refused" in out
    assert "javascript:" in err
    feeds = {f["url"]: f for f in _feeds(run_cli, cfg)}
    assert feeds["https://a.example/rss"]["name"] == "A feed"
    assert feeds["https://a.example/rss"]["tags"] == ["oncology"]
    assert feeds["http://b.example/atom.xml"]["tags"] == ["lung"]

    code, out, _ = run_cli("--config", str(cfg), "feeds", "import", str(opml))
    assert "0 added, 2 already followed" in out

    target = project / "out.opml"
    code, out, _ = run_cli("--config", str(cfg), "feeds", "export", "-o", str(target))
    assert code == 0
    back = read_opml(target.read_bytes(), name="out.opml")
    assert sorted(f.url for f in back) == ["http://b.example/atom.xml", "https://a.example/rss"]
    assert b'<opml version="2.0">' in target.read_bytes()


@pytest.mark.parametrize("content", [b"", b"<html><body>not opml</body></html>", b"\x00\x01binary"])
def test_bad_opml_gets_a_clear_error(project: Path, run_cli: RunCli, content: bytes) -> None:
    opml = project / "bad.opml"
    opml.write_bytes(content)
    code, _, err = run_cli("--config", str(project / "newsletter.toml"), "feeds", "import", str(opml))
    assert code == 2
    assert str(opml) in err
    assert "Traceback" not in err


def test_tags_are_normalised_once_everywhere(project: Path, run_cli: RunCli) -> None:
    """`--tag A --tag a` is one tag, as in the config and OPML: one normalisation for every way in."""
    cfg = project / "newsletter.toml"
    code, _, err = run_cli(
        "--config", str(cfg), "feeds", "add", "https://example.org/a.xml", "--tag", "A", "--tag", " a ", "--tag", "B  C"
    )
    assert code == 0, err
    assert [f["tags"] for f in _feeds(run_cli, cfg)] == [["a", "b c"]]
    opml = b'<opml version="2.0"><body><outline xmlUrl="https://example.org/b.xml" category="X,x, y"/></body></opml>'
    assert [f.tags for f in read_opml(opml, name="t.opml")] == [("x", "y")]
