"""`news-monitor test-rule`: what one rule would match and why, before subscribers see it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor import semantic
from conftest import ROOT, SEED, SHARED, Workdir, rss, run_cli, seed_item
from servers import FeedServer


def test_test_rule_over_stored_articles(workdir: Workdir, feeds: FeedServer) -> None:
    feeds.put("/wire.xml", rss([seed_item(), {"title": "Markets calm",
                                              "link": "https://news.example.org/m",
                                              "body": "<p>Nothing happened.</p>"}]))
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "a", "console": True, "rules": ["gaza-ceasefire"]},
                           {"name": "b", "console": True, "rules": "*"}]
    assert workdir.cli("once").returncode == 0
    result = workdir.cli("test-rule", "gaza-ceasefire", "--days", "1")
    assert result.returncode == 0, result.stderr
    assert "MATCH Ceasefire Negotiations in Gaza Break Down" in result.stdout
    assert "why: " in result.stdout and "actors hamas" in result.stdout
    assert "**Hamas**" in result.stdout
    assert "1 of 2 article(s) match" in result.stdout and "2 alert(s)" in result.stdout


def test_test_rule_on_a_file_and_unknown_rule(workdir: Workdir) -> None:
    result = workdir.cli("test-rule", "gaza-ceasefire", "--file", str(SEED))
    assert result.returncode == 0, result.stderr
    assert "1 of 1 article(s) match" in result.stdout
    missing = workdir.cli("test-rule", "no-such-rule", "--file", str(SEED))
    assert missing.returncode == 2 and "no rule 'no-such-rule'" in missing.stderr


SAMPLE = ROOT / "rules" / "examples" / "gaza-ceasefire.tsv"


def test_test_rule_labels_prints_figures_and_errors(tmp_path: Path) -> None:
    # Shipped rule on a hand-made sample: a1, a2 (Hamas implied by Gaza), a8 (Arabic) found;
    # a3 missed (no ceasefire word); a7 (the truce as a time anchor) rejected.
    result = run_cli("test-rule", "gaza-ceasefire", "--labels", str(SAMPLE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "TP 3, FP 0, FN 1, TN 4; 8 examples" in result.stdout
    assert "precision 1.000  recall 0.750  F1 0.857" in result.stdout
    assert "false positives (0)" in result.stdout
    assert "[a3]" in result.stdout and "did not fire" in result.stdout


def test_test_rule_labels_json(tmp_path: Path) -> None:
    result = run_cli("test-rule", "gaza-ceasefire", "--labels", str(SAMPLE), "--json",
                     cwd=tmp_path)
    figures = json.loads(result.stdout)
    assert (figures["tp"], figures["fp"], figures["fn"], figures["tn"]) == (3, 0, 1, 4)
    assert figures["false_positives"] == []
    assert [row["id"] for row in figures["false_negatives"]] == ["a3"]


def test_labels_file_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\nsome text\tmaybe\n")
    result = run_cli("test-rule", "gaza-ceasefire", "--labels", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and f"{bad}:2: label 'maybe'" in result.stderr


DEV = SHARED / "labels-dev" / "dev-set.tsv"


@pytest.mark.skipif(not DEV.exists(), reason=f"development labels not found at {DEV}")
def test_shipped_rule_on_the_development_set(tmp_path: Path) -> None:
    """The figures the README gives, measured through the real command: keywords alone, and
    with the semantic extra (installed with the tests)."""
    def figures(*extra: str) -> dict:
        result = run_cli("test-rule", "gaza-ceasefire", "--labels", str(DEV), "--json", *extra,
                         cwd=tmp_path, timeout=180)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    keywords = figures("--keywords-only")
    assert keywords["n"] == 300 and keywords["mode"].startswith("keywords only")
    assert keywords["precision"] >= 0.95 and keywords["f1"] >= 0.80
    assert any("implied by 'Gaza'" in row["why"] for row in keywords["false_positives"]) or \
        keywords["fp"] == 0
    original = figures("--keywords-only", "--text-column", "original_text")
    assert original["n"] == 100 and original["recall"] >= 0.6
    if semantic.available():
        meaning = figures()
        assert meaning["mode"].startswith("keywords + meaning (multilingual-e5-small")
        assert meaning["precision"] >= 0.95 and meaning["f1"] >= 0.90
        assert meaning["tp"] > keywords["tp"]


def test_check_reports_the_figures_of_a_rule_with_examples(workdir: Workdir) -> None:
    result = workdir.cli("check")
    assert "rule gaza-ceasefire on " in result.stdout
    assert "TP 3, FP 0, FN 1, TN 4; 8 examples" in result.stdout
    rules = workdir.path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text("rules:\n  - id: r\n    title: R\n    examples: missing.tsv\n"
                                  "    all: [{keywords: [truce]}]\n")
    workdir.config["rules"] = "rules"
    broken = workdir.cli("check")
    assert broken.returncode == 1
    assert "r.yaml:2: rule 'r': examples: cannot read labels" in broken.stdout
