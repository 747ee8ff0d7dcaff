"""Image references as Kubernetes names them, and where a workload keeps its pod spec."""

from __future__ import annotations

import pytest

from dockyard.services.admission import images_of, parse_image, registry_hosts
from dockyard.services.errors import InvalidInput

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "host", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", None, None),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
        ("registry.example.com/team/app:v1", "registry.example.com", "team/app", "v1", None),
        ("registry.example.com:5000/team/app", "registry.example.com:5000", "team/app", None, None),
        ("localhost/app:dev", "localhost", "app", "dev", None),
        (f"registry.example.com/team/app@{D}", "registry.example.com", "team/app", None, D),
        (f"registry.example.com/team/app:v1@{D}", "registry.example.com", "team/app", "v1", D),
        ("Registry.Example.com/team/app", "registry.example.com", "team/app", None, None),
    ],
)
def test_references(text: str, host: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_image(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (host, repository, tag, digest)
    assert ref.reference == (digest or tag or "latest")


@pytest.mark.parametrize(
    "text", ["", "a b", "registry.example.com/Team/app", "app:", "app@sha256:123", "x" * 2000, "r.io/app:v1:v2"]
)
def test_not_references(text: str) -> None:
    with pytest.raises(ValueError, match="not an image reference"):
        parse_image(text)


def test_pod_specs_of_each_kind() -> None:
    spec = {"initContainers": [{"image": "i"}], "containers": [{"image": "c"}, {"image": "i"}],
            "ephemeralContainers": [{"image": "e"}]}  # fmt: skip
    template = {"spec": {"template": {"spec": spec}}}
    assert images_of("", "Pod", {"spec": spec}) == ["i", "c", "e"]
    for group, kind in [("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"),
                        ("apps", "ReplicaSet"), ("batch", "Job"), ("", "ReplicationController")]:  # fmt: skip
        assert images_of(group, kind, template) == ["i", "c", "e"], kind
    assert images_of("batch", "CronJob", {"spec": {"jobTemplate": template}}) == ["i", "c", "e"]
    assert images_of("", "ConfigMap", {"data": {}}) is None
    assert images_of("apps", "Pod", {"spec": spec}) is None  # kinds are matched with their group
    assert images_of("apps", "Deployment", {"spec": {}}) == []
    with pytest.raises(InvalidInput):
        images_of("", "Pod", {"spec": {"containers": [{"image": str(i)} for i in range(300)]}})


def test_registry_hosts() -> None:
    assert registry_hosts("https://reg.example.org:8443/", ["a.example"]) == ["a.example", "reg.example.org:8443"]
    assert registry_hosts(None, []) == []
