"""What a worker imports at start (tests the laziness that bench/README.md's memory breakdown counts
on): the management API (FastAPI, its models and OpenAPI) loads on the first /api/v1 request, the web UI
(Jinja2) on the first page, the
SBOM libraries on the first SBOM export, and ldap3 only when LDAP is configured. Checked in a fresh
interpreter that builds the application the way a server worker does (`create_app()` from DOCKYARD_*
variables, after the launcher's module)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = """
import json, sys
import dockyard.launch  # a worker runs in the launcher's process (forked) or re-imports it (spawned)
from dockyard.api.app import create_app
create_app()
print(json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))
"""

# Module name prefixes a worker serving only /v2/ must not hold: the management API, LDAP, the SBOM
# libraries (loaded by an SBOM export), and what only command-line programs use (see dockyard.launch).
LAZY = (
    "fastapi",
    "dockyard.api.management",
    "dockyard.ui",  # the web UI and its templates: on the first page request
    "jinja2",
    "ldap3",
    "cyclonedx",
    "license_expression",
    "httpx._main",
    "rich",
    "pygments",
)


def _worker_modules(tmp_path: Path, **env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    environ.update(DOCKYARD_DATA_DIR=str(tmp_path), DOCKYARD_SCANNER_ENABLED="false", **env)
    out = subprocess.run([sys.executable, "-c", WORKER], env=environ, capture_output=True, text=True, check=True)
    modules: list[str] = json.loads(out.stdout.splitlines()[-1])
    return modules


def _loaded(modules: list[str], prefix: str) -> bool:
    return any(m == prefix or m.startswith(prefix + ".") for m in modules)


def test_a_worker_starts_without_the_management_api_or_ldap(tmp_path: Path) -> None:
    modules = _worker_modules(tmp_path)
    assert "dockyard.api.distribution.routes" in modules  # it did build the registry
    assert [p for p in LAZY if _loaded(modules, p)] == []


def test_ldap3_loads_when_ldap_is_configured(tmp_path: Path) -> None:
    modules = _worker_modules(
        tmp_path, DOCKYARD_LDAP_URL="ldap://127.0.0.1:1", DOCKYARD_LDAP_USER_BASE="ou=people,dc=example,dc=org"
    )
    assert _loaded(modules, "ldap3")
