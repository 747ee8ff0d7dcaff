"""A list of values as a one-column table, for "the newest row of each of these" in one statement."""

from __future__ import annotations

import json
from collections.abc import Sequence

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
