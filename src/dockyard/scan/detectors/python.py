"""Python distributions: *.dist-info/METADATA and *.egg-info/PKG-INFO (core metadata, RFC 822 headers)."""

from __future__ import annotations

import email.parser
import re

from packageurl import PackageURL

from dockyard.scan.detectors import Detector
from dockyard.scan.model import PYPI, Package

_CLASSIFIER_LICENCES = {
    "MIT License": "MIT",
    "BSD License": "BSD-3-Clause",
    "Apache Software License": "Apache-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "ISC License (ISCL)": "ISC",
    "Python Software Foundation License": "PSF-2.0",
}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wants(path: str, mode: int, size: int) -> bool:
    return (path.endswith(".dist-info/METADATA") or path.endswith(".egg-info/PKG-INFO")) and size < 4 * 1024 * 1024


def detect(path: str, data: bytes) -> list[Package]:
    headers = email.parser.BytesHeaderParser().parsebytes(data)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return []
    licence = headers.get("License-Expression")
    if not licence:
        for classifier in headers.get_all("Classifier") or []:
            if classifier.startswith("License :: OSI Approved :: "):
                licence = _CLASSIFIER_LICENCES.get(classifier.rsplit(" :: ", 1)[1])
                if licence:
                    break
    if not licence:
        raw = (headers.get("License") or "").strip()
        licence = raw if raw and "\n" not in raw and len(raw) < 64 and raw.upper() != "UNKNOWN" else None
    purl = PackageURL("pypi", None, normalise(str(name)), str(version)).to_string()
    return [Package(PYPI, str(name), str(version), path, purl, licence=licence)]


DETECTOR = Detector("python", _wants, detect)
