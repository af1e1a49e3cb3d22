"""A parser for the Prometheus text exposition format (version 0.0.4).

Histogram and summary series (`_bucket`, `_sum`, `_count`, quantiles) come
through as plain samples; `Exposition.types` keeps the declared TYPE of each
family so a caller can tell counters from gauges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's strconv.ParseFloat, which Prometheus uses, minus hex floats; Python's
# float() alone would also take "1_000", which the format does not allow.
_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE)
_INT = re.compile(r"-?\d+")
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class PromParseError(ValueError):
    def __init__(self, lineno: int, message: str, line: str) -> None:
        super().__init__(f"line {lineno}: {message}: {line[:200]!r}")
        self.lineno = lineno


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    timestamp_ms: int | None = None


@dataclass
class Exposition:
    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # family name -> counter|gauge|histogram|summary|untyped
    help: dict[str, str] = field(default_factory=dict)

    def type_of(self, sample_name: str) -> str:
        """The declared type of the family a sample belongs to ("untyped" when undeclared)."""
        if sample_name in self.types:
            return self.types[sample_name]
        for suffix in ("_bucket", "_sum", "_count", "_total"):
            if sample_name.endswith(suffix):
                family = sample_name[: -len(suffix)]
                if family in self.types:
                    return self.types[family]
        return "untyped"


def parse(text: str) -> list[Sample]:
    return parse_exposition(text).samples


def parse_exposition(text: str) -> Exposition:
    out = Exposition()
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            _comment(line, lineno, out)
        else:
            out.samples.append(_LineParser(line, lineno).sample())
    return out


def _comment(line: str, lineno: int, out: Exposition) -> None:
    parts = line.lstrip()[1:].lstrip(" \t").split(None, 2)
    if len(parts) < 2 or parts[0] not in ("HELP", "TYPE"):
        return  # a plain comment
    keyword, name = parts[0], parts[1]
    rest = parts[2] if len(parts) > 2 else ""
    if not _METRIC_NAME.fullmatch(name):
        raise PromParseError(lineno, f"invalid metric name {name!r} in {keyword}", line)
    if keyword == "TYPE":
        kind = rest.strip()
        if kind not in _TYPES:
            raise PromParseError(lineno, f"unknown metric type {kind!r}", line)
        if name in out.types:
            raise PromParseError(lineno, f"second TYPE line for {name}", line)
        out.types[name] = kind
    else:
        out.help[name] = rest.replace("\\n", "\n").replace("\\\\", "\\")


class _LineParser:
    def __init__(self, line: str, lineno: int) -> None:
        self.line = line
        self.lineno = lineno
        self.pos = 0

    def fail(self, message: str) -> PromParseError:
        return PromParseError(self.lineno, f"{message} at column {self.pos + 1}", self.line)

    def skip_blanks(self) -> None:
        while self.pos < len(self.line) and self.line[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        return self.line[self.pos] if self.pos < len(self.line) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.fail(f"expected {ch!r}")
        self.pos += 1

    def token(self, pattern: re.Pattern[str], what: str) -> str:
        m = pattern.match(self.line, self.pos)
        if not m:
            raise self.fail(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    def sample(self) -> Sample:
        self.skip_blanks()
        name = self.token(_METRIC_NAME, "a metric name")
        self.skip_blanks()
        labels = self.labels() if self.peek() == "{" else {}
        self.skip_blanks()
        start = self.pos
        word = self.word()
        if not word:
            raise self.fail("expected a value")
        if not _FLOAT.fullmatch(word):
            self.pos = start
            raise self.fail(f"invalid value {word!r}")
        value = float(word)
        self.skip_blanks()
        timestamp = None
        if self.pos < len(self.line):
            start = self.pos
            word = self.word()
            if not _INT.fullmatch(word):
                self.pos = start
                raise self.fail(f"invalid timestamp {word!r}")
            timestamp = int(word)
            self.skip_blanks()
            if self.pos < len(self.line):
                raise self.fail("unexpected text after the timestamp")
        return Sample(name, labels, value, timestamp)

    def word(self) -> str:
        start = self.pos
        while self.pos < len(self.line) and self.line[self.pos] not in " \t":
            self.pos += 1
        return self.line[start : self.pos]

    def labels(self) -> dict[str, str]:
        self.expect("{")
        labels: dict[str, str] = {}
        while True:
            self.skip_blanks()
            if self.peek() == "}":
                self.pos += 1
                return labels
            name = self.token(_LABEL_NAME, "a label name or '}'")
            if name in labels:
                raise self.fail(f"duplicate label {name!r}")
            self.skip_blanks()
            self.expect("=")
            self.skip_blanks()
            labels[name] = self.label_value()
            self.skip_blanks()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "}":
                raise self.fail("expected ',' or '}'")

    def label_value(self) -> str:
        self.expect('"')
        chars: list[str] = []
        while True:
            ch = self.peek()
            if ch == "":
                raise self.fail("unterminated label value")
            self.pos += 1
            if ch == '"':
                return "".join(chars)
            if ch == "\\":
                esc = self.peek()
                if esc not in _LABEL_ESCAPES:
                    raise self.fail(f"invalid escape '\\{esc}' in label value")
                chars.append(_LABEL_ESCAPES[esc])
                self.pos += 1
            else:
                chars.append(ch)
