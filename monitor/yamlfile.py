"""YAML reading that remembers line numbers and refuses what YAML would silently get wrong.

PyYAML's safe loader keeps the last of two duplicate keys without a word and reads an unquoted
`no` as False (YAML 1.1). Admins edit these files by hand, so both become problems reported
as file:line instead of rules that quietly mean something else.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml
from pydantic import BaseModel, ValidationError

from monitor.errors import ConfigError, Problem

# Words YAML 1.1 turns into booleans although nobody writing a rule means a boolean by them.
_SURPRISE_BOOLEANS = {"y", "n", "yes", "no", "on", "off"}


class YDict(dict[Any, Any]):
    """A mapping that knows the line it starts on and the line of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class YList(list[Any]):
    """A sequence that knows the line it starts on and the line of each item."""

    line: int = 0
    item_lines: list[int]


# libyaml's parser when PyYAML was built with it: ten times faster on a 10,000-rule file.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader that builds YDict/YList and records duplicate keys and surprise booleans."""

    def __init__(self, stream: str, filename: str) -> None:
        super().__init__(stream)
        self.filename = filename
        self.problems: list[Problem] = []
        self._tags: dict[tuple[str, bool], str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        # Rule files repeat the same keys and words thousands of times; resolving a plain
        # scalar's tag runs a regular expression per candidate type, so remember the answer.
        if kind is yaml.ScalarNode and isinstance(value, str):
            key = (value, bool(implicit and implicit[0]))
            tag = self._tags.get(key)
            if tag is None:
                tag = self._tags[key] = super().resolve(kind, value, implicit)
            return tag
        return super().resolve(kind, value, implicit)

    def _problem(self, node: yaml.Node, message: str) -> None:
        self.problems.append(Problem(self.filename, node.start_mark.line + 1, message))

    def construct_yaml_map(self, node: yaml.MappingNode) -> Any:
        result = YDict()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        yield result
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict, set)):
                self._problem(key_node, "a key must be a plain word or number, not a "
                                        f"{'list' if isinstance(key, list) else 'mapping'}; "
                                        "this entry is left out")
                continue
            if key in result.key_lines:
                self._problem(key_node, f"duplicate key '{key}' (first at line "
                                        f"{result.key_lines[key]}); YAML would keep only the last")
            result.key_lines[key] = key_node.start_mark.line + 1
            result[key] = self.construct_object(value_node, deep=True)

    def construct_yaml_seq(self, node: yaml.SequenceNode) -> Any:
        result = YList()
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        yield result
        result.extend(self.construct_object(child, deep=True)
                      for child in node.value)

    def construct_yaml_bool(self, node: yaml.ScalarNode) -> bool:
        value = super().construct_yaml_bool(node)
        if node.value.lower() in _SURPRISE_BOOLEANS:
            self._problem(node, f"'{node.value}' is read by YAML as {str(value).lower()}; "
                                f"write {str(value).lower()}, or quote it ('{node.value}') "
                                f"if you mean the word")
        return bool(value)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_yaml_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_yaml_seq)
_LineLoader.add_constructor("tag:yaml.org,2002:bool", _LineLoader.construct_yaml_bool)


def parse_yaml(text: str, filename: str) -> tuple[Any, list[Problem]]:
    """Parse YAML text; return the data and every problem found (syntax errors included)."""
    loader = _LineLoader(text, filename)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return None, [Problem(filename, line, f"YAML syntax: {exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return None, [Problem(filename, 1, f"YAML: {exc}")]
    finally:
        loader.dispose()
    return data, loader.problems


# --- the fast path: plain data, when it is surely what the line loader would give ---------------

class _Unsure(Exception):
    """The fast parser cannot vouch that its answer is PyYAML's: use the line loader."""


UNSURE: Any = _Unsure       # what plain_yaml answers then (None is a document's valid data)

# A JSON string whose text PyYAML's resolver would have read as something else: booleans in
# any case, nulls, YAML 1.1 integers and floats, timestamps, '=' and '<<'. (The lookahead
# lets the scan skip every string that cannot be one at the cost of one character test.)
# Searched in the UTF-8 JSON: every character it names is ASCII, and no byte of a multi-byte
# character is a quote.
_RETYPED = re.compile(rb'"(?=[yYnNtTfFoO~<=+.0-9-])(?:(?i:yes|no|true|false|on|off|null|~)|'
                      rb'[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|'
                      rb'[0-9][0-9_]*(?::[0-5]?[0-9])*(?:\.[0-9_]*)?(?:[eE][-+][0-9]+)?|'
                      rb'\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|\.(?i:inf|nan))|'
                      rb'[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}[^"]*|<<|=)"')
_EXPLICIT_KEY = re.compile(r"\n[ -]*\?\s")
_NATIVE_STDERR = threading.Lock()


def plain_yaml(text: str) -> Any:
    """The document as plain dicts, lists and scalars, parsed by rapidyaml (a C++ parser, ten
    times faster than PyYAML's on a 10,000-rule file) through its JSON output.

    Answers UNSURE when the text holds anything the two parsers could read differently, when
    rapidyaml is not installed or refuses the text, or when a mapping repeats a key: the
    caller then parses with `parse_yaml`, which is the authority and locates every problem.
    """
    if _unusual(text):
        return UNSURE
    try:
        import ryml
    except ImportError:
        return UNSURE
    try:
        # Parsed in place (the tree points into `buffer`, which it may rewrite): no copy
        # of the text into the tree's arena.
        buffer = bytearray(text.encode("utf-8"))
        tree = ryml.Tree()
        # Room for every node up front: left to grow from its small default, the tree took
        # three to four times as long to parse (10,000 rules: ~40 ms against ~10). Two nodes
        # a line and one a comma is more than rule files take (2.2 a line in the benchmark's
        # file, which writes its lists in brackets); a file that needs more grows the tree.
        tree.reserve(2 * text.count("\n") + text.count(",") + 16)
        with _native_stderr_muted():
            ryml.parse_in_place(buffer, tree=tree)
        emitted = _json_of(ryml, tree, len(buffer))
    except Exception:       # noqa: BLE001 (rapidyaml's parse errors: the line loader says them)
        return UNSURE
    if not emitted:
        return None if not text.strip("\n ") else UNSURE
    if _RETYPED.search(emitted):
        return UNSURE
    try:
        return json.loads(emitted, strict=False, object_pairs_hook=_unique_keys,
                          parse_constant=_refuse, parse_float=_yaml_float)
    except (_Unsure, ValueError):
        return UNSURE


def _json_of(ryml: Any, tree: Any, size: int) -> bytes:
    """The tree as UTF-8 JSON (empty for an empty document), written into a buffer sized up
    front: `emit_json` measures its output in a pass of its own before writing it (11 ms
    against 6 for 10,000 rules). JSON can outgrow twice the YAML (`key:` is `"key": null`);
    then the measuring way."""
    out = bytearray(2 * size + 64)
    try:
        return bytes(ryml.emit_json_in_place(tree, out))
    except IndexError:
        return (ryml.emit_json(tree) or "").encode("utf-8")


def _unusual(text: str) -> bool:
    """Whether the text holds YAML the two parsers read differently or that wants the line
    loader anyway: tabs, tags, anchors and aliases, explicit and merge keys, directives,
    document markers."""
    if "\t" in text or "<<" in text or text.startswith("?"):
        return True
    if any(_starts_a_line(text, mark) for mark in ("%", "---", "...")):
        return True
    for indicator in "!&*":             # str.find: a 10,000-rule file has none, or a few
        at = text.find(indicator)
        while at != -1:
            before, after = text[at - 1:at] or "\n", text[at + 1:at + 2]
            if before in " \n[{," and after and after not in " \n,]}":
                return True
            at = text.find(indicator, at + 1)
    return "?" in text and _EXPLICIT_KEY.search(text) is not None


def _starts_a_line(text: str, mark: str) -> bool:
    """Whether a line of the text starts with `mark`. str.find of the mark itself, rare in
    rule files: a search for "\n---" stops at every line break."""
    at = text.find(mark)
    while at != -1:
        if at == 0 or text[at - 1] == "\n":
            return True
        at = text.find(mark, at + 1)
    return False


def _yaml_float(text: str) -> float:
    """A float as PyYAML reads it: `1e3` and `1.0e3` are strings there (it wants a dot and a
    signed exponent), numbers to rapidyaml."""
    mantissa, exponent, power = text.lower().partition("e")
    if exponent and ("." not in mantissa or power[:1] not in ("+", "-")):
        raise _Unsure
    return float(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping = dict(pairs)
    if len(mapping) != len(pairs):
        raise _Unsure
    return mapping


def _refuse(_constant: str) -> Any:
    raise _Unsure


@contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """rapidyaml prints its parse errors on the process's stderr before raising. Send fd 2 to
    a temporary file meanwhile, and write back whatever else was written there (another
    thread's log line), so nothing but rapidyaml's message is dropped."""
    with _NATIVE_STDERR, tempfile.TemporaryFile() as sink:
        try:
            saved = os.dup(2)
        except OSError:                 # no stderr at all: nothing to keep clean
            yield
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().splitlines(keepends=True)
                    if not line.startswith(b"line=") and b"(detected here)" not in line]
            if kept:
                os.write(2, b"".join(kept))


def read_yaml(path: Path) -> tuple[Any, list[Problem]]:
    """Read and parse a YAML file; an unreadable file raises ConfigError (exit 2 territory)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return parse_yaml(text, str(path))


def line_of(data: Any, loc: tuple[Any, ...]) -> int:
    """The line of the deepest node along a pydantic error location that we know a line for."""
    line = getattr(data, "line", 1)
    node = data
    for part in loc:
        if isinstance(node, YDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, YList) and isinstance(part, int) and part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line


def validate(model: type[BaseModel], data: Any, filename: str,
             where: tuple[Any, ...] = ()) -> tuple[Any, list[Problem]]:
    """Validate data against a pydantic model; turn each error into a located Problem."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, [_problem_from(error, data, filename, where) for error in exc.errors()]


def _problem_from(error: Any, data: Any, filename: str, where: tuple[Any, ...]) -> Problem:
    loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
    field = ".".join(str(part) for part in where + loc) or "document"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = f"unknown key '{loc[-1]}' (a typo?)"
        field = ".".join(str(part) for part in where + loc[:-1]) or "document"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return Problem(filename, line_of(data, loc), f"{field}: {message}")
