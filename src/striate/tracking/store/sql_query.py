"""Compiling the filter language (tracking/query.py) into SQLAlchemy expressions over the SQL store.

One meaning on every backend (docs/guide.md, "Filtering runs"): text compares and sorts by code
point (PostgreSQL: COLLATE "C", SQLite's BINARY); ``~`` ignores the case of ASCII letters on both
(SQLite's lower() folds only those; PostgreSQL folds them with translate()); exact text matches
(``tags = x``, ``tags contains x``) are case-sensitive on both (instr/strpos, not LIKE, which
ignores case on SQLite); a NaN param or metric is "no value" on both (SQLite stores NaN as NULL,
PostgreSQL keeps it and ranks it above every number, so it is turned into NULL here).
"""

from __future__ import annotations

import json
import string
from typing import Any, Sequence

import sqlalchemy as sa

from striate.tracking.query import (
    BoolOp,
    Comparison,
    Field,
    QueryError,
    as_text,
    check_known_fields,
    fields_of,
    parse,
    parse_sort,
    to_timestamp,
)
from striate.tracking.store.schema import metric_summary, params, runs

_OPS = {
    "=": lambda c, v: c == v, "!=": lambda c, v: c != v, "<": lambda c, v: c < v, "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v, ">=": lambda c, v: c >= v,
}
_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def where_clause(expression: str, dialect: str = "sqlite") -> sa.ColumnElement[bool]:
    """The SQL condition for a filter expression, for a database of ``dialect`` ("sqlite", "postgresql")."""
    return _Compiler(dialect).compile(parse(expression))


MAX_SORT_KEYS = 16  # each key is up to three ORDER BY terms; SQLite refuses more than 10,000


def order_by_clause(sort: str, dialect: str = "sqlite") -> list[Any]:
    """ORDER BY terms for a sort key such as ``-metrics.test/acc1.max``; runs lacking the value go last."""
    return _Compiler(dialect).order_by(sort)


def check_fields_exist(conn: sa.Connection, where: str | None, sort: str | None,
                       projects: Sequence[str] | None = None) -> None:
    """QueryError naming the closest existing field when the filter or sort key names a param or
    metric that no run in the store has (tracking/query.py, check_known_fields).

    ``projects``: look only at the runs of these projects — the fields of runs a caller may not see
    must not appear in its error messages, nor decide whether its filter is an error."""
    named: list[tuple[str, list[Field]]] = []
    if where:
        named.append(("in the filter", fields_of(parse(where))))
    if sort:
        named.append(("in the sort key", [parse_sort(part)[0] for part in sort.split(",")]))
    tables = {"param": params, "metric": metric_summary}

    def keys(table: sa.Table) -> sa.Select[Any]:
        query = sa.select(table.c.key)
        if projects is not None:
            query = query.join(runs, runs.c.id == table.c.run_id).where(runs.c.project.in_(list(projects)))
        return query

    missing = [(place, [f]) for place, fields in named for f in fields if f.kind in tables
               and conn.execute(keys(tables[f.kind]).where(tables[f.kind].c.key == f.key).limit(1)).first() is None]
    if not missing:  # the usual case: a few indexed look-ups, no scan of every key
        return
    param_keys = {row[0] for row in conn.execute(keys(params).distinct())}
    metric_keys = {row[0] for row in conn.execute(keys(metric_summary).distinct())}
    for place, fields in missing:
        check_known_fields(fields, param_keys, metric_keys, place)


def check_limit(limit: object) -> int | None:
    """``limit`` as a positive int (None: no limit); QueryError for 0, negatives and what is not an integer."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise QueryError(f"the limit {str(limit)[:40]!r} is not a positive whole number",
                         "give a number of runs of 1 or more (leave it out for no limit)")
    return min(limit, 2**62)  # SQLite and PostgreSQL take 64-bit limits; no store holds more runs


def ordered_text(column: Any, dialect: str) -> Any:
    """``column`` compared and sorted by code point, as SQLite does (PostgreSQL follows its locale otherwise)."""
    return column.collate("C") if dialect == "postgresql" else column


class _Compiler:
    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    # -- expressions that differ by backend -------------------------------------------------------
    def text(self, column: Any) -> Any:
        return ordered_text(column, self.dialect)

    def number(self, column: Any) -> Any:
        # PostgreSQL keeps NaN and orders it above every number; SQLite stores it as NULL
        return sa.func.nullif(column, float("nan")) if self.dialect == "postgresql" else column

    def holds(self, column: Any, text: str) -> sa.ColumnElement[bool]:
        """``column`` contains ``text`` exactly (case-sensitive on both: LIKE is not, on SQLite)."""
        if self.dialect == "postgresql":
            return sa.func.strpos(column, text) > 0
        return sa.func.instr(column, text) > 0

    def icontains(self, column: Any, text: str) -> sa.ColumnElement[bool]:
        """``column`` contains ``text``, ignoring the case of ASCII letters."""
        if self.dialect == "postgresql":
            folded = sa.func.translate(column, string.ascii_uppercase, string.ascii_lowercase)
        else:
            folded = sa.func.lower(column)
        return folded.contains(text.translate(_ASCII_FOLD), autoescape=True)

    # -- the filter -------------------------------------------------------------------------------
    def compile(self, node: Comparison | BoolOp) -> sa.ColumnElement[bool]:
        if isinstance(node, BoolOp):
            parts = [self.compile(item) for item in node.items]
            if node.op == "and":
                return sa.and_(*parts)
            if node.op == "or":
                return sa.or_(*parts)
            return sa.not_(parts[0])
        return self.comparison(node)

    def compare(self, column: Any, op: str, value: Any) -> sa.ColumnElement[bool]:
        if op == "~":
            return self.icontains(column, as_text(value))
        if isinstance(value, str):
            column = self.text(column)
        return _OPS[op](column, value)

    def comparison(self, node: Comparison) -> sa.ColumnElement[bool]:
        field, op, value = node.field, node.op, node.value
        if op in ("~", "contains") and field.kind in ("metric", "time", "duration"):
            raise QueryError(f"{op} finds text, and {field.kind} {field.key!r} is a number",
                             "compare numbers with = != < <= > >=")
        if op == "contains":
            if field.kind != "tags":
                return self.compare(self.value_expression(field), "~", value)
            op = "="  # a whole tag
        if field.kind == "param":
            p = params.alias()
            if isinstance(value, float) and op != "~":
                condition = self.compare(self.number(p.c.num), op, value)
            elif op == "~":
                condition = self.compare(p.c.value, "~", value)
            else:
                condition = self.compare(p.c.value, op, json.dumps(_literal(value)))
            return sa.exists().where(p.c.run_id == runs.c.id, p.c.key == field.key, condition)
        if field.kind == "metric":
            m = metric_summary.alias()
            return sa.exists().where(m.c.run_id == runs.c.id, m.c.key == field.key,
                                     self.compare(self.number(m.c[field.aggregate]), op, _number(value, field)))
        if field.kind == "tags":
            # tags are stored as a JSON list: "=" matches a whole "tag", "~" text inside one
            wanted = json.dumps(as_text(value))
            if op == "~":
                return self.icontains(runs.c.tags, wanted[1:-1])
            if op not in ("=", "!="):
                raise QueryError(f"tags cannot be compared with {op}", "use tags = x, tags != x, tags ~ x or "
                                 "tags contains x")
            condition = self.holds(runs.c.tags, wanted)
            return condition if op == "=" else sa.not_(condition)
        if field.kind == "time":
            return self.compare(self.value_expression(field), op, to_timestamp(value))
        if field.kind == "duration":
            return self.compare(self.value_expression(field), op, _number(value, field))
        return self.compare(self.value_expression(field), op, as_text(value))

    def value_expression(self, field: Field) -> Any:
        if field.kind == "param":
            return self.param_column(field, "value")
        if field.kind == "metric":
            m = metric_summary.alias()
            return (sa.select(self.number(m.c[field.aggregate]))
                    .where(m.c.run_id == runs.c.id, m.c.key == field.key).scalar_subquery())
        if field.kind == "time":
            return runs.c.created_at if field.key == "created" else runs.c.ended_at
        if field.kind == "duration":
            return sa.func.coalesce(runs.c.ended_at, runs.c.heartbeat_at) - runs.c.created_at
        if field.kind == "tags":
            return runs.c.tags
        return runs.c[field.key]

    def param_column(self, field: Field, column: str) -> Any:
        p = params.alias()
        selected = self.number(p.c.num) if column == "num" else p.c[column]
        return sa.select(selected).where(p.c.run_id == runs.c.id, p.c.key == field.key).scalar_subquery()

    # -- sorting ----------------------------------------------------------------------------------
    def order_by(self, sort: str) -> list[Any]:
        terms = []
        parts = sort.split(",")
        if len(parts) > MAX_SORT_KEYS:
            raise QueryError(f"the sort names {len(parts)} keys; at most {MAX_SORT_KEYS} are allowed",
                             "sort by fewer keys (the first few decide the order anyway)")
        for part in parts:
            field, descending = parse_sort(part)
            # A param sorts by its numeric value, then its text (two columns: SQL cannot mix the types).
            if field.kind == "param":
                columns = [self.param_column(field, "num"), self.param_column(field, "value")]
            else:
                columns = [self.value_expression(field)]
            terms.append(sa.and_(*(c.is_(None) for c in columns)))  # runs lacking the value go last
            if field.kind == "param":
                # numbers before text in either direction; SQLite and PostgreSQL put NULLs at opposite ends
                terms.append(columns[0].is_(None))
            ordered = [columns[0]] + [self.text(c) for c in columns[1:]] if field.kind == "param" else \
                [self.text(columns[0]) if field.kind in ("column", "tags") else columns[0]]
            terms.extend(c.desc() if descending else c.asc() for c in ordered)
        return terms


def _number(value: Any, field: Field) -> float:
    if isinstance(value, float):
        return value
    raise QueryError(f"{field.kind} {field.key!r} is compared with {str(value)[:40]!r}, which is not a number",
                     "compare metrics and durations with numbers")


def _literal(value: Any) -> Any:
    """Bare words true/false/null match JSON-encoded params; everything else is a string."""
    return {"true": True, "false": False, "null": None}.get(str(value).lower(), value)
