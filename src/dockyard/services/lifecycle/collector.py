"""Online garbage collection, from the database, with no read-only window.

Every change that may create garbage queues a candidate (`gc_queue`): an untagged or moved-away
manifest, a blob link of a deleted manifest or of an upload no manifest claimed, a blob whose last
link went. The collector looks only at due candidates, so its cost grows with what changed, never
with the size of the registry, and it never walks storage. The algorithm and why it is safe against
concurrent pushes are written down in docs/garbage-collection.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.audit import Actor, AuditLog, acting_as
from dockyard.services.events import BlobDeleted, ManifestDeleted, RegistryListener
from dockyard.services.history.records import held_until
from dockyard.services.lifecycle import leases
from dockyard.services.lifecycle.pacing import Observation, Pacer
from dockyard.services.registry.gc_queue import enqueue_gc, with_gc_bookkeeping
from dockyard.services.registry.links import REMOVING, lock_blob, unlink_blob
from dockyard.services.registry.manifest_rows import delete_manifest_rows
from dockyard.services.registry.uploads import UploadService
from dockyard.storage.base import BlobStore

COLLECTOR = Actor("system:gc", "system")
DUTY = "gc"  # the maintenance duty, and its lease
DELETED_BYTES = Counter("dockyard_gc_deleted_bytes", "Bytes of blobs removed from storage by the collector")
# A batch transaction on PostgreSQL gives up a lock wait after this long (then takes its candidates one
# at a time), well before PostgreSQL's deadlock check (1 s) could pick a push as the victim of a cycle.
LOCK_TIMEOUT_MS = 50
_GAVE_WAY = {"55P03", "40P01"}  # lock_not_available, deadlock_detected
DELETED = Counter("dockyard_gc_deleted", "Objects removed by the collector", ["kind"])


@dataclass
class GcReport:
    manifests: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)
    links: list[tuple[str, str]] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    bytes: int = 0
    kept: int = 0  # candidates that turned out to be in use
    deferred: int = 0  # candidates still inside their grace period
    stale_uploads: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "manifests": len(self.manifests),
            "links": len(self.links),
            "blobs": len(self.blobs),
            "bytes": self.bytes,
            "kept": self.kept,
            "deferred": self.deferred,
            "stale_uploads": self.stale_uploads,
        }


class GarbageCollector:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        audit: AuditLog,
        grace: float = 3600.0,
        upload_ttl: float = 86400.0,
        pace: float | None = None,
        upload_idle_ttl: float | None = None,
        lease_ttl: float = leases.DEFAULT_TTL,
        events: RegistryListener | None = None,
        uploads: UploadService | None = None,
        pacer: Pacer | None = None,
        budget: float = 0.01,
        batch_size: int = 50,
        history_keep: float = 0.0,
    ) -> None:
        self.db = db
        self.uploads = uploads or UploadService(db, store, grace)  # owner of the upload sessions
        # Told of the manifests and links it removes: the registry's own bookkeeping queues the blob
        # a removed link may have left unlinked (always, so a collector built without listeners
        # still collects it), then `events` (audit, scans, the outbox).
        self.events = with_gc_bookkeeping(db, grace, events)
        self.store = store
        self.audit = audit
        self.grace = grace
        self.upload_ttl = upload_ttl  # a session's whole life
        self.upload_idle_ttl = upload_ttl if upload_idle_ttl is None else upload_idle_ttl  # since its last append
        self.lease_ttl = lease_ttl
        # Paced by measured contention (`pacing`), unless `pace` fixes the duty (1: never pause).
        # SQLite's ceiling leaves half the time free: a waiting writer there backs off in growing
        # sleeps rather than queueing, so a collector that took the lock back at once would starve
        # pushes without ever waiting itself, and so without ever measuring them.
        self.pacer = pacer or Pacer(ceiling=0.5 if db.is_sqlite else 1.0, fixed=pace)
        self.budget = budget  # seconds of work per write transaction: no lock is held much longer
        self.batch_size = batch_size
        # Seconds a manifest stays after a tag's history last named it (services/history): a revert
        # target is kept, deferred rather than dropped so it is looked at again when the hold ends.
        self.history_keep = history_keep

    # --- entry points ------------------------------------------------------------------------
    def run(self, dry_run: bool = False, limit: int = 100_000) -> GcReport:
        """Process every due candidate (and what their removal makes due), up to `limit` of them.

        A dry run reads only (`_plan`): it takes no write transaction, so on SQLite pushes go on while
        it plans, and it reports what a real run would remove now.
        """
        report = GcReport()
        if dry_run:
            _Plan(self, report, limit).run()
            return report
        with acting_as(COLLECTOR):
            self._drain(report, limit)
            self._stale_uploads(report)
        return report

    def run_now(self, holder: str, dry_run: bool = False) -> GcReport:
        """For `dockyard gc` and POST /system/gc. A real run holds the background collector's lease, so
        two collections never run at once (LeaseHeld, a 409, while another process collects); a dry
        run only reads and needs none."""
        if dry_run:
            return self.run(dry_run=True)
        with leases.claimed(self.db, DUTY, holder, self.lease_ttl):
            return self.run()

    def enqueue_everything(self) -> int:
        """Queue every manifest, link and blob (due now): for a registry that predates the queue, or
        after restoring a database. This one walks the whole database, by design."""
        count = 0
        with self.db.write() as conn:
            for repo_id, digest in conn.execute(sa.select(s.manifests.c.repository_id, s.manifests.c.digest)):
                enqueue_gc(self.db, conn, "manifest", repo_id, digest, 0)
                count += 1
            for repo_id, digest in conn.execute(
                sa.select(s.repository_blobs.c.repository_id, s.repository_blobs.c.digest)
            ):
                enqueue_gc(self.db, conn, "link", repo_id, digest, 0)
                count += 1
            for (digest,) in conn.execute(sa.select(s.blobs.c.digest)):
                enqueue_gc(self.db, conn, "blob", 0, digest, 0)
                count += 1
        return count

    def pending(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(s.gc_queue)).scalar() or 0)

    # --- the loop ----------------------------------------------------------------------------
    def _drain(self, report: GcReport, limit: int) -> None:
        q = s.gc_queue.c
        done = 0
        seen: set[int] = set()
        while done < limit:
            with self.db.read() as conn:
                batch = conn.execute(
                    sa.select(q.id, q.kind, q.repository_id, q.digest, q.due_at)
                    .where(q.due_at <= now())
                    .order_by(q.due_at, q.id)
                    .limit(200)
                ).all()
            batch = [item for item in batch if item.id not in seen]
            if not batch:
                return
            while batch and done < limit:
                leases.heartbeat()  # renews the lease of a long run; stops one whose lease was lost
                taken = self._batch(batch[: min(self.batch_size, limit - done)], report)
                seen.update(item.id for item in batch[:taken])
                batch = batch[taken:]
                done += taken

    def _batch(self, items: list[Any], report: GcReport) -> int:
        """Decide about a run of candidates in one write transaction, for as long as `budget` allows
        (fewer commits than one transaction each, and no lock held longer than the budget); then sweep
        the blobs it marked. Returns how many candidates it took.

        On PostgreSQL the transaction gives up any lock wait after LOCK_TIMEOUT (it holds the locks of
        several candidates, so waiting for a push could close a cycle): it rolls back, and what it was
        deciding is taken again one candidate per transaction, waiting for locks as a push does.
        """
        clock = self.pacer.clock
        done, marked = GcReport(), []
        taken = 0
        asked = started = clock()
        try:
            with self.db.write() as conn:
                if not self.db.is_sqlite:
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
                started = clock()  # SQLite has waited for the write lock by now; PostgreSQL for a round trip
                for item in items:
                    taken += 1
                    if self._decide(conn, item, done):
                        marked.append(item)
                    if clock() - started >= self.budget:
                        break
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) not in _GAVE_WAY:
                raise
            self.pacer.observe(Observation(str(items[0].kind), started - asked, clock() - started, 0, True))
            for item in items[:taken]:
                self._alone(item, report)
            return taken
        # The marked blobs are swept before the pause: `deleting` blobs answer 404 meanwhile.
        self.pacer.observe(Observation(str(items[0].kind), started - asked, clock() - started, taken), not marked)
        _merge(report, done)
        self._sweep(marked, report)
        return taken

    def _alone(self, item: Any, report: GcReport) -> None:
        """One candidate in its own transaction, waiting for any lock it needs."""
        done = GcReport()
        with self.db.write() as conn:
            marked = self._decide(conn, item, done)
        _merge(report, done)
        if marked:
            self._sweep([item], report, alone=True)

    def _decide(self, conn: sa.Connection, item: Any, done: GcReport) -> bool:
        """Settle one candidate in `conn`; True for a blob marked for the sweep."""
        if item.kind == "manifest":
            self._manifest(conn, item, done)
        elif item.kind == "link":
            self._link(conn, item, done)
        else:
            return self._mark(conn, item, done)
        return False

    def _sweep(self, marked: list[Any], report: GcReport, alone: bool = False) -> None:
        """Phase 2 for blobs whose mark has committed, several per transaction within the budget."""
        clock = self.pacer.clock
        while marked:
            done, taken = GcReport(), 0
            asked = started = clock()
            try:
                with self.db.write() as conn:
                    if not self.db.is_sqlite and not alone:
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
                    started = clock()
                    removing: list[tuple[Any, int]] = []
                    for item in marked:
                        taken += 1
                        size = self._remove(conn, item, done)
                        if size is not None:
                            removing.append((item, size))
                        if clock() - started >= self.budget:
                            break
            except sa.exc.OperationalError as exc:
                # Rolled back: nothing was removed yet (bytes go only after the commit); those blobs
                # stay `deleting` and are finished one at a time.
                if alone or getattr(exc.orig, "sqlstate", None) not in _GAVE_WAY:
                    raise
                self.pacer.observe(Observation("sweep", started - asked, clock() - started, 0, True))
                for item in marked[:taken]:
                    self._sweep([item], report, alone=True)
                marked = marked[taken:]
                continue
            if not alone:
                self.pacer.observe(Observation("sweep", started - asked, clock() - started, taken))
            _merge(report, done)
            self._finish(removing, report)
            marked = marked[taken:]

    def _settle(self, conn: sa.Connection, item: Any, defer_until: float | None = None) -> None:
        """Drop the queue entry, unless it was queued again meanwhile (then it stays for its new time)."""
        q = s.gc_queue.c
        if defer_until is not None:
            conn.execute(
                sa.update(s.gc_queue).where(q.id == item.id, q.due_at == item.due_at).values(due_at=defer_until)
            )
        else:
            conn.execute(sa.delete(s.gc_queue).where(q.id == item.id, q.due_at == item.due_at))

    def _manifest(self, conn: sa.Connection, item: Any, report: GcReport) -> None:
        m = s.manifests.c
        stmt = sa.select(m.id, m.created_at, m.subject_digest).where(
            m.repository_id == item.repository_id, m.digest == item.digest
        )
        if not self.db.is_sqlite:
            stmt = stmt.with_for_update()  # pushes share-lock a manifest they reuse or index
        row = conn.execute(stmt).first()
        if row is None:
            return self._settle(conn, item)
        if row.created_at > now() - self.grace:
            report.deferred += 1
            return self._settle(conn, item, row.created_at + self.grace)
        if self._manifest_in_use(conn, int(item.repository_id), str(item.digest), row):
            report.kept += 1
            return self._settle(conn, item)
        repo = conn.execute(sa.select(s.repositories.c.name).where(s.repositories.c.id == item.repository_id)).scalar()
        held = held_until(conn, str(repo), str(item.digest), self.history_keep)
        if held is not None and held > now():
            report.deferred += 1
            return self._settle(conn, item, held)
        tags = delete_manifest_rows(self.db, conn, int(item.repository_id), int(row.id), str(item.digest))
        self.events.changed(
            conn, ManifestDeleted(repository=str(repo), digest=str(item.digest), tags=tags, collected=True)
        )
        self._settle(conn, item)
        report.manifests.append((str(repo), str(item.digest)))

    def _manifest_in_use(self, conn: sa.Connection, repo_id: int, digest: str, row: Any) -> bool:
        m = s.manifests.c
        if conn.execute(sa.select(s.tags.c.name).where(s.tags.c.manifest_id == row.id).limit(1)).first():
            return True
        if _referenced(conn, s.manifest_children, s.manifest_children.c.child_digest, repo_id, digest):
            return True  # a child of an index
        if row.subject_digest:  # a referrer lives as long as its subject
            subject = conn.execute(
                sa.select(m.id).where(m.repository_id == repo_id, m.digest == row.subject_digest)
            ).first()
            return subject is not None
        return False

    def _link(self, conn: sa.Connection, item: Any, report: GcReport) -> None:
        rb = s.repository_blobs.c
        digest, repo_id = str(item.digest), int(item.repository_id)
        lock_blob(self.db, conn, digest)  # manifest pushes share-lock the blobs they reference
        link = conn.execute(sa.select(rb.created_at).where(rb.repository_id == repo_id, rb.digest == digest)).first()
        if link is None:
            return self._settle(conn, item)
        if link.created_at > now() - self.grace:
            report.deferred += 1
            return self._settle(conn, item, link.created_at + self.grace)
        if _referenced(conn, s.manifest_blobs, s.manifest_blobs.c.digest, repo_id, digest):
            report.kept += 1
            return self._settle(conn, item)
        unlink_blob(self.db, conn, repo_id, digest)  # the registry's unlink: the link and usage
        repo = conn.execute(sa.select(s.repositories.c.name).where(s.repositories.c.id == repo_id)).scalar()
        # Its listener queues the blob, which may have lost its last link.
        self.events.changed(conn, BlobDeleted(repository=str(repo), digest=digest, collected=True))
        self._settle(conn, item)
        report.links.append((str(repo), digest))

    def _mark(self, conn: sa.Connection, item: Any, report: GcReport) -> bool:
        """Phase 1 of removing a blob: under the row lock, with no link and no manifest reference
        anywhere, set it `deleting`. True when marked: the sweep runs after this transaction commits."""
        b = s.blobs.c
        digest = str(item.digest)
        blob = lock_blob(self.db, conn, digest)
        if blob is None:
            self._settle(conn, item)
            return False
        created = conn.execute(sa.select(b.created_at).where(b.digest == digest)).scalar_one()
        if created > now() - self.grace:
            report.deferred += 1
            self._settle(conn, item, created + self.grace)
            return False
        linked = conn.execute(
            sa.select(s.repository_blobs.c.repository_id).where(s.repository_blobs.c.digest == digest).limit(1)
        ).first()
        referenced = conn.execute(
            sa.select(s.manifest_blobs.c.manifest_id).where(s.manifest_blobs.c.digest == digest).limit(1)
        ).first()
        if blob.status != REMOVING and (linked is not None or referenced is not None):
            if blob.status != "ok":
                conn.execute(sa.update(s.blobs).where(b.digest == digest).values(status="ok"))
            report.kept += 1
            self._settle(conn, item)
            return False
        if blob.status != REMOVING:  # `removing`: a removal that died half-way, finished by the sweep
            conn.execute(sa.update(s.blobs).where(b.digest == digest).values(status="deleting"))
        return True

    def _remove(self, conn: sa.Connection, item: Any, report: GcReport) -> int | None:
        """Phase 2, in the sweep's transaction: a blob still marked (a push in between took it back:
        `ok`) becomes `removing`, which no push takes back. Returns its size; the bytes go after this
        transaction commits, outside any transaction (a storage round trip must not hold the write
        lock), then the row (`_finish`). A push that links meanwhile is refused; one that linked just
        before finds the bytes missing afterwards and uploads again (links.confirm_stored)."""
        digest = str(item.digest)
        blob = lock_blob(self.db, conn, digest)
        if blob is None or blob.status not in ("deleting", REMOVING):
            report.kept += 1
            self._settle(conn, item)
            return None
        conn.execute(sa.update(s.blobs).where(s.blobs.c.digest == digest).values(status=REMOVING))
        return int(blob.size)

    def _finish(self, removing: list[tuple[Any, int]], report: GcReport) -> None:
        """Delete the bytes of `removing` blobs (no transaction open), then their rows in one."""
        for item, _ in removing:
            self.store.delete(str(item.digest))
        done = GcReport()
        with self.db.write() as conn:
            for item, size in removing:
                digest = str(item.digest)
                row = lock_blob(self.db, conn, digest)
                if row is not None and row.status == REMOVING:
                    conn.execute(sa.delete(s.blobs).where(s.blobs.c.digest == digest))
                self.audit.record(conn, "gc.blob", digest=digest, detail={"size": size})
                self._settle(conn, item)
                done.blobs.append(digest)
                done.bytes += size
        _merge(report, done)

    # --- abandoned uploads -------------------------------------------------------------------
    def _stale_uploads(self, report: GcReport) -> None:
        report.stale_uploads += self.expire_uploads()

    def expire_uploads(self, at: float | None = None) -> int:
        """Remove upload sessions abandoned at time `at` (default now), with their staged bytes (the
        rule is the owner's: `UploadService.expire_abandoned`). Returns how many went."""
        return self.uploads.expire_abandoned(self.upload_idle_ttl, self.upload_ttl, at)


class _Plan:
    """The dry run: the collector's decisions, taken from reads only.

    What the run would delete is kept in memory, and every check leaves those rows out, so what one
    removal makes garbage (a manifest's links and the manifests it indexed or that referred to it, a
    link's blob) is planned in the same pass, as a real run processes it. One short read transaction
    per batch of 200 candidates: no write lock (SQLite has one writer: a dry run used to hold it for
    the whole plan and stop every push), and no snapshot held for the whole plan either.
    """

    BATCH = 200

    def __init__(self, gc: GarbageCollector, report: GcReport, limit: int) -> None:
        self.gc, self.report, self.limit = gc, report, limit
        self.started = now()
        self.manifests: set[int] = set()  # ids a real run would delete
        self.links: set[tuple[int, str]] = set()
        self.blobs: set[str] = set()
        # What those deletions would queue, in queue order: queuing a pending key again moves it last,
        # as the real run's upsert moves its entry's due time.
        self.cascade: dict[tuple[str, int, str], None] = {}
        self.cursor: tuple[float, int] = (float("-inf"), 0)  # the last queue entry planned, by (due_at, id)
        self.done = 0
        self._repos: dict[int, str] = {}

    def run(self) -> None:
        q = s.gc_queue.c
        while self.done < self.limit:
            with self.gc.db.read() as conn:
                due, after = self.cursor
                batch = conn.execute(
                    sa.select(q.id, q.kind, q.repository_id, q.digest, q.due_at)
                    .where(q.due_at <= self.started, sa.or_(q.due_at > due, sa.and_(q.due_at == due, q.id > after)))
                    .order_by(q.due_at, q.id)
                    .limit(min(self.BATCH, self.limit - self.done))
                ).all()
                for item in batch:
                    self.cursor = (float(item.due_at), int(item.id))
                    self._one(conn, str(item.kind), int(item.repository_id), str(item.digest))
            if not batch:
                break
        while self.cascade and self.done < self.limit:  # after the queue, as a real run reaches them
            with self.gc.db.read() as conn:
                for _ in range(min(self.BATCH, len(self.cascade), self.limit - self.done)):
                    key = next(iter(self.cascade))
                    del self.cascade[key]
                    self._one(conn, *key)

    def _one(self, conn: sa.Connection, kind: str, repo_id: int, digest: str) -> None:
        self.done += 1
        if kind == "manifest":
            self._manifest(conn, repo_id, digest)
        elif kind == "link":
            self._link(conn, repo_id, digest)
        else:
            self._blob(conn, digest)

    def _queue(self, conn: sa.Connection, kind: str, repo_id: int, digest: str) -> None:
        """What a real run would enqueue: an entry still ahead in the queue is reached there (the
        real run's upsert moves that same entry), anything else is planned after the queue."""
        q = s.gc_queue.c
        due, after = self.cursor
        ahead = conn.execute(
            sa.select(q.id).where(
                q.kind == kind,
                q.repository_id == repo_id,
                q.digest == digest,
                q.due_at <= self.started,
                sa.or_(q.due_at > due, sa.and_(q.due_at == due, q.id > after)),
            )
        ).first()
        if ahead is None:
            self.cascade.pop((kind, repo_id, digest), None)
            self.cascade[(kind, repo_id, digest)] = None

    def _repo(self, conn: sa.Connection, repo_id: int) -> str:
        if repo_id not in self._repos:
            r = s.repositories.c
            self._repos[repo_id] = str(conn.execute(sa.select(r.name).where(r.id == repo_id)).scalar())
        return self._repos[repo_id]

    def _within_grace(self, created_at: float) -> bool:
        if created_at > now() - self.gc.grace:
            self.report.deferred += 1
            return True
        return False

    def _manifest(self, conn: sa.Connection, repo_id: int, digest: str) -> None:
        m, mc = s.manifests.c, s.manifest_children.c
        row = conn.execute(
            sa.select(m.id, m.created_at, m.subject_digest).where(m.repository_id == repo_id, m.digest == digest)
        ).first()
        if row is None or row.id in self.manifests or self._within_grace(row.created_at):
            return
        tagged = conn.execute(sa.select(s.tags.c.name).where(s.tags.c.manifest_id == row.id).limit(1)).first()
        parents = _all(
            conn,
            sa.select(mc.manifest_id)
            .select_from(s.manifest_children.join(s.manifests, m.id == mc.manifest_id))
            .where(m.repository_id == repo_id, mc.child_digest == digest),
        )
        subject = None
        if row.subject_digest:
            subject = conn.execute(
                sa.select(m.id).where(m.repository_id == repo_id, m.digest == row.subject_digest)
            ).scalar()
        if tagged or any(p not in self.manifests for p in parents) or (subject and subject not in self.manifests):
            self.report.kept += 1
            return
        held = held_until(conn, self._repo(conn, repo_id), digest, self.gc.history_keep)
        if held is not None and held > now():
            self.report.deferred += 1
            return
        self.manifests.add(int(row.id))
        self.report.manifests.append((self._repo(conn, repo_id), digest))
        # What delete_manifest_rows would queue, in its order.
        blobs = _all(conn, sa.select(s.manifest_blobs.c.digest).where(s.manifest_blobs.c.manifest_id == row.id))
        children = _all(conn, sa.select(mc.child_digest).where(mc.manifest_id == row.id))
        referrers = conn.execute(
            sa.select(m.id, m.digest).where(m.repository_id == repo_id, m.subject_digest == digest)
        ).all()
        for blob in sorted(blobs):
            self._queue(conn, "link", repo_id, blob)
        for child in sorted({*children, *(r.digest for r in referrers if r.id not in self.manifests)}):
            self._queue(conn, "manifest", repo_id, child)

    def _link(self, conn: sa.Connection, repo_id: int, digest: str) -> None:
        rb, m, mb = s.repository_blobs.c, s.manifests.c, s.manifest_blobs.c
        link = sa.select(rb.created_at).where(rb.repository_id == repo_id, rb.digest == digest)
        created = conn.execute(link).scalar()
        if created is None or (repo_id, digest) in self.links or self._within_grace(created):
            return
        users = _all(
            conn,
            sa.select(mb.manifest_id)
            .select_from(s.manifest_blobs.join(s.manifests, m.id == mb.manifest_id))
            .where(m.repository_id == repo_id, mb.digest == digest),
        )
        if any(u not in self.manifests for u in users):
            self.report.kept += 1
            return
        self.links.add((repo_id, digest))
        self.report.links.append((self._repo(conn, repo_id), digest))
        self._queue(conn, "blob", 0, digest)

    def _blob(self, conn: sa.Connection, digest: str) -> None:
        b, rb, mb = s.blobs.c, s.repository_blobs.c, s.manifest_blobs.c
        blob = conn.execute(sa.select(b.size, b.created_at).where(b.digest == digest)).first()
        if blob is None or digest in self.blobs or self._within_grace(blob.created_at):
            return
        links = _all(conn, sa.select(rb.repository_id).where(rb.digest == digest))
        users = _all(conn, sa.select(mb.manifest_id).where(mb.digest == digest))
        if any((r, digest) not in self.links for r in links) or any(u not in self.manifests for u in users):
            self.report.kept += 1
            return
        self.blobs.add(digest)
        self.report.blobs.append(digest)
        self.report.bytes += int(blob.size)


def _merge(report: GcReport, done: GcReport) -> None:
    """Count what a committed transaction did (never what a rolled-back one tried)."""
    report.manifests += done.manifests
    report.links += done.links
    report.blobs += done.blobs
    report.bytes += done.bytes
    report.kept += done.kept
    report.deferred += done.deferred
    for kind, removed in (("manifest", done.manifests), ("link", done.links), ("blob", done.blobs)):
        if removed:
            DELETED.labels(kind).inc(len(removed))
    if done.bytes:
        DELETED_BYTES.inc(done.bytes)


def _all(conn: sa.Connection, stmt: sa.Select[Any]) -> list[Any]:
    return list(conn.execute(stmt).scalars())


def _referenced(conn: sa.Connection, refs: sa.Table, digest: sa.Column[Any], repo_id: int, value: str) -> bool:
    """Whether a manifest of the repository refers to `value` through `refs` (its children, its blobs)."""
    m = s.manifests.c
    return (
        conn.execute(
            sa.select(refs.c.manifest_id)
            .select_from(refs.join(s.manifests, m.id == refs.c.manifest_id))
            .where(m.repository_id == repo_id, digest == value)
            .limit(1)
        ).first()
        is not None
    )
