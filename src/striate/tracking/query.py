"""The run filter language of `striate runs --where` and `Api.runs(where=...)`.

    params.lr > 0.01 and metrics.test/acc1.max >= 0.9
    status = finished and (tags contains baseline or name ~ lenet)
    created > "2026-11-01" and duration < 600 and not model = vgg16

Fields: ``params.KEY`` (flattened config, e.g. ``params.model_options.small_input``),
``metrics.KEY[.last|.min|.max|.count]`` (default ``last``), ``tags``, ``status``, ``name``,
``project``, ``model``, ``id``, ``created``/``ended`` (ISO dates or Unix seconds), ``duration``
(seconds). Operators: ``= == != < <= > >=``, ``~`` (substring), ``contains`` (tags).
Words combine with ``and``, ``or``, ``not`` and parentheses. A name with other characters
goes in backquotes: ```metrics.`loss (val)`.min```.

Parsing is Lark's; the parse tree is turned into a SQLAlchemy expression over the store's tables.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, VisitError

from striate.errors import ConfigError

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr -> negate
         | atom
?atom: comparison | "(" or_expr ")"
comparison: field OP value
          | field _CONTAINS value -> contains
field: FIELD | QUOTED_FIELD
value: SIGNED_NUMBER -> number
     | ESCAPED_STRING -> string
     | SINGLE_QUOTED -> string
     | FIELD -> word
OP: "==" | "!=" | "<=" | ">=" | "=" | "<" | ">" | "~"
_OR.2: /or\b/i
_AND.2: /and\b/i
_NOT.2: /not\b/i
_CONTAINS.2: /contains\b/i
FIELD: /[A-Za-z_][A-Za-z0-9_\-\/\.:]*/
QUOTED_FIELD: /[A-Za-z_]+\.`[^`]+`(\.[a-z]+)?/
SINGLE_QUOTED: /'[^']*'/
%import common.SIGNED_NUMBER
%import common.ESCAPED_STRING
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr")
AGGREGATES = ("last", "min", "max", "count")
COLUMNS = ("status", "name", "project", "model", "id")
TIMES = ("created", "ended")


@dataclass(frozen=True)
class Field:
    """A parsed field reference: namespace (params, metrics, column), key and aggregate."""

    kind: str  # "param", "metric", "column", "tags", "time", "duration"
    key: str
    aggregate: str = "last"


def parse_field(text: str) -> Field:
    """``metrics.test/acc1.max`` -> Field("metric", "test/acc1", "max")."""
    if "`" in text:
        head, _, rest = text.partition(".`")
        key, _, tail = rest.partition("`")
        text_key, agg = key, tail.lstrip(".") or "last"
        namespace = head
    else:
        namespace, _, text_key = text.partition(".")
        agg = "last"
        if namespace == "metrics" and "." in text_key and text_key.rsplit(".", 1)[1] in AGGREGATES:
            text_key, agg = text_key.rsplit(".", 1)
    if namespace in ("params", "param", "config") and text_key:
        return Field("param", text_key)
    if namespace in ("metrics", "metric") and text_key:
        if agg not in AGGREGATES:
            raise ConfigError(f"unknown metric aggregate {agg!r}", f"use one of: {', '.join(AGGREGATES)}")
        return Field("metric", text_key, agg)
    if not text_key:
        if namespace in COLUMNS:
            return Field("column", namespace)
        if namespace == "tags":
            return Field("tags", "tags")
        if namespace in TIMES:
            return Field("time", namespace)
        if namespace == "duration":
            return Field("duration", "duration")
    raise ConfigError(f"unknown field {text!r} in the filter",
                      "use params.KEY, metrics.KEY[.min|.max|.last], tags, status, name, project, model, "
                      "created, ended or duration")


class Number(float):
    """A number in a filter that remembers how it was written: compared with text (names, tags,
    ``~``), ``01`` stays ``01`` and ``1e-3`` stays ``1e-3``."""

    text: str

    def __new__(cls, text: str) -> Number:
        number = super().__new__(cls, text)
        number.text = text
        return number


def as_text(value: Any) -> str:
    """A filter value as the text the user wrote."""
    return value.text if isinstance(value, Number) else str(value)


@dataclass(frozen=True)
class Comparison:
    """``field OP value``."""

    field: Field
    op: str
    value: Any


@dataclass(frozen=True)
class BoolOp:
    """``and`` / ``or`` / ``not`` over sub-expressions."""

    op: str
    items: tuple[Any, ...]


class _ToAst(Transformer):  # type: ignore[type-arg]
    def number(self, items: list[Token]) -> float:
        return Number(str(items[0]))

    def string(self, items: list[Token]) -> str:
        text = str(items[0])
        return json.loads(text) if text.startswith('"') else text[1:-1]

    def word(self, items: list[Token]) -> str:
        return str(items[0])

    def field(self, items: list[Token]) -> Field:
        return parse_field(str(items[0]))

    def comparison(self, items: list[Any]) -> Comparison:
        op = "=" if str(items[1]) == "==" else str(items[1])
        return Comparison(items[0], op, items[2])

    def contains(self, items: list[Any]) -> Comparison:
        return Comparison(items[0], "contains", items[1])

    def and_expr(self, items: list[Any]) -> BoolOp:
        return BoolOp("and", tuple(items))

    def or_expr(self, items: list[Any]) -> BoolOp:
        return BoolOp("or", tuple(items))

    def negate(self, items: list[Any]) -> BoolOp:
        return BoolOp("not", tuple(items))


def parse(expression: str) -> Comparison | BoolOp:
    """Parse a filter expression into Comparison/BoolOp nodes; ConfigError naming the position when invalid."""
    try:
        return _ToAst().transform(_PARSER.parse(expression))
    except VisitError as exc:
        if isinstance(exc.orig_exc, ConfigError):
            raise exc.orig_exc from None
        raise
    except LarkError as exc:
        column = getattr(exc, "column", None)
        where = f" at column {column}" if column is not None else ""
        raise ConfigError(f"cannot parse the filter {expression!r}{where}",
                          "write e.g. params.lr > 0.01 and metrics.test/acc1.max >= 0.9 "
                          "(docs/guide.md lists fields and operators)") from None


def parse_sort(text: str) -> tuple[Field, bool]:
    """``-metrics.test/acc1.max`` or ``metrics.test/acc1.max desc`` -> (field, descending)."""
    text = text.strip()
    descending = text.startswith("-")
    text = text.lstrip("-+").strip()
    for suffix, desc in ((" desc", True), (" asc", False)):
        if text.lower().endswith(suffix):
            text, descending = text[: -len(suffix)].strip(), desc
    return parse_field(text), descending


def to_timestamp(value: Any) -> float:
    """An ISO date/time string or a number of Unix seconds -> Unix seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"cannot read {value!r} as a time",
                          "write an ISO date like 2026-11-26 or 2026-11-26T10:00") from None
    return parsed.timestamp()
