"""Real packages for the scanner tests, fetched once per session with the real tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.db.engine import Database
from dockyard.scan.vulndb import SourceError, VulnDB, sources_in
from dockyard.wiring import Services, build_services, prepare
from tests.api.conftest import make_settings
from tests.conftest import missing

# Old releases with published advisories in ../shared/vulndb, and fixed releases as controls.
PYTHON_PACKAGES = ["requests==2.19.1", "urllib3==1.24.1", "Jinja2==2.10", "PyYAML==5.3", "idna==3.7"]
NPM_PACKAGES = ["lodash@4.17.15", "minimist@1.2.0"]


# The same packages' releases that fixed those advisories: controls that must give no finding.
PYTHON_FIXED = ["requests==2.32.3", "urllib3==2.2.3", "Jinja2==3.1.4", "PyYAML==6.0.2", "idna==3.7"]
NPM_FIXED = ["lodash@4.17.21", "minimist@1.2.8"]


def _pip_target(root: Path, packages: list[str]) -> Path:
    target = root / "site-packages"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(target),
         *packages],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if proc.returncode != 0:
        missing(f"pip could not install the test packages: {proc.stderr[-500:]}")
    return target


def _npm_prefix(root: Path, packages: list[str]) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        missing("npm is not installed")
    proc = subprocess.run(
        [str(npm), "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(root), *packages],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if proc.returncode != 0:
        missing(f"npm could not install the test packages: {proc.stderr[-500:]}")
    return root / "node_modules"


def _installed(name: str, install: Callable[[Path, list[str]], Path], packages: list[str]) -> Any:
    """A session fixture `name`: `packages` installed once into a folder of their own."""

    @pytest.fixture(scope="session", name=name)
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return install(tmp_path_factory.mktemp(name), packages)

    return fixture


site_packages = _installed("site_packages", _pip_target, PYTHON_PACKAGES)
node_modules = _installed("node_modules", _npm_prefix, NPM_PACKAGES)
site_packages_fixed = _installed("site_packages_fixed", _pip_target, PYTHON_FIXED)
node_modules_fixed = _installed("node_modules_fixed", _npm_prefix, NPM_FIXED)


def shared_vulndb() -> Path:
    """The real OSV advisories in ../shared/vulndb (beside the checkout), or DOCKYARD_TEST_VULNDB."""
    root = Path(__file__).resolve().parents[2]
    candidates = [os.environ.get("DOCKYARD_TEST_VULNDB"), root.parent / "shared" / "vulndb", "/work/shared/vulndb"]
    for c in candidates:
        if c and (Path(c) / "PyPI" / "all.zip").is_file():
            return Path(c)
    missing("the shared OSV test advisories (../shared/vulndb) are not beside the checkout")
    raise AssertionError  # unreachable: missing() skips or fails


@pytest.fixture(scope="session")
def vulndb(tmp_path_factory: pytest.TempPathFactory) -> VulnDB:
    """Every shared advisory imported once per session (about two seconds)."""
    db = VulnDB(tmp_path_factory.mktemp("vulndb"))
    for result in db.update(sources_in(shared_vulndb())):
        assert not isinstance(result, SourceError), result
    return db


@pytest.fixture
def services(tmp_path: Path, database: Database, vulndb: VulnDB) -> Iterator[Services]:
    """The registry's services on both engines, with a copy of the shared advisories as their database."""
    vulndb.copy_to(tmp_path / "vulndb").close()
    settings = make_settings(tmp_path, database).model_copy(update={"vulndb_path": tmp_path / "vulndb"})
    svc = build_services(settings, db=database)
    prepare(svc)
    yield svc
    svc.scans.vulndb.close()
