"""Plain data passed between the stages: no I/O, no database, no network."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable, NamedTuple


@dataclass(frozen=True)
class FetchResult:
    """What fetch hands to parse: the bytes and the headers that matter, or 'not modified'."""

    url: str                      # the final URL after redirects
    status: int
    body: bytes
    content_type: str
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False


@dataclass(frozen=True)
class Article:
    """One item of a feed or page, normalised: text fields are plain text, times are UTC."""

    url: str
    title: str
    summary: str = ""
    body: str = ""
    guid: str | None = None
    published: datetime | None = None
    author: str = ""

    @property
    def is_empty(self) -> bool:
        """Nothing to identify or match it by (an item with only an author is not news)."""
        return not (self.url or self.guid or self.title or self.summary or self.body)


@dataclass(frozen=True)
class Hit:
    """One occurrence of a term in a field of an article."""

    term: str                     # the term as the rule wrote it
    actor: str | None             # the actor whose alias it is, if any
    field: str                    # title | summary | body
    start: int
    end: int
    implied: bool = False         # the actor is implied by this context word, not named


def mark_spans(snippet: str, marks: Iterable[tuple[int, int]],
               escape: Callable[[str], str] = str, before: str = "**", after: str = "**"
               ) -> str:
    """A snippet with each hit span wrapped in markers; `escape` is applied to the text (not
    to the markers), for the format the snippet is written into (HTML, markdown)."""
    out, last = [], 0
    for start, end in marks:
        out += [escape(snippet[last:start]), before, escape(snippet[start:end]), after]
        last = end
    out.append(escape(snippet[last:]))
    return "".join(out)


@dataclass(frozen=True)
class Match:
    """A rule that matched an article, with the evidence for it."""

    rule_id: str
    rule_title: str
    hits: tuple[Hit, ...]
    snippet: str                  # the sentence or paragraph that satisfied the rule
    marks: tuple[tuple[int, int], ...] = ()   # hit spans inside the snippet
    field: str = "body"
    score: float | None = None    # meaning-level matches: similarity to the nearest example
    nearest: str = ""             # ... and that example

    @property
    def terms(self) -> list[str]:
        return sorted({hit.term for hit in self.hits})

    def reasons(self) -> list[str]:
        """What an alert says beyond the terms: implied actors and meaning-level scores."""
        out = sorted({f"{hit.actor} — implied by '{hit.term}'"
                      for hit in self.hits if hit.implied and hit.actor})
        if self.score is not None:
            out.append(f"meaning: {self.score:.3f} similar to the example '{self.nearest}'")
        return out

    @property
    def actors(self) -> list[str]:
        return sorted({hit.actor for hit in self.hits if hit.actor})

    @property
    def fields(self) -> list[str]:
        return sorted({hit.field for hit in self.hits})

    def marked_snippet(self, before: str = "**", after: str = "**") -> str:
        """The snippet with each hit wrapped in markers."""
        return mark_spans(self.snippet, self.marks, before=before, after=after)


class Matched(NamedTuple):
    """A rule that matched an article, as stored: its id, its title and the JSON of why
    (prepare.explanation). Plain values, so a match worker's results cross to the daemon
    cheaply: a Match with its hits cost the daemon more to unpickle than to store."""

    rule_id: str
    rule_title: str
    explanation: str


@dataclass
class Alert:
    """What a channel sends: one rule matched one story, for one subscriber."""

    delivery_id: str
    rule_id: str
    rule_title: str
    article_url: str
    article_title: str
    source_id: str
    published: datetime | None
    summary: str
    terms: list[str]
    actors: list[str]
    fields: list[str]
    snippet: str
    marks: list[tuple[int, int]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)   # implied actors, meaning-level scores
    score: float | None = None
    also_reported_by: list[dict[str, str]] = field(default_factory=list)
    subscriber: str = ""
    created_at: datetime | None = None
