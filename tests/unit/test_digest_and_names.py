import hashlib

import pytest

from dockyard.oci.digest import Digest
from dockyard.oci.errors import InvalidDigest, InvalidName, InvalidTag, UnsupportedDigest
from dockyard.oci.names import project_of, validate_name, validate_tag

SHA256_EMPTY = "sha256:" + hashlib.sha256(b"").hexdigest()
SHA512_EMPTY = "sha512:" + hashlib.sha512(b"").hexdigest()


@pytest.mark.parametrize("value", [SHA256_EMPTY, SHA512_EMPTY])
def test_registered_digests_parse_and_round_trip(value: str) -> None:
    assert str(Digest.parse(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + "A" * 64,  # registered algorithms are lowercase hex
        "sha256:" + "a" * 63,
        "sha512:" + "a" * 64,
        "sha256",
        ":abc",
        "sha256:",
        "SHA256:" + "a" * 64,
        "sha256:" + "g" * 64,
    ],
)
def test_invalid_digests_are_refused(value: str) -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(value)


def test_well_formed_but_unknown_algorithm_is_unsupported() -> None:
    with pytest.raises(UnsupportedDigest):
        Digest.parse("md5:d41d8cd98f00b204e9800998ecf8427e")


def test_digest_of_bytes() -> None:
    assert str(Digest.of(b"")) == SHA256_EMPTY
    assert str(Digest.of(b"", "sha512")) == SHA512_EMPTY


@pytest.mark.parametrize("name", ["a", "library/ubuntu", "team-a/app/web", "a.b_c__d--e/f0", "x" * 255])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "a/", "/a", "a//b", "a_", "-a", "a..b", "a___b", "a/B", "x" * 256, "a b", "a/../b"]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_name(name)


@pytest.mark.parametrize("tag", ["latest", "v1.0.0", "_x", "A" * 128, "1-2_3.4"])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "A" * 129, "a/b", "a:b", "a b"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(InvalidTag):
        validate_tag(tag)


@pytest.mark.parametrize(
    ("repository", "project"), [("alpine", "alpine"), ("team/app", "team"), ("team-a/app/web", "team-a")]
)
def test_the_project_of_a_repository_is_its_first_component(repository: str, project: str) -> None:
    assert project_of(repository) == project
