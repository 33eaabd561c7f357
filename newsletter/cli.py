"""The ``newsletter`` command line: parses arguments, reads the clock, prints tables. No business logic here.

A user mistake (bad config, bad argument, unusable database) prints one clear message and exits 2, no traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ingest.config import Settings, default_config_path, load_settings
from ingest.errors import NewsletterError
from ingest.models import Story
from ingest.pipeline import SourceReport, ingest_seeds, summarize
from ingest.store import Store

EXIT_USER_ERROR = 2


class App:
    """What every command needs: the settings, loaded once, and the store, opened on first use."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None
        self._store: Store | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.settings.storage.url)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def now() -> datetime:
    return datetime.now(UTC)


def out() -> Console:
    return Console(soft_wrap=not sys.stdout.isatty())


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
    app = App(config_path or default_config_path())
    ctx.obj = app
    ctx.call_on_close(app.close)


@cli.command()
@click.pass_obj
def ingest(app: App) -> None:
    """Read the seed folders into the store, a line per source."""
    reports = ingest_seeds(app.store, app.settings.seeds, now())
    _print_reports(reports)
    if any(r.error for r in reports):
        sys.exit(1)


def _print_reports(reports: Sequence[SourceReport]) -> None:
    for r in reports:
        if r.error:
            click.echo(f"error  {r.error}", err=True)
            continue
        state = "unchanged" if r.unchanged else f"{r.new} new, {r.seen} seen again"
        click.echo(f"ok     {r.location}: {state}")
        if r.warning and not r.unchanged:
            click.echo(f"warn   {r.warning}", err=True)
    s = summarize(reports)
    click.echo(
        f"ingested {s['sources']} source(s): {s['new']} new sighting(s), {s['new_stories']} new story(ies), "
        f"{s['unchanged']} unchanged, {s['errors']} error(s)"
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many stories.")
@click.pass_obj
def stories(app: App, as_json: bool, limit: int | None) -> None:
    """List stories, newest first."""
    items = app.store.stories(limit=limit)
    if as_json:
        click.echo(json.dumps([story_json(s) for s in items], indent=2, ensure_ascii=False))
        return
    _stories_table(items)


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
    }


def _stories_table(items: Sequence[Story]) -> None:
    table = Table(title=f"{len(items)} stories, newest first")
    table.add_column("id", justify="right")
    table.add_column("published")
    table.add_column("title")
    table.add_column("seen", justify="right")
    table.add_column("tags")
    for s in items:
        table.add_row(
            str(s.id),
            s.published.date().isoformat() if s.published else "-",
            s.title,
            str(s.sightings),
            ", ".join(s.tags),
        )
    out().print(table)


@cli.command()
@click.pass_obj
def run(app: App) -> None:
    """Run the main job: ingest, then list the stories."""
    reports = ingest_seeds(app.store, app.settings.seeds, now())
    _print_reports(reports)
    _stories_table(app.store.stories())


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
