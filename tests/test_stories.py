"""The labeled dedupe set through the real store: pages ingested from a seed folder, feed entries saved as a
feed's items. The stories must be exactly the labeled ones, and re-ingesting must change no story id."""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError

from ingest.core.config import load_settings
from ingest.core.models import FeedState, ParsedItem, SaveResult
from ingest.dedupe import MAX_CANDIDATES_PER_KEY, features, keys_of, match_input, planner
from ingest.run import ingest_seeds
from ingest.seeds import parse_page
from ingest.store import Store, clustering, schema
from ingest.topics import tag_items, taxonomy_of
from scripts.dedupe_quality import BOILERPLATE, FIXTURES, Ref, _from_page, load_items, load_labels, pairwise
from tests.conftest import NOW, write_config

RunCli = Callable[..., tuple[int, str, str]]


def _feed_items() -> dict[str, list[tuple[ParsedItem, Ref]]]:
    by_source: dict[str, list[tuple[ParsedItem, Ref]]] = defaultdict(list)
    records = [
        (path.name, record)
        for path in sorted(FIXTURES.glob("feeds*.json"))
        for record in json.loads(path.read_text(encoding="utf-8"))
    ]
    for n, (file, record) in enumerate(records):
        published = datetime.fromisoformat(record["published"]) if record.get("published") else None
        item = ParsedItem(
            kind="entry",
            key=f"entry-{n}",
            position=len(by_source[record["source"]]) + 1,
            title=record["title"],
            title_derived=bool(record.get("title_derived", False)),
            published=published,
            summary=record.get("summary", ""),
            content=record.get("content", ""),
            link=record.get("link"),
            tags=tuple(record.get("tags", ())),
        )
        ref: Ref = (file, record["title"], published.date().isoformat() if published else None)
        by_source[record["source"]].append((item, ref))
    return by_source


def _ingest(store: Store, project: Path) -> dict[tuple[str, str], Ref]:
    """Ingest the set; returns each sighting's (source location, key) -> its label reference."""
    settings = load_settings(project / "newsletter.toml", environ={})
    refs: dict[tuple[str, str], Ref] = {}
    for path in sorted((project / "seeds").glob("*.txt")):
        page = parse_page(path.read_bytes(), name=path.name, boilerplate=BOILERPLATE, tz=ZoneInfo("UTC"))
        for item in page.items:
            refs[(str(path), item.key)] = _from_page(path.name, item, 0).ref
    reports = ingest_seeds(store, settings.seeds, NOW, taxonomy=taxonomy_of(settings.topics))
    assert all(r.error is None for r in reports)
    for i, (url, entries) in enumerate(sorted(_feed_items().items())):
        source, _ = store.upsert_feed(url, name=None, tags=[], interval=None, origin="cli", now=NOW)
        state = FeedState(status="active", last_status=200, error_count=0, next_check_at=None, success=True)
        store.save_feed(source.id, [item for item, _ in entries], state, NOW + timedelta(minutes=i + 1))
        refs.update({(url, item.key): ref for item, ref in entries})
    return refs


def test_the_labeled_set_clusters_as_labeled_through_the_store(tmp_path: Path) -> None:
    (tmp_path / "seeds").mkdir()
    for page in FIXTURES.glob("*.txt"):
        shutil.copy(page, tmp_path / "seeds" / page.name)
    write_config(tmp_path, "")
    settings = load_settings(tmp_path / "newsletter.toml", environ={})
    with Store.open(settings.storage.url) as store:
        refs = _ingest(store, tmp_path)
        clusters: dict[int, list[Ref]] = defaultdict(list)
        for s in store.sightings():
            assert s.story_id is not None
            clusters[s.story_id].append(refs[(s.source_location, s.key)])
        truth = load_labels(load_items())
        scores = pairwise(list(clusters.values()), truth)
        assert (scores.precision, scores.recall) == (1.0, 1.0), (scores.wrong_merges, scores.misses)
        assert len(store.stories()) == len(set(truth.values()))

        before = {(s.id, s.uid, s.title) for s in store.stories()}
        for page in (tmp_path / "seeds").glob("*.txt"):  # touched: every page is read and parsed again
            page.write_bytes(page.read_bytes() + b"\n")
        reports = ingest_seeds(store, settings.seeds, NOW + timedelta(days=1), taxonomy=taxonomy_of(settings.topics))
        assert sum(r.new for r in reports) == 0
        assert {(s.id, s.uid, s.title) for s in store.stories()} == before


def test_the_article_takes_the_teasers_headline(tmp_path: Path) -> None:
    (tmp_path / "seeds").mkdir()
    for name in ("page_00_bundled.txt", "page_02_crlf.txt"):
        shutil.copy(FIXTURES / name, tmp_path / "seeds" / name)
    settings = load_settings(write_config(tmp_path, ""), environ={})
    with Store.open(settings.storage.url) as store:
        ingest_seeds(store, settings.seeds, NOW, taxonomy=taxonomy_of(settings.topics))
        (story,) = [s for s in store.stories() if "HER2-Positive Metastatic Breast Cancer" in s.title]
        assert story.title == "Personalizing Maintenance Therapy in HER2-Positive Metastatic Breast Cancer"
        assert story.summary.startswith("Panelists discussed how evolving strategies")
        assert story.content.startswith("<p>Panelists discussed")
        assert story.sightings == 2
        explained = store.explain(story.id)
        assert [g.match_rule for g in explained.sightings] == ["new", "article-standfirst"]


def test_explain_merge_and_split_from_the_cli(project: Path, run_cli: RunCli) -> None:
    cfg = str(project / "newsletter.toml")
    shutil.copy(FIXTURES / "page_02_crlf.txt", project / "seeds" / "page_02_crlf.txt")
    run_cli("--config", cfg, "ingest")
    stories = {s["title"]: s for s in json.loads(run_cli("--config", cfg, "stories", "--json")[1])}
    her2 = stories["Personalizing Maintenance Therapy in HER2-Positive Metastatic Breast Cancer"]
    code, out, _ = run_cli("--config", cfg, "stories", "explain", str(her2["id"]))
    assert code == 0
    assert "article-standfirst" in out
    assert "2 sighting(s)" in out

    a = stories["CCR Scores and Beyond: Precision Strategies for Treatment Intensification in Prostate Cancer"]
    b = stories["Recap: Emory Experts Review Treatment Strategies for Transplant-Ineligible Multiple Myeloma"]
    code, out, _ = run_cli("--config", cfg, "stories", "merge", str(b["id"]), str(a["id"]))
    assert code == 0
    survivor, loser = min(a["id"], b["id"]), max(a["id"], b["id"])
    assert f"merged story {loser} into story {survivor}" in out
    code, out, _ = run_cli("--config", cfg, "stories", "explain", str(loser))
    assert f"was merged into story {survivor}" in out

    with Store.open(load_settings(Path(cfg), environ={}).storage.url) as store:
        sighting = str(
            next(g.id for g in store.sightings(her2["id"]) if g.source_location.endswith("page_02_crlf.txt"))
        )
    code, out, err = run_cli("--config", cfg, "stories", "split", str(her2["id"]), sighting)
    assert code == 0, err
    split_id = int(out.rsplit(" ", 1)[1])

    for page in (project / "seeds").glob("*.txt"):  # everything read again: the operator's decisions hold
        page.write_bytes(page.read_bytes() + b"\n")
    run_cli("--config", cfg, "ingest")
    after = {s["id"]: s for s in json.loads(run_cli("--config", cfg, "stories", "--json")[1])}
    assert loser not in after
    assert after[survivor]["sightings"] == a["sightings"] + b["sightings"]
    assert after[her2["id"]]["sightings"] == 1
    assert after[split_id]["sightings"] == 1

    code, _, err = run_cli("--config", cfg, "stories", "split", str(split_id), sighting)
    assert code == 2
    assert "only sighting" in err
    code, _, err = run_cli("--config", cfg, "stories", "merge", str(loser), str(survivor))
    assert code == 2
    assert f"was merged into story {survivor}" in err


@pytest.mark.parametrize("ident", ["9223372036854775808", "2147483648", "0", "99999999999999999999999"])
def test_ids_no_row_can_have_are_refused_not_looked_up(project: Path, run_cli: RunCli, ident: str) -> None:
    cfg = str(project / "newsletter.toml")
    for args in (("stories", "explain", ident), ("stories", "merge", "1", ident), ("stories", "split", ident, "1")):
        code, _, err = run_cli("--config", cfg, *args)
        assert code == 2, args
        assert "is not in the range 1<=x<=2147483647" in err
    code, _, err = run_cli("--config", cfg, "feeds", "remove", ident)
    assert (code, err.strip()) == (2, f"error: no feed with id or URL {ident!r}; see `newsletter feeds list`")


def _teaser(key: str) -> ParsedItem:
    return ParsedItem(
        kind="entry",
        key=key,
        position=1,
        title="Recap: Treating Oligometastatic Prostate Cancer",
        published=datetime(2025, 4, 15, tzinfo=ZoneInfo("UTC")),
        summary="Steven E. Finkelstein, MD, discusses stereotactic radiation in oligometastatic prostate cancer.",
        link=None,
    )


def test_two_processes_saving_one_story_at_once_make_one_story(
    tmp_path: Path, db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Process A plans and writes its copy of a teaser without the clustering lock; before it takes the lock,
    process B saves another copy of it and commits. A must notice, start over under the lock, and join B's story.
    (SQLite has one writer at a time: there the two saves simply run one after the other.)"""
    state = FeedState(status="active", last_status=200, error_count=0, next_check_at=None, success=True)
    with Store.open(db_url) as a, Store.open(db_url) as b:
        source_a, _ = a.upsert_feed(
            "https://a.example.org/feed", name=None, tags=[], interval=None, origin="cli", now=NOW
        )
        source_b, _ = b.upsert_feed(
            "https://b.example.org/feed", name=None, tags=[], interval=None, origin="cli", now=NOW
        )
        staged, go = threading.Event(), threading.Event()
        take_lock = clustering.take_lock
        locks: list[str] = []

        def slow_for_a(conn: Connection) -> None:
            if threading.current_thread().name == "process-a" and not clustering._holds_lock(conn):
                staged.set()  # A's sighting and story are written, not committed
                assert go.wait(10)
            locks.append(threading.current_thread().name)
            take_lock(conn)

        monkeypatch.setattr(clustering, "take_lock", slow_for_a)
        results: list[SaveResult] = []
        worker = threading.Thread(
            target=lambda: results.append(a.save_feed(source_a.id, [_teaser("a-1")], state, NOW)), name="process-a"
        )
        if backend == "postgresql":
            worker.start()
            assert staged.wait(10)
            saved_b = b.save_feed(source_b.id, [_teaser("b-1")], state, NOW)  # B commits while A waits to lock
            go.set()
            worker.join(10)
        else:
            go.set()
            saved_b = b.save_feed(source_b.id, [_teaser("b-1")], state, NOW)
            worker.start()
            worker.join(10)
        assert not worker.is_alive()
        assert saved_b.new_stories == 1
        assert results[0].new == 1
        assert results[0].new_stories == 0  # A joined B's story
        sightings = a.sightings()
        assert len(sightings) == 2
        assert len({s.story_id for s in sightings}) == 1
        assert len(a.stories()) == 1
        if backend == "postgresql":
            assert locks.count("process-a") == 2  # its first plan was thrown away: it started over holding the lock


def test_many_writers_with_the_same_teasers_make_each_story_once(db_url: str) -> None:
    """Six writers at once (threads, each with its own store and connections, as processes would have), each saving
    feeds that carry the same ten teasers under keys of their own: ten stories, each holding every copy."""
    state = FeedState(status="active", last_status=200, error_count=0, next_check_at=None, success=True)
    titles = [
        "Stereotactic radiation for oligometastatic prostate cancer",
        "Immunotherapy sequencing in metastatic melanoma",
        "Liquid biopsy screening finds early pancreatic tumors",
        "Proton therapy trial results for pediatric brain cancer",
        "CAR T cell therapy moves into earlier lymphoma lines",
        "Lung cancer screening uptake remains low among smokers",
        "Breast density notification rules change mammography",
        "Colorectal cancer incidence rising in younger adults",
        "Hypofractionation becomes standard in breast radiotherapy",
        "Antibody drug conjugates reshape bladder cancer care",
    ]

    def teasers(feed: int) -> list[ParsedItem]:
        order = titles[feed % 10 :] + titles[: feed % 10]  # each feed lists them in another order
        return [
            ParsedItem(
                kind="entry",
                key=f"f{feed}-{title}",
                position=i + 1,
                title=title,
                published=datetime(2025, 4, 15, tzinfo=ZoneInfo("UTC")),
                summary=f"What clinicians should know: {title.lower()}.",
            )
            for i, title in enumerate(order)
        ]

    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            with Store.open(db_url) as store:
                for f in range(w * 3, w * 3 + 3):
                    url = f"https://w{w}.example.org/feed{f}"
                    source, _ = store.upsert_feed(url, name=None, tags=[], interval=None, origin="cli", now=NOW)
                    store.save_feed(source.id, teasers(f), state, NOW)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with Store.open(db_url) as store:
        stories = store.stories()
        assert sorted(s.title for s in stories) == sorted(titles)
        by_story = Counter(s.story_id for s in store.sightings())
        assert sorted(by_story.values()) == [18] * 10


def test_one_feed_of_many_alike_titles_makes_a_story_each_and_bounded_work(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: "Story number i about topic j", thousands in one feed, took quadratic time (4k entries 52.6 s) and
    folded into a handful of stories. Each is a story of its own, and the matcher's work per entry is bounded: the
    candidates of each key are capped for the feed's own earlier entries as for stored ones."""
    calls = 0
    real = planner.decide_features

    def counting(new: Any, old: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(new, old)

    monkeypatch.setattr(planner, "decide_features", counting)
    n = 3000
    items = [
        ParsedItem(
            kind="entry",
            key=f"guid-{i}",
            position=i + 1,
            title=f"Story number {i} about topic {i % 10}",
            published=NOW - timedelta(minutes=i),
            summary="",
            link=f"https://many.example.org/story/{i}",
        )
        for i in range(n)
    ]
    state = FeedState(status="active", last_status=200, error_count=0, next_check_at=None, success=True)
    with Store.open(db_url) as store:
        source, _ = store.upsert_feed(
            "https://many.example.org/feed", name=None, tags=[], interval=None, origin="cli", now=NOW
        )
        result = store.save_feed(source.id, items, state, NOW)
        assert (result.new, result.new_stories) == (n, n)
        assert store.count_live() == n
        # Each entry is compared with at most MAX_CANDIDATES_PER_KEY candidates per key, whatever the feed's size.
        keys = max(len(keys_of(features(match_input(i, sighting_id=0, source="x")))) for i in items)
        assert calls <= n * keys * MAX_CANDIDATES_PER_KEY
        # Another feed with the same template: its items are not the first feed's either, and the work stays bounded.
        calls = 0
        other, _ = store.upsert_feed(
            "https://mirror.example.org/feed", name=None, tags=[], interval=None, origin="cli", now=NOW
        )
        copies = [replace(i, link=i.link.replace("many", "mirror") if i.link else None) for i in items[:500]]
        store.save_feed(other.id, copies, state, NOW)
        assert calls <= 500 * keys * MAX_CANDIDATES_PER_KEY
        assert store.count_live() == n  # same titles, dates within minutes: each copy joins its original


def test_a_key_many_sightings_share_gives_its_newest_candidates(db_url: str) -> None:
    """The candidates of a key are its newest MAX_CANDIDATES_PER_KEY sightings, leaving out those asked to, the same
    on both databases (PostgreSQL limits each key in SQL, SQLite in Python)."""
    cap = MAX_CANDIDATES_PER_KEY
    with Store.open(db_url) as store:
        source = store.page_source("/p/many.txt", "/p", NOW)
        items = [
            ParsedItem(
                kind="teaser", key=f"k{n}", position=n, title=f"{word} " * 3 + f"item {n}", published=None, summary=""
            )
            for n, word in enumerate(f"w{chr(97 + a)}{chr(97 + b)}" for a in range(6) for b in range(7))
        ]
        store.save_page(source.id, items, content_hash="h", warning=None, now=NOW)
        ids = sorted(s.id for s in store.sightings())
        assert len(ids) == len(items) > cap + 3
        with store.engine.begin() as conn:
            conn.execute(schema.sighting_key.insert(), [{"key": "shared", "sighting_id": i} for i in ids])
            newest = sorted(ids, reverse=True)
            assert clustering._read(conn, ["shared"]).by_key == {"shared": newest[:cap]}
            mine = frozenset(newest[:3])
            assert clustering._read(conn, ["shared"], leave_out=mine).by_key == {"shared": newest[3 : 3 + cap]}


def test_a_story_is_updated_only_when_what_it_shows_changes(db_url: str) -> None:
    """The same teaser on another page adds a sighting and changes nothing the story shows: ``updated`` stays, so
    feed readers are not told again. Its full blurb, seen later, does change it: ``updated`` moves, the id stays."""
    full = (
        "Steven E. Finkelstein, MD, discusses stereotactic body radiation therapy for patients with oligometastatic "
        "prostate cancer and how imaging changes who is treated."
    )
    cut = full[:90].rsplit(" ", 1)[0] + "..."

    def teaser(summary: str) -> ParsedItem:
        return ParsedItem(
            kind="teaser",
            key="t-1",
            position=1,
            title="SBRT for Oligometastatic Prostate Cancer",
            published=datetime(2025, 4, 15, tzinfo=ZoneInfo("UTC")),
            summary=summary,
        )

    with Store.open(db_url) as store:
        times = [NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2)]
        for n, (summary, now) in enumerate(zip((cut, cut, full), times, strict=True)):
            source = store.page_source(f"/p/page{n}.txt", "/p", now)
            store.save_page(source.id, [teaser(summary)], content_hash=f"h{n}", warning=None, now=now)
            (story,) = store.stories()
            if n == 0:
                first = story
            elif n == 1:
                assert (story.id, story.uid, story.updated, story.summary) == (first.id, first.uid, NOW, cut)
                assert story.sightings == 2
            else:
                assert (story.id, story.uid, story.first_seen) == (first.id, first.uid, NOW)
                assert (story.updated, story.summary) == (times[2], full)


def _page_item(kind: str, title: str, summary: str, *, derived: bool = False) -> ParsedItem:
    return ParsedItem(
        kind=kind,
        key=f"{kind}-1",
        position=1,
        title=title,
        title_derived=derived,
        published=None if kind == "article" else datetime(2025, 4, 15, tzinfo=ZoneInfo("UTC")),
        summary=summary,
    )


STANDFIRST = (
    "Stereotactic body radiation therapy gives men with oligometastatic prostate cancer a chance at long control "
    "of their disease, and imaging now decides who gets it."
)
HEADLINE = "SBRT Reshapes Care in Oligometastatic Prostate Cancer"


def _save(store: Store, n: int, item: ParsedItem) -> None:
    source = store.page_source(f"/p/page{n}.txt", "/p", NOW + timedelta(minutes=n))
    store.save_page(source.id, [item], content_hash=f"h{n}", warning=None, now=NOW + timedelta(minutes=n))


def test_a_sighting_that_joins_two_stored_stories_folds_them_and_the_older_id_survives(db_url: str) -> None:
    with Store.open(db_url) as store:
        _save(store, 0, _page_item("article", STANDFIRST[:80], STANDFIRST, derived=True))
        _save(store, 1, _page_item("teaser", HEADLINE, ""))
        older, newer = sorted(s.id for s in store.stories())  # the article and the headline-only teaser: apart
        _save(store, 2, _page_item("teaser", HEADLINE, STANDFIRST))  # the headline with the standfirst: both
        (story,) = store.stories()
        assert story.id == older
        assert story.sightings == 3
        assert story.title == HEADLINE  # the article takes the teaser's headline
        folded = store.explain(newer)
        assert (folded.story, folded.merged_into) == (None, older)  # the folded id resolves to the survivor
        assert newer in store.explain(older).merged


def test_a_split_holds_when_a_new_copy_matches_both_halves(db_url: str) -> None:
    with Store.open(db_url) as store:
        teaser = _page_item("teaser", HEADLINE, STANDFIRST)
        _save(store, 0, teaser)
        _save(store, 1, teaser)
        (story,) = store.stories()
        second = max(s.id for s in store.sightings(story.id))
        apart = store.split_sighting(story.id, second, NOW + timedelta(hours=1))
        _save(store, 2, teaser)  # a third copy matches both halves: the operator's split must hold
        assert sorted(s.id for s in store.stories()) == sorted([story.id, apart])
        assert sum(s.sightings for s in store.stories()) == 3


# ---- feeds saved in one batch ------------------------------------------------------------------------------------

BRIDGE = "Adjuvant osimertinib keeps resected EGFR lung cancer at bay for years, final overall survival data show"


def _entry(key: str, title: str, summary: str, day: int, link: str | None = None) -> ParsedItem:
    return ParsedItem(
        kind="entry",
        key=key,
        position=1,
        title=title,
        published=datetime(2025, 4, day, 9, tzinfo=ZoneInfo("UTC")),
        summary=summary,
        content=f"<p>{summary}</p>",
        link=link,
    )


def _batch_corpus() -> list[list[tuple[str, list[ParsedItem]]]]:
    """Two rounds of feeds (url, items) whose stories depend on each other: the labeled set's feeds, feeds carrying
    the same teasers under keys of their own (each joins stories made by the feeds before it), a templated feed,
    entries that bridge two stories made earlier in the same round and in the round before (merges), copies of a
    teaser the operator splits between the rounds, and feeds seen again with some entries known."""
    first = [(url, [item for item, _ in entries]) for url, entries in sorted(_feed_items().items())]
    shared = [f"Shared teaser number {n} on stereotactic radiation for oligometastatic disease" for n in range(6)]
    sharing = {
        f"https://shared{f}.example.org/feed": [
            _entry(f"s{f}-{n}", shared[(n + f) % 6], "", 10 + n % 3) for n in range(6)
        ]
        for f in range(8)
    }
    first += sharing.items()
    alike = "https://alike.example.org/feed"
    first.append((alike, [_entry(f"a{n}", f"Story number {n} about topic {n % 7}", "", 12) for n in range(60)]))
    alpha, beta = (
        "Alpha: adjuvant osimertinib final overall survival",
        "Beta: what ADAURA means for resected EGFR NSCLC",
    )
    first.append(("https://alpha.example.org/feed", [_entry("x", alpha, "A different opening " * 5, 20)]))
    first.append(("https://beta.example.org/feed", [_entry("y", beta, BRIDGE, 20)]))
    first.append(("https://bridge.example.org/feed", [_entry("z", alpha, BRIDGE, 20)]))  # joins both: a merge
    first.append(("https://beta-copy.example.org/feed", [_entry("y2", beta, "", 20)]))  # joins the merged story
    first.append(("https://split-a.example.org/feed", [_page_item("teaser", HEADLINE, STANDFIRST)]))
    first.append(("https://split-b.example.org/feed", [_page_item("teaser", HEADLINE, STANDFIRST)]))
    gamma, delta = "Gamma: a new standard in first-line HCC", "Delta: atezolizumab plus bevacizumab, five years on"
    lead = "Five-year follow-up confirms the survival benefit of atezolizumab plus bevacizumab in unresectable liver"
    first.append(("https://gamma.example.org/feed", [_entry("g", gamma, "Nothing like the other one " * 3, 24)]))
    first.append(("https://delta.example.org/feed", [_entry("d", delta, lead, 24)]))
    shared0 = "https://shared0.example.org/feed"
    second = [
        ("https://bridge2.example.org/feed", [_entry("w", gamma, lead, 24)]),  # folds two stories of the first round
        ("https://split-c.example.org/feed", [_page_item("teaser", HEADLINE, STANDFIRST)]),  # matches both halves
        (shared0, [_entry("s0-new", shared[1], "", 11), *sharing[shared0][:3]]),
        (alike, [_entry(f"a{n}", f"Story number {n} about topic {n % 7}", "", 12) for n in range(50, 80)]),
    ]
    return [first, second]


def _tables(store: Store) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Every story and sighting row as stored (the random part of a story's uid left out), in id order."""
    st, s, src = schema.story, schema.sighting, schema.source
    with store.engine.connect() as conn:
        stories = [r._asdict() for r in conn.execute(select(*(c for c in st.c if c.name != "uid")).order_by(st.c.id))]
        query = select(src.c.location, *(c for c in s.c if c.name != "source_id")).join(src).order_by(s.c.id)
        sightings = [r._asdict() for r in conn.execute(query)]
    return stories, sightings


def _to_the_second(stories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row | {"updated": row["updated"].replace(microsecond=0)} for row in stories]


def test_feeds_saved_in_one_batch_make_exactly_the_stories_saved_one_by_one(
    tmp_path: Path, db_url: str, other_db_url: str
) -> None:
    """The same corpus, each feed in a transaction of its own or a round's feeds in one batch: the same stories with
    the same ids, members, canonical fields and merges, and the same sightings with the same verdicts. Topics (tagged
    as the feed pass tags them), search columns and ``updated`` stamps included; each round moves the publish
    generation on."""
    state = FeedState(status="active", last_status=200, error_count=0, next_check_at=None, success=True)
    (tmp_path / "seeds").mkdir()
    for page in FIXTURES.glob("*.txt"):
        shutil.copy(page, tmp_path / "seeds" / page.name)
    results = []
    for url, batched in ((db_url, False), (other_db_url, True)):
        settings = load_settings(write_config(tmp_path, "").with_name("newsletter.toml"), environ={})
        taxonomy = taxonomy_of(settings.topics)
        with Store.open(url) as store:
            ingest_seeds(store, settings.seeds, NOW, taxonomy=taxonomy)
            saved = []
            for n, untagged in enumerate(_batch_corpus()):
                feeds = [(u, tag_items(items, taxonomy)) for u, items in untagged]
                now = NOW + timedelta(hours=n + 1)
                if n == 1:  # the operator splits the teaser the two split feeds brought
                    (story,) = [s for s in store.stories() if s.title == HEADLINE]
                    store.split_sighting(story.id, max(g.id for g in store.sightings(story.id)), now)
                ids = [
                    store.upsert_feed(u, name=None, tags=[], interval=None, origin="cli", now=now)[0].id
                    for u, _ in feeds
                ]
                before = store.publish_generation()
                if batched:
                    saved += store.save_feeds(
                        [(i, items, state) for i, (_, items) in zip(ids, feeds, strict=True)], now
                    )
                else:
                    saved += [store.save_feed(i, items, state, now) for i, (_, items) in zip(ids, feeds, strict=True)]
                assert store.publish_generation() > before  # each round changes stories: the pages are rebuilt
            results.append((saved, *_tables(store)))
    (saved_alone, stories_alone, sightings_alone), (saved_batched, stories_batched, sightings_batched) = results
    assert saved_batched == saved_alone
    # ``updated`` is the pass's clock reading plus a microsecond per story row written (clustering.stamp): a batch
    # writes its new stories before it refreshes the stored ones, so the microseconds, not the moments, differ.
    assert len({row["updated"] for row in stories_batched}) == len(stories_batched)
    assert _to_the_second(stories_batched) == _to_the_second(stories_alone)
    assert sightings_batched == sightings_alone
    # The corpus does what it is meant to: folds stories (in a round and across rounds), keeps the split, and sees
    # entries again.
    assert sum(1 for row in stories_alone if row["merged_into"] is not None) >= 2
    assert len([row for row in stories_alone if row["title"] == HEADLINE and row["merged_into"] is None]) == 2
    assert sum(r.seen for r in saved_alone) == 13
    assert any(row["topics"] for row in stories_alone if row["title"] != HEADLINE)
    assert all(row["search_title"] for row in stories_alone)


def _poison(store: Store, title: str) -> None:
    """A trigger refusing sightings with this title: a real database failure on one feed's data."""
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER poison BEFORE INSERT ON sighting WHEN NEW.title = '{title}' "
                "BEGIN SELECT RAISE(ABORT, 'poisoned entry refused'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.title = '{title}' THEN RAISE EXCEPTION 'poisoned entry refused'; END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON sighting FOR EACH ROW EXECUTE FUNCTION poison()"
            )


def test_a_feed_the_database_refuses_costs_the_others_of_its_batch_nothing(db_url: str) -> None:
    with Store.open(db_url) as store:
        _poison(store, "Poisoned entry")
        ids = [
            store.upsert_feed(
                f"https://f{n}.example.org/feed", name=None, tags=[], interval=None, origin="cli", now=NOW
            )[0].id
            for n in range(3)
        ]
        feeds = [
            (ids[0], [_entry("a", "First feed's entry on lung cancer screening", "", 3)]),
            (ids[1], [_entry("b", "Poisoned entry", "", 3), _entry("c", "A fine entry of the poisoned feed", "", 3)]),
            (ids[2], [_entry("d", "Third feed's entry on proton therapy", "", 3)]),
        ]
        etags = [
            FeedState(
                status="active",
                last_status=200,
                error_count=0,
                next_check_at=None,
                success=True,
                etag=f'"v{n}"',
                store_validators=True,
            )
            for n in range(3)
        ]
        with pytest.raises(DBAPIError, match="poisoned entry refused"):
            store.save_feeds([(i, items, etag) for (i, items), etag in zip(feeds, etags, strict=True)], NOW)
        assert sorted(s.title for s in store.stories()) == [
            "First feed's entry on lung cancer screening",
            "Third feed's entry on proton therapy",
        ]
        sources = {s.id: s for s in store.sources()}
        assert [(sources[i].sightings, sources[i].etag) for i in ids] == [(1, '"v0"'), (0, None), (1, '"v2"')]
