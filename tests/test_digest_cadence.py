"""Cadence (issue 18 items 3 and 5): a subscriber gets the digest weekly (the default) or daily (``[digest]
daily_send_at``); a daily digest never repeats a story the same subscriber's previous daily digest had, and a switch
between daily and weekly neither loses nor repeats a story. The clock is passed in: two weeks are walked through day
by day, through the real job and outbox, on both databases."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest.core.config import Settings
from ingest.store import CARRYING, Store
from newsletter.digest import job
from newsletter.subscribers import manage as subscribers
from tests.conftest import write_config
from tests.maildata import W48_START, confirmed, make_settings, page_story

WEEKLY, DAILY, TO_DAILY, TO_WEEKLY = "w@example.org", "d@example.org", "to-daily@example.org", "to-weekly@example.org"
RunCli = Callable[..., tuple[int, str, str]]
DAYS = 14  # Mon Nov 23 to Sun Dec 6: ISO weeks 2026-W48 and W49


def _title(n: int) -> str:
    """A headline of words no other one shares (so that no two stories fold into one)."""
    w = [hashlib.sha256(f"{n}-{i}".encode()).hexdigest()[:8] for i in range(3)]
    return f"Trial {w[0]} reports {w[1]} results in {w[2]}"


def _collect(outbox: Path, received: dict[str, list[str]], subjects: dict[str, list[str]]) -> None:
    """Every message in the outbox, by recipient: the headlines it carries; then the outbox is emptied."""
    for path in sorted(outbox.glob("*.eml")):
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        body = msg.get_body(("plain",))
        assert body is not None
        text = str(body.get_content())
        to = str(msg["To"])
        received[to].extend(_title(n) for n in range(DAYS + 1) if _title(n) in text)
        subjects[to].append(str(msg["Subject"]))
        path.unlink()


def _walk(
    store: Store, settings: Settings, switches: dict[datetime, tuple[str, str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """One new story at noon each day of the two weeks (and, each day after the first, yesterday's story seen again
    on another page); the digest job at 08:30 every morning (after the daily 07:00 and the weekly Monday 08:00);
    the ``switches`` of cadence at their times. Returns the headlines and subjects each address received."""
    received: dict[str, list[str]] = defaultdict(list)
    subjects: dict[str, list[str]] = defaultdict(list)
    for day in range(DAYS + 1):
        morning = W48_START + timedelta(days=day, hours=8, minutes=30)
        if day:
            job.send_due_digest(store, settings, morning)
            _collect(settings.mail.outbox_dir, received, subjects)
        for at, (address, cadence) in switches.items():
            if morning < at <= morning + timedelta(days=1):
                assert subscribers.set_cadence(store, address, cadence) is not None  # type: ignore[arg-type]
        if day < DAYS:
            noon = W48_START + timedelta(days=day, hours=12)
            page_story(store, _title(day), first_seen=noon, page=f"/srv/seeds/p{day}.txt")
            if day:  # yesterday's story, seen again today elsewhere: still yesterday's (first seen then)
                page_story(store, _title(day - 1), first_seen=noon, page=f"/srv/seeds/again{day}.txt")
    return received, subjects


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        confirmed(s, WEEKLY, DAILY, TO_DAILY, TO_WEEKLY)
        subscribers.set_cadence(s, DAILY, "daily")
        subscribers.set_cadence(s, TO_WEEKLY, "daily")
        yield s


def test_daily_and_weekly_subscribers_and_switches_each_get_every_story_exactly_once(
    store: Store, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, digest={"daily_send_at": "07:00"})
    switches = {
        W48_START + timedelta(days=2, hours=10): (TO_WEEKLY, "weekly"),  # Wed Nov 25: two dailies had, then weekly
        W48_START + timedelta(days=9, hours=10): (TO_DAILY, "daily"),  # Wed Dec 2: the W48 weekly had, then daily
    }
    received, subjects = _walk(store, settings, switches)
    every = [_title(n) for n in range(DAYS)]
    for address in (WEEKLY, DAILY, TO_DAILY, TO_WEEKLY):
        counts = Counter(received[address])
        assert sorted(counts) == sorted(every), f"{address} missed {set(every) - set(counts)}"
        assert set(counts.values()) == {1}, f"{address} got twice: {[t for t, n in counts.items() if n > 1]}"

    # Who got which digests: the weekly reader two weeklies; the daily reader one a day.
    assert [s.split(",")[0] for s in subjects[WEEKLY]] == ["Oncology digest: 7 new stories"] * 2
    assert subjects[DAILY][0] == "Oncology daily: 1 new story, Nov 23" and len(subjects[DAILY]) == DAYS
    # Switched to weekly on Wednesday after two dailies: the weekly brings the other five days, then a whole week.
    assert [s.split(",")[0] for s in subjects[TO_WEEKLY]] == [
        "Oncology daily: 1 new story",
        "Oncology daily: 1 new story",
        "Oncology digest: 5 new stories",
        "Oncology digest: 7 new stories",
    ]
    # Switched to daily on Wednesday Dec 2 after the W48 weekly: the first daily brings Mon to Wed, then one a day.
    assert [s.split(",")[0] for s in subjects[TO_DAILY]] == [
        "Oncology digest: 7 new stories",
        "Oncology daily: 3 new stories",
        *["Oncology daily: 1 new story"] * 4,  # Dec 3 to 6, each sent the morning after
    ]

    # The web archive lists the weekly digests; a daily one is still at its own address.
    weekly = store.digests(CARRYING, cadence="weekly")  # W47 is there too, empty: nothing was seen that week
    daily = store.digests(CARRYING, cadence="daily")
    assert [d.period for d in weekly] == ["2026-W49", "2026-W48"]
    assert daily[0].period == "2026-12-06" and len(daily) == DAYS
    assert all(d.story_count == 1 for d in daily)  # each daily digest carries its day's story once

    # Running the job again at the end sends nothing twice.
    job.send_due_digest(store, settings, W48_START + timedelta(days=DAYS, hours=9))
    assert not list(settings.mail.outbox_dir.glob("*.eml"))


def test_no_daily_digest_is_made_while_nobody_reads_it(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, digest={"daily_send_at": "07:00"})
    with Store.open(db_url) as store:
        confirmed(store, WEEKLY)
        page_story(store, _title(0), first_seen=W48_START + timedelta(hours=12))
        report = job.send_due_digest(store, settings, W48_START + timedelta(days=1, hours=8))
        assert report.daily is None and store.digests(cadence="daily") == []
        # A first daily reader: the next morning's daily digest is made, with the day before's stories only.
        subscribers.add(store, DAILY, W48_START + timedelta(days=1, hours=9), cadence="daily")
        page_story(store, _title(1), first_seen=W48_START + timedelta(days=1, hours=12), page="/srv/seeds/p1.txt")
        report = job.send_due_digest(store, settings, W48_START + timedelta(days=2, hours=8))
        assert report.daily is not None
        assert (report.daily.period, report.daily.status, report.daily.stories, report.daily.sent) == (
            "2026-11-24",
            "sent",
            1,
            1,
        )


def test_a_daily_digest_reaches_back_a_week_at_most(db_url: str, tmp_path: Path) -> None:
    """Daily digests stop while nobody reads them; a new daily reader weeks later gets the day before's stories, not
    every story since the last daily digest."""
    settings = make_settings(tmp_path, digest={"daily_send_at": "07:00"})
    with Store.open(db_url) as store:
        confirmed(store, DAILY)
        subscribers.set_cadence(store, DAILY, "daily")
        page_story(store, _title(0), first_seen=W48_START + timedelta(hours=12))
        assert job.send_due_digest(store, settings, W48_START + timedelta(days=1, hours=8)).daily is not None
        subscribers.remove(store, DAILY, W48_START + timedelta(days=1, hours=9))
        for n in range(1, 12):  # eleven days with a story each, nobody reading daily
            page_story(store, _title(n), first_seen=W48_START + timedelta(days=n, hours=12), page=f"/p{n}.txt")
        subscribers.add(store, DAILY, W48_START + timedelta(days=12), cadence="daily")
        report = job.send_due_digest(store, settings, W48_START + timedelta(days=12, hours=8))
        assert report.daily is not None and report.daily.period == "2026-12-04"
        assert report.daily.stories == 8  # Nov 27 to Dec 4: the day and the week before it, not eleven days


def test_cadence_from_the_cli_and_the_csv_import(project: Path, run_cli: RunCli) -> None:
    cfg = write_config(project, "")
    code, out, err = run_cli("--config", str(cfg), "subscribers", "add", "a@example.org", "--cadence", "daily")
    assert code == 0, err
    assert "added a@example.org (all topics, daily)" in out
    code, out, _ = run_cli("--config", str(cfg), "subscribers", "set", "a@example.org", "--cadence", "weekly")
    assert (code, out.strip()) == (0, "a@example.org: all topics")
    code, _, err = run_cli("--config", str(cfg), "subscribers", "set", "a@example.org", "--cadence", "hourly")
    assert code == 2 and "--cadence: unknown cadence 'hourly'; expected one of: weekly, daily" in err
    csv = project / "people.csv"
    csv.write_text("email,topics,cadence\nb@example.org,lung,daily\nc@example.org,,\nd@example.org,,monthly\n")
    code, out, err = run_cli("--config", str(cfg), "subscribers", "import", str(csv))
    assert code == 1
    assert "people.csv line 4: cadence: unknown cadence 'monthly'" in err
    code, out, _ = run_cli("--config", str(cfg), "subscribers", "list", "--json")
    cadences = {row["email"]: row["cadence"] for row in json.loads(out)}
    assert cadences == {"a@example.org": "weekly", "b@example.org": "daily", "c@example.org": "weekly"}

    off = write_config(project, '[digest]\ndaily_send_at = ""\n')
    code, _, err = run_cli("--config", str(off), "subscribers", "add", "e@example.org", "--cadence", "daily")
    assert code == 2
    assert err.strip() == ("error: --cadence: 'daily': no daily digest is offered; set [digest] daily_send_at first")
