"""The Notary Project COSE envelope (specs/signature-envelope-cose.md): a COSE_Sign1_Tagged (tag 18)
of [protected bstr, unprotected map, payload bstr, signature bstr]; protected labels 1 (alg), 2
(crit), 3 (content type) and the signed attributes as epoch times (tag 1); the chain in label 33
(x5chain); the signature over the CBOR Sig_structure ["Signature1", protected, h'', payload]."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import cbor2

from dockyard.services.trust.formats.common import Malformed
from dockyard.services.trust.formats.notation_envelope import (
    AUTHENTIC_SIGNING_TIME,
    EXPIRY,
    PAYLOAD_TYPE,
    SIGNING_SCHEME,
    SIGNING_TIME,
    Envelope,
)

ALGS = {-37: "PS256", -38: "PS384", -39: "PS512", -7: "ES256", -35: "ES384", -36: "ES512"}
ALG, CRIT, CONTENT_TYPE, X5CHAIN = 1, 2, 3, 33


def read(data: bytes) -> Envelope:
    try:
        message = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError):
        raise Malformed("the COSE envelope is not CBOR") from None
    if not isinstance(message, cbor2.CBORTag) or message.tag != 18:
        raise Malformed("the envelope is not a COSE_Sign1_Tagged message")
    parts = message.value
    # cbor2 decodes the contents of a tag as immutable values (tuples, frozendicts).
    if not isinstance(parts, list | tuple) or len(parts) != 4:
        raise Malformed("COSE_Sign1 has four elements")
    protected_raw, unprotected, payload, signature = parts
    if not isinstance(protected_raw, bytes) or not isinstance(unprotected, Mapping):
        raise Malformed("COSE_Sign1 headers are malformed")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise Malformed("COSE_Sign1 payload and signature must be byte strings (detached payloads are not used)")
    try:
        protected = cbor2.loads(protected_raw)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError):
        raise Malformed("the protected header is not CBOR") from None
    if not isinstance(protected, Mapping):
        raise Malformed("the protected header is not a map")
    alg = ALGS.get(protected.get(ALG))  # type: ignore[arg-type]
    if alg is None:
        raise Malformed(f"alg {protected.get(ALG)!r} is not allowed")
    if protected.get(CONTENT_TYPE) != PAYLOAD_TYPE:
        raise Malformed(f"content type {protected.get(CONTENT_TYPE)!r} is not {PAYLOAD_TYPE}")
    critical = protected.get(CRIT)
    if not isinstance(critical, list | tuple):
        raise Malformed("crit must be a list")
    headers: dict[str, Any] = {SIGNING_SCHEME: protected.get(SIGNING_SCHEME)}
    for name in (SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY):
        if name in protected:
            headers[name] = _time(protected[name], name)
    chain = unprotected.get(X5CHAIN, protected.get(X5CHAIN))
    if isinstance(chain, bytes):
        chain = [chain]
    if not isinstance(chain, list | tuple) or not chain or not all(isinstance(cert, bytes) for cert in chain):
        raise Malformed("the envelope has no x5chain")
    signed = cbor2.dumps(["Signature1", protected_raw, b"", payload])
    return Envelope(
        alg=alg,
        signed=signed,
        signature=signature,
        payload=payload,
        chain=list(chain),
        headers={name: value for name, value in headers.items() if value is not None},
        critical=tuple(str(name) for name in critical),
    )


def _time(value: object, name: str) -> float:
    # cbor2 turns tag 1 (epoch time) into an aware datetime.
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.timestamp()
    raise Malformed(f"{name} is not a CBOR epoch date/time (tag 1)")
