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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
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
from ingest.core.text import HEADLINE_CHARS, normalize_tags
from ingest.core.urls import check_feed_url

ENV_PREFIX = "NEWSLETTER_"
#: Environment variables that are secrets or options of the CLI, not keys of the file.
SECRET_ENV = {
    "smtp_password": "NEWSLETTER_SMTP_PASSWORD",
    "secret_key": "NEWSLETTER_SECRET_KEY",
    "imap_password": "NEWSLETTER_IMAP_PASSWORD",
    "dkim_key_file": "NEWSLETTER_DKIM_KEY_FILE",
    "postmark_hook_password": "NEWSLETTER_POSTMARK_HOOK_PASSWORD",
}
CONFIG_ENV = "NEWSLETTER_CONFIG"

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
BUNDLED_CONFIG = PROJECT_ROOT / "config" / "newsletter.toml"
BUNDLED_TOPICS = PROJECT_ROOT / "config" / "topics.toml"


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


def _check_domain_rates(value: dict[str, float]) -> dict[str, float]:
    checked: dict[str, float] = {}
    for domain, rate in value.items():
        name = domain.strip().rstrip(".").lower()
        if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", name):
            raise ValueError(f"a table of mail domains such as 'gmail.com', got {domain!r}")
        if not rate > 0:
            raise ValueError(f"a rate above 0 messages per second for {domain!r}, got {rate!r}")
        checked[name] = float(rate)
    return checked


#: Recipient domain -> messages per second (``[mail] domain_rates``), domains lower case.
DomainRates = Annotated[dict[str, float], AfterValidator(_check_domain_rates)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class StorageConfig(_Section):
    url: str = "sqlite:///../var/newsletter.db"
    busy_timeout: float = Field(default=10.0, ge=0, description="seconds a write waits for another's write lock")
    keep_deliveries_days: int = Field(default=400, ge=0, description="days a digest's deliveries are kept; 0: ever")
    keep_sightings_days: int = Field(default=730, ge=0, description="days a story keeps every copy; 0: ever")


def _check_site_url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname or " " in value:
        raise ValueError("an http:// or https:// address of the site, such as 'https://www.example.org/'")
    return value


class SeedFolder(_Section):
    """One ``[[seeds.folders]]`` table: a folder of pages saved from one site, and how readers see that site."""

    path: Path
    name: str = Field(min_length=1, description="the site's name, shown as the source of its stories")
    url: Annotated[str | None, AfterValidator(_check_site_url)] = None


@dataclass(frozen=True, slots=True)
class SeedSite:
    """A seed folder to read, with its site's name and address when the config gives them."""

    path: Path
    name: str | None
    url: str | None
    key: str  # the config key that lists it, for messages


class SeedsConfig(_Section):
    dirs: list[Path] = Field(default_factory=lambda: [Path("seeds")])
    folders: list[SeedFolder] = Field(default_factory=list)
    boilerplate: list[str] = Field(
        default_factory=lambda: ["Stay up to date on recent advances in the multidisciplinary approach to cancer."]
    )
    max_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    timezone: TimeZoneName = "UTC"
    title_max_chars: int = Field(default=HEADLINE_CHARS, ge=20)
    follow_symlinks: bool = False

    def sites(self) -> list[SeedSite]:
        """Every folder to read, once: those of ``dirs`` (named by ``[[seeds.folders]]`` when it lists them too),
        then the rest of ``[[seeds.folders]]``."""
        named = {folder.path: folder for folder in self.folders}
        found: dict[Path, SeedSite] = {}
        for path in self.dirs:
            site = named.get(path)
            name, url = (site.name, site.url) if site else (None, None)
            found.setdefault(path, SeedSite(path, name, url, "[seeds] dirs"))
        for folder in self.folders:
            found.setdefault(folder.path, SeedSite(folder.path, folder.name, folder.url, "[[seeds.folders]] path"))
        return list(found.values())


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


class PageConfig(FeedConfig):
    """A live article page, read like a saved seed page on a schedule (``[[pages]]``): the same keys as a feed."""


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
    rate: float = Field(
        default=0.0, ge=0, description="messages per second, shared by every sending process; 0 for no limit"
    )
    domain_rates: DomainRates = Field(
        default_factory=dict, description="messages per second to one recipient domain, e.g. {'gmail.com': 20}"
    )
    connections: int = Field(default=4, gt=0, le=64, description="SMTP sessions per process, each reused")
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
    bounce_address: str = Field(
        default="", description="envelope sender base: bounces come back to bounces+TOKEN@ (VERP); '' for From"
    )
    unsubscribe_address: str = Field(
        default="", description="List-Unsubscribe mailto base: unsubscribe+TOKEN@; '' for From with a subject"
    )

    dkim_selector: str = Field(default="", description="DKIM: the selector of the public key in DNS; '' to not sign")
    dkim_domain: str = Field(default="", description="DKIM: the signing domain (d=), usually From's domain")

    @field_validator("bounce_address", "unsubscribe_address")
    @classmethod
    def _plain_address(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9._-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", value):
            raise ValueError("a plain address without '+', such as 'bounces@news.example.org', or ''")
        return value.lower()


class InboundConfig(_Section):
    source: Literal["none", "maildir", "imap"] = "none"
    maildir: Path = Path("../var/inbound")
    host: str = ""
    port: int = Field(default=993, gt=0, lt=65536)
    security: Literal["tls", "starttls"] = "tls"
    username: str = ""
    folder: str = "INBOX"
    timeout: float = Field(default=30.0, gt=0)
    ca_file: Path | None = Field(
        default=None, description="PEM file of the CA(s) trusted for the IMAP server instead of the system's"
    )


class HooksConfig(_Section):
    ses: bool = False
    ses_topics: list[str] = Field(default_factory=list, description="SNS topic ARNs accepted; [] for any")
    sns_cert_url: str = Field(
        default=r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/",
        description="where SNS signing certificates (and subscription confirmations) may be fetched from: a regex",
    )
    postmark_username: str = ""
    sendgrid_public_key: str = ""

    @field_validator("sns_cert_url")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"a regular expression ({exc})") from None
        return value


class WebConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, lt=65536)
    trusted_proxies: Networks = Field(default_factory=list, description="proxies whose X-Forwarded-For is believed")
    health_max_pass_age: int = Field(default=60, ge=0, description="minutes; 0: the last pass's age is not judged")
    metrics: bool = True


class SubscribeConfig(_Section):
    per_client_per_hour: int = Field(default=5, ge=0, description="subscribe requests per client address; 0: any")
    mails_per_hour: int = Field(default=100, ge=0, description="confirmation mails in all; 0: no cap")


class TopicsConfig(_Section):
    file: Path | None = Field(default=None, description="the topic taxonomy; None: the bundled config/topics.toml")
    terms: dict[str, list[str]] = Field(default_factory=dict, description="more terms per topic slug")

    @property
    def path(self) -> Path:
        return self.file if self.file is not None else BUNDLED_TOPICS


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(_Section):
    """The whole validated config. Paths are absolute once loaded."""

    storage: StorageConfig = StorageConfig()
    seeds: SeedsConfig = SeedsConfig()
    feeds: list[FeedConfig] = Field(default_factory=list)
    pages: list[PageConfig] = Field(default_factory=list)
    fetch: FetchConfig = FetchConfig()
    publish: PublishConfig = PublishConfig()
    digest: DigestConfig = DigestConfig()
    mail: MailConfig = MailConfig()
    inbound: InboundConfig = InboundConfig()
    hooks: HooksConfig = HooksConfig()
    web: WebConfig = WebConfig()
    subscribe: SubscribeConfig = SubscribeConfig()
    topics: TopicsConfig = TopicsConfig()
    log: LogConfig = LogConfig()
    # Secrets: environment only (see SECRET_ENV); never printed.
    smtp_password: SecretStr | None = None
    secret_key: SecretStr | None = None
    imap_password: SecretStr | None = None
    dkim_key_file: Path | None = None  # the DKIM private key's file: named only in the environment
    postmark_hook_password: SecretStr | None = None
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


#: Where a secret would be written in the file by someone who did not know: (section, key).
_SECRET_KEYS = {
    "smtp_password": ("mail", "password"),
    "imap_password": ("inbound", "password"),
    "postmark_hook_password": ("hooks", "postmark_password"),
}


def _mentions_secret(data: Mapping[str, Any], secret: str) -> bool:
    if secret in data:
        return True
    if secret in _SECRET_KEYS:
        section, short = _SECRET_KEYS[secret]
        table = data.get(section)
        return isinstance(table, Mapping) and short in table
    return any(isinstance(v, Mapping) and secret in v for v in data.values())


def _apply_env(data: dict[str, Any], env: Mapping[str, str], path: Path) -> dict[tuple[str, str], str]:
    """``NEWSLETTER_FETCH_MAX_BYTES=1000`` sets ``[fetch] max_bytes``. Values are read as TOML when they parse.
    Returns which (section, key) came from which variable, so an error names the variable, not the file."""
    applied: dict[tuple[str, str], str] = {}
    for var, raw in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV or var in SECRET_ENV.values():
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is None or section in ("feeds", "pages"):
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
    if loc[0] in ("feeds", "pages") and len(loc) > 1 and loc[1].isdigit():
        rest = ".".join(loc[2:])
        return f"[[{loc[0]}]] #{int(loc[1]) + 1} {rest}".rstrip()
    if loc[:2] == ["seeds", "folders"] and len(loc) > 2 and loc[2].isdigit():
        rest = ".".join(loc[3:])
        return f"[[seeds.folders]] #{int(loc[2]) + 1} {rest}".rstrip()
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
    wanted = int(loc[1]) if section in ("feeds", "pages") and len(loc) > 2 and loc[1].isdigit() else 0
    if loc[:2] == ["seeds", "folders"] and len(loc) > 3 and loc[2].isdigit():
        section, wanted = "seeds.folders", int(loc[2])
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
            "seeds": settings.seeds.model_copy(
                update={
                    "dirs": [absolute(d) for d in settings.seeds.dirs],
                    "folders": [f.model_copy(update={"path": absolute(f.path)}) for f in settings.seeds.folders],
                }
            ),
            "publish": settings.publish.model_copy(update={"dir": absolute(settings.publish.dir)}),
            "mail": settings.mail.model_copy(update={"outbox_dir": absolute(settings.mail.outbox_dir)}),
            "inbound": settings.inbound.model_copy(
                update={
                    "maildir": absolute(settings.inbound.maildir),
                    "ca_file": absolute(settings.inbound.ca_file) if settings.inbound.ca_file else None,
                }
            ),
            "topics": settings.topics.model_copy(
                update={"file": absolute(settings.topics.file) if settings.topics.file is not None else None}
            ),
            "source_path": config_path,
        }
    )
