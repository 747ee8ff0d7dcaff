"""Docker token scopes: `repository:samalba/my-app:pull,push`, `registry:catalog:*`."""

from __future__ import annotations

import re
from dataclasses import dataclass

# resourcetype may carry a class in parentheses, e.g. repository(plugin); the name may contain ':'.
_SCOPE_RE = re.compile(r"([a-z0-9]+)(?:\([a-z0-9]+\))?:(.+):([a-z*]+(?:,[a-z*]+)*)")  # fullmatch


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def as_claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def parse_scope(value: str) -> Scope | None:
    """Parse one scope; None when malformed (the token endpoint ignores those, as distribution does)."""
    m = _SCOPE_RE.fullmatch(value.strip())
    if not m:
        return None
    return Scope(m.group(1), m.group(2), frozenset(m.group(3).split(",")))


def parse_scopes(values: list[str]) -> list[Scope]:
    """Scopes from repeated `scope` parameters, each possibly holding several space-separated scopes."""
    out: list[Scope] = []
    for value in values:
        for part in value.split():
            scope = parse_scope(part)
            if scope is not None:
                out.append(scope)
    return out
