"""Scan results as a terminal table, plain JSON, CycloneDX 1.6 and SPDX 2.3.

Every format names a package by the same stable reference (its purl and the path it was found in), so findings,
SBOM components and vulnerability `affects` entries line up across formats.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from cyclonedx.model import Property, XsUri
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, License, LicenseAcknowledgement, LicenseExpression
from cyclonedx.model.vulnerability import (
    BomTarget,
    BomTargetVersionRange,
    ImpactAnalysisAffectedStatus,
    Vulnerability,
    VulnerabilityRating,
    VulnerabilityReference,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
    VulnerabilitySource,
)
from cyclonedx.output import make_outputter
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.spdx import fixup_id as spdx_fixup_id
from license_expression import get_spdx_licensing
from packageurl import PackageURL

from dockyard import __version__
from dockyard.scan.matcher import package_to_stored
from dockyard.scan.model import Distro, Finding, Package, ScanResult, severity_rank

if TYPE_CHECKING:
    from rich.table import Table

TOOL_NAME = "dockyard"
NOASSERTION = "NOASSERTION"

_SPDX_LICENSING = get_spdx_licensing()


# -- shared ----------------------------------------------------------------------------------------


def _package_key(p: Package) -> tuple[str, ...]:
    # Every field takes part, so that even packages sharing purl and path sort (and get refs) the same every time.
    distro = (p.distro.id, p.distro.version_id) if p.distro else ("", "")
    return (p.ecosystem, p.name, p.version, p.path, p.purl, p.source_name or "", p.source_version or "",
            p.licence or "", *distro)  # fmt: skip


def _finding_key(f: Finding) -> tuple[int, str, str, str, str]:
    return (severity_rank(f.severity), f.package.name, f.package.version, f.advisory_id, f.package.path)


def _packages(result: ScanResult, with_findings: bool) -> list[Package]:
    """The inventory, sorted, without duplicates, plus any package a finding names that the inventory lacks."""
    seen = set(result.packages)
    extra = [f.package for f in result.findings if with_findings and f.package not in seen]
    return sorted(set(result.packages) | set(extra), key=_package_key)


def package_refs(packages: Iterable[Package]) -> dict[Package, str]:
    """A stable, unique reference per package: `purl#path`; distinct packages sharing both get a `~N` suffix."""
    refs: dict[Package, str] = {}
    used: set[str] = set()
    for p in sorted(set(packages), key=_package_key):
        base = f"{p.purl}#{p.path}"
        ref, n = base, 1
        while ref in used:
            n += 1
            ref = f"{base}~{n}"
        used.add(ref)
        refs[p] = ref
    return refs


def _cve(aliases: Iterable[str]) -> str | None:
    return next((a for a in aliases if a.upper().startswith("CVE-")), None)


def _distro_dict(d: Distro | None) -> dict[str, str] | None:
    return None if d is None else {"id": d.id, "version_id": d.version_id}


def _valid_spdx_expression(value: str) -> str | None:
    """The normalised SPDX expression for `value`, or None when it is not one (Debian's "GPL-2+", free text…)."""
    try:
        info = _SPDX_LICENSING.validate(value)
    except Exception:  # license_expression raises on some unexpected characters instead of reporting them
        return None
    if info.errors or not info.normalized_expression:
        return None
    return str(info.normalized_expression)


# -- table -----------------------------------------------------------------------------------------


def render_table(result: ScanResult, console_width: int | None = None, inventory_only: bool = False) -> str:
    """A plain-text table for a terminal: findings by severity, or with `inventory_only` the package list."""
    # rich is for the command line only: a server rendering an SBOM does not load it.
    from rich.console import Console
    from rich.table import Table

    width = console_width or shutil.get_terminal_size((120, 24)).columns
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, highlight=False, emoji=False, soft_wrap=False)
    distro = f"{result.distro.id} {result.distro.version_id}" if result.distro else "unknown distribution"
    packages = _packages(result, with_findings=not inventory_only)

    if inventory_only:
        console.print(f"{distro}: {len(packages)} packages", markup=False)
        table = Table("Ecosystem", "Name", "Version", "Licence", "Path", box=None, pad_edge=False)
        for p in packages:
            _add_row(table, p.ecosystem, p.name, p.version, p.licence or "", p.path)
    else:
        counts = ", ".join(f"{sev}: {n}" for sev, n in result.summary().items())
        console.print(f"{distro}: {len(packages)} packages, {len(result.findings)} findings ({counts})", markup=False)
        if result.database is not None:
            console.print(result.database.describe(), markup=False)
        if not result.findings:
            if result.database is not None and result.database.state == "empty":
                console.print("Not checked for vulnerabilities: the database holds no advisories.", markup=False)
            else:
                console.print("No known vulnerabilities.", markup=False)
            return _text(out)
        table = Table("Severity", "Advisory", "Package", "Installed", "Fixed", "Link", box=None, pad_edge=False)
        for f in sorted(result.findings, key=_finding_key):
            cve = _cve(f.aliases)
            advisory = f.advisory_id if cve is None or cve == f.advisory_id else f"{f.advisory_id} ({cve})"
            _add_row(
                table, f.severity, advisory, f.package.name, f.installed_version, f.fixed_version or "not fixed", f.link
            )
    # Fold rather than truncate: a cut-off advisory id or link is useless to the reader.
    for column in table.columns:
        column.overflow = "fold"
    console.print(table)
    return _text(out)


def _add_row(table: Table, *cells: str) -> None:
    from rich.text import Text

    # Text, not str: rich would read "[...]" in a licence or version as console markup and drop it.
    table.add_row(*(Text(c) for c in cells))


def _text(out: io.StringIO) -> str:
    # rich pads every cell to the column width; trailing blanks only get in the way in files and diffs.
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


# -- plain JSON ------------------------------------------------------------------------------------


def render_json(result: ScanResult, inventory_only: bool = False) -> dict[str, Any]:
    """A JSON-ready document with every field; findings name their package by its "ref".

    With `inventory_only` there is no "findings" key at all (rather than an empty list a reader could take for
    "no vulnerabilities"), and the summary counts packages only.
    """
    packages = _packages(result, with_findings=not inventory_only)
    refs = package_refs(packages)
    doc: dict[str, Any] = {
        "distro": _distro_dict(result.distro),
        "summary": {"packages": len(packages)},
        "packages": [{"ref": refs[p], **package_to_stored(p), "distro": _distro_dict(p.distro)} for p in packages],
    }
    if not inventory_only:
        doc["vulnerability_database"] = result.database.as_dict() if result.database is not None else None
        doc["summary"] |= {"findings": len(result.findings), "severities": result.summary()}
        doc["findings"] = [
            {
                "advisory_id": f.advisory_id,
                "aliases": list(f.aliases),
                "package": refs[f.package],
                "package_name": f.package.name,
                "installed_version": f.installed_version,
                "fixed_version": f.fixed_version,
                "severity": f.severity,
                "score": f.score,
                "link": f.link,
                "summary": f.summary,
            }
            for f in sorted(result.findings, key=_finding_key)
        ]
    return doc


# -- CycloneDX -------------------------------------------------------------------------------------

_CDX_SEVERITY = {
    "CRITICAL": VulnerabilitySeverity.CRITICAL,
    "HIGH": VulnerabilitySeverity.HIGH,
    "MEDIUM": VulnerabilitySeverity.MEDIUM,
    "LOW": VulnerabilitySeverity.LOW,
}


def _cdx_licences(licence: str | None) -> list[License]:
    if not licence:
        return []
    ack = LicenseAcknowledgement.DECLARED  # read from the package's own metadata, not concluded by us
    if (spdx_id := spdx_fixup_id(licence)) is not None:
        return [DisjunctiveLicense(id=spdx_id, acknowledgement=ack)]
    if (expression := _valid_spdx_expression(licence)) is not None:
        return [LicenseExpression(expression, acknowledgement=ack)]
    return [DisjunctiveLicense(name=licence, acknowledgement=ack)]


def _uri(value: str) -> XsUri | None:
    try:
        return XsUri(value) if value else None
    except Exception:  # a feed's malformed link must not lose the whole SBOM
        return None


def _advisory_source(link: str) -> VulnerabilitySource:
    host = urlsplit(link).hostname if link else None
    return VulnerabilitySource(name=host or "OSV", url=_uri(link))


def _alias_source(alias: str) -> VulnerabilitySource:
    upper = alias.upper()
    if upper.startswith("CVE-"):
        return VulnerabilitySource(name="NVD", url=_uri(f"https://nvd.nist.gov/vuln/detail/{alias}"))
    if upper.startswith("GHSA-"):
        return VulnerabilitySource(name="GitHub Advisory Database", url=_uri(f"https://github.com/advisories/{alias}"))
    return VulnerabilitySource(name="OSV", url=_uri(f"https://osv.dev/vulnerability/{quote(alias)}"))


def _component(p: Package, ref: str) -> Component:
    try:
        purl: PackageURL | None = PackageURL.from_string(p.purl)
    except ValueError:
        purl = None
    props = [Property(name="dockyard:path", value=p.path), Property(name="dockyard:ecosystem", value=p.ecosystem)]
    if p.source_name:
        props.append(Property(name="dockyard:source-name", value=p.source_name))
    if p.source_version:
        props.append(Property(name="dockyard:source-version", value=p.source_version))
    if p.distro:
        props.append(Property(name="dockyard:distro", value=f"{p.distro.id}-{p.distro.version_id}"))
    return Component(
        type=ComponentType.LIBRARY,
        name=p.name,
        version=p.version,
        purl=purl,
        bom_ref=ref,
        licenses=_cdx_licences(p.licence),
        properties=props,
    )


def _vulnerability(advisory_id: str, findings: list[Finding], refs: dict[Package, str]) -> Vulnerability:
    worst = min(findings, key=lambda f: (severity_rank(f.severity), -(f.score or 0.0)))
    aliases = sorted({a for f in findings for a in f.aliases if a != advisory_id})
    source = _advisory_source(worst.link)
    rating = VulnerabilityRating(
        source=source,
        severity=_CDX_SEVERITY.get(worst.severity, VulnerabilitySeverity.UNKNOWN),
        # The matcher takes a CVSS v3 score where the advisory has one (v4 only as a fallback; the model does not
        # record which), so v3 is the method for nearly every score it passes on.
        score=Decimal(str(worst.score)) if worst.score is not None else None,
        method=VulnerabilityScoreSource.CVSS_V3 if worst.score is not None else None,
    )
    targets = []
    advice = []
    for f in sorted(findings, key=lambda f: refs[f.package]):
        versions = [BomTargetVersionRange(version=f.installed_version, status=ImpactAnalysisAffectedStatus.AFFECTED)]
        if f.fixed_version:
            versions.append(
                BomTargetVersionRange(version=f.fixed_version, status=ImpactAnalysisAffectedStatus.UNAFFECTED)
            )
            advice.append(f"Upgrade {f.package.name} to {f.fixed_version} or later.")
        targets.append(BomTarget(ref=refs[f.package], versions=versions))
    return Vulnerability(
        bom_ref=f"vuln:{advisory_id}",
        id=advisory_id,
        source=source,
        references=[VulnerabilityReference(id=a, source=_alias_source(a)) for a in aliases],
        ratings=[rating],
        description=worst.summary or None,
        recommendation=" ".join(dict.fromkeys(advice)) or None,
        affects=targets,
    )


def render_cyclonedx(
    result: ScanResult,
    inventory_only: bool = False,
    name: str | None = None,
    version: str | None = None,
    schema_version: SchemaVersion = SchemaVersion.V1_6,
) -> str:
    """A CycloneDX JSON SBOM (1.6 by default, 1.5 on request), with a VEX-style vulnerability list unless
    `inventory_only`. `name`/`version` describe the scanned image as the BOM's subject."""
    if schema_version < SchemaVersion.V1_5:
        raise ValueError("CycloneDX 1.5 or later is needed for the tool and licence fields used here")
    packages = _packages(result, with_findings=not inventory_only)
    refs = package_refs(packages)
    components = [_component(p, refs[p]) for p in packages]

    bom = Bom(components=components)
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name=TOOL_NAME, version=__version__, bom_ref="tool:dockyard")
    )
    if name:
        root = Component(type=ComponentType.CONTAINER, name=name, version=version, bom_ref="image")
        if result.distro:
            root.properties.add(
                Property(name="dockyard:distro", value=f"{result.distro.id}-{result.distro.version_id}")
            )
        bom.metadata.component = root
        # The image holds every package directly; saying so keeps the dependency graph complete.
        bom.register_dependency(root, components)

    if not inventory_only and result.database is not None:
        # What the vulnerability list was matched against: an empty list from an empty database is no all-clear.
        for key, value in result.database.as_dict().items():
            if value is not None:
                bom.metadata.properties.add(Property(name=f"dockyard:vulndb:{key.replace('_', '-')}", value=str(value)))

    if not inventory_only:
        by_advisory: dict[str, list[Finding]] = {}
        for f in result.findings:
            by_advisory.setdefault(f.advisory_id, []).append(f)
        for advisory_id, group in by_advisory.items():  # the library keeps (and writes) them sorted itself
            bom.vulnerabilities.add(_vulnerability(advisory_id, group, refs))

    if schema_version == SchemaVersion.V1_6:
        return JsonV1Dot6(bom).output_as_string(indent=2)
    return make_outputter(bom, OutputFormat.JSON, schema_version).output_as_string(indent=2)


# -- SPDX ------------------------------------------------------------------------------------------


def _spdx_id(*parts: str) -> str:
    """SPDX element ids allow only letters, digits, '.' and '-'."""
    return "SPDXRef-" + re.sub(r"[^A-Za-z0-9.-]+", "-", "-".join(parts)).strip("-")


class _SpdxLicences:
    """Licence strings as SPDX expressions; anything else becomes a LicenseRef declared in the document."""

    def __init__(self) -> None:
        self.extracted: dict[str, str] = {}  # LicenseRef id -> the original text

    def __call__(self, licence: str | None) -> str:
        if not licence or not licence.strip():
            return NOASSERTION
        if (expression := _valid_spdx_expression(licence)) is not None:
            return expression
        if re.fullmatch(r"LicenseRef-[A-Za-z0-9.-]+", licence):  # already a reference: keep it, but declare it
            self.extracted.setdefault(licence, licence)
            return licence
        stem = re.sub(r"[^A-Za-z0-9.-]+", "-", licence).strip("-.")[:60] or "unknown"
        ref = f"LicenseRef-{stem}"
        if self.extracted.get(ref, licence) != licence:  # another string sanitised to the same id
            ref = f"{ref}-{hashlib.sha256(licence.encode()).hexdigest()[:8]}"
        self.extracted[ref] = licence
        return ref

    def infos(self) -> list[dict[str, str]]:
        return [
            {
                "licenseId": ref,
                "name": text,
                "extractedText": text,
                "comment": "Licence as recorded by the package; not an SPDX licence expression.",
            }
            for ref, text in sorted(self.extracted.items())
        ]


def render_spdx(
    result: ScanResult,
    name: str,
    namespace_seed: str,
    version: str | None = None,
    created: datetime | None = None,
    namespace_base: str = "https://dockyard.invalid/spdx",
) -> dict[str, Any]:
    """An SPDX 2.3 JSON document of the inventory (SPDX 2.3 has no place for vulnerabilities).

    The namespace is a UUID derived from `namespace_seed` and the inventory, so rendering the same scan twice gives
    the same document, while a changed inventory gets a new namespace as the spec asks. A package's licence is
    what the package itself declares; licenseConcluded stays NOASSERTION because the scanner draws no conclusion.
    """
    packages = _packages(result, with_findings=False)
    refs = package_refs(packages)
    licences = _SpdxLicences()
    when = (created or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ns_uuid = uuid.uuid5(uuid.NAMESPACE_URL, "\n".join([namespace_seed, *(refs[p] for p in packages)]))
    namespace = f"{namespace_base.rstrip('/')}/{quote(name, safe='')}-{ns_uuid}"

    root_id = _spdx_id("Image", name)
    root: dict[str, Any] = {
        "SPDXID": root_id,
        "name": name,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "CONTAINER",
    }
    if version:
        root["versionInfo"] = version
    if result.distro:
        root["comment"] = f"Distribution: {result.distro.id} {result.distro.version_id}"

    spdx_packages = [root]
    relationships = [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": root_id}
    ]
    for p in packages:
        ref = refs[p]
        spdx_id = _spdx_id("Package", p.ecosystem, p.name, hashlib.sha256(ref.encode()).hexdigest()[:10])
        entry: dict[str, Any] = {
            "SPDXID": spdx_id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": False,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": licences(p.licence),
            "copyrightText": NOASSERTION,
            "externalRefs": [
                {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": p.purl}
            ],
            "comment": f"Found in /{p.path}",
        }
        if p.source_name:
            source = p.source_name + (f" {p.source_version}" if p.source_version else "")
            entry["sourceInfo"] = f"built from source package {source}"
        spdx_packages.append(entry)
        relationships.append({"spdxElementId": root_id, "relationshipType": "CONTAINS", "relatedSpdxElement": spdx_id})

    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": namespace,
        "creationInfo": {"created": when, "creators": [f"Tool: {TOOL_NAME}-{__version__}"]},
        "packages": spdx_packages,
        "relationships": relationships,
    }
    if result.database is not None:
        # SPDX 2.3 has no place for vulnerabilities; say what the scan behind this inventory matched against.
        doc["creationInfo"]["comment"] = f"Scanned with {result.database.describe()}."
    if licences.extracted:
        doc["hasExtractedLicensingInfos"] = licences.infos()
    return doc
