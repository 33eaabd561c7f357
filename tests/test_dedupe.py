"""The "same story?" matcher: normalizing, blocking keys, each rule of issue 4, merging, and the labeled fixture set."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ingest import dedupe
from ingest.dedupe import (
    MAX_CANDIDATES_PER_KEY,
    Canonical,
    Clusterer,
    MatchInput,
    Member,
    Verdict,
    blocking_keys,
    canonical,
    decide,
    normalize_blurb,
    normalize_link,
    normalize_title,
    plan_joins,
    planner,
)
from scripts.dedupe_quality import FIXTURES, cluster, load_items, load_labels, main, ordered, pairwise
from tests.conftest import BUNDLED_SEEDS

pytestmark = pytest.mark.no_database  # opens no database: one run

EDT = timezone(timedelta(hours=-4))
BLURB = (
    "Sara A. Hurvitz, MD; Stefania Maraka, MD; and Ruta Rao, MD, discuss the evolving landscape of metastatic "
    "HER2+ breast cancer, highlighting recent clinical trials and the management of patients with brain metastases."
)
OTHER_BLURB = (
    "Virginia F. Borges, MD, MMSc, and colleagues review how antibody-drug conjugates are changing neoadjuvant and "
    "adjuvant decisions in HER2-positive early breast cancer, including when to escalate after residual disease."
)
TITLE = "Recap: Updates in Treatment of HER2-Positive Breast Cancer and Brain Metastases"
STANDFIRST = (
    "Bispecific antibodies directed at BCMA and GPRC5D are reshaping the management of relapsed multiple myeloma, "
    "but infection prophylaxis and step-up dosing logistics continue to challenge community practices."
)
_ids = itertools.count(1)


def day(y: int, m: int, d: int, tz: timezone = UTC, hour: int = 0) -> datetime:
    return datetime(y, m, d, hour, tzinfo=tz)


JULY_16 = day(2022, 7, 16)


def item(
    title: str = TITLE,
    published: datetime | None = JULY_16,
    summary: str = BLURB,
    *,
    kind: dedupe.Kind = "teaser",
    derived: bool = False,
    link: str | None = None,
    source: str = "page.txt",
) -> MatchInput:
    return MatchInput(
        id=next(_ids),
        kind=kind,
        title=title,
        title_derived=derived,
        published=published,
        summary=summary,
        link=link,
        source=source,
    )


def article(standfirst: str = STANDFIRST) -> MatchInput:
    title = standfirst.split(",", maxsplit=1)[0]
    return item(title, None, standfirst, kind="article", derived=True)


def rule(a: MatchInput, b: MatchInput) -> str | None:
    """The rule both ways round; they must agree (decide is symmetric) and the pair must share a blocking key."""
    ab, ba = decide(a, b), decide(b, a)
    assert ab == ba
    if ab is not None:
        assert blocking_keys(a) & blocking_keys(b), "a match the store could never look up"
    return ab.rule if ab else None


# ---------------------------------------------------------------------------------------------------------------------
# Normalizing


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Prolaris\u00a0in  Practice", "prolaris in practice"),
        ("Prolaris&nbsp;in&#160;Practice", "prolaris in practice"),
        ("Experts &amp; Colleagues", "experts & colleagues"),
        ("Experts &amp;amp; Colleagues", "experts & colleagues"),  # double-escaped by a scraper
        ("\u201cReal-World\u201d Data \u2018Matter\u2019", "\"real-world\" data 'matter'"),
        ("Castration\u2011Resistant \u2013 Update", "castration-resistant - update"),
        ("Ｆｕｌｌ\u200bwidth", "fullwidth"),
        ("Recap: Updates in Treatment", "updates in treatment"),
        ("RECAP :  Updates in Treatment", "updates in treatment"),
        ("Updates in Treatment | OncLive", "updates in treatment"),
        ("Updates in Treatment | Section | Targeted Oncology", "updates in treatment"),
        ("Recap: Updates in Treatment | OncLive", "updates in treatment"),
        ("Updates in Treatment.", "updates in treatment"),
        ("Onc | Part 2", "onc | part 2"),  # too little left before the bar for it to be a suffix
        (
            "Breast Cancer | What Every Patient Should Ask Their Doctor",
            "breast cancer | what every patient should ask their doctor",
        ),
        ("Why a Recap: Matters", "why a recap: matters"),  # only a leading label
    ],
)
def test_normalize_title(raw: str, expected: str) -> None:
    assert normalize_title(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Experts discuss the evolving landscape...", "experts discuss the evolving landscape"),
        ("Experts discuss the evolving landscape\u2026", "experts discuss the evolving landscape"),
        ("Experts discuss the evolving landscape, \u2026", "experts discuss the evolving landscape"),
        ("Experts discuss the evolving [...]", "experts discuss the evolving"),
        ("Experts discuss the evolv\u2026", "experts discuss the evolv"),
        ("Approved in the U.S.", "approved in the u.s."),
        ("  Mixed\u00a0CASE  &amp; entities ", "mixed case & entities"),
        ("", ""),
    ],
)
def test_normalize_blurb(raw: str, expected: str) -> None:
    assert normalize_blurb(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://www.OncLive.com/view/x/?utm_source=rss&utm_medium=feed", "//onclive.com/view/x"),
        ("http://onclive.com/view/x#comments", "//onclive.com/view/x"),
        ("HTTPS://ONCLIVE.COM:443/view/x?b=2&a=1&fbclid=z", "//onclive.com/view/x?a=1&b=2"),
        ("https://onclive.com:8080/view/x", "//onclive.com:8080/view/x"),
        ("  ", None),
        (None, None),
        ("urn:uuid:1234", "urn:uuid:1234"),
    ],
)
def test_normalize_link(raw: str | None, expected: str | None) -> None:
    assert normalize_link(raw) == expected


# ---------------------------------------------------------------------------------------------------------------------
# Deciding: each rule of issue 4 section 2, and what must stay apart


def test_same_title_a_day_or_two_apart_across_time_zones() -> None:
    page = item(published=day(2025, 4, 15))
    feed = item(TITLE + " | OncLive", day(2025, 4, 14, EDT, hour=21), "Another summary, written by the feed.")
    assert rule(page, feed) == "same-title-close-date"
    next_evening = item(published=day(2025, 4, 16, EDT, hour=23), summary="A different blurb, written by the feed.")
    assert rule(page, next_evening) == "same-title-close-date"
    two_days = item(published=day(2025, 4, 17), summary="A different blurb, written by another page.")
    assert rule(page, two_days) == "same-title-close-date"
    four_days = item(published=day(2025, 4, 19), summary="A different blurb, written by another page.")
    assert rule(page, four_days) is None


def test_same_title_undated_needs_agreeing_or_empty_blurbs() -> None:
    dated = item()
    assert decide(dated, item(published=None)) == Verdict("same-title-undated", 1.0)
    truncated = item(published=None, summary=BLURB[:120] + "\u2026")
    assert decide(dated, truncated) == Verdict("same-title-undated", 0.95)
    blurbless = decide(dated, item(published=None, summary=""))
    assert blurbless is not None and blurbless.rule == "same-title-undated" and blurbless.score < dedupe.STRONG_MIN
    assert rule(dated, item(published=None, summary=OTHER_BLURB)) is None


def test_series_reusing_a_title_months_apart_is_two_stories() -> None:
    title = "Recap: Case-Based Roundtable on Metastatic Castration-Resistant Prostate Cancer"
    august = item(title, day(2023, 8, 10), "Andrew J. Armstrong, MD, led a virtual event on a 68-year-old man ...")
    february = item(title, day(2024, 2, 14), "Rana R. McKay, MD, discussed a 72-year-old patient with BRCA2 ...")
    assert rule(august, february) is None
    assert rule(august, item(title, day(2023, 8, 17), february.summary)) is None  # a week apart is not close
    redated = item(title, day(2024, 2, 14), august.summary)  # the same text under a new date: a re-dated page
    assert rule(august, redated) == "same-title-same-blurb"


def test_a_title_extending_another_with_other_dates_and_blurbs_is_two_stories() -> None:
    short = item("Recap: Updates in Treatment of HER2-Positive Breast Cancer", day(2023, 3, 2), OTHER_BLURB)
    assert rule(short, item()) is None
    assert dedupe.title_similarity(short.title, TITLE) < dedupe.NEAR_TITLE_MIN


def test_truncated_blurb_matches_its_full_form() -> None:
    full = item("Bispecific Antibodies Reshape Care", day(2025, 5, 20), STANDFIRST)
    for mark in ("...", "\u2026", " [...]"):
        cut = item("Bispecifics: the Community View", day(2025, 5, 21), STANDFIRST[:110] + mark)
        assert rule(full, cut) == "same-blurb"
    too_short = item(
        "Bispecifics: the Community View", day(2025, 5, 21), "Bispecific antibodies directed at BCMA\u2026"
    )
    assert rule(full, too_short) is None


def test_teaser_carrying_an_articles_standfirst_is_that_article() -> None:
    teaser = item("Bispecific Antibodies Reshape Care in Relapsed Multiple Myeloma", day(2025, 5, 20), STANDFIRST)
    assert decide(article(), teaser) == Verdict("article-standfirst", 0.95)
    cut = replace(teaser, id=next(_ids), summary=STANDFIRST[:115] + "\u2026")
    assert decide(cut, article()) == Verdict("article-standfirst", 0.902)
    entry = replace(teaser, id=next(_ids), kind="entry", link="https://www.cancernetwork.com/view/bispecifics")
    assert rule(article(), entry) == "article-standfirst"
    assert rule(article(), item(summary=OTHER_BLURB)) is None


def test_same_link_after_normalizing() -> None:
    a = item(
        "Prolaris in Practice", day(2025, 4, 15), "One summary.", link="https://www.onclive.com/view/p?utm_source=x"
    )
    b = item(
        "Genomic Classifier Quantifies ADT Benefit", day(2025, 4, 16), "Another.", link="http://OncLive.com/view/p/"
    )
    assert rule(a, b) == "same-link"
    home_a = replace(a, id=next(_ids), link="https://www.onclive.com/")
    home_b = replace(b, id=next(_ids), link="https://onclive.com")
    assert rule(home_a, home_b) is None  # many unrelated entries link the home page


def test_near_identical_titles_with_close_dates_and_similar_blurbs() -> None:
    page = item(
        "Liquid Biopsy Guides Treatment Selection in Advanced Non-Small Cell Lung Cancer",
        day(2025, 1, 8),
        "Helena A. Yu, MD, explains how plasma-based next-generation sequencing shortens the time to targeted therapy "
        "for patients with advanced non-small cell lung cancer and when tissue testing is still needed.",
    )
    feed = item(
        "Liquid Biopsy Guides Treatment Selction in Advanced Non\u2013Small Cell Lung Cancer - OncLive",
        day(2025, 1, 7, timezone(timedelta(hours=-5)), hour=19),
        "Helena A. Yu, MD, explains how plasma-based next-generation sequencing can shorten time to targeted therapy "
        "in advanced non-small cell lung cancer, and when tissue testing is still needed.",
    )
    assert rule(page, feed) == "near-title"
    assert rule(page, replace(feed, id=next(_ids), published=day(2025, 3, 1))) is None
    assert rule(page, replace(feed, id=next(_ids), summary=OTHER_BLURB)) is None
    no_blurbs = rule(replace(page, id=next(_ids), summary=""), replace(feed, id=next(_ids), summary=""))
    assert no_blurbs is None  # a typo and a suffix are too far without blurbs to back them


def test_near_titles_of_two_approvals_stay_apart() -> None:
    follicular = item(
        "FDA Approves Zanubrutinib for Relapsed or Refractory Follicular Lymphoma",
        day(2024, 3, 7),
        "The FDA has granted accelerated approval to zanubrutinib plus obinutuzumab for adult patients with relapsed "
        "or refractory follicular lymphoma after two or more lines of systemic therapy.",
    )
    marginal = item(
        "FDA Approves Zanubrutinib for Relapsed or Refractory Marginal Zone Lymphoma",
        day(2024, 3, 8),
        "The FDA has granted accelerated approval to zanubrutinib for adult patients with relapsed or refractory "
        "marginal zone lymphoma who have received at least one anti-CD20-based regimen.",
    )
    assert rule(follicular, marginal) is None


# ---------------------------------------------------------------------------------------------------------------------
# Blocking keys


def test_blocking_keys_are_few_short_and_stable() -> None:
    m = item(link="https://www.onclive.com/view/x")
    keys = blocking_keys(m)
    assert len(keys) <= 12
    assert all(len(k) <= 32 for k in keys)
    # The store persists these: a change to normalizing or hashing must be a deliberate re-keying, not an accident.
    assert sorted(blocking_keys(m)) == [
        "b:fcb5652a1fe9da22",
        "l:0f9c179132a76cae",
        "na1372:441443cf51f33b0d617b856b",
        "na1372:441443cf51f33b0db3c68681",
        "na1372:441443cf617b856bb3c68681",
        "na1372:51f33b0d617b856bb3c68681",
        "nb1372:441443cf51f33b0d617b856b",
        "nb1372:441443cf51f33b0db3c68681",
        "nb1372:441443cf617b856bb3c68681",
        "nb1372:51f33b0d617b856bb3c68681",
        "t:49076c82402648bd",
    ]


def test_undated_and_derived_sightings_have_no_near_title_keys() -> None:
    assert not any(k.startswith("n") for k in blocking_keys(item(published=None)))
    assert not any(k.startswith("n") for k in blocking_keys(article()))
    assert not any(k.startswith("b:") for k in blocking_keys(item(summary="Too short to be evidence.")))


def test_every_match_in_the_labeled_set_shares_a_key_and_decide_is_symmetric() -> None:
    inputs = [i.match for i in load_items()]
    keys = {m.id: blocking_keys(m) for m in inputs}
    rules = []
    for a, b in itertools.combinations(inputs, 2):
        verdict = decide(a, b)
        assert verdict == decide(b, a), (a.title, b.title)
        if verdict is not None:
            rules.append(verdict.rule)
            assert keys[a.id] & keys[b.id], (a.title, b.title)
            assert 0 < verdict.score <= 1
    # Every rule of issue 4 section 2 is exercised by the labeled set.
    assert set(rules) == {
        "same-link",
        "same-title-close-date",
        "same-title-undated",
        "same-title-same-blurb",
        "article-standfirst",
        "same-blurb",
        "near-title",
    }


def test_over_common_keys_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = planner.decide_features

    def counting(new: Any, old: Any) -> Verdict | None:
        nonlocal calls
        calls += 1
        return real(new, old)

    monkeypatch.setattr(planner, "decide_features", counting)
    clusterer = Clusterer()
    title = "Recap: Peer Exchange on Myelofibrosis"
    start = day(2015, 1, 1)
    for n in range(200):  # a long-running series: one title, an episode every two months
        episode = item(title, start + timedelta(days=60 * n), f"Episode {n} with its own panel and patient case {n}.")
        before = calls
        clusterer.add(episode)
        assert calls - before <= MAX_CANDIDATES_PER_KEY
    assert len(clusterer.clusters()) == 200


# ---------------------------------------------------------------------------------------------------------------------
# Clustering


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_an_undated_blurbless_teaser_never_chains_a_series(order: tuple[int, ...]) -> None:
    title = "Recap: Case-Based Roundtable on Follicular Lymphoma"
    first = item(title, day(2023, 8, 10), "Panelists reviewed the case of a 64-year-old woman with grade 3A disease.")
    second = item(title, day(2024, 2, 14), "Panelists reviewed a 70-year-old man relapsing after bendamustine.")
    bare = item(title, None, "")
    items = [first, second, bare]
    clusterer = Clusterer()
    for i in order:
        clusterer.add(items[i])
    assert clusterer.find(first.id) != clusterer.find(second.id)
    assert clusterer.find(bare.id) in {clusterer.find(first.id), clusterer.find(second.id)}


def test_plan_joins_merges_on_strong_verdicts_and_attaches_weak_ones_once() -> None:
    strong, weak = Verdict("same-title-close-date", 1.0), Verdict("same-title-undated", 0.6)
    assert plan_joins(True, [(1, strong, True), (2, strong, True)]) == [1, 2]
    assert plan_joins(True, [(1, weak, True)]) == []
    assert plan_joins(True, [(1, weak, False)]) == [1]
    assert plan_joins(False, [(1, weak, True), (2, weak, True), (3, weak, False)]) == [1, 3]


def test_clusterer_keeps_the_oldest_sighting_as_the_cluster_id() -> None:
    clusterer = Clusterer()
    a, b, c = item(), item(published=day(2022, 7, 17)), item("Something Else Entirely", summary="Unrelated.")
    assert clusterer.add(a) == (a.id, None)
    root, verdict = clusterer.add(b)
    assert root == a.id and verdict == Verdict("same-title-close-date", 1.0)
    assert clusterer.add(c) == (c.id, None)
    assert clusterer.clusters() == [[a.id, b.id], [c.id]]
    with pytest.raises(ValueError, match="added twice"):
        clusterer.add(a)


# ---------------------------------------------------------------------------------------------------------------------
# Merging


def member(m: MatchInput, seen: int = 0, content: str = "", tags: tuple[str, ...] = ()) -> Member:
    return Member(
        kind=m.kind,
        title=m.title,
        title_derived=m.title_derived,
        published=m.published,
        summary=m.summary,
        content=content,
        link=m.link,
        tags=tags,
        first_seen=day(2026, 1, 1) + timedelta(minutes=seen),
        source=m.source,
    )


def test_canonical_takes_the_best_of_each_sighting() -> None:
    body = "<p>" + STANDFIRST + "</p><p>More of the article.</p>"
    story = canonical(
        [
            member(article(), 0, content=body),
            member(item("Bispecific Antibodies Reshape Care | OncLive", day(2025, 5, 20), STANDFIRST[:90] + "..."), 1),
            member(item("Bispecific Antibodies Reshape Care", day(2025, 5, 20), STANDFIRST[:100] + "\u2026"), 2),
            member(
                item(
                    "Bispecific Antibodies Reshape Care | Targeted Oncology",
                    day(2025, 5, 19, EDT, hour=22),
                    "",
                    kind="entry",
                    link="https://www.targetedonc.com/view/bispecifics?utm_source=rss",
                ),
                3,
                content="<p>Short.</p>",
                tags=("myeloma",),
            ),
            member(item("Bispecific Antibodies Reshape Care", None, STANDFIRST), 4, tags=("bispecifics", "myeloma")),
        ]
    )
    assert story == Canonical(
        title="Bispecific Antibodies Reshape Care",  # a real headline, without the site suffix
        title_derived=False,
        summary=STANDFIRST,  # the full form, not a truncated copy
        content=body,  # the article's body
        link="https://www.targetedonc.com/view/bispecifics",  # tracking dropped
        published=day(2025, 5, 19, EDT, hour=22),  # the feed's timestamp, not the page's midnight
        tags=("bispecifics", "myeloma"),
    )


def test_canonical_keeps_the_recap_label_and_the_most_common_headline() -> None:
    members = [
        member(item("Updates in Treatment of HER2-Positive Breast Cancer and Brain Metastases | OncLive"), 0),
        member(item(TITLE), 1, tags=("recap",)),
        member(item(TITLE), 2, tags=("recap",)),
        member(item("Recap: Updates in Treatment of HER2+ Breast Cancer and Brain Metastases"), 3),
    ]
    story = canonical(members)
    assert story.title == TITLE
    assert story.tags == ("recap",)


def test_canonical_date_follows_the_majority_and_ignores_undated() -> None:
    members = [
        member(item(published=day(2025, 4, 15)), 0),
        member(item(published=day(2025, 4, 15)), 1),
        member(item(published=day(2025, 9, 1, hour=10)), 2),  # a copy re-dated months later
        member(item(published=None), 3),
    ]
    assert canonical(members).published == day(2025, 4, 15)
    assert canonical([member(item(published=None), 0)]).published is None


def test_a_truncated_blurb_never_beats_its_full_form() -> None:
    full = "Alpha beta gamma delta epsilon zeta eta theta iota kappa"
    longer_raw = member(item(summary=full + " [...]"), 0)  # longer as written, the same once the mark is gone
    assert canonical([longer_raw, member(item(summary=full), 1)]).summary == full
    partner = member(item(summary=full + " lambda, and a partner's longer version..."), 2)
    assert canonical([member(item(summary=full), 0), partner]).summary == partner.summary


def test_canonical_of_derived_titles_only_and_of_nothing() -> None:
    story = canonical([member(article(), 0, content="<p>x</p>")])
    assert story.title_derived and story.title == article().title and story.link is None
    with pytest.raises(ValueError, match="at least one sighting"):
        canonical([])


# ---------------------------------------------------------------------------------------------------------------------
# The labeled set (issue 4 section 5)


def test_bundled_seed_page_is_in_the_labeled_set_unchanged() -> None:
    bundled = sorted(BUNDLED_SEEDS.glob("*.txt"))
    assert len(bundled) == 1
    assert (FIXTURES / "page_00_bundled.txt").read_bytes() == bundled[0].read_bytes()


@pytest.mark.parametrize(("order", "seed"), [("file", 0), ("reverse", 0)] + [("shuffle", seed) for seed in range(1, 9)])
def test_labeled_set_clusters_as_labeled(order: str, seed: int) -> None:
    items = load_items()
    truth = load_labels(items)
    clusters, _ = cluster(ordered(items, order, seed))
    scores = pairwise(clusters, truth)
    assert scores.wrong_merges == ()
    assert scores.misses == ()
    assert (scores.precision, scores.recall) == (1.0, 1.0)
    assert scores.true_pairs >= 50


def test_labeled_stories_show_the_best_of_their_sightings() -> None:
    items = load_items()
    clusters, _ = cluster(items)
    members = {i.ref: i.member for i in items}
    stories = {refs[0]: canonical([members[r] for r in refs]) for refs in clusters}
    her2 = stories[("page_00_bundled.txt", "(article)", None)]
    assert her2.title == "Personalizing Maintenance Therapy in HER2-Positive Metastatic Breast Cancer"
    assert not her2.title_derived
    assert her2.link == "https://www.targetedonc.com/view/personalizing-maintenance-her2-mbc"
    assert her2.published == datetime.fromisoformat("2025-05-01T20:15:00-04:00")
    assert her2.content.count("<p>") == 4
    prolaris = stories[
        ("page_00_bundled.txt", next(t for f, t, _ in stories if t.startswith("Prolaris")), "2025-04-15")
    ]
    assert prolaris.link == "https://www.onclive.com/view/prolaris-in-practice-guiding-adt-benefits"
    roundtables = [s for s in stories.values() if "Case-Based Roundtable" in s.title]
    assert len(roundtables) == 4
    assert all(s.title.startswith("Recap: ") for s in roundtables)


def test_quality_script_reports_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--fail-under", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "precision:   1.000" in out
    assert "recall:      1.000" in out
    assert "WRONG MERGE" not in out and "MISS" not in out


def _edit_labels(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    folder = tmp_path / "dedupe"
    shutil.copytree(FIXTURES, folder)
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    edit(labels)
    (folder / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    return folder


def test_labels_must_cover_every_item_once(tmp_path: Path) -> None:
    dropped = _edit_labels(tmp_path / "a", lambda labels: labels["stories"].pop())
    with pytest.raises(ValueError, match="unlabeled items"):
        load_labels(load_items(dropped), dropped)
    doubled = _edit_labels(tmp_path / "b", lambda labels: labels["stories"].append(labels["stories"][0]))
    with pytest.raises(ValueError, match="labeled twice"):
        load_labels(load_items(doubled), doubled)


def test_a_wrong_label_fails_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def merge_two_episodes(labels: dict[str, Any]) -> None:
        stories = labels["stories"]
        episodes = [s for s in stories if s["story"].startswith("Case-Based Roundtable episode of")]
        episodes[0]["members"].extend(episodes[1]["members"])
        stories.remove(episodes[1])

    folder = _edit_labels(tmp_path, merge_two_episodes)
    assert main([str(folder), "--fail-under", "1.0"]) == 1
    assert "MISS: one story split over" in capsys.readouterr().out


def test_a_story_of_one_sighting_is_that_sighting_by_the_general_rules() -> None:
    """canonical() takes a short cut for one member; the general rules on the same member twice must agree."""
    members = [i.member for i in load_items()]
    members.append(replace(members[0], link="https://x.example/a?utm_source=rss&id=3", tags=("b", "a", "b")))
    members.append(replace(members[1], summary="   ", content=" ", link="  ", published=None))
    for m in members:
        assert canonical([m]) == canonical([m, m]), m


def test_two_items_of_one_feed_are_one_story_only_under_one_title() -> None:
    """Issue 14: 150 entries of one feed ("{Drug} Shows Benefit in {Cancer} Phase 3 Trial #N", one blurb) folded
    into 9 stories through same-blurb and near-title. A feed's template is not evidence: two of its entries (distinct
    guids and links) are one story only when their titles are the same after normalizing."""
    feed = "https://templated.example.com/feed.xml"
    blurb = "The randomized phase 3 trial met its primary end point with a consistent benefit across subgroups."
    a = item("Zanubrutinib Shows Benefit in Mantle Cell Lymphoma Phase 3 Trial #1", JULY_16, blurb, kind="entry",
             link="https://templated.example.com/1", source=feed)  # fmt: skip
    b = item("Zanubrutinib Shows Benefit in Mantle Cell Lymphoma Phase 3 Trial #2", JULY_16, blurb, kind="entry",
             link="https://templated.example.com/2", source=feed)  # fmt: skip
    assert decide(a, b) is None
    again = replace(a, id=next(_ids), link="https://templated.example.com/1-updated")
    assert decide(a, again) is not None  # the same item republished under a new guid: same title, one story
    elsewhere = replace(b, id=next(_ids), source="https://partner.example.org/feed.xml", link=None)
    assert decide(a, elsewhere) is not None  # in another feed, the usual rules apply
    clusterer = Clusterer()
    for n in range(150):
        title = f"Zanubrutinib Shows Benefit in Mantle Cell Lymphoma Phase 3 Trial #{n}"
        clusterer.add(replace(a, id=next(_ids), title=title, link=f"https://templated.example.com/{n}"))
    assert len(clusterer.clusters()) == 150


def test_a_sighting_matching_two_items_of_one_feed_never_chains_them() -> None:
    """A copy from elsewhere that matches two items of one feed (its own item exactly, the other by a near title)
    joins its own item, the best match, and the two items stay two stories."""
    feed = "https://many.example.org/feed"
    one = item(
        "Story number 1 about topic 1", JULY_16, "", kind="entry", link="https://many.example.org/1", source=feed
    )
    eleven = item("Story number 11 about topic 1", JULY_16, "", kind="entry", link="https://many.example.org/11",
                  source=feed)  # fmt: skip
    for first, second in ((one, eleven), (eleven, one)):
        clusterer = Clusterer()
        clusterer.add(replace(first, id=next(_ids)))
        clusterer.add(replace(second, id=next(_ids)))
        copy = replace(second, id=next(_ids), source="https://mirror.example.org/feed", link=None)
        root, verdict = clusterer.add(copy)
        assert clusterer.find(copy.id) == root
        assert verdict is not None and verdict.rule == "same-title-close-date"
        assert len(clusterer.clusters()) == 2
        assert sorted(map(len, clusterer.clusters())) == [1, 2]
