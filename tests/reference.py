"""A plain, obviously-correct rule evaluator: str.find per spelling, brute-force scopes.

Slow on purpose and sharing nothing with the engine's automaton, term index or sliding window;
the engine must agree with it on every article.
"""

from __future__ import annotations

import re
from datetime import datetime

from monitor.match import _SENTENCE_END, fold, normalize, strip_marks, variants
from monitor.models import Article
from monitor.rules import FIELDS, GroupDef, RuleDef, RuleSet, TermDef

Hit = tuple[str, int, int]   # field, start, end


def occurrences(term: TermDef, text: str) -> set[tuple[int, int]]:
    if term.kind == "regex":
        flags = 0 if term.case_sensitive else re.IGNORECASE
        return {(m.start(), m.end()) for m in re.finditer(term.text, text, flags)
                if m.end() > m.start()}
    hay = fold(text)
    if term.fold_diacritics:
        hay = strip_marks(hay)
    found = set()
    for spelling in variants(term):
        needle = fold(spelling)
        if term.fold_diacritics:
            needle = strip_marks(needle)
        start = hay.find(needle)
        while needle and start != -1:
            end = start + len(needle)
            before_ok = start == 0 or not hay[start - 1].isalnum()
            after_ok = end == len(hay) or not hay[end].isalnum()
            case_ok = not term.case_sensitive or text[start:end] == spelling
            if before_ok and case_ok and (after_ok or term.kind == "prefix"):
                found.add((start, end))
            start = hay.find(needle, start + 1)
    return found


def cancelled(term: TermDef, texts: dict[str, str]) -> bool:
    """An implied actor's context word with one of its `unless` words anywhere in the article."""
    return any(occurrences(other, text) for other in term.unless for text in texts.values())


def in_period(term: TermDef, published: datetime | None) -> bool:
    if term.during is None or published is None:
        return True
    first, last = term.during
    return (first is None or first <= published.date()) and \
        (last is None or published.date() <= last)


def group_hits(group: GroupDef, texts: dict[str, str], fields: tuple[str, ...],
               published: datetime | None = None) -> list[Hit]:
    hits = [(name, s, e) for term in group.terms
            if not cancelled(term, texts) and in_period(term, published)
            for name in fields if name in texts
            for s, e in occurrences(term, texts[name])]
    return hits if len(hits) >= group.min_mentions else []


def units(text: str, scope: str) -> list[tuple[int, int]]:
    """(start, end) of each paragraph or sentence, found by splitting, not by bisecting."""
    out, offset = [], 0
    for paragraph in text.split("\n"):
        if scope == "paragraph":
            out.append((offset, offset + len(paragraph) + 1))
        else:
            cuts = [0] + [m.end() for m in _SENTENCE_END.finditer(paragraph)] + [len(paragraph) + 1]
            out += [(offset + a, offset + b) for a, b in zip(cuts, cuts[1:], strict=False)]
        offset += len(paragraph) + 1
    return out


def in_scope(rule: RuleDef, texts: dict[str, str], colours: list[list[Hit]]) -> bool:
    if rule.scope == "article":
        return True
    for name, text in texts.items():
        if rule.scope == "words":
            words = [m.start() for m in re.finditer(r"\w+", text)]
            def index(pos: int, words: list[int] = words) -> int:
                return sum(1 for w in words if w <= pos) - 1
            for first in range(-1, len(words)):
                window = range(first, first + rule.within)
                if all(any(h[0] == name and index(h[1]) in window for h in c) for c in colours):
                    return True
        else:
            for start, end in units(text, rule.scope):
                if all(any(h[0] == name and start <= h[1] < end for h in c) for c in colours):
                    return True
    return False


def reference_match(ruleset: RuleSet, article: Article, source_id: str | None) -> set[str]:
    texts = {name: normalize(getattr(article, name)) for name in FIELDS
             if getattr(article, name)}
    matched = set()
    for rule in ruleset.rules:
        if rule.sources is not None and source_id not in rule.sources:
            continue
        when = article.published
        if any(group_hits(g, texts, rule.fields, when) for g in rule.none):
            continue
        required = [group_hits(g, texts, rule.fields, when) for g in rule.all]
        optional = [h for g in rule.any for h in group_hits(g, texts, rule.fields, when)]
        if not all(required) or (rule.any and not optional):
            continue
        if in_scope(rule, texts, required + ([optional] if rule.any else [])):
            matched.add(rule.id)
    return matched
