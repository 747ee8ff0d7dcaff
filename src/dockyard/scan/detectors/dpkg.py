"""Debian and Ubuntu: /var/lib/dpkg/status (one stanza per package) and status.d/* (distroless)."""

from __future__ import annotations

import re

from debian.deb822 import Deb822
from packageurl import PackageURL

from dockyard.scan.detectors import Detector
from dockyard.scan.model import DEB, Package

_SOURCE_RE = re.compile(r"(\S+)(?:\s+\((\S+)\))?")  # fullmatch


def _wants(path: str, mode: int, size: int) -> bool:
    return path == "var/lib/dpkg/status" or (
        path.startswith("var/lib/dpkg/status.d/") and not path.endswith(".md5sums")
    )


def detect(path: str, data: bytes) -> list[Package]:
    out: list[Package] = []
    for stanza in Deb822.iter_paragraphs(data.decode("utf-8", "replace").splitlines()):
        name, version = stanza.get("Package"), stanza.get("Version")
        if not name or not version:
            continue
        status = stanza.get("Status", "install ok installed")
        if "installed" not in status.split() or "not-installed" in status:
            continue  # removed packages leave config-files stanzas behind
        src_name, src_version = name, version
        source = stanza.get("Source")
        if source:
            m = _SOURCE_RE.fullmatch(source.strip())
            if m:
                src_name, src_version = m.group(1), m.group(2) or version
        arch = stanza.get("Architecture")
        purl = PackageURL("deb", "debian", name, version, {"arch": arch} if arch else None).to_string()
        out.append(Package(DEB, name, version, path, purl, src_name, src_version, None))
    return out


DETECTOR = Detector("dpkg", _wants, detect)
