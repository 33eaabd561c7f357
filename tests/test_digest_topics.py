"""Personalised digests (issue 18 item 4): each subscriber gets the period's stories in their topics, rendered once
per distinct topic set, with a line counting the rest; a subscriber whose topics had no story gets nothing (recorded
as an ``empty`` delivery); exactly once per (edition, subscriber). Through the real job and outbox, both databases.
(Exactly once across SIGKILL with editions: tests/test_deliver.py.)"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from ingest.core.models import NewDigest, NewEdition
from ingest.store import MissingEditionError, Store
from newsletter import cli
from newsletter.digest import job
from newsletter.digest.select import period_for
from newsletter.subscribers import manage as subscribers
from tests.conftest import write_config
from tests.maildata import W48_DUE, W48_START, confirmed, make_settings, page_story
from tests.mailsite import Clock, serve

ALL, LUNG, LUNG_TOO, BOTH, SARCOMA = (
    "all@example.org", "lung@example.org", "lung2@example.org", "both@example.org", "sarcoma@example.org",
)  # fmt: skip


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        _fill(s)
        yield s


def _fill(s: Store) -> None:
    lung = page_story(s, "Osimertinib after resection", first_seen=W48_START)
    breast = page_story(s, "A breast screening trial", first_seen=W48_START, page="/srv/seeds/b.txt")
    page_story(s, "Hospital news", first_seen=W48_START, page="/srv/seeds/c.txt")
    s.set_story_topic(lung, "lung", added=True, now=W48_START)
    s.set_story_topic(breast, "breast", added=True, now=W48_START)
    confirmed(s, ALL, LUNG, LUNG_TOO, BOTH, SARCOMA)
    for address, topics in (
        (LUNG, ("lung",)),
        (LUNG_TOO, ("lung",)),
        (BOTH, ("lung", "breast")),
        (SARCOMA, ("sarcoma",)),
    ):
        subscribers.set_topics(s, address, topics)


def _outbox(folder: Path) -> dict[str, EmailMessage]:
    found = {}
    for path in folder.glob("*.eml"):
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        assert str(msg["To"]) not in found, "a second copy"
        found[str(msg["To"])] = msg
    return found


def _text(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def test_each_subscriber_gets_their_topics_rendered_once_per_topic_set(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    report = job.send_due_digest(store, settings, W48_DUE)
    assert (report.status, report.sent) == ("sent", 4)
    sent = _outbox(settings.mail.outbox_dir)
    assert set(sent) == {ALL, LUNG, LUNG_TOO, BOTH}  # sarcoma: no story this week, no mail
    assert "3 new stories" in str(sent[ALL]["Subject"]) and "other topics" not in _text(sent[ALL])
    for address in (LUNG, LUNG_TOO):
        text = _text(sent[address])
        assert "1 new story" in str(sent[address]["Subject"])
        assert "Osimertinib after resection" in text and "breast" not in text and "Hospital news" not in text
        assert "2 more stories this week in other topics: https://news.example.org/digests/2026-W48" in text
    assert "A breast screening trial" in _text(sent[BOTH]) and "1 more story this week in other topics" in _text(
        sent[BOTH]
    )
    digest = store.digest_by_period("2026-W48")
    assert digest is not None and digest.story_count == 3  # the digest (and its web page) keeps every story
    editions = store.editions(digest.id)
    assert sorted(e.topics for e in editions.values()) == [("breast", "lung"), ("lung",), ("sarcoma",)]
    rows = {d.email: d for d in store.deliveries(digest.id)}
    assert rows[LUNG].edition_id == rows[LUNG_TOO].edition_id is not None  # one rendering for both
    assert rows[ALL].edition_id is None and rows[SARCOMA].status == "empty"

    again = job.send_due_digest(store, settings, W48_DUE)
    assert (again.created, again.sent) == (False, 0)
    assert len(list(settings.mail.outbox_dir.glob("*.eml"))) == 4


def test_preview_shows_a_subscribers_own_edition(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    shown = job.preview(store, settings, W48_DUE, tmp_path / "before", period="2026-W48", as_email=LUNG)
    assert shown.stories == 1 and "other topics" in shown.text.read_text()
    job.send_due_digest(store, settings, W48_DUE)
    stored = job.preview(store, settings, W48_DUE, tmp_path / "after", period="2026-W48", as_email=LUNG)
    assert stored.stored and stored.stories == 1
    assert stored.html.read_text() == shown.html.read_text()


def test_a_topic_set_chosen_while_the_digest_is_made_is_never_sent_someone_elses(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    period = period_for("2026-W48", settings.digest)
    base = NewDigest(
        period=period.key,
        status="pending",
        period_start=period.start,
        period_end=period.end,
        due_at=period.due_at,
        created_at=W48_DUE,
        editions=(NewEdition(("lung",), 1, "s", "h", "t"),),  # made before BOTH and SARCOMA chose theirs
    )
    with pytest.raises(MissingEditionError):
        store.create_digest(base)
    assert store.digest_by_period("2026-W48") is None  # nothing stored: the job renders again
    digest, created = job.ensure_digest(store, settings, period, W48_DUE)
    assert created and len(store.editions(digest.id)) == 3


def test_each_item_names_its_topics_in_the_email_and_on_the_web(
    store: Store, tmp_path: Path, run_cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CLI's ``digest send`` (the names come from the taxonomy it loads) and the web digest page."""
    mail = 'from_address = "Digest <digest@news.example.org>"\noutbox_dir = "outbox"\ntransport = "outbox"\n'
    cfg = write_config(tmp_path, f'\n[publish]\nbase_url = "https://news.example.org/"\n\n[mail]\n{mail}')
    monkeypatch.setattr(cli, "now", lambda: W48_DUE)
    code, _, err = run_cli("--config", str(cfg), "digest", "send")
    assert code == 0, err
    sent = _outbox(tmp_path / "outbox")
    html = sent[ALL].get_body(("html",))
    assert html is not None
    meta = re.findall(r'<p class="meta"[^>]*>(.*?)</p>', str(html.get_content()), re.S)
    assert any(m.endswith(" · Lung cancer") for m in meta), meta
    assert any(m.endswith(" · Breast cancer") for m in meta), meta
    assert sum("cancer" in m for m in meta) == 2  # the story with no topic names none
    lines = _text(sent[ALL]).splitlines()
    assert lines[lines.index("Osimertinib after resection") + 1].endswith(" · Lung cancer")
    assert "cancer" not in lines[lines.index("Hospital news") + 1]
    settings = make_settings(tmp_path)
    with serve(settings, store, Clock(W48_DUE)) as url, httpx.Client(base_url=url, timeout=10) as client:
        page = client.get("/digests/2026-W48").text
        feed = client.get("/digests.atom").text
    assert re.search(r"<p class=\"muted\">[^\n]*· Lung cancer</p>", page)
    assert "Breast cancer" in page and "Lung cancer" in html_lib.unescape(feed)
