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

Parsing is Lark's; the parse tree is turned into a SQLAlchemy expression over the store's tables
(tracking/store/sql_query.py), with the same meaning on SQLite and PostgreSQL (docs/guide.md).
A filter is at most MAX_LENGTH characters, MAX_TERMS comparisons and MAX_DEPTH levels of
``not``/parentheses: anything larger is one QueryError before it reaches a database.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from striate.errors import ConfigError

if TYPE_CHECKING:
    from lark import Lark, Token, Tree

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

MAX_LENGTH = 4000  # characters; real filters are a few dozen
MAX_TERMS = 64  # comparisons in one filter
MAX_DEPTH = 32  # nested not / parentheses
_FIX = "write e.g. params.lr > 0.01 and metrics.test/acc1.max >= 0.9 (docs/guide.md lists fields and operators)"


class QueryError(ConfigError):
    """A filter (``--where``), sort key or limit that cannot be read."""


def check_text(what: str, text: str) -> None:
    """QueryError when ``text`` cannot reach a database as written: no NUL, no lone surrogates."""
    if "\x00" in text:
        raise QueryError(f"the {what} contains a NUL character", "remove it: no stored text can contain one")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise QueryError(f"the {what} is not valid Unicode text (a lone surrogate)",
                         "write the text as characters, not as half of a surrogate pair") from None
AGGREGATES = ("last", "min", "max", "count")
COLUMNS = ("status", "name", "project", "model", "id")
TIMES = ("created", "ended")


@dataclass(frozen=True)
class Field:
    """A parsed field reference: namespace (params, metrics, column), key and aggregate."""

    kind: str  # "param", "metric", "column", "tags", "time", "duration"
    key: str
    aggregate: str = "last"


def parse_field(text: str, where: str = "in the filter") -> Field:
    """``metrics.test/acc1.max`` -> Field("metric", "test/acc1", "max"); ``where`` names the place of
    ``text`` in the error for a field that cannot be read (``in --columns``, ``in the sort key``)."""
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
            raise QueryError(f"unknown metric aggregate {agg!r}", f"use one of: {', '.join(AGGREGATES)}")
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
    raise QueryError(f"unknown field {text!r} {where}",
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


class _ToAstRules:
    """The parse tree's rules turned into Comparison/BoolOp nodes; mixed into a lark Transformer by
    ``_lark()``, so that importing this module does not import lark (issue 11: `striate runs` without
    ``--where`` never parses a filter)."""

    def number(self, items: list[Token]) -> float:
        return Number(str(items[0]))

    def string(self, items: list[Token]) -> str:
        text = str(items[0])
        if not text.startswith('"'):
            return text[1:-1]
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise QueryError(f"cannot read the string {text[:40]!r} in the filter: {exc.msg}",
                             'write plain text in quotes; a backslash escapes \\ \\" \\n \\t or \\uXXXX') from None
        check_text("filter's string", value)  # "\ud800" and "\u0000" are valid JSON escapes
        return str(value)

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


@functools.cache
def _lark() -> tuple[Lark, type]:
    """The filter parser and the tree-to-nodes transformer class, built on first use (building the LALR
    tables is most of this module's import cost). No parse-table cache file: lark's is a pickle."""
    from lark import Lark, Transformer

    return Lark(GRAMMAR, parser="lalr"), type("_ToAst", (_ToAstRules, Transformer), {})


def parse(expression: str) -> Comparison | BoolOp:
    """Parse a filter expression into Comparison/BoolOp nodes; QueryError naming the position when invalid."""
    if not isinstance(expression, str):
        raise QueryError(f"the filter is a {type(expression).__name__}, not text", _FIX)
    if len(expression) > MAX_LENGTH:
        raise QueryError(f"the filter is {len(expression)} characters long, over {MAX_LENGTH}",
                         "filter on fewer terms, or select in steps (e.g. by project or tag first)")
    check_text("filter", expression)
    from lark.exceptions import LarkError, VisitError

    parser, to_ast = _lark()
    try:
        tree = parser.parse(expression)
    except LarkError as exc:
        column = getattr(exc, "column", None)
        where = f" at column {column}" if column is not None else ""
        shown = expression if len(expression) <= 80 else expression[:77] + "..."
        raise QueryError(f"cannot parse the filter {shown!r}{where}", _FIX) from None
    _check_size(tree)  # before the transformer, which recurses once per level
    try:
        return to_ast().transform(tree)  # type: ignore[no-any-return]
    except VisitError as exc:
        if isinstance(exc.orig_exc, ConfigError):
            raise exc.orig_exc from None
        raise


def _check_size(tree: Tree | Token) -> None:
    """QueryError when the tree is deeper than MAX_DEPTH or has more than MAX_TERMS comparisons (walked
    without recursion: the tree may be thousands of levels deep)."""
    from lark import Tree

    terms, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        if node.data in ("comparison", "contains"):
            terms += 1
            if terms > MAX_TERMS:
                raise QueryError(f"the filter has more than {MAX_TERMS} comparisons",
                                 "filter on fewer terms, or select in steps (e.g. by project or tag first)")
            continue
        if depth > MAX_DEPTH:
            raise QueryError(f"the filter nests not/parentheses more than {MAX_DEPTH} levels deep",
                             "write it with fewer levels (not not x is x)")
        stack.extend((child, depth + 1) for child in node.children)


def parse_sort(text: str) -> tuple[Field, bool]:
    """``-metrics.test/acc1.max`` or ``metrics.test/acc1.max desc`` -> (field, descending)."""
    check_text("sort key", text)
    text = text.strip()
    descending = text.startswith("-")
    text = text.lstrip("-+").strip()
    for suffix, desc in ((" desc", True), (" asc", False)):
        if text.lower().endswith(suffix):
            text, descending = text[: -len(suffix)].strip(), desc
    return parse_field(text, "in the sort key"), descending


def field_text(field: Field) -> str:
    """How a user writes ``field``: ``params.lr``, ``metrics.test/acc1.max``, ```metrics.`a b`.min```."""
    namespace = {"param": "params", "metric": "metrics"}.get(field.kind)
    if namespace is None:
        return field.key
    key = field.key
    text = f"{namespace}.{key}" if _PLAIN_KEY.fullmatch(key) else f"{namespace}.`{key}`"
    return text if field.kind == "param" or field.aggregate == "last" else f"{text}.{field.aggregate}"


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-/\.:]*")


def fields_of(node: Comparison | BoolOp) -> list[Field]:
    """Every field a parsed filter names, in order."""
    found: list[Field] = []
    stack: list[Any] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, BoolOp):
            stack.extend(reversed(item.items))
        elif isinstance(item, Comparison):
            found.append(item.field)
    return found


def check_known_fields(fields: list[Field], param_keys: set[str], metric_keys: set[str], where: str) -> None:
    """QueryError naming the closest existing field when a ``params.``/``metrics.`` field is one that
    no run has: such a filter would match nothing (or sort by nothing) without saying why. A field
    that some runs have and others lack is fine. Nothing is checked while no run has any field."""
    if not param_keys and not metric_keys:
        return
    for field in fields:
        known = param_keys if field.kind == "param" else metric_keys if field.kind == "metric" else None
        if known is None or field.key in known:
            continue
        if field.kind == "param":
            candidates = [field_text(Field("param", k)) for k in sorted(known)]
        else:
            candidates = [field_text(Field("metric", k, a)) for k in sorted(known) for a in AGGREGATES]
        text = field_text(field)
        # compared without the shared "params."/"metrics." prefix, which would make any two look alike
        prefix = len(text.split(".", 1)[0]) + 1
        by_rest = {c[prefix:]: c for c in candidates}
        close = [by_rest[c] for c in difflib.get_close_matches(text[prefix:], list(by_rest), n=1, cutoff=0.6)]
        kind = "param" if field.kind == "param" else "metric"
        if close:
            hint = f"did you mean {close[0]}?"
        elif known:
            hint = f"the {kind}s recorded are: {', '.join(sorted(known)[:12])}{' ...' if len(known) > 12 else ''}"
        else:
            hint = f"no run in this store records any {kind}s"
        raise QueryError(f"no run has the {kind} {text!r} {where}",
                         f"{hint} (`striate show RUN` lists a run's params and metrics)")


def to_timestamp(value: Any) -> float:
    """An ISO date/time string or a number of Unix seconds -> Unix seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return dt.datetime.fromisoformat(str(value)).timestamp()
    except (ValueError, OverflowError, OSError):  # OverflowError/OSError: a year the platform cannot convert
        raise QueryError(f"cannot read {str(value)[:40]!r} as a time",
                         "write an ISO date like 2026-11-26 or 2026-11-26T10:00") from None
