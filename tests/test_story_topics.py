"""Topics on stored stories (issue 18 item 1): tagged at ingest from titles and blurbs, `stories tag` / `untag` by
hand, `stories retag` after a taxonomy change, a bad taxonomy refused at start; through the real CLI, both databases."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from ingest.core.models import ParsedItem
from ingest.store import Store
from ingest.store.engine import HEAD, MIGRATIONS
from tests.conftest import NOW, write_config

RunCli = Callable[..., tuple[int, str, str]]

PAGE = """\
Oncology Wire

Osimertinib extends survival in EGFR-mutant NSCLC
November 20th 2026Adjuvant therapy after resection cut the risk of death.

Ovarian cancer screening trial reports no mortality benefit
November 19th 2026A large trial of annual screening found no difference in deaths.

Hospital opens a new parking garage
November 18th 2026ALL visitors may park there free on weekends.
"""


def _project(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "wire.txt").write_text(PAGE, encoding="utf-8")
    return write_config(tmp_path, extra)


def _topics(run_cli: RunCli, cfg: Path) -> dict[str, list[str]]:
    code, out, err = run_cli("--config", str(cfg), "stories", "--json")
    assert code == 0, err
    return {s["title"]: s["topics"] for s in json.loads(out)}


def test_ingest_tags_stories_and_the_operator_tags_untags_and_retags(tmp_path: Path, run_cli: RunCli) -> None:
    cfg = _project(tmp_path)
    code, _, err = run_cli("--config", str(cfg), "ingest")
    assert code == 0, err
    topics = _topics(run_cli, cfg)
    assert {"lung", "targeted-therapy"} <= set(topics["Osimertinib extends survival in EGFR-mutant NSCLC"])
    assert "gynecologic" in topics["Ovarian cancer screening trial reports no mortality benefit"]
    assert topics["Hospital opens a new parking garage"] == []  # "ALL visitors": emphasis, not the leukemia
    ids = {s["title"]: s["id"] for s in json.loads(run_cli("--config", str(cfg), "stories", "--json")[1])}
    garage = str(ids["Hospital opens a new parking garage"])
    ovarian = str(ids["Ovarian cancer screening trial reports no mortality benefit"])

    code, out, err = run_cli("--config", str(cfg), "stories", "tag", garage, "supportive-care")
    assert code == 0 and "now has topic supportive-care" in out, err
    code, out, _ = run_cli("--config", str(cfg), "stories", "untag", ovarian, "gynecologic")
    assert code == 0 and "no longer has topic gynecologic" in out
    code, _, err = run_cli("--config", str(cfg), "stories", "tag", garage, "parking")
    assert code == 2 and "unknown topic 'parking'" in err and "breast" in err
    code, _, err = run_cli("--config", str(cfg), "stories", "tag", "999999", "lung")
    assert code == 2 and "no story 999999" in err

    # The operator adds a term; retag picks it up and keeps the operator's word.
    cfg.write_text(cfg.read_text() + '\n[topics]\nterms = { supportive-care = ["parking"], lung = ["garage"] }\n')
    code, out, err = run_cli("--config", str(cfg), "stories", "retag")
    assert code == 0, err
    assert "1 sighting(s) and 1 story(ies) changed topics" in out
    topics = _topics(run_cli, cfg)
    assert topics["Hospital opens a new parking garage"] == ["lung", "supportive-care"]
    assert "gynecologic" not in topics["Ovarian cancer screening trial reports no mortality benefit"]
    code, out, _ = run_cli("--config", str(cfg), "stories", "retag")
    assert "0 sighting(s) and 0 story(ies) changed topics" in out
    code, out, _ = run_cli("--config", str(cfg), "stories", "explain", garage)
    assert "topics     lung, supportive-care" in out


def test_a_bad_taxonomy_is_a_config_error_at_start(tmp_path: Path, run_cli: RunCli) -> None:
    cfg = _project(tmp_path, '\n[topics]\nterms = { kidneys = ["renal"] }\n')
    code, _, err = run_cli("--config", str(cfg), "stories")
    assert code == 2 and "[topics] terms: unknown topic 'kidneys'" in err and "Traceback" not in err
    (tmp_path / "mine.toml").write_text('[[topic]]\nslug = "Bad Slug"\nname = "x"\nterms = ["x"]\n')
    cfg = write_config(tmp_path, '\n[topics]\nfile = "mine.toml"\n')
    code, _, err = run_cli("--config", str(cfg), "ingest")
    assert code == 2 and "mine.toml" in err and "slug" in err and "Traceback" not in err


def _item(i: int, title: str, topics: tuple[str, ...]) -> ParsedItem:
    return ParsedItem(kind="teaser", key=f"k{i}", position=i, title=title, published=NOW, summary="", topics=topics)


def test_a_story_unions_its_sightings_topics_and_keeps_the_operators_word_through_a_merge(db_url: str) -> None:
    with Store.open(db_url) as store:
        a = store.page_source("/srv/a.txt", "/srv", NOW)
        b = store.page_source("/srv/b.txt", "/srv", NOW)
        store.save_page(
            a.id,
            [_item(1, "Pembrolizumab approved for lung cancer", ("lung",))],
            content_hash="h",
            warning=None,
            now=NOW,
        )
        store.save_page(
            b.id,
            [_item(1, "Pembrolizumab approved for lung cancer", ("immunotherapy",))],
            content_hash="h",
            warning=None,
            now=NOW,
        )
        (story,) = store.stories()
        assert story.topics == ("immunotherapy", "lung")
        store.save_page(
            a.id, [_item(2, "A sarcoma registry opens", ("sarcoma",))], content_hash="h2", warning=None, now=NOW
        )
        other = next(s for s in store.stories() if s.id != story.id)
        later = NOW + timedelta(hours=1)
        store.set_story_topic(other.id, "pediatric", added=True, now=later)
        store.set_story_topic(story.id, "lung", added=False, now=later)
        survivor, _ = store.merge_stories(story.id, other.id, later)
        merged = store.story(survivor)
        assert merged is not None and merged.topics == ("immunotherapy", "pediatric", "sarcoma")


def test_a_database_from_before_topics_is_migrated(db_url: str) -> None:
    with Store.open(db_url) as store:
        page = store.page_source("/srv/p.txt", "/srv", NOW)
        store.save_page(page.id, [_item(1, "An old story", ())], content_hash="h", warning=None, now=NOW)
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE story_topic_override"))
            conn.execute(text("ALTER TABLE story DROP COLUMN topics"))
            conn.execute(text("ALTER TABLE sighting DROP COLUMN topics"))
            step = next(n for n, m in enumerate(MIGRATIONS) if (m.__doc__ or "").startswith("Topics"))
            conn.execute(text("UPDATE schema_version SET version = :v"), {"v": step})
    with Store.open(db_url) as store:
        (story,) = store.stories()
        assert story.topics == ()
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version FROM schema_version")).scalar() == HEAD
        retagged = store.retag(lambda texts: ("lung",) if "old" in texts[0] else (), NOW + timedelta(hours=1))
        assert retagged == (1, 1)
        updated = store.story(story.id)
        assert updated is not None and updated.topics == ("lung",) and updated.updated > story.updated
