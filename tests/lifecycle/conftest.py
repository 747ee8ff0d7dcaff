"""Services on SQLite and PostgreSQL with a zero grace period, so the collector acts at once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.db.engine import Database
from dockyard.oci import mediatypes as mt
from dockyard.wiring import Services, build_services, prepare
from tests.api.conftest import make_settings


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def svc(tmp_path: Path, database: Database) -> Iterator[Services]:
    # Unpaced: the pace is a throughput knob (bench_gc.py measures it); these tests are about safety.
    # No tag-history hold: these collect what was untagged at once (test_tag_history_gc.py has the hold).
    settings = make_settings(tmp_path, database).model_copy(
        update={"gc_grace_seconds": 0.0, "gc_pace": 1.0, "tag_history_keep_days": 0.0}
    )
    services = build_services(settings, db=database)
    prepare(services)
    yield services


def push_blob(svc: Services, repo: str, data: bytes) -> str:
    digest = sha256(data)
    svc.uploads.monolithic(repo, digest, [data])
    return digest


def image(svc: Services, repo: str, layers: list[bytes], tag: str | None, config: bytes | None = None) -> str:
    """Push layers, config and manifest; returns the manifest digest."""
    config = config or json.dumps({"architecture": "amd64", "os": "linux", "layers": len(layers)}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": push_blob(svc, repo, config), "size": len(config)},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": push_blob(svc, repo, layer),
                "size": len(layer),
            }
            for layer in layers
        ],
    }
    body = json.dumps(doc).encode()
    digest = sha256(body)
    svc.manifests.put(repo, tag or digest, body, mt.OCI_MANIFEST)
    return digest


def index(svc: Services, repo: str, child: str, tag: str) -> str:
    """Push an OCI index of the one linux/amd64 image `child`; returns the index digest."""
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": child,
                "size": len(svc.manifests.get(repo, child).content),  # descriptors are checked
                "platform": {"os": "linux", "architecture": "amd64"},
            }
        ],
    }
    body = json.dumps(doc).encode()
    svc.manifests.put(repo, tag, body, mt.OCI_INDEX)
    return sha256(body)


def sbom_referrer(svc: Services, repo: str, subject: str) -> str:
    """Push an SPDX artifact (layer b"sbom") that refers to the image `subject`; returns its digest."""
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": {"mediaType": mt.OCI_EMPTY, "digest": push_blob(svc, repo, b"{}"), "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": push_blob(svc, repo, b"sbom"), "size": 4}],
        "subject": {
            "mediaType": mt.OCI_MANIFEST,
            "digest": subject,
            "size": len(svc.manifests.get(repo, subject).content),
        },
    }
    body = json.dumps(doc).encode()
    digest = sha256(body)
    svc.manifests.put(repo, digest, body, mt.OCI_MANIFEST)
    return digest
