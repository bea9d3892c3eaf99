"""The fast YAML read gives exactly what the line-keeping loader gives, or steps aside."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitor import rules as rules_module
from monitor.rules import RuleFileModel, parse_rule_text
from monitor.yamlfile import UNSURE, parse_yaml, plain_yaml

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    "a: 1\nb: -3\nc: 1.5\nd: true\ne: null\nf:\n",
    "title: Gaza truce!\nterms: [negotiat*, 'it''s', \"q \\\"x\\\"\"]\n",
    "a: plain\n  continued\nb: >-\n  folded\n  text\n\n  para\nc: |\n  kept\n  lines\n",
    "a: yes", "a: No", "a: on", "a: ~", "a: Null", "a: 010", "a: 0x1F", "a: 1_000",
    "a: +1", "a: .5", "a: 1e3", "a: 1.0e3", "a: 1.0e+3", "a: 1E5", "a: [1e3]",
    "a: .inf", "a: nan", "a: NaN", "a: 1:20", "a: 2023-10-07", "a: '2023-10-07'",
    "a: \"it is 2023-10-07\"", "a: &x 1\nb: *x", "a: !!str 12", "a: 1\na: 2",
    "---\na: 1", "a: 1\n---\nb: 2", "%YAML 1.1\n---\na: b", "? a\n: b", "<<: {a: 1}",
    "\"yes\": 1", "1: one", "a: [1, 2", "a: b: c", "a:\n\tb: 1", "", "# only a comment\n",
    "- a\n- b\n", "just a scalar", "a: Is it over?\nb: 'why?'",
    "a: \"tab\\there, \\u00e9, \\x01\"",
    # More nodes than the tree is given room for up front (it grows), and JSON over twice
    # the YAML's size (the emit falls back to measuring its output first).
    "a: " + "[" * 40 + "x" + "]" * 40 + "\n",
    "".join(f"k{i}:\n" for i in range(300)),
]


@pytest.mark.parametrize("text", CASES)
def test_the_fast_read_is_pyyaml_or_steps_aside(text: str) -> None:
    fast = plain_yaml(text)
    if fast is UNSURE:
        return
    assert fast == yaml.safe_load(text)
    assert type(fast) is type(yaml.safe_load(text))


def test_json_bigger_than_the_buffer_given_is_emitted_the_measuring_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ryml
    calls = []
    measured = ryml.emit_json
    monkeypatch.setattr(ryml, "emit_json", lambda tree: calls.append(1) or measured(tree))
    assert plain_yaml("a: 1\n") == {"a": 1} and not calls
    text = "".join(f"k{i}:\n" for i in range(300))
    assert plain_yaml(text) == {f"k{i}": None for i in range(300)} and calls


def test_typical_rule_files_take_the_fast_way() -> None:
    text = (ROOT / "rules" / "gaza.yaml").read_text(encoding="utf-8")
    assert plain_yaml(text) is not UNSURE
    # A date (`during: {from: 2023-10-07}`) is a date to PyYAML: that file takes the slow way.
    assert plain_yaml((ROOT / "rules" / "actors.yaml").read_text(encoding="utf-8")) is UNSURE


@pytest.mark.parametrize("path", sorted((ROOT / "rules").glob("*.yaml"))
                         + [ROOT / "seeds" / "sources.yaml"], ids=lambda p: p.name)
def test_shipped_files_read_alike_both_ways(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    fast = plain_yaml(text)
    if fast is not UNSURE:
        assert fast == yaml.safe_load(text)


def test_a_rule_file_read_fast_has_the_same_rules_and_lines(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    text = ("actors:\n  - id: hamas\n    aliases: [Hamas]\n# a comment\nrules:\n"
            "  - id: one\n    title: One\n    all:\n      - keywords: [truce, ceasefire]\n"
            "      - actors: [hamas]\n\n  - id: two\n    title: Two\n    any:\n"
            "    - keywords: ['deal*']\n")
    fast = parse_rule_text(text, "r.yaml")
    assert fast.data is None and fast.text == text          # the fast way was taken
    monkeypatch.setattr(rules_module, "plain_yaml", lambda _text: UNSURE)
    slow = parse_rule_text(text, "r.yaml")
    assert slow.data is not None
    # The fast read keeps one-word terms as strings; resolved, both are the same rules.
    assert rules_module.resolve([fast]) == rules_module.resolve([slow])
    assert fast.lines == slow.lines == {"actors": [2], "rules": [6, 12]}
    assert not fast.problems and not slow.problems


EVERY_FIELD = ("actors:\n  - id: hamas\n    aliases: [Hamas, {term: HMS, case_sensitive: true}]\n"
               "actor_groups:\n  sides: [hamas]\nrules:\n"
               "  - id: full\n    title: Every field\n    scope: paragraph\n"
               "    fields: [title, body]\n    sources: [bbc, aj]\n    examples: ex.tsv\n"
               "    all:\n      - name: truce\n        min_mentions: 2\n"
               "        keywords: [truce, 'deal*', {regex: 'cease-?fire'},\n"
               "                   {term: pause, inflect: true}]\n"
               "      - actors: [sides]\n    none:\n      - keywords: [football]\n"
               "    semantic:\n      threshold: 0.8\n      examples: ['  A truce is agreed  ']\n"
               "      prefilter:\n        - keywords: [Gaza]\n"
               "  - id: near\n    title: Near\n    within: 12\n    enabled: false\n"
               "    any:\n      - keywords: [hostage]\n")


@pytest.mark.parametrize("text", [EVERY_FIELD, (ROOT / "rules" / "gaza.yaml").read_text()],
                         ids=["every field", "gaza.yaml"])
def test_the_fast_read_resolves_to_the_rules_of_the_full_schema(
        text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules and groups read fast are plain dicts with only the keys written; resolved, with
    the models' defaults, they are the rules the full schema gives."""
    actors = parse_rule_text((ROOT / "rules" / "actors.yaml").read_text(), "actors.yaml")
    fast = parse_rule_text(text, "r.yaml")
    assert fast.data is None and not fast.problems               # the fast way was taken
    monkeypatch.setattr(rules_module, "plain_yaml", lambda _text: UNSURE)
    slow = parse_rule_text(text, "r.yaml")
    assert slow.data is not None and not slow.problems
    shared = [] if text.startswith("actors:") else [actors]   # gaza.yaml's actors are there
    resolved = [rules_module.resolve(shared + [parsed]) for parsed in (fast, slow)]
    assert resolved[0] == resolved[1]
    assert not resolved[0][1] and resolved[0][0].rules


@pytest.mark.parametrize("rule,message", [
    ("    none:\n      - keywords: [x]\n", "needs at least one 'all' or 'any' group"),
    ("    all:\n      - min_mentions: 2\n", "empty group"),
    ("    fields: []\n    all:\n      - keywords: [x]\n", "fields must name at least one"),
    ("    all:\n      - keywords: [x]\n    semantic:\n      threshold: 0.5\n"
     "      examples: [a]\n      prefilter:\n        - name: nothing\n", "empty group"),
    ("    all:\n      - keywords: [x]\n    semantic:\n      threshold: 0.5\n"
     "      examples: ['  ']\n", "semantic examples must not be empty"),
])
def test_what_the_models_validators_refuse_the_fast_read_refuses(rule: str, message: str
                                                                 ) -> None:
    parsed = parse_rule_text(f"rules:\n  - id: a\n    title: t\n{rule}", "bad.yaml")
    assert parsed.data is not None           # read again the line-keeping way, and located
    assert any(message in p.message and p.line > 1 for p in parsed.problems), parsed.problems


def test_the_fast_read_knows_every_validator_of_the_rule_models() -> None:
    """`_refused` checks, on plain dicts, what these validators check: a validator added to
    the models must be added there too (or the fast read would let its mistakes through)."""
    def validators(model: type) -> set[str]:
        found = model.__pydantic_decorators__  # type: ignore[attr-defined]
        return set(found.model_validators) | set(found.field_validators)

    assert validators(rules_module.RuleModel) == {"_has_positive_group", "_some_fields"}
    assert validators(rules_module.GroupModel) == {"_not_empty"}


def test_a_problem_found_after_the_fast_read_is_still_located() -> None:
    text = "actor_groups:\n  sides: [nobody]\nrules: []\n"
    parsed = parse_rule_text(text, "g.yaml")
    _, problems = rules_module.resolve([parsed])
    assert [(p.line, "unknown actor" in p.message) for p in problems] == [(2, True)]


def test_a_syntax_error_is_reported_once_and_nothing_else_reaches_stderr(
        capfd: pytest.CaptureFixture[str]) -> None:
    text = "rules:\n  - id: a\n    title: [unclosed\n"
    assert plain_yaml(text) is UNSURE
    parsed = parse_rule_text(text, "bad.yaml")
    assert parsed.problems and parsed.problems[0].message.startswith("YAML syntax")
    assert capfd.readouterr().err == ""


def test_validation_on_plain_data_matches_the_located_data() -> None:
    text = (ROOT / "rules" / "gaza.yaml").read_text(encoding="utf-8")
    located, _ = parse_yaml(text, "gaza.yaml")
    assert RuleFileModel.model_validate(plain_yaml(text)) == \
        RuleFileModel.model_validate(located)


def test_only_the_parsers_own_message_is_kept_off_stderr(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever else reaches the process's stderr while rapidyaml parses is written back."""
    import os

    import ryml

    def noisy(_buffer: bytearray, tree: object = None) -> None:
        os.write(2, b"another thread's log line\n")
        os.write(2, b"line=1 col=1 (3B): ERROR: [parse] parse error\n")
        os.write(2, b"/project/cpp/src/c4/yml/parse_engine.def.hpp:1: (detected here)\n")
        raise ValueError("parse error")
    monkeypatch.setattr(ryml, "parse_in_place", noisy)
    assert plain_yaml("a: 1\n") is UNSURE
    assert capfd.readouterr().err == "another thread's log line\n"
