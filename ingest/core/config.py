"""The one config file: defaults in code, then the TOML file, then ``NEWSLETTER_*`` environment overrides.

Lives in :mod:`ingest` because both layers read it and :mod:`ingest` must not import :mod:`newsletter`.
Validation errors name the file, the key (with its line when we can find it) and what was expected.
Secrets (the SMTP password, the signing key) are read from the environment only, never from the file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from ingest.core.errors import ConfigError, UsageError
from ingest.core.text import normalize_tags
from ingest.core.urls import check_feed_url

ENV_PREFIX = "NEWSLETTER_"
#: Environment variables that are secrets or options of the CLI, not keys of the file.
SECRET_ENV = {"smtp_password": "NEWSLETTER_SMTP_PASSWORD", "secret_key": "NEWSLETTER_SECRET_KEY"}
CONFIG_ENV = "NEWSLETTER_CONFIG"

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
BUNDLED_CONFIG = PROJECT_ROOT / "config" / "newsletter.toml"


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("an IANA time zone name such as 'UTC' or 'Europe/Paris'") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]


def _check_networks(value: list[str]) -> list[str]:
    for net in value:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"a list of networks such as '10.1.2.0/24' (or addresses), got {net!r}") from None
    return value


#: IP networks or single addresses, as CIDRs.
Networks = Annotated[list[str], AfterValidator(_check_networks)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class StorageConfig(_Section):
    url: str = "sqlite:///../var/newsletter.db"
    busy_timeout: float = Field(default=10.0, ge=0, description="seconds a write waits for another's write lock")
    keep_deliveries_days: int = Field(default=400, ge=0, description="days a digest's deliveries are kept; 0: ever")
    keep_sightings_days: int = Field(default=730, ge=0, description="days a story keeps every copy; 0: ever")


class SeedsConfig(_Section):
    dirs: list[Path] = Field(default_factory=lambda: [Path("seeds")])
    boilerplate: list[str] = Field(
        default_factory=lambda: ["Stay up to date on recent advances in the multidisciplinary approach to cancer."]
    )
    max_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    timezone: TimeZoneName = "UTC"
    title_max_chars: int = Field(default=90, ge=20)
    follow_symlinks: bool = False


class FeedConfig(_Section):
    url: str
    name: str | None = None
    interval: int | None = Field(default=None, gt=0, description="minutes between checks")
    tags: list[str] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            return check_feed_url(value)
        except UsageError as exc:
            reason = str(exc).removeprefix(f"{value!r}: ")
            raise ValueError(f"an http:// or https:// feed URL ({reason})") from None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return list(normalize_tags(value))


class FetchConfig(_Section):
    concurrency: int = Field(default=8, gt=0)
    per_host: int = Field(default=2, gt=0)
    timeout: float = Field(default=30.0, gt=0)
    max_bytes: int = Field(default=15 * 1024 * 1024, gt=0)
    user_agent: str = "feed-newsletter/0.1 (+https://example.org/feed-newsletter)"
    allow_private_networks: bool = False
    trusted_networks: Networks = Field(default_factory=list, description="CIDRs reachable even when private")
    interval: float = Field(default=60, gt=0, description="default minutes between checks of a feed")
    max_redirects: int = Field(default=10, ge=0)
    max_entries: int = Field(default=500, gt=0, description="entries kept from one fetch of a feed, newest first")
    lease_seconds: float = Field(default=0, ge=0, description="a claimed feed's lease; 0: automatic")
    pause_after_days: float = Field(default=30, ge=0, description="days of failures before a feed is paused; 0: never")


class PublishConfig(_Section):
    dir: Path = Path("../var/public")
    base_url: str = "http://127.0.0.1:8080/"
    max_entries: int = Field(default=100, gt=0)
    title: str = "Oncology news"
    subtitle: str = "Oncology news from many sources, each story once."
    author: str = "feed-newsletter"
    id: str = "tag:feed-newsletter.example,2026:feed"
    websub_hubs: list[str] = Field(default_factory=list, description="WebSub hubs pinged when a feed changes")

    @field_validator("websub_hubs")
    @classmethod
    def _hubs(cls, value: list[str]) -> list[str]:
        for hub in value:
            try:
                check_feed_url(hub)
            except UsageError as exc:
                reason = str(exc).removeprefix(f"{hub!r}: ")
                raise ValueError(f"an http:// or https:// hub URL ({reason})") from None
        return value


class DigestConfig(_Section):
    timezone: TimeZoneName = "UTC"
    send_at: str = "mon 08:00"
    subject: str = "Oncology digest: {count} new {stories}, {start} to {end}"
    backlog_days: int = Field(default=14, ge=0)
    send_empty: bool = False
    catch_up_hours: int = Field(default=24, ge=0)
    max_per_section: int = Field(default=10, ge=1, description="stories per section in the email; the rest on the web")

    @field_validator("send_at")
    @classmethod
    def _send_at(cls, value: str) -> str:
        if not re.fullmatch(r"(mon|tue|wed|thu|fri|sat|sun) ([01]\d|2[0-3]):[0-5]\d", value.lower()):
            raise ValueError("a weekday and a time such as 'mon 08:00'")
        return value.lower()


class MailConfig(_Section):
    transport: Literal["outbox", "smtp"] = "outbox"
    outbox_dir: Path = Path("../var/outbox")
    from_address: str = "Oncology digest <digest@localhost>"
    postal_address: str = Field(default="", description="shown in the digest's footer; several lines allowed")
    host: str = "localhost"
    port: int = Field(default=25, gt=0, lt=65536)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    rate: float = Field(default=0.0, ge=0, description="messages per second, 0 for no limit")
    timeout: float = Field(default=30.0, gt=0)
    bounce_limit: int = Field(default=3, gt=0, description="hard bounces (5xx) before a subscriber is bounced")
    soft_bounce_limit: int = Field(
        default=5, gt=0, description="soft bounces (4xx until the retries ran out) before a subscriber is bounced"
    )
    pause_after_retries: int = Field(
        default=5, gt=0, description="temporary failures in a row (4xx, timeouts) stop a run; a 421 stops it at once"
    )
    lease_seconds: float = Field(
        default=0, ge=0, description="a claimed delivery's lease; 0: max(120, 4 * timeout + 30)"
    )


class WebConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, lt=65536)
    trusted_proxies: Networks = Field(default_factory=list, description="proxies whose X-Forwarded-For is believed")
    health_max_pass_age: int = Field(default=60, ge=0, description="minutes; 0: the last pass's age is not judged")
    metrics: bool = True


class SubscribeConfig(_Section):
    per_client_per_hour: int = Field(default=5, ge=0, description="subscribe requests per client address; 0: any")
    mails_per_hour: int = Field(default=100, ge=0, description="confirmation mails in all; 0: no cap")


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(_Section):
    """The whole validated config. Paths are absolute once loaded."""

    storage: StorageConfig = StorageConfig()
    seeds: SeedsConfig = SeedsConfig()
    feeds: list[FeedConfig] = Field(default_factory=list)
    fetch: FetchConfig = FetchConfig()
    publish: PublishConfig = PublishConfig()
    digest: DigestConfig = DigestConfig()
    mail: MailConfig = MailConfig()
    web: WebConfig = WebConfig()
    subscribe: SubscribeConfig = SubscribeConfig()
    log: LogConfig = LogConfig()
    # Secrets: environment only (see SECRET_ENV); never printed.
    smtp_password: SecretStr | None = None
    secret_key: SecretStr | None = None
    #: The file the settings came from (None when built from defaults in code).
    source_path: Path | None = None


_SECTIONS = tuple(name for name in Settings.model_fields if name not in (*SECRET_ENV, "source_path"))


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$NEWSLETTER_CONFIG``, else ``config/newsletter.toml`` here, else the project's bundled one."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    local = Path("config/newsletter.toml")
    return local if local.exists() else BUNDLED_CONFIG


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the config. Raises :class:`ConfigError` with a message for a person."""
    env = os.environ if environ is None else environ
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: expected a TOML file, found a directory") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot read the config file (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the config file is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for secret, var in SECRET_ENV.items():
        if _mentions_secret(data, secret):
            raise ConfigError(f"{path}: {secret!r} is a secret and is read only from the environment variable {var}")
    from_env = _apply_env(data, env, path)
    for secret, var in SECRET_ENV.items():
        if env.get(var):
            data[secret] = env[var]
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, text, from_env)) from None
    return _resolve_paths(settings, path.resolve())


def _mentions_secret(data: Mapping[str, Any], secret: str) -> bool:
    if secret in data:
        return True
    short = secret.removeprefix("smtp_")
    return any(isinstance(v, Mapping) and short in v for v in data.values())


def _apply_env(data: dict[str, Any], env: Mapping[str, str], path: Path) -> dict[tuple[str, str], str]:
    """``NEWSLETTER_FETCH_MAX_BYTES=1000`` sets ``[fetch] max_bytes``. Values are read as TOML when they parse.
    Returns which (section, key) came from which variable, so an error names the variable, not the file."""
    applied: dict[tuple[str, str], str] = {}
    for var, raw in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV or var in SECRET_ENV.values():
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is None or section == "feeds":
            continue  # not ours (another tool's, or a test's own variable)
        key = rest[len(section) + 1 :]
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{path}: [{section}] must be a table to take the override {var}")
        target[key] = _env_value(raw)
        applied[(section, key)] = var
    return applied


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _describe(exc: ValidationError, path: Path, text: str, from_env: Mapping[tuple[str, str], str]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = _key_name(loc)
        var = from_env.get((loc[0], loc[1])) if len(loc) >= 2 else None
        if var is not None:
            lines.append(f"{var} (environment, overriding {key} of {path}): {_expected(err, loc)}")
            continue
        where = _line_of(text, loc)
        at = f" (line {where})" if where else ""
        lines.append(f"{path}: {key}{at}: {_expected(err, loc)}")
    return "\n".join(lines)


def _expected(err: Any, loc: list[str]) -> str:
    """What pydantic found wrong, as "expected ..., got ..."."""
    if err["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        return f"unknown key; expected one of: {', '.join(known)}" if known else "unknown key"
    if err["type"] == "missing":
        return "missing required key"
    msg = str(err["msg"])
    for prefix in ("Input should be ", "Value error, "):
        if msg.startswith(prefix):
            msg = "expected " + msg.removeprefix(prefix)
            break
    else:
        msg = f"expected a valid value ({msg})"
    got = err.get("input")
    return msg if isinstance(got, dict | list) else f"{msg}, got {got!r}"


def _key_name(loc: list[str]) -> str:
    if not loc:
        return "(top level)"
    if loc[0] == "feeds" and len(loc) > 1 and loc[1].isdigit():
        rest = ".".join(loc[2:])
        return f"[[feeds]] #{int(loc[1]) + 1} {rest}".rstrip()
    if len(loc) == 1:
        return f"[{loc[0]}]" if loc[0] in _SECTIONS else loc[0]
    return f"[{loc[0]}] {'.'.join(loc[1:])}"


def _known_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann: object = field.annotation
        inner = getattr(ann, "__args__", (ann,))[0] if getattr(ann, "__origin__", None) is list else ann
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return []
        model = inner
    hidden = {*SECRET_ENV, "source_path"}
    return [k for k in model.model_fields if k not in hidden]


def _line_of(text: str, loc: list[str]) -> int | None:
    """Best effort: the line of ``key =`` inside the table named by ``loc`` (tomllib keeps no positions)."""
    if not loc:
        return None
    lines = text.splitlines()
    section, key = loc[0], loc[-1]
    if len(loc) == 1:
        pattern = re.compile(rf"^\s*\[+\s*{re.escape(section)}\s*\]+")
        return next((i + 1 for i, line in enumerate(lines) if pattern.match(line)), None)
    header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
    key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
    current, occurrence = "", -1
    wanted = int(loc[1]) if section == "feeds" and len(loc) > 2 and loc[1].isdigit() else 0
    for i, line in enumerate(lines):
        m = header.match(line)
        if m:
            current = m.group(1)
            if current == section:
                occurrence += 1
            continue
        if current == section and occurrence == wanted and key_re.match(line):
            return i + 1
    return None


def _resolve_paths(settings: Settings, config_path: Path) -> Settings:
    base = config_path.parent

    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    url = settings.storage.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and ":memory:" not in url:
        url = "sqlite:///" + str(absolute(Path(url.removeprefix("sqlite:///"))))
    return settings.model_copy(
        update={
            "storage": settings.storage.model_copy(update={"url": url}),
            "seeds": settings.seeds.model_copy(update={"dirs": [absolute(d) for d in settings.seeds.dirs]}),
            "publish": settings.publish.model_copy(update={"dir": absolute(settings.publish.dir)}),
            "mail": settings.mail.model_copy(update={"outbox_dir": absolute(settings.mail.outbox_dir)}),
            "source_path": config_path,
        }
    )
