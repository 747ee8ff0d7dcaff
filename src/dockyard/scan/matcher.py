"""Matching an inventory against the vulnerability database.

Distribution packages are looked up by their *source* package (Debian's advisories name source
packages, Alpine's name the origin) within the image's release; language packages by name in their
ecosystem. Results are cached per (ecosystem, release, name, version): images share most packages, so
re-evaluating many stored inventories costs little more than the distinct packages among them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dockyard.scan.model import (
    APK,
    CARGO,
    DEB,
    GEM,
    GOLANG,
    MAVEN,
    NPM,
    PYPI,
    RPM,
    Distro,
    Finding,
    Package,
    severity_rank,
)
from dockyard.scan.osv import Advisory, affected_by, normalize_name
from dockyard.scan.vulndb import VulnDB

LANGUAGE_ECOSYSTEMS = {PYPI: "PyPI", NPM: "npm", GOLANG: "Go", MAVEN: "Maven", GEM: "RubyGems", CARGO: "crates.io"}
RPM_DISTROS = {"rocky": "Rocky Linux", "almalinux": "AlmaLinux", "rhel": "Red Hat", "opensuse-leap": "openSUSE"}


@dataclass(frozen=True, slots=True)
class Query:
    ecosystem: str  # OSV ecosystem
    release: str  # OSV release ("" for language ecosystems)
    name: str
    version: str


def query_for(pkg: Package, distro: Distro | None) -> Query | None:
    """What to look up for a package, or None when its ecosystem or release has no advisories we know of."""
    if pkg.ecosystem in LANGUAGE_ECOSYSTEMS:
        eco = LANGUAGE_ECOSYSTEMS[pkg.ecosystem]
        version = pkg.version.removeprefix("v") if pkg.ecosystem == GOLANG else pkg.version
        return Query(eco, "", normalize_name(eco, pkg.name), version)
    d = pkg.distro or distro
    if d is None or not d.version_id:
        return None
    name, version = pkg.source_name or pkg.name, pkg.source_version or pkg.version
    if pkg.ecosystem == DEB and d.id == "debian":
        return Query("Debian", d.version_id.split(".")[0], name, version)
    if pkg.ecosystem == DEB and d.id == "ubuntu":
        return Query("Ubuntu", d.version_id, name, version)
    if pkg.ecosystem == APK and d.id == "alpine":
        return Query("Alpine", "v" + ".".join(d.version_id.split(".")[:2]), name, version)
    if pkg.ecosystem == RPM and d.id in RPM_DISTROS:
        # RPM feeds name binary packages and compare epoch:version-release.
        return Query(RPM_DISTROS[d.id], d.version_id.split(".")[0], pkg.name, pkg.version)
    return None


def _release_matches(wanted: str, release: str) -> bool:
    # Ubuntu's OSV releases carry a suffix ("22.04:LTS"); the others match exactly.
    return release == wanted or release.startswith(wanted + ":")


@dataclass(frozen=True, slots=True)
class Hit:
    source: str
    advisory_id: str
    fixed: str | None


class Matcher:
    def __init__(self, db: VulnDB) -> None:
        self.db = db
        self.generation = db.generation
        self._hits: dict[Query, tuple[Hit, ...]] = {}
        self._advisories: dict[tuple[str, str], Advisory] = {}
        self._stored: dict[tuple[Any, ...], tuple[Hit, ...]] = {}  # stored package fields -> hits

    def refresh(self) -> bool:
        """Drop cached results if the database changed since they were computed."""
        gen = self.db.generation
        if gen == self.generation:
            return False
        self.generation = gen
        self._hits.clear()
        self._advisories.clear()
        self._stored.clear()
        return True

    def hits(self, q: Query) -> tuple[Hit, ...]:
        cached = self._hits.get(q)
        if cached is not None:
            return cached
        found: dict[str, Hit] = {}
        for source, advisory_id, entry in self.db.affected_for(q.ecosystem, q.name):
            if q.release and not _release_matches(q.release, entry.release):
                continue
            if advisory_id in found:
                continue
            hit, fixed = affected_by(q.version, entry)
            if hit:
                found[advisory_id] = Hit(source, advisory_id, fixed)
        result = tuple(found.values())
        self._hits[q] = result
        return result

    def advisory(self, source: str, advisory_id: str) -> Advisory:
        key = (source, advisory_id)
        adv = self._advisories.get(key)
        if adv is None:
            adv = self.db.advisory(source, advisory_id)
            assert adv is not None
            if adv.severity == "UNKNOWN":
                borrowed = self._borrowed_severity(adv)
                if borrowed is not None:
                    adv = _with_severity(adv, *borrowed)
            self._advisories[key] = adv
        return adv

    def _borrowed_severity(self, adv: Advisory) -> tuple[str, float | None] | None:
        """A severity for an advisory that gives none of its own (Debian's, Alpine's, many of Go's).

        In order, the first that knows one wins: the CVSS of its CVEs from the severity sources (NVD);
        the CVSS another advisory in the database gives the same CVE or alias (a GHSA, an Ubuntu record);
        the distribution's own urgency. Where an advisory covers several CVEs, the worst of them.
        """
        cves = [a for a in (adv.id, *adv.aliases) if a.upper().startswith("CVE-")]
        for lookup, ids in ((self.db.cve_severity, cves), (self.db.severity_of_alias, adv.aliases)):
            rated = [r for r in map(lookup, ids) if r is not None]
            if rated:
                return max(rated, key=lambda r: (r[1] if r[1] is not None else -1.0, -severity_rank(r[0])))
        if adv.urgency != "UNKNOWN":
            return adv.urgency, None
        return None

    def match(self, packages: Iterable[Package], distro: Distro | None = None) -> list[Finding]:
        findings: list[Finding] = []
        seen: set[tuple[str, str, str]] = set()
        for pkg in packages:
            q = query_for(pkg, distro)
            if q is not None:
                self._add(findings, seen, pkg, self.hits(q))
        findings.sort(key=finding_order)
        return findings

    def match_stored(self, packages: list[dict[str, Any]]) -> list[Finding]:
        """`match` for inventories as stored (dicts with the Package fields, distro as [id, version]).

        Re-evaluation's hot path: images share most packages, so a package's hits are looked up by its
        fields and a Package object is only built for the few that have findings.
        """
        findings: list[Finding] = []
        seen: set[tuple[str, str, str]] = set()
        for d in packages:
            distro = d.get("distro")
            key = (d["ecosystem"], d["name"], d["version"], d.get("source_name"), d.get("source_version"),
                   tuple(distro) if distro else None)  # fmt: skip
            hits = self._stored.get(key)
            if hits is None:
                q = query_for(package_from_stored(d), None)
                hits = self.hits(q) if q is not None else ()
                self._stored[key] = hits
            if hits:
                self._add(findings, seen, package_from_stored(d), hits)
        findings.sort(key=finding_order)
        return findings

    def _add(self, findings: list[Finding], seen: set[tuple[str, str, str]], pkg: Package, hits: Iterable[Hit]) -> None:
        for hit in hits:
            key = (hit.advisory_id, pkg.purl, pkg.path)
            if key in seen:
                continue
            seen.add(key)
            adv = self.advisory(hit.source, hit.advisory_id)
            findings.append(
                Finding(
                    advisory_id=adv.id,
                    aliases=adv.aliases,
                    package=pkg,
                    installed_version=pkg.version,
                    fixed_version=hit.fixed,
                    severity=adv.severity,
                    score=adv.score,
                    link=adv.link,
                    summary=adv.summary,
                )
            )


def package_to_stored(p: Package) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies field by field, 0.1 ms a package (bench_scan_reeval).
    return {
        "ecosystem": p.ecosystem,
        "name": p.name,
        "version": p.version,
        "path": p.path,
        "purl": p.purl,
        "source_name": p.source_name,
        "source_version": p.source_version,
        "licence": p.licence,
        "distro": [p.distro.id, p.distro.version_id] if p.distro else None,
    }


def package_from_stored(d: dict[str, Any]) -> Package:
    distro = Distro(*d["distro"]) if d.get("distro") else None
    return Package(**{**d, "distro": distro})


def _with_severity(adv: Advisory, severity: str, score: float | None) -> Advisory:
    return Advisory(
        adv.id, adv.modified, adv.summary, adv.aliases, severity, score, adv.link, adv.withdrawn, (), adv.urgency
    )


def finding_order(f: Finding) -> tuple[int, str, str, str]:
    return (severity_rank(f.severity), f.package.name, f.package.path, f.advisory_id)
