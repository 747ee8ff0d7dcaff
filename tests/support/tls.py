"""Throwaway certificates for the test servers: a CA, server certificates it signed for loopback names,
and client certificates (for servers that require one)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = ("127.0.0.1", "localhost")


def make_tls_files(folder: Path, hosts: Sequence[str] = LOOPBACK) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signed for `hosts`: (ca.pem, server.pem, server.key).
    The CA's key stays in the folder (ca.key) so `issue` can sign more certificates with it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dockyard test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / "ca.key", ca_key)
    cert_path, key_path = issue(folder, "server", hosts)
    return ca_path, cert_path, key_path


def issue(folder: Path, name: str, hosts: Sequence[str] = LOOPBACK, client: bool = False) -> tuple[Path, Path]:
    """Another certificate from the CA in `folder` (made by make_tls_files), with a new key: a server
    certificate for `hosts`, or with `client` a client certificate whose common name is hosts[0].
    Written (replacing any) as NAME.pem and NAME.key; returns those paths."""
    now = datetime.datetime.now(datetime.UTC)
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    else:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    # Written beside and renamed over, as certificate renewers do: a reader never sees half a file.
    for path, data in ((cert_path, cert.public_bytes(serialization.Encoding.PEM)), (key_path, _key_bytes(key))):
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o600 if path == key_path else 0o644)
        tmp.replace(path)
    return cert_path, key_path


def serial(cert: Path | bytes) -> int:
    """The serial number of a PEM file's or a DER certificate's (as a TLS peer sent it)."""
    if isinstance(cert, Path):
        return x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    return x509.load_der_x509_certificate(cert).serial_number


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(_key_bytes(key))
    path.chmod(0o600)
