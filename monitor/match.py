"""The match engine: every rule compiled into one Aho-Corasick automaton over normalised text.

An article is scanned once per field; each hit is checked for word boundaries (and case, for
case-sensitive aliases), then only the rules owning a hit term are evaluated: their all/any/none
groups, minimum mentions, fields, sources and co-occurrence scope. Pure: no I/O.

A rule with a `semantic` part also fires on an article its keywords miss when the article hits
the rule's prefilter groups and its meaning is close enough to one of the rule's examples; the
model (monitor.semantic, an optional extra) is asked only for those articles.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import ahocorasick_rs
import regex

from monitor.models import Article, Hit, Match
from monitor.errors import Problem
from monitor.rules import (FIELDS, CollectorPaused, RuleDef, RuleFile, RuleSet, TermDef,
                           load_rules)

# --- normalisation ----------------------------------------------------------------------------

_PUNCT: dict[int, Any] = {ord(c): "'" for c in "‘’‚‛′`´ʼ"}
_PUNCT.update({ord(c): '"' for c in "“”„‟″«»"})
_PUNCT.update({ord(c): "-" for c in "‐‑‒–—―−﹘﹣－⸺⸻"})
_PUNCT.update({ord(c): " " for c in "\u00a0\u2007\u202f\u3000"})
# Invisible characters, tatweel and vowel points: news text carries them inconsistently.
_PUNCT.update({c: None for c in (0x00AD, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x0640)})
_PUNCT.update({c: None for c in [*range(0x064B, 0x0660), 0x0670]})
_PUNCT.update({c: None for c in range(0x0591, 0x05C8) if c not in (0x05BE, 0x05C0, 0x05C3, 0x05C6)})

log = logging.getLogger("monitor.match")
# Seconds one regex term may spend on one field of one article.
REGEX_BUDGET = 0.25


def _term_ids(rule: Any) -> set[int]:
    return {tid for group in rule.all + rule.any + rule.none for tid in group.terms}


# Everything that is not a letter or digit becomes a space in the text the automaton scans.
# ASCII text (most text, once quotes and dashes are unified) goes through a byte table.
_NON_WORD = re.compile(r"[^\w ]|_")
_ASCII_NON_WORD = bytes(c if chr(c).isalnum() else 32 for c in range(128)) + bytes(128)
_SENTENCE_END = re.compile(r"(?<=[.!?…؟。])[\"')\]]*\s+(?=[^a-z\s])")
_WORD = re.compile(r"\w+")
SNIPPET_MAX = 600


def normalize(text: str) -> str:
    """NFKC, one kind of quote and dash, single spaces; a newline separates paragraphs."""
    if not text.isascii():                      # ASCII is its own NFKC form
        text = unicodedata.normalize("NFKC", text).translate(_PUNCT)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


# Arabic letters written more than one way (hamza on alef, alef maqsura, ta marbuta): one
# form each, one character for one, so offsets do not move.
_ARABIC_FOLD = str.maketrans("أإآٱىة", "اااايه")


def fold(text: str) -> str:
    """Lower-case without changing length, so offsets in folded text are offsets in the text."""
    folded = text.lower()
    if len(folded) != len(text):
        folded = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    return folded if folded.isascii() else folded.translate(_ARABIC_FOLD)


class _MarkStripper(dict[int, int]):
    """str.translate table mapping an accented letter to its base letter, built as met."""

    def __missing__(self, code: int) -> int:
        decomposed = unicodedata.normalize("NFD", chr(code))
        base = decomposed[0]
        keep = len(decomposed) > 1 and all(unicodedata.combining(c) for c in decomposed[1:])
        self[code] = ord(base) if keep else code
        return self[code]


_STRIP = _MarkStripper()


def strip_marks(text: str) -> str:
    """Fold diacritics ('é' -> 'e') without changing length."""
    return text.translate(_STRIP) if not text.isascii() else text


def inflections(word: str) -> list[str]:
    """Simple English inflections of the last word of a term: talk -> talks, talked, talking."""
    out = [word + "s", word + "es", word + "ed", word + "ing"]
    if word.endswith("y") and len(word) > 2:
        out += [word[:-1] + "ies", word[:-1] + "ied"]
    if word.endswith("e"):
        out += [word + "d", word[:-1] + "ing"]
    return out


# Clitics written onto the word: Arabic and/so, by/for/as, the; Hebrew and, that, the/in/to/
# from/as. With `inflect: true` an admin writes the bare word once and gets every prefixed form.
_ARABIC_PREFIXES = sorted({c + p + a for c in ("", "و", "ف") for p in ("", "ب", "ل", "ك")
                           for a in ("", "ال")} - {"لال"} | {"لل", "ولل", "فلل"})
_HEBREW_PREFIXES = sorted({w + s + p for w in ("", "ו") for s in ("", "ש", "כש")
                           for p in ("", "ה", "ב", "ל", "מ", "מה", "כ")})
_ARABIC = re.compile("[\u0600-\u06ff]")
_HEBREW = re.compile("[\u0590-\u05ff]")


def semitic_inflections(phrase: str) -> list[str]:
    """Arabic or Hebrew forms of a phrase: prefixes on its first word, and for Arabic a
    feminine ending written ة or ه (folded alike) also before suffixes (هدنة -> هدنتين)."""
    first, _, rest = phrase.partition(" ")
    tail = f" {rest}" if rest else ""
    if _ARABIC.search(first):
        stems = [first]
        if first.endswith(("ة", "ه")) and not rest:
            stems += [first[:-1] + ending for ending in ("ات", "تين", "تان", "ته", "تها")]
        return [prefix + stem + tail for prefix in _ARABIC_PREFIXES for stem in stems]
    if _HEBREW.search(first):
        stems = [first]
        if first.endswith("ה"):
            stems += [first[:-1] + "ת", first[:-1] + "ות"]      # construct state, plural
        return [prefix + stem + tail for prefix in _HEBREW_PREFIXES for stem in stems]
    return []


def variants(term: TermDef) -> list[str]:
    """The normalised spellings a word/prefix term stands for ('cease-fire' -> 3 spellings)."""
    base = normalize(term.text)
    spellings = {base}
    if "-" in base:
        spellings |= {base.replace("-", " "), base.replace("-", "")}
    elif base.count(" ") == 1 and term.kind == "word":
        spellings |= {base.replace(" ", "-"), base.replace(" ", "")}
    if term.inflect and (_ARABIC.search(base) or _HEBREW.search(base)):
        spellings |= {form for s in list(spellings) for form in semitic_inflections(s)}
    elif term.inflect:
        spellings |= {inflected for s in list(spellings) for inflected in inflections(s)}
    return sorted(spellings)


# --- one field of one article, prepared for matching ------------------------------------------

def scan_text(folded: str) -> str:
    """The text the automaton scans: non-word characters as spaces, a space at each end.

    Keys are padded the same way, so the automaton only reports hits that start (and, unless
    the term is a prefix, end) on a word boundary; a hit inside a word is never even seen.
    Every character keeps its place: offset i here is offset i - 1 in the folded text.
    """
    if folded.isascii():
        return " " + folded.encode("ascii").translate(_ASCII_NON_WORD).decode("ascii") + " "
    return " " + _NON_WORD.sub(" ", folded) + " "


def scan_key(spelling: str, prefix: bool) -> str:
    key = scan_text(spelling)
    return key[:-1] if prefix else key


@dataclass
class _Text:
    name: str
    norm: str
    folded: str

    @cached_property
    def haystack(self) -> str:
        return scan_text(self.folded)

    @cached_property
    def plain(self) -> str:
        return strip_marks(self.folded)

    @cached_property
    def plain_haystack(self) -> str:
        return scan_text(self.plain)

    @cached_property
    def paragraph_starts(self) -> list[int]:
        return [0] + [m.end() for m in re.finditer("\n", self.norm)]

    @cached_property
    def sentence_starts(self) -> list[int]:
        starts = set(self.paragraph_starts)
        starts.update(m.end() for m in _SENTENCE_END.finditer(self.norm))
        return sorted(starts)

    @cached_property
    def word_starts(self) -> list[int]:
        return [m.start() for m in _WORD.finditer(self.norm)]

    def unit(self, scope: str, pos: int) -> int:
        starts = self.sentence_starts if scope == "sentence" else self.paragraph_starts
        return bisect_right(starts, pos) - 1

    def unit_span(self, scope: str, index: int) -> tuple[int, int]:
        starts = self.sentence_starts if scope == "sentence" else self.paragraph_starts
        end = starts[index + 1] if index + 1 < len(starts) else len(self.norm)
        return starts[index], end

    def word_index(self, pos: int) -> int:
        return bisect_right(self.word_starts, pos) - 1


def prepare(article: Article) -> list[_Text]:
    texts = []
    for name in FIELDS:
        raw = getattr(article, name) or ""
        if raw:
            norm = normalize(raw)
            texts.append(_Text(name, norm, fold(norm)))
    return texts


# --- the compiled engine ----------------------------------------------------------------------

# A hit inside the engine: (text index, start, end).
_RawHit = tuple[int, int, int]


@dataclass
class _Group:
    terms: tuple[int, ...]
    min_mentions: int
    blockers: dict[int, tuple[int, ...]] = field(default_factory=dict)  # implied -> unless


@dataclass
class _Rule:
    rule: RuleDef
    fields: frozenset[str]
    all: list[_Group]
    any: list[_Group]
    none: list[_Group]
    always: bool = False          # has regex terms: a candidate for every article
    prefilter: list[_Group] = field(default_factory=list)   # semantic rules only
    examples: Any = None          # the semantic examples' vectors (rows), when the model is here


# One automaton entry: (term id, folded spelling to confirm, original case or None, prefix).
_Entry = tuple[int, str, str | None, bool]


def _pattern(key: str, entries: list[_Entry]) -> tuple[tuple[int, ...], tuple[_Entry, ...]]:
    """What a hit on one automaton key means: the terms it proves by itself (one word, any
    case: the padded key matched exactly those characters), and the entries to confirm
    against the folded text (several words, whose spaces in the key stand for any
    punctuation; case-sensitive; or a prefix)."""
    proven = tuple(tid for tid, spelling, original, prefix in entries
                   if not prefix and original is None and " " not in spelling
                   and key == f" {spelling} ")
    return proven, tuple(e for e in entries if e[0] not in proven)


class _Automaton(NamedTuple):
    """Every padded key of one spelling form in one Aho-Corasick automaton (Rust: it finds all
    of a text's hits in one call, about twice as fast as a Python-driven trie at 24,000 keys),
    and what a hit on each key means, by the key's place."""

    keys: Any
    values: list[tuple[tuple[int, ...], tuple[_Entry, ...]]]


@dataclass
class Engine:
    """Rules compiled once; `match(article)` answers which rules match and why.

    The index from terms to rules records, per term and group place, the rules whose group
    in that place holds the term; a rule is evaluated only when every one of its groups has
    been hit.
    """

    ruleset: RuleSet
    _terms: list[TermDef] = field(default_factory=list)
    _rules: list[_Rule] = field(default_factory=list)
    # Per term: (group place, the rules whose group in that place holds the term). A rule's
    # 'all' groups take places 0, 1, ...; its 'any' groups share the next place.
    _term_places: list[tuple[tuple[int, frozenset[int]], ...]] = field(default_factory=list)
    _by_width: list[frozenset[int]] = field(default_factory=list)   # places -> rules
    _regexes: list[tuple[int, Any]] = field(default_factory=list)
    timed_out: dict[int, int] = field(default_factory=dict)   # term id -> timeouts so far
    _always: list[int] = field(default_factory=list)
    # Meaning-level matching: use the model when rules ask for it (False: keywords only).
    semantic: bool = True
    model: Any = None
    _pre_bits: dict[int, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    _pre_full: dict[int, int] = field(default_factory=dict)
    _pre_always: list[int] = field(default_factory=list)
    _dated: list[int] = field(default_factory=list)   # implied terms with a `during` range

    def __post_init__(self) -> None:
        with CollectorPaused():            # many small acyclic objects
            self._compile()

    def _compile(self) -> None:
        term_ids: dict[TermDef, int] = {}
        places: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
        by_width: defaultdict[int, set[int]] = defaultdict(set)
        for index, rule in enumerate(self.ruleset.rules):
            compiled = self._compile_rule(rule, term_ids)
            self._rules.append(compiled)
            groups = list(enumerate(compiled.all))
            groups += [(len(compiled.all), g) for g in compiled.any]
            for place, group in groups:
                for tid in group.terms:
                    places[(tid, place)].add(index)
            by_width[len(compiled.all) + (1 if compiled.any else 0)].add(index)
            if compiled.always:
                self._always.append(index)
        of_term: defaultdict[int, list[tuple[int, frozenset[int]]]] = defaultdict(list)
        for (tid, place), rules in sorted(places.items()):
            of_term[tid].append((place, frozenset(rules)))
        self._term_places = [tuple(of_term[tid]) for tid in range(len(self._terms))]
        width = max(by_width, default=0)
        self._by_width = [frozenset(by_width[n]) for n in range(width + 1)]
        self._dated = [tid for tid, term in enumerate(self._terms) if term.during is not None]
        self._compile_semantic()
        self._exact, self._plain = self._build_automata()

    def _compile_semantic(self) -> None:
        """The prefilter index of the semantic rules. The model itself is loaded, and the
        examples embedded, only when an article first reaches a prefilter (a `check` or a
        cycle without such an article never pays for it)."""
        wanted = [i for i, r in enumerate(self._rules) if r.prefilter]
        if not wanted:
            return
        from monitor import semantic
        installed = self.model is not None or semantic.available()
        if not self.semantic or not installed:
            self.model = None
            self.semantic = False
            if not installed:
                semantic.report_missing()
            return
        pre_bits: defaultdict[int, set[tuple[int, int]]] = defaultdict(set)
        for index in wanted:
            rule = self._rules[index]
            for bit, group in enumerate(rule.prefilter):
                for tid in group.terms:
                    pre_bits[tid].add((index, 1 << bit))
                if any(self._terms[t].kind == "regex" for t in group.terms):
                    self._pre_always.append(index)
            self._pre_full[index] = (1 << len(rule.prefilter)) - 1
        self._pre_bits = {tid: tuple(sorted(bits)) for tid, bits in pre_bits.items()}

    @property
    def uses_meaning(self) -> bool:
        """Whether semantic rules fire by meaning here (the extra is installed and wanted)."""
        return bool(self._pre_bits or self._pre_always)

    def _meaning_model(self) -> Any:
        if self.model is None:
            from monitor import semantic
            self.model = semantic.shared()
        return self.model

    def _compile_rule(self, rule: RuleDef, term_ids: dict[TermDef, int]) -> _Rule:
        def term_id(term: TermDef) -> int:
            tid = term_ids.setdefault(term, len(self._terms))
            if tid == len(self._terms):
                self._terms.append(term)
            return tid

        def group_of(group: Any) -> _Group:
            tids = tuple([term_id(term) for term in group.terms])
            blockers = {term_id(term): tuple(term_id(u) for u in term.unless)
                        for term in group.terms if term.unless}
            return _Group(tids, group.min_mentions, blockers)

        compiled = _Rule(rule, frozenset(rule.fields), [group_of(g) for g in rule.all],
                         [group_of(g) for g in rule.any], [group_of(g) for g in rule.none])
        compiled.always = any(term.kind == "regex"
                              for g in rule.all + rule.any for term in g.terms)
        if rule.semantic is not None:
            compiled.prefilter = [group_of(g) for g in rule.semantic.prefilter]
        return compiled

    def _build_automata(self) -> tuple[_Automaton | None, _Automaton | None]:
        keyed: dict[tuple[bool, str], list[_Entry]] = defaultdict(list)
        for tid, term in enumerate(self._terms):
            if term.kind == "regex":
                flags = regex.VERSION0 | (0 if term.case_sensitive else regex.IGNORECASE)
                self._regexes.append((tid, regex.compile(term.text, flags)))
                continue
            prefix = term.kind == "prefix"
            if term.text.isascii() and term.text.isalnum() and not term.inflect:
                # One ASCII word (most terms): its own only spelling, lower-cased, padded.
                folded = term.text.lower()
                key = " " + folded if prefix else " " + folded + " "
                keyed[(term.fold_diacritics, key)].append(
                    (tid, folded, term.text if term.case_sensitive else None, prefix))
                continue
            for spelling in variants(term):
                folded = fold(spelling)
                if term.fold_diacritics:
                    folded = strip_marks(folded)
                if not folded.strip():
                    continue
                original = spelling if term.case_sensitive else None
                key = scan_key(folded, prefix)
                keyed[(term.fold_diacritics, key)].append((tid, folded, original, prefix))
        automata: list[_Automaton | None] = []
        for plain in (False, True):
            keys = [key for is_plain, key in keyed if is_plain == plain]
            automata.append(_Automaton(ahocorasick_rs.AhoCorasick(keys), [
                _pattern(key, keyed[(plain, key)]) for key in keys]) if keys else None)
        return automata[0], automata[1]

    # -- scanning --

    def scan(self, texts: list[_Text]) -> dict[int, list[_RawHit]]:
        """Every boundary-checked occurrence of every term, by term id."""
        hits: defaultdict[int, list[_RawHit]] = defaultdict(list)
        for index, text in enumerate(texts):
            if self._exact is not None:
                self._scan_one(self._exact, text.haystack, text.folded, text, index, hits)
            if self._plain is not None:
                self._scan_one(self._plain, text.plain_haystack, text.plain, text, index, hits)
            for tid, pattern in self._regexes:
                self._scan_regex(tid, pattern, text.norm, index, hits)
        return hits

    def _scan_regex(self, tid: int, pattern: Any, text: str, index: int,
                    hits: defaultdict[int, list[_RawHit]]) -> None:
        """A regex term's hits, under a time budget: a pattern the load-time check let through
        that still backtracks too long gives no hit on this text and is reported, never stalls
        matching."""
        found_here: list[_RawHit] = []
        try:
            for found in pattern.finditer(text, timeout=REGEX_BUDGET):
                if found.end() > found.start():
                    found_here.append((index, found.start(), found.end()))
        except TimeoutError:
            count = self.timed_out[tid] = self.timed_out.get(tid, 0) + 1
            rules = ", ".join(sorted(r.rule.id for r in self._rules if tid in _term_ids(r)))
            log.error("regex %r (rule %s) took over %g s on one text and was skipped there "
                      "(%d time(s) so far); simplify it", self._terms[tid].text, rules,
                      REGEX_BUDGET, count)
            return
        hits[tid] += found_here

    def _scan_one(self, automaton: _Automaton, haystack: str, folded: str, text: _Text,
                  index: int, hits: defaultdict[int, list[_RawHit]]) -> None:
        values = automaton.values
        for key, start, stop in automaton.keys.find_matches_as_indexes(haystack,
                                                                       overlapping=True):
            proven, checked = values[key]     # start: haystack offset of the pad = folded start
            if proven:
                span = (index, start, stop - 2)
                for tid in proven:
                    hits[tid].append(span)
            for tid, spelling, original, prefix in checked:
                end = start + len(spelling)
                if folded[start:end] != spelling:
                    continue                    # same words, other punctuation
                if original is not None and text.norm[start:end] != original:
                    continue
                hits[tid].append((index, start, _word_end(folded, end) if prefix else end))

    # -- evaluating --

    def candidates(self, hits: dict[int, list[_RawHit]]) -> list[int]:
        """Rules every one of whose groups was hit somewhere (plus rules with regex terms).

        Set algebra in C rather than a Python step per (term, rule): the rules reached in each
        group place, then those reached in places 0..n-1 among the rules with n places."""
        reached: list[set[int]] = [set() for _ in self._by_width]
        term_places = self._term_places
        for tid in hits:
            for place, rules in term_places[tid]:
                reached[place] |= rules
        found: set[int] = set(self._always)
        common: set[int] | None = None
        for width in range(1, len(self._by_width)):
            common = reached[0] if common is None else common & reached[width - 1]
            if not common:
                break
            found |= common & self._by_width[width]
        return sorted(found)

    def semantic_candidates(self, hits: dict[int, list[_RawHit]]) -> list[int]:
        """Semantic rules every one of whose prefilter groups was hit somewhere."""
        state: defaultdict[int, int] = defaultdict(int)
        for tid in hits:
            for rule_index, bit in self._pre_bits.get(tid, ()):
                state[rule_index] |= bit
        found = {i for i, seen in state.items() if seen == self._pre_full[i]}
        return sorted(found.union(self._pre_always))

    def match(self, article: Article, source_id: str | None = None) -> list[Match]:
        texts = prepare(article)
        hits = self.scan(texts)
        for tid in self._dated:          # context words that imply an actor only in a period
            if tid in hits and not self._terms[tid].in_time(article.published):
                del hits[tid]
        matches = []
        for index in self.candidates(hits):
            found = self._evaluate(self._rules[index], texts, hits, source_id)
            if found is not None:
                matches.append(found)
        if self.uses_meaning:
            fired = {m.rule_id for m in matches}
            vectors: dict[str, Any] = {}
            for index in self.semantic_candidates(hits):
                rule = self._rules[index]
                if rule.rule.id not in fired:
                    found = self._by_meaning(rule, texts, hits, source_id, vectors)
                    if found is not None:
                        matches.append(found)
        return matches

    def _by_meaning(self, rule: _Rule, texts: list[_Text], hits: dict[int, list[_RawHit]],
                    source_id: str | None, vectors: dict[str, Any]) -> Match | None:
        """The rule fired by the article's meaning: prefilter hit, no 'none' group, and the
        nearest example at least as similar as the threshold."""
        spec = rule.rule
        assert spec.semantic is not None
        if spec.sources is not None and source_id not in spec.sources:
            return None
        allowed = {i for i, t in enumerate(texts) if t.name in rule.fields}
        if any(_group_hits(g, hits, allowed) for g in rule.none):
            return None
        evidence = [_group_hits(g, hits, allowed) for g in rule.prefilter]
        if not all(evidence) or not allowed:
            return None
        scored = "\n".join(texts[i].norm for i in sorted(allowed))
        model = self._meaning_model()
        if model is None:
            return None
        if rule.examples is None:
            rule.examples = model.examples(spec.semantic.examples)
        if scored not in vectors:
            vectors[scored] = model.article(scored)
        similarities = rule.examples @ vectors[scored]
        best = int(similarities.argmax())
        score = float(similarities[best])
        if score < spec.semantic.threshold:
            return None
        first = min(allowed)
        found = sorted({h for group in evidence for h in group})
        explained = tuple(Hit(self._terms[tid].text, self._terms[tid].actor, texts[h[0]].name,
                              h[1], h[2], self._terms[tid].implied)
                          for tid in {t for g in rule.prefilter for t in g.terms}
                          for h in hits.get(tid, ()) if h in found)
        end = min(len(texts[first].norm), SNIPPET_MAX)
        inside = sorted({(h[1], h[2]) for h in found if h[0] == first and h[2] <= end})
        snippet, marks = _snippet(texts[first].norm, 0, end, inside)
        return Match(spec.id, spec.title, tuple(sorted(explained, key=lambda h: h.start)),
                     snippet, marks, texts[first].name, round(score, 4),
                     spec.semantic.examples[best])

    def _evaluate(self, rule: _Rule, texts: list[_Text], hits: dict[int, list[_RawHit]],
                  source_id: str | None) -> Match | None:
        spec = rule.rule
        if spec.sources is not None and source_id not in spec.sources:
            return None
        allowed = {i for i, t in enumerate(texts) if t.name in rule.fields}

        def group_hits(group: _Group) -> list[_RawHit]:
            return _group_hits(group, hits, allowed)

        if any(group_hits(g) for g in rule.none):
            return None
        required = [group_hits(g) for g in rule.all]
        if not all(required):
            return None
        optional = [h for g in rule.any for h in group_hits(g)]
        if rule.any and not optional:
            return None
        colours = required + ([optional] if rule.any else [])
        evidence = _in_scope(spec.scope, spec.within, texts, colours)
        if evidence is None:
            return None
        return self._explain(rule, texts, hits, allowed, evidence)

    def _explain(self, rule: _Rule, texts: list[_Text], hits: dict[int, list[_RawHit]],
                 allowed: set[int], evidence: tuple[int, int, int]) -> Match:
        text_index, start, end = evidence
        text = texts[text_index]
        tids = {t for g in rule.all + rule.any for t in g.terms
                if t in hits and not (g.blockers and _blocked(g, t, hits))}
        found = sorted((h, tid) for tid in tids for h in hits.get(tid, ()) if h[0] in allowed)
        explained = tuple(Hit(self._terms[tid].text, self._terms[tid].actor, texts[h[0]].name,
                              h[1], h[2], self._terms[tid].implied) for h, tid in found)
        inside = sorted({(h[1], h[2]) for h, _ in found
                         if h[0] == text_index and start <= h[1] and h[2] <= end})
        snippet, marks = _snippet(text.norm, start, end, inside)
        return Match(rule.rule.id, rule.rule.title, explained, snippet, marks, text.name)


def load_engine(directory: Path, last_good: dict[str, RuleFile] | None = None
                ) -> tuple[Engine, list[Problem], dict[str, RuleFile]]:
    """A directory's rule files loaded and compiled: what a reload does (`load_rules` says
    what comes back). Both steps pause the cyclic garbage collector while they build their
    objects; one pause over the two lets it walk all the new objects once, afterwards,
    instead of walking the loaded rules a first time between the two steps."""
    with CollectorPaused():
        ruleset, problems, files = load_rules(directory, last_good)
        return Engine(ruleset), problems, files


def _group_hits(group: _Group, hits: dict[int, list[_RawHit]], allowed: set[int]
                ) -> list[_RawHit]:
    blockers = group.blockers
    out = [h for tid in group.terms if tid in hits and not (blockers and _blocked(group, tid, hits))
           for h in hits[tid] if h[0] in allowed]
    return out if len(out) >= group.min_mentions else []


def _blocked(group: _Group, tid: int, hits: dict[int, list[_RawHit]]) -> bool:
    """An implied actor's context word, cancelled by one of its `unless` words in the article."""
    return any(hits.get(other) for other in group.blockers.get(tid, ()))


def _word_end(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isalnum():
        pos += 1
    return pos


def _in_scope(scope: str, within: int, texts: list[_Text],
              colours: list[list[_RawHit]]) -> tuple[int, int, int] | None:
    """The span (text, start, end) where every colour has a hit, or None."""
    if scope == "article":
        first = min(colours[0])
        text = texts[first[0]]
        return (first[0], *text.unit_span("paragraph", text.unit("paragraph", first[1])))
    if scope == "words":
        return _within_words(within, texts, colours)
    units: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for colour, group in enumerate(colours):
        for text_index, start, _ in group:
            units[(text_index, texts[text_index].unit(scope, start))].add(colour)
    wanted = len(colours)
    for text_index, unit in sorted(units):
        if len(units[(text_index, unit)]) == wanted:
            return (text_index, *texts[text_index].unit_span(scope, unit))
    return None


def _within_words(within: int, texts: list[_Text],
                  colours: list[list[_RawHit]]) -> tuple[int, int, int] | None:
    """Smallest-first sliding window: a stretch of at most `within` words holding every colour."""
    events = sorted((h[0], texts[h[0]].word_index(h[1]), h[1], h[2], colour)
                    for colour, group in enumerate(colours) for h in group)
    counts: defaultdict[int, int] = defaultdict(int)
    left = 0
    for text_index, word, _, end, colour in events:
        counts[colour] += 1
        while events[left][0] != text_index or word - events[left][1] >= within:
            counts[events[left][4]] -= 1
            left += 1
        if sum(1 for c in counts.values() if c > 0) == len(colours):
            start = events[left][2]
            text = texts[text_index]
            sentence_start = text.unit_span("sentence", text.unit("sentence", start))[0]
            sentence_end = text.unit_span("sentence", text.unit("sentence", end - 1))[1]
            return text_index, sentence_start, sentence_end
    return None


def _snippet(norm: str, start: int, end: int, spans: Iterable[tuple[int, int]]
             ) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The evidence text with hit spans relative to it, trimmed around the hits if long."""
    spans = list(spans)
    if end - start > SNIPPET_MAX and spans:
        centre = spans[0][0]
        start = max(start, centre - SNIPPET_MAX // 3)
        end = min(end, start + SNIPPET_MAX)
    text = norm[start:end]
    stripped = len(text) - len(text.lstrip())
    text = text.strip()
    marks = tuple((s - start - stripped, e - start - stripped) for s, e in spans
                  if s >= start and e <= end)
    return text, marks
