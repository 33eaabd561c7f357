"""Seed ingestion end to end through the CLI, on a real SQLite file in a temporary config folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import GOLDEN

RunCli = Callable[..., tuple[int, str, str]]


def _stories(run_cli: RunCli, cfg: Path) -> list[dict[str, object]]:
    code, out, err = run_cli("--config", str(cfg), "stories", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, list)
    return data


def test_bundled_seed_yields_one_article_and_five_teasers(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    code, out, _ = run_cli("--config", str(cfg), "ingest")
    assert code == 0
    assert "000_a91153ef02972648.txt: 6 new" in out
    assert "ingested 1 source(s): 6 new sighting(s)" in out
    stories = _stories(run_cli, cfg)
    assert len(stories) == 6
    for key in ("id", "title", "published", "summary", "link", "sightings", "tags"):
        assert all(key in s for s in stories), key
    recaps = [s for s in stories if "recap" in s["tags"]]  # type: ignore[operator]
    assert len(recaps) == 3
    dated = sorted(str(s["published"])[:10] for s in stories if s["published"])
    assert dated == ["2022-06-20", "2022-07-16", "2022-09-18", "2025-04-15", "2025-04-15"]
    undated = [s for s in stories if s["published"] is None]
    assert len(undated) == 1
    assert str(undated[0]["summary"]).startswith("Panelists discussed")


def test_stories_are_listed_newest_first(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    run_cli("--config", str(cfg), "ingest")
    dates = [s["published"] for s in _stories(run_cli, cfg) if s["published"]]
    assert dates == sorted(dates, reverse=True)  # type: ignore[type-var]
    code, out, _ = run_cli("--config", str(cfg), "stories")
    assert code == 0
    assert out.index("Prolaris") < out.index("Emory")


def test_rerun_adds_nothing_and_changes_are_picked_up(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    run_cli("--config", str(cfg), "ingest")
    before = _stories(run_cli, cfg)
    code, out, _ = run_cli("--config", str(cfg), "ingest")
    assert code == 0
    assert "unchanged" in out
    assert "0 new sighting(s)" in out
    assert _stories(run_cli, cfg) == before

    page = project / "seeds" / "000_a91153ef02972648.txt"
    page.write_text(page.read_text() + "\nA Brand New Teaser\nNovember 20th 2026A new blurb about something.\n")
    code, out, _ = run_cli("--config", str(cfg), "ingest")
    assert "1 new, 6 seen again" in out
    assert len(_stories(run_cli, cfg)) == 7

    shutil.copy(GOLDEN / "seeds" / "date_formats.txt", project / "seeds" / "second.txt")
    run_cli("--config", str(cfg), "ingest")
    ids_before = {s["id"] for s in _stories(run_cli, cfg)}
    page.unlink()
    code, out, _ = run_cli("--config", str(cfg), "ingest")
    assert code == 0
    assert {s["id"] for s in _stories(run_cli, cfg)} == ids_before  # a deleted file keeps what it brought


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "file is empty"),
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary file"),
        ("latin.txt", b"caf\xe9 \x81\x8d\x8f", "not text in UTF-8 or cp1252"),
        ("huge.txt", b"word " * 6000, "over the 20,000-byte limit"),
    ],
)
def test_a_bad_file_is_reported_and_the_others_are_ingested(
    project: Path, run_cli: RunCli, name: str, content: bytes, message: str
) -> None:
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + "max_bytes = 20000\n")
    (project / "seeds" / name).write_bytes(content)
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert code == 1
    assert f"{project / 'seeds' / name}: " in err
    assert message in err
    assert "Traceback" not in err
    assert "1 error(s)" in out
    assert len(_stories(run_cli, cfg)) == 6  # the bundled page's article and five teasers all went in

    code, out, _ = run_cli("--config", str(cfg), "ingest")  # the error stays stored and reported on each pass
    assert message in _
    from ingest.core.config import load_settings
    from ingest.store import Store

    with Store.open(load_settings(cfg, environ={}).storage.url) as store:
        bad = store.source(str(project / "seeds" / name))
        assert bad is not None
        assert bad.status == "error"
        assert bad.last_error is not None and message in bad.last_error


def test_a_fixed_file_recovers(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    bad = project / "seeds" / "later.txt"
    bad.write_bytes(b"")
    run_cli("--config", str(cfg), "ingest")
    shutil.copy(GOLDEN / "seeds" / "date_formats.txt", bad)
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert code == 0, err
    assert "later.txt: 6 new" in out


def test_missing_seed_folder_is_reported(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text().replace('dirs = ["seeds"]', 'dirs = ["seeds", "nowhere"]'))
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert code == 1
    assert "nowhere: seed folder does not exist ([seeds] dirs)" in err
    assert "6 new" in out


def test_missing_named_seed_folder_is_reported(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '[[seeds.folders]]\npath = "gone"\nname = "Gone Site"\n')
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert code == 1
    assert "gone: seed folder does not exist ([[seeds.folders]] path)" in err
    assert "Traceback" not in err
    assert "6 new" in out  # the other folder's pages are read


def test_help_lists_every_command(run_cli: RunCli) -> None:
    code, out, _ = run_cli("--help")
    assert code == 0
    for command in ("ingest", "stories", "run"):
        assert f"  {command} " in out
    assert "--config" in out


def test_run_once_ingests_and_publishes(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '\n[publish]\ndir = "public"\n[mail]\noutbox_dir = "outbox"\n')
    code, out, err = run_cli("--config", str(cfg), "run", "--once")
    assert code == 0, err
    assert "6 new" in out
    assert (project / "public" / "feed.atom").is_file()


def test_publish_writes_the_feeds(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '\n[publish]\ndir = "public"\n')
    run_cli("--config", str(cfg), "ingest")
    code, out, err = run_cli("--config", str(cfg), "publish")
    assert code == 0, err
    assert "6 entries in feed.atom" in out
    for name in ("feed.atom", "feed.rss", "feed.json", "tags/recap.atom"):
        assert (project / "public" / name).is_file(), name
    code, out, _ = run_cli("--config", str(cfg), "publish")
    assert "up to date" in out


def test_symlinks_in_a_seed_folder_are_skipped_with_a_warning(project: Path, run_cli: RunCli) -> None:
    """Issue 13 item 13: passwd_link.txt -> /etc/passwd became a published story."""
    cfg = project / "newsletter.toml"
    outside = project / "outside"
    outside.mkdir()
    shutil.copy(GOLDEN / "seeds" / "date_formats.txt", outside / "elsewhere.txt")
    seeds = project / "seeds"
    (seeds / "passwd_link.txt").symlink_to("/etc/passwd")
    (seeds / "page_link.txt").symlink_to(outside / "elsewhere.txt")
    (seeds / "folder_link").symlink_to(outside, target_is_directory=True)
    (seeds / "dangling.txt").symlink_to(project / "nowhere.txt")
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert code == 0, err
    for name in ("passwd_link.txt", "page_link.txt", "folder_link", "dangling.txt"):
        assert f"warn   {seeds / name}: a symbolic link, not read ([seeds] follow_symlinks is off)" in err, name
    assert "Traceback" not in err and "error" not in err
    assert "ingested 1 source(s)" in out  # the bundled page; a skipped link is no source
    stories = _stories(run_cli, cfg)
    assert len(stories) == 6
    assert not any("root:" in str(s) for s in stories)

    (seeds / "passwd_link.txt").unlink()
    cfg.write_text(cfg.read_text().replace("[seeds]\n", "[seeds]\nfollow_symlinks = true\n"))
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert code == 1  # the dangling link cannot be read: an error now that links are followed
    assert f"{seeds / 'page_link.txt'}: 6 new" in out
    assert f"{seeds / 'folder_link' / 'elsewhere.txt'}: 6 new" in out
    assert f"{seeds / 'dangling.txt'}: cannot read the file" in err


def test_a_symlink_loop_is_walked_once(project: Path, run_cli: RunCli) -> None:
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text().replace("[seeds]\n", "[seeds]\nfollow_symlinks = true\n"))
    (project / "seeds" / "sub").mkdir()
    (project / "seeds" / "sub" / "back").symlink_to(project / "seeds", target_is_directory=True)
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert code == 0, err
    assert "ingested 1 source(s)" in out
