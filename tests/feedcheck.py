"""The rules the W3C Feed Validation Service checks on an Atom document, for the errors and warnings our feeds could
trip: :func:`atom_problems` returns one line per problem, in the validator's words.

The validator itself (feedvalidator) is not on PyPI, so it cannot be installed here; these are its checks as its
source states them: ``feed.validate_metadata`` (feed id, title, updated, a ``rel=self`` link, link (rel, type,
hreflang) unique), ``entry.validate`` (title, id, updated and an author on each entry unless the feed has one;
content or summary, else an alternate link; one alternate link per type), ``entry.do_id`` (``DuplicateEntries``),
``entry.do_updated`` (``DuplicateUpdated``: "Two entries with the same value for atom:updated", compared as
written), ``validators.rfc3339`` (the date grammar, ``ImplausibleDate`` before 1970 or after tomorrow), ``author``
(a name), and RFC 6721's ``at:deleted-entry`` (``ref`` and a valid ``when``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime, timedelta

ATOM = "{http://www.w3.org/2005/Atom}"
TOMBSTONES = "{http://purl.org/atompub/tombstones/1.0}"
#: feedvalidator's validators.rfc3339.
RFC3339 = re.compile(r"^\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*)?(Z|([+-]\d\d:\d\d))$")

__all__ = ["ATOM", "TOMBSTONES", "atom_problems"]


def _date(where: str, value: str | None, now: datetime, problems: list[str]) -> None:
    if value is None or not RFC3339.match(value):
        problems.append(f"{where}: InvalidRFC3339Date {value!r}")
        return
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"{where}: InvalidRFC3339Date {value!r}")
        return
    if moment.year < 1970 or moment > now + timedelta(days=1):
        problems.append(f"{where}: ImplausibleDate {value!r}")


def _once(element: ET.Element, name: str, where: str, problems: list[str]) -> ET.Element | None:
    found = element.findall(f"{ATOM}{name}")
    if not found:
        problems.append(f"{where}: MissingElement {name}")
        return None
    if len(found) > 1:
        problems.append(f"{where}: DuplicateElement {name}")
    return found[0]


def _authors_named(element: ET.Element, where: str, problems: list[str]) -> bool:
    authors = element.findall(f"{ATOM}author")
    for author in authors:
        if not (author.findtext(f"{ATOM}name") or "").strip():
            problems.append(f"{where}: MissingElement author/name")
    return bool(authors)


def _links(element: ET.Element, where: str, problems: list[str], *, alternates_only: bool) -> list[ET.Element]:
    links = element.findall(f"{ATOM}link")
    seen: Counter[tuple[str, str | None, str | None]] = Counter()
    for link in links:
        rel = link.get("rel") or "alternate"
        if alternates_only and rel != "alternate":
            continue
        seen[(rel, link.get("type"), link.get("hreflang"))] += 1
    problems.extend(f"{where}: DuplicateAtomLink rel={rel} type={kind}" for (rel, kind, _), n in seen.items() if n > 1)
    return links


def atom_problems(document: bytes, now: datetime) -> list[str]:
    """Every problem the validator would report (error or warning) for ``document``, fetched at ``now``."""
    root = ET.fromstring(document)
    problems: list[str] = []
    if root.tag != f"{ATOM}feed":
        return [f"not an Atom feed: <{root.tag}>"]
    for name in ("id", "title"):
        _once(root, name, "feed", problems)
    updated = _once(root, "updated", "feed", problems)
    if updated is not None:
        _date("feed/updated", updated.text, now, problems)
    links = _links(root, "feed", problems, alternates_only=False)
    if not any(link.get("rel") == "self" for link in links):
        problems.append("feed: MissingSelf")
    feed_author = _authors_named(root, "feed", problems)
    ids: Counter[str] = Counter()
    stamps: Counter[str] = Counter()
    for n, entry in enumerate(root.findall(f"{ATOM}entry"), start=1):
        where = f"entry {n}"
        _once(entry, "title", where, problems)
        ident = _once(entry, "id", where, problems)
        if ident is not None:
            ids[(ident.text or "").strip()] += 1
        stamp = _once(entry, "updated", where, problems)
        if stamp is not None:
            _date(f"{where}/updated", stamp.text, now, problems)
            stamps[stamp.text or ""] += 1
        for published in entry.findall(f"{ATOM}published"):
            _date(f"{where}/published", published.text, now, problems)
        if not _authors_named(entry, where, problems) and not feed_author:
            problems.append(f"{where}: MissingElement author")
        alternates = [
            link for link in _links(entry, where, problems, alternates_only=True) if link.get("rel") == "alternate"
        ]
        has_text = entry.find(f"{ATOM}content") is not None or entry.find(f"{ATOM}summary") is not None
        if not has_text and not alternates:
            problems.append(f"{where}: MissingContentOrAlternate")
    problems.extend(f"DuplicateEntries: {n} entries with id {value}" for value, n in ids.items() if n > 1)
    problems.extend(
        f"DuplicateUpdated: {n} entries with the same value for atom:updated {value}"
        for value, n in stamps.items()
        if n > 1
    )
    for n, gone in enumerate(root.findall(f"{TOMBSTONES}deleted-entry"), start=1):
        if not gone.get("ref"):
            problems.append(f"deleted-entry {n}: MissingAttribute ref")
        _date(f"deleted-entry {n}/when", gone.get("when"), now, problems)
    return problems
