"""What subscribers read (issue 14 items 1, 2 and 3): sources by name, real headlines, and honest dates.

Through the real CLI where it can: seed folders and a feed on the hostile server ingested, then the digest preview
(HTML and text), the digest's web page and a story page read as a subscriber reads them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from ingest.core.config import load_settings
from ingest.core.models import Candidate, Origin, Story
from ingest.core.sources import reader_sources, source_name
from ingest.core.text import after_headline, headline
from ingest.store import Store
from newsletter import cli
from newsletter.digest.select import best_source
from tests.conftest import BUNDLED_SEEDS, NOW, ROOT, write_config
from tests.mailsite import Clock, serve
from tests.servers import HostileServer

RunCli = Callable[..., tuple[int, str, str]]
DEDUPE_FIXTURES = ROOT / "tests" / "fixtures" / "dedupe"
MONDAY = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # the digest of 2026-W48 is due

# ---- item 1: sources by name ---------------------------------------------------------------------------------------


@pytest.mark.no_database
def test_a_source_is_named_by_its_site_never_by_a_file() -> None:
    assert source_name("feed", "OncLive", "https://x.example/rss", None, None) == "OncLive"  # configured, or its title
    assert source_name("feed", None, "https://www.onclive.com/rss/news", None, None) == "www.onclive.com"
    assert source_name("feed", None, "https://old.example/rss", "https://new.example/feed", None) == "new.example"
    assert source_name("page", "Targeted Oncology", "/srv/seeds/004_page.txt", None, "/srv/seeds") == (
        "Targeted Oncology"
    )
    assert source_name("page", None, "/srv/targetedonc/004_page.txt", None, "/srv/targetedonc") == "targetedonc"


@pytest.mark.no_database
def test_copies_in_one_source_count_once() -> None:
    t = NOW
    found = reader_sources(
        [
            ("Targeted Oncology", "https://www.targetedonc.com/", None, t, None),  # two pages of one folder
            ("targeted oncology", None, None, t, "Jo"),
            ("OncLive", None, "https://www.onclive.com/view/x", t, None),
            ("OncLive", "javascript:alert(1)", "/local/path", t, None),  # never a link that is not http(s)
        ]
    )
    assert [(s.name, s.url, s.link, s.author) for s in found] == [
        ("Targeted Oncology", "https://www.targetedonc.com/", None, "Jo"),
        ("OncLive", None, "https://www.onclive.com/view/x", None),
    ]


def _origin(name: str, *, link: str | None = None, title: str = "T", derived: bool = False) -> Origin:
    return Origin("feed", name, (), None, NOW, NOW, None, link, title, derived)


@pytest.mark.no_database
def test_the_best_source_is_where_the_link_leads_else_who_gave_the_headline() -> None:
    story = Story(1, "u", "T", "", "", "https://b.example/x", None, NOW, NOW, ())
    a, b = _origin("A", title="T"), _origin("B", link="https://b.example/x", title="Other")
    assert best_source(Candidate(story, (a, b))) == b
    unlinked = replace(story, link=None)
    assert best_source(Candidate(unlinked, (_origin("Derived", derived=True), a))) == a
    assert best_source(
        Candidate(unlinked, (_origin("First", title="X"), _origin("Second", title="Y")))
    ).source_name == ("First")


def test_a_folder_renamed_in_the_config_is_renamed_on_its_pages(db_url: str) -> None:
    with Store.open(db_url) as store:
        store.page_source("/s/a.txt", "/s", NOW, name="Old Name", site_url="https://old.example/")
        renamed = store.page_source("/s/a.txt", "/s", NOW, name="Targeted Oncology", site_url=None)
        assert (renamed.name, renamed.site_url) == ("Targeted Oncology", None)
        assert store.page_source("/s/a.txt", "/s", NOW).name is None  # no longer named: its folder's name shows


# ---- item 2: a headline for a story that has none ------------------------------------------------------------------

BUNDLED_STANDFIRST = (
    "Panelists discussed how evolving strategies in HER2-positive metastatic breast cancer are shifting toward more "
    "personalized maintenance approaches, including the integration of CDK4/6 inhibitors and endocrine therapy, with "
    "growing interest in chemotherapy-free options for select patients."
)


@pytest.mark.no_database
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A first sentence short enough is the headline, whole.
        ("CAR T moves to second line. Experts weighed how.", "CAR T moves to second line"),
        ("Is maintenance needed after induction? Panelists disagreed.", "Is maintenance needed after induction?"),
        # Too long: the last clause boundary within the limit (a comma followed by a clause)...
        (
            "CAR T-cell therapy has moved into the second-line setting for large B-cell lymphoma, and experts weighed "
            "how to select patients, bridge them to infusion, and manage cytokine release syndrome outside academic "
            "centers.",
            "CAR T-cell therapy has moved into the second-line setting for large B-cell lymphoma",
        ),
        # ... else the first one a little past it: a long headline, but a whole clause.
        (
            BUNDLED_STANDFIRST,
            "Panelists discussed how evolving strategies in HER2-positive metastatic breast cancer are shifting toward "
            "more personalized maintenance approaches",
        ),
        # A colon, a semicolon or a spaced dash are boundaries too; not one inside brackets.
        (
            "Datopotamab deruxtecan and patritumab deruxtecan (both antibody-drug conjugates, both in trials) showed "
            "responses in pretreated disease; toxicity management remains the central concern for most panelists.",
            "Datopotamab deruxtecan and patritumab deruxtecan (both antibody-drug conjugates, both in trials) showed "
            "responses in pretreated disease",
        ),
        (
            "Experts from four academic centers reviewed outpatient step-up dosing of bispecific antibodies — and "
            "found hospital admission to be the main barrier to using them in community practices across the country.",
            "Experts from four academic centers reviewed outpatient step-up dosing of bispecific antibodies",
        ),
    ],
)
def test_a_derived_headline_is_a_whole_sentence_or_a_whole_clause(text: str, expected: str) -> None:
    assert headline(text) == expected
    assert len(expected) <= 180


@pytest.mark.no_database
def test_without_a_clause_boundary_a_headline_is_cut_between_words() -> None:
    text = (
        "Antibody drug conjugates targeting TROP2 and HER3 are expanding the options for patients with EGFR mutated "
        "non small cell lung cancer whose disease progresses on osimertinib though toxicity management remains hard."
    )
    got = headline(text)
    assert got.endswith("…")
    assert len(got) <= 120
    assert text.startswith(got.removesuffix("…"))
    assert text[len(got) - 1] == " "  # the cut falls between two words, never inside one


@pytest.mark.no_database
@pytest.mark.parametrize(
    ("title", "text", "expected"),
    [
        # A whole first sentence taken as the headline: the summary starts with the next one.
        ("CAR T moves to second line", "CAR T moves to second line. Experts weighed how.", "Experts weighed how."),
        ("Is it needed?", "Is it needed? Panelists disagreed.", "Panelists disagreed."),
        ("CAR T moves to second line", "CAR T moves to second line.", ""),
        # A clause: the summary goes on from where the headline stopped.
        (
            "Panelists discussed how evolving strategies in HER2-positive metastatic breast cancer are shifting toward "
            "more personalized maintenance approaches",
            BUNDLED_STANDFIRST,
            "…including the integration of CDK4/6 inhibitors and endocrine therapy, with growing interest in "
            "chemotherapy-free options for select patients.",
        ),
        ("Cut between…", "Cut between two words here.", "…two words here."),
        # A headline the summary merely begins with (no boundary after it), or does not begin with: untouched.
        ("Lung", "Lung cancer screening widens.", "Lung cancer screening widens."),
        ("Other news", "Lung cancer screening widens.", "Lung cancer screening widens."),
    ],
)
def test_the_summary_starts_after_the_headline(title: str, text: str, expected: str) -> None:
    assert after_headline(title, text, derived=True) == expected


@pytest.mark.no_database
def test_a_real_headline_takes_off_only_a_whole_sentence() -> None:
    assert after_headline("Lung cancer screening widens", "Lung cancer screening widens. Why.", derived=False) == "Why."
    text = "Lung cancer, the big killer, is screened more widely."
    assert after_headline("Lung cancer", text, derived=False) == text
    assert after_headline("Lung cancer", text, derived=True) == "…the big killer, is screened more widely."


# ---- the corpus a subscriber tried: saved pages of one site, and that site's feed ----------------------------------

FETCH = """
[fetch]
timeout = 5.0
trusted_networks = ["127.0.0.1/32"]
"""
SEED_SITE = """
[[seeds.folders]]
path = "seeds"
name = "Targeted Oncology"
url = "https://www.targetedonc.com/"
"""
PAGES = ("page_01.txt", "page_02_crlf.txt", "page_03_bom.txt", "page_04.txt")
# The site RSS: one entry the seed pages carry too (Prolaris: two pages, and this feed), one of this week.
SITE_RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>OncLive News</title><link>https://www.onclive.com/</link>
<item><title>Prolaris in Practice: Guiding ADT Benefits, Clinical Application, and Expert Insights From ACRO 2025
</title><link>https://www.onclive.com/view/prolaris-in-practice-guiding-adt-benefits?utm_source=rss</link>
<guid isPermaLink="false">onclive-1</guid><pubDate>Mon, 14 Apr 2025 21:30:00 -0400</pubDate>
<description>Steven E. Finkelstein, MD, explained how the Prolaris test quantifies the benefit of ADT.</description>
</item>
<item><title>Perioperative durvalumab improves event-free survival in gastric cancer</title>
<link>https://www.onclive.com/view/durvalumab-gastric</link><guid isPermaLink="false">onclive-2</guid>
<pubDate>Wed, 25 Nov 2026 14:00:00 GMT</pubDate><description>MATTERHORN results at a glance.</description></item>
</channel></rss>
"""
PROLARIS = "Prolaris in Practice: Guiding ADT Benefits, Clinical Application, and Expert Insights From ACRO 2025"
HEADLINE = (  # page_01's article: no teaser or entry gives it a headline
    'Investigators are increasingly using circulating tumor DNA ("ctDNA") to decide which patients with resected '
    "stage II colon cancer need adjuvant chemotherapy"
)


@pytest.fixture
def corpus(tmp_path: Path, hostile_server: HostileServer, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled page and four more of one site in one seed folder, named; the site's RSS on the hostile server;
    all ingested on Friday of 2026-W48, and one confirmed reader. Returns the config's path."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    shutil.copy(BUNDLED_SEEDS / "000_a91153ef02972648.txt", seeds / "000_page.txt")
    for i, name in enumerate(PAGES, start=1):
        shutil.copy(DEDUPE_FIXTURES / name, seeds / f"00{i}_page.txt")
    hostile_server.set("/rss", headers={"Content-Type": "application/rss+xml"}, body=SITE_RSS)
    extra = f'{SEED_SITE}{FETCH}\n[mail]\noutbox_dir = "outbox"\n\n[[feeds]]\nurl = "{hostile_server.url("/rss")}"\n'
    cfg = write_config(tmp_path, extra)
    monkeypatch.setattr(cli, "now", lambda: NOW)
    code, _, err = run_cli("--config", str(cfg), "ingest")
    assert code == 0, err
    assert run_cli("--config", str(cfg), "subscribers", "add", "ann@example.org")[0] == 0
    return cfg


def _preview(run_cli: RunCli, cfg: Path) -> tuple[str, str]:
    """The digest of 2026-W48 as ann would get it: (the HTML part, the text part)."""
    out = cfg.parent / "preview"
    code, _, err = run_cli("--config", str(cfg), "digest", "preview", "--out", str(out))
    assert code == 0, err
    msg = message_from_bytes((out / "2026-W48.eml").read_bytes(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    parts = [msg.get_body((kind,)) for kind in ("html", "plain")]
    html_part, text_part = (str(p.get_content()).replace("\r\n", "\n") for p in parts if p is not None)
    return html_part, text_part


def _entry(text: str, title: str) -> str:
    """A story's lines in the text part: from its title to its link."""
    start = text.index(f"\n{title}\n")
    return text[start + 1 : text.index("\nhttp", start)]


def test_the_digest_reads_like_an_editor_made_it(corpus: Path, run_cli: RunCli) -> None:
    html_part, text = _preview(run_cli, corpus)
    # Item 1: sites by name, never a file; copies of a story counted once per source.
    for doc in (html_part, text):
        assert ".txt" not in doc
        assert "and 7 more" not in doc
    assert "Targeted Oncology" in _entry(text, HEADLINE)
    prolaris = _entry(text, PROLARIS)
    assert "OncLive News · seen in 2 sources" in prolaris  # its link's source; two pages of one site are one source
    # Item 2: a real headline, and its sentence is not repeated below it.
    assert text.count("Investigators are increasingly using circulating tumor DNA") == 1
    assert "…sparing many from oxaliplatin-related neuropathy" in " ".join(_entry(text, HEADLINE).split())
    assert "…" not in "".join(line.split("\n")[0] for line in text.split("\n\n"))  # no title is cut short
    # Item 3: an old date says when we found it.
    assert "15 Apr 2025, first seen this week" in prolaris
    assert "16 Jul 2022, first seen this week" in _entry(
        text, "Recap: Updates in Treatment of HER2-Positive Breast Cancer and Brain Metastases"
    )
    durvalumab = _entry(text, "Perioperative durvalumab improves event-free survival in gastric cancer")
    assert "25 Nov 2026 · OncLive News" in durvalumab
    assert "first seen" not in durvalumab
    assert '<time datetime="2025-04-15T01:30:00+00:00">15 Apr 2025</time>, first seen this week' in html_part


def test_the_site_names_sources_and_says_when_old_stories_were_found(
    corpus: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "now", lambda: MONDAY)
    code, _, err = run_cli("--config", str(corpus), "digest", "send")
    assert code == 0, err
    settings = load_settings(corpus, environ={})
    with Store.open(settings.storage.url) as store:
        ids = {s.title: s.id for s in store.stories()}
        with serve(settings, store, Clock(MONDAY)) as url, httpx.Client(base_url=url, timeout=10) as client:
            digest = client.get("/digests/2026-W48").text
            prolaris = client.get(f"/stories/{ids[PROLARIS]}").text
            article = client.get(f"/stories/{ids[HEADLINE]}").text
    # The digest's web page: as the email (items 1 and 3).
    assert ".txt" not in digest
    assert "15 Apr 2025</time>, first seen this week · OncLive News · seen in 2 sources" in digest
    # A story page: its distinct sources, each linked to its site; never a file or a path on the server.
    for page in (prolaris, article):
        assert ".txt" not in page
        assert str(corpus.parent) not in page
    assert "Seen in 2 sources" in prolaris
    assert '<a href="https://www.targetedonc.com/" rel="noopener noreferrer nofollow">Targeted Oncology</a>' in prolaris
    assert '<a href="https://www.onclive.com/" rel="noopener noreferrer nofollow">OncLive News</a>' in prolaris
    assert "Seen in 1 source" in article
    # Item 2 on the page: the headline, then the article from where the headline stopped.
    assert article.count("Investigators are increasingly using circulating tumor DNA") == 2  # <title> and <h1>
    assert "<p>…sparing many from oxaliplatin-related neuropathy" in article
