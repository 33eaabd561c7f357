"""Every kind of page is valid HTML: the ``datetime`` of each ``<time>`` in the grammar HTML allows (always checked),
and 0 errors and 0 warnings from the Nu Html Checker (vnu.jar, with Java; skipped with the reason when missing).

``make test`` installs vnu.jar from the npm registry into ``.venv/vnu/`` (see the Makefile's ``vnu`` target); set
``VNU_JAR`` to use another copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ingest.core.models import ParsedItem
from newsletter.web.pages import PAGE_SIZE
from tests.maildata import W48_START, page_story
from tests.mailsite import Site, live_site

ROOT = Path(__file__).resolve().parent.parent
VNU_JAR = Path(os.environ.get("VNU_JAR") or ROOT / ".venv/vnu/node_modules/vnu-jar/build/dist/vnu.jar")

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]  # what a page looks like does not depend on the database

#: HTML's "valid global date and time string" as we write it (an offset or Z, at most 3 fractional digits), or a
#: "valid date string" (https://html.spec.whatwg.org/multipage/common-microsyntaxes.html#dates-and-times).
VALID_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2}))?")


class _Times(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "time":
            self.values.append(dict(attrs).get("datetime"))


@pytest.fixture
def pages(tmp_path: Path, db_url: str) -> Iterator[dict[str, str]]:
    """Each kind of page, as served, by name. Times carry microseconds, as a real clock gives them."""
    with live_site(tmp_path, db_url) as site:
        odd = W48_START + timedelta(days=3, hours=5, seconds=39, microseconds=993399)
        story = page_story(site.store, "An undated story seen at an odd moment", first_seen=odd, page="/s/odd.txt")
        page_story(
            site.store,
            "A dated story",
            first_seen=odd,
            published=odd - timedelta(hours=1, microseconds=1),
            page="/s/dated.txt",
        )
        many = site.store.page_source("/s/many.txt", "/s", odd)
        teasers = [
            ParsedItem(
                kind="teaser",
                key=f"k{i}",
                position=i,
                title=f"Teaser {i}",
                published=None,
                summary="",
                topics=("lung",),
            )
            for i in range(PAGE_SIZE)
        ]
        site.store.save_page(many.id, teasers, content_hash="many", warning=None, now=odd)
        yield _fetch(site, story)


def _fetch(site: Site, story: int) -> dict[str, str]:
    with site.client() as client:
        client.post("/subscribe", data={"email": "new.reader@example.org"})
        (mail,) = site.outbox()
        confirm = next(line for line in mail.get_body(("plain",)).get_content().split() if "/confirm/" in line)  # type: ignore[union-attr]
        paths = {
            "home": "/",
            "home, page 2": "/?page=2",
            "search": "/?q=story",
            "topic": "/?topic=lung",
            "search in a topic": "/?topic=lung&q=teaser",
            "story": f"/stories/{story}",
            "subscribe": "/subscribe",
            "confirm": "/" + confirm.split("/", 3)[3],
            "unsubscribe": f"/unsubscribe/{site.unsubscribe_token('reader@example.org')}",
            "digests": "/digests/",
            "digest": "/digests/2026-W48",
            "404": "/no/such/page",
        }
        found = {}
        for name, path in paths.items():
            answer = client.get(path)
            assert answer.status_code == (404 if name == "404" else 200), (name, answer.status_code)
            assert answer.headers["content-type"] == "text/html; charset=utf-8"
            found[name] = answer.text
    return found


def test_every_time_element_has_a_valid_datetime(pages: dict[str, str]) -> None:
    seen = 0
    for name, text in pages.items():
        parser = _Times()
        parser.feed(text)
        for value in parser.values:
            assert value is not None and VALID_DATETIME.fullmatch(value), f"{name}: <time datetime={value!r}>"
            seen += 1
    assert seen >= 5
    assert 'datetime="2026-11-26T05:00:39.993+00:00"' in pages["home"]  # to the millisecond, in UTC


@pytest.mark.skipif(shutil.which("java") is None, reason="no java: the Nu Html Checker (vnu.jar) needs Java 11+")
@pytest.mark.skipif(
    not VNU_JAR.is_file(), reason=f"no {VNU_JAR}: `make test` installs it (npm install vnu-jar), or set VNU_JAR"
)
def test_the_nu_html_checker_finds_nothing(pages: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "pages"
    folder.mkdir()
    for name, text in pages.items():
        (folder / f"{name}.html").write_text(text, encoding="utf-8")
    run = subprocess.run(
        ["java", "-jar", str(VNU_JAR), "--format", "json", "--also-check-css", "--exit-zero-always", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    messages = json.loads(run.stderr)["messages"]
    problems = [
        f"{Path(m.get('url', '?')).name}:{m.get('lastLine', '?')}: {m.get('type')} {m.get('subType', '')}: "
        f"{m.get('message')} [{m.get('extract', '').strip()}]"
        for m in messages
        if m.get("type") != "info" or m.get("subType") == "warning"
    ]
    assert problems == [], "\n".join(problems)
    assert len(list(folder.iterdir())) == len(pages)
