"""The ``newsletter`` command line: parses arguments, reads the clock, prints tables. No business logic here.

A user mistake (bad config, bad argument, unusable database) prints one clear message and exits 2, no traceback.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args

import click

from ingest.core.errors import AddressError, MailboxError, NewsletterError, UsageError
from ingest.core.links import MAX_ID, uid_authority
from ingest.core.models import ROLES, Role, Source, SourceReport, Story, SubscriberStatus
from ingest.core.text import counted, normalize_tags
from ingest.core.urls import check_feed_url

# Start-up is paid by every cron-style run: the heavy modules (pydantic's config, SQLAlchemy's store, rich, the feed
# pass) are imported where a command needs them, so ``--help`` and a pass with nothing to do stay quick.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from ingest.core.config import Settings
    from ingest.store import Store
    from ingest.topics import Taxonomy
    from newsletter.digest.job import DigestReport
    from newsletter.publish import PublishReport

EXIT_USER_ERROR = 2
Command = TypeVar("Command", bound=Callable[..., Any])
#: The longest note `stories hide --reason` keeps.
MAX_REASON = 1000
#: Hidden stories `status` names one by one (the most recently hidden); --json lists them all.
SHOWN_HIDDEN = 10
#: A story's or sighting's id as an argument: a number the database could hold (see ingest.core.links.MAX_ID).
ROW_ID = click.IntRange(1, MAX_ID)


class App:
    """What every command needs: the settings, loaded once, and the store, opened on first use."""

    def __init__(self, config_path: Path | None) -> None:
        self._config_path = config_path  # None: the default, found when first needed (it imports the config model)
        self._settings: Settings | None = None
        self._store: Store | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from ingest.core.config import load_settings
            from ingest.topics import taxonomy_of

            settings = load_settings(self.config_path)
            taxonomy_of(settings.topics)  # a bad taxonomy is a config error now, not at the first story
            self._settings = settings
        return self._settings

    @property
    def config_path(self) -> Path:
        if self._config_path is None:
            from ingest.core.config import default_config_path

            self._config_path = default_config_path()
        return self._config_path

    @property
    def taxonomy(self) -> Taxonomy:
        from ingest.topics import taxonomy_of

        return taxonomy_of(self.settings.topics)

    @property
    def store(self) -> Store:
        if self._store is None:
            from ingest.store import Store

            storage = self.settings.storage
            self._store = Store.open(
                storage.url, uid_authority=uid_authority(self.settings.publish), busy_timeout=storage.busy_timeout
            )
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def new_table(title: str) -> Table:
    from rich.table import Table

    return Table(title=title)


def now() -> datetime:
    return datetime.now(UTC)


def out() -> Console:
    """Tables on stdout: the terminal's width, or wide enough to stay readable when piped."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200, markup=False, highlight=False, emoji=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="NEWSLETTER_CONFIG",
    default=None,
    help="Config file (default: $NEWSLETTER_CONFIG, else config/newsletter.toml).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Ingest oncology news pages and feeds, fold copies into stories, publish a feed and a weekly digest."""
    app = App(config_path)
    ctx.obj = app
    ctx.call_on_close(app.close)


@cli.command()
@click.option("--all", "force", is_flag=True, help="Fetch every feed, not only those due.")
@click.pass_obj
def ingest(app: App, force: bool) -> None:
    """Read the seed folders and fetch the due feeds."""
    reports = _ingest(app, force=force)
    _print_reports(reports)
    if any(r.error for r in reports):
        sys.exit(1)


def _ingest(app: App, *, force: bool = False) -> list[SourceReport]:
    """One ingest pass, with a progress bar over the feeds when stderr is a terminal."""
    from ingest.run import ingest_pass

    if not sys.stderr.isatty():
        return ingest_pass(app.store, app.settings, now(), force=force)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("fetching feeds", total=None)

        def advance(_report: SourceReport, total: int) -> None:
            progress.update(task, total=total, advance=1)

        return ingest_pass(app.store, app.settings, now(), force=force, on_progress=advance)


def _print_reports(reports: Sequence[SourceReport]) -> None:
    for r in reports:
        if r.error:
            click.echo(f"error  {r.error}", err=True)
            continue
        if r.skipped:
            click.echo(f"warn   {r.warning}", err=True)
            continue
        state = "unchanged" if r.unchanged else f"{r.new} new, {r.seen} seen again"
        click.echo(f"ok     {r.location}: {state}")
        if r.warning and not r.unchanged:
            click.echo(f"warn   {r.warning}", err=True)
    from ingest.run import summarize

    s = summarize(reports)
    click.echo(
        f"ingested {s['sources']} source(s): {s['new']} new sighting(s), {s['new_stories']} new story(ies), "
        f"{s['unchanged']} unchanged, {s['errors']} error(s)"
    )


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many stories.")
@click.pass_context
def stories(ctx: click.Context, as_json: bool, limit: int | None) -> None:
    """List stories, newest first (hidden ones too, marked); explain, merge, split, hide, unhide, tag or retag them."""
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.obj
    items = app.store.stories(limit=limit, hidden=True)
    if as_json:
        click.echo(json.dumps([story_json(s) for s in items], indent=2, ensure_ascii=False))
        return
    _stories_table(items)


@stories.command("explain")
@click.argument("story_id", type=ROW_ID)
@click.pass_obj
def stories_explain(app: App, story_id: int) -> None:
    """Show a story's sightings and why they were merged."""
    e = app.store.explain(story_id)
    if e.story is None:
        click.echo(
            f"story {story_id} was merged into story {e.merged_into}: see `newsletter stories explain {e.merged_into}`"
        )
        return
    s = e.story
    click.echo(f"story {s.id}: {s.title}")
    click.echo(f"  id         {s.uid}")
    click.echo(f"  published  {s.published.isoformat() if s.published else '-'}")
    click.echo(f"  first seen {s.first_seen.isoformat()}   updated {s.updated.isoformat()}")
    click.echo(f"  link       {s.link or '-'}")
    click.echo(f"  tags       {', '.join(s.tags) or '-'}")
    click.echo(f"  topics     {', '.join(s.topics) or '-'}")
    if s.hidden_at is not None:
        click.echo(f"  hidden     {_hidden(s)}: out of the pages, feeds and digests; `stories unhide {s.id}` shows it")
    if e.merged:
        click.echo(f"  merged in  {', '.join(str(i) for i in e.merged)} (those ids resolve to this story)")
    table = new_table(f"{len(e.sightings)} sighting(s)")
    for col in ("sighting", "source", "kind", "pos", "date", "title / blurb", "first seen", "last seen", "why"):
        table.add_column(col)
    for g in e.sightings:
        why = g.match_rule or "-"
        if g.match_rule == "new":
            why = "started the story"
        elif g.match_score is not None and g.match_rule not in ("split",):
            why = f"{g.match_rule} ({g.match_score:.2f})"
        blurb = (g.summary[:80] + "…") if len(g.summary) > 80 else g.summary
        table.add_row(
            str(g.id),
            g.source_location,
            g.kind,
            str(g.position),
            g.published.date().isoformat() if g.published else "-",
            f"{g.title}\n{blurb}" if blurb else g.title,
            _when(g.first_seen),
            _when(g.last_seen),
            why,
        )
    out().print(table)
    for o in e.overrides:
        verb = "kept together" if o.kind == "merge" else "kept apart"
        click.echo(f"  operator: sightings {o.sighting_a} and {o.sighting_b} {verb} ({o.kind}, {_when(o.created_at)})")


@stories.command("merge")
@click.argument("first", type=ROW_ID)
@click.argument("second", type=ROW_ID)
@click.pass_obj
def stories_merge(app: App, first: int, second: int) -> None:
    """Merge two stories (the older id survives)."""
    survivor, loser = app.store.merge_stories(first, second, now())
    click.echo(f"merged story {loser} into story {survivor}; {loser} now resolves to {survivor}")


@stories.command("split")
@click.argument("story_id", type=ROW_ID)
@click.argument("sighting_id", type=ROW_ID)
@click.pass_obj
def stories_split(app: App, story_id: int, sighting_id: int) -> None:
    """Take a sighting out of a story into a story of its own."""
    new_id = app.store.split_sighting(story_id, sighting_id, now())
    click.echo(f"sighting {sighting_id} left story {story_id}: it is now story {new_id}")


@stories.command("hide")
@click.argument("story_id", type=ROW_ID)
@click.option("--reason", default=None, help="Why (shown to operators only: explain, status).")
@click.pass_obj
def stories_hide(app: App, story_id: int, reason: str | None) -> None:
    """Hide (retract) a story: out of the pages, feeds, search and future digests."""
    if reason is not None and len(reason) > MAX_REASON:
        raise UsageError(f"--reason: at most {MAX_REASON} characters, got {len(reason)}")
    story, changed = app.store.hide_story(story_id, " ".join(reason.split()) if reason else None, now())
    state = "is hidden" if changed else "was hidden already"
    click.echo(f"story {story.id} {state} ({_hidden(story)}): {story.title}")
    if changed:
        click.echo("the published feeds change at the next publish (`newsletter publish`, or the service's next pass)")


@stories.command("unhide")
@click.argument("story_id", type=ROW_ID)
@click.pass_obj
def stories_unhide(app: App, story_id: int) -> None:
    """Show a hidden story again."""
    story, changed = app.store.unhide_story(story_id, now())
    if not changed:
        click.echo(f"story {story.id} is not hidden: nothing to do")
        return
    click.echo(f"story {story.id} is shown again: {story.title}")


@stories.command("tag")
@click.argument("story_id", type=ROW_ID)
@click.argument("topic")
@click.pass_obj
def stories_tag(app: App, story_id: int, topic: str) -> None:
    """Give a story a topic its words did not (kept through retagging)."""
    _set_topic(app, story_id, topic, added=True)


@stories.command("untag")
@click.argument("story_id", type=ROW_ID)
@click.argument("topic")
@click.pass_obj
def stories_untag(app: App, story_id: int, topic: str) -> None:
    """Take a topic off a story (kept through retagging)."""
    _set_topic(app, story_id, topic, added=False)


def _set_topic(app: App, story_id: int, topic: str, *, added: bool) -> None:
    if app.taxonomy.get(topic) is None:
        raise UsageError(f"unknown topic {topic!r}; expected one of: {', '.join(app.taxonomy.slugs)}")
    story, changed = app.store.set_story_topic(story_id, topic, added=added, now=now())
    verb = "now has" if added else "no longer has"
    state = "" if changed else " (already so: kept as the operator's word)"
    click.echo(f"story {story.id} {verb} topic {topic}{state}; topics: {', '.join(story.topics) or '-'}")


@stories.command("retag")
@click.pass_obj
def stories_retag(app: App) -> None:
    """Tag every story again with the current taxonomy (after editing it or [topics] terms)."""
    sightings, changed = app.store.retag(app.taxonomy.tag, now())
    click.echo(f"retagged: {sightings} sighting(s) and {changed} story(ies) changed topics")


def _hidden(s: Story) -> str:
    return f"since {_when(s.hidden_at)}" + (f", reason: {s.hidden_reason}" if s.hidden_reason else "")


def story_json(s: Story) -> dict[str, Any]:
    return {
        "id": s.id,
        "title": s.title,
        "published": s.published.isoformat() if s.published else None,
        "first_seen": s.first_seen.isoformat(),
        "summary": s.summary,
        "link": s.link,
        "sightings": s.sightings,
        "tags": list(s.tags),
        "topics": list(s.topics),
        "hidden": s.hidden_at is not None,
    }


def _stories_table(items: Sequence[Story]) -> None:
    table = new_table(f"{len(items)} stories, newest first")
    table.add_column("id", justify="right")
    table.add_column("published")
    table.add_column("title")
    table.add_column("seen", justify="right")
    table.add_column("tags")
    table.add_column("hidden")
    for s in items:
        table.add_row(
            str(s.id),
            s.published.date().isoformat() if s.published else "-",
            s.title,
            str(s.sightings),
            ", ".join(s.tags),
            _when(s.hidden_at) if s.hidden_at else "",
        )
    out().print(table)


@cli.command()
@click.option("--once", is_flag=True, help="One pass of everything due, then exit (for cron).")
@click.option("--no-web", is_flag=True, help="Do not serve the web app (a worker): every role but web.")
@click.option(
    "--role",
    "roles",
    type=click.Choice(ROLES),
    multiple=True,
    help="Run only this part (repeatable): ingest (sources, publish), sender (inbound, digest), web. Default: all.",
)
@click.option(
    "--tick",
    type=click.FloatRange(min=0.2),
    default=60.0,
    show_default=True,
    help="Seconds between checks of what is due.",
)
@click.pass_obj
def run(app: App, once: bool, no_web: bool, tick: float, roles: tuple[Role, ...]) -> None:
    """Run the service: web app, ingest, publish and digest on schedule."""
    from newsletter.service.lock import instance_lock
    from newsletter.service.service import Service

    chosen = frozenset(roles or ROLES) - ({"web"} if no_web else set())
    if not chosen:
        raise UsageError("--no-web with --role web leaves nothing to run")
    if once and not chosen - {"web"}:
        raise UsageError("--once runs the ingest and sender steps once; --role web alone has none (use `serve`)")
    settings = app.settings
    _setup_logging(settings.log.level, settings.log.format)
    # The web alone writes only what its pages do (subscribe, unsubscribe): it runs beside a service on SQLite too.
    lock = instance_lock(settings) if chosen - {"web"} else contextlib.nullcontext()
    with lock:
        service = Service(settings, app.store, roles=chosen)
        if "sender" in chosen:
            service.warn_about_setup()
        if once:
            report = service.run_pass(now(), force_publish=True)
            _print_reports(report.sources)  # the pass's errors are in the log (stderr)
            if report.failed_sources or report.errors:
                sys.exit(1)
            return
        base = f"http://{settings.web.host}:{settings.web.port}"
        lines = [f"feed      {base}/feed.atom", f"home page {base}/"] if "web" in chosen else []
        if "ingest" in chosen:
            lines.append(f"files     {settings.publish.dir}")
        if "sender" in chosen and settings.mail.transport == "outbox":
            lines.append(f"outbox    {settings.mail.outbox_dir}")
        lines.append(f"roles     {', '.join(r for r in ROLES if r in chosen)}")
        click.echo("feed-newsletter is running; stop it with Ctrl-C (or SIGTERM)\n  " + "\n  ".join(lines))
        if not service.serve_forever(tick_seconds=tick):
            sys.exit(1)


def _setup_logging(level: str, style: str = "text") -> None:
    import logging

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    if style == "json":
        from newsletter.service.logs import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    for noisy in ("apscheduler", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """The operator's view: sources, stories, digests, subscribers."""
    from newsletter.status import status_view

    view = status_view(app.store, app.settings, now())
    if as_json:
        click.echo(json.dumps(view.as_json(), indent=2))
        return
    table = new_table(f"{len(view.sources)} source(s)")
    for col in ("source", "kind", "status", "last success", "errors", "last error", "next check"):
        table.add_column(col)
    for s in view.sources:
        table.add_row(
            s.name or s.location,
            s.kind,
            s.status,
            _when(s.last_success_at),
            str(s.error_count),
            s.last_error or "",
            "-" if s.kind == "page" and s.url is None else _next_check(s),
        )
    out().print(table)
    _print_moved(view.sources)
    hidden = len(view.hidden)
    click.echo(
        f"stories    {view.live_stories} live, {hidden} hidden, {view.first_seen_this_week} first seen this week"
        f" ({view.week})"
    )
    for story in view.hidden[:SHOWN_HIDDEN]:
        click.echo(f"  hidden   #{story.id} {_hidden(story)}: {story.title}")
    if hidden > SHOWN_HIDDEN:
        click.echo(f"  hidden   and {hidden - SHOWN_HIDDEN} more (`newsletter status --json` lists them all)")
    last = view.last_digest
    if last is None:
        click.echo("digest     none yet")
    else:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(view.last_deliveries.items())) or "no deliveries"
        note = f" ({last.note})" if last.note else ""
        stories = counted(last.story_count, "story", "stories")
        click.echo(f"last digest {last.period}: {last.status}{note}; {stories}; {counts}")
    click.echo(f"next digest {view.next_period}: due {view.next_due:%a %Y-%m-%d %H:%M %Z}")
    total = ", ".join(f"{n} {k}" for k, n in sorted(view.subscribers.items())) or "none"
    click.echo(f"subscribers {total}")


@cli.command()
@click.pass_obj
def publish(app: App) -> None:
    """Write the combined feeds (Atom, RSS, JSON, tags, archive)."""
    from newsletter.publish import Publisher

    publisher = Publisher(app.store, app.settings, topics=app.taxonomy.names)
    report = publisher.publish(now())
    publisher.wait()  # the WebSub hubs are told before the command exits
    _print_publish(app, report)


def _print_publish(app: App, report: PublishReport) -> None:
    where = app.settings.publish.dir
    if report.up_to_date:
        click.echo(f"published {where}: up to date, nothing changed")
        return
    for name in report.written:
        click.echo(f"wrote  {where / name}")
    for name in report.removed:
        click.echo(f"removed {where / name}")
    for uid in report.skipped:
        click.echo(f"skipped story {uid}: it could not be rendered (see the log)", err=True)
    click.echo(
        f"published {where}: {report.entries} entries in feed.atom, {report.archive_pages} archive page(s), "
        f"{report.tags} tag feed(s), {len(report.written)} file(s) written, {report.unchanged} unchanged"
    )


@cli.command()
@click.pass_obj
def serve(app: App) -> None:
    """Serve the feeds and the web pages ([web] host and port)."""
    from newsletter.web.app import serve as serve_web

    web = app.settings.web
    click.echo(f"serving on http://{web.host}:{web.port}/ (feed: http://{web.host}:{web.port}/feed.atom)")
    serve_web(app.settings, app.store)


@cli.group()
def feeds() -> None:
    """Add, list, remove, import and export feeds."""


def _source_options(noun: str) -> Callable[[Command], Command]:
    """The options every way of following a source takes: --name, --tag (repeatable), --interval."""

    def options(command: Command) -> Command:
        command = click.option("--interval", type=click.IntRange(min=1), default=None, help="Minutes between checks.")(
            command
        )
        command = click.option(
            "--tag", "tags", multiple=True, help=f"Tag for every story of this {noun} (repeatable)."
        )(command)
        return click.option("--name", default=None, help="Name shown in listings and the digest.")(command)

    return options


@feeds.command("add")
@click.argument("url")
@_source_options("feed")
@click.option("--pick", type=click.IntRange(min=1), default=None, help="Of several feeds found on a page: the Nth.")
@click.option("--all", "add_all", is_flag=True, help="Of several feeds found on a page: every one.")
@click.option("--no-discover", is_flag=True, help="Follow the URL as given, without fetching it first.")
@click.pass_obj
def feeds_add(
    app: App,
    *,
    url: str,
    name: str | None,
    tags: tuple[str, ...],
    interval: int | None,
    pick: int | None,
    add_all: bool,
    no_discover: bool,
) -> None:
    """Follow a feed (http or https URL); given a site's page, follow the feed it offers."""
    if pick is not None and add_all:
        raise UsageError("--pick and --all do not go together: choose one feed, or every one")
    clean = check_feed_url(url)
    targets = [(clean, {clean})] if no_discover else _discovered_feeds(app, clean, pick=pick, add_all=add_all)
    refused = 0
    for target, aliases in targets:
        try:
            _check_not_followed(app, target, aliases, updating=bool(name or tags or interval))
        except UsageError as exc:
            if len(targets) == 1:
                raise
            click.echo(f"skip   {exc}", err=True)
            refused += 1
            continue
        source, created = app.store.upsert_feed(
            target, name=name, tags=normalize_tags(tags), interval=interval, origin="cli", now=now()
        )
        click.echo(f"{'added' if created else 'updated'} feed #{source.id}: {target}")
    if refused:
        sys.exit(1)


def _discovered_feeds(app: App, url: str, *, pick: int | None, add_all: bool) -> list[tuple[str, set[str]]]:
    """The feeds to follow for ``url`` (each with the addresses it answered from), after asking it what it is."""
    from ingest.discover import USUAL_PATHS, discover

    found = discover(url, app.settings.fetch, now())
    if found.kind == "unreachable":
        if found.outcome == "blocked" or not _transient(found.status):
            raise UsageError(f"{found.error} (--no-discover follows it as given)")
        click.echo(f"warning: could not check it ({found.error}); following {url} as given", err=True)
        return [(url, {url})]
    if found.kind == "other":
        raise UsageError(f"{found.error} (--no-discover follows it as given)")
    feeds = [(f, {f.url, f.final_url}) for f in found.feeds]
    if found.kind == "feed":
        return [(url, {url, *feeds[0][1]})]
    for reason in found.refused:
        click.echo(f"skip   {reason}", err=True)
    if not feeds:
        raise UsageError(
            f'{url}: an HTML page that offers no feed: no <link rel="alternate"> to a feed answered with one, '
            f"nor did {', '.join(USUAL_PATHS)} on its site; give the feed's own URL (or --no-discover)"
        )
    click.echo(f"found {counted(len(feeds), 'feed', 'feeds')} on {url}:")
    for number, (feed, _) in enumerate(feeds, 1):
        click.echo(f"  {number}. {feed.url}" + (f" ({feed.title})" if feed.title else ""))
    if pick is not None and pick > len(feeds):
        raise UsageError(f"--pick {pick}: the page offers {counted(len(feeds), 'feed', 'feeds')}")
    chosen = feeds if add_all else [feeds[(pick or 1) - 1]]
    if len(feeds) > 1 and not add_all and pick is None:
        click.echo("following the first (--pick N follows another, --all every one)")
    return [(check_feed_url(feed.url), aliases) for feed, aliases in chosen]


@cli.group()
def pages() -> None:
    """Add, list and remove live article pages (read like the saved seed pages, on a schedule)."""


@pages.command("add")
@click.argument("url")
@_source_options("page")
@click.pass_obj
def pages_add(app: App, url: str, name: str | None, tags: tuple[str, ...], interval: int | None) -> None:
    """Follow a live article page (http or https URL): its article and rail of teasers, like a saved seed page."""
    from ingest.discover import discover

    clean = check_feed_url(url)
    aliases = {clean}
    found = discover(clean, app.settings.fetch, now(), look_for_feeds=False)
    if found.kind == "feed":
        raise UsageError(f"{clean} is a feed: `newsletter feeds add {clean}` follows it")
    if found.kind == "other" or (
        found.kind == "unreachable" and (found.outcome == "blocked" or not _transient(found.status))
    ):
        raise UsageError(f"{found.error}")
    if found.kind == "unreachable":
        click.echo(f"warning: could not check it ({found.error}); following {clean} as given", err=True)
    elif found.final_url:
        aliases.add(found.final_url)
    _check_not_followed(app, clean, aliases, updating=bool(name or tags or interval))
    source, created = app.store.upsert_feed(
        clean, name=name, tags=normalize_tags(tags), interval=interval, origin="cli", now=now(), kind="page"
    )
    click.echo(f"{'added' if created else 'updated'} page #{source.id}: {clean}")


@pages.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include removed pages.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.pass_obj
def pages_list(app: App, show_all: bool, as_json: bool) -> None:
    """Each live page's status, last fetch, errors and next check."""
    from ingest.run import sync_config_feeds

    sync_config_feeds(app.store, app.settings, now())
    rows = [s for s in app.store.sources(kind="page") if s.url and (show_all or s.status != "removed")]
    _print_sources(rows, "pages", as_json=as_json)


@pages.command("remove")
@click.argument("page")
@click.pass_obj
def pages_remove(app: App, page: str) -> None:
    """Stop following a live page (by id or URL); its stories stay."""
    source = app.store.find_source(page)
    if source is None or source.kind != "page" or source.url is None:
        raise UsageError(f"no live page with id or URL {page!r}; see `newsletter pages list`")
    app.store.remove_feed(source.id)
    note = " (it is in the config file too: remove it there or it comes back)" if source.origin == "config" else ""
    click.echo(f"removed page #{source.id}: {source.location}{note}")


def _transient(status: int | None) -> bool:
    """No answer at all, or a server in trouble: worth following as given, the next checks will tell."""
    return status is None or status >= 500 or status == 429


def _check_not_followed(app: App, target: str, aliases: set[str], *, updating: bool) -> None:
    """Refuse an address another source already reads. The same feed added again stays allowed where it changes
    something: new options, or following a gone or paused feed again."""
    owner = app.store.followed_by({target, *aliases})
    if owner is None:
        return
    if owner.location == target and (updating or owner.status in ("gone", "paused")):
        return
    where = owner.location if owner.kind == "feed" or owner.url is None else owner.url
    raise UsageError(f"{target} is already followed: {owner.kind} #{owner.id} ({where})")


def _feed(app: App, feed: str) -> Source:
    """The feed a command names by id or URL."""
    source = app.store.find_source(feed)
    if source is None or source.kind != "feed":
        raise UsageError(f"no feed with id or URL {feed!r}; see `newsletter feeds list`")
    return source


@feeds.command("remove")
@click.argument("feed")
@click.pass_obj
def feeds_remove(app: App, feed: str) -> None:
    """Stop following a feed (by id or URL); its stories stay."""
    source = _feed(app, feed)
    app.store.remove_feed(source.id)
    note = " (it is in the config file too: remove it there or it comes back)" if source.origin == "config" else ""
    click.echo(f"removed feed #{source.id}: {source.location}{note}")


@feeds.command("move")
@click.argument("feed")
@click.argument("url")
@click.pass_obj
def feeds_move(app: App, feed: str, url: str) -> None:
    """Read a feed (by id or URL) from a new URL from now on, keeping its stories: say where a broken feed went."""
    source = _feed(app, feed)
    clean = check_feed_url(url)
    owner = app.store.followed_by({clean})
    if owner is not None and owner.id != source.id:
        raise UsageError(f"{clean} is already followed: {owner.kind} #{owner.id} ({owner.location})")
    app.store.move_feed(source.id, clean)
    click.echo(f"moved feed #{source.id}: {source.url or source.location} -> {clean} (it is checked at once)")


@feeds.command("resume")
@click.argument("feed")
@click.pass_obj
def feeds_resume(app: App, feed: str) -> None:
    """Follow a paused (or gone) feed again, by id or URL: it is checked at once."""
    source = _feed(app, feed)
    if source.status == "removed":
        raise UsageError(f"feed #{source.id} was removed: `newsletter feeds add {source.location}` follows it again")
    if source.status not in ("paused", "gone"):
        click.echo(f"feed #{source.id} is {source.status}, not paused: nothing to resume ({source.location})")
        return
    app.store.resume_feed(source.id)
    click.echo(f"resumed feed #{source.id}: {source.location} (it was {source.status}; it is checked at once)")


@feeds.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include removed feeds.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.pass_obj
def feeds_list(app: App, show_all: bool, as_json: bool) -> None:
    """Each feed's status, last fetch, errors and next check."""
    from ingest.run import sync_config_feeds

    sync_config_feeds(app.store, app.settings, now())
    rows = [s for s in app.store.sources(kind="feed") if show_all or s.status != "removed"]
    _print_sources(rows, "feeds", as_json=as_json)


def _print_sources(rows: Sequence[Source], noun: str, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([_feed_json(s) for s in rows], indent=2, ensure_ascii=False))
        return
    table = new_table(f"{len(rows)} {noun}")
    for col in ("id", noun[:-1], "status", "last fetch", "HTTP", "entries", "errors", "last error", "next check"):
        table.add_column(col, justify="right" if col in ("id", "HTTP", "entries", "errors") else "left")
    for s in rows:
        feed = (s.name + "\n" if s.name else "") + s.location
        if s.url and s.url != s.location:
            feed += f"\n→ moved to {s.url}"
        table.add_row(
            str(s.id),
            feed,
            s.status,
            _when(s.last_fetch_at),
            str(s.last_status or "-"),
            str(s.sightings),
            str(s.error_count),
            s.last_error or (f"warning: {s.warning}" if s.warning else ""),
            _next_check(s),
        )
    out().print(table)
    _print_moved(rows)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _next_check(s: Source) -> str:
    return f"never ({s.status})" if s.status in ("gone", "paused") else _when(s.next_check_at)


def _feed_json(s: Source) -> dict[str, Any]:
    return {
        "id": s.id,
        "url": s.location,
        "current_url": s.url or s.location,
        "name": s.name,
        "tags": list(s.tags),
        "status": s.status,
        "origin": s.origin,
        "last_fetch": s.last_fetch_at.isoformat() if s.last_fetch_at else None,
        "last_success": s.last_success_at.isoformat() if s.last_success_at else None,
        "last_status": s.last_status,
        "entries": s.sightings,
        "error_count": s.error_count,
        "last_error": s.last_error,
        "warning": s.warning,
        "next_check": s.next_check_at.isoformat() if s.next_check_at else None,
        "suggested_url": s.suggested_url,
    }


def _print_moved(sources: Sequence[Source]) -> None:
    """Below the table, whole: a URL wrapped inside a cell could not be copied."""
    for s in sources:
        if s.suggested_url:
            click.echo(
                f"{s.kind} #{s.id} {s.location}: moved? try {s.suggested_url} (`newsletter feeds move {s.id} URL`)"
            )


@feeds.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def feeds_import(app: App, file: Path) -> None:
    """Follow every feed of an OPML file."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"{file}: cannot read the file: {exc.strerror}") from None
    from ingest.opml import read_opml

    added = updated = refused = 0
    for feed in read_opml(data, name=str(file)):
        try:
            clean = check_feed_url(feed.url)
        except UsageError as exc:
            click.echo(f"skip   {exc}", err=True)
            refused += 1
            continue
        source, created = app.store.upsert_feed(
            clean, name=feed.title, tags=feed.tags, interval=None, origin="opml", now=now()
        )
        added += created
        updated += not created
        click.echo(f"{'added ' if created else 'exists'} #{source.id}: {clean}")
    click.echo(f"imported {file}: {added} added, {updated} already followed, {refused} refused")
    if refused:
        sys.exit(1)


@feeds.command("export")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None, help="File to write.")
@click.pass_obj
def feeds_export(app: App, output: Path | None) -> None:
    """Write the followed feeds as OPML 2.0."""
    from ingest.opml import OpmlFeed, write_opml
    from ingest.run import sync_config_feeds

    sync_config_feeds(app.store, app.settings, now())
    rows = [s for s in app.store.sources(kind="feed") if s.status != "removed"]
    data = write_opml(
        [OpmlFeed(url=s.url or s.location, title=s.name, tags=s.tags) for s in rows],
        title=app.settings.publish.title,
        now=now(),
    )
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        output.write_bytes(data)
        click.echo(f"wrote {len(rows)} feed(s) to {output}")


@cli.group()
def subscribers() -> None:
    """Add, list, remove and import digest subscribers; set their topics and cadence."""


_TOPIC = click.option("--topic", "topics", multiple=True, help="A topic (slug; repeat for more): only these stories.")
_CADENCE = click.option("--cadence", default=None, help="weekly or daily (daily needs [digest] daily_send_at).")


@subscribers.command("add")
@click.argument("emails", nargs=-1, required=True)
@_TOPIC
@_CADENCE
@click.pass_obj
def subscribers_add(app: App, emails: tuple[str, ...], topics: tuple[str, ...], cadence: str | None) -> None:
    """Subscribe addresses (confirmed at once: the operator vouches), with their topics (none: every story) and
    cadence (weekly unless --cadence daily)."""
    from newsletter.subscribers import manage as subs

    chosen = subs.check_topics(topics, app.taxonomy.slugs) or None
    often = subs.check_cadence(cadence, app.settings) if cadence is not None else None
    bad = 0
    for email in emails:
        try:
            click.echo(subs.add(app.store, email, now(), topics=chosen, cadence=often).message)
        except AddressError as exc:
            click.echo(f"error: {exc}", err=True)
            bad += 1
    if bad:
        sys.exit(EXIT_USER_ERROR if bad == len(emails) else 1)


@subscribers.command("set")
@click.argument("email")
@_TOPIC
@click.option("--all-topics", is_flag=True, help="Every topic (forget the chosen ones).")
@_CADENCE
@click.pass_obj
def subscribers_set(app: App, email: str, topics: tuple[str, ...], all_topics: bool, cadence: str | None) -> None:
    """Change a subscriber's topics (--topic, or --all-topics) and/or cadence (--cadence weekly|daily). A switch of
    cadence neither repeats nor skips a story: their next digest starts where their last one ended."""
    from newsletter.subscribers import manage as subs

    if topics and all_topics:
        raise UsageError("give --topic (one or more) or --all-topics, not both")
    if not (topics or all_topics or cadence):
        raise UsageError("give --topic (one or more), --all-topics, or --cadence")
    chosen = subs.check_topics(topics, app.taxonomy.slugs)
    often = subs.check_cadence(cadence, app.settings) if cadence is not None else None
    found = subs.set_cadence(app.store, email, often) if often is not None else None
    if topics or all_topics:
        found = subs.set_topics(app.store, email, chosen)
    if found is None:
        raise UsageError(f"no subscriber {email!r}; see `newsletter subscribers list`")
    click.echo(f"{found.email}: {subs.describe(found)}")


@subscribers.command("remove")
@click.argument("email")
@click.pass_obj
def subscribers_remove(app: App, email: str) -> None:
    """Unsubscribe an address (it is kept, marked unsubscribed)."""
    from newsletter.subscribers import manage as subs

    found = subs.remove(app.store, email, now())
    if found is None:
        raise UsageError(f"no subscriber {email!r}; see `newsletter subscribers list`")
    click.echo(f"unsubscribed {found.email}")


@subscribers.command("list")
@click.option("--status", type=click.Choice(get_args(SubscriberStatus)), default=None, help="Only these.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.pass_obj
def subscribers_list(app: App, status: SubscriberStatus | None, as_json: bool) -> None:
    """List subscribers with their status."""
    from newsletter.subscribers import manage as subs

    rows = subs.list_subscribers(app.store, status)
    if as_json:
        data = [
            {
                "email": r.email,
                "status": r.status,
                "created": r.created_at.isoformat(),
                "confirmed": r.confirmed_at.isoformat() if r.confirmed_at else None,
                "bounces": r.bounces,
                "soft_bounces": r.soft_bounces,
                "topics": list(r.topics),
                "cadence": r.cadence,
            }
            for r in rows
        ]
        click.echo(json.dumps(data, indent=2))
        return
    table = new_table(f"{len(rows)} subscriber(s)")
    for col in ("email", "status", "since", "confirmed", "bounces", "soft bounces", "topics", "cadence"):
        table.add_column(col)
    for r in rows:
        cells = (r.email, r.status, _when(r.created_at), _when(r.confirmed_at), str(r.bounces), str(r.soft_bounces))
        table.add_row(*cells, ", ".join(r.topics) or "all", r.cadence)
    out().print(table)


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def subscribers_import(app: App, file: Path) -> None:
    """Subscribe every address of a CSV file (an email column; optional topics and cadence columns)."""
    from newsletter.subscribers import manage as subs

    report = subs.import_csv(app.store, file, now(), known_topics=app.taxonomy.slugs, settings=app.settings)
    for line in report.lines:
        click.echo(line.message, err=line.outcome == "invalid")
    counts = ", ".join(f"{report.count(o)} {o}" for o in ("added", "confirmed", "resubscribed", "exists", "refused"))
    click.echo(f"imported {file}: {counts}, {report.invalid} invalid")
    if report.invalid:
        sys.exit(1)


@cli.group()
def digest() -> None:
    """Preview, send and test the weekly email digest."""


@digest.command("preview")
@click.option("--period", default=None, help="ISO week, e.g. 2026-W48 (default: the one due next).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None, help="Folder.")
@click.option(
    "--as", "as_email", default=None, metavar="EMAIL", help="A subscriber (default: the first confirmed one)."
)
@click.pass_obj
def digest_preview(app: App, period: str | None, out_dir: Path | None, as_email: str | None) -> None:
    """Write exactly what one subscriber would be sent (.eml, .html, .txt); send nothing."""
    from newsletter.digest import job

    target = out_dir or app.settings.mail.outbox_dir.parent / "preview"
    names = app.taxonomy.names
    p = job.preview(app.store, app.settings, now(), target, period=period, as_email=as_email, topic_names=names)
    state = "as sent" if p.stored else "as it would be sent now"
    stories = counted(p.stories, "story", "stories")
    click.echo(f"digest {p.period} ({state}) for {p.address}: {p.subject!r}, {stories}")
    for path in (p.eml, p.html, p.text):
        click.echo(f"wrote  {path}")


@digest.command("send")
@click.pass_obj
def digest_send(app: App) -> None:
    """Build and deliver the due digest (and retries due)."""
    from newsletter.digest import job

    for warning in job.mail_warnings(app.settings):
        click.echo(f"warning: {warning}", err=True)
    r = job.send_due_digest(app.store, app.settings, now(), topic_names=app.taxonomy.names)
    click.echo(_digest_line(r))
    if r.error:
        click.echo(f"error: {r.error}", err=True)
        sys.exit(1)
    if r.paused:
        click.echo(f"stopped: {r.paused}", err=True)
        sys.exit(1)


def _digest_line(r: DigestReport) -> str:
    """One line for the weekly digest (with every delivery run's counts), and one for the daily digest if any."""
    line = f"digest {r.period}: {r.status}, {counted(r.stories, 'story', 'stories')}, {r.sent} sent, {r.failed} failed"
    if r.retry_at:
        line += f", retries from {_when(r.retry_at)}"
    if r.note:
        line += f" ({r.note})"
    if r.daily is not None:
        d = r.daily
        line += f"\ndaily digest {d.period}: {d.status}, {counted(d.stories, 'story', 'stories')}, {d.sent} sent"
        line += f" ({d.note})" if d.note else ""
    return line


@cli.command()
@click.pass_obj
def inbound(app: App) -> None:
    """Read mail that came back ([inbound]): bounces, complaints, unsubscribes."""
    from newsletter.inbound.apply import read_inbound

    if app.settings.inbound.source == "none":
        raise UsageError("[inbound] source is 'none': set it to 'maildir' or 'imap' to read mail that comes back")
    try:
        report = read_inbound(app.store, app.settings, now())
    except MailboxError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for applied in report.applied:
        click.echo(applied.line)
    counts = report.counts()
    summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing new"
    click.echo(f"inbound {report.mailbox}: {len(report.applied)} message(s): {summary}")


@digest.command("test-send")
@click.argument("email")
@click.option("--period", default=None, help="ISO week, e.g. 2026-W48 (default: the one due next).")
@click.pass_obj
def digest_test_send(app: App, email: str, period: str | None) -> None:
    """Send the current preview to one address."""
    from newsletter.digest import job

    result = job.send_test(app.store, app.settings, email, now(), period=period, topic_names=app.taxonomy.names)
    click.echo(f"test digest to {email}: {result.status} {result.reply or ''}".rstrip())
    if result.status != "sent":
        sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="newsletter", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except NewsletterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
