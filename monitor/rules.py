"""Load, validate and resolve the YAML rule files into a RuleSet the match engine compiles.

A rule file may hold `actors` (id + aliases), `actor_groups` (name -> actor ids) and `rules`.
Actors and groups are shared by every file of the directory. A file with problems keeps its
last good version in service (hot reload); with none, its valid rules are used. Either way
every problem is reported as file:line.
"""

from __future__ import annotations

import gc
import re
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter,
                      ValidationError, field_validator, model_validator)
from typing_extensions import NotRequired, Required, TypedDict

from monitor.errors import Problem
from monitor.yamlfile import YDict, YList, parse_yaml, plain_yaml, validate

FIELDS = ("title", "summary", "body")


# --- resolved definitions (what the engine compiles) ------------------------------------------

class TermDef(NamedTuple):
    """One thing to look for. `text` is as written; kind says how it matches.

    A named tuple rather than a frozen dataclass: a 10,000-rule file makes tens of thousands
    of them and the engine hashes each, both of which a tuple does in C.
    """

    text: str
    kind: Literal["word", "prefix", "regex"] = "word"
    case_sensitive: bool = False
    inflect: bool = False
    fold_diacritics: bool = False
    actor: str | None = None
    implied: bool = False        # a context word standing for the actor (actors' implied_by)
    unless: tuple[TermDef, ...] = ()   # words in the article that cancel the implication
    during: tuple[date | None, date | None] | None = None   # implies only for articles dated so

    def in_time(self, published: datetime | None) -> bool:
        """Whether an article published then may use this term (undated articles may)."""
        if self.during is None or published is None:
            return True
        day, (first, last) = published.date(), self.during
        return (first is None or day >= first) and (last is None or day <= last)


class GroupDef(NamedTuple):
    """Keywords and actor aliases, any one of which satisfies the group."""

    terms: tuple[TermDef, ...]
    min_mentions: int = 1


@dataclass(frozen=True)
class SemanticDef:
    """Meaning-level matching: articles that pass the prefilter groups are scored against
    the examples; a score at or above the threshold fires the rule (see monitor.semantic)."""

    examples: tuple[str, ...]
    threshold: float
    prefilter: tuple[GroupDef, ...]


class RuleDef(NamedTuple):
    """One rule as the engine compiles it. Named tuples, as TermDef: a 10,000-rule reload
    makes one per rule and one per group, which a tuple builds in C (a frozen dataclass sets
    each field through object.__setattr__)."""

    id: str
    title: str
    all: tuple[GroupDef, ...] = ()
    any: tuple[GroupDef, ...] = ()
    none: tuple[GroupDef, ...] = ()
    scope: Literal["article", "paragraph", "sentence", "words"] = "article"
    within: int = 0
    fields: tuple[str, ...] = FIELDS
    sources: frozenset[str] | None = None
    file: str = ""
    line: int = 0
    examples: str | None = None      # labelled examples (TSV/CSV), resolved against the file
    semantic: SemanticDef | None = None


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[RuleDef, ...] = ()

    def get(self, rule_id: str) -> RuleDef | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)

    @property
    def ids(self) -> set[str]:
        return {rule.id for rule in self.rules}


# --- the file schema --------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TermModel(_Strict):
    term: str | None = Field(None, min_length=1)
    regex: str | None = Field(None, min_length=1)
    case_sensitive: bool = False
    prefix: bool = False
    inflect: bool = False
    fold_diacritics: bool = False

    @model_validator(mode="wrap")
    @classmethod
    def _shorthand(cls, value: Any, handler: Any) -> Any:
        """"word", "word*" (a prefix) or a mapping."""
        if not isinstance(value, str):
            return handler(value)._one_kind()
        text, prefix = shorthand(value)
        return handler({"term": text, "prefix": prefix})

    def _one_kind(self) -> TermModel:
        if (self.term is None) == (self.regex is None):
            raise ValueError("a term needs exactly one of 'term' or 'regex'")
        if self.regex is not None:
            check_regex(self.regex)
        return self

    def resolve(self, actor: str | None = None) -> TermDef:
        if self.regex is not None:
            return TermDef(self.regex, "regex", self.case_sensitive, actor=actor)
        assert self.term is not None
        return TermDef(self.term.strip(), "prefix" if self.prefix else "word",
                       self.case_sensitive, self.inflect, self.fold_diacritics, actor)


def shorthand(value: str) -> tuple[str, bool]:
    """A term written as a string: "word", or "word*" for a prefix. (text, prefix)"""
    if value.endswith("*") and len(value) > 1:
        return value[:-1], True
    return value, False


def term_def(value: str | TermModel, actor: str | None = None) -> TermDef:
    """The TermDef of a term as validated: a model, or (the fast read) a shorthand string."""
    if isinstance(value, TermModel):
        return value.resolve(actor)
    text, prefix = shorthand(value)
    # _make: the fields in order, built in C (a 10,000-rule reload makes ~25,000 of these).
    return _TERM((text.strip(), "prefix" if prefix else "word", False, False, False, actor,
                  False, (), None))


_TERM = TermDef._make


class DuringModel(_Strict):
    """A date range (either end open): `during: {from: 2023-10-07, to: 2025-01-19}`."""

    start: date | None = Field(None, alias="from")
    end: date | None = Field(None, alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> DuringModel:
        if self.start is None and self.end is None:
            raise ValueError("during needs 'from', 'to' or both")
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"during: 'from' {self.start} is after 'to' {self.end}")
        return self


class ImpliedModel(_Strict):
    """Context that stands for an actor not named: 'Gaza' in a truce story implies Hamas."""

    terms: list[TermModel] = Field(min_length=1)
    unless: list[TermModel] = Field(default_factory=list)   # e.g. Ukraine, Lebanon
    during: DuringModel | None = None      # only for articles published in this range

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"terms": value} if isinstance(value, list) else value


class ActorModel(_Strict):
    id: str = Field(pattern=r"^[\w.-]+$")
    name: str | None = None
    aliases: list[TermModel] = Field(min_length=1)
    implied_by: ImpliedModel | None = None

    def terms(self) -> tuple[TermDef, ...]:
        named = tuple([term_def(alias, self.id) for alias in self.aliases])
        if self.implied_by is None:
            return named
        unless = tuple(term.resolve() for term in self.implied_by.unless)
        when = self.implied_by.during
        during = (when.start, when.end) if when else None
        return named + tuple(term.resolve(self.id)._replace(implied=True, unless=unless,
                                                            during=during)
                             for term in self.implied_by.terms)


class GroupModel(_Strict):
    keywords: list[TermModel] = Field(default_factory=list)
    actors: list[str] = Field(default_factory=list)
    min_mentions: int = Field(1, ge=1)
    name: str | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> GroupModel:
        if not self.keywords and not self.actors:
            raise ValueError("empty group: give it keywords, actors or both")
        return self


class SemanticModel(_Strict):
    """`semantic:` of a rule: what it is about, as example news sentences, in any language."""

    examples: list[str] = Field(min_length=1)
    threshold: float = Field(gt=0, le=1)
    # Groups an article must all hit (anywhere) before it is scored: the cheap keyword part.
    # Without them, any term of the rule's own all/any groups lets an article through.
    prefilter: list[GroupModel] = Field(default_factory=list)

    @field_validator("examples")
    @classmethod
    def _not_blank(cls, value: list[str]) -> list[str]:
        if any(not text.strip() for text in value):
            raise ValueError("semantic examples must not be empty")
        return [text.strip() for text in value]


FieldName = Literal["title", "summary", "body"]
_EVERY_FIELD: tuple[FieldName, ...] = ("title", "summary", "body")


class RuleModel(_Strict):
    id: str = Field(pattern=r"^[\w.-]+$")
    title: str = Field(min_length=1)
    all: list[GroupModel] = Field(default_factory=list)
    any: list[GroupModel] = Field(default_factory=list)
    none: list[GroupModel] = Field(default_factory=list)
    scope: Literal["article", "paragraph", "sentence"] = "article"
    within: int | None = Field(None, ge=1, le=1000)   # words; overrides scope
    # A default_factory, not a list default: pydantic deep-copies a mutable default per rule.
    fields: list[FieldName] = Field(default_factory=lambda: list(_EVERY_FIELD))
    sources: list[str] | None = None
    enabled: bool = True
    examples: str | None = None      # a labelled examples file; `check` reports the figures
    semantic: SemanticModel | None = None

    @model_validator(mode="after")
    def _has_positive_group(self) -> RuleModel:
        if not self.all and not self.any:
            raise ValueError(f"rule '{self.id}' needs at least one 'all' or 'any' group "
                             f"('none' alone would match every article)")
        return self

    @field_validator("fields")
    @classmethod
    def _some_fields(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("fields must name at least one of title, summary, body")
        return value


class RuleFileModel(_Strict):
    actors: list[ActorModel] = Field(default_factory=list)
    actor_groups: dict[str, list[str]] = Field(default_factory=dict)
    rules: list[RuleModel] = Field(default_factory=list)


# The fast read's schema: the same keys, types and constraints, except that a term written as
# a string stays one (checked in pydantic's core: a non-empty string, exactly what the
# shorthand accepts; the resolve makes it a TermDef). Rules and groups, most of a big file's
# nodes, are validated into plain dicts of the keys written rather than model instances (a
# 10,000-rule file validated in half the time); the resolve reads either form. A file it
# refuses is read again with the schema above, whose messages are the ones reported.
_Word = Annotated[str, StringConstraints(min_length=1)]
_TYPED_DICT: Any = TypedDict          # its classes are made at run time: Any to mypy


def _plain(model: type[BaseModel], **kinds: Any) -> Any:
    """`model`'s fields as a TypedDict pydantic validates in its core: the same keys, types
    (`kinds` overrides some) and constraints; no defaults filled in. The model's own
    validators do not come along: `_refused` checks what they check."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        kind = kinds.get(name, info.annotation)
        if info.metadata:
            kind = Annotated[(kind, *info.metadata)]
        fields[info.alias or name] = Required[kind] if info.is_required() else NotRequired[kind]
    plain = _TYPED_DICT(f"Plain{model.__name__}", fields)
    plain.__pydantic_config__ = ConfigDict(extra="forbid")
    return plain


_FastGroup = _plain(GroupModel, keywords=list[_Word | TermModel])


class _FastActor(ActorModel):
    aliases: list[_Word | TermModel] = Field(min_length=1)  # type: ignore[assignment]


class _FastSemantic(SemanticModel):
    prefilter: list[_FastGroup] = Field(default_factory=list)  # type: ignore[valid-type]


_FastGroups = list[_FastGroup]  # type: ignore[valid-type]
_FastRule = _plain(RuleModel, all=_FastGroups, any=_FastGroups, none=_FastGroups,
                   semantic=_FastSemantic | None)
_FAST_FILE = TypeAdapter(_plain(RuleFileModel, actors=list[_FastActor],
                                rules=list[_FastRule]))  # type: ignore[valid-type]


def _refused(rules: list[dict[str, Any]]) -> bool:
    """What the models' own validators would refuse among the fast read's plain rules: no
    'all' or 'any' group (RuleModel._has_positive_group), an empty `fields` list
    (RuleModel._some_fields), a group without keywords or actors (GroupModel._not_empty)."""
    for rule in rules:
        every, some, semantic = rule.get("all"), rule.get("any"), rule.get("semantic")
        if not every and not some:
            return True
        if "fields" in rule and not rule["fields"]:
            return True
        for groups in (every, some, rule.get("none"),
                       semantic.prefilter if semantic is not None else None):
            for group in groups or ():
                if not group.get("keywords") and not group.get("actors"):
                    return True
    return False


class _PlainFile(NamedTuple):
    """A file as the fast read validated it: RuleFileModel's fields, rules as plain dicts."""

    actors: list[ActorModel]
    actor_groups: dict[str, list[str]]
    rules: list[dict[str, Any]]


def _values(node: Any) -> dict[str, Any]:
    """A validated rule or group as a dict: the fast read's plain dict, or a model's fields."""
    return node if isinstance(node, dict) else node.__dict__


# What a rule the fast read validated leaves out, as the model fills it in.
_RULE_DEFAULTS = {name: info.get_default(call_default_factory=True)
                  for name, info in RuleModel.model_fields.items() if not info.is_required()}
_MIN_MENTIONS = GroupModel.model_fields["min_mentions"].default


# --- regex safety -----------------------------------------------------------------------------

_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT,
            sre_constants.POSSESSIVE_REPEAT)
_WILD = "*"            # a first character that could be anything


def check_regex(pattern: str) -> None:
    """Refuse a regex that does not compile or whose backtracking can explode.

    Refused shapes: a repetition inside another repetition ("(a+)+", "(\\w*)*", and also a
    counted one such as "(.*,){20}", polynomial of degree 20), a back-reference, and an
    alternation under a repetition whose branches can start alike ("(a|a)*", "(a|ab)*").
    Atomic groups and possessive repeats are looked into like any other group. Matching
    also runs under a time budget (match.py), for whatever shape this misses.
    """
    try:
        re.compile(pattern)
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        raise ValueError(f"regex '{pattern}' does not compile: {exc}") from None
    if len(pattern) > 500:
        raise ValueError("regex longer than 500 characters")
    reason = _runaway(list(parsed), inside_repeat=False)
    if reason:
        raise ValueError(f"regex '{pattern}' can run away ({reason}); simplify it, or use "
                         f"keywords with `within:`")


def _runaway(items: list[Any], inside_repeat: bool) -> str | None:
    """Why this parsed pattern can backtrack without end, or None."""
    for op, arg in items:
        reason = None
        if op in _REPEATS:
            low, high, sub = arg
            unbounded = high == sre_constants.MAXREPEAT or high > 100
            if inside_repeat and unbounded:
                return "a repetition inside another repetition"
            reason = _runaway(list(sub), inside_repeat or high > 1)
        elif op == sre_constants.GROUPREF:
            return "a back-reference"
        elif op == sre_constants.SUBPATTERN:
            reason = _runaway(list(arg[-1]), inside_repeat)
        elif op == sre_constants.ATOMIC_GROUP:
            reason = _runaway(list(arg), inside_repeat)
        elif op == sre_constants.BRANCH:
            if inside_repeat and _branches_overlap(arg[1]):
                return "repeated alternatives that can match the same text"
            reason = next(filter(None, (_runaway(list(b), inside_repeat) for b in arg[1])), None)
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            reason = _runaway(list(arg[1]), inside_repeat)
        if reason:
            return reason
    return None


def _branches_overlap(branches: list[Any]) -> bool:
    seen: set[str] = set()
    for branch in branches:
        first = _first_chars(list(branch))
        if first & seen or (_WILD in first and seen) or (_WILD in seen and first):
            return True
        seen |= first
    return False


def _first_chars(items: list[Any]) -> set[str]:
    """The characters a parsed sequence can start with ("" for the empty match)."""
    for op, arg in items:
        if op == sre_constants.AT:
            continue                                    # anchors take no character
        if op == sre_constants.LITERAL:
            return {chr(arg).lower()}
        if op == sre_constants.SUBPATTERN:
            return _first_chars(list(arg[-1])) or {""}
        if op == sre_constants.BRANCH:
            return set().union(*(_first_chars(list(b)) for b in arg[1]))
        return {_WILD}
    return {""}


# --- loading a directory ----------------------------------------------------------------------

@dataclass
class RuleFile:
    """One parsed file, before cross-file references are resolved."""

    path: str
    model: RuleFileModel | _PlainFile
    data: Any
    problems: list[Problem] = field(default_factory=list)
    lines: dict[str, list[int]] = field(default_factory=dict)   # key -> line by model index
    stamp: tuple[int, int] = (0, 0)     # (mtime_ns, size) of the file when it was read
    text: str = ""                      # kept when read the fast way, to locate lines later

    def located(self) -> Any:
        """The data with line numbers (YDict/YList): parsed again only when a problem found
        after validation (a reference across files) needs a line to report."""
        if self.data is None and self.text:
            self.data, _ = parse_yaml(self.text, self.path)
        return self.data


def rule_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def read_rule_file(path: Path) -> RuleFile:
    """Parse and validate one file; invalid rules and actors are dropped and reported."""
    try:
        stat = path.stat()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return RuleFile(str(path), RuleFileModel(), None, [Problem(str(path), 1, str(exc))])
    parsed = parse_rule_text(text, str(path))
    parsed.stamp = (stat.st_mtime_ns, stat.st_size)
    return parsed


def _unchanged(path: Path, known: RuleFile | None) -> bool:
    try:
        stat = path.stat()
    except OSError:
        return False
    return known is not None and not known.problems and known.stamp == (stat.st_mtime_ns,
                                                                         stat.st_size)


def parse_rule_text(text: str, path: str) -> RuleFile:
    """Parse and validate one file's text. A file that is valid as it stands takes the fast
    way (plain data from rapidyaml, the whole file validated at once, item lines found in
    the text); any doubt or problem takes the line-keeping way, which locates each problem."""
    fast = _read_fast(text, path)
    if fast is not None:
        return fast
    data, problems = parse_yaml(text, path)
    if data is None:
        return RuleFile(path, RuleFileModel(), data, problems)
    if not isinstance(data, YDict):
        return RuleFile(path, RuleFileModel(), data,
                        problems + [Problem(path, 1, "expected a mapping with 'actors' "
                                                     "and/or 'rules'")])
    model, errors = validate(RuleFileModel, data, path)
    kept: dict[str, list[int]] = {}
    if model is None:
        model, more, kept = _salvage(data, path)
        problems += more
    lines = {}
    for key in ("actors", "rules"):
        raw = data.get(key)
        raw_lines = raw.item_lines if isinstance(raw, YList) else []
        lines[key] = [raw_lines[raw_index]
                      for raw_index in kept.get(key, range(len(raw_lines)))]
    return RuleFile(path, model, data, problems, lines)


def _read_fast(text: str, path: str) -> RuleFile | None:
    data = plain_yaml(text)
    if not isinstance(data, dict):
        return None
    try:
        plain = _FAST_FILE.validate_python(data)
    except ValidationError:
        return None
    rules = plain.get("rules", [])
    if _refused(rules):
        return None
    model = _PlainFile(plain.get("actors", []), plain.get("actor_groups", {}), rules)
    lines: dict[str, list[int]] = {}
    for key in ("actors", "rules"):
        items = data.get(key) or []
        found = _item_lines(text, key) if items else []
        if found is None or len(found) != len(items):
            return None
        lines[key] = found
    return RuleFile(path, model, None, [], lines, text=text)


def _item_lines(text: str, key: str) -> list[int] | None:
    """The line of each item of the top-level block sequence under `key`, read off the text:
    the dashes at the indentation of the first one, up to the next top-level key."""
    # Patterns start with a literal newline (the text is given one in front): a fast scan.
    text = "\n" + text
    heads = list(re.finditer(rf"\n{key}[ \t]*:[ \t]*(?:#[^\n]*)?(?=\n|$)", text))
    if len(heads) != 1:
        return None                     # absent, a flow sequence, or written oddly
    start = heads[0].end()
    after = re.compile(r"\n[^\s#-]").search(text, start)
    end = after.start() if after else len(text)
    first = re.compile(r"\n( *)-(?=[ \n]|$)").search(text, start, end)
    if first is None:
        return None
    items = re.compile(rf"\n{first.group(1)}-(?=[ \n]|$)")
    line = text.count("\n", 0, first.start() + 1)
    found, counted = [line], first.start() + 1
    for dash in items.finditer(text, first.start() + 1, end):
        line += text.count("\n", counted, dash.start() + 1)
        counted = dash.start() + 1
        found.append(line)
    return found


def _salvage(data: YDict, path: str
             ) -> tuple[RuleFileModel, list[Problem], dict[str, list[int]]]:
    """Validate item by item so one bad rule does not take its neighbours down.

    Also returns, per key, the raw index of each item kept.
    """
    problems: list[Problem] = []
    indexes: dict[str, list[int]] = {}
    unknown = set(data) - {"actors", "actor_groups", "rules"}
    for key in sorted(unknown, key=str):
        problems.append(Problem(path, data.key_lines[key], f"unknown key '{key}' (a typo?)"))
    kept: dict[str, Any] = {}
    for key, model in (("actors", ActorModel), ("rules", RuleModel)):
        items = data.get(key)
        if items is None:
            continue
        if not isinstance(items, YList):
            problems.append(Problem(path, data.key_lines.get(key, 1), f"'{key}' must be a list"))
            continue
        good = []
        indexes[key] = []
        for index, item in enumerate(items):
            value, errors = validate(model, item, path, where=(key, index))
            problems += errors
            if value is not None:
                good.append(value)
                indexes[key].append(index)
        kept[key] = good
    groups, errors = validate(RuleFileModel, {"actor_groups": data.get("actor_groups") or {}},
                              path)
    problems += errors
    kept["actor_groups"] = groups.actor_groups if groups else {}
    return RuleFileModel(**kept), problems, indexes


def load_rules(directory: Path, last_good: dict[str, RuleFile] | None = None
               ) -> tuple[RuleSet, list[Problem], dict[str, RuleFile]]:
    """Load every rule file of a directory into one RuleSet.

    Returns the rule set, every problem, and the per-file versions now in service (pass them
    back as `last_good` on the next reload so a broken edit keeps the previous good file).
    """
    problems: list[Problem] = []
    if not directory.is_dir():
        return RuleSet(), [Problem(str(directory), 0, "rules directory does not exist")], {}
    with CollectorPaused():
        return _load_rules(directory, last_good, problems)


class CollectorPaused:
    """The cyclic garbage collector paused for a `with` block (left paused if it already was).

    Loading and compiling rules build hundreds of thousands of small objects and no cycles;
    the collector re-walking them as they pile up made a 10,000-rule load grow worse than
    linearly. (A class, not a generator: leaving a generator's block raises StopIteration,
    whose allocation sets off the collector's pass over those objects right there.)"""

    def __enter__(self) -> None:
        self.collecting = gc.isenabled()
        gc.disable()

    def __exit__(self, *_exc: object) -> None:
        if self.collecting:
            gc.enable()


def _load_rules(directory: Path, last_good: dict[str, RuleFile] | None,
                problems: list[Problem]) -> tuple[RuleSet, list[Problem], dict[str, RuleFile]]:
    in_service: dict[str, RuleFile] = {}
    for path in rule_files(directory):
        previous = (last_good or {}).get(str(path))
        if _unchanged(path, previous):          # only edited files are parsed again
            assert previous is not None
            in_service[previous.path] = previous
            continue
        current = read_rule_file(path)
        problems += current.problems
        in_service[current.path] = previous if current.problems and previous else current
    ruleset, more = resolve(list(in_service.values()))
    return ruleset, problems + more, in_service


def resolve(files: list[RuleFile]) -> tuple[RuleSet, list[Problem]]:
    """Resolve actor references across files and drop rules that cannot be resolved."""
    actors, groups, problems = _collect_actors(files)
    resolver = _Resolver({actor_id: actor.terms() for actor_id, actor in actors.items()},
                         groups)
    rules: list[RuleDef] = []
    seen: dict[str, tuple[str, int]] = {}
    enabled = _RULE_DEFAULTS["enabled"]
    for rule_file in files:
        path = rule_file.path
        for index, model in enumerate(rule_file.model.rules):
            where = _locate(rule_file, "rules", index)
            entry = (path, where)
            values = _values(model)
            first = seen.setdefault(values["id"], entry)
            if first is not entry:
                problems.append(Problem(path, where, f"duplicate rule id '{values['id']}' "
                                                     f"(first in {first[0]}:{first[1]})"))
                continue
            rule, errors = resolver.rule(values, path, where)
            if rule is None:
                problems += errors
            elif values.get("enabled", enabled):
                rules.append(rule)
    return RuleSet(tuple(rules)), problems


def _collect_actors(files: list[RuleFile]
                    ) -> tuple[dict[str, ActorModel], dict[str, list[str]], list[Problem]]:
    actors: dict[str, ActorModel] = {}
    groups: dict[str, list[str]] = {}
    problems: list[Problem] = []
    for rule_file in files:
        for index, actor in enumerate(rule_file.model.actors):
            if actor.id in actors:
                line = _locate(rule_file, "actors", index)
                problems.append(Problem(rule_file.path, line, f"duplicate actor id '{actor.id}'"))
            actors.setdefault(actor.id, actor)
        for name, members in rule_file.model.actor_groups.items():
            unknown = [m for m in members if m not in actors and m not in groups]
            if name in actors or name in groups:
                problem = f"actor group '{name}' reuses an existing actor or group id"
            elif unknown:
                problem = f"actor group '{name}' names unknown actor(s): {', '.join(unknown)}"
            else:
                groups[name] = _expand(members, groups)
                continue
            line = _key_line(rule_file.located(), "actor_groups", name)
            problems.append(Problem(rule_file.path, line, problem))
    return actors, groups, problems


def _expand(members: list[str], groups: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for member in members:
        out += groups.get(member, [member])
    return out


class _Resolver:
    """Turns validated rules into RuleDefs, given every file's actors and actor groups.

    A keyword's TermDef is made once for every rule that writes it the same way: the same
    string (the fast read leaves a one-word term a string) or an equal term model; a group of
    actors alone (`actors: [hamas]`, written in many rules) is made once for all of them.
    """

    def __init__(self, actors: dict[str, tuple[TermDef, ...]],
                 groups: dict[str, list[str]]) -> None:
        self.actors = actors
        self.groups = groups
        self.known: dict[Any, TermDef] = {}
        self.shared: dict[tuple[tuple[str, ...], int], GroupDef] = {}

    def rule(self, values: dict[str, Any], path: str, line: int
             ) -> tuple[RuleDef | None, list[Problem]]:
        """The RuleDef of a rule's `_values`, or None and the problems (unknown actors) that
        drop it."""
        get, default = values.get, _RULE_DEFAULTS
        problems: list[Problem] = []
        every, some, none = (self.groups_of(found, values["id"], path, line, problems)
                             if (found := get(key)) else ()
                             for key in ("all", "any", "none"))
        semantic = get("semantic")
        prefilter = self.groups_of(semantic.prefilter, values["id"], path, line, problems) \
            if semantic else ()
        if problems:
            return None, problems
        meaning = None
        if semantic is not None:
            prefilter = prefilter or (GroupDef(tuple(t for g in every + some for t in g.terms)),)
            meaning = SemanticDef(tuple(semantic.examples), semantic.threshold, prefilter)
        within = get("within")
        examples = get("examples")
        sources = get("sources")
        fields = get("fields")
        return _RULE((values["id"], values["title"], every, some, none,
                      "words" if within else get("scope", default["scope"]), within or 0,
                      FIELDS if fields is None else tuple(fields),
                      frozenset(sources) if sources else None, path, line,
                      str(Path(path).parent / examples) if examples else None, meaning)), []

    def groups_of(self, groups: list[Any], rule_id: str, path: str, line: int,
                  problems: list[Problem]) -> tuple[GroupDef, ...]:
        known, actors, shared = self.known, self.actors, self.shared
        out = []
        for group in groups:
            values = _values(group)
            keywords = values.get("keywords")
            members = values.get("actors", ())
            mentions = values.get("min_mentions", _MIN_MENTIONS)
            key = None
            if not keywords:         # actors only: one GroupDef for every rule naming them
                key = (tuple(members), mentions)
                if key in shared:
                    out.append(shared[key])
                    continue
                terms: list[TermDef] = []
            else:
                terms = [known.get(k) or self.keyword(k) for k in keywords]
            unknown = []
            for member in members:
                named = actors.get(member)
                if named is not None:
                    terms += named
                elif member in self.groups:
                    for actor_id in self.groups[member]:
                        terms += actors[actor_id]
                else:
                    unknown.append(member)
            if unknown:
                problems.append(Problem(path, line, f"rule '{rule_id}': unknown actor "
                                                    f"{', '.join(repr(u) for u in unknown)}"))
                continue
            made = _GROUP((tuple(terms), mentions))
            if key is not None:
                shared[key] = made
            out.append(made)
        return tuple(out)

    def keyword(self, written: str | TermModel) -> TermDef:
        term = self.known[written] = term_def(written)
        return term


# The fields in order, built in C: NamedTuple's own constructor is a Python function.
_RULE, _GROUP = RuleDef._make, GroupDef._make


def _locate(rule_file: RuleFile, key: str, index: int) -> int:
    """The line of the validated item `index` under `key`."""
    lines = rule_file.lines.get(key, [])
    return lines[index] if index < len(lines) else 1


def _key_line(data: Any, key: str, sub: str) -> int:
    node = data.get(key) if isinstance(data, YDict) else None
    if isinstance(node, YDict):
        return node.key_lines.get(sub, node.line)
    return 1
