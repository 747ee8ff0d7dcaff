"""Each error kind's OCI code, given once as a class keyword on the one shared base (`CodedError`)."""

from __future__ import annotations

import pytest

from dockyard.oci import errors as oci
from dockyard.services import errors as svc

CODES = {
    svc.RegistryError: "UNKNOWN",
    svc.BlobUnknown: "BLOB_UNKNOWN",
    svc.BlobUploadUnknown: "BLOB_UPLOAD_UNKNOWN",
    svc.BlobUploadInvalid: "BLOB_UPLOAD_INVALID",
    svc.RangeInvalid: "BLOB_UPLOAD_INVALID",
    svc.DigestInvalid: "DIGEST_INVALID",
    svc.ManifestBlobUnknown: "MANIFEST_BLOB_UNKNOWN",
    svc.ManifestInvalid: "MANIFEST_INVALID",
    svc.ManifestUnknown: "MANIFEST_UNKNOWN",
    svc.NameInvalid: "NAME_INVALID",
    svc.NameUnknown: "NAME_UNKNOWN",
    svc.SizeInvalid: "SIZE_INVALID",
    svc.TooLarge: "SIZE_INVALID",
    svc.TagInvalid: "TAG_INVALID",
    svc.Unauthorized: "UNAUTHORIZED",
    svc.Denied: "DENIED",
    svc.QuotaExceeded: "DENIED",
    svc.Unsupported: "UNSUPPORTED",
    svc.PaginationInvalid: "PAGINATION_NUMBER_INVALID",
    svc.RangeNotSatisfiable: "SIZE_INVALID",
    svc.TooManyRequests: "TOOMANYREQUESTS",
    svc.NotFound: "NOT_FOUND",
    svc.Conflict: "CONFLICT",
    svc.InvalidInput: "INVALID",
    oci.OCIFormatError: "INVALID",
    oci.InvalidDigest: "DIGEST_INVALID",
    oci.UnsupportedDigest: "DIGEST_INVALID",
    oci.InvalidName: "NAME_INVALID",
    oci.InvalidTag: "TAG_INVALID",
    oci.InvalidManifest: "MANIFEST_INVALID",
}


def test_every_kind_of_both_modules_is_listed() -> None:
    def kinds(cls: type) -> set[type]:
        return {cls}.union(*(kinds(sub) for sub in cls.__subclasses__()))

    here = {k for k in kinds(Exception) if k.__module__ in (svc.__name__, oci.__name__)}
    assert here - {oci.CodedError} == set(CODES)


@pytest.mark.parametrize("kind", list(CODES), ids=lambda k: k.__name__)
def test_each_kind_has_its_code(kind: type[oci.CodedError]) -> None:
    assert kind.code == CODES[kind]


def test_registry_and_oci_errors_share_one_shape() -> None:
    for kind in (svc.NameInvalid, oci.InvalidName):
        err = kind("bad name", {"name": "x"})
        assert isinstance(err, oci.CodedError)
        assert (err.message, err.detail, str(err)) == ("bad name", {"name": "x"}, "bad name")
    assert isinstance(oci.InvalidName("x"), ValueError) and not isinstance(svc.NameInvalid("x"), ValueError)
