"""The scanner's vocabulary, shared by inventory, vulnerability matching and reports."""

from __future__ import annotations

from dataclasses import dataclass, field


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

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")  # most severe first


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


@dataclass
class ScanResult:
    packages: list[Package] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    distro: Distro | None = None

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for f in self.findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
        return counts
