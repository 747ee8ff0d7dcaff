"""The UI's read model: tag and repository pages walk everything once, in order, by index."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.services.errors import InvalidInput, NameUnknown
from dockyard.services.registry import browse as browse_module
from dockyard.services.registry.browse import BrowseService
from tests.api.conftest import Registry, sha256


def test_tag_pages_walk_every_tag_once_newest_first(registry: Registry) -> None:
    body = registry.image("p/app", [b"one layer", b"another"])
    names = [f"t{i:03d}" for i in range(23)]
    for name in names:
        assert registry.put_manifest("p/app", name, body).status_code == 201
    with registry.services.db.write() as conn:  # two tags pushed in the same instant: the name breaks the tie
        conn.execute(sa.update(s.tags).where(s.tags.c.name.in_(["t005", "t006"])).values(updated_at=1.0))
    browse = BrowseService(registry.services.db)
    seen, after = [], None
    while True:
        page = browse.tags("p/app", after=after, per_page=5)
        seen += [t.name for t in page.rows]
        assert all(
            t.size == len(b"one layer") + len(b"another") + len(b'{"architecture":"amd64","os":"linux"}')
            for t in page.rows
        )
        after = page.next_cursor
        if after is None:
            break
    assert sorted(seen) == names and len(seen) == len(set(seen))
    assert seen[-2:] == ["t005", "t006"]
    assert [t.name for t in browse.tags("p/app", query="t01").rows] == sorted(
        [n for n in names if "t01" in n], key=lambda n: seen.index(n)
    )
    assert browse.tags("p/app", query="%").rows == []  # LIKE wildcards are text
    with pytest.raises(NameUnknown):
        browse.tags("p/none")
    with pytest.raises(InvalidInput):
        browse.tags("p/app", after="not-a-cursor")


def test_repository_pages_sort_by_last_push_and_search(registry: Registry) -> None:
    for i in range(7):
        repo = f"team/r{i}"
        assert registry.put_manifest(repo, "v1", registry.image(repo, [f"l{i}".encode()])).status_code == 201
    assert registry.put_manifest("team/r2", "v2", registry.image("team/r2", [b"new"])).status_code == 201
    browse = BrowseService(registry.services.db)
    with registry.services.db.read() as conn:
        project_id = registry.services.projects.existing_id(conn, "team")
    first = browse.repositories(project_id, per_page=3)
    assert first.rows[0].name == "team/r2" and first.more
    rest = (
        browse.repositories(project_id, page=2, per_page=3).rows
        + browse.repositories(project_id, page=3, per_page=3).rows
    )
    assert sorted(r.name for r in first.rows + rest) == [f"team/r{i}" for i in range(7)]
    assert next(r for r in first.rows if r.name == "team/r2").tags == 2
    assert [r.name for r in browse.repositories(project_id, query="r5").rows] == ["team/r5"]
    stats = browse.project_stats([project_id])[project_id]
    assert stats.repositories == 7 and stats.last_push is not None


def _order(registry: Registry, project: str) -> list[str]:
    browse = BrowseService(registry.services.db)
    with registry.services.db.read() as conn:
        project_id = registry.services.projects.existing_id(conn, project)
    return [r.name for r in browse.repositories(project_id).rows]


def test_a_repositorys_last_push_is_its_newest_manifest_or_tag_set(registry: Registry) -> None:
    images = {}
    for i in range(3):
        repo = f"team/r{i}"
        images[repo] = registry.image(repo, [f"l{i}".encode()])
        assert registry.put_manifest(repo, "v1", images[repo]).status_code == 201
    registry.push_blob("team/blobs-only", b"a layer, no manifest yet")
    assert _order(registry, "team") == ["team/r2", "team/r1", "team/r0", "team/blobs-only"]

    # A push by digest is a push; deleting a tag is not.
    other = registry.image("team/r0", [b"by digest"])
    assert registry.put_manifest("team/r0", sha256(other), other).status_code == 201
    assert _order(registry, "team")[0] == "team/r0"
    assert registry.request("DELETE", "/v2/team/r1/manifests/v1").status_code == 202
    assert registry.request("DELETE", "/v2/team/r2/manifests/v1").status_code == 202
    assert _order(registry, "team")[:3] == ["team/r0", "team/r2", "team/r1"]

    # Setting a tag on a stored manifest (a revert) is a push.
    registry.services.manifests.retag("team/r1", "back", sha256(images["team/r1"]))
    assert _order(registry, "team")[0] == "team/r1"
    with registry.services.db.read() as conn:
        project_id = registry.services.projects.existing_id(conn, "team")
    rows = BrowseService(registry.services.db).repositories(project_id).rows
    assert [r.last_push is None for r in rows] == [False, False, False, True]  # never pushed: no time
    newest = max(r.last_push or 0 for r in rows)
    assert BrowseService(registry.services.db).project_stats([project_id])[project_id].last_push == newest


def test_tag_counts_stop_at_the_cap(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browse_module, "TAG_COUNT_CAP", 2)
    body = registry.image("team/many", [b"x"])
    for tag in ("a", "b"):
        assert registry.put_manifest("team/many", tag, body).status_code == 201
    with registry.services.db.read() as conn:
        project_id = registry.services.projects.existing_id(conn, "team")
    browse = BrowseService(registry.services.db)
    assert browse.repositories(project_id).rows[0].tags == 2
    for tag in ("c", "d", "e"):
        assert registry.put_manifest("team/many", tag, body).status_code == 201
    assert browse.repositories(project_id).rows[0].tags == 3  # more than the cap: shown as "2+"


def test_newest_move_and_last_pull_of_several_tags_in_one_statement(registry: Registry) -> None:
    one, two = registry.image("team/app", [b"one"]), registry.image("team/app", [b"two"])
    for tag, body in (("a", one), ("b", one), ("b", two), ("c", two)):
        assert registry.put_manifest("team/app", tag, body).status_code == 201
    assert registry.request("GET", "/v2/team/app/manifests/a").status_code == 200
    moves = registry.services.history.last_moves("team/app", ["a", "b", "c", "never"])
    assert {t: e.digest for t, e in moves.items()} == {"a": sha256(one), "b": sha256(two), "c": sha256(two)}
    assert moves["b"].previous_digest == sha256(one)
    pulls = registry.services.audit.last_pull_of("team/app", [sha256(one), sha256(two)])
    assert list(pulls) == [sha256(one)]


def test_locations_name_a_bounded_number_of_tags(registry: Registry) -> None:
    body = registry.image("team/app", [b"one"])
    for tag in ("c", "a", "b"):
        assert registry.put_manifest("team/app", tag, body).status_code == 201
    where = registry.services.catalog.locations([sha256(body)], tags=2)
    assert where[sha256(body)] == [{"repository": "team/app", "tags": ["a", "b"], "more_tags": True}]
    assert registry.services.catalog.locations([sha256(body)], tags=0)[sha256(body)][0]["tags"] == []
