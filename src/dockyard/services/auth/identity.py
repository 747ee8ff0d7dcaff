"""Who is asking."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str  # username; "" for anonymous
    is_admin: bool = False

    @property
    def anonymous(self) -> bool:
        return not self.subject


ANONYMOUS = Identity("")
