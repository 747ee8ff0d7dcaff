"""The Harbor Scanner Adapter API v1.1 vocabulary: its media types, and conversions between its
vulnerability report and our findings (both directions: Dockyard serves the API so Harbor can use
its scanner, and Dockyard can use any scanner that serves it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from packageurl import PackageURL

from dockyard.oci import mediatypes as mt
from dockyard.scan.model import Finding, Package, ScanResult, worst

SCAN_REQUEST = "application/vnd.scanner.adapter.scan.request+json; version=1.0"
SCAN_RESPONSE = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
METADATA = "application/vnd.scanner.adapter.metadata+json; version=1.0"
ERROR = "application/vnd.scanner.adapter.error+json; version=1.0"
VULN_REPORT = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.1"
VULN_REPORT_1_0 = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
CONSUMES = [mt.OCI_MANIFEST, mt.DOCKER_MANIFEST]

_TO_HARBOR = {"CRITICAL": "Critical", "HIGH": "High", "MEDIUM": "Medium", "LOW": "Low", "UNKNOWN": "Unknown"}
_FROM_HARBOR = {"critical": "CRITICAL", "high": "HIGH", "medium": "MEDIUM", "low": "LOW", "negligible": "LOW"}


def to_report(result: ScanResult, artifact: dict[str, Any], scanner: dict[str, str]) -> dict[str, Any]:
    vulns = [
        {
            "id": f.advisory_id,
            "package": f.package.name,
            "version": f.installed_version,
            "fix_version": f.fixed_version or "",
            "severity": _TO_HARBOR.get(f.severity, "Unknown"),
            "description": f.summary,
            "links": [f.link],
            **({"cve3_score": f"{f.score:.1f}"} if f.score is not None else {}),
            "vendor_attributes": {"aliases": list(f.aliases), "purl": f.package.purl, "path": f.package.path},
        }
        for f in result.findings
    ]
    most_severe = _TO_HARBOR.get(worst(*(f.severity for f in result.findings)), "Unknown")
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "artifact": artifact,
        "scanner": scanner,
        "severity": most_severe if vulns else "None",
        "vulnerabilities": vulns,
    }


def from_report(doc: dict[str, Any]) -> list[Finding]:
    """Findings from a scanner's report. Harbor's format carries no ecosystem or path: a purl in the
    vendor attributes is used when the scanner gives one, else the package is named as reported."""
    out = []
    for v in doc.get("vulnerabilities") or []:
        attrs = v.get("vendor_attributes") if isinstance(v.get("vendor_attributes"), dict) else {}
        name, version = str(v.get("package", "")), str(v.get("version", ""))
        purl = str(attrs.get("purl") or "")
        ecosystem = "unknown"
        if purl:
            try:
                ecosystem = PackageURL.from_string(purl).type
            except ValueError:
                purl = ""
        if not purl:
            purl = PackageURL("generic", None, name or "unknown", version or None).to_string()
        aliases = attrs.get("aliases")
        score = v.get("cve3_score")
        try:
            score_value = float(score) if score not in (None, "") else None
        except (TypeError, ValueError):
            score_value = None
        links = v.get("links") or []
        out.append(
            Finding(
                advisory_id=str(v.get("id", "")),
                aliases=tuple(str(a) for a in aliases) if isinstance(aliases, list) else (),
                package=Package(ecosystem, name, version, str(attrs.get("path") or ""), purl),
                installed_version=version,
                fixed_version=str(v["fix_version"]) if v.get("fix_version") else None,
                severity=_FROM_HARBOR.get(str(v.get("severity", "")).lower(), "UNKNOWN"),
                score=score_value,
                link=str(links[0]) if links else "",
                summary=str(v.get("description") or "")[:500],
            )
        )
    return out
