import json

import pytest

from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.errors import InvalidManifest
from dockyard.oci.manifest import MAX_MANIFEST_BYTES, parse_manifest

CFG = {"mediaType": mt.OCI_CONFIG, "digest": str(Digest.of(b"{}")), "size": 2}
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": str(Digest.of(b"l")), "size": 1}


def doc(**extra: object) -> bytes:
    base: dict[str, object] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": CFG, "layers": [LAYER]}
    base.update(extra)
    return json.dumps(base).encode()


def test_image_manifest_references_config_and_layers() -> None:
    m = parse_manifest(doc(), mt.OCI_MANIFEST)
    assert m.media_type == mt.OCI_MANIFEST
    assert [d.digest for d in m.blob_references()] == [CFG["digest"], LAYER["digest"]]
    assert m.effective_artifact_type() == mt.OCI_CONFIG


def test_artifact_type_and_subject() -> None:
    subject = {"mediaType": mt.OCI_MANIFEST, "digest": str(Digest.of(b"s")), "size": 5}
    m = parse_manifest(doc(artifactType="application/x.sig", subject=subject), None)
    assert m.effective_artifact_type() == "application/x.sig"
    assert m.subject is not None and m.subject.digest == subject["digest"]


def test_index_children() -> None:
    child = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": str(Digest.of(b"c")),
        "size": 3,
        "platform": {"os": "linux", "architecture": "arm64"},
    }
    body = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [child]}).encode()
    m = parse_manifest(body, mt.OCI_INDEX)
    assert m.is_index and [d.digest for d in m.manifests] == [child["digest"]]
    assert m.blob_references() == []


def test_foreign_layers_need_no_bytes() -> None:
    foreign = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": str(Digest.of(b"f")),
        "size": 1,
        "urls": ["https://example.invalid/f"],
    }
    m = parse_manifest(doc(mediaType=mt.DOCKER_MANIFEST, layers=[foreign]), mt.DOCKER_MANIFEST)
    assert [d.digest for d in m.blob_references()] == [CFG["digest"]]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", mt.OCI_MANIFEST, "not valid JSON"),
        (b"[]", mt.OCI_MANIFEST, "JSON object"),
        (doc(schemaVersion=1), mt.OCI_MANIFEST, "schemaVersion"),
        (doc(), mt.OCI_INDEX, "does not match"),
        (doc(mediaType=mt.DOCKER_SCHEMA1), None, "schema 1"),
        (doc(mediaType="text/plain"), None, "unsupported"),
        (doc(config={"mediaType": mt.OCI_CONFIG, "digest": "sha256:abc", "size": 2}), None, "config"),
        (doc(layers=[{**LAYER, "size": -1}]), None, "size"),
        (doc(layers="nope"), None, "layers"),
        (doc(annotations={"a": 1}), None, "annotations"),
        (json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX}).encode(), None, "manifests list"),
    ],
)
def test_invalid_manifests_are_refused_with_a_reason(body: bytes, content_type: str | None, message: str) -> None:
    with pytest.raises(InvalidManifest, match=message):
        parse_manifest(body, content_type)


def test_oversized_manifest_is_refused() -> None:
    body = doc(annotations={"pad": "x" * MAX_MANIFEST_BYTES})
    with pytest.raises(InvalidManifest, match="limit"):
        parse_manifest(body, mt.OCI_MANIFEST)
