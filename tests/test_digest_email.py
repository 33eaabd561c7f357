"""The digest email as subscribers read it: sections capped under Gmail's clip with a table of contents, counts that
agree in number, a preheader spam filters do not mind, the postal address, a preview rendered for a real subscriber,
and the start-up warnings about a set-up whose links lead nowhere. (The fluid layout is checked in a real browser in
test_subscribe_browser.py.)"""

from __future__ import annotations

import email
import email.policy
import random
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from ingest.core.config import DigestConfig, load_settings
from ingest.core.links import digest_url
from ingest.store import Store
from newsletter import cli
from newsletter.digest import compose, job
from newsletter.digest.select import DigestItem, Section, Selection, period_for, subject
from newsletter.subscribers.tokens import Tokens, signing_key
from tests.conftest import GOLDEN, NOW, write_config
from tests.maildata import W48_DUE, W48_START, confirmed, feed_stories, make_settings, page_story
from tests.mailsite import Clock, serve
from tests.test_service import _newsletter, _settings, _wait_for

RunCli = Callable[..., tuple[int, str, str]]
SENT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
MONDAY = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
#: The size the HTML part must stay under: Gmail clips a message at about 102 KB and hides what follows (the footer
#: with the unsubscribe link); 90 KB leaves room for the headers and the text part's share.
HTML_LIMIT = 90_000
_VOCABULARY = (
    "adjuvant neoadjuvant pembrolizumab nivolumab osimertinib trastuzumab deruxtecan olaparib enzalutamide abiraterone "
    "lutetium radioligand immunotherapy chemotherapy radiotherapy biomarker circulating tumour dna minimal residual "
    "disease survival progression response remission relapse refractory metastatic localized resectable inoperable "
    "phase randomized trial cohort registry real world evidence guideline consensus panel oncologist nurse pathway "
    "toxicity cardiotoxicity neuropathy fatigue quality life caregiver cost access equity rural screening biopsy "
    "imaging PET MRI genomic sequencing mutation fusion amplification HER2 EGFR ALK KRAS BRCA PD-L1 MSI dose "
    "schedule sequencing combination maintenance salvage transplant CAR-T bispecific antibody conjugate vaccine"
)
WORDS = tuple(_VOCABULARY.split())


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        yield s


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _content(part: EmailMessage) -> str:
    return str(part.get_content()).replace("\r\n", "\n")


def _parts(msg: EmailMessage) -> tuple[EmailMessage, EmailMessage]:
    html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))
    assert isinstance(html_part, EmailMessage)
    assert isinstance(text_part, EmailMessage)
    return html_part, text_part


def _as_sent(part: EmailMessage) -> int:
    """The size of a MIME part's body as it travels (quoted-printable, CRLF): what a mailbox provider measures."""
    payload = part.get_payload()
    assert isinstance(payload, str)
    return len(payload.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii"))


def _item(n: int, title: str, summary: str = "", source: str = "Oncology Feed", sources: int = 1) -> DigestItem:
    return DigestItem(
        story_id=n,
        title=title,
        url=f"https://example.org/articles/{n}",
        date="24 Nov 2026",
        iso_date="2026-11-24T00:00:00+00:00",
        source=source,
        summary=summary or f"What story {n} says.",
        sources=sources,
    )


def _recipient(address: str = "reader@example.org") -> compose.Recipient:
    return compose.Recipient(
        address=address,
        unsubscribe_url="https://news.example.org/unsubscribe/42.SiGnAtUrE",
        unsubscribe_mailto="mailto:digest@news.example.org?subject=unsubscribe%2042.SiGnAtUrE",
        message_id="<digest.2026-W48.7.42@news.example.org>",
        preferences_url="https://news.example.org/preferences/42.SiGnAtUrE",
    )


def _message(settings_dir: Path, sections: tuple[Section, ...], **digest: object) -> EmailMessage:
    settings = make_settings(settings_dir, digest=dict(digest))
    selection = Selection(period=period_for("2026-W48", settings.digest), sections=sections)
    rendered = compose.render_digest(selection, settings)
    return _parse(compose.message_template(rendered, settings, SENT).build(_recipient()))


def _h2_blocks(doc: str) -> list[str]:
    """The HTML of each section: from its heading to the next (the last up to the footer)."""
    body = doc.split('class="foot"', 1)[0]
    return body.split("<h2")[1:]


# ---- item 7: capped sections, a table of contents, under Gmail's clip -------------------------------------------


@pytest.mark.sqlite_only  # the email's size does not depend on the database (the pipeline runs on both elsewhere)
def test_a_500_story_week_stays_under_gmails_clip(store: Store, tmp_path: Path) -> None:
    """Through the real pipeline (stored, selected, rendered, delivered to the outbox): the HTML part of a 500-story
    week, as sent, stays under 90 KB with its footer; each section shows at most 10 (as many in each) and links to
    the rest on the web page, which shows all 500; the digest's stored story list keeps all 500."""
    rng = random.Random(14)
    settings = make_settings(tmp_path)
    day = W48_START + timedelta(days=1)

    def long_summary(title: str) -> str:
        return f"{title}: {_words(rng, 60)}"

    for n in range(60):
        title = f"{_words(rng, 9).capitalize()} {n}"
        page_story(store, title, first_seen=day, page=f"/srv/seeds/p{n}.txt", summary=long_summary(title))
    for n in range(40):
        title = f"Recap: {_words(rng, 9)} {n}"
        page_story(
            store, title, first_seen=day, page=f"/srv/seeds/r{n}.txt", tags=["recap"], summary=long_summary(title)
        )
    fetched = W48_START + timedelta(days=2)
    summary = "{title}: " + _words(rng, 50)
    for tag in ("breast", "lung", "prostate", "melanoma", "colorectal", "myeloma", ""):
        entries = [(f"{_words(rng, 10).capitalize()} {tag} {n}", fetched - timedelta(hours=n)) for n in range(60)]
        if not tag:
            entries = entries[:40]
        feed_stories(
            store,
            f"https://{tag or 'general'}.example.org/feed.xml",
            entries,
            fetched=fetched,
            name=f"{(tag or 'general').title()} Oncology News Weekly",
            tags=[tag] if tag else [],
            summary=summary,
        )
    confirmed(store, "reader@example.org")

    report = job.send_due_digest(store, settings, W48_DUE)
    assert (report.stories, report.sent) == (500, 1)
    (eml,) = settings.mail.outbox_dir.glob("*.eml")
    html_part, text_part = _parts(_parse(eml.read_bytes()))
    size = _as_sent(html_part)
    assert size < HTML_LIMIT, f"the HTML part is {size} bytes as sent"

    doc = _content(html_part)
    text = _content(text_part)
    page_url = digest_url(settings.publish, "2026-W48")
    blocks = _h2_blocks(doc)
    assert len(blocks) == 9  # articles, recaps, six tags, untagged
    (per_section,) = {block.count("<h3") for block in blocks}  # as many in each: 10, or fewer if 10 outgrew the clip
    assert 1 <= per_section <= 10
    more = re.findall(rf'<a href="{re.escape(page_url)}#([\w-]+)"[^>]*>(\d+) more this week on the web</a>', doc)
    totals = [60, 40, 60, 60, 60, 60, 60, 60, 40]  # articles, recaps, the tags in order, untagged
    assert [int(n) for _, n in more] == [total - per_section for total in totals]
    assert {anchor for anchor, _ in more} >= {"articles", "recaps", "tag-lung"}
    # The table of contents, at the top: every section with its count, linking to it.
    toc = doc.split("<h2", 1)[0]
    for anchor, title, count in (("articles", "New articles", 60), ("recaps", "Recaps", 40), ("tag-lung", "lung", 60)):
        assert re.search(rf'<a href="#{anchor}"[^>]*>[^<]*{title}</a>(?:&nbsp;|\s)*\({count}\)', toc), anchor
        assert f'id="{anchor}"' in doc
    # The footer survived: nothing a clip would hide is missing.
    assert "/unsubscribe/" in doc.rsplit("<h3", 1)[1]
    assert f"{60 - per_section} more this week on the web: {page_url}#articles" in text
    assert "In this issue:\n" in text
    assert "New articles (60)" in text.split("\n\n\nNew articles", 1)[0]
    assert text.count("\n\n\n") >= 9

    digest = store.digest_by_period("2026-W48")
    assert digest is not None
    assert digest.story_count == 500
    assert len(store.digest_stories(digest.id)) == 500  # the stored list keeps every story
    with serve(settings, store, Clock(MONDAY)) as url:
        page = httpx.get(f"{url}/digests/2026-W48", timeout=30)
    assert page.status_code == 200
    assert page.text.count("<h3>") == 500  # the web page shows everything
    assert 'id="tag-lung"' in page.text  # where "N more this week on the web" lands


@pytest.mark.no_database
def test_many_sections_still_fit_and_keep_the_footer(tmp_path: Path) -> None:
    """Forty tags of 25 stories each with long titles: capping each section at 10 is not enough, so the email shows
    fewer per section (at least one each) and stays under the clip, footer and all."""
    rng = random.Random(7)
    sections = tuple(
        Section(
            f"tag:topic-{t}",
            f"From the feeds: topic-{t}",
            tuple(_item(t * 100 + n, _words(rng, 18), _words(rng, 45), _words(rng, 4)) for n in range(25)),
        )
        for t in range(40)
    )
    html_part, text_part = _parts(_message(tmp_path, sections))
    size = _as_sent(html_part)
    assert size < HTML_LIMIT, f"the HTML part is {size} bytes as sent"
    doc = _content(html_part)
    blocks = _h2_blocks(doc)
    assert len(blocks) == 40
    assert all(1 <= block.count("<h3") < 10 for block in blocks)
    assert "https://news.example.org/unsubscribe/42.SiGnAtUrE" in doc.split('class="foot"', 1)[1]
    assert "https://news.example.org/unsubscribe/42.SiGnAtUrE" in _content(text_part)


@pytest.mark.no_database
def test_each_section_is_capped_at_max_per_section(tmp_path: Path) -> None:
    sections = (
        Section("articles", "New articles", tuple(_item(n, f"Article number {n}") for n in range(5))),
        Section("recaps", "Recaps", (_item(9, "Recap: the only one"),)),
    )
    html_part, text_part = _parts(_message(tmp_path, sections, max_per_section=2))
    doc, text = _content(html_part), _content(text_part)
    articles, recaps = _h2_blocks(doc)
    assert re.findall(r"Article number (\d)", articles) == ["0", "1"]
    assert re.search(
        r'<a href="https://news\.example\.org/digests/2026-W48#articles"[^>]*>3 more this week on the web</a>', articles
    )
    assert "more this week" not in recaps
    assert "Article number 2" not in text
    assert "3 more this week on the web: https://news.example.org/digests/2026-W48#articles" in text
    assert text.count("more this week on the web") == 1
    toc = text.split("\n\n\nNew articles", 1)[0]
    assert "New articles (5)" in toc
    assert "Recaps (1)" in toc


@pytest.mark.no_database
@pytest.mark.parametrize("part", ["html", "txt"])
def test_golden_capped_digest_with_a_postal_address(tmp_path: Path, part: str, update_golden: bool) -> None:
    settings = make_settings(
        tmp_path, digest={"max_per_section": 2}, mail={"postal_address": "Oncology News Ltd\n1 Main St & Co"}
    )
    sections = (
        Section("articles", "New articles", tuple(_item(n, f"Article number {n}") for n in range(5))),
        Section("recaps", "Recaps", (_item(9, "Recap: the only one"),)),
        Section("tag:non-small cell", "From the feeds: non-small cell", (_item(11, "One"), _item(12, "Two"))),
    )
    rendered = compose.render_digest(Selection(period_for("2026-W48", settings.digest), sections), settings)
    r = _recipient()
    doc = rendered.html if part == "html" else rendered.text
    got = doc
    for slot in compose.BODY_SLOTS:
        got = got.replace(compose.SLOT.format(slot), getattr(r, slot))
    expected = GOLDEN / "email" / f"digest-capped.{part}"
    if update_golden:
        expected.write_text(got, encoding="utf-8")
    assert expected.exists(), f"no golden file {expected.name}: run pytest --update-golden and review it"
    assert got == expected.read_text(encoding="utf-8")


@pytest.mark.no_database
def test_max_per_section_is_a_digest_setting(tmp_path: Path) -> None:
    assert DigestConfig().max_per_section == 10
    write_config(tmp_path, "[digest]\nmax_per_section = 4\n")
    assert load_settings(tmp_path / "newsletter.toml", environ={}).digest.max_per_section == 4


# ---- item 9: the preheader, hidden without low-contrast text -----------------------------------------------------


def _golden_like(tmp_path: Path) -> EmailMessage:
    sections = (
        Section(
            "articles",
            "New articles",
            (
                _item(1, "Neoadjuvant immunotherapy improves event-free survival in resectable lung cancer"),
                _item(2, "Updated guidance on HER2-low breast cancer testing", source="Site", sources=3),
            ),
        ),
        Section("recaps", "Recaps", (_item(3, "Recap: prostate cancer imaging with PSMA PET"),)),
    )
    return _message(tmp_path, sections)


@pytest.mark.no_database
def test_the_preheader_is_hidden_without_low_contrast_text(tmp_path: Path) -> None:
    html_part, _ = _parts(_golden_like(tmp_path))
    doc = _content(html_part)
    (style,) = re.findall(r'<div class="preheader" style="([^"]*)"', doc)
    rules = {k.strip(): v.strip() for k, v in (rule.split(":", 1) for rule in style.split(";") if rule.strip())}
    assert {"display": "none", "max-height": "0", "overflow": "hidden", "mso-hide": "all", "opacity": "0"}.items() <= (
        rules.items()
    )
    assert "color" not in rules  # text the colour of the background is what spam filters look for


@pytest.mark.slow
@pytest.mark.no_database
@pytest.mark.skipif(
    shutil.which("spamassassin") is None,
    reason="no spamassassin: apt-get install -y spamassassin (make test does) to score the digest",
)
def test_spamassassin_local_rules_score_the_digest_at_most_zero(tmp_path: Path) -> None:
    msg = _golden_like(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        ["spamassassin", "-L", "-t"],
        input=msg.as_bytes(policy=email.policy.SMTP),
        capture_output=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=True,
    )
    report = done.stdout.decode("utf-8", "replace")
    status = re.search(r"^X-Spam-Status: .*?score=(-?[\d.]+).*?tests=([^\n]*(?:\n\s+[^\n]*)*)", report, re.M)
    assert status is not None, report[-3000:]
    tests = " ".join(status.group(2).split())
    assert float(status.group(1)) <= 0.0, tests
    assert "HTML_FONT_LOW_CONTRAST" not in tests


# ---- item 10: counts agree in number -------------------------------------------------------------------------------


@pytest.mark.no_database
@pytest.mark.parametrize(
    ("template", "count", "expected"),
    [
        (None, 1, "Oncology digest: 1 new story, Nov 23 to 29"),
        (None, 2, "Oncology digest: 2 new stories, Nov 23 to 29"),
        (None, 0, "Oncology digest: 0 new stories, Nov 23 to 29"),
        ("Oncology digest: {count} new stories, {start} to {end}", 1, "Oncology digest: 1 new story, Nov 23 to 29"),
        ("{count} stories for {period}", 1, "1 story for 2026-W48"),
        ("{count} new {stories} {unknown}", 1, "1 new story {unknown}"),
        ("{count} new {stories}", 21, "21 new stories"),
        ("Weekly: {stories} ({count})", 1, "Weekly: story (1)"),
        ("{count} new stories", 3, "3 new stories"),
    ],
)
def test_the_subject_agrees_in_number(template: str | None, count: int, expected: str) -> None:
    config = DigestConfig() if template is None else DigestConfig(subject=template)
    assert subject(config, count, period_for("2026-W48", config)) == expected


def test_a_one_story_digest_says_story_everywhere(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    page_story(store, "The only story of the week", first_seen=W48_START + timedelta(days=1))
    confirmed(store, "reader@example.org")
    job.send_due_digest(store, settings, W48_DUE)
    (eml,) = settings.mail.outbox_dir.glob("*.eml")
    msg = _parse(eml.read_bytes())
    assert msg["Subject"] == "Oncology digest: 1 new story, Nov 23 to 29"
    html_part, text_part = _parts(msg)
    doc, text = _content(html_part), _content(text_part)
    assert "1 new story, Nov 23 to 29: The only story of the week" in doc  # the preheader
    assert re.search(r'<p class="intro"[^>]*>1 new story, Nov 23 to 29</p>', doc)
    assert text.startswith("Oncology news: 1 new story, Nov 23 to 29\n")
    with serve(settings, store, Clock(MONDAY)) as url:
        page = httpx.get(f"{url}/digests/2026-W48", timeout=10).text
        listing = httpx.get(f"{url}/digests/", timeout=10).text
        feed = httpx.get(f"{url}/digests.atom", timeout=10).text
    assert "(2026-W48): 1 story." in page
    assert "Oncology digest: 1 new story, Nov 23 to 29" in listing
    assert "1 story: the digest of 2026-W48." in feed
    for where in (doc, text, page, listing, feed, str(msg["Subject"])):
        assert not re.search(r"\b1 (new )?stories\b", where)


# ---- item 11: the preview, for a real subscriber -------------------------------------------------------------------


@pytest.fixture
def ingested(project: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> str:
    """The bundled seed ingested on Friday of 2026-W48, an outbox in the project; returns the config's path."""
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '\n[mail]\noutbox_dir = "outbox"\n')
    monkeypatch.setattr(cli, "now", lambda: NOW)
    assert run_cli("--config", str(cfg), "ingest")[0] == 0
    return str(cfg)


def _unsubscribe_links(msg: EmailMessage) -> tuple[str, str, str]:
    """(the List-Unsubscribe https URL, the HTML footer's link, the text part's link)."""
    header = re.search(r"<(https?://[^>]+)>", str(msg["List-Unsubscribe"]))
    assert header is not None
    html_part, text_part = _parts(msg)
    in_html = re.search(r'<a href="([^"]+)"[^>]*>Unsubscribe</a>', _content(html_part))
    in_text = re.search(r"^Unsubscribe: (\S+)$", _content(text_part), re.M)
    assert in_html is not None
    assert in_text is not None
    return header.group(1), in_html.group(1), in_text.group(1)


def test_digest_preview_is_rendered_for_a_real_subscriber(project: Path, run_cli: RunCli, ingested: str) -> None:
    cfg = ingested
    out = project / "preview"
    code, _, err = run_cli("--config", cfg, "digest", "preview", "--out", str(out))
    assert code == 2
    assert "no confirmed subscriber; add one or pass --as" in err
    assert "Traceback" not in err
    run_cli("--config", cfg, "subscribers", "add", "ann@example.org", "bob@example.org")

    code, stdout, err = run_cli("--config", cfg, "digest", "preview", "--out", str(out))
    assert code == 0, err
    assert "for ann@example.org" in stdout  # the first confirmed subscriber
    msg = _parse((out / "2026-W48.eml").read_bytes())
    assert msg["To"] == "ann@example.org"
    url, in_html, in_text = _unsubscribe_links(msg)
    settings = load_settings(Path(cfg), environ={})
    with Store.open(settings.storage.url) as db:
        ann = db.subscriber_by_email("ann@example.org")
        assert ann is not None
        token = url.rsplit("/", 1)[1]
        assert Tokens(signing_key(db, settings)).check_unsubscribe(token, "ann@example.org") == ann.id
    assert in_html == in_text == url
    written_html = (out / "2026-W48.html").read_text(encoding="utf-8")
    written_text = (out / "2026-W48.txt").read_text(encoding="utf-8")
    assert f'href="{url}"' in written_html
    assert f"Unsubscribe: {url}\n" in written_text
    for doc in (written_html, written_text, msg.as_string()):
        assert "example.invalid" not in doc
        assert "#unsubscribe" not in doc
        assert "ann@example.org" in doc

    code, stdout, err = run_cli("--config", cfg, "digest", "preview", "--as", "Bob@Example.org", "--out", str(out))
    assert code == 0, err
    assert _parse((out / "2026-W48.eml").read_bytes())["To"] == "bob@example.org"
    assert "bob@example.org" in (out / "2026-W48.txt").read_text(encoding="utf-8")

    code, _, err = run_cli("--config", cfg, "digest", "preview", "--as", "nobody@example.org", "--out", str(out))
    assert code == 2
    assert "nobody@example.org" in err
    assert "Traceback" not in err


def test_a_preview_of_a_sent_digest_is_what_the_subscriber_got(
    project: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, ingested: str
) -> None:
    cfg = ingested
    out = project / "preview"
    run_cli("--config", cfg, "subscribers", "add", "ann@example.org", "bob@example.org")
    monkeypatch.setattr(cli, "now", lambda: MONDAY)
    assert run_cli("--config", cfg, "digest", "send")[0] == 0
    code, _, err = run_cli(
        "--config", cfg, "digest", "preview", "--period", "2026-W48", "--as", "bob@example.org", "--out", str(out)
    )
    assert code == 0, err
    shown = _parse((out / "2026-W48.eml").read_bytes())
    (got,) = [
        m
        for m in map(_parse, (p.read_bytes() for p in (project / "outbox").glob("*.eml")))
        if m["To"] == "bob@example.org"
    ]
    for header in ("Message-ID", "List-Unsubscribe", "Subject", "To"):
        assert shown[header] == got[header], header
    assert _unsubscribe_links(shown) == _unsubscribe_links(got)
    assert _parts(shown)[0].get_content() == _parts(got)[0].get_content()
    assert _parts(shown)[1].get_content() == _parts(got)[1].get_content()


# ---- item 12: the postal address, and warnings about a set-up whose links lead nowhere ----------------------------


@pytest.mark.no_database
def test_the_postal_address_is_in_both_footers(tmp_path: Path) -> None:
    write_config(tmp_path, '[mail]\npostal_address = """Oncology News Ltd\n1 Main St & <Annex>\nSpringfield, IL"""\n')
    settings = load_settings(tmp_path / "newsletter.toml", environ={})
    selection = Selection(period=period_for("2026-W48", settings.digest), sections=())
    rendered = compose.render_digest(selection, settings)
    foot = rendered.html.split('class="foot"', 1)[1]
    assert re.search(r"Oncology News Ltd<br>\s*1 Main St &amp; &lt;Annex&gt;<br>\s*Springfield, IL", foot)
    assert "<Annex>" not in rendered.html
    assert "\nOncology News Ltd\n1 Main St & <Annex>\nSpringfield, IL\n" in rendered.text.split("\n-- \n", 1)[1]

    plain = compose.render_digest(selection, make_settings(tmp_path))
    assert "Springfield" not in plain.html + plain.text
    assert "<br>" not in plain.html.split('class="foot"', 1)[1]


LOOPBACK = '[publish]\nbase_url = "{url}"\ndir = "public"\n[mail]\ntransport = "smtp"\nfrom_address = "{sender}"\n'
PUBLIC = "https://news.example.org/"


@pytest.mark.no_database
@pytest.mark.parametrize(
    ("url", "sender", "transport", "keys"),
    [
        ("http://127.0.0.1:8080/", "Digest <digest@localhost>", "smtp", ["[publish] base_url", "[mail] from_address"]),
        ("http://localhost:8080/", "Digest <digest@news.example.org>", "smtp", ["[publish] base_url"]),
        ("http://127.9.9.9/", "digest@news.example.org", "smtp", ["[publish] base_url"]),
        ("http://[::1]:8080/", "digest@news.example.org", "smtp", ["[publish] base_url"]),
        (PUBLIC, "Digest <digest@LOCALHOST>", "smtp", ["[mail] from_address"]),
        (PUBLIC, "Digest <digest@news.example.org>", "smtp", []),
        ("http://127.0.0.1:8080/", "Digest <digest@localhost>", "outbox", []),  # nothing leaves the machine
    ],
)
def test_mail_setup_warnings(tmp_path: Path, url: str, sender: str, transport: str, keys: list[str]) -> None:
    settings = make_settings(tmp_path, mail={"transport": transport})
    settings = settings.model_copy(
        update={
            "publish": settings.publish.model_copy(update={"base_url": url}),
            "mail": settings.mail.model_copy(update={"from_address": sender}),
        }
    )
    warnings = job.mail_warnings(settings)
    assert [w.split(" ", 2)[:2] for w in warnings] == [k.split(" ") for k in keys]
    for warning in warnings:
        assert "set " in warning  # says what to set


def test_digest_send_and_run_once_warn_once_about_loopback_links(
    project: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + LOOPBACK.format(url="http://127.0.0.1:8080/", sender="Digest <digest@localhost>"))
    monkeypatch.setattr(cli, "now", lambda: NOW)  # nothing due to send: no SMTP server is needed
    for args in (("digest", "send"), ("run", "--once")):
        code, _, err = run_cli("--config", str(cfg), *args)
        assert code == 0, err
        assert err.count("[publish] base_url is 'http://127.0.0.1:8080/', a loopback address") == 1, err
        assert err.count("[mail] from_address is 'Digest <digest@localhost>', an address at localhost") == 1, err
        assert "127.0.0.1" in err
    cfg.write_text(cfg.read_text().replace("http://127.0.0.1:8080/", PUBLIC))
    code, _, err = run_cli("--config", str(cfg), "digest", "send")
    assert code == 0, err
    assert "[publish] base_url" not in err
    assert "[mail] from_address" in err


@pytest.mark.slow
@pytest.mark.sqlite_only  # what is warned does not depend on the database; a service start costs seconds
def test_the_long_running_service_warns_once_at_start(project: Path) -> None:
    """``newsletter run``: the warning comes once, at start, not with every pass."""
    settings = _settings(project, 'base_url = "http://localhost:8080/"\n', mail='transport = "smtp"\n')
    feed = project / "public" / "feed.atom"
    with _newsletter(settings, "run", "--no-web", "--tick", "0.2") as proc:
        _wait_for(feed.exists, "the first pass to publish the feed")
        page = (project / "seeds" / "000_a91153ef02972648.txt").read_text()
        (project / "seeds" / "new-page.txt").write_text(
            page + "\nA Teaser Seen on a Later Pass\nNovember 26th 2026A blurb for a later pass.\n"
        )
        _wait_for(lambda: "A Teaser Seen on a Later Pass" in feed.read_text(), "a later pass")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stderr.count("WARNING newsletter.service: [publish] base_url is 'http://localhost:8080/'") == 1, stderr
    assert stderr.count("WARNING newsletter.service: [mail] from_address is") == 1, stderr  # the default's @localhost
