"""A real OpenLDAP server (Debian's `slapd`) of the test's own, with a small test directory.

    reason = slapd_available()          # None, or why it cannot run (then skip or fail the test)
    with SlapdServer() as ldap:
        ldap.url                        # ldap://127.0.0.1:PORT (StartTLS capable)
        ldap.ldaps_url                  # ldaps://127.0.0.1:PORT2 (certificate from ldap.ca_cert_path)
        ldap.add_user("dave", "dave-pass", groups=["team-a-devs"])

Each instance configures its own slapd (slapd.conf, mdb backend, schemas core/cosine/inetorgperson/nis) in a
temporary directory, listening on free loopback ports only; the directory is loaded with `slapadd` before
the server starts, so it is complete as soon as the port answers. Works as root (slapd keeps running as the
user who started it) and as an ordinary user. The system slapd (port 389) is never touched.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import ldap3

from tests.support.running import Running
from tests.support.tls import make_tls_files

SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
MODULE_DIR = Path("/usr/lib/ldap")

DEFAULT_USERS: dict[str, str] = {"alice": "alice-pass", "bob": "bob-pass", "carol": "carol-pass"}
DEFAULT_GROUPS: dict[str, list[str]] = {
    "team-a-devs": ["alice"],
    "team-a-admins": ["bob"],
    "registry-admins": ["carol"],
}


def _tool(name: str) -> str | None:
    for folder in ("/usr/sbin", "/usr/bin", "/sbin"):
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    return shutil.which(name)


def slapd_available() -> str | None:
    """None when a test slapd can be started here, otherwise the reason it cannot (for pytest.skip)."""
    for tool in ("slapd", "slapadd"):
        if _tool(tool) is None:
            return f"{tool} is not installed (scripts/system-deps.sh installs the Debian packages slapd, ldap-utils)"
    for schema in SCHEMAS:
        if not (SCHEMA_DIR / f"{schema}.schema").is_file():
            return f"OpenLDAP schema {SCHEMA_DIR}/{schema}.schema is missing (Debian package slapd)"
    return None


def ssha(password: str, salt: bytes | None = None) -> str:
    """The {SSHA} userPassword value for a password (what `slappasswd -s` makes), computed here."""
    salt = os.urandom(8) if salt is None else salt
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlapdError(RuntimeError):
    pass


class SlapdServer(Running):
    """An OpenLDAP server on 127.0.0.1 with ou=people (inetOrgPerson) and ou=groups (groupOfNames).

    Constructor (all keyword, all optional):
      base_dn            suffix, default dc=dockyard,dc=test (its first RDN must be a dc=)
      admin_password     password of the root DN cn=admin,<base_dn>
      users              {uid: password}, default alice/alice-pass, bob/bob-pass, carol/carol-pass
      groups             {group cn: [member uids]}, default team-a-devs: alice, team-a-admins: bob,
                         registry-admins: carol (a groupOfNames needs at least one member)
      tls                also configure StartTLS on `url` and listen on `ldaps_url` (default True)
      service_password   password of the read-only service account cn=registry,<base_dn>
      start_timeout      seconds to wait for the ports to answer

    Attributes: url, ldaps_url (None without tls), host, port, tls_port, base_dn, people_dn, groups_dn,
    bind_dn / bind_password (the root DN: writes anything), service_dn / service_password (reads everything
    but passwords, as a registry's search account would), users {uid: password}, groups {cn: [uids]},
    ca_cert_path / cert_path / key_path (str, None without tls), workdir (Path), log_path (Path).

    Ordinary users may read the directory (not passwords) and change their own password.
    """

    def __init__(
        self,
        *,
        base_dn: str = "dc=dockyard,dc=test",
        admin_password: str = "admin-secret",
        users: Mapping[str, str] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        tls: bool = True,
        service_password: str = "service-secret",
        start_timeout: float = 15.0,
    ) -> None:
        self.base_dn = base_dn
        self.people_dn = f"ou=people,{base_dn}"
        self.groups_dn = f"ou=groups,{base_dn}"
        self.bind_dn = f"cn=admin,{base_dn}"
        self.bind_password = admin_password
        self.service_dn = f"cn=registry,{base_dn}"
        self.service_password = service_password
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.groups: dict[str, list[str]] = {
            name: list(members) for name, members in (DEFAULT_GROUPS if groups is None else groups).items()
        }
        self.tls = tls
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.tls_port = 0
        self.url = ""
        self.ldaps_url: str | None = None
        self.ca_cert_path: str | None = None
        self.cert_path: str | None = None
        self.key_path: str | None = None
        self.workdir = Path()
        self.log_path = Path()
        self._proc: subprocess.Popen[bytes] | None = None

    # --- names ----------------------------------------------------------------------------------
    def user_dn(self, uid: str) -> str:
        return f"uid={uid},{self.people_dn}"

    def group_dn(self, name: str) -> str:
        return f"cn={name},{self.groups_dn}"

    def groups_of(self, uid: str) -> list[str]:
        """The groups (cn) this helper put `uid` in, sorted."""
        return sorted(name for name, members in self.groups.items() if uid in members)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        reason = slapd_available()
        if reason:
            raise SlapdError(reason)
        self.workdir = Path(tempfile.mkdtemp(prefix="dockyard-slapd-"))
        atexit.register(self.stop)  # no orphaned slapd if the test process exits without leaving the `with`
        self.log_path = self.workdir / "slapd.log"
        try:
            if self.tls:
                ca, cert, key = make_tls_files(self.workdir)
                self.ca_cert_path, self.cert_path, self.key_path = str(ca), str(cert), str(key)
            self._write_config()
            self._load_directory()
            for _attempt in range(5):  # a free port can be taken between probing it and slapd binding it
                if self._launch():
                    return
            raise SlapdError(f"slapd did not start; log:\n{self.log_path.read_text(errors='replace')}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop slapd and delete its files."""
        atexit.unregister(self.stop)
        self.stop_process()
        if self.workdir != Path() and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> None:
        (self.workdir / "db").mkdir()
        lines = [f"include {SCHEMA_DIR}/{schema}.schema" for schema in SCHEMAS]
        lines += [
            f"pidfile {self.workdir}/slapd.pid",
            f"argsfile {self.workdir}/slapd.args",
        ]
        if (MODULE_DIR / "back_mdb.so").exists() or (MODULE_DIR / "back_mdb.la").exists():
            lines += [f"modulepath {MODULE_DIR}", "moduleload back_mdb"]
        if self.tls:
            lines += [
                f"TLSCACertificateFile {self.ca_cert_path}",
                f"TLSCertificateFile {self.cert_path}",
                f"TLSCertificateKeyFile {self.key_path}",
                "TLSVerifyClient never",
            ]
        lines += [
            "database mdb",
            f'suffix "{self.base_dn}"',
            f'rootdn "{self.bind_dn}"',
            f"rootpw {ssha(self.bind_password)}",
            f"directory {self.workdir}/db",
            "maxsize 67108864",
            "index objectClass eq",
            "index uid,cn,member eq",
            "access to attrs=userPassword by self write by anonymous auth by * none",
            "access to * by * read",
        ]
        (self.workdir / "slapd.conf").write_text("\n".join(lines) + "\n")

    def _load_directory(self) -> None:
        org = self.base_dn.split(",")[0].split("=", 1)[1]
        entries: list[dict[str, list[str]]] = [
            {"dn": [self.base_dn], "objectClass": ["dcObject", "organization"], "dc": [org], "o": [f"{org} test"]},
            {"dn": [self.people_dn], "objectClass": ["organizationalUnit"], "ou": ["people"]},
            {"dn": [self.groups_dn], "objectClass": ["organizationalUnit"], "ou": ["groups"]},
            {
                "dn": [self.service_dn],
                "objectClass": ["organizationalRole", "simpleSecurityObject"],
                "cn": ["registry"],
                "userPassword": [ssha(self.service_password)],
            },
        ]
        entries += [self._user_entry(uid, password) for uid, password in self.users.items()]
        entries += [self._group_entry(name, members) for name, members in self.groups.items()]
        ldif = self.workdir / "directory.ldif"
        ldif.write_text("\n".join(_ldif_entry(e) for e in entries))
        result = subprocess.run(
            [str(_tool("slapadd")), "-f", str(self.workdir / "slapd.conf"), "-l", str(ldif)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SlapdError(f"slapadd failed ({result.returncode}): {result.stderr}")

    def _launch(self) -> bool:
        self.port = free_port()
        listen = [f"ldap://{self.host}:{self.port}/"]
        if self.tls:
            self.tls_port = free_port()
            listen.append(f"ldaps://{self.host}:{self.tls_port}/")
        self.url = f"ldap://{self.host}:{self.port}"
        self.ldaps_url = f"ldaps://{self.host}:{self.tls_port}" if self.tls else None
        with open(self.log_path, "ab") as log:
            # -d 0: stay in the foreground (so this Popen is slapd itself), without debug output.
            self._proc = subprocess.Popen(
                [str(_tool("slapd")), "-f", str(self.workdir / "slapd.conf"), "-h", " ".join(listen), "-d", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        ports = [self.port, self.tls_port] if self.tls else [self.port]
        deadline = time.monotonic() + self.start_timeout
        while ports:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            try:
                socket.create_connection((self.host, ports[0]), timeout=0.5).close()
                ports.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    self.stop_process()
                    raise SlapdError(
                        f"slapd did not answer within {self.start_timeout}s; log:\n"
                        + self.log_path.read_text(errors="replace")
                    ) from None
                time.sleep(0.02)
        return True

    def stop_process(self) -> None:
        """Stop slapd but keep its files (start it again with `restart`)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # slapd closes the database cleanly on SIGTERM
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def restart(self) -> None:
        """Stop and start slapd again on new ports, same data (to test an unreachable or moved directory)."""
        self.stop_process()
        for _attempt in range(5):
            if self._launch():
                return
        raise SlapdError(f"slapd did not restart; log:\n{self.log_path.read_text(errors='replace')}")

    # --- directory changes (as the root DN, over LDAP) ----------------------------------------
    def connection(self, bind_dn: str | None = None, password: str | None = None) -> ldap3.Connection:
        """A bound ldap3 connection on `url` (default: as the root DN). Raises on a failed bind."""
        server = ldap3.Server(self.host, port=self.port, get_info=ldap3.NONE, connect_timeout=5)
        return ldap3.Connection(
            server,
            user=self.bind_dn if bind_dn is None else bind_dn,
            password=self.bind_password if password is None else password,
            auto_bind=ldap3.AUTO_BIND_NO_TLS,
            raise_exceptions=True,
            receive_timeout=10,
        )

    def add_user(
        self,
        uid: str,
        password: str,
        *,
        cn: str | None = None,
        sn: str | None = None,
        mail: str | None = None,
        groups: Iterable[str] = (),
    ) -> str:
        """Add an inetOrgPerson under ou=people (and to `groups`, created when missing); returns its DN."""
        entry = self._user_entry(uid, password, cn=cn, sn=sn, mail=mail)
        dn = str(entry.pop("dn")[0])
        with self.connection() as conn:
            conn.add(dn, attributes=entry)
        self.users[uid] = password
        for group in groups:
            self.add_to_group(group, uid)
        return dn

    def set_password(self, uid: str, password: str) -> None:
        with self.connection() as conn:
            conn.modify(self.user_dn(uid), {"userPassword": [(ldap3.MODIFY_REPLACE, [ssha(password)])]})
        self.users[uid] = password

    def set_attribute(self, uid: str, attribute: str, values: Sequence[str]) -> None:
        """Replace an attribute of a user (e.g. mail); an empty list deletes it."""
        with self.connection() as conn:
            conn.modify(self.user_dn(uid), {attribute: [(ldap3.MODIFY_REPLACE, list(values))]})

    def delete_user(self, uid: str) -> None:
        """Delete the user entry. As in a directory without the refint overlay, groups keep its member DN."""
        with self.connection() as conn:
            conn.delete(self.user_dn(uid))
        self.users.pop(uid, None)

    def add_group(self, name: str, members: Sequence[str]) -> str:
        """Add a groupOfNames under ou=groups (it needs at least one member); returns its DN."""
        entry = self._group_entry(name, members)
        dn = str(entry.pop("dn")[0])
        with self.connection() as conn:
            conn.add(dn, attributes=entry)
        self.groups[name] = list(members)
        return dn

    def add_to_group(self, group: str, uid: str) -> None:
        """Make `uid` a member of `group`, creating the group when it does not exist."""
        if group not in self.groups:
            self.add_group(group, [uid])
            return
        with self.connection() as conn:
            conn.modify(self.group_dn(group), {"member": [(ldap3.MODIFY_ADD, [self.user_dn(uid)])]})
        self.groups[group].append(uid)

    def remove_from_group(self, group: str, uid: str) -> None:
        """Remove a member (the directory refuses to remove a group's last member: delete_group then)."""
        with self.connection() as conn:
            conn.modify(self.group_dn(group), {"member": [(ldap3.MODIFY_DELETE, [self.user_dn(uid)])]})
        self.groups[group].remove(uid)

    def delete_group(self, name: str) -> None:
        with self.connection() as conn:
            conn.delete(self.group_dn(name))
        self.groups.pop(name, None)

    # --- entries ------------------------------------------------------------------------------
    def _user_entry(
        self, uid: str, password: str, *, cn: str | None = None, sn: str | None = None, mail: str | None = None
    ) -> dict[str, list[str]]:
        return {
            "dn": [self.user_dn(uid)],
            "objectClass": ["inetOrgPerson"],
            "uid": [uid],
            "cn": [cn or uid.title()],
            "sn": [sn or uid.title()],
            "mail": [mail or f"{uid}@dockyard.test"],
            "userPassword": [ssha(password)],
        }

    def _group_entry(self, name: str, members: Sequence[str]) -> dict[str, list[str]]:
        if not members:
            raise ValueError(f"group {name}: a groupOfNames needs at least one member")
        return {
            "dn": [self.group_dn(name)],
            "objectClass": ["groupOfNames"],
            "cn": [name],
            "member": [self.user_dn(uid) for uid in members],
        }


def _ldif_entry(entry: Mapping[str, Sequence[str]]) -> str:
    lines = []
    for attribute, values in entry.items():
        for value in values:
            if value.isascii() and value.isprintable() and not value.startswith((" ", ":", "<")):
                lines.append(f"{attribute}: {value}")
            else:
                lines.append(f"{attribute}:: {base64.b64encode(value.encode()).decode()}")
    return "\n".join(lines) + "\n"
