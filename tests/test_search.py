"""Search: SQLite FTS5 and PostgreSQL full text find the same stories for the same queries (every test runs on both),
ranked by relevance then date; medical terms with hyphens, digits and slashes find what a reader expects."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from ingest.core.config import load_settings
from ingest.core.models import ParsedItem
from ingest.core.search import search_query, search_text
from ingest.store import Store
from ingest.store.engine import MIGRATIONS, _v13
from newsletter.web.app import site
from tests.conftest import NOW, write_config
from tests.mailsite import serve_app

#: key -> (title, summary); the stories are a day apart, "a" the oldest.
STORIES = {
    "a": ("Trastuzumab deruxtecan in HER2-positive breast cancer", "A phase 3 trial reports overall survival."),
    "b": ("HER2 positive disease gets a new antibody", "Early results from a small cohort."),
    "c": ("HER2-low tumours respond as well", "Patients were not HER2-positive in this series."),
    "d": ("PD-1 blockade before surgery in melanoma", "Neoadjuvant nivolumab shrank most tumours."),
    "e": ("PD-L1 testing in lung cancer", "Expression of 1 percent or more qualifies for treatment."),
    "f": ("CDK4/6 inhibitors extend survival", "Ribociclib added to endocrine therapy."),
    "g": ("Palbociclib in practice", "A CDK4/6 inhibitor studied in real-world data."),
    "h": ("Ménétrier disease: a résumé", "A rare gastropathy described again."),
    "i": ("Screening for lung cancer reaches more smokers", "Low-dose CT in community clinics."),
}

#: query -> the stories it finds (a set: equal relevance may order differently between the engines)
EXPECTED = {
    "HER2-positive": {"a", "b", "c"},
    "her2positive": {"a", "c"},
    "her2": {"a", "b", "c"},
    "PD-1": {"d"},
    "pd1": {"d"},
    "PD-L1": {"e"},
    "CDK4/6": {"f", "g"},
    "cdk4": {"f", "g"},
    "lung -screening": {"e"},
    "melanoma or lung": {"d", "e", "i"},
    '"lung cancer"': {"e", "i"},
    '"cancer lung"': set(),
    "menetrier": {"h"},
    "MÉNÉTRIER résumé": {"h"},
    "low-dose": {"i"},
    "survival": {"a", "f"},
    "-lung": set(),
    "": set(),
    "%": set(),
    "or": {"e"},  # a word like any other when nothing comes before it
}


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as opened:
        page = opened.page_source("/srv/seeds/p.txt", "/srv/seeds", NOW)
        items = [
            ParsedItem(
                kind="teaser",
                key=key,
                position=n,
                title=title,
                summary=summary,
                link=f"https://example.org/{key}",
                published=NOW - timedelta(days=len(STORIES) - n),
            )
            for n, (key, (title, summary)) in enumerate(STORIES.items())
        ]
        opened.save_page(page.id, items, content_hash="h", warning=None, now=NOW)
        assert len(opened.stories()) == len(STORIES)  # no two were merged
        yield opened


def _keys(store: Store, query: str) -> list[str]:
    by_title = {title: key for key, (title, _) in STORIES.items()}
    return [by_title[s.title] for s in store.search(query, 50)]


@pytest.mark.parametrize("query", list(EXPECTED))
def test_the_same_stories_on_both_databases(store: Store, query: str) -> None:
    found = _keys(store, query)
    assert set(found) == EXPECTED[query]
    assert len(found) == len(set(found))
    assert store.count_matches(query) == len(found)


def test_a_title_match_ranks_above_a_summary_match_then_newer_first(store: Store) -> None:
    assert _keys(store, "her2positive") == ["a", "c"]  # c has it only in its summary, though c is newer
    assert _keys(store, "lung cancer") == ["i", "e"]  # both in the title: the newer first
    assert _keys(store, "survival") == ["f", "a"]


def test_paging_through_matches(store: Store) -> None:
    everything = [s.id for s in store.search("cancer", 50)]
    assert len(everything) == 3
    assert [s.id for s in store.search("cancer", 2)] + [s.id for s in store.search("cancer", 2, offset=2)] == everything


def test_the_web_search_finds_pd1_and_not_pd_l1(tmp_path: Path, store: Store) -> None:
    settings = load_settings(write_config(tmp_path, ""), environ={})
    with serve_app(site(settings, store)) as url, httpx.Client(base_url=url, timeout=10) as client:
        page = client.get("/", params={"q": "PD-1"}).text
    assert "PD-1 blockade" in page and "PD-L1 testing" not in page
    assert "1 story matches" in page


def test_a_database_from_before_search_is_migrated(store: Store, db_url: str) -> None:
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.execute(text("DROP TABLE story_search"))
            for trigger in ("insert", "delete", "update"):
                conn.execute(text(f"DROP TRIGGER story_search_{trigger}"))
        else:
            conn.execute(text("ALTER TABLE story DROP COLUMN search_vector"))  # and its index
        conn.execute(text("ALTER TABLE story DROP COLUMN search_title"))
        conn.execute(text("ALTER TABLE story DROP COLUMN search_body"))
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": MIGRATIONS.index(_v13)})
    for _ in range(2):  # the second open finds nothing to do
        with Store.open(db_url) as migrated:
            assert set(_keys(migrated, "CDK4/6")) == {"f", "g"}
            assert _keys(migrated, "PD-1") == ["d"]


@pytest.mark.no_database
def test_the_tokens_both_engines_index() -> None:
    assert search_text("HER2-positive, PD-1 and CDK4/6 (Ménétrier)") == (
        "her2 positive her2positive pd 1 pd1 and cdk4 6 cdk46 menetrier"
    )
    assert search_query('PD-1 -"lung cancer" melanoma or skin') == (
        (False, ("pd 1", "pd1")),
        (True, ("lung cancer",)),
        (False, ("melanoma", "skin")),
    )
    assert search_query("-only -negative") == ()
