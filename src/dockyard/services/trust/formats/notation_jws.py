"""The Notary Project JWS envelope (specs/signature-envelope-jws.md): flattened JWS JSON
serialization; protected header with `alg`, `cty`, `crit` and the signed attributes (RFC 3339
times); the certificate chain in the unprotected `x5c` (standard base64 DER, leaf first)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dockyard.services.trust.formats import keys
from dockyard.services.trust.formats.common import Malformed, parse_json
from dockyard.services.trust.formats.notation_envelope import (
    AUTHENTIC_SIGNING_TIME,
    EXPIRY,
    PAYLOAD_TYPE,
    SIGNING_SCHEME,
    SIGNING_TIME,
    Envelope,
)

ALGS = frozenset({"PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
FIELDS = frozenset({"payload", "protected", "header", "signature"})


def read(data: bytes) -> Envelope:
    document = parse_json(data, "JWS envelope")
    if set(document) != FIELDS:
        raise Malformed(f"a JWS envelope has exactly the fields {', '.join(sorted(FIELDS))}")
    protected_b64, payload_b64 = document["protected"], document["payload"]
    if not isinstance(protected_b64, str) or not isinstance(payload_b64, str):
        raise Malformed("protected and payload must be base64url strings")
    protected = parse_json(keys.b64url_decode(protected_b64), "JWS protected header")
    alg = protected.get("alg")
    if alg not in ALGS:
        raise Malformed(f"alg {alg!r} is not allowed")
    if protected.get("cty") != PAYLOAD_TYPE:
        raise Malformed(f"cty {protected.get('cty')!r} is not {PAYLOAD_TYPE}")
    critical = protected.get("crit")
    if not isinstance(critical, list) or not all(isinstance(name, str) for name in critical):
        raise Malformed("crit must be a list of header names")
    headers: dict[str, Any] = {SIGNING_SCHEME: protected.get(SIGNING_SCHEME)}
    for name in (SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY):
        if name in protected:
            headers[name] = _time(protected[name], name)
    unprotected = document["header"]
    chain = unprotected.get("x5c") if isinstance(unprotected, dict) else None
    if not isinstance(chain, list) or not chain:
        raise Malformed("the unprotected header has no x5c chain")
    return Envelope(
        alg=str(alg),
        signed=f"{protected_b64}.{payload_b64}".encode("ascii", "replace"),
        signature=keys.b64url_decode(document["signature"]),
        payload=keys.b64url_decode(payload_b64),
        chain=[keys.b64decode(cert) for cert in chain],
        headers={name: value for name, value in headers.items() if value is not None},
        critical=tuple(critical),
    )


def _time(value: object, name: str) -> float:
    if not isinstance(value, str):
        raise Malformed(f"{name} is not an RFC 3339 time")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Malformed(f"{name} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise Malformed(f"{name} has no time zone")
    return parsed.timestamp()
