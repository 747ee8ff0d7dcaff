"""Brute-force protection: failed logins per source address and per account are counted in the
database (so every replica sees them); past a threshold answers are slowed, then refused for a while."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.errors import TooManyRequests


@dataclass(frozen=True, slots=True)
class GuardSettings:
    slow_after: int = 5  # failures for one account in the window before each failure answer is delayed
    lock_after: int = 10  # failures for one account in the window before its logins are refused
    # One address may front a whole office (NAT), so it gets more rope before it is locked out.
    ip_slow_after: int = 20
    ip_lock_after: int = 50
    window_seconds: float = 900.0
    lockout_seconds: float = 900.0
    max_delay_seconds: float = 4.0


def keys_for(source_ip: str | None, username: str | None) -> list[str]:
    keys = []
    if source_ip:
        keys.append(f"ip:{source_ip}")
    if username:
        keys.append(f"user:{username[:280]}")
    return keys


class LoginGuard:
    def __init__(self, db: Database, settings: GuardSettings | None = None) -> None:
        self.db = db
        self.settings = settings or GuardSettings()

    def check(self, keys: list[str]) -> None:
        """Refuse at once while any of the keys is locked out."""
        if not keys:
            return
        t = now()
        with self.db.read() as conn:
            locked = conn.execute(
                sa.select(sa.func.max(s.login_failures.c.locked_until)).where(
                    s.login_failures.c.key.in_(keys), s.login_failures.c.locked_until > t
                )
            ).scalar()
        if locked:
            retry = max(1, int(locked - t))
            raise TooManyRequests(f"too many failed logins; try again in {retry} s", retry, {"retry_after": retry})

    def failed(self, keys: list[str]) -> tuple[float, bool]:
        """Count a failure. Returns (seconds to delay the answer, whether this failure locked a key)."""
        t = now()
        cfg = self.settings
        worst = 0  # failures past the slow-down threshold, for the key furthest past it
        locked_now = False
        with self.db.write() as conn:
            for key in keys:
                row = conn.execute(sa.select(s.login_failures).where(s.login_failures.c.key == key)).first()
                if row is None or row.window_start < t - cfg.window_seconds:
                    failures, start = 1, t
                else:
                    failures, start = row.failures + 1, row.window_start
                is_ip = key.startswith("ip:")
                lock_after = cfg.ip_lock_after if is_ip else cfg.lock_after
                slow_after = cfg.ip_slow_after if is_ip else cfg.slow_after
                locked_until = t + cfg.lockout_seconds if failures >= lock_after else None
                if locked_until and not (row is not None and row.locked_until and row.locked_until > t):
                    locked_now = True
                conn.execute(
                    self.db.upsert(
                        s.login_failures,
                        ["key"],
                        key=key,
                        failures=failures,
                        window_start=start,
                        locked_until=locked_until,
                    )
                )
                worst = max(worst, failures - slow_after)
        delay = min(cfg.max_delay_seconds, 0.25 * 2 ** (worst - 1)) if worst > 0 else 0.0
        return delay, locked_now

    def succeeded(self, username: str) -> None:
        """A good password clears the account's counter (not the address's: one user's success must
        not reset the count of an attacker trying other accounts from the same place)."""
        key = f"user:{username[:280]}"
        with self.db.read() as conn:  # the common case, no failures on record, needs no write
            if conn.execute(sa.select(s.login_failures.c.key).where(s.login_failures.c.key == key)).first() is None:
                return
        with self.db.write() as conn:
            conn.execute(sa.delete(s.login_failures).where(s.login_failures.c.key == key))
