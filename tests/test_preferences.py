"""Subscriber preferences (issue 18 item 3): topics from the CLI, the CSV import, the subscribe form and
the signed "manage preferences" page every digest links to; through the real CLI and a real uvicorn, both databases.
(The page in a real browser: tests/test_subscribe_browser.py.)"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from ingest.store import Store
from ingest.store.engine import HEAD, MIGRATIONS
from newsletter.digest import job
from newsletter.subscribers.tokens import Tokens
from tests.conftest import NOW, write_config
from tests.maildata import SECRET, W48_DUE
from tests.mailsite import Site, live_site

RunCli = Callable[..., tuple[int, str, str]]


def _listed(run_cli: RunCli, cfg: Path) -> dict[str, list[str]]:
    code, out, err = run_cli("--config", str(cfg), "subscribers", "list", "--json")
    assert code == 0, err
    return {s["email"]: s["topics"] for s in json.loads(out)}


def test_the_operator_sets_topics(tmp_path: Path, run_cli: RunCli) -> None:
    cfg = write_config(tmp_path, "")
    code, out, err = run_cli(
        "--config", str(cfg), "subscribers", "add", "a@example.org", "--topic", "lung", "--topic", "breast"
    )
    assert code == 0, err
    assert "added a@example.org (breast, lung)" in out
    run_cli("--config", str(cfg), "subscribers", "add", "b@example.org")
    assert _listed(run_cli, cfg) == {"a@example.org": ["breast", "lung"], "b@example.org": []}

    code, out, _ = run_cli("--config", str(cfg), "subscribers", "set", "b@example.org", "--topic", "myeloma")
    assert code == 0 and "b@example.org: myeloma" in out
    code, out, _ = run_cli("--config", str(cfg), "subscribers", "set", "A@Example.org", "--all-topics")
    assert code == 0 and "a@example.org: all topics" in out
    code, _, err = run_cli("--config", str(cfg), "subscribers", "set", "b@example.org", "--topic", "kidneys")
    assert code == 2 and "unknown topic 'kidneys'" in err and "gu" in err
    code, _, err = run_cli("--config", str(cfg), "subscribers", "set", "b@example.org")
    assert code == 2 and "--all-topics" in err
    code, _, err = run_cli("--config", str(cfg), "subscribers", "set", "nobody@example.org", "--topic", "lung")
    assert code == 2 and "no subscriber 'nobody@example.org'" in err
    code, _, err = run_cli("--config", str(cfg), "subscribers", "add", "c@example.org", "--topic", "Lungs")
    assert code == 2 and "unknown topic 'lungs'" in err
    assert _listed(run_cli, cfg) == {"a@example.org": [], "b@example.org": ["myeloma"]}


def test_the_csv_import_takes_a_topics_column(tmp_path: Path, run_cli: RunCli) -> None:
    cfg = write_config(tmp_path, "")
    (tmp_path / "list.csv").write_text(
        'email,topics\none@example.org,lung;breast\ntwo@example.org,\nthree@example.org,"skin, sarcoma"\n'
        "four@example.org,kidneys\n",
        encoding="utf-8",
    )
    code, out, err = run_cli("--config", str(cfg), "subscribers", "import", str(tmp_path / "list.csv"))
    assert code == 1
    assert "list.csv line 5: topics: unknown topic 'kidneys'" in err
    assert "imported" in out and "1 invalid" in out
    assert _listed(run_cli, cfg) == {
        "one@example.org": ["breast", "lung"],
        "two@example.org": [],
        "three@example.org": ["sarcoma", "skin"],
    }


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[Site]:
    with live_site(tmp_path, db_url) as s:
        yield s


def _preferences_path(site: Site, tmp_path: Path, email: str) -> str:
    """The "manage preferences" link of ``email``'s digest, as a path on the site."""
    shown = job.preview(site.store, site.settings, W48_DUE + timedelta(hours=1), tmp_path, as_email=email)
    line = next(x for x in shown.text.read_text().splitlines() if x.startswith("Manage preferences"))
    return "/" + line.split(": ", 1)[1].split("/", 3)[3]


def test_the_digest_links_a_signed_preferences_page_that_saves_and_unsubscribes(site: Site, tmp_path: Path) -> None:
    path = _preferences_path(site, tmp_path, "reader@example.org")
    with site.client() as client:
        shown = client.get(path)
        assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
        assert "Your digest preferences" in shown.text and 'value="lung"' in shown.text
        saved = client.post(path, data={"topic": ["lung", "breast"]})
        assert saved.status_code == 200 and "Saved: breast, lung." in saved.text
        assert 'value="lung" checked' in saved.text and 'value="gu" checked' not in saved.text
        found = site.store.subscriber_by_email("reader@example.org")
        assert found is not None and found.topics == ("breast", "lung")
        other = site.store.subscriber_by_email("other@example.org")
        assert other is not None and other.topics == ()

        assert client.post(path, data={"topic": "kidneys"}).status_code == 400
        forged = path.rsplit("/", 1)[0] + "/1.forgedforgedforgedforgedforged"
        assert client.get(forged).status_code == 400
        assert client.post(forged, data={"topic": "lung"}).status_code == 400
        found = site.store.subscriber_by_email("reader@example.org")
        assert found is not None and found.topics == ("breast", "lung")
        # An unsubscribe token is not a preferences token (nor the other way round).
        unsubscribe = site.unsubscribe_token("reader@example.org")
        assert client.get(f"/preferences/{unsubscribe}").status_code == 400

        action = next(x for x in saved.text.split('"') if x.startswith("/unsubscribe/"))
        assert client.post(action).status_code == 200
        assert site.status("reader@example.org") == "unsubscribed"
        assert "is unsubscribed" in client.get(path).text


def test_the_subscribe_form_keeps_the_choice_but_a_stranger_cannot_change_a_subscribers(site: Site) -> None:
    with site.client() as client:
        form = client.get("/subscribe").text
        assert 'name="topic" value="breast"' in form
        sent = client.post("/subscribe", data={"email": "new@example.org", "topic": ["gu", "lung"]})
        assert "Check your inbox" in sent.text
        found = site.store.subscriber_by_email("new@example.org")
        assert found is not None and (found.status, found.topics) == ("pending", ("gu", "lung"))
        bad = client.post("/subscribe", data={"email": "x@example.org", "topic": "kidneys"})
        assert bad.status_code == 400 and "unknown topic" in bad.text and site.status("x@example.org") is None
        client.post("/subscribe", data={"email": "reader@example.org", "topic": "sarcoma"})
    reader = site.store.subscriber_by_email("reader@example.org")
    assert reader is not None and reader.topics == ()


def test_a_token_for_preferences_names_one_subscriber() -> None:
    tokens = Tokens(SECRET)
    token = tokens.preferences(7, "a@example.org")
    assert tokens.check_preferences(token, "a@example.org") == 7
    assert tokens.check_preferences(token, "b@example.org") is None
    assert tokens.check_unsubscribe(token, "a@example.org") is None
    assert Tokens("another key").check_preferences(token, "a@example.org") is None


def test_subscribers_from_before_preferences_get_every_topic(db_url: str) -> None:
    with Store.open(db_url) as store:
        store.insert_subscriber("old@example.org", "confirmed", NOW)
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE subscriber DROP COLUMN topics"))
            step = next(n for n, m in enumerate(MIGRATIONS) if (m.__doc__ or "").startswith("subscriber.topics"))
            conn.execute(text("UPDATE schema_version SET version = :v"), {"v": step})
    with Store.open(db_url) as store:
        found = store.subscriber_by_email("old@example.org")
        assert found is not None and found.topics == ()
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version FROM schema_version")).scalar() == HEAD
