"""Oncology topics from the words of a story: the taxonomy (``config/topics.toml``) and the tagger. Pure.

A topic is marked by terms (any case, whole words, a trailing plural allowed), abbreviations (exact case, whole
words: "ALL" the leukemia, never "all") and drug-name stems (the USAN/INN stems: a word ending in "-tinib" is a
kinase inhibitor, "-ciclib" a CDK inhibitor), which keep a new drug from being missed. Word boundaries are letters
and digits: a hyphen or a slash ends a word, so
"HER2-positive" holds "HER2" and "CDK4/6" is one abbreviation. Abbreviations that are also English words
(``ambiguous``) are ignored in a text written all in capitals, where case tells nothing, and as the first word of a
title or blurb, where capitals are emphasis ("ALL Patients Deserve Testing"). An ``exclude`` term present
in the text cancels the topic ("breastfeeding" is not breast cancer).
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

from ingest.core.config import TopicsConfig
from ingest.core.errors import ConfigError
from ingest.core.models import ParsedItem

__all__ = ["Taxonomy", "Topic", "TopicKind", "load_taxonomy", "tag_items", "taxonomy_of"]

TopicKind = Literal["site", "cross"]
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# Quotes and dashes that NFKC leaves alone: matched as their plain forms ("non–small cell" is "non-small cell").
_FOLD = str.maketrans({**dict.fromkeys("‐‑‒–—―−", "-"), **dict.fromkeys("‘’", "'")})


@dataclass(frozen=True, slots=True)
class Topic:
    slug: str  # its URL and feed name
    name: str
    kind: TopicKind
    terms: tuple[str, ...] = ()
    abbreviations: tuple[str, ...] = ()
    ambiguous: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    stems: tuple[str, ...] = ()


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_FOLD)


def _alternation(words: Iterable[str], *, plural: bool) -> str:
    # Longest first, so "small cell lung" is tried before "lung"; spaces match any run of white space.
    ordered = sorted({_fold(w).strip() for w in words if w.strip()}, key=len, reverse=True)
    parts = [r"\s+".join(re.escape(piece) for piece in word.split()) for word in ordered]
    suffix = r"(?:e?s)?" if plural else ""
    return rf"(?<![^\W_])(?:{'|'.join(parts)}){suffix}(?![^\W_])"


def _stems(stems: Iterable[str]) -> str:
    """Words ending in one of ``stems``, with at least three letters before it ("-mab" must not match "mab")."""
    ordered = sorted({s.strip().lower() for s in stems if s.strip()}, key=len, reverse=True)
    return rf"(?<![^\W_])[a-z]{{3,}}(?:{'|'.join(map(re.escape, ordered))})(?![^\W_])"


@dataclass
class _Compiled:
    topic: Topic
    terms: re.Pattern[str] | None
    stems: re.Pattern[str] | None
    plain: re.Pattern[str] | None  # abbreviations that stay meaningful in an all-capitals text
    ambiguous: re.Pattern[str] | None  # the others: counted only where they cannot be emphasis
    exclude: re.Pattern[str] | None
    # Gates (see Taxonomy.tag): a pattern can match only a text holding one of these words (lower case), or, for the
    # stems, a word ending in one of them. None: no gate (a term with no letter or digit).
    terms_first: frozenset[str] | None = None
    plain_first: frozenset[str] | None = None
    ambiguous_first: frozenset[str] | None = None
    stem_ends: tuple[str, ...] = ()


_WORD = re.compile(r"[^\W_]+")


def _first_words(words: Iterable[str]) -> frozenset[str] | None:
    """The first word (lower case) of each of ``words``: a text the pattern matches holds one of them as a word."""
    firsts = set()
    for w in words:
        found = _WORD.search(_fold(w).lower())
        if found is None or found.start() > 0:  # a term opening with punctuation: no gate
            return None
        firsts.add(found.group())
    return frozenset(firsts)


def _text_words(text: str) -> set[str] | None:
    """The words of an ASCII text, lower case, each also without a trailing plural "s" or "es" (terms match plurals);
    None for any other text: lower() and the patterns' IGNORECASE agree letter for letter only in ASCII."""
    if not text.isascii():
        return None
    words = set(_WORD.findall(text.lower()))
    words.update([w[:-1] for w in words if w.endswith("s")] + [w[:-2] for w in words if w.endswith("es")])
    return words


@dataclass
class Taxonomy:
    """The topics, compiled once; :meth:`tag` is what ingest and ``stories retag`` call."""

    topics: tuple[Topic, ...]
    _compiled: list[_Compiled] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._compiled = [
            _Compiled(
                topic=t,
                terms=re.compile(_alternation(t.terms, plural=True), re.IGNORECASE) if t.terms else None,
                stems=re.compile(_stems(t.stems), re.IGNORECASE) if t.stems else None,
                plain=re.compile(_alternation(set(t.abbreviations) - set(t.ambiguous), plural=False))
                if set(t.abbreviations) - set(t.ambiguous)
                else None,
                ambiguous=re.compile(_alternation(t.ambiguous, plural=False)) if t.ambiguous else None,
                exclude=re.compile(_alternation(t.exclude, plural=False), re.IGNORECASE) if t.exclude else None,
                terms_first=_first_words(t.terms),
                plain_first=_first_words(set(t.abbreviations) - set(t.ambiguous)),
                ambiguous_first=_first_words(t.ambiguous),
                stem_ends=tuple(sorted({x.strip().lower() for x in t.stems if x.strip()})),
            )
            for t in self.topics
        ]

    @property
    def slugs(self) -> tuple[str, ...]:
        return tuple(t.slug for t in self.topics)

    @property
    def names(self) -> dict[str, str]:
        """Each topic's name by slug, in taxonomy order: what publishing and the digest are handed."""
        return {t.slug: t.name for t in self.topics}

    def get(self, slug: str) -> Topic | None:
        return next((t for t in self.topics if t.slug == slug), None)

    def tag(self, texts: Iterable[str]) -> tuple[str, ...]:
        """The topics of a story, in taxonomy order, from its title and blurbs."""
        parts = [_fold(t).strip() for t in texts if t and t.strip()]
        text = "\n".join(parts)
        shouting = not any(c.islower() for c in text)
        # Each pattern tries every position of the text (a story's blurbs run to kilobytes; tagging was two thirds of
        # a first ingest pass): a set of the text's words tells first which patterns could match at all.
        words = _text_words(text)

        def could(first: frozenset[str] | None) -> bool:
            return words is None or first is None or not first.isdisjoint(words)

        def could_stem(ends: tuple[str, ...]) -> bool:
            return words is None or any(w.endswith(ends) for w in words)

        found = []
        for c in self._compiled:
            hit = (
                (c.terms is not None and could(c.terms_first) and c.terms.search(text))
                or (c.stems is not None and could_stem(c.stem_ends) and c.stems.search(text))
                or (c.plain is not None and could(c.plain_first) and c.plain.search(text))
                or (
                    not shouting and c.ambiguous is not None and could(c.ambiguous_first) and _inside(c.ambiguous, text)
                )
            )
            if hit and not (c.exclude is not None and c.exclude.search(text)):
                found.append(c.topic.slug)
        return tuple(found)

    def with_terms(self, extra: Mapping[str, Sequence[str]]) -> Taxonomy:
        """This taxonomy with more terms for some topics (the config's ``[topics] terms``)."""
        unknown = sorted(set(extra) - set(self.slugs))
        if unknown:
            raise ConfigError(f"[topics] terms: unknown topic {unknown[0]!r}; expected one of: {', '.join(self.slugs)}")
        return Taxonomy(
            tuple(
                Topic(
                    t.slug,
                    t.name,
                    t.kind,
                    (*t.terms, *extra.get(t.slug, ())),
                    t.abbreviations,
                    t.ambiguous,
                    t.exclude,
                    t.stems,
                )
                for t in self.topics
            )
        )


def _inside(pattern: re.Pattern[str], text: str) -> bool:
    """A match that does not open a line (a title or blurb), where a capitalised word may be emphasis."""
    return any(m.start() > 0 and text[m.start() - 1] != "\n" for m in pattern.finditer(text))


def load_taxonomy(path: Path) -> Taxonomy:
    """Read a taxonomy file; a mistake is a :class:`ConfigError` naming the file, the topic and what was expected."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: topic taxonomy not found ([topics] file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the topic taxonomy: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    entries = data.get("topic")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected [[topic]] tables (slug, name, kind, terms, abbreviations)")
    topics: list[Topic] = []
    for n, entry in enumerate(entries, start=1):
        topics.append(_topic(path, n, entry))
    slugs = [t.slug for t in topics]
    if dup := sorted({s for s in slugs if slugs.count(s) > 1}):
        raise ConfigError(f"{path}: topic {dup[0]!r} is defined twice")
    return Taxonomy(tuple(topics))


def _topic(path: Path, n: int, entry: Any) -> Topic:
    where = f"{path}: [[topic]] #{n}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {"slug", "name", "kind", "terms", "abbreviations", "ambiguous", "exclude", "stems"}
    if extra := sorted(set(entry) - known):
        raise ConfigError(f"{where}: unknown key {extra[0]!r}; expected one of: {', '.join(sorted(known))}")
    slug = entry.get("slug")
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise ConfigError(f"{where}: slug: expected lower-case letters, digits and hyphens, got {slug!r}")
    where = f"{path}: topic {slug!r}"
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: name: expected a non-empty string")
    kind = entry.get("kind", "site")
    if kind not in ("site", "cross"):
        raise ConfigError(f"{where}: kind: expected 'site' or 'cross', got {kind!r}")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("terms", "abbreviations", "ambiguous", "exclude", "stems"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(f"{where}: {key}: expected a list of non-empty strings")
        lists[key] = tuple(v.strip() for v in value)
    if not lists["terms"] and not lists["abbreviations"] and not lists["stems"]:
        raise ConfigError(f"{where}: expected at least one term, abbreviation or stem")
    if stray := sorted(set(lists["ambiguous"]) - set(lists["abbreviations"])):
        raise ConfigError(f"{where}: ambiguous: {stray[0]!r} is not one of its abbreviations")
    return Topic(
        slug,
        name.strip(),
        kind,
        lists["terms"],
        lists["abbreviations"],
        lists["ambiguous"],
        lists["exclude"],
        lists["stems"],
    )


def taxonomy_of(config: TopicsConfig) -> Taxonomy:
    """The taxonomy the config names, with its extra terms; loaded once per process. A :class:`ConfigError` for a bad
    file or an unknown slug: the CLI and the service load it at start."""
    return _taxonomy(config.path, tuple(sorted((k, tuple(v)) for k, v in config.terms.items())))


@cache
def _taxonomy(path: Path, terms: tuple[tuple[str, tuple[str, ...]], ...]) -> Taxonomy:
    taxonomy = load_taxonomy(path)
    return taxonomy.with_terms(dict(terms)) if terms else taxonomy


def tag_items(items: Iterable[ParsedItem], taxonomy: Taxonomy) -> list[ParsedItem]:
    """The items with their topics, from each one's title and summary."""
    return [replace(item, topics=taxonomy.tag((item.title, item.summary))) for item in items]
