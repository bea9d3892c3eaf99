"""Rule evaluation on labelled examples: precision, recall, F1 and every error, explained.

An admin trusts a rule once its figures on labelled news are known. Examples are a TSV or CSV
file with `text` and `label` columns (label 1/0, yes/no, true/false) and optionally `title`
and `id` (or `item_id`); `--text-column` picks another text column (for example the original
Arabic or Hebrew of a translated item). Rows whose text is empty are left out and counted.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError
from monitor.match import Engine
from monitor.models import Article, Match

_TRUE = {"1", "yes", "true", "y", "relevant", "pos", "positive"}
_FALSE = {"0", "no", "false", "n", "irrelevant", "neg", "negative"}


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: bool
    title: str = ""
    line: int = 0


@dataclass
class Outcome:
    example: Example
    predicted: bool
    match: Match | None


@dataclass
class Evaluation:
    rule_id: str
    source: str
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: int = 0
    mode: str = "keywords"       # or "keywords + meaning (<model>)"

    def count(self, label: bool, predicted: bool) -> int:
        return sum(1 for o in self.outcomes
                   if o.example.label == label and o.predicted == predicted)

    @property
    def tp(self) -> int:
        return self.count(True, True)

    @property
    def fp(self) -> int:
        return self.count(False, True)

    @property
    def fn(self) -> int:
        return self.count(True, False)

    @property
    def tn(self) -> int:
        return self.count(False, False)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def summary(self) -> str:
        return (f"precision {self.precision:.3f}  recall {self.recall:.3f}  F1 {self.f1:.3f}  "
                f"(TP {self.tp}, FP {self.fp}, FN {self.fn}, TN {self.tn}; "
                f"{len(self.outcomes)} examples)")

    def as_dict(self) -> dict[str, Any]:
        def row(outcome: Outcome) -> dict[str, Any]:
            return {"id": outcome.example.id, "line": outcome.example.line,
                    "text": outcome.example.text, "why": why(outcome)}
        return {"rule": self.rule_id, "examples": self.source, "mode": self.mode,
                "n": len(self.outcomes),
                "skipped": self.skipped, "tp": self.tp, "fp": self.fp, "fn": self.fn,
                "tn": self.tn, "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "f1": round(self.f1, 4),
                "false_positives": [row(o) for o in self.outcomes
                                    if o.predicted and not o.example.label],
                "false_negatives": [row(o) for o in self.outcomes
                                    if o.example.label and not o.predicted]}


def read_examples(path: Path, text_column: str = "text") -> tuple[list[Example], int]:
    """The labelled examples of a TSV/CSV file, and how many rows had no text to judge."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise ConfigError(f"cannot read labels {path}: {exc}") from None
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with handle:
        first = handle.readline()
        handle.seek(0)
        delimiter = "\t" if "\t" in first or path.suffix.lower() in (".tsv", ".tab") else ","
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE
                                if delimiter == "\t" else csv.QUOTE_MINIMAL)
        columns = reader.fieldnames or []
        for needed in (text_column, "label"):
            if needed not in columns:
                raise ConfigError(f"{path}:1: no '{needed}' column (columns: "
                                  f"{', '.join(columns) or 'none'})")
        examples, skipped = [], 0
        for number, row in enumerate(reader, start=2):
            text = (row.get(text_column) or "").strip()
            if not text:
                skipped += 1
                continue
            examples.append(Example(id=row.get("id") or row.get("item_id") or f"line {number}",
                                    text=text, label=_label(row.get("label"), path, number),
                                    title=(row.get("title") or "").strip(), line=number))
    return examples, skipped


def _label(value: str | None, path: Path, line: int) -> bool:
    word = (value or "").strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(f"{path}:{line}: label '{value}' is not 1/0, yes/no or true/false")


def evaluate(engine: Engine, rule_id: str, examples: list[Example], source: str = "",
             skipped: int = 0) -> Evaluation:
    """Run one rule of `engine` over every example (the text as the body, as a feed item's)."""
    result = Evaluation(rule_id, source, skipped=skipped, mode=engine_mode(engine, rule_id))
    for example in examples:
        article = Article(url="", title=example.title, body=example.text)
        found = next((m for m in engine.match(article) if m.rule_id == rule_id), None)
        result.outcomes.append(Outcome(example, found is not None, found))
    return result


def engine_mode(engine: Engine, rule_id: str) -> str:
    """How the engine decides on this rule: keywords, or keywords and the meaning model."""
    rule = engine.ruleset.get(rule_id)
    if rule is None or rule.semantic is None:
        return "keywords"
    if not engine.uses_meaning:
        return "keywords only (semantic part not used)"
    from monitor.semantic import MODEL_NAME
    return f"keywords + meaning ({getattr(engine.model, 'name', MODEL_NAME)})"


def why(outcome: Outcome) -> str:
    """The rule's explanation for a hit, or what was missing for a miss."""
    if outcome.match is None:
        return "did not fire"
    return explain(outcome.match)


def explain(found: Match) -> str:
    actors = [a for a in found.actors if a not in {h.actor for h in found.hits if h.implied}]
    parts = [f"terms: {', '.join(found.terms)}"]
    if actors:
        parts.append(f"actors: {', '.join(actors)}")
    parts += found.reasons()
    return "; ".join(parts) + f" | {found.marked_snippet()}"


def print_evaluation(evaluation: Evaluation, out: Any) -> None:
    print(f"rule {evaluation.rule_id} on {evaluation.source} [{evaluation.mode}]", file=out)
    print(f"  {evaluation.summary()}", file=out)
    if evaluation.skipped:
        print(f"  {evaluation.skipped} row(s) without text left out", file=out)
    for title, label, predicted in (("false positives", False, True),
                                    ("false negatives", True, False)):
        rows = [o for o in evaluation.outcomes
                if o.example.label == label and o.predicted == predicted]
        print(f"\n{title} ({len(rows)}):", file=out)
        for outcome in rows:
            print(f"  [{outcome.example.id}] {outcome.example.text[:200]}", file=out)
            print(f"      {why(outcome)[:400]}", file=out)
