"""Rule files: every mistake an admin can make is reported with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT
from monitor.rules import load_rules, parse_rule_text, resolve

ACTORS = (ROOT / "rules" / "actors.yaml").read_text()

CASES = [
    ("unknown key", "rules:\n  - id: a\n    title: t\n    scoep: sentence\n    all:\n"
     "      - keywords: [x]\n", 4, "unknown key 'scoep'"),
    ("duplicate YAML key", "rules:\n  - id: a\n    title: t\n    title: u\n    all:\n"
     "      - keywords: [x]\n", 4, "duplicate key 'title'"),
    ("alias no becomes False", "actors:\n  - id: norway\n    aliases: [Norway, no]\n"
     "rules: []\n", 3, "'no' is read by YAML as false"),
    ("empty group", "rules:\n  - id: a\n    title: t\n    all:\n      - min_mentions: 2\n",
     5, "empty group"),
    ("bad regex", "rules:\n  - id: a\n    title: t\n    all:\n"
     "      - keywords: [{regex: 'hostage(s'}]\n", 5, "does not compile"),
    ("runaway regex", "rules:\n  - id: a\n    title: t\n    all:\n"
     "      - keywords: [{regex: '(a+)+b'}]\n", 5, "can run away"),
    ("unknown actor", "rules:\n  - id: a\n    title: t\n    all:\n      - actors: [hamass]\n",
     2, "unknown actor 'hamass'"),
    ("duplicate rule id", "rules:\n  - id: a\n    title: t\n    all:\n      - keywords: [x]\n"
     "  - id: a\n    title: u\n    all:\n      - keywords: [y]\n", 6, "duplicate rule id 'a'"),
    ("only none groups", "rules:\n  - id: a\n    title: t\n    none:\n      - keywords: [x]\n",
     2, "needs at least one 'all' or 'any' group"),
    ("bad scope", "rules:\n  - id: a\n    title: t\n    scope: chapter\n    all:\n"
     "      - keywords: [x]\n", 4, "scope"),
    ("YAML syntax", "rules:\n  - id: a\n    title: [unclosed\n", 4, "YAML syntax"),
    ("duplicate actor id", "actors:\n  - id: hamas\n    aliases: [H]\n", 2,
     "duplicate actor id 'hamas'"),
    # Terms the fast read refuses are reported by the full schema, as before it existed.
    ("empty keyword", "rules:\n  - id: a\n    title: t\n    all:\n"
     "      - keywords: [truce, '']\n", 5,
     "rules.0.all.0.keywords.1.term: String should have at least 1 character"),
    ("number as alias", "actors:\n  - id: g7\n    aliases: [G7, 7]\n", 3,
     "actors.0.aliases.1: Input should be a valid dictionary or instance of TermModel"),
]


@pytest.mark.parametrize("name,text,line,message", CASES, ids=[c[0] for c in CASES])
def test_problems_are_located(name: str, text: str, line: int, message: str) -> None:
    files = [parse_rule_text(ACTORS, "actors.yaml"), parse_rule_text(text, "bad.yaml")]
    _, cross = resolve(files)
    problems = [str(p) for f in files for p in f.problems] + [str(p) for p in cross]
    assert any(p.startswith(f"bad.yaml:{line}:") and message in p for p in problems), problems


def test_a_broken_file_keeps_the_others_and_its_valid_rules(tmp_path: Path) -> None:
    (tmp_path / "actors.yaml").write_text(ACTORS)
    (tmp_path / "good.yaml").write_text(
        "rules:\n  - id: good\n    title: g\n    all:\n      - actors: [hamas]\n")
    (tmp_path / "mixed.yaml").write_text(
        "rules:\n  - id: fine\n    title: f\n    all:\n      - keywords: [truce]\n"
        "  - id: broken\n    title: b\n    all: []\n    colour: red\n")
    ruleset, problems, _ = load_rules(tmp_path)
    assert ruleset.ids == {"good", "fine"}
    assert any("mixed.yaml:9:" in str(p) and "colour" in str(p) for p in problems)


def test_a_broken_edit_keeps_the_last_good_version(tmp_path: Path) -> None:
    (tmp_path / "actors.yaml").write_text(ACTORS)
    path = tmp_path / "r.yaml"
    path.write_text("rules:\n  - id: v1\n    title: t\n    all:\n      - actors: [hamas]\n")
    first, _, files = load_rules(tmp_path)
    path.write_text("rules:\n  - id: v2\n    title: t\n    all:\n      - actors: [hamass]\n"
                    "  - id: [oops\n")
    second, problems, files = load_rules(tmp_path, files)
    assert problems and second.ids == {"v1"}
    path.write_text("rules:\n  - id: v3\n    title: t\n    all:\n      - actors: [israel]\n")
    third, problems, _ = load_rules(tmp_path, files)
    assert problems == [] and third.ids == {"v3"}


def test_shipped_rules_load_cleanly() -> None:
    ruleset, problems, _ = load_rules(ROOT / "rules")
    assert problems == [] and "gaza-ceasefire" in ruleset.ids
