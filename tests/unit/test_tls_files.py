"""The TLS settings and files: set together, checked before they are served, changes noticed once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dockyard.config import Settings
from dockyard.tls import FileWatcher, TlsFiles, TlsFilesError
from tests.support.tls import issue, make_tls_files


def test_certificate_and_key_come_together(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="tls_cert_file and tls_key_file"):
        Settings(tls_cert_file=tmp_path / "c.pem")
    with pytest.raises(ValidationError, match="tls_client_ca_file needs"):
        Settings(tls_client_ca_file=tmp_path / "ca.pem")


def test_check_refuses_a_key_of_another_certificate_and_a_bad_client_ca(tmp_path: Path) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    TlsFiles(cert, key, ca).check()
    _, other_key = issue(tmp_path, "other")
    with pytest.raises(TlsFilesError, match="cannot load"):
        TlsFiles(cert, other_key).check()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsFilesError, match="client CA"):
        TlsFiles(cert, key, garbage).check()
    with pytest.raises(TlsFilesError):
        TlsFiles(tmp_path / "missing.pem", key).check()


def test_watcher_reports_a_change_that_loads_once_and_one_that_does_not_as_an_error(tmp_path: Path) -> None:
    _, cert, key = make_tls_files(tmp_path)
    changes: list[str] = []
    errors: list[str] = []
    watcher = FileWatcher(TlsFiles(cert, key), 60, lambda: changes.append("x"), errors.append)
    watcher.poll()
    assert changes == [] and errors == []  # nothing changed yet
    issue(tmp_path, "server")
    watcher.poll()
    watcher.poll()
    assert changes == ["x"] and errors == []  # once per change
    key.write_text("half a key")
    watcher.poll()
    assert changes == ["x"] and len(errors) == 1
    issue(tmp_path, "server")
    watcher.poll()
    assert changes == ["x", "x"]
