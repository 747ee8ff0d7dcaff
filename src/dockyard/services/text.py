"""The grammar of free-form labels (access token names, group names): any text a person would type,
without control characters (a trailing newline, a NUL) and without spaces around it."""

from __future__ import annotations

import re

_EDGE = r"[^\x00-\x20\x7f-\x9f]"
_LABEL_RE = re.compile(rf"{_EDGE}(?:[^\x00-\x1f\x7f-\x9f]*{_EDGE})?")
LABEL_PATTERN = f"^{_LABEL_RE.pattern}$"  # the same, anchored for the API document (JSON Schema)


def is_label(value: str, max_length: int) -> bool:
    return len(value) <= max_length and bool(_LABEL_RE.fullmatch(value))
