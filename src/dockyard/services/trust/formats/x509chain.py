"""X.509 chains for the Notary Project (specs/trust-store-trust-policy.md, "Signature Verification"):
the envelope's chain must run from a code-signing leaf, each certificate issued by the next, to a
certificate of a trust store; the leaf's subject must match one of the store's trusted identities;
every certificate on the path must be within its validity period."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from dockyard.services.trust.formats.common import Malformed
from dockyard.services.trust.model import SignatureState, TrustedCertificate


@dataclass(frozen=True)
class ChainVerdict:
    state: SignatureState
    message: str
    trusted: TrustedCertificate | None = None
    expires_at: float | None = None


def load_chain(ders: list[bytes]) -> list[x509.Certificate]:
    if not ders:
        raise Malformed("the envelope carries no certificate chain")
    try:
        chain = [x509.load_der_x509_certificate(der) for der in ders]
    except ValueError:
        raise Malformed("a certificate of the chain is not DER X.509") from None
    _check_leaf(chain[0])
    for child, parent in itertools.pairwise(chain):
        if not _issued_by(child, parent):
            raise Malformed(f"{subject(child)} is not issued by the next certificate, {subject(parent)}")
        if not _is_ca(parent):
            raise Malformed(f"{subject(parent)} issues a certificate but is not a CA")
    return chain


def check_trust_certificate(pem: str) -> str:
    """For the API that stores trust material: the certificate's subject, or ValueError when it is not
    one PEM X.509 CA certificate (a trust store anchors chains, so it must be able to issue)."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise ValueError("not a PEM X.509 certificate") from None
    if not _is_ca(cert):
        raise ValueError(f"{subject(cert)} is not a CA certificate (basicConstraints CA:TRUE)")
    return subject(cert)


def check_identity(identity: str) -> None:
    """ValueError unless `identity` is `*` or a list of RDNs (`x509.subject: C=US, ST=WA, O=acme`)."""
    if identity.strip() != "*" and not _parse_identity(identity):
        raise ValueError(f"{identity!r} is not an X.509 subject such as 'x509.subject: C=US, ST=WA, O=acme'")


def subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def evaluate(chain: list[x509.Certificate], stores: tuple[TrustedCertificate, ...], now: float) -> ChainVerdict:
    """How a well-formed chain (see `load_chain`) stands against the trust stores at `now`."""
    leaf = chain[0]
    anchored: list[tuple[TrustedCertificate, list[x509.Certificate]]] = []
    for store in stores:
        try:
            anchor = x509.load_pem_x509_certificate(store.certificate_pem.encode())
        except ValueError:
            continue
        path = _path_to(chain, anchor)
        if path is not None:
            anchored.append((store, path))
    if not anchored:
        return ChainVerdict(SignatureState.UNTRUSTED, f"the chain of {subject(leaf)} leads to no trusted certificate")
    matching = [(store, path) for store, path in anchored if identity_matches(store.identities, leaf.subject)]
    if not matching:
        names = ", ".join(repr(store.name) for store, _ in anchored)
        return ChainVerdict(
            SignatureState.UNTRUSTED, f"{subject(leaf)} is not a trusted identity of trust store {names}"
        )
    store, path = matching[0]
    for cert in path:
        if cert.not_valid_after_utc.timestamp() < now:
            return ChainVerdict(
                SignatureState.EXPIRED, f"certificate {subject(cert)} expired at {cert.not_valid_after_utc}", store
            )
        if cert.not_valid_before_utc.timestamp() > now:
            return ChainVerdict(
                SignatureState.INVALID, f"certificate {subject(cert)} is not valid before {cert.not_valid_before_utc}"
            )
    expires = min(cert.not_valid_after_utc.timestamp() for cert in path)
    return ChainVerdict(SignatureState.VERIFIED, f"chains to trust store {store.name!r}", store, expires)


def identity_matches(identities: tuple[str, ...], name: x509.Name) -> bool:
    """A trusted identity (`x509.subject: C=US, ST=WA, O=acme`, the prefix optional) matches when every
    attribute it lists has that value in the subject (a partial list is allowed); none, or `*`, is any."""
    if not identities or "*" in identities:
        return True
    have = {(attr.rfc4514_attribute_name.upper(), str(attr.value)) for attr in name}
    return any(want and want <= have for want in map(_parse_identity, identities))


def _parse_identity(identity: str) -> set[tuple[str, str]]:
    text = identity.strip()
    if text.lower().startswith("x509.subject:"):
        text = text[len("x509.subject:") :]
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char in ",;":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    found = set()
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            return set()
        found.add((key.strip().upper(), value.strip()))
    return found


def _path_to(chain: list[x509.Certificate], anchor: x509.Certificate) -> list[x509.Certificate] | None:
    """The chain up to the trusted `anchor` (which is in the chain, or issued its last certificate)."""
    print_ = anchor.fingerprint(hashes.SHA256())
    for index, cert in enumerate(chain):
        if cert.fingerprint(hashes.SHA256()) == print_:
            return chain[: index + 1]
    if _is_ca(anchor) and _issued_by(chain[-1], anchor):
        return [*chain, anchor]
    return None


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_leaf(leaf: x509.Certificate) -> None:
    """signature-specification.md, "Certificate Requirements": a code-signing end-entity certificate."""
    try:
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise Malformed(f"the signing certificate {subject(leaf)} is a CA")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise Malformed(f"the signing certificate {subject(leaf)} may not sign (keyUsage)")
    except x509.ExtensionNotFound:
        raise Malformed(f"the signing certificate {subject(leaf)} has no keyUsage") from None
    try:
        purposes = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CODE_SIGNING not in purposes:
            raise Malformed(f"the signing certificate {subject(leaf)} is not for code signing (extendedKeyUsage)")
    except x509.ExtensionNotFound:
        pass
