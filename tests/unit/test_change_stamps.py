"""Change stamps (db/changes.py): what the read caches trust before they answer from memory."""

from __future__ import annotations

from pathlib import Path

from dockyard.db.changes import ChangeStamp, NotifyStamp, SharedFileStamp, stamp_for
from dockyard.services.registry.read_cache import ContentCache, StampedCache


def test_processes_sharing_a_sqlite_file_see_each_others_bumps(tmp_path: Path) -> None:
    # Two mappings of one file, as two worker processes have.
    one, two = SharedFileStamp(tmp_path / "db-changes"), SharedFileStamp(tmp_path / "db-changes")
    before = two.current()
    one.bump()
    assert two.current() != before
    assert one.current() == two.current()


def test_the_stamp_suits_the_database() -> None:
    assert isinstance(stamp_for("postgresql+psycopg://u@h/db"), NotifyStamp)
    assert type(stamp_for("sqlite:///:memory:")) is ChangeStamp


def test_without_notifications_nothing_is_cached() -> None:
    stamp = NotifyStamp("postgresql://127.0.0.1:1/nothing?connect_timeout=1")  # nobody listens there
    try:
        assert not stamp.wait_listening(5)
        cache: StampedCache[str, str] = StampedCache(stamp)
        cache.put(cache.stamp(), "k", "v")
        assert cache.get("k") is None
    finally:
        stamp.close()


def test_an_answer_read_before_a_change_is_never_served_after_it() -> None:
    stamp = ChangeStamp()
    cache: StampedCache[str, str] = StampedCache(stamp)
    taken = cache.stamp()
    stamp.bump()  # a write committed while the answer was being read
    cache.put(taken, "k", "old")
    assert cache.get("k") is None
    cache.put(cache.stamp(), "k", "new")
    assert cache.get("k") == "new"
    stamp.bump()
    assert cache.get("k") is None


def test_caches_stay_within_their_bounds() -> None:
    cache: StampedCache[int, int] = StampedCache(ChangeStamp(), capacity=3)
    for i in range(5):
        cache.put(cache.stamp(), i, i)
    assert [cache.get(i) for i in range(5)] == [None, None, 2, 3, 4]
    content = ContentCache(max_bytes=100)
    for i in range(5):
        content.put(f"d{i}", bytes(10 * [i]))
    content.put("big", bytes(11))  # over a tenth of the bound: not kept
    assert content.get("big") is None
    for i in range(5):
        content.put(f"e{i}", bytes(10))
    assert sum(content.get(k) is not None for k in [f"d{i}" for i in range(5)] + [f"e{i}" for i in range(5)]) == 10
    content.put("f", bytes(10))
    assert content.get("d0") is None and content.get("f") is not None


def test_the_stamp_file_waits_for_the_data_folder(tmp_path: Path) -> None:
    # `serve` makes its Database before it creates the data folder: the stamp must not need it yet.
    stamp = stamp_for(f"sqlite:///{tmp_path / 'new' / 'dockyard.db'}")
    (tmp_path / "new").mkdir()
    before = stamp.current()
    stamp.bump()
    assert stamp.current() != before


def test_only_writes_to_cached_tables_move_the_stamp(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from dockyard.db import schema as s
    from dockyard.db.engine import Database

    db = Database(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        db.migrate()
        moved = db.changes.current()
        with db.write() as conn:  # an audit flush, a login failure: nothing a cache holds
            conn.execute(sa.delete(s.audit_events))
            conn.execute(sa.delete(s.login_failures))
        assert db.changes.current() == moved
        with db.write() as conn:
            conn.execute(sa.delete(s.tags))
        assert db.changes.current() != moved
        moved = db.changes.current()
        with db.write() as conn:  # a project's deletion reaches repositories through a foreign key
            conn.execute(sa.delete(s.projects).where(s.projects.c.id == -1))
        assert db.changes.current() != moved
        moved = db.changes.current()
        with db.write() as conn:  # a kind of statement not recognised counts as a change
            conn.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
        assert db.changes.current() != moved
    finally:
        db.dispose()


def test_statement_kinds() -> None:
    from dockyard.db.engine import writes_cached_table

    assert not writes_cached_table("SELECT * FROM tags")
    assert not writes_cached_table("BEGIN IMMEDIATE")
    assert not writes_cached_table("INSERT INTO audit_events (a) VALUES (?)")
    assert not writes_cached_table('UPDATE "queue_items" SET state=?')
    assert writes_cached_table("INSERT OR IGNORE INTO repository_blobs (a) VALUES (?)")
    assert writes_cached_table("UPDATE tags SET manifest_id=%(m)s")
    assert writes_cached_table("DELETE FROM blobs WHERE digest = ?")
    assert writes_cached_table("WITH gone AS (DELETE FROM gc_queue RETURNING 1) SELECT 1")


def test_answers_under_an_old_stamp_leave_memory() -> None:
    stamp = ChangeStamp()
    cache: StampedCache[int, int] = StampedCache(stamp)
    for i in range(100):
        cache.put(cache.stamp(), i, i)
    old = cache.stamp()
    stamp.bump()
    cache.put(cache.stamp(), -1, -1)  # the first answer under the new stamp drops the dead ones
    assert len(cache) == 1 and cache.get(-1) == -1
    cache.put(old, 5, 5)  # read before the change, stored after it: not kept
    assert len(cache) == 1 and cache.get(5) is None


def test_a_weighed_cache_stays_within_its_bytes() -> None:
    cache: StampedCache[int, bytes] = StampedCache(ChangeStamp(), weigh=len, max_weight=100)
    cache.put(cache.stamp(), 0, bytes(26))  # over a quarter of the bound: not kept
    assert cache.get(0) is None and cache.weight == 0
    for i in range(1, 10):
        cache.put(cache.stamp(), i, bytes(20))
    assert cache.weight <= 100 and len(cache) == 5
    assert [cache.get(i) is not None for i in range(1, 10)] == [False] * 4 + [True] * 5
    cache.put(cache.stamp(), 9, bytes(5))  # replacing an answer replaces its weight
    assert cache.weight == 85
