"""Evaluation: what an image contains (layer inventories, stored once per layer digest) and which
advisories match it, by the built-in scanner or an external one; and re-evaluation of every stored
inventory when the vulnerability database changes, without reading a layer."""

from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.logs import get_logger
from dockyard.oci.manifest import ParsedManifest
from dockyard.scan.inventory import LayerInventory, combine, inventory_layer
from dockyard.scan.layers import ChunkReader, layer_stream
from dockyard.scan.matcher import Matcher
from dockyard.scan.model import DatabaseInfo, Distro, Finding, Package
from dockyard.scan.vulndb import VulnDB
from dockyard.services.lifecycle import leases
from dockyard.services.scanning.external import HarborAdapterScanner
from dockyard.services.scanning.results import BUILTIN, ScanResults, builtin, summary
from dockyard.storage.base import BlobStore

_log = get_logger("dockyard.scan")

# Bumped when detectors change what they find: stored layer inventories of older versions are redone.
SCANNER_VERSION = 2  # 2: Python .egg-info files and eggs
LAYER_MARKERS = ("tar", "rootfs")  # layer media types that hold a filesystem


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


@dataclass
class Evaluated:
    """One image's evaluation, to be stored with `ScanResults.store`."""

    packages: list[Package]
    distro: Distro | None
    findings: list[Finding]
    scanner: str
    generation: int | None
    detail: dict[str, Any]  # for the audit trail


class Evaluation:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        vulndb: VulnDB,
        results: ScanResults,
        audit: Any,
        external: HarborAdapterScanner | None = None,
        severity_sources: Iterable[str] = (),
    ) -> None:
        self.db = db
        self.store = store
        self.vulndb = vulndb
        self.results = results
        self.audit = audit
        self.matcher = Matcher(vulndb)
        self.external = external
        self.severity_sources = list(severity_sources)  # CVSS of CVEs (NVD), updated with the advisories
        self._warned_state: str | None = None  # the database state last warned about (once per change)

    # -- one image ---------------------------------------------------------------------------------

    def evaluate(
        self, repository: str, digest: str, media_type: str, parsed: ParsedManifest, out: ScanRun
    ) -> Evaluated:
        """An image's packages and findings; `leases.heartbeat()` between steps keeps the work's claim."""
        if self.external is not None:
            findings = self.external.scan(repository, digest, media_type, progress=leases.heartbeat)
            detail: dict[str, Any] = {"scanner": self.external.name, "findings": summary(findings)}
            return Evaluated([], None, findings, self.external.name, None, detail)
        layers = []
        for layer in parsed.layers:
            if not any(marker in layer.media_type for marker in LAYER_MARKERS):
                continue
            leases.heartbeat()
            layers.append(self.layer_inventory(layer.digest, out))
        packages, distro = combine(layers)
        findings = self.matcher.match(packages, distro)
        detail = {"packages": len(packages), "findings": summary(findings)}
        return Evaluated(packages, distro, findings, BUILTIN, self.matcher.generation, detail)

    def layer_inventory(self, digest: str, out: ScanRun) -> LayerInventory:
        li = s.layer_inventories.c
        with self.db.read() as conn:
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
                    created_at=now(),
                )
            )
        return inv

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
        if self.vulndb.generation == before and not self.stale_images():
            return None
        return self.reevaluate()

    def stale_images(self) -> bool:
        c = s.image_scans.c
        with self.db.read() as conn:
            return (
                conn.execute(
                    sa.select(c.digest)
                    .where(
                        c.status == "done",
                        c.packages.is_not(None),
                        c.vulndb_generation != self.vulndb.generation,
                        builtin(c),
                    )
                    .limit(1)
                ).first()
                is not None
            )

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
            with self.db.read() as conn:
                rows = conn.execute(
                    sa.select(c.digest, c.repository, c.packages_sha)
                    .where(c.status == "done", c.packages.is_not(None), c.digest > last, builtin(c))
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
                summaries.append({"d": row.digest, "summary": json.dumps(summary(findings))})
            out.changed += len(changed)
            with self.db.write() as conn:
                self.results.replace_findings(conn, changed)
                self.audit.record_many(conn, "scan.new_findings", events)
                self.results.set_summaries(conn, summaries, out.generation, snap)
        out.seconds = round(time.perf_counter() - started, 3)
        return out

    def check_database(self) -> DatabaseInfo:
        """Warn (once per change of state) when scans run against an empty or stale database."""
        info = self.results.database()
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
                    stale_after_seconds=self.results.stale_after,
                )
            self._warned_state = info.state
        return info
