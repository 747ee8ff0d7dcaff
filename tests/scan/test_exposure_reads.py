"""The exposure report's bounded reads, which read each key's rows from its index (one part per
manifest or digest, db/lookups.first_rows), give exactly what one statement over every row gives:
an image's first tags (untagged copies included), the first tag-history entries naming digests,
and pull pages followed by cursor, also when there are more keys than one statement takes; and a
report bounded for a page still counts every pull."""

from __future__ import annotations

import pytest

from dockyard.db import lookups
from dockyard.services import audit as audit_module
from dockyard.services.auth.permissions import Role
from dockyard.services.exposure import Affected, ExposureQuery
from dockyard.services.history import service as history_module
from dockyard.services.history.service import entries_naming
from dockyard.services.registry import catalog as catalog_module
from tests.api.conftest import Registry, basic, registry, sha256

__all__ = ["registry"]
EVE = basic("eve", "long-enough-pw")


def _few_parts(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    for module in (lookups, audit_module, history_module, catalog_module):
        monkeypatch.setattr(module, "PARTS_PER_STATEMENT", n)


@pytest.fixture
def stored(registry: Registry) -> tuple[Registry, list[str]]:
    """One image in three repositories (tagged in two, stored by digest only in a third), another
    beside it; tags moved from the first image to the second; pulls of both by tag and digest."""
    one = registry.image("a/x", [b"layer one"])
    two = registry.image("a/x", [b"layer two"])
    d1, d2 = sha256(one), sha256(two)
    for tag in ("t3", "t0", "t4", "t1", "t2"):
        assert registry.put_manifest("a/x", tag, one).status_code == 201
    assert registry.put_manifest("a/x", "u", two).status_code == 201
    assert registry.image("a/y", [b"layer one"]) == one
    assert registry.put_manifest("a/y", d1, one).status_code == 201  # untagged there
    assert registry.image("b/z", [b"layer one"]) == one
    for tag in ("s1", "s0"):
        assert registry.put_manifest("b/z", tag, one).status_code == 201
    assert registry.image("a/x", [b"layer two"]) == two
    for tag in ("t1", "t4"):  # moved away: history entries with d1 as what the tag left
        assert registry.put_manifest("a/x", tag, two).status_code == 201
    for ref in ("t0", "t1", d1, "u", "t0", d2, "t3"):
        assert registry.request("GET", f"/v2/a/x/manifests/{ref}").status_code == 200
    assert registry.request("GET", "/v2/b/z/manifests/s0").status_code == 200
    return registry, [d1, d2]


@pytest.mark.parametrize("parts", [100, 2])
def test_first_tags_of_stored_images_are_the_first_of_all(
    stored: tuple[Registry, list[str]], parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, digests = stored
    catalog = registry.services.catalog
    every = catalog.stored_with_tags(digests)
    assert ("a/y", digests[0], None, None) in every and len(every) == 1 + 3 + 3 + 2
    in_order = sorted(every, key=lambda r: (r[0], r[1], r[2] or ""))
    _few_parts(monkeypatch, parts)
    for limit in range(1, len(every) + 2):
        assert catalog.stored_with_tags(digests, limit) == in_order[:limit], limit


@pytest.mark.parametrize("parts", [100, 2])  # 2: two digests make four parts, one statement over all
def test_first_history_entries_naming_digests_are_the_first_of_all(
    stored: tuple[Registry, list[str]], parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, digests = stored
    db = registry.services.db
    every = entries_naming(db, digests, None, None)
    assert any(e["previous_digest"] == digests[0] and e["digest"] == digests[1] for e in every)
    assert len({e["id"] for e in every}) == len(every)  # an entry naming both digests comes once
    _few_parts(monkeypatch, parts)
    for limit in range(1, len(every) + 2):
        assert entries_naming(db, digests, None, None, limit) == every[:limit], limit
    in_b = [e for e in every if str(e["repository"]).startswith("b/")]
    assert entries_naming(db, digests, None, frozenset({"b"}), 2) == in_b[:2]


@pytest.mark.parametrize("parts", [100, 1])  # 1: two digests are more than a statement's parts
def test_pull_pages_walk_every_pull_once_newest_first(
    stored: tuple[Registry, list[str]], parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, digests = stored
    audit = registry.services.audit
    everything, _ = audit.pulls_of(digests, limit=1000)
    assert len(everything) == 8
    assert [(p["ts"], p["id"]) for p in everything] == sorted(((p["ts"], p["id"]) for p in everything), reverse=True)
    _few_parts(monkeypatch, parts)
    seen, before = [], None
    while True:
        page, before = audit.pulls_of(digests, limit=3, before=before)
        seen += page
        if before is None:
            break
    assert seen == everything
    only_b, _ = audit.pulls_of(digests, projects=frozenset({"b"}), limit=10)
    assert [p["repository"] for p in only_b] == ["b/z"]


def test_a_bounded_report_counts_every_pull_and_names_the_most_frequent(
    stored: tuple[Registry, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The web UI's report (detail=N) shows the N identities and addresses with most pulls and says
    it cut; its total still counts every pull."""
    registry, digests = stored
    svc = registry.services
    svc.users.create("eve", "long-enough-pw")
    svc.projects.set_member("a", "user", "eve", Role.GUEST)
    assert registry.request("GET", "/v2/a/x/manifests/t0", auth=False, headers=EVE).status_code == 200
    monkeypatch.setattr(svc.exposure, "affected", lambda q: Affected({d: [] for d in digests}, {}))
    q = ExposureQuery(package="anything")
    whole = svc.exposure.report(q, None)
    assert [r["actor"] for r in whole["pulls"]["by_identity"]] == ["admin", "eve"]
    assert whole["pulls"]["total"] == 9 and "truncated" not in whole
    cut = svc.exposure.report(q, None, detail=1)
    assert [r["actor"] for r in cut["pulls"]["by_identity"]] == ["admin"]
    assert cut["truncated"]["identities"] and not cut["truncated"]["sources"]  # one test client address
    assert cut["pulls"]["total"] == 9 and len(cut["pulls"]["by_source"]) == 1
    assert svc.exposure.report(q, frozenset({"b"}), detail=1)["pulls"]["total"] == 1
