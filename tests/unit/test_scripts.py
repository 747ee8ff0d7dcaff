"""scripts/run and scripts/test hand their arguments to dockyard / pytest, never to the venv setup."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _checkout(tmp_path: Path) -> tuple[Path, Path]:
    """The scripts in a scratch tree whose .venv holds stand-ins that record how they were called."""
    root = tmp_path / "clone"
    shutil.copytree(REPO / "scripts", root / "scripts")
    (root / "pyproject.toml").write_text("[project]\nname = 'placeholder'\n")
    calls = tmp_path / "calls"
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "dockyard"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\n')
        stub.chmod(0o755)
    (root / "scripts" / "system-deps.sh").write_text("true\n")  # no apt-get here
    return root, calls


def test_run_passes_its_arguments_to_serve(tmp_path: Path) -> None:
    root, calls = _checkout(tmp_path)
    subprocess.run([str(root / "scripts" / "run"), "--port", "5001"], check=True, timeout=60)
    assert calls.read_text().splitlines() == [
        f"python -m pip install -q -e {root}",  # no extras: not `placeholder[--port]`
        "dockyard serve --port 5001",
    ]


def test_test_installs_the_dev_extras_and_passes_its_arguments_to_pytest(tmp_path: Path) -> None:
    root, calls = _checkout(tmp_path)
    subprocess.run([str(root / "scripts" / "test"), "tests/unit", "-x"], check=True, timeout=60)
    assert calls.read_text().splitlines() == [
        f"python -m pip install -q -e {root}[dev]",
        "python -m pytest tests/unit -x",
    ]
