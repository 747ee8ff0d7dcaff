"""Property-based: random headers, query values and JSON thrown at /v2 and /api/v1 never get a
5xx, and a refused request changes nothing. Derandomized with modest example counts, so the suite
stays fast and CI cannot fail by chance; on both databases (PostgreSQL refuses NUL in text)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dockyard.oci import mediatypes as mt
from tests.api.conftest import Registry
from tests.api.test_bad_input import snapshot

FUZZ = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Header values as HTTP carries them (latin-1, no CR/LF), with the shapes parsers care about.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
digits = st.one_of(st.integers(0, 2**70).map(str), st.just("9" * 5000), st.just("0" * 4999 + "1"))
range_header = st.one_of(
    header_text,
    st.builds(lambda a, b: f"bytes={a}-{b}", st.one_of(st.just(""), digits), st.one_of(st.just(""), digits)),
)
content_range = st.one_of(header_text, st.builds(lambda a, b: f"{a}-{b}", digits, digits))
# Query values: any text (httpx percent-encodes it), NUL and newlines included, and long numbers.
query_text = st.one_of(st.text(max_size=30), digits, st.sampled_from(["-1", "\x00", "a\n", "1e309", "nan"]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=15,
)


def _assert_not_5xx(r: Any) -> None:
    assert r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text[:300])


# --- /v2 ------------------------------------------------------------------------------------------
@FUZZ
@given(range_value=range_header, n=query_text, last=query_text)
@example(range_value="bytes=-" + "9" * 5000, n="9" * 23, last="")  # the cases the issue reported
def test_registry_reads_never_5xx(registry: Registry, range_value: str, n: str, last: str) -> None:
    if "p/a" not in registry.services.catalog.repositories().items:
        registry.put_manifest("p/a", "v1", registry.image("p/a", [b"0123456789"]))
    layer = json.loads(registry.request("GET", "/v2/p/a/manifests/v1").content)["layers"][0]["digest"]
    r = registry.request("GET", f"/v2/p/a/blobs/{layer}", headers={"Range": range_value.encode("latin-1")})
    _assert_not_5xx(r)
    assert r.status_code in (200, 206, 416)
    for url in ("/v2/p/a/tags/list", "/v2/_catalog"):
        r = registry.request("GET", url, params={"n": n, "last": last})
        _assert_not_5xx(r)
        assert r.status_code in (200, 400)


@FUZZ
@given(
    field=st.sampled_from(["mediaType", "schemaVersion", "config", "layers", "annotations", "subject", "x"]),
    where=st.sampled_from(["document", "layer", "config"]),
    value=json_values,
    content_type=st.sampled_from([mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, "text/plain", ""]),
)
@example(field="schemaVersion", where="layer", value=999, content_type=mt.OCI_MANIFEST)  # a lying size
@example(field="x", where="document", value=None, content_type="text/plain")  # the wrong Content-Type
def test_random_manifests_are_refused_cleanly(
    registry: Registry, field: str, where: str, value: Any, content_type: str
) -> None:
    doc = json.loads(registry.image("p/a", [b"layer"]))
    if where == "document":
        doc[field] = value
    else:  # a descriptor's field: size, digest, mediaType, or something else
        target = doc["layers"][0] if where == "layer" else doc["config"]
        target[{"mediaType": "mediaType", "schemaVersion": "size", "config": "digest"}.get(field, field)] = value
    before = snapshot(registry)
    headers = {"Content-Type": content_type} if content_type else {}
    r = registry.request("PUT", "/v2/p/a/manifests/t", content=json.dumps(doc).encode(), headers=headers)
    _assert_not_5xx(r)
    if r.status_code >= 400:
        assert r.json()["errors"][0]["code"] in {"MANIFEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "SIZE_INVALID"}
        assert snapshot(registry) == before
        return
    assert r.status_code == 201
    # What was accepted tells the truth: its declared type, and every descriptor's size.
    assert content_type in mt.MANIFESTS and doc.get("mediaType") in (None, content_type)
    for descriptor in [doc["config"], *doc["layers"]]:
        head = registry.request("HEAD", f"/v2/p/a/blobs/{descriptor['digest']}")
        assert head.status_code == 200 and int(head.headers["content-length"]) == descriptor["size"]


@FUZZ
@given(header=content_range)
def test_random_content_ranges_are_refused_cleanly(registry: Registry, header: str) -> None:
    location = registry.request("POST", "/v2/p/a/blobs/uploads/").headers["location"]
    before = snapshot(registry)
    r = registry.request("PATCH", location, content=b"abc", headers={"Content-Range": header.encode("latin-1")})
    _assert_not_5xx(r)
    if r.status_code >= 400:
        assert r.status_code in (400, 416)
        assert snapshot(registry) == before
        assert registry.request("GET", location).headers["range"] == "0-0"


# --- /api/v1 --------------------------------------------------------------------------------------
WRITES = [
    ("POST", "/api/v1/projects"),
    ("PATCH", "/api/v1/projects/team"),
    ("PATCH", "/api/v1/projects/team/scan-policy"),
    ("PUT", "/api/v1/projects/team/quota"),
    ("PUT", "/api/v1/projects/team/retention"),
    ("POST", "/api/v1/projects/team/immutable-tags"),
    ("PUT", "/api/v1/projects/team/members/user/admin"),
    ("POST", "/api/v1/robots"),
    ("POST", "/api/v1/users"),
    ("PATCH", "/api/v1/users/admin"),
    ("POST", "/api/v1/me/tokens"),
]


@FUZZ
@given(target=st.sampled_from(WRITES), body=json_values, raw=st.booleans())
@example(target=("PATCH", "/api/v1/projects/team/scan-policy"), body={"block_unscanned": None}, raw=False)
@example(target=("PUT", "/api/v1/projects/team/quota"), body={"quota_bytes": 10**30}, raw=False)
def test_random_management_bodies_are_refused_cleanly(
    registry: Registry, target: tuple[str, str], body: Any, raw: bool
) -> None:
    if registry.request("GET", "/api/v1/projects/team").status_code == 404:
        assert registry.request("POST", "/api/v1/projects", json={"name": "team"}).status_code == 201
    method, url = target
    before = snapshot(registry)
    # Sometimes the body is not even JSON: bytes of the JSON text cut short.
    content = json.dumps(body).encode()
    r = registry.request(
        method,
        url,
        content=content[: len(content) // 2] if raw else content,
        headers={"Content-Type": "application/json"},
    )
    _assert_not_5xx(r)
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == r.status_code
        assert snapshot(registry) == before


@FUZZ
@given(values=st.dictionaries(st.sampled_from(["since", "until", "limit", "before", "actor", "project"]), query_text))
def test_random_management_queries_never_5xx(registry: Registry, values: dict[str, str]) -> None:
    for url in ("/api/v1/audit", "/api/v1/robots", "/api/v1/packages/images"):
        r = registry.request("GET", url, params=values)
        _assert_not_5xx(r)
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json"


@FUZZ
@given(segment=query_text)
def test_random_path_segments_never_5xx(registry: Registry, segment: str) -> None:
    from urllib.parse import quote

    s = quote(segment, safe="")
    for url in (f"/api/v1/projects/{s}", f"/api/v1/users/{s}", f"/api/v1/robots/{s}", f"/v2/p/{s}/tags/list"):
        _assert_not_5xx(registry.request("GET", url))
    _assert_not_5xx(registry.request("GET", f"/v2/p/a/manifests/{s}"))
