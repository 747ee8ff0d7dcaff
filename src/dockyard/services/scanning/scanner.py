"""Scanning images stored in the registry: a queue of digests in `image_scans`, worked by the
background duty of one replica at a time; layer inventories stored once per layer digest; findings
stored per image and re-evaluated from stored inventories whenever the vulnerability database changes.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.logs import get_logger
from dockyard.oci import mediatypes as mt
from dockyard.oci.errors import InvalidManifest
from dockyard.oci.manifest import parse_manifest
from dockyard.oci.names import project_of
from dockyard.scan.inventory import LayerInventory, combine, inventory_layer
from dockyard.scan.layers import ChunkReader, layer_stream
from dockyard.scan.matcher import Matcher, package_from_stored, package_to_stored
from dockyard.scan.model import DEFAULT_STALE_AFTER, DatabaseInfo, Distro, Finding, Package, ScanResult
from dockyard.scan.vulndb import Snapshot, VulnDB
from dockyard.services.audit import AuditLog
from dockyard.services.lifecycle import leases
from dockyard.services.scanning.external import HarborAdapterScanner
from dockyard.storage.base import BlobStore

_log = get_logger("dockyard.scan")

# Bumped when detectors change what they find: stored layer inventories of older versions are redone.
SCANNER_VERSION = 2  # 2: Python .egg-info files and eggs
MAX_ATTEMPTS = 3
# A scan's claim on an image (status `scanning`): renewed while the scan progresses; once it runs out
# (the scanning process died) the image is back in the queue. A crash counts as an attempt, so an
# image that kills the scanner every time ends `failed` instead of taking it down forever.
CLAIM_SECONDS = 600.0
LAYER_MARKERS = ("tar", "rootfs")  # layer media types that hold a filesystem


def _now() -> float:
    return time.time()


def _claimable(c: Any, t: float) -> Any:
    """Queued, or claimed by a scan that stopped renewing its claim (its process died)."""
    abandoned = sa.and_(c.status == "scanning", sa.or_(c.claim_expires.is_(None), c.claim_expires < t))
    return sa.or_(c.status == "queued", abandoned)


@dataclass
class ScanRun:
    scanned: int = 0
    failed: int = 0
    skipped: int = 0
    indexes: int = 0  # each queues its platforms' images
    unsupported: int = 0  # artifacts (signatures, SBOMs, …): nothing to scan
    layers_read: int = 0
    layers_reused: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Reevaluation:
    images: int = 0
    changed: int = 0
    gained: dict[str, list[str]] = field(default_factory=dict)  # digest -> advisory ids it gained
    seconds: float = 0.0
    generation: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.images, "changed": self.changed, "gained": len(self.gained), "seconds": self.seconds}


class ScanService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        vulndb: VulnDB,
        audit: AuditLog,
        scan_on_push: bool = True,
        external: HarborAdapterScanner | None = None,
        stale_after: float = DEFAULT_STALE_AFTER,
        severity_sources: Iterable[str] = (),
    ) -> None:
        self.db = db
        self.store = store
        self.vulndb = vulndb
        self.audit = audit
        self.scan_on_push = scan_on_push
        self.matcher = Matcher(vulndb)
        self.external = external
        self._startup_checked = False
        self._claim_renewed = 0.0
        self.stale_after = stale_after
        self.severity_sources = list(severity_sources)  # CVSS of CVEs (NVD), updated with the advisories
        self._warned_state: str | None = None  # the database state last warned about (once per change)

    # -- the queue --------------------------------------------------------------------------------

    def enqueue(self, conn: sa.Connection, repository: str, digest: str, requested: bool = False) -> None:
        """Queue an image (in the caller's transaction: a push queues its scan as it commits)."""
        if requested:
            stmt = self.db.upsert(
                s.image_scans,
                ["digest"],
                digest=digest,
                repository=repository,
                status="queued",
                requested=True,
                queued_at=_now(),
                attempts=0,
            )
            conn.execute(stmt)
        else:
            conn.execute(
                self.db.insert_ignore(
                    s.image_scans, digest=digest, repository=repository, status="queued", queued_at=_now()
                )
            )

    def request(self, repository: str, digest: str) -> None:
        with self.db.write() as conn:
            self.enqueue(conn, repository, digest, requested=True)

    def pending(self) -> int:
        c = s.image_scans.c
        with self.db.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(s.image_scans).where(_claimable(c, _now()))
                ).scalar_one()
            )

    def run(self, limit: int = 50) -> ScanRun:
        """Scan queued images, oldest first (the maintenance duty; one replica at a time holds its lease).

        First, if the vulnerability database changed since the stored results were computed (an update
        by `dockyard vulndb update` or the API, or while this process was not running), re-evaluate.
        """
        if self.refresh() or (not self._startup_checked and self._stale_images()):
            self.reevaluate()
        self._startup_checked = True
        result = ScanRun()
        if self.pending():
            self.check_database()
        c = s.image_scans.c
        tried: set[str] = set()  # a failed image is requeued for a later run, not retried within this one
        for _ in range(limit):
            leases.heartbeat()
            with self.db.engine.connect() as conn:
                query = sa.select(c.digest, c.repository, c.requested, c.attempts, c.status).where(
                    _claimable(c, _now())
                )
                if tried:
                    query = query.where(c.digest.not_in(sorted(tried)))
                row = conn.execute(query.order_by(c.queued_at).limit(1)).first()
            if row is None:
                break
            tried.add(row.digest)
            if row.status == "scanning" and int(row.attempts) >= MAX_ATTEMPTS:
                error = f"the scan stopped without a result {row.attempts} times (did the scanning process die?)"
                self._set(row.digest, status="failed", error=error)
                _log.warning("scan failed", digest=row.digest, error=error)
                result.failed += 1
                continue
            self._scan_one(row.digest, row.repository, bool(row.requested), int(row.attempts), result)
        return result

    def _claim(self, digest: str, attempts: int) -> bool:
        """Take the image (queued, or abandoned by a dead scan) in one statement: False if another got it."""
        c, t = s.image_scans.c, _now()
        with self.db.write() as conn:
            claimed = conn.execute(
                sa.update(s.image_scans)
                .where(c.digest == digest, _claimable(c, t))
                .values(status="scanning", attempts=attempts + 1, claim_expires=t + CLAIM_SECONDS)
            ).rowcount
        self._claim_renewed = time.monotonic()
        return claimed == 1

    def _progress(self, digest: str) -> None:
        """Between the steps of a scan: keep the duty's lease and this image's claim alive."""
        leases.heartbeat()
        if time.monotonic() - self._claim_renewed >= CLAIM_SECONDS / 4:
            c = s.image_scans.c
            with self.db.write() as conn:
                conn.execute(
                    sa.update(s.image_scans)
                    .where(c.digest == digest, c.status == "scanning")
                    .values(claim_expires=_now() + CLAIM_SECONDS)
                )
            self._claim_renewed = time.monotonic()

    def _set(self, digest: str, **values: Any) -> None:
        with self.db.write() as conn:
            conn.execute(sa.update(s.image_scans).where(s.image_scans.c.digest == digest).values(**values))

    def _scan_one(self, digest: str, repository: str, requested: bool, attempts: int, out: ScanRun) -> None:
        if not requested and not self._project_scans_on_push(repository):
            self._set(digest, status="skipped")
            out.skipped += 1
            return
        if not self._claim(digest, attempts):
            return
        try:
            self._scan(digest, repository, out)
        except leases.LeaseLost:  # another process scans now: back in the queue, not this image's fault
            self._set(digest, status="queued", attempts=attempts)
            raise
        except Exception as exc:  # one bad image must not stop the queue
            status = "failed" if attempts + 1 >= MAX_ATTEMPTS else "queued"
            # The one record of this failure (the run's summary only counts it).
            _log.warning(
                "scan failed",
                digest=digest,
                repository=repository,
                error_type=type(exc).__name__,
                error=str(exc),
                attempt=attempts + 1,
                will_retry=status == "queued",
            )
            self._set(digest, status=status, error=str(exc)[:2000], queued_at=_now())
            out.failed += 1

    def _project_scans_on_push(self, repository: str) -> bool:
        project = project_of(repository)
        with self.db.engine.connect() as conn:
            value = conn.execute(sa.select(s.projects.c.scan_on_push).where(s.projects.c.name == project)).scalar()
        return self.scan_on_push if value is None else bool(value)

    # -- scanning one image -----------------------------------------------------------------------

    def _manifest(self, digest: str) -> tuple[str, bytes] | None:
        m = s.manifests.c
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(m.media_type, m.content).where(m.digest == digest).limit(1)).first()
        return (row.media_type, bytes(row.content)) if row else None

    def _scan(self, digest: str, repository: str, out: ScanRun) -> None:
        found = self._manifest(digest)
        if found is None:
            self._set(digest, status="failed", error="the manifest is no longer stored")
            return
        media_type, body = found
        try:
            parsed = parse_manifest(body, media_type, max_bytes=None)  # admitted at push time
        except InvalidManifest as exc:
            self._set(digest, status="unsupported", error=exc.message)
            out.unsupported += 1
            return
        if parsed.manifests:  # an index: each platform's image is scanned on its own
            with self.db.write() as conn:
                for child in parsed.manifests:
                    self.enqueue(conn, repository, child.digest)
                conn.execute(
                    sa.update(s.image_scans)
                    .where(s.image_scans.c.digest == digest)
                    .values(status="done", scanned_at=_now(), error=None, summary=None)
                )
            out.indexes += 1
            return
        if parsed.config is None or parsed.config.media_type not in mt.IMAGE_CONFIGS:
            self._set(digest, status="unsupported", error="not a container image (an artifact)")
            out.unsupported += 1
            return
        if self.external is not None:
            findings = self.external.scan(repository, digest, media_type, progress=lambda: self._progress(digest))
            with self.db.write() as conn:
                self._store_result(conn, digest, [], None, findings, scanner=self.external.name)
                self.audit.record(
                    conn,
                    "scan",
                    repository=repository,
                    digest=digest,
                    detail={"scanner": self.external.name, "findings": _summary(findings)},
                )
            out.scanned += 1
            return
        layers = []
        for layer in parsed.layers:
            if not any(marker in layer.media_type for marker in LAYER_MARKERS):
                continue
            self._progress(digest)
            layers.append(self._layer_inventory(layer.digest, out))
        packages, distro = combine(layers)
        findings = self.matcher.match(packages, distro)
        with self.db.write() as conn:
            self._store_result(conn, digest, packages, distro, findings)
            self.audit.record(
                conn,
                "scan",
                repository=repository,
                digest=digest,
                detail={"packages": len(packages), "findings": _summary(findings)},
            )
        out.scanned += 1

    def _layer_inventory(self, digest: str, out: ScanRun) -> LayerInventory:
        li = s.layer_inventories.c
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(li.inventory).where(li.digest == digest, li.scanner_version == SCANNER_VERSION)
            ).first()
        if row is not None:
            out.layers_reused += 1
            return LayerInventory.from_json(json.loads(row.inventory))
        reader = io.BufferedReader(ChunkReader(self.store.open_range(digest)), 1 << 20)
        inv = inventory_layer(layer_stream(reader))
        out.layers_read += 1
        with self.db.write() as conn:
            conn.execute(
                self.db.upsert(
                    s.layer_inventories,
                    ["digest"],
                    digest=digest,
                    scanner_version=SCANNER_VERSION,
                    inventory=json.dumps(inv.to_json()),
                    created_at=_now(),
                )
            )
        return inv

    def _store_result(
        self,
        conn: sa.Connection,
        digest: str,
        packages: list[Package],
        distro: Distro | None,
        findings: list[Finding],
        scanner: str = "dockyard",
    ) -> None:
        for table in (s.image_packages, s.image_findings, s.finding_aliases):
            conn.execute(sa.delete(table).where(table.c.digest == digest))
        # What the findings were matched against; an external scanner's own database is unknown here.
        snap = self.vulndb.snapshot() if scanner == "dockyard" else None
        if packages:
            conn.execute(
                sa.insert(s.image_packages),
                [
                    {"digest": digest, "ecosystem": p.ecosystem, "name": p.name, "version": p.version,
                     "purl": p.purl, "path": p.path, "licence": p.licence}
                    for p in packages
                ],
            )  # fmt: skip
        self._write_findings(conn, {digest: findings})
        licences = sorted({p.licence for p in packages if p.licence})
        inventory = json.dumps([package_to_stored(p) for p in packages])
        conn.execute(
            sa.update(s.image_scans)
            .where(s.image_scans.c.digest == digest)
            .values(
                status="done",
                scanned_at=_now(),
                error=None,
                vulndb_generation=self.matcher.generation if snap else None,
                vulndb_advisories=snap.advisories if snap else None,
                vulndb_updated_at=snap.updated_at if snap else None,
                distro=f"{distro.id}-{distro.version_id}" if distro else None,
                packages=inventory,
                packages_sha=hashlib.sha256(inventory.encode()).hexdigest(),
                summary=json.dumps(_summary(findings)),
                licences=json.dumps(licences),
                scanner=scanner,
            )
        )

    @staticmethod
    def _write_findings(conn: sa.Connection, by_digest: dict[str, list[Finding]]) -> None:
        rows = [
            {
                "digest": digest,
                "advisory_id": f.advisory_id,
                "aliases": json.dumps(f.aliases),
                "ecosystem": f.package.ecosystem,
                "package": f.package.name,
                "version": f.installed_version,
                "fixed_version": f.fixed_version,
                "purl": f.package.purl,
                "path": f.package.path,
                "severity": f.severity,
                "score": f.score,
                "link": f.link,
                "summary": f.summary,
            }
            for digest, findings in by_digest.items()
            for f in findings
        ]
        if not rows:
            return
        conn.execute(sa.insert(s.image_findings), rows)
        aliases = sorted(
            {
                (a, digest, f.advisory_id)
                for digest, findings in by_digest.items()
                for f in findings
                for a in (f.advisory_id, *f.aliases)
            }
        )
        conn.execute(sa.insert(s.finding_aliases), [{"alias": a, "digest": d, "advisory_id": i} for a, d, i in aliases])

    # -- the vulnerability database ----------------------------------------------------------------

    def refresh(self) -> bool:
        return self.matcher.refresh()

    def update_vulndb(self, sources: Iterable[str]) -> Reevaluation | None:
        """The scheduled duty: update the database, then re-evaluate every image if anything changed."""
        before = self.vulndb.generation
        results: list[object] = []
        for result in itertools.chain(
            self.vulndb.update(sources), self.vulndb.update_severities(self.severity_sources)
        ):
            leases.heartbeat()  # a download done: renew the duty's lease (or stop if another has it)
            results.append(result)
        failed = [r for r in results if isinstance(r, Exception)]
        for error in failed:
            _log.warning("vulnerability source failed; keeping the last good copy", error=str(error))
        if results and len(failed) == len(results):
            _log.error(
                "no vulnerability source could be read (unreachable? offline: `dockyard vulndb update --source "
                "DIR` with DIR/<ecosystem>/all.zip)",
                sources=len(results),
            )
        self._warned_state = None  # say again what the database is like after this update
        self.check_database()
        if self.vulndb.generation == before and not self._stale_images():
            return None
        return self.reevaluate()

    def _stale_images(self) -> bool:
        c = s.image_scans.c
        with self.db.engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(c.digest)
                    .where(
                        c.status == "done",
                        c.packages.is_not(None),
                        c.vulndb_generation != self.vulndb.generation,
                        self._builtin(c),
                    )
                    .limit(1)
                ).first()
                is not None
            )

    @staticmethod
    def _builtin(c: Any) -> Any:
        # Findings from an external scanner cannot be re-derived here: that scanner owns them.
        return sa.or_(c.scanner.is_(None), c.scanner == "dockyard")

    def reevaluate(self, batch: int = 200) -> Reevaluation:
        """Match every stored inventory again, without reading a layer; record images that gained findings."""
        started = time.perf_counter()
        self.matcher.refresh()
        out = Reevaluation(generation=self.matcher.generation)
        snap = self.vulndb.snapshot()
        c, f = s.image_scans.c, s.image_findings.c
        # Images with the same inventory (rebuilds that changed only application files, the same base
        # everywhere) are matched once: results are kept by the inventory's hash for this pass.
        by_inventory: dict[str, list[Finding]] = {}
        last = ""
        while True:
            leases.heartbeat()
            with self.db.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(c.digest, c.repository, c.packages_sha)
                    .where(c.status == "done", c.packages.is_not(None), c.digest > last, self._builtin(c))
                    .order_by(c.digest)
                    .limit(batch)
                ).all()
                if not rows:
                    break
                digests = [r.digest for r in rows]
                # Findings compared with their rating: a severity source's update re-rates stored findings.
                old: dict[str, set[tuple[str, str, float | None]]] = {d: set() for d in digests}
                for d, a, sev, score in conn.execute(
                    sa.select(f.digest, f.advisory_id, f.severity, f.score).where(f.digest.in_(digests))
                ):
                    old[d].add((a, sev, score))
                unseen = [r.digest for r in rows if r.packages_sha is None or r.packages_sha not in by_inventory]
                inventories = {
                    d: p for d, p in conn.execute(sa.select(c.digest, c.packages).where(c.digest.in_(unseen)))
                }
            last = rows[-1].digest
            # One statement per kind of change and batch, not per image: on PostgreSQL each statement
            # is a round trip (bench_scan_reeval, 1,000 images with 650 changed: 6.2 s that way).
            changed: dict[str, list[Finding]] = {}
            events: list[dict[str, Any]] = []
            summaries: list[dict[str, Any]] = []
            for row in rows:
                out.images += 1
                findings = by_inventory.get(row.packages_sha) if row.packages_sha else None
                if findings is None:
                    findings = self.matcher.match_stored(orjson.loads(inventories[row.digest]))
                    if row.packages_sha:
                        by_inventory[row.packages_sha] = findings
                new = {(x.advisory_id, x.severity, x.score) for x in findings}
                if new != old[row.digest]:
                    changed[row.digest] = findings
                    gained = sorted({x[0] for x in new} - {x[0] for x in old[row.digest]})
                    if gained:
                        out.gained[row.digest] = gained
                        events.append(
                            {
                                "repository": row.repository,
                                "digest": row.digest,
                                "detail": {"advisories": gained[:100], "count": len(gained)},
                            }
                        )
                summaries.append({"d": row.digest, "summary": json.dumps(_summary(findings))})
            out.changed += len(changed)
            with self.db.write() as conn:
                if changed:
                    for table in (s.image_findings, s.finding_aliases):
                        conn.execute(sa.delete(table).where(table.c.digest.in_(sorted(changed))))
                    self._write_findings(conn, changed)
                self.audit.record_many(conn, "scan.new_findings", events)
                conn.execute(
                    sa.update(s.image_scans)
                    .where(c.digest == sa.bindparam("d"))
                    .values(
                        summary=sa.bindparam("summary"),
                        vulndb_generation=out.generation,
                        vulndb_advisories=snap.advisories,
                        vulndb_updated_at=snap.updated_at,
                    ),
                    summaries,
                )
        out.seconds = round(time.perf_counter() - started, 3)
        return out

    # -- reading results ----------------------------------------------------------------------------

    def status(self, digest: str) -> dict[str, Any] | None:
        c = s.image_scans.c
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    c.status,
                    c.scanned_at,
                    c.distro,
                    c.summary,
                    c.licences,
                    c.error,
                    c.vulndb_generation,
                    c.scanner,
                    c.vulndb_advisories,
                    c.vulndb_updated_at,
                ).where(c.digest == digest)
            ).first()
        if row is None:
            return None
        return {
            "status": row.status,
            "scanned_at": row.scanned_at,
            "distro": row.distro,
            "summary": json.loads(row.summary) if row.summary else None,
            "licences": json.loads(row.licences) if row.licences else [],
            "error": row.error,
            "vulndb_generation": row.vulndb_generation,
            "scanner": row.scanner,
            "vulnerability_database": self._evaluated_against(row),
        }

    def result(self, digest: str) -> ScanResult | None:
        """The stored inventory and findings of a scanned image (for reports and SBOMs)."""
        c = s.image_scans.c
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    c.packages, c.distro, c.scanner, c.vulndb_generation, c.vulndb_advisories, c.vulndb_updated_at
                ).where(c.digest == digest, c.status == "done")
            ).first()
            if row is None or row.packages is None:
                return None
            frows = conn.execute(
                sa.select(s.image_findings).where(s.image_findings.c.digest == digest).order_by(s.image_findings.c.id)
            ).all()
        packages = [package_from_stored(p) for p in json.loads(row.packages)]
        by_key = {(p.purl, p.path): p for p in packages}
        findings = [
            Finding(
                advisory_id=r.advisory_id,
                aliases=tuple(json.loads(r.aliases)),
                package=by_key.get((r.purl, r.path)) or Package(r.ecosystem, r.package, r.version, r.path, r.purl),
                installed_version=r.version,
                fixed_version=r.fixed_version,
                severity=r.severity,
                score=r.score,
                link=r.link,
                summary=r.summary,
            )
            for r in frows
        ]
        distro = packages_distro(packages)
        return ScanResult(packages, findings, distro, self._evaluated_against(row))

    # -- the database's state ----------------------------------------------------------------------

    def database(self, snap: Snapshot | None = None) -> DatabaseInfo:
        """The vulnerability database as it is now: generation, size, age, and empty/stale/current."""
        snap = snap or self.vulndb.snapshot()
        return DatabaseInfo.of(snap.generation, snap.advisories, snap.updated_at, self.stale_after)

    def check_database(self) -> DatabaseInfo:
        """Warn (once per change of state) when scans run against an empty or stale database."""
        info = self.database()
        if info.state != self._warned_state:
            if info.state == "empty":
                _log.warning(
                    "the vulnerability database is empty: scans find no vulnerabilities and count as not scanned",
                    path=str(self.vulndb.path),
                )
            elif info.state == "stale":
                _log.warning(
                    "the vulnerability database is stale",
                    generation=info.generation,
                    advisories=info.advisories,
                    age_seconds=info.age_seconds,
                    stale_after_seconds=self.stale_after,
                )
            self._warned_state = info.state
        return info

    def _evaluated_against(self, row: Any) -> DatabaseInfo | None:
        """The database an image's stored findings reflect (None: an external scanner's, or not evaluated).

        Results of the current generation are as fresh as the database is now (a check that found no
        change confirms them); results of an older one, awaiting re-evaluation, as old as that data."""
        if row.vulndb_generation is None or (row.scanner not in (None, "dockyard")):
            return None
        current = self.vulndb.snapshot()
        if row.vulndb_generation == current.generation:
            return self.database(current)
        advisories = row.vulndb_advisories
        if advisories is None:  # a row from before this was recorded (re-evaluated at the next scan run)
            advisories = 0 if row.vulndb_generation == 0 else current.advisories
        return DatabaseInfo.of(row.vulndb_generation, advisories, row.vulndb_updated_at, self.stale_after)

    def images_affected_by(self, advisory: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Images (with the repositories and tags that reach them) having a finding for an id or alias."""
        fa, f = s.finding_aliases.c, s.image_findings.c
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(f.digest, f.advisory_id, f.package, f.version, f.fixed_version, f.severity)
                .where(f.digest.in_(sa.select(fa.digest).where(fa.alias == advisory)))
                .where(f.advisory_id.in_(sa.select(fa.advisory_id).where(fa.alias == advisory)))
                .order_by(f.digest)
                .limit(limit)
            ).all()
            return self._with_locations(conn, [dict(r._mapping) for r in rows])

    def images_with_package(self, name: str, version: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        p = s.image_packages.c
        with self.db.engine.connect() as conn:
            q = sa.select(p.digest, p.ecosystem, p.name, p.version, p.purl, p.path).where(p.name == name)
            if version is not None:
                q = q.where(p.version == version)
            rows = conn.execute(q.order_by(p.digest).limit(limit)).all()
            return self._with_locations(conn, [dict(r._mapping) for r in rows])

    def _with_locations(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add where each image digest lives: repository, tags, and indexes that contain it."""
        digests = sorted({r["digest"] for r in rows})
        if not digests:
            return rows
        m, t, r_, mc = s.manifests.c, s.tags.c, s.repositories.c, s.manifest_children.c
        where: dict[str, list[dict[str, Any]]] = {d: [] for d in digests}
        # The image itself, or an index that lists it (tags usually point at the index).
        direct = sa.select(m.id, m.digest.label("image"), r_.name).join(s.repositories, r_.id == m.repository_id)
        direct = direct.where(m.digest.in_(digests))
        parents = (
            sa.select(m.id, mc.child_digest.label("image"), r_.name)
            .select_from(s.manifest_children.join(s.manifests, m.id == mc.manifest_id))
            .join(s.repositories, r_.id == m.repository_id)
            .where(mc.child_digest.in_(digests))
        )
        for q in (direct, parents):
            for row in conn.execute(q):
                tags = conn.execute(sa.select(t.name).where(t.manifest_id == row.id).order_by(t.name)).scalars().all()
                where[row.image].append({"repository": row.name, "tags": list(tags)})
        for r in rows:
            r["locations"] = where[r["digest"]]
        return rows


def _summary(findings: Iterable[Finding]) -> dict[str, int]:
    return ScanResult([], list(findings)).summary()


def packages_distro(packages: list[Package]) -> Distro | None:
    for p in packages:
        if p.distro is not None:
            return p.distro
    return None


def vulndb_metrics(scans: ScanService) -> list[GaugeMetricFamily]:
    """Gauges of this replica's vulnerability database, for /metrics (read at scrape time)."""
    info = scans.database()
    advisories = GaugeMetricFamily("dockyard_vulndb_advisories", "Advisories in the vulnerability database")
    advisories.add_metric([], info.advisories)
    generation = GaugeMetricFamily("dockyard_vulndb_generation", "The vulnerability database's generation")
    generation.add_metric([], info.generation)
    age = GaugeMetricFamily(
        "dockyard_vulndb_age_seconds", "Seconds since the vulnerability sources were last read successfully"
    )
    if info.age_seconds is not None:
        age.add_metric([], info.age_seconds)
    stale = GaugeMetricFamily(
        "dockyard_vulndb_stale", "1 when the vulnerability database is empty or stale (scans cannot be trusted)"
    )
    stale.add_metric([], 0 if info.state == "current" else 1)
    return [advisories, generation, age, stale]
