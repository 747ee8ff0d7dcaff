"""Ruby gems: specifications/<name>-<version>.gemspec (as RubyGems installs them)."""

from __future__ import annotations

import re

from packageurl import PackageURL

from dockyard.scan.detectors import Detector
from dockyard.scan.model import GEM, Package

_NAME_RE = re.compile(r"""\.name\s*=\s*["']([^"']+)["']""")
_VERSION_RE = re.compile(r"""\.version\s*=\s*["']([^"']+)["']""")
# `s.license = "MIT"` or `s.licenses = ["Ruby".freeze, "BSD-2-Clause".freeze]`: every entry counts.
_LICENCES_RE = re.compile(r"""\.licenses?\s*=\s*(\[[^\]]*\]|["'][^"']+["'])""")
_QUOTED_RE = re.compile(r"""["']([^"']+)["']""")


def _wants(path: str, mode: int, size: int) -> bool:
    return "/specifications/" in "/" + path and path.endswith(".gemspec") and size < 1024 * 1024


def detect(path: str, data: bytes) -> list[Package]:
    text = data.decode("utf-8", "replace")
    name, version = _NAME_RE.search(text), _VERSION_RE.search(text)
    if name is None or version is None:
        stem = path.rsplit("/", 1)[-1][: -len(".gemspec")]
        base, _, ver = stem.rpartition("-")
        if not base:
            return []
        gem, gem_version = base, ver
    else:
        gem, gem_version = name.group(1), version.group(1)
    found = _LICENCES_RE.search(text)
    # Several licences in a gemspec offer a choice (Ruby's own gems: ["Ruby", "BSD-2-Clause"]).
    licence = " OR ".join(dict.fromkeys(_QUOTED_RE.findall(found.group(1)))) if found else ""
    purl = PackageURL("gem", None, gem, gem_version).to_string()
    return [Package(GEM, gem, gem_version, path, purl, licence=licence or None)]


DETECTOR = Detector("ruby", _wants, detect)
