"""Brute-force protection: failed logins are counted in the database (so every replica sees them);
past a threshold answers are slowed, then refused for a while.

Three counters per failure:
- per (account, source address): locks that account *from that address* only, so a stranger who
  guesses at `admin` cannot lock the real administrator out from anywhere else;
- per source address: locks the address (with more rope: it may front a whole office);
- per account, from anywhere: only slows the failure answers down, never refuses, so a distributed
  guesser is slowed without handing anyone a way to lock an account out.
A refused attempt is counted on the lock (`refused`) but is not a failure: it does not extend it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.errors import TooManyRequests

_NAME_CHARS = 280  # room for the prefix in the 300-character key
_SOURCE_CHARS = 64


@dataclass(frozen=True, slots=True)
class GuardSettings:
    slow_after: int = 5  # failures for one account in the window before each failure answer is delayed
    lock_after: int = 10  # failures for one account from one address before that pair is refused
    # One address may front a whole office (NAT), so it gets more rope before it is locked out.
    ip_slow_after: int = 25
    ip_lock_after: int = 50
    window_seconds: float = 900.0
    lockout_seconds: float = 900.0
    max_delay_seconds: float = 4.0


@dataclass(frozen=True, slots=True)
class LoginKeys:
    """The counters one login attempt touches: (key, account it belongs to, may it lock)."""

    rows: tuple[tuple[str, str | None, bool], ...]

    @property
    def keys(self) -> list[str]:
        return [k for k, _, _ in self.rows]

    @property
    def lockable(self) -> list[str]:
        return [k for k, _, lockable in self.rows if lockable]


@dataclass(frozen=True, slots=True)
class Refusal:
    retry_after: int
    first: bool  # the first refused attempt of this lock (the only one written to the audit log)
    refused: int  # attempts refused so far during this lock


def keys_for(source_ip: str | None, username: str | None) -> LoginKeys:
    rows: list[tuple[str, str | None, bool]] = []
    source = source_ip[:_SOURCE_CHARS] if source_ip else None
    if source:
        rows.append((f"ip:{source}", None, True))
    if username:
        account = username[:_NAME_CHARS]
        rows.append((f"user:{account}", account, False))
        if source:
            pair = hashlib.sha256(f"{username}\0{source}".encode()).hexdigest()
            rows.append((f"pair:{pair}", account, True))
    return LoginKeys(tuple(rows))


class LoginGuard:
    def __init__(self, db: Database, settings: GuardSettings | None = None) -> None:
        self.db = db
        self.settings = settings or GuardSettings()

    def _insert(self) -> postgresql.Insert | sqlite.Insert:
        return self.db.insert(s.login_failures)

    def check(self, keys: LoginKeys) -> None:
        """Refuse at once while the address, or this account from this address, is locked out.
        The refused attempt is counted on the lock; the first one of a lock says so (Refusal.first)."""
        lockable = keys.lockable
        if not lockable:
            return
        t = now()
        lf = s.login_failures.c
        with self.db.read() as conn:  # the common case, nothing locked, needs no write
            locked = conn.execute(sa.select(lf.key).where(lf.key.in_(lockable), lf.locked_until > t)).first()
        if locked is None:
            return
        with self.db.write() as conn:
            rows = conn.execute(
                sa.update(s.login_failures)
                .where(lf.key.in_(lockable), lf.locked_until > t)
                .values(refused=lf.refused + 1)
                .returning(lf.locked_until, lf.refused)
            ).all()
        if not rows:  # expired in between
            return
        until = max(r.locked_until for r in rows)
        refusal = Refusal(max(1, int(until - t)), any(r.refused == 1 for r in rows), max(r.refused for r in rows))
        raise TooManyRequests(
            f"too many failed logins; try again in {refusal.retry_after} s",
            refusal.retry_after,
            {"retry_after": refusal.retry_after, "refused": refusal.refused, "first": refusal.first},
        )

    def failed(self, keys: LoginKeys) -> tuple[float, bool]:
        """Count a failure. Returns (seconds to delay the answer, whether this failure locked a key)."""
        t = now()
        cfg = self.settings
        lf = s.login_failures.c
        fresh = lf.window_start < t - cfg.window_seconds
        worst = 0  # failures past the slow-down threshold, for the key furthest past it
        locked_now = False
        with self.db.write() as conn:
            for key, account, lockable in keys.rows:
                is_ip = key.startswith("ip:")
                lock_after = cfg.ip_lock_after if is_ip else cfg.lock_after
                slow_after = cfg.ip_slow_after if is_ip else cfg.slow_after
                # One atomic statement per counter: concurrent failures (a parallel guesser) must not
                # overwrite each other's counts, as a read-then-write would on PostgreSQL.
                until = t + cfg.lockout_seconds
                ins = self._insert().values(
                    key=key,
                    account=account,
                    failures=1,
                    window_start=t,
                    locked_until=until if lockable and lock_after <= 1 else None,
                    refused=0,
                )
                failures = sa.case((fresh, 1), else_=lf.failures + 1)
                still_locked = sa.and_(lf.locked_until.is_not(None), lf.locked_until > t)
                relock = sa.and_(sa.not_(still_locked), failures >= lock_after) if lockable else sa.false()
                row = conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=["key"],
                        set_={  # every expression reads the row as it was before this statement
                            "failures": failures,
                            "window_start": sa.case((fresh, t), else_=lf.window_start),
                            "locked_until": sa.case((relock, until), else_=lf.locked_until),
                            "refused": sa.case((relock, 0), else_=lf.refused),
                        },
                    ).returning(lf.failures, lf.locked_until)
                ).one()
                locked_now = locked_now or (lockable and row.locked_until == until)
                worst = max(worst, row.failures - slow_after)
        delay = min(cfg.max_delay_seconds, 0.25 * 2 ** (worst - 1)) if worst > 0 else 0.0
        return delay, locked_now

    def succeeded(self, keys: LoginKeys) -> None:
        """A good password clears the account's counters (from anywhere, and from this address), not
        the address's: one user's success must not reset the count of someone trying other accounts
        from the same place."""
        mine = [k for k, account, _ in keys.rows if account is not None]
        if not mine:
            return
        lf = s.login_failures.c
        with self.db.read() as conn:  # the common case, no failures on record, needs no write
            if conn.execute(sa.select(lf.key).where(lf.key.in_(mine))).first() is None:
                return
        with self.db.write() as conn:
            conn.execute(sa.delete(s.login_failures).where(lf.key.in_(mine)))

    def unlock(self, conn: sa.Connection, account: str) -> dict[str, int]:
        """Forget every counter and lock of this account (from every address). Returns what was
        cleared: how many addresses it was locked from and how many attempts were refused."""
        lf = s.login_failures.c
        t = now()
        rows = conn.execute(sa.select(s.login_failures).where(lf.account == account[:_NAME_CHARS])).all()
        conn.execute(sa.delete(s.login_failures).where(lf.account == account[:_NAME_CHARS]))
        return {
            "locks": sum(1 for r in rows if r.locked_until is not None and r.locked_until > t),
            "refused": sum(r.refused for r in rows),
        }
