"""The verified-token cache is bounded: however many distinct live tokens arrive, it keeps at most
CACHE_ENTRIES, the newest, and every token still verifies (a dropped one by its signature again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.db.engine import Database
from dockyard.services.auth import tokens as t
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.tokens import Scope, TokenService


def test_the_cache_keeps_at_most_its_cap_of_live_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    svc = TokenService(db, "issuer", "dockyard", 3600)
    svc.ensure_key()
    cap = 8
    monkeypatch.setattr(t, "CACHE_ENTRIES", cap)
    who = Identity(subject="alice")
    issued = [svc.issue(who, [Scope("repository", f"team/r{i}", frozenset({"pull"}))]).token for i in range(3 * cap)]
    for token in issued:
        assert svc.verify(token).subject == "alice"
        assert len(svc._cache) <= cap
    assert issued[-1] in svc._cache  # the newest stays
    assert issued[0] not in svc._cache
    assert svc.verify(issued[0]).subject == "alice"  # dropped, still valid
    db.dispose()
