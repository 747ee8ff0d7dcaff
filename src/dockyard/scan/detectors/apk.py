"""Alpine: /lib/apk/db/installed (blank-line separated records of `X:value` lines)."""

from __future__ import annotations

from packageurl import PackageURL

from dockyard.scan.detectors import Detector
from dockyard.scan.model import APK, Package


def _wants(path: str, mode: int, size: int) -> bool:
    return path == "lib/apk/db/installed"


def detect(path: str, data: bytes) -> list[Package]:
    out: list[Package] = []
    for record in data.decode("utf-8", "replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in record.splitlines():
            if len(line) > 2 and line[1] == ":":
                fields.setdefault(line[0], line[2:])
        name, version = fields.get("P"), fields.get("V")
        if not name or not version:
            continue
        origin = fields.get("o") or name
        arch = fields.get("A")
        purl = PackageURL("apk", "alpine", name, version, {"arch": arch} if arch else None).to_string()
        out.append(Package(APK, name, version, path, purl, origin, version, fields.get("L")))
    return out


DETECTOR = Detector("apk", _wants, detect)
