"""Storage of scan results: an image's status, inventory, findings and the database they were matched
against (`image_scans`, `image_findings`, `finding_aliases`, `image_packages`), read back for the API,
reports and the exposure questions ("which images have this advisory / this package?")."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterable
from typing import Any

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.scan.matcher import package_from_stored, package_to_stored
from dockyard.scan.model import DatabaseInfo, Distro, Finding, Package, ScanResult
from dockyard.scan.vulndb import Snapshot, VulnDB
from dockyard.services.registry.catalog import CatalogService

BUILTIN = "dockyard"  # the built-in scanner's name in `image_scans.scanner`

# An image's results, stored per digest.
RESULT_TABLES = (s.image_scans, s.image_findings, s.image_packages, s.finding_aliases)


def summary(findings: Iterable[Finding]) -> dict[str, int]:
    return ScanResult([], list(findings)).summary()


def packages_distro(packages: list[Package]) -> Distro | None:
    for p in packages:
        if p.distro is not None:
            return p.distro
    return None


def builtin(c: Any) -> Any:
    """Results of the built-in scanner: an external scanner's cannot be re-derived here (it owns them)."""
    return sa.or_(c.scanner.is_(None), c.scanner == BUILTIN)


class ScanResults:
    def __init__(self, db: Database, vulndb: VulnDB, catalog: CatalogService, stale_after: float) -> None:
        self.db = db
        self.vulndb = vulndb
        self.catalog = catalog
        self.stale_after = stale_after
        # Told, in the storing transaction, which images' findings were just written (a scan's, or a
        # re-evaluation's): the automatic quarantine rule (wiring; services/trust/auto_quarantine.py).
        self.after_findings: Callable[[sa.Connection, Collection[str]], object] | None = None

    # -- status ------------------------------------------------------------------------------------

    def queued(self, conn: sa.Connection, repository: str, digest: str, again: bool) -> bool:
        """The image's status is `queued` (a new row; `again`: also an existing one). False: the
        image was already known and is left as it is."""
        if again:
            conn.execute(
                self.db.upsert(
                    s.image_scans, ["digest"], digest=digest, repository=repository, status="queued", queued_at=now()
                )
            )
            return True
        stmt = self.db.insert_ignore(
            s.image_scans, digest=digest, repository=repository, status="queued", queued_at=now()
        )
        return conn.execute(stmt.returning(s.image_scans.c.digest)).first() is not None  # rowcount: -1 on psycopg

    @staticmethod
    def forget(conn: sa.Connection, digest: str) -> None:
        """Delete an image's results (scan results are stored per digest, whichever repositories hold it)."""
        for table in RESULT_TABLES:
            conn.execute(sa.delete(table).where(table.c.digest == digest))

    def set_status(self, conn: sa.Connection, digest: str, status: str, **values: Any) -> None:
        conn.execute(sa.update(s.image_scans).where(s.image_scans.c.digest == digest).values(status=status, **values))

    # -- storing -----------------------------------------------------------------------------------

    def store(
        self,
        conn: sa.Connection,
        digest: str,
        packages: list[Package],
        distro: Distro | None,
        findings: list[Finding],
        scanner: str = BUILTIN,
        generation: int | None = None,
    ) -> None:
        for table in (s.image_packages, s.image_findings, s.finding_aliases):
            conn.execute(sa.delete(table).where(table.c.digest == digest))
        # What the findings were matched against; an external scanner's own database is unknown here.
        snap = self.vulndb.snapshot() if scanner == BUILTIN else None
        if packages:
            conn.execute(
                sa.insert(s.image_packages),
                [
                    {"digest": digest, "ecosystem": p.ecosystem, "name": p.name, "version": p.version,
                     "purl": p.purl, "path": p.path, "licence": p.licence}
                    for p in packages
                ],
            )  # fmt: skip
        self.write_findings(conn, {digest: findings})
        if findings and self.after_findings is not None:
            self.after_findings(conn, [digest])
        licences = sorted({p.licence for p in packages if p.licence})
        inventory = json.dumps([package_to_stored(p) for p in packages])
        self.set_status(
            conn,
            digest,
            "done",
            scanned_at=now(),
            error=None,
            vulndb_generation=generation if snap else None,
            vulndb_advisories=snap.advisories if snap else None,
            vulndb_updated_at=snap.updated_at if snap else None,
            distro=f"{distro.id}-{distro.version_id}" if distro else None,
            packages=inventory,
            packages_sha=hashlib.sha256(inventory.encode()).hexdigest(),
            summary=json.dumps(summary(findings)),
            licences=json.dumps(licences),
            scanner=scanner,
        )

    @staticmethod
    def write_findings(conn: sa.Connection, by_digest: dict[str, list[Finding]]) -> None:
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

    def replace_findings(self, conn: sa.Connection, changed: dict[str, list[Finding]]) -> None:
        """Re-evaluation: the findings of these images, matched again."""
        if not changed:
            return
        for table in (s.image_findings, s.finding_aliases):
            conn.execute(sa.delete(table).where(table.c.digest.in_(sorted(changed))))
        self.write_findings(conn, changed)
        if self.after_findings is not None:
            self.after_findings(conn, [d for d, found in changed.items() if found])

    @staticmethod
    def set_summaries(conn: sa.Connection, summaries: list[dict[str, Any]], generation: int, snap: Snapshot) -> None:
        """Re-evaluation: each image's summary (`d`, `summary`) and the database it now reflects."""
        conn.execute(
            sa.update(s.image_scans)
            .where(s.image_scans.c.digest == sa.bindparam("d"))
            .values(
                summary=sa.bindparam("summary"),
                vulndb_generation=generation,
                vulndb_advisories=snap.advisories,
                vulndb_updated_at=snap.updated_at,
            ),
            summaries,
        )

    # -- reading -----------------------------------------------------------------------------------

    def status(self, digest: str) -> dict[str, Any] | None:
        c = s.image_scans.c
        with self.db.read() as conn:
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
            "vulnerability_database": self.evaluated_against(row),
        }

    def result(self, digest: str) -> ScanResult | None:
        """The stored inventory and findings of a scanned image (for reports and SBOMs)."""
        c = s.image_scans.c
        with self.db.read() as conn:
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
        return ScanResult(packages, findings, packages_distro(packages), self.evaluated_against(row))

    # -- the database results are matched against -----------------------------------------------------

    def database(self, snap: Snapshot | None = None) -> DatabaseInfo:
        """The vulnerability database as it is now: generation, size, age, and empty/stale/current."""
        snap = snap or self.vulndb.snapshot()
        return DatabaseInfo.of(snap.generation, snap.advisories, snap.updated_at, self.stale_after)

    def evaluated_against(self, row: Any) -> DatabaseInfo | None:
        """The database an image's stored findings reflect (None: an external scanner's, or not evaluated).

        Results of the current generation are as fresh as the database is now (a check that found no
        change confirms them); results of an older one, awaiting re-evaluation, as old as that data."""
        if row.vulndb_generation is None or (row.scanner not in (None, BUILTIN)):
            return None
        current = self.vulndb.snapshot()
        if row.vulndb_generation == current.generation:
            return self.database(current)
        advisories = row.vulndb_advisories
        if advisories is None:  # a row from before this was recorded (re-evaluated at the next scan run)
            advisories = 0 if row.vulndb_generation == 0 else current.advisories
        return DatabaseInfo.of(row.vulndb_generation, advisories, row.vulndb_updated_at, self.stale_after)

    # -- exposure ------------------------------------------------------------------------------------

    def images_affected_by(self, advisory: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Images (with the repositories and tags that reach them) having a finding for an id or alias."""
        fa, f = s.finding_aliases.c, s.image_findings.c
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(f.digest, f.advisory_id, f.package, f.version, f.fixed_version, f.severity)
                .where(f.digest.in_(sa.select(fa.digest).where(fa.alias == advisory)))
                .where(f.advisory_id.in_(sa.select(fa.advisory_id).where(fa.alias == advisory)))
                .order_by(f.digest)
                .limit(limit)
            ).all()
        return self._with_locations([dict(r._mapping) for r in rows])

    def findings_of(self, advisory: str) -> list[dict[str, Any]]:
        """Every finding of an advisory id or alias (digest, advisory, package, version, severity), for
        the exposure report: no limit, no locations (it asks the registry itself)."""
        fa, f = s.finding_aliases.c, s.image_findings.c
        stmt = (
            sa.select(f.digest, f.advisory_id, f.package, f.version, f.severity)
            .where(f.digest.in_(sa.select(fa.digest).where(fa.alias == advisory)))
            .where(f.advisory_id.in_(sa.select(fa.advisory_id).where(fa.alias == advisory)))
            .order_by(f.digest, f.advisory_id, f.package)
        )
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def packages_named(self, name: str, version: str | None = None) -> list[dict[str, Any]]:
        """Every image package row of a name (at a version): digest, package, version."""
        p = s.image_packages.c
        stmt = sa.select(p.digest, p.name.label("package"), p.version).where(p.name == name)
        if version is not None:
            stmt = stmt.where(p.version == version)
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt.distinct().order_by(p.digest, p.version))]

    def images_with_package(self, name: str, version: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        p = s.image_packages.c
        q = sa.select(p.digest, p.ecosystem, p.name, p.version, p.purl, p.path).where(p.name == name)
        if version is not None:
            q = q.where(p.version == version)
        with self.db.read() as conn:
            rows = conn.execute(q.order_by(p.digest).limit(limit)).all()
        return self._with_locations([dict(r._mapping) for r in rows])

    def _with_locations(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add where each image lives (the registry's catalog owns manifests and tags)."""
        where = self.catalog.locations(r["digest"] for r in rows)
        for r in rows:
            r["locations"] = where[r["digest"]]
        return rows
