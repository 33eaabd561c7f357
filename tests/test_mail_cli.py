"""The subscribers and digest commands end to end, on the bundled seed, with the outbox transport."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter import cli
from tests.conftest import NOW

MONDAY = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

RunCli = Callable[..., tuple[int, str, str]]


def _cfg(project: Path) -> str:
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '\n[mail]\noutbox_dir = "outbox"\n')
    return str(cfg)


def test_subscribers_commands(project: Path, run_cli: RunCli) -> None:
    cfg = _cfg(project)
    code, out, err = run_cli("--config", cfg, "subscribers", "add", "Ann@Example.org", "bad@@x", "bob@example.org")
    assert code == 1
    assert "added ann@example.org" in out
    assert "'bad@@x': not a valid email address" in err
    csv = project / "people.csv"
    csv.write_text("email\ncarol@example.org\nnot-an-address\nann@example.org\n")
    code, out, err = run_cli("--config", cfg, "subscribers", "import", str(csv))
    assert code == 1
    assert "line 3" in err
    assert "1 added" in out
    assert "1 exists" in out
    assert "1 invalid" in out
    code, out, _ = run_cli("--config", cfg, "subscribers", "remove", "bob@example.org")
    assert code == 0
    code, out, _ = run_cli("--config", cfg, "subscribers", "list", "--json")
    assert {(s["email"], s["status"]) for s in json.loads(out)} == {
        ("ann@example.org", "confirmed"),
        ("bob@example.org", "unsubscribed"),
        ("carol@example.org", "confirmed"),
    }
    code, _, err = run_cli("--config", cfg, "subscribers", "remove", "nobody@example.org")
    assert code == 2
    assert "no subscriber" in err


def test_digest_preview_and_send_through_the_outbox(
    project: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(project)
    monkeypatch.setattr(cli, "now", lambda: NOW)  # Friday of 2026-W48
    run_cli("--config", cfg, "ingest")
    run_cli("--config", cfg, "subscribers", "add", "ann@example.org", "bob@example.org")
    code, out, err = run_cli("--config", cfg, "digest", "preview", "--out", str(project / "preview"))
    assert code == 0, err
    assert "6 stories" in out
    assert sorted(p.suffix for p in (project / "preview").iterdir()) == [".eml", ".html", ".txt"]
    assert "2026-W48" in out
    assert not (project / "outbox").exists()

    code, out, err = run_cli("--config", cfg, "digest", "send")  # not due before Monday 08:00
    assert code == 0, err
    assert not list((project / "outbox").glob("*.eml"))
    monkeypatch.setattr(cli, "now", lambda: MONDAY)
    code, out, err = run_cli("--config", cfg, "digest", "send")
    assert code == 0, err
    assert "digest 2026-W48: sent, 6 stories, 2 sent, 0 failed" in out
    sent = sorted((project / "outbox").glob("*.eml"))
    assert len(sent) == 2
    message = email.message_from_bytes(sent[0].read_bytes(), policy=email.policy.SMTP)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    code, out, _ = run_cli("--config", cfg, "digest", "send")
    assert len(list((project / "outbox").glob("*.eml"))) == 2  # never twice


def test_help_lists_every_command(run_cli: RunCli) -> None:
    code, out, _ = run_cli("--help")
    assert code == 0
    assert {"ingest", "stories", "feeds", "publish", "serve", "subscribers", "digest", "run", "status"} <= set(
        cli.cli.commands
    )
    listed = out.split("Commands:", 1)[1].splitlines()
    for name, command in cli.cli.commands.items():  # every command, each on one line with its summary
        (line,) = [x for x in listed if x.split()[:1] == [name]]
        assert command.get_short_help_str(limit=100).split()[0] in line, name


def test_digest_preview_of_a_chosen_period_and_test_send(
    project: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(project)
    monkeypatch.setattr(cli, "now", lambda: NOW)
    run_cli("--config", cfg, "ingest")
    run_cli("--config", cfg, "subscribers", "add", "ann@example.org")
    code, out, err = run_cli("--config", cfg, "digest", "preview", "--period", "2026-W47", "--out", str(project / "p"))
    assert code == 0, err
    assert "2026-W47" in out
    code, out, err = run_cli("--config", cfg, "digest", "test-send", "editor@example.org", "--period", "2026-W48")
    assert code == 0, err
    assert out.startswith("test digest to editor@example.org: sent")
    (sent,) = (project / "outbox").glob("*.eml")
    message = email.message_from_bytes(sent.read_bytes(), policy=email.policy.SMTP)
    assert message["To"] == "editor@example.org"
    assert message["Subject"] == "Oncology digest: 6 new stories, Nov 23 to 29"  # the 2026-W48 asked for
    assert _digests_made(project) == []  # a test send is no delivery of the digest


def _digests_made(project: Path) -> list[str]:
    """The digests made so far (a preview or a test send makes none)."""
    from ingest.core.config import load_settings
    from ingest.store import Store

    settings = load_settings(project / "newsletter.toml", environ={})
    with Store.open(settings.storage.url) as store:
        return [d.period for d in store.digests()]
