"""Java archives (.jar, .war, .ear): META-INF/maven/<group>/<artifact>/pom.properties, nested archives too."""

from __future__ import annotations

import io
import zipfile

from packageurl import PackageURL

from dockyard.scan.detectors import Detector
from dockyard.scan.model import MAVEN, Package

ARCHIVES = (".jar", ".war", ".ear")
MAX_NESTED = 64 * 1024 * 1024


def _wants(path: str, mode: int, size: int) -> bool:
    return path.lower().endswith(ARCHIVES) and size < 512 * 1024 * 1024


def _properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _scan(archive: zipfile.ZipFile, path: str, depth: int, out: list[Package]) -> None:
    for info in archive.infolist():
        name = info.filename
        if name.startswith("META-INF/maven/") and name.endswith("/pom.properties"):
            props = _properties(archive.read(info).decode("utf-8", "replace"))
            group, artifact, version = props.get("groupId"), props.get("artifactId"), props.get("version")
            if group and artifact and version:
                purl = PackageURL("maven", group, artifact, version).to_string()
                out.append(Package(MAVEN, f"{group}:{artifact}", version, path, purl))
        elif depth < 2 and name.lower().endswith(ARCHIVES) and info.file_size < MAX_NESTED:
            try:
                with zipfile.ZipFile(io.BytesIO(archive.read(info))) as nested:
                    _scan(nested, f"{path}!/{name}", depth + 1, out)
            except (zipfile.BadZipFile, OSError):
                continue


def detect(path: str, data: bytes) -> list[Package]:
    out: list[Package] = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _scan(archive, path, 0, out)
    except (zipfile.BadZipFile, OSError):
        return []
    return out


DETECTOR = Detector("java", _wants, detect, max_bytes=512 * 1024 * 1024)
