"""Node.js packages: node_modules/<name>/package.json and node_modules/@scope/<name>/package.json."""

from __future__ import annotations

import json

from packageurl import PackageURL

from dockyard.scan.detectors import Detector
from dockyard.scan.model import NPM, Package


def _wants(path: str, mode: int, size: int) -> bool:
    if not path.endswith("/package.json") or size > 1024 * 1024:
        return False
    parts = path.split("/")
    if len(parts) >= 3 and parts[-3] == "node_modules":
        return True
    return len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@")


def detect(path: str, data: bytes) -> list[Package]:
    try:
        doc = json.loads(data)
    except ValueError:
        return []
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return []
    licence = doc.get("license")
    if isinstance(licence, dict):
        licence = licence.get("type")
    namespace, _, short = name.rpartition("/")
    purl = PackageURL("npm", namespace or None, short, version).to_string()
    return [Package(NPM, name, version, path, purl, licence=licence if isinstance(licence, str) else None)]


DETECTOR = Detector("node", _wants, detect)
