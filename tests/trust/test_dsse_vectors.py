"""DSSE's published test vectors (secure-systems-lab/dsse testvectors/vectors.json): the
pre-authentication encoding and the signatures over it, as the sigstore bundle verifier computes them."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from dockyard.services.trust.formats import keys
from dockyard.services.trust.formats.sigstore import pae

SEED_A = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
PUBLIC_A = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
STATEMENT = "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ=="
VECTORS = [
    (
        "single-signature",
        "application/vnd.in-toto+json",
        STATEMENT,
        "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA==",
        "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203433207b225f74797065223a22"
        "68747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d",
    ),
    (
        "url-safe-base64",
        "application/vnd.in-toto+json",
        "-_-_Pj8=",
        "P-_KHICeR7tI6S_YyejJTRtrXhcQyQ2LYPaL8h90KjC9qN8HU_svOQ6TuDOT1HIrsGW886DbWNWcCmX5twLrAw==",
        "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203520fbffbf3e3f",
    ),
    (
        "non-ascii-payload-type",
        "application/vnd.exämple+json",
        STATEMENT,
        "xmSk/ug66ysT7ayhkCIjhAq42zgZXSsEWuzUaNL7w2eGAdF/NU6/fRXPtmfN+5DNSAs5/i2lUnHjbbjPsu0tAw==",
        "445353457631203239206170706c69636174696f6e2f766e642e6578c3a46d706c652b6a736f6e203433207b225f74797065223a22"
        "68747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d",
    ),
    (
        "empty-payload",
        "application/vnd.in-toto+json",
        "",
        "gSggCAaTLTYyRH6FIDBem6meyIynsYy8RTHVzwx9tnTb7Bg/1jMWnuVgI/gffqmbsC2VX5/jHfkkDqsj7CDbDg==",
        "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203020",
    ),
]


@pytest.mark.parametrize(
    ("payload_type", "payload", "sig", "expected"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS]
)
def test_pae_and_signature_match_the_vectors(payload_type: str, payload: str, sig: str, expected: str) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEED_A)).public_key()
    assert key.public_bytes_raw().hex() == PUBLIC_A
    message = pae(payload_type, keys.b64decode_either(payload))
    assert message.hex() == expected
    assert keys.verify_any(key, keys.b64decode_either(sig), message)
    assert not keys.verify_any(key, keys.b64decode_either(sig), message + b" ")
