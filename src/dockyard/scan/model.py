"""The scanner's vocabulary, shared by inventory, vulnerability matching and reports."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime


class ImageError(Exception):
    """The path is not an image this scanner can read, or the image is malformed."""


# Ecosystems, as inventory names them (the Package URL type).
DEB, APK, RPM, PYPI, NPM, GOLANG, MAVEN, GEM, CARGO = (
    "deb",
    "apk",
    "rpm",
    "pypi",
    "npm",
    "golang",
    "maven",
    "gem",
    "cargo",
)

# The one order of severities, most severe first. UNKNOWN: no source rated it; RATED: the ratings a
# source can give. Anything else (a label from elsewhere) ranks after UNKNOWN.
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")
RATED = SEVERITIES[:-1]


def severity_rank(severity: str) -> int:
    """0 for CRITICAL, 1 for HIGH, … : a sort key, most severe first."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def at_least(severity: str, threshold: str) -> bool:
    """`severity` is `threshold` (any case) or more severe."""
    return severity_rank(severity) <= severity_rank(threshold.upper())


def severities_at_least(threshold: str) -> tuple[str, ...]:
    """The severities at or above `threshold` (any case), for an SQL `IN`."""
    return tuple(s for s in SEVERITIES if at_least(s, threshold))


def worst(*severities: str) -> str:
    """The most severe of them; UNKNOWN when there is none."""
    return min(severities, key=severity_rank, default="UNKNOWN")


@dataclass(frozen=True, slots=True)
class Distro:
    id: str  # os-release ID: debian, ubuntu, alpine, rhel, fedora, rocky, almalinux, …
    version_id: str  # os-release VERSION_ID: "11", "3.11.6", "9.3"


@dataclass(frozen=True, slots=True)
class Package:
    ecosystem: str  # one of the constants above
    name: str  # binary package name for distributions; module/artifact name otherwise
    version: str
    path: str  # the file it was found in, within the image's filesystem (no leading slash)
    purl: str
    source_name: str | None = None  # dpkg Source / apk origin / rpm source package
    source_version: str | None = None
    licence: str | None = None  # SPDX expression where the package records one
    distro: Distro | None = None  # for deb/apk/rpm: the distribution release it belongs to


@dataclass(frozen=True, slots=True)
class Finding:
    advisory_id: str
    aliases: tuple[str, ...]  # CVE ids and other ids of the same vulnerability
    package: Package
    installed_version: str
    fixed_version: str | None
    severity: str  # one of SEVERITIES
    score: float | None  # CVSS base score, when the advisory gives a vector
    link: str
    summary: str = ""


DEFAULT_STALE_AFTER = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """The vulnerability database a result was evaluated against, so that "no findings" is never read
    as "clean" when there was nothing to match against.

    state: "empty" (no advisories: nothing was checked), "stale" (its data was last confirmed longer
    than the stale limit ago, or never), "current".
    """

    generation: int
    advisories: int
    updated_at: float | None  # UTC seconds
    age_seconds: float | None  # how old the data is (at `evaluated_at`)
    state: str
    evaluated_at: float

    @classmethod
    def of(
        cls,
        generation: int,
        advisories: int,
        updated_at: float | None,
        stale_after: float = DEFAULT_STALE_AFTER,
        now: float | None = None,
    ) -> DatabaseInfo:
        now = time.time() if now is None else now
        age = None if updated_at is None else max(0.0, round(now - updated_at, 3))
        if advisories <= 0:
            state = "empty"
        elif age is None or age > stale_after:
            state = "stale"
        else:
            state = "current"
        return cls(generation, advisories, updated_at, age, state, now)

    @property
    def trustworthy(self) -> bool:
        return self.state == "current"

    def describe(self) -> str:
        """One line for a report header or a log: what the findings were matched against."""
        if self.state == "empty":
            return "vulnerability database EMPTY: nothing was checked, no finding means nothing"
        when = (
            datetime.fromtimestamp(self.updated_at, UTC).isoformat(timespec="seconds")
            if self.updated_at is not None
            else "never"
        )
        age = f", {_duration(self.age_seconds)} old" if self.age_seconds is not None else ""
        stale = " — STALE: update it" if self.state == "stale" else ""
        size = f"generation {self.generation}, {self.advisories} advisories"
        return f"vulnerability database {size}, updated {when}{age}{stale}"

    def as_dict(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "advisories": self.advisories,
            "updated_at": None
            if self.updated_at is None
            else datetime.fromtimestamp(self.updated_at, UTC).isoformat(timespec="seconds"),
            "age_seconds": self.age_seconds,
            "state": self.state,
        }


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


@dataclass
class ScanResult:
    packages: list[Package] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    distro: Distro | None = None
    database: DatabaseInfo | None = None  # None: an inventory only, or an external scanner's result

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for f in self.findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
        return counts
