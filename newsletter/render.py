"""Templates: the one jinja2 Environment over ``templates/`` (autoescape, StrictUndefined). Only home of jinja2.

Templates are presentation only: no queries and no date maths. Dates reach them as datetimes and leave through the
filters below (formatted here, in Python), or as strings the caller formatted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from ingest.core.config import PROJECT_ROOT
from ingest.core.text import counted, html_datetime

TEMPLATES = PROJECT_ROOT / "templates"

__all__ = ["TEMPLATES", "environment", "fmt_date", "iso_date", "render"]


def fmt_date(value: datetime | None, style: str = "day") -> str:
    """A date for people, in UTC: ``27 Nov 2026`` (``day``) or ``27 Nov 2026, 10:00 UTC`` (``minute``).

    Built without ``%-d`` (not portable) and without the locale (a server's locale must not change our pages).
    """
    if value is None:
        return ""
    when = value.astimezone(UTC) if value.tzinfo else value
    day = f"{when.day} {_MONTHS[when.month - 1]} {when.year}"
    if style == "minute":
        return f"{day}, {when:%H:%M} UTC"
    return day


def iso_date(value: datetime | None) -> str:
    """RFC 3339 in UTC, for ``<time datetime=...>`` (at most milliseconds: see :func:`html_datetime`)."""
    if value is None:
        return ""
    return html_datetime(value.astimezone(UTC) if value.tzinfo else value)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@cache
def environment() -> Environment:
    """The shared Environment. ``.html`` and ``.xml`` are autoescaped; ``.txt`` (email text parts) is not."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml"), default_for_string=True, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt_date"] = fmt_date
    env.filters["iso_date"] = iso_date
    env.filters["counted"] = counted  # {{ n|counted("story", "stories") }}: "1 story", "2 stories"
    return env


def render(name: str, /, **context: Any) -> str:
    """Render ``templates/<name>`` with ``context``. A missing variable raises (StrictUndefined), never prints ''."""
    return environment().get_template(name).render(**context)
