"""Python distributions, in every form an installer leaves on disk (core metadata, RFC 822 headers):

- `<name>-<version>.dist-info/METADATA` (wheels, pip);
- `<name>.egg-info/PKG-INFO` (setuptools `develop`/legacy `setup.py install` of a directory);
- `<name>-<version>-pyX.Y.egg-info` as a single file: distutils' `install_egg_info` writes the
  PKG-INFO text itself there (Debian's python3-* packages are full of them);
- eggs: `<name>-<version>-pyX.Y.egg/EGG-INFO/PKG-INFO` (unzipped) and `.egg` zip files holding
  `EGG-INFO/PKG-INFO` (easy_install, buildout).

Wherever they are: site-packages, dist-packages, a virtualenv or a vendored folder.
"""

from __future__ import annotations

import email.parser
import io
import re
import zipfile

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


MAX_METADATA = 4 * 1024 * 1024
MAX_EGG = 64 * 1024 * 1024
_METADATA_FILES = (".dist-info/METADATA", ".egg-info/PKG-INFO", ".egg/EGG-INFO/PKG-INFO")


def _wants(path: str, mode: int, size: int) -> bool:
    # Only regular files reach a detector, so a path ending in ".egg-info" or ".egg" is the file form.
    if path.endswith(".egg"):
        return size < MAX_EGG
    return (path.endswith(_METADATA_FILES) or path.endswith(".egg-info")) and size < MAX_METADATA


def detect(path: str, data: bytes) -> list[Package]:
    if path.endswith(".egg"):
        return _zipped_egg(path, data)
    return _metadata(path, data)


def _zipped_egg(path: str, data: bytes) -> list[Package]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as egg:
            info = egg.getinfo("EGG-INFO/PKG-INFO")
            if info.file_size > MAX_METADATA:
                return []
            return _metadata(path, egg.read(info))
    except (KeyError, zipfile.BadZipFile, OSError):
        return []


def _metadata(path: str, data: bytes) -> list[Package]:
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


DETECTOR = Detector("python", _wants, detect, max_bytes=MAX_EGG)
