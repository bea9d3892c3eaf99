"""Matching semantics as a table (one case a row), and the engine against a reference."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from conftest import ROOT, SEED
from monitor.match import Engine
from monitor.models import Article
from monitor.rules import load_rules, parse_rule_text, resolve
from reference import reference_match

ACTORS = (ROOT / "rules" / "actors.yaml").read_text()


def engine_for(rule_yaml: str) -> Engine:
    files = [parse_rule_text(ACTORS, "actors.yaml"), parse_rule_text(rule_yaml, "case.yaml")]
    problems = [p for f in files for p in f.problems]
    ruleset, more = resolve(files)
    assert not problems + more, problems + more
    return Engine(ruleset)


def rule(body: str, scope: str = "article") -> str:
    return f"rules:\n  - id: r\n    title: case\n    scope: {scope}\n" + body


ARABIC = rule("    all:\n      - keywords: [{term: هدنة, inflect: true}]\n"
              "      - actors: [hamas]\n")
ARABIC_PHRASE = rule("    all:\n      - keywords: [{term: وقف إطلاق النار, inflect: true}]\n"
                     "      - actors: [hamas]\n")
HEBREW = rule("    all:\n      - keywords: [{term: הפוגה, inflect: true}]\n"
              "      - actors: [hamas]\n")
HEBREW_DEAL = rule("    all:\n      - keywords: [{term: עסקת חטופים, inflect: true}]\n"
                   "      - actors: [hamas]\n")
KW_HAMAS = rule("    all:\n      - keywords: [cease-fire, truce]\n      - actors: [hamas]\n")
SENTENCE = rule("    all:\n      - keywords: [cease-fire]\n      - actors: [hamas]\n", "sentence")
PARAGRAPH = rule("    all:\n      - keywords: [cease-fire]\n      - actors: [hamas]\n", "paragraph")
WITHIN5 = rule("    within: 5\n    all:\n      - keywords: [cease-fire]\n      - actors: [hamas]\n")
US = rule("    all:\n      - actors: [united-states]\n")
PREFIX = rule("    all:\n      - keywords: [negotiat*]\n")
INFLECT = rule("    all:\n      - keywords: [{term: truce, inflect: true}]\n")
PLAIN_TRUCE = rule("    all:\n      - keywords: [truce]\n")
PHRASE = rule("    all:\n      - keywords: [prisoner exchange]\n")
FOLD = rule("    all:\n      - keywords: [{term: Egypte, fold_diacritics: true}]\n")
NOFOLD = rule("    all:\n      - keywords: [Egypte]\n")
REGEX = rule("    all:\n      - keywords: [{regex: 'hostages? (deal|release)'}]\n")
TITLE_ONLY = rule("    fields: [title]\n    all:\n      - actors: [hamas]\n")
MIN2 = rule("    all:\n      - actors: [israel]\n        min_mentions: 2\n")
NONE_SPORT = rule("    all:\n      - actors: [israel]\n    none:\n      - keywords: [football]\n")
ANY = rule("    all:\n      - keywords: [talks]\n    any:\n      - actors: [qatar]\n"
           "      - actors: [egypt]\n")
GROUP = rule("    all:\n      - keywords: [talks]\n      - actors: [mediators]\n")
SOURCES = rule("    sources: [wire]\n    all:\n      - actors: [hamas]\n")
APOSTROPHE = rule("    all:\n      - keywords: [\"Hamas's leaders\"]\n")
LONG_PHRASE = rule("    all:\n      - keywords: [ahead of expected truce]\n")

FAR = ("Hamas said it would study the proposal.\n" + "Other news followed. " * 30 +
       "\nA ceasefire was later discussed in Cairo.")

CASES = [
    # (name, rule, title, body, expected)
    ("ceasefire and Hamas", KW_HAMAS, "", "Hamas agreed to a ceasefire.", True),
    ("ceasefire in Ukraine, no Hamas", KW_HAMAS, "Ceasefire in Ukraine", "Russia agreed.", False),
    ("Hamas only", KW_HAMAS, "", "Hamas-run authorities said fuel ran out.", False),
    ("cease fire spelled apart", KW_HAMAS, "", "Hamas rejected the cease fire.", True),
    ("cease-fire hyphenated", KW_HAMAS, "", "Hamas rejected the cease-fire.", True),
    ("cease–fire en dash", KW_HAMAS, "", "Hamas rejected the cease–fire.", True),
    ("Hamas inside a word", KW_HAMAS, "", "The Shamasi family backed a truce.", False),
    ("Hamas with a suffix letter", KW_HAMAS, "", "Hamasx agreed to a truce.", False),
    ("Arabic alias", KW_HAMAS, "", "قالت حماس إنها تدرس الهدنة. truce", True),
    ("Arabic alias with vowel marks", KW_HAMAS, "", "حَمَاس truce", True),
    ("Hebrew alias", KW_HAMAS, "", "חמאס truce", True),
    ("full-width letters", KW_HAMAS, "", "ＨＡＭＡＳ and a truce", True),
    ("case folding", KW_HAMAS, "", "HAMAS AGREES TO TRUCE", True),
    ("same sentence", SENTENCE, "", "Hamas accepted the ceasefire on Monday. Talks go on.", True),
    ("adjacent sentences", SENTENCE, "", "Hamas spoke on Monday. A ceasefire was discussed.",
     False),
    ("abbreviation is no sentence end", SENTENCE, "",
     "The U.S. envoy said Hamas and a ceasefire plan were discussed.", True),
    ("distant paragraphs, sentence rule", SENTENCE, "", FAR, False),
    ("distant paragraphs, paragraph rule", PARAGRAPH, "", FAR, False),
    ("distant paragraphs, article rule", KW_HAMAS, "", FAR, True),
    ("same paragraph", PARAGRAPH, "", "Hamas spoke. Later a ceasefire came.\nOther.", True),
    ("within 5 words", WITHIN5, "", "Hamas rejected the new ceasefire plan.", True),
    ("7 words apart", WITHIN5, "", "Hamas said on a very cold Monday ceasefire.", False),
    ("US upper case", US, "", "The US envoy arrived.", True),
    ("us lower case", US, "", "Let us go.", False),
    ("U.S. with dots", US, "", "A U.S. official said.", True),
    ("Us at sentence start", US, "", "Us and them.", False),
    ("prefix negotiat*", PREFIX, "", "Negotiators met again.", True),
    ("prefix needs a word start", PREFIX, "", "They will renegotiate.", False),
    ("inflected plural", INFLECT, "", "Several truces failed.", True),
    ("no inflection unless asked", PLAIN_TRUCE, "", "Several truces failed.", False),
    ("phrase", PHRASE, "", "A prisoner exchange was agreed.", True),
    ("phrase words apart", PHRASE, "", "A prisoner swap and exchange.", False),
    ("long phrase", LONG_PHRASE, "", "Strikes ahead of expected truce.", True),
    ("long phrase hyphenated is another spelling", LONG_PHRASE, "",
     "israel-pounds-gaza-ahead-of-expected-truce", False),
    ("diacritics folded when asked", FOLD, "", "Les négociateurs en Égypte.", True),
    ("diacritics kept by default", NOFOLD, "", "Les négociateurs en Égypte.", False),
    ("regex term", REGEX, "", "A hostage release was announced.", True),
    ("regex term no match", REGEX, "", "A hostage was released.", False),
    ("title field only: title", TITLE_ONLY, "Hamas statement", "Nothing.", True),
    ("title field only: body", TITLE_ONLY, "Statement", "Hamas said.", False),
    ("min mentions met", MIN2, "", "Israel said. Israeli officials added.", True),
    ("one passing mention", MIN2, "Football", "The match was played in Israel.", False),
    ("none group excludes", NONE_SPORT, "", "Israel beat Spain at football.", False),
    ("none group absent", NONE_SPORT, "", "Israel announced new measures.", True),
    ("any group: one of two", ANY, "", "Talks were held in Doha with Qatar.", True),
    ("any group: neither", ANY, "", "Talks were held in Paris.", False),
    ("actor group expands", GROUP, "", "Talks in Cairo continued.", True),
    ("curly apostrophe", APOSTROPHE, "", "Hamas’s leaders met.", True),
    # Implied actors: Gaza stands for Hamas in a truce story, never in another war's.
    ("implied by Gaza", KW_HAMAS, "", "Talks on a Gaza truce resumed in Cairo.", True),
    ("implied by Rafah", KW_HAMAS, "", "Mediators seek a truce before the Rafah assault.", True),
    ("implied, cancelled by Ukraine", KW_HAMAS, "",
     "A truce in Ukraine is discussed while aid reaches Gaza.", False),
    ("implied, cancelled by Lebanon", KW_HAMAS, "",
     "Lebanon truce holds; Gaza strikes continue.", False),
    ("no context, no actor", KW_HAMAS, "", "A trade truce between Washington and Beijing.",
     False),
    ("Bahamas is not Hamas", KW_HAMAS, "", "A truce in the Bahamas fishing dispute.", False),
    # Arabic: prefixes, feminine ending, alef variants, from the bare word once.
    ("arabic prefix wa+al", ARABIC, "", "وافقت حماس على والهدنة", True),
    ("arabic bi+al", ARABIC, "", "رحبت حماس بالهدنة في غزة", True),
    ("arabic ta marbuta as ha", ARABIC, "", "حماس توافق على هدنه", True),
    ("arabic dual suffix", ARABIC, "", "حماس تقترح هدنتين", True),
    ("arabic alef variant", ARABIC_PHRASE, "", "دعوة إلى وقف اطلاق النار مع حماس", True),
    ("arabic prefixed actor", ARABIC, "", "قال قادة لحماس إن الهدنة صامدة", True),
    ("arabic other word", ARABIC, "", "حماس تصدر بيانا", False),
    # Hebrew: prefixes ו/ה/ב/ל/מ/ש and construct state.
    ("hebrew be+ha prefix", HEBREW, "", "חמאס דנה בהפוגה", True),
    ("hebrew: no article generated inside a phrase", HEBREW_DEAL, "",
     "חמאס ואישור עסקת החטופים", False),
    ("hebrew le prefix deal", HEBREW_DEAL, "", "חמאס מסכים לעסקת חטופים", True),
    ("hebrew she+ha prefix", HEBREW, "", "חמאס אמר שההפוגה תוארך", True),
]


@pytest.mark.parametrize("name,rule_yaml,title,body,expected", CASES, ids=[c[0] for c in CASES])
def test_case_table(name: str, rule_yaml: str, title: str, body: str, expected: bool) -> None:
    engine = engine_for(rule_yaml)
    matched = bool(engine.match(Article(url="", title=title, body=body)))
    assert matched is expected
    assert matched is bool(reference_match(engine.ruleset, Article(url="", title=title,
                                                                   body=body), None))


def test_source_filter() -> None:
    engine = engine_for(SOURCES)
    article = Article(url="", title="Hamas statement")
    assert engine.match(article, "wire") and not engine.match(article, "blog")


def seed_article() -> Article:
    title, _, body = SEED.read_text(encoding="utf-8").partition("\n")
    return Article(url="https://example.org/seed", title=title, body=body)


def test_seed_article_matches_the_shipped_seed_rule_and_explains_why() -> None:
    ruleset, problems, _ = load_rules(ROOT / "rules")
    assert problems == []
    matches = {m.rule_id: m for m in Engine(ruleset).match(seed_article())}
    found = matches["gaza-ceasefire"]
    assert "Hamas" in found.terms and "hamas" in found.actors
    assert {"title", "body"} <= set(found.fields)
    marked = found.marked_snippet()
    assert "**Ceasefire**" in marked and "**Hamas**" in marked


def test_seed_rule_is_paragraph_scoped() -> None:
    ruleset, _, _ = load_rules(ROOT / "rules")
    assert ruleset.get("gaza-ceasefire").scope in ("paragraph", "sentence")  # type: ignore[union-attr]


VOCAB = ["talks", "ceasefire", "truce", "Hamas", "Israel", "US", "us", "Qatar", "aid", "Cairo",
         "negotiators", "negotiation", "prisoner", "exchange", "hostage", "Égypte", "Egypte",
         "حماس", "football", "report"]
TERMS = ["cease-fire", "truce", "negotiat*", "{term: aid, inflect: true}", "prisoner exchange",
         "{term: Egypte, fold_diacritics: true}", "report", "{regex: 'hostages?'}", "talks"]
ACTOR_REFS = ["hamas", "israel", "united-states", "mediators", "qatar"]


def random_rules(rng: random.Random, count: int) -> str:
    lines = ["rules:"]
    for index in range(count):
        scope = rng.choice(["article", "paragraph", "sentence", "within"])
        lines += [f"  - id: r{index}", f"    title: random {index}"]
        lines.append("    within: %d" % rng.randint(2, 8) if scope == "within"
                     else f"    scope: {scope}")
        if rng.random() < 0.2:
            lines.append(f"    fields: [{rng.choice(['title', 'body'])}]")
        for kind in ("all", "any", "none"):
            groups = rng.randint(1, 2) if kind == "all" else rng.choice([0, 0, 1])
            if groups:
                lines.append(f"    {kind}:")
            for _ in range(groups):
                if rng.random() < 0.5:
                    lines.append(f"      - keywords: [{', '.join(rng.sample(TERMS, 2))}]")
                else:
                    lines.append(f"      - actors: [{rng.choice(ACTOR_REFS)}]")
                lines.append(f"        min_mentions: {rng.choice([1, 1, 2])}")
    return "\n".join(lines) + "\n"


def random_article(rng: random.Random) -> Article:
    def sentence() -> str:
        return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(3, 9))) + rng.choice(
            [".", "!", "?", "."])
    body = "\n".join(" ".join(sentence() for _ in range(rng.randint(1, 4)))
                     for _ in range(rng.randint(1, 4)))
    return Article(url="", title=sentence(), body=body)


def test_engine_agrees_with_the_reference_evaluator() -> None:
    rng = random.Random(20261125)
    engine = engine_for(random_rules(rng, 60))
    checked = agreed_matches = 0
    for _ in range(200):
        article = random_article(rng)
        fast = {m.rule_id for m in engine.match(article)}
        assert fast == reference_match(engine.ruleset, article, None), article
        checked += 1
        agreed_matches += len(fast)
    assert checked == 200 and agreed_matches > 50   # the sample exercises real matches


DATED = """
actors:
  - id: hamas
    aliases: [Hamas]
    implied_by:
      terms: [Gaza]
      during: {from: 2023-10-07, to: 2025-01-19}
rules:
  - id: r
    title: dated
    all:
      - keywords: [truce]
      - actors: [hamas]
"""


@pytest.mark.parametrize("published, expected", [
    (datetime(2023, 11, 24, 7, tzinfo=timezone.utc), True),     # inside the range
    (datetime(2014, 8, 26, tzinfo=timezone.utc), False),        # an earlier Gaza war
    (datetime(2025, 1, 20, tzinfo=timezone.utc), False),        # the day after 'to'
    (None, True),                                               # undated: allowed
])
def test_implied_actor_only_during_its_period(published: datetime | None,
                                              expected: bool) -> None:
    parsed = parse_rule_text(DATED, "dated.yaml")
    assert not parsed.problems
    ruleset, problems = resolve([parsed])
    engine = Engine(ruleset)
    article = Article(url="", title="A truce in Gaza", published=published)
    assert bool(engine.match(article)) is expected
    assert bool(reference_match(ruleset, article, None)) is expected
    named = Article(url="", title="Hamas accepts a truce", published=published)
    assert engine.match(named)                     # a named actor is never limited by dates


def test_a_backwards_period_names_file_and_line() -> None:
    parsed = parse_rule_text(DATED.replace("to: 2025-01-19", "to: 2020-01-01"), "dated.yaml")
    assert any("dated.yaml:" in str(p) and "'from' 2023-10-07 is after 'to' 2020-01-01"
               in str(p) for p in parsed.problems), parsed.problems
