"""OSV records (https://ossf.github.io/osv-schema/): parsing into what matching needs, and the
ecosystem-specific version orderings (univers) that range events are compared with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cvss import CVSS3, CVSS4
from univers import versions as uv

from dockyard.scan.model import RATED, worst

# OSV ecosystem (the part before ":") -> the version class that orders its ECOSYSTEM ranges.
VERSION_CLASSES: dict[str, type[uv.Version]] = {
    "Debian": uv.DebianVersion,
    "Ubuntu": uv.DebianVersion,
    "Alpine": uv.AlpineLinuxVersion,
    "Rocky Linux": uv.RpmVersion,
    "AlmaLinux": uv.RpmVersion,
    "Red Hat": uv.RpmVersion,
    "openSUSE": uv.RpmVersion,
    "SUSE": uv.RpmVersion,
    "PyPI": uv.PypiVersion,
    "npm": uv.SemverVersion,
    "Go": uv.GolangVersion,
    "Maven": uv.MavenVersion,
    "RubyGems": uv.RubygemsVersion,
    "crates.io": uv.SemverVersion,
    "NuGet": uv.NugetVersion,
    "Packagist": uv.ComposerVersion,
}

_PEP503 = re.compile(r"[-_.]+")
_CVE = re.compile(r"CVE-[0-9]{4}-[0-9]+")  # fullmatch


def normalize_name(ecosystem: str, name: str) -> str:
    """Names as both sides are compared: PyPI names are case- and separator-insensitive (PEP 503)."""
    if ecosystem == "PyPI":
        return _PEP503.sub("-", name).lower()
    return name


def split_ecosystem(value: str) -> tuple[str, str]:
    """'Debian:11' -> ('Debian', '11'); 'Alpine:v3.11' -> ('Alpine', 'v3.11'); 'PyPI' -> ('PyPI', '')."""
    base, _, release = value.partition(":")
    return base, release


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # introduced | fixed | last_affected | limit
    version: str


@dataclass(frozen=True, slots=True)
class Range:
    type: str  # ECOSYSTEM | SEMVER | GIT
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Affected:
    ecosystem: str  # base ecosystem, e.g. "Debian"
    release: str  # e.g. "11", "v3.11", "" when the ecosystem has no releases
    name: str  # normalised
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Advisory:
    id: str
    modified: str
    summary: str
    aliases: tuple[str, ...]  # aliases, plus CVE ids from upstream/related (Debian and Alpine put them there)
    severity: str  # one of dockyard.scan.model.SEVERITIES
    score: float | None
    link: str
    withdrawn: bool
    affected: tuple[Affected, ...]
    # The distribution's own rating (Debian's urgency, Ubuntu's priority) as a severity, or UNKNOWN:
    # the last resort when no CVSS is known for the advisory or its CVEs.
    urgency: str = "UNKNOWN"


class RecordError(ValueError):
    """The document is not an OSV record."""


def parse_record(doc: Any) -> Advisory:
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not isinstance(doc.get("modified"), str):
        raise RecordError("an OSV record needs string 'id' and 'modified' fields")
    aliases = [a for a in doc.get("aliases") or [] if isinstance(a, str)]
    for key in ("upstream", "related"):
        aliases += [a for a in doc.get(key) or [] if isinstance(a, str) and _CVE.fullmatch(a)]
    aliases = list(dict.fromkeys(a for a in aliases if a != doc["id"]))
    severity, score = _severity(doc)
    urgency = _urgency(doc)
    affected = []
    for entry in doc.get("affected") or []:
        pkg = entry.get("package") or {}
        if not isinstance(pkg.get("ecosystem"), str) or not isinstance(pkg.get("name"), str):
            continue
        base, release = split_ecosystem(pkg["ecosystem"])
        ranges = tuple(
            Range(
                str(r.get("type", "")),
                tuple(
                    Event(kind, str(value))
                    for ev in r.get("events") or []
                    for kind, value in ev.items()
                    if kind in ("introduced", "fixed", "last_affected", "limit")
                ),
            )
            for r in entry.get("ranges") or []
            if r.get("type") in ("ECOSYSTEM", "SEMVER")  # GIT ranges name commits, not package versions
        )
        versions = tuple(str(v) for v in entry.get("versions") or [])
        affected.append(Affected(base, release, normalize_name(base, pkg["name"]), ranges, versions))
        if severity == "UNKNOWN":
            severity, score = _severity(entry)
        urgency = worst(urgency, _urgency(entry))
    return Advisory(
        id=doc["id"],
        modified=doc["modified"],
        summary=str(doc.get("summary") or doc.get("details") or "")[:500],
        aliases=tuple(aliases),
        severity=severity,
        score=score,
        link=_link(doc),
        withdrawn=bool(doc.get("withdrawn")),
        affected=tuple(affected),
        urgency=urgency,
    )


def _severity(doc: dict[str, Any]) -> tuple[str, float | None]:
    """From a CVSS vector where one is given (v3 preferred, then v4), else a feed's own label."""
    best: tuple[str, float | None] | None = None
    for item in doc.get("severity") or []:
        vector, kind = item.get("score", ""), item.get("type", "")
        try:
            if kind == "CVSS_V3":
                c3 = CVSS3(vector)
                return c3.severities()[0].upper().replace("NONE", "LOW"), float(c3.base_score)
            if kind == "CVSS_V4" and best is None:
                c4 = CVSS4(vector)
                best = c4.severity.upper().replace("NONE", "LOW"), float(c4.base_score)
        except Exception:  # a malformed vector is not a reason to lose the advisory
            continue
    if best is not None:
        return best
    label = str((doc.get("database_specific") or {}).get("severity") or "").upper()
    label = {"MODERATE": "MEDIUM", "IMPORTANT": "HIGH"}.get(label, label)
    if label in RATED:
        return label, None
    return "UNKNOWN", None


# Distribution ratings (Debian urgency, Ubuntu priority, SUSE/Red Hat labels) as severities. Debian's
# "unimportant" is still a finding, so LOW; "not yet assigned", "end-of-life", "untriaged" say nothing.
_URGENCY = {
    "unimportant": "LOW",
    "negligible": "LOW",
    "low": "LOW",
    "medium": "MEDIUM",
    "moderate": "MEDIUM",
    "high": "HIGH",
    "important": "HIGH",
    "critical": "CRITICAL",
}
_URGENCY_KEYS = ("urgency", "ubuntu_priority", "priority")


def _urgency(doc: dict[str, Any]) -> str:
    """A distribution's own rating of a record or an affected entry, from `ecosystem_specific` or
    `database_specific` ("urgency": "medium"; Debian may add a suffix, "low*", "medium**")."""
    found = "UNKNOWN"
    for key in ("ecosystem_specific", "database_specific"):
        fields = doc.get(key)
        if not isinstance(fields, dict):
            continue
        for name in _URGENCY_KEYS:
            value = fields.get(name)
            if isinstance(value, str):
                found = worst(found, _URGENCY.get(value.strip().rstrip("*").lower(), "UNKNOWN"))
    for item in doc.get("severity") or []:  # Ubuntu publishes its priority as a severity of its own type
        if isinstance(item, dict) and item.get("type") == "Ubuntu" and isinstance(item.get("score"), str):
            found = worst(found, _URGENCY.get(item["score"].lower(), "UNKNOWN"))
    return found


def _link(doc: dict[str, Any]) -> str:
    refs = [r for r in doc.get("references") or [] if isinstance(r, dict) and isinstance(r.get("url"), str)]
    for wanted in ("ADVISORY", "WEB"):
        for ref in refs:
            if ref.get("type") == wanted:
                return str(ref["url"])
    return f"https://osv.dev/vulnerability/{doc['id']}"


# -- version ranges -------------------------------------------------------------------------------


def version_class(ecosystem: str, range_type: str) -> type[uv.Version] | None:
    if range_type == "SEMVER":
        return uv.SemverVersion
    return VERSION_CLASSES.get(ecosystem)


def parse_version(cls: type[uv.Version], value: str) -> uv.Version | None:
    if cls is uv.SemverVersion or cls is uv.GolangVersion:
        value = value.removeprefix("v")
        if cls is uv.GolangVersion:
            value = "v" + value
    try:
        return cls(value)
    except Exception:
        return None


def affected_by(installed: str, affected: Affected) -> tuple[bool, str | None]:
    """Whether `installed` is in the affected entry, and the fixed version that ends its range.

    OSV's evaluation: walk the events in version order; `introduced` opens a range, `fixed` (at or
    above) and `last_affected` (above) close it. `introduced: 0` is below every version.
    """
    if installed in affected.versions:
        return True, _fixed_after(installed, affected)
    for rng in affected.ranges:
        cls = version_class(affected.ecosystem, rng.type)
        if cls is None:
            continue
        v = parse_version(cls, installed)
        if v is None:
            continue
        hit, fixed = _in_range(v, cls, rng)
        if hit:
            return True, fixed
    return False, None


def _in_range(v: uv.Version, cls: type[uv.Version], rng: Range) -> tuple[bool, str | None]:
    opened = False
    fixed: str | None = None
    ordered: list[tuple[uv.Version | None, Event]] = []
    for ev in rng.events:
        if ev.kind == "limit":
            continue
        parsed = None if ev.kind == "introduced" and ev.version == "0" else parse_version(cls, ev.version)
        if parsed is None and not (ev.kind == "introduced" and ev.version == "0"):
            continue
        ordered.append((parsed, ev))
    ordered.sort(key=_event_key)
    for parsed, ev in ordered:
        if ev.kind == "introduced":
            if parsed is None or v >= parsed:
                opened = True
        elif ev.kind == "fixed":
            assert parsed is not None
            if v >= parsed:
                opened = False
            elif opened and fixed is None:
                fixed = ev.version
                break
        elif ev.kind == "last_affected":
            assert parsed is not None
            if v > parsed:
                opened = False
            elif opened:
                break
    return opened, fixed if opened else None


class _Lowest:
    def __lt__(self, other: object) -> bool:
        return not isinstance(other, _Lowest)

    def __gt__(self, other: object) -> bool:
        return False


def _event_key(item: tuple[uv.Version | None, Event]) -> tuple[Any, int]:
    parsed, ev = item
    # At equal versions a closing event sorts before an opening one, so "fixed 2; introduced 2" re-opens.
    order = {"fixed": 0, "last_affected": 1, "introduced": 2}[ev.kind]
    return (_Lowest() if parsed is None else _Comparable(parsed), order)


class _Comparable:
    """Wraps a univers version so tuples of (version, int) sort; _Lowest sorts below all."""

    __slots__ = ("v",)

    def __init__(self, v: uv.Version) -> None:
        self.v = v

    def __lt__(self, other: object) -> bool:
        if isinstance(other, _Lowest):
            return False
        assert isinstance(other, _Comparable)
        return bool(self.v < other.v)

    def __gt__(self, other: object) -> bool:
        if isinstance(other, _Lowest):
            return True
        assert isinstance(other, _Comparable)
        return bool(self.v > other.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Comparable) and bool(self.v == other.v)

    def __hash__(self) -> int:
        return hash(str(self.v))


def _fixed_after(installed: str, affected: Affected) -> str | None:
    for rng in affected.ranges:
        for ev in rng.events:
            if ev.kind == "fixed":
                return ev.version
    return None
