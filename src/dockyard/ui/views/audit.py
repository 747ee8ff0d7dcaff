"""The audit log: filters, pages (the API's cursor), export; the API's own checks decide who reads what."""

from __future__ import annotations

import calendar
import re
import time
from typing import Any

from starlette.responses import Response, StreamingResponse

from dockyard.api.management import audit as api
from dockyard.services.errors import InvalidInput
from dockyard.ui.web import Page

FIELDS = ("project", "repository", "actor", "action")


def _day(value: str, end: bool) -> float | None:
    """A yyyy-mm-dd date (the form's date field) as UNIX time, the day's end for `until`."""
    if not value:
        return None
    try:
        day = calendar.timegm(time.strptime(value, "%Y-%m-%d"))
    except ValueError:
        raise InvalidInput(f"dates are yyyy-mm-dd, not {value!r}") from None
    return float(day + 86400 if end else day)


def _filters(page: Page) -> dict[str, Any]:
    q = page.query
    values: dict[str, Any] = {k: (q.get(k) or "").strip()[:255] or None for k in FIELDS}
    values["since"] = _day(q.get("since", ""), end=False)
    values["until"] = _day(q.get("until", ""), end=True)
    return values


def events(page: Page) -> Response:
    f = _filters(page)
    before = page.query.get("before") or None
    if before is not None and not re.fullmatch(api.CURSOR_PATTERN, before):
        raise InvalidInput("bad page cursor")
    flt = api._filter(page.svc, page.identity, **f, digest=None)
    rows, cursor = page.svc.audit.query(flt, 50, before)
    form = {k: page.query.get(k, "") for k in (*FIELDS, "since", "until")}
    return page.render("audit.html", rows=rows, next_before=cursor, form=form)


def export(page: Page) -> Response:
    fmt = page.query.get("format", "csv")
    if fmt not in ("csv", "jsonl"):
        raise InvalidInput("format is csv or jsonl")
    response: StreamingResponse = api.export_events(page.svc, page.identity, fmt, **_filters(page))
    return response
