from pathlib import Path

from dockyard.config import Settings
from dockyard.db.engine import Database
from dockyard.wiring import build_services, prepare


def test_first_start_generates_admin_password_once(tmp_path: Path, database: Database) -> None:
    svc = build_services(Settings(data_dir=tmp_path, database_url=database.url), db=database)
    generated = prepare(svc)
    assert generated and len(generated) >= 20
    identity = svc.authenticator.authenticate("admin", generated)
    assert identity is not None and identity.is_admin
    assert svc.authenticator.authenticate("admin", generated + "x") is None
    assert svc.authenticator.authenticate("nobody", generated) is None
    assert prepare(svc) is None  # second start: nothing generated, password unchanged
    assert svc.authenticator.authenticate("admin", generated) is not None


def test_admin_password_from_settings(tmp_path: Path, database: Database) -> None:
    svc = build_services(Settings(data_dir=tmp_path, database_url=database.url, admin_password="chosen"), db=database)
    assert prepare(svc) is None
    assert svc.authenticator.authenticate("admin", "chosen") is not None


def test_signing_key_is_shared_by_replicas(tmp_path: Path, database: Database) -> None:
    """Two service graphs on one database (two replicas) accept each other's tokens."""
    settings = Settings(data_dir=tmp_path, database_url=database.url, admin_password="pw")
    a = build_services(settings, db=database)
    prepare(a)
    b = build_services(settings, db=Database(database.url))
    try:
        identity = a.authenticator.authenticate("admin", "pw")
        assert identity is not None
        token = a.tokens.issue(identity, []).token
        assert b.tokens.verify(token).subject == "admin"
    finally:
        b.db.dispose()


def test_serve_writes_the_password_it_generates_to_a_private_file(tmp_path: Path, database: Database) -> None:
    """The log names the file, never the password (a log is shipped and kept)."""
    from structlog.testing import capture_logs

    from dockyard.cli import first_start

    settings = Settings(data_dir=tmp_path, database_url=database.url)
    with capture_logs() as events:
        first_start(settings)
        first_start(settings)  # a later start: nothing generated, nothing written
    shown = [e for e in events if "password_file" in e]
    assert len(shown) == 1 and shown[0]["username"] == "admin" and shown[0]["log_level"] == "warning"
    path = Path(shown[0]["password_file"])
    assert path == (tmp_path / "initial-admin-password").resolve()
    assert path.stat().st_mode & 0o777 == 0o600
    password = path.read_text().strip()
    assert len(password) >= 20
    assert all(password not in repr(e) for e in events)
    svc = build_services(settings, db=database)
    assert svc.authenticator.authenticate("admin", password) is not None
