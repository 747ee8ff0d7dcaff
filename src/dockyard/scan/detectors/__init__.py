"""Package detectors. Each says which paths it wants (`wants(path, mode, size)`) and turns a file's bytes
into packages (`detect(path, data)`). Only wanted files are read into memory, one at a time, capped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dockyard.scan.model import Package


@dataclass(frozen=True)
class Detector:
    name: str
    wants: Callable[[str, int, int], bool]  # (path without leading "/", mode, size)
    detect: Callable[[str, bytes], list[Package]]
    max_bytes: int = 32 * 1024 * 1024


def all_detectors() -> list[Detector]:
    from dockyard.scan.detectors import apk, cargo, dpkg, golang, java, node, python, rpm, ruby

    return [
        dpkg.DETECTOR,
        apk.DETECTOR,
        rpm.DETECTOR,
        python.DETECTOR,
        node.DETECTOR,
        golang.DETECTOR,
        cargo.DETECTOR,
        java.DETECTOR,
        ruby.DETECTOR,
    ]
