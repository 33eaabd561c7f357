"""The labeled dedupe set through the real store: pages ingested from a seed folder, feed entries saved as a
feed's items. The stories must be exactly the labeled ones, and re-ingesting must change no story id."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ingest.config import load_settings
from ingest.models import ParsedItem
from ingest.pipeline import ingest_seeds
from ingest.seeds import parse_page
from ingest.store import FeedState, Store
from scripts.dedupe_quality import BOILERPLATE, FIXTURES, Ref, _from_page, load_items, load_labels, pairwise
from tests.conftest import NOW, write_config

RunCli = Callable[..., tuple[int, str, str]]


def _feed_items() -> dict[str, list[tuple[ParsedItem, Ref]]]:
    by_source: dict[str, list[tuple[ParsedItem, Ref]]] = defaultdict(list)
    for n, record in enumerate(json.loads((FIXTURES / "feeds.json").read_text(encoding="utf-8"))):
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
        ref: Ref = ("feeds.json", record["title"], published.date().isoformat() if published else None)
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
    reports = ingest_seeds(store, settings.seeds, NOW)
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
        reports = ingest_seeds(store, settings.seeds, NOW + timedelta(days=1))
        assert sum(r.new for r in reports) == 0
        assert {(s.id, s.uid, s.title) for s in store.stories()} == before


def test_the_article_takes_the_teasers_headline(tmp_path: Path) -> None:
    (tmp_path / "seeds").mkdir()
    for name in ("page_00_bundled.txt", "page_02_crlf.txt"):
        shutil.copy(FIXTURES / name, tmp_path / "seeds" / name)
    settings = load_settings(write_config(tmp_path, ""), environ={})
    with Store.open(settings.storage.url) as store:
        ingest_seeds(store, settings.seeds, NOW)
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
