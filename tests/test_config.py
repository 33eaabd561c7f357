"""Config loading: defaults, overrides, and one clear message (exit 2, no traceback) for each kind of bad config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.core.config import BUNDLED_CONFIG, SECRET_ENV, Settings, load_settings
from ingest.core.errors import ConfigError
from tests.conftest import write_config

RunCli = Callable[..., tuple[int, str, str]]


def test_bundled_config_holds_every_key_at_its_default() -> None:
    loaded = load_settings(BUNDLED_CONFIG, environ={})
    defaults = Settings()
    for section in ("fetch", "digest", "web", "log"):
        assert getattr(loaded, section) == getattr(defaults, section), section
    assert loaded.mail.model_dump(exclude={"outbox_dir"}) == defaults.mail.model_dump(exclude={"outbox_dir"})
    assert loaded.seeds.boilerplate == defaults.seeds.boilerplate
    assert loaded.publish.max_entries == defaults.publish.max_entries
    text = BUNDLED_CONFIG.read_text()
    for section, model in Settings.model_fields.items():
        if section in (*SECRET_ENV, "source_path"):
            continue
        annotation = model.annotation
        assert f"[{section}]" in text or f"[[{section}]]" in text, section
        fields = getattr(annotation, "model_fields", {})
        for key in fields:
            listed = f"{key} =" in text or f"[[{section}.{key}]]" in text  # a list of tables: [[seeds.folders]]
            assert listed, f"[{section}] {key} missing from the bundled config"


@pytest.mark.sqlite_only  # a relative SQLite file path
def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    s = load_settings(path, environ={})
    assert s.seeds.dirs == [tmp_path / "seeds"]
    assert s.storage.url == f"sqlite:///{tmp_path / 'var' / 'test.db'}"
    assert s.publish.dir == (tmp_path / "../var/public").resolve()


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[fetch]\nconcurrency = 3\n")
    env = {
        "NEWSLETTER_FETCH_CONCURRENCY": "5",
        "NEWSLETTER_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
        "NEWSLETTER_STORAGE_URL": "sqlite:////srv/other.db",
        "NEWSLETTER_SEEDS_DIRS": '["a", "b"]',
        "NEWSLETTER_SMTP_PASSWORD": "s3cret",
        "NEWSLETTER_UNRELATED_THING": "ignored",
    }
    s = load_settings(path, environ=env)
    assert s.fetch.concurrency == 5
    assert s.fetch.allow_private_networks is True
    assert s.storage.url == "sqlite:////srv/other.db"
    assert s.seeds.dirs == [tmp_path / "a", tmp_path / "b"]
    assert s.smtp_password is not None and s.smtp_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "[fetch]\nconcurency = 3\n",
            r"\[fetch\] concurency \(line 7\): unknown key; expected one of: concurrency",
        ),
        (
            '[fetch]\nconcurrency = "eight"\n',
            r"\[fetch\] concurrency \(line 7\): expected a valid integer.*'eight'",
        ),
        ("[fetch]\nconcurrency = 0\n", r"\[fetch\] concurrency \(line 7\): expected .*greater than 0"),
        (
            '[digest]\nsend_at = "monday 8am"\n',
            r"\[digest\] send_at \(line 7\): expected a weekday and a time",
        ),
        (
            '[digest]\ntimezone = "Mars/Olympus"\n',
            r"\[digest\] timezone \(line 7\): expected an IANA time zone",
        ),
        ('[[feeds]]\nname = "x"\n', r"\[\[feeds\]\] #1 url: missing required key"),
        (
            '[[seeds.folders]]\npath = "a"\nname = "A"\n[[seeds.folders]]\npath = "b"\nname = "B"\nurl = "ftp://b.example/"\n',
            r"\[\[seeds.folders\]\] #2 url \(line 12\): expected .*an http:// or https:// address of the site.*ftp",
        ),
        ('[[seeds.folders]]\npath = "a"\n', r"\[\[seeds.folders\]\] #1 name: missing required key"),
        (
            '[[seeds.folders]]\npath = "a"\nname = "A"\nsite = "x"\n',
            r"#1 site \(line 9\): unknown key; .*path, name, url",
        ),
        ('[mail]\npassword = "x"\n', r"'smtp_password' is a secret .* NEWSLETTER_SMTP_PASSWORD"),
        ('[web]\nsecret_key = "x"\n', r"'secret_key' is a secret .* NEWSLETTER_SECRET_KEY"),
        ("[bogus]\nx = 1\n", r"bogus.*unknown key"),
        ("[fetch\nconcurrency = 1\n", r"not valid TOML: .*line 6"),
    ],
)
def test_bad_config_gets_one_clear_message(tmp_path: Path, extra: str, expected: str) -> None:
    path = write_config(tmp_path, extra)
    with pytest.raises(ConfigError, match=expected) as info:
        load_settings(path, environ={})
    assert str(info.value).startswith(str(path))


def test_seed_folders_name_their_site(tmp_path: Path) -> None:
    """Issue 14 item 1: readers see a seed folder as its site (``[[seeds.folders]]``), ``dirs`` works as before."""
    path = write_config(
        tmp_path,
        '[[seeds.folders]]\npath = "seeds"\nname = "Targeted Oncology"\nurl = "https://www.targetedonc.com/"\n'
        '[[seeds.folders]]\npath = "more/onclive"\nname = "OncLive"\n',
    )
    sites = load_settings(path, environ={}).seeds.sites()
    assert [(s.path, s.name, s.url) for s in sites] == [
        (tmp_path / "seeds", "Targeted Oncology", "https://www.targetedonc.com/"),  # listed in dirs too: read once
        (tmp_path / "more" / "onclive", "OncLive", None),
    ]
    env = {"NEWSLETTER_SEEDS_FOLDERS": '[{path = "x", name = "X"}]', "NEWSLETTER_SEEDS_DIRS": "[]"}
    assert [(s.path, s.name) for s in load_settings(path, environ=env).seeds.sites()] == [(tmp_path / "x", "X")]
    plain = load_settings(write_config(tmp_path, ""), environ={}).seeds.sites()
    assert [(s.path, s.name, s.url) for s in plain] == [(tmp_path / "seeds", None, None)]


def test_bad_environment_override_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    with pytest.raises(
        ConfigError,
        match=r"^NEWSLETTER_FETCH_TIMEOUT \(environment, overriding \[fetch\] timeout of .*\): expected a valid number",
    ):
        load_settings(path, environ={"NEWSLETTER_FETCH_TIMEOUT": "soon"})


@pytest.mark.parametrize("kind", ["missing", "directory", "not-utf8"])
def test_unreadable_config_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "newsletter.toml"
    if kind == "directory":
        path.mkdir()
    elif kind == "not-utf8":
        path.write_bytes(b"[seeds]\ndirs = ['caf\xe9']\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_settings(path, environ={})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "config file not found"),
        ('[fetch]\nconcurrency = "many"\n', "[fetch] concurrency (line 2): expected a valid integer"),
        ("[fetch\n", "not valid TOML"),
    ],
)
def test_cli_reports_config_errors_without_traceback(
    tmp_path: Path, run_cli: RunCli, content: str | None, expected: str
) -> None:
    path = tmp_path / "cfg.toml"
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli("--config", str(path), "stories")
    assert code == 2
    assert expected in err
    assert str(path) in err
    assert "Traceback" not in err + out


@pytest.mark.sqlite_only  # looks for the SQLite file next to the config
def test_cli_takes_config_from_environment(project: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(project / "newsletter.toml"))
    code, out, _ = run_cli("ingest")
    assert code == 0
    assert "6 new" in out
    assert (project / "var" / "test.db").exists()


def test_the_defaults_the_issues_name() -> None:
    s = load_settings(BUNDLED_CONFIG, environ={})
    f = s.fetch
    assert (f.concurrency, f.per_host, f.timeout, f.max_bytes) == (8, 2, 30.0, 15 * 1024 * 1024)
    assert (f.max_redirects, f.allow_private_networks) == (10, False)
    assert s.publish.max_entries == 100
    assert s.storage.url == f"sqlite:///{(BUNDLED_CONFIG.parent.parent / 'var' / 'newsletter.db').resolve()}"
    assert s.mail.transport == "outbox"
