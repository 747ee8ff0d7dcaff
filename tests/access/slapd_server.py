"""A real OpenLDAP server (Debian's slapd) on loopback ports, with a test directory, for the tests.

It listens on ldap:// (StartTLS capable) and ldaps:// with a certificate from a CA made here.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BASE = "dc=dockyard,dc=test"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PW = "root-secret"
SERVICE_DN = f"cn=registry,{BASE}"
SERVICE_PW = "service-secret"
USERS = {"alice": "alice-pass", "bob": "bob-pass", "carol": "carol-pass"}
GROUPS = {"team-a-devs": ["alice"], "team-a-admins": ["bob"], "registry-admins": ["carol"]}


def slapd_missing() -> str | None:
    for tool in ("slapd", "ldapadd", "slappasswd"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (scripts/system-deps.sh installs slapd and ldap-utils)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


class Slapd:
    """Start with `with Slapd() as ldap:`; `ldap.url`, `ldap.ldaps_url`, `ldap.ca_file`."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="slapd-"))
        self.port, self.tls_port = _free_port(), _free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{self.tls_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ca_file = ""

    def __enter__(self) -> Slapd:
        (self.dir / "db").mkdir()
        ca, cert, key = _certificates(self.dir)
        self.ca_file = str(ca)
        conf = self.dir / "slapd.conf"
        conf.write_text(
            "\n".join(
                [
                    *(f"include /etc/ldap/schema/{s}.schema" for s in ("core", "cosine", "inetorgperson", "nis")),
                    f"pidfile {self.dir}/slapd.pid",
                    "modulepath /usr/lib/ldap",
                    "moduleload back_mdb",
                    f"TLSCACertificateFile {ca}",
                    f"TLSCertificateFile {cert}",
                    f"TLSCertificateKeyFile {key}",
                    "database mdb",
                    f'suffix "{BASE}"',
                    f'rootdn "{ROOT_DN}"',
                    f"rootpw {ROOT_PW}",
                    f"directory {self.dir}/db",
                    "maxsize 10485760",
                ]
            )
            + "\n"
        )
        log = open(self.dir / "slapd.log", "wb")
        self.proc = subprocess.Popen(
            [_tool("slapd"), "-f", str(conf), "-h", f"{self.url}/ {self.ldaps_url}/", "-d", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"slapd did not start: {(self.dir / 'slapd.log').read_text()}") from None
                time.sleep(0.1)
        self._load()
        return self

    def _hash(self, password: str) -> str:
        return subprocess.run(
            [_tool("slappasswd"), "-s", password], capture_output=True, text=True, check=True
        ).stdout.strip()

    def ldif(self, text: str, modify: bool = False) -> None:
        tool = "ldapmodify" if modify else "ldapadd"
        subprocess.run(
            [_tool(tool), "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW],
            input=text,
            text=True,
            capture_output=True,
            check=True,
        )

    def _load(self) -> None:
        entries = [
            f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: dockyard\no: Dockyard test\n",
            f"dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups\n",
            f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
            f"cn: registry\nuserPassword: {self._hash(SERVICE_PW)}\n",
        ]
        entries += [self._user_entry(name, pw) for name, pw in USERS.items()]
        entries += [self._group_entry(name, members) for name, members in GROUPS.items()]
        self.ldif("\n".join(entries))

    def _user_entry(self, name: str, password: str) -> str:
        return (
            f"dn: uid={name},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name.title()}\n"
            f"sn: {name.title()}\nmail: {name}@dockyard.test\nuserPassword: {self._hash(password)}\n"
        )

    def _group_entry(self, name: str, members: list[str]) -> str:
        lines = [f"dn: cn={name},ou=groups,{BASE}", "objectClass: groupOfNames", f"cn: {name}"]
        lines += [f"member: uid={m},ou=people,{BASE}" for m in members]
        return "\n".join(lines) + "\n"

    def add_user(self, name: str, password: str) -> None:
        self.ldif(self._user_entry(name, password))

    def delete_user(self, name: str) -> None:
        subprocess.run(
            [_tool("ldapdelete"), "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW, f"uid={name},ou=people,{BASE}"],
            capture_output=True,
            check=True,
        )

    def add_to_group(self, group: str, user: str) -> None:
        self.ldif(
            f"dn: cn={group},ou=groups,{BASE}\nchangetype: modify\nadd: member\nmember: uid={user},ou=people,{BASE}\n",
            modify=True,
        )

    def remove_from_group(self, group: str, user: str) -> None:
        self.ldif(
            f"dn: cn={group},ou=groups,{BASE}\nchangetype: modify\n"
            f"delete: member\nmember: uid={user},ou=people,{BASE}\n",
            modify=True,
        )

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
