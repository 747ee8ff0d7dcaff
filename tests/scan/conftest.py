"""Real packages for the scanner tests, fetched once per session with the real tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import missing

# Old releases with published advisories in ../shared/vulndb, and fixed releases as controls.
PYTHON_PACKAGES = ["requests==2.19.1", "urllib3==1.24.1", "Jinja2==2.10", "PyYAML==5.3", "idna==3.7"]
NPM_PACKAGES = ["lodash@4.17.15", "minimist@1.2.0"]


@pytest.fixture(scope="session")
def site_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("pip") / "site-packages"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(target),
         *PYTHON_PACKAGES],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if proc.returncode != 0:
        missing(f"pip could not install the test packages: {proc.stderr[-500:]}")
    return target


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        missing("npm is not installed")
    root = tmp_path_factory.mktemp("npm")
    proc = subprocess.run(
        [str(npm), "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(root), *NPM_PACKAGES],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if proc.returncode != 0:
        missing(f"npm could not install the test packages: {proc.stderr[-500:]}")
    return root / "node_modules"
