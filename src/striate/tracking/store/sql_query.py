"""Compiling the filter language (tracking/query.py) into SQLAlchemy expressions over the SQL store."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from striate.tracking.query import BoolOp, Comparison, Field, Number, as_text, parse, parse_sort, to_timestamp
from striate.tracking.store.schema import metric_summary, params, runs

_OPS = {
    "=": lambda c, v: c == v, "!=": lambda c, v: c != v, "<": lambda c, v: c < v, "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v, ">=": lambda c, v: c >= v,
}


def where_clause(expression: str) -> sa.ColumnElement[bool]:
    """The SQL condition for a filter expression."""
    return _compile(parse(expression))


def order_by_clause(sort: str) -> list[Any]:
    """ORDER BY terms for a sort key such as ``-metrics.test/acc1.max``; runs lacking the value go last."""
    terms = []
    for part in sort.split(","):
        field, descending = parse_sort(part)
        # A param sorts by its numeric value, then its text (two columns: SQL cannot mix the types).
        columns = [_param_column(field, "num"), _param_column(field, "value")] if field.kind == "param" \
            else [_value_expression(field)]
        terms.append(sa.and_(*(c.is_(None) for c in columns)))  # runs lacking the value go last
        if field.kind == "param":
            # numbers before text in either direction; SQLite and PostgreSQL put NULLs at opposite ends
            terms.append(columns[0].is_(None))
        terms.extend(c.desc() if descending else c.asc() for c in columns)
    return terms


def _param_column(field: Field, column: str) -> Any:
    p = params.alias()
    return sa.select(p.c[column]).where(p.c.run_id == runs.c.id, p.c.key == field.key).scalar_subquery()


def _compile(node: Comparison | BoolOp) -> sa.ColumnElement[bool]:
    if isinstance(node, BoolOp):
        parts = [_compile(item) for item in node.items]
        if node.op == "and":
            return sa.and_(*parts)
        if node.op == "or":
            return sa.or_(*parts)
        return sa.not_(parts[0])
    return _comparison(node)


def _compare(column: Any, op: str, value: Any) -> sa.ColumnElement[bool]:
    if op == "~":
        return column.contains(as_text(value), autoescape=True)
    return _OPS[op](column, value)


def _comparison(node: Comparison) -> sa.ColumnElement[bool]:
    field, op, value = node.field, node.op, node.value
    if op == "contains":
        if field.kind != "tags":
            return _compare(_value_expression(field), "~", value)
        return runs.c.tags.contains(json.dumps(str(value)), autoescape=True)
    if field.kind == "param":
        p = params.alias()
        if isinstance(value, float) and op != "~":
            condition = _compare(p.c.num, op, value)
        elif op == "~":
            condition = _compare(p.c.value, "~", value)
        else:
            condition = _compare(p.c.value, op, json.dumps(_literal(value)))
        return sa.exists().where(p.c.run_id == runs.c.id, p.c.key == field.key, condition)
    if field.kind == "metric":
        m = metric_summary.alias()
        return sa.exists().where(m.c.run_id == runs.c.id, m.c.key == field.key,
                                 _compare(m.c[field.aggregate], op, _number(value, field)))
    if field.kind == "tags":
        # tags are stored as a JSON list: "=" matches a whole "tag", "~" text inside one
        wanted = json.dumps(as_text(value))
        condition = runs.c.tags.contains(wanted[1:-1] if op == "~" else wanted, autoescape=True)
        return condition if op in ("=", "~") else sa.not_(condition)
    if field.kind == "time":
        return _compare(_value_expression(field), op, to_timestamp(value))
    if field.kind == "duration":
        return _compare(_value_expression(field), op, _number(value, field))
    if isinstance(value, float) and not isinstance(value, Number):
        text = str(int(value)) if value.is_integer() else str(value)
    else:
        text = as_text(value)
    return _compare(_value_expression(field), op, text)


def _value_expression(field: Field) -> Any:
    if field.kind == "param":
        return _param_column(field, "value")
    if field.kind == "metric":
        m = metric_summary.alias()
        return (sa.select(m.c[field.aggregate]).where(m.c.run_id == runs.c.id, m.c.key == field.key)
                .scalar_subquery())
    if field.kind == "time":
        return runs.c.created_at if field.key == "created" else runs.c.ended_at
    if field.kind == "duration":
        return sa.func.coalesce(runs.c.ended_at, runs.c.heartbeat_at) - runs.c.created_at
    if field.kind == "tags":
        return runs.c.tags
    return runs.c[field.key]


def _number(value: Any, field: Field) -> float:
    if isinstance(value, float):
        return value
    from striate.errors import ConfigError

    raise ConfigError(f"{field.kind} {field.key!r} is compared with {value!r}, which is not a number",
                      "compare metrics and durations with numbers")


def _literal(value: Any) -> Any:
    """Bare words true/false/null match JSON-encoded params; everything else is a string."""
    return {"true": True, "false": False, "null": None}.get(str(value).lower(), value)
