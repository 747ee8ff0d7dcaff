"""The UI's read model: tag and repository pages walk everything once, in order, by index."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.services.errors import InvalidInput, NameUnknown
from dockyard.services.registry.browse import BrowseService
from tests.api.conftest import Registry


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
