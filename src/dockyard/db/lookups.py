"""Statements over many keys that still read each key's rows from its index: a list of values as a
one-column table (`each`), and the first rows of a union of per-key statements (`first_rows`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from dockyard.db.engine import Database


def each(db: Database, values: Sequence[str], name: str = "wanted") -> sa.TableValuedAlias:
    """The values as a table of one column, `value`, from one bound parameter: PostgreSQL's
    `unnest(array)`, SQLite's `json_each(text)`. A correlated subquery over its rows is one plan run
    once per value, where one scalar subquery per value is one plan each (PostgreSQL spent 6 ms
    planning fifty of them for a page of tags); and the statement's text does not change with the
    values, so SQLAlchemy compiles it once (a VALUES list is compiled anew for every call: 10 ms)."""
    if db.is_sqlite:
        return sa.func.json_each(sa.bindparam(None, json.dumps(list(values)))).table_valued("value").alias(name)
    array = sa.bindparam(None, list(values), type_=postgresql.ARRAY(sa.String))
    return sa.func.unnest(array).table_valued("value").render_derived().alias(name)


# At most this many parts in one statement (SQLite allows 500 members in a compound SELECT).
PARTS_PER_STATEMENT = 100


def first_rows(
    conn: sa.Connection, parts: Sequence[sa.Select[Any]], order: Sequence[str], limit: int, distinct: bool = False
) -> list[dict[str, Any]]:
    """The first `limit` rows, by `order` (column names, "-" before one for descending), of the
    union of `parts` (`distinct`: without repeated rows), each part a statement in that order which
    an index answers in that order (one key's rows). Each part then reads at most `limit` rows of
    its index, where one statement over all keys (`key IN (…) ORDER BY … LIMIT n`) reads and sorts
    every row of every key first: an image pulled 100,000 times, a digest under 100,000 tags. Up to
    PARTS_PER_STATEMENT parts make one statement; callers with more keys use that one statement."""
    assert 0 < len(parts) <= PARTS_PER_STATEMENT, len(parts)
    members = [sa.select(p.limit(limit).subquery()) for p in parts]
    if len(members) == 1:
        union = members[0].subquery("parts")
    else:
        union = (sa.union if distinct else sa.union_all)(*members).subquery("parts")
    keys = [union.c[name[1:]].desc() if name.startswith("-") else union.c[name] for name in order]
    stmt = sa.select(union).order_by(*keys).limit(limit)
    return [dict(r._mapping) for r in conn.execute(stmt)]
