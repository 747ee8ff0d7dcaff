"""Signature trust: trust material per project and system-wide, trust policies, and the signatures
found for an image with their verdicts (docs/trust.md).

No `from __future__ import annotations`: the routes of both scopes are made in one function, and
FastAPI reads their annotations, which must name the local `Scope` dependency, as objects."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from dockyard.api.management.deps import Caller, ServicesDep, project_permission, require_system, signed_in
from dockyard.api.management.models import Body, Keep, problems
from dockyard.oci.names import project_of
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.permissions import Permission, SystemPermission
from dockyard.services.errors import InvalidInput
from dockyard.services.trust import pem
from dockyard.services.trust.material import (
    MAX_IDENTITIES,
    MAX_TAG_PATTERNS,
    NAME_PATTERN,
    CertificateInfo,
    KeyInfo,
    TrustPolicy,
)
from dockyard.wiring import Services

router = APIRouter(tags=["trust"])


def _checked(check: object) -> AfterValidator:
    """Validate with the service's own check, so bad material is a 422 naming what is accepted."""

    def run(value: str) -> str:
        try:
            check(value)  # type: ignore[operator]
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return value

    return AfterValidator(run)


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=128)]
PublicKeyPem = Annotated[str, StringConstraints(max_length=pem.MAX_PEM_BYTES), _checked(pem.check_public_key)]
CertificatePem = Annotated[str, StringConstraints(max_length=pem.MAX_PEM_BYTES), _checked(pem.check_certificate)]
# A trusted identity: `x509.subject: C=US, O=acme` (or `*`), as the Notary Project's trust policy.
SubjectName = Annotated[str, StringConstraints(min_length=1, max_length=1024), _checked(pem.check_identity)]
TagPattern = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-*?\[\]!]{1,128}$")]


class KeyIn(Body):
    name: Name = Field(examples=["ci"])
    public_key: PublicKeyPem = Field(description="PEM public key: ECDSA P-256/P-384, RSA ≥ 2048 bits or Ed25519.")


class KeyOut(BaseModel):
    name: str
    scope: str = Field(description='The project, or "system" for material every project trusts.')
    algorithm: str
    fingerprint: str
    public_key: str
    created_by: str | None
    created_at: float


class CertificateIn(Body):
    name: Name = Field(examples=["acme-root"])
    certificate: CertificatePem = Field(description="PEM X.509 certificate: a root or intermediate CA.")
    identities: list[SubjectName] = Field(
        default_factory=list,
        max_length=MAX_IDENTITIES,
        description="X.509 subjects of signing certificates trusted under it, as `x509.subject: C=US, O=acme` "
        "(empty, or `*`: any that chains to it).",
    )


class CertificateOut(BaseModel):
    name: str
    scope: str
    subject: str
    fingerprint: str
    not_after: float
    identities: list[str]
    certificate: str
    created_by: str | None
    created_at: float


class TrustPolicyOut(BaseModel):
    require_signature: bool = Field(description="Refuse pulls of images without a verified signature.")
    signed_tags: list[str] = Field(description="Tag patterns that may only point at verified-signed manifests.")


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class TrustPolicyPatch(Body):
    require_signature: bool = Keep()
    signed_tags: list[TagPattern] = Field(
        None,  # type: ignore[arg-type]  # omitted: kept (exclude_unset); null is refused by validation
        max_length=MAX_TAG_PATTERNS,
        description="Tag globs such as v* or release-*; omit to keep the current ones.",
        json_schema_extra=_no_default,
    )


class SignatureOut(BaseModel):
    digest: str = Field(description="The signature manifest's digest.")
    format: str = Field(description="cosign, sigstore-bundle or notation")
    signer: str | None = Field(description="The trusted key's name, or the signing certificate's subject.")
    state: str = Field(description="verified, invalid, untrusted, expired, or pending (not verified yet)")
    message: str
    verified_at: float | None
    expires_at: float | None = None


def _key_out(k: KeyInfo) -> KeyOut:
    return KeyOut(
        name=k.name,
        scope=k.project or "system",
        algorithm=k.algorithm,
        fingerprint=k.fingerprint,
        public_key=k.public_key,
        created_by=k.created_by,
        created_at=k.created_at,
    )


def _cert_out(c: CertificateInfo) -> CertificateOut:
    return CertificateOut(
        name=c.name,
        scope=c.project or "system",
        subject=c.subject,
        fingerprint=c.fingerprint,
        not_after=c.not_after,
        identities=list(c.identities),
        certificate=c.certificate,
        created_by=c.created_by,
        created_at=c.created_at,
    )


def _policy_out(p: TrustPolicy) -> TrustPolicyOut:
    return TrustPolicyOut(require_signature=p.require_signature, signed_tags=list(p.signed_tags))


# --- who may ---------------------------------------------------------------------------------------
def may_manage(svc: Services, caller: Identity, project: str | None) -> None:
    if project is None:
        require_system(svc, caller, SystemPermission.MANAGE_TRUST)
    else:
        project_permission(svc, caller, project, Permission.TRUST_MANAGE)


def may_read(svc: Services, caller: Identity, project: str | None) -> None:
    # Public keys and CA certificates are no secret: whoever sees a project may see what it trusts,
    # and any signed-in user what every project trusts.
    if project is None:
        signed_in(caller)
    else:
        project_permission(svc, caller, project, Permission.PROJECT_READ)


# --- keys and certificates, for a project (`/projects/{name}/trust`) and system-wide (`/system/trust`)
def _project_scope(name: str) -> str | None:
    return name


def _system_scope() -> str | None:
    return None


# The operations, for a scope (a project, or None: system-wide); the routes below and the web UI call them.
def add_key_in(scope: str | None, body: KeyIn, svc: Services, caller: Identity) -> KeyOut:
    may_manage(svc, caller, scope)
    return _key_out(svc.trust.add_key(scope, body.name, body.public_key))


def keys_in(scope: str | None, svc: Services, caller: Identity) -> list[KeyOut]:
    may_read(svc, caller, scope)
    return [_key_out(k) for k in svc.trust.keys(scope)]


def delete_key_in(scope: str | None, key: str, svc: Services, caller: Identity) -> None:
    may_manage(svc, caller, scope)
    svc.trust.delete_key(scope, key)


def add_certificate_in(scope: str | None, body: CertificateIn, svc: Services, caller: Identity) -> CertificateOut:
    may_manage(svc, caller, scope)
    return _cert_out(svc.trust.add_certificate(scope, body.name, body.certificate, list(body.identities)))


def certificates_in(scope: str | None, svc: Services, caller: Identity) -> list[CertificateOut]:
    may_read(svc, caller, scope)
    return [_cert_out(c) for c in svc.trust.certificates(scope)]


def delete_certificate_in(scope: str | None, cert: str, svc: Services, caller: Identity) -> None:
    may_manage(svc, caller, scope)
    svc.trust.delete_certificate(scope, cert)


def _routes(prefix: str, scope_of: Callable[..., str | None]) -> None:
    Scope = Annotated[str | None, Depends(scope_of)]

    def add_key(body: KeyIn, svc: ServicesDep, caller: Caller, scope: Scope) -> KeyOut:
        return add_key_in(scope, body, svc, caller)

    def list_keys(svc: ServicesDep, caller: Caller, scope: Scope) -> list[KeyOut]:
        return keys_in(scope, svc, caller)

    def get_key(key: str, svc: ServicesDep, caller: Caller, scope: Scope) -> KeyOut:
        may_read(svc, caller, scope)
        return _key_out(svc.trust.key(scope, key))

    def delete_key(key: str, svc: ServicesDep, caller: Caller, scope: Scope) -> Response:
        delete_key_in(scope, key, svc, caller)
        return Response(status_code=204)

    def add_certificate(body: CertificateIn, svc: ServicesDep, caller: Caller, scope: Scope) -> CertificateOut:
        return add_certificate_in(scope, body, svc, caller)

    def list_certificates(svc: ServicesDep, caller: Caller, scope: Scope) -> list[CertificateOut]:
        return certificates_in(scope, svc, caller)

    def get_certificate(cert: str, svc: ServicesDep, caller: Caller, scope: Scope) -> CertificateOut:
        may_read(svc, caller, scope)
        return _cert_out(svc.trust.certificate(scope, cert))

    def delete_certificate(cert: str, svc: ServicesDep, caller: Caller, scope: Scope) -> Response:
        delete_certificate_in(scope, cert, svc, caller)
        return Response(status_code=204)

    where = "the project" if scope_of is _project_scope else "every project (system-wide)"
    r = router
    r.post(
        f"{prefix}/keys",
        response_model=KeyOut,
        status_code=201,
        responses=problems(409),
        summary=f"Trust a cosign public key in {where}",
    )(add_key)
    r.get(f"{prefix}/keys", response_model=list[KeyOut], summary=f"Keys trusted in {where}")(list_keys)
    r.get(f"{prefix}/keys/{{key}}", response_model=KeyOut)(get_key)
    r.delete(f"{prefix}/keys/{{key}}", status_code=204, summary="Stop trusting a key")(delete_key)
    r.post(
        f"{prefix}/certificates",
        response_model=CertificateOut,
        status_code=201,
        responses=problems(409),
        summary=f"Add a Notary Project trust-store certificate to {where}",
    )(add_certificate)
    r.get(f"{prefix}/certificates", response_model=list[CertificateOut], summary=f"Certificates trusted in {where}")(
        list_certificates
    )
    r.get(f"{prefix}/certificates/{{cert}}", response_model=CertificateOut)(get_certificate)
    r.delete(f"{prefix}/certificates/{{cert}}", status_code=204, summary="Remove a certificate")(delete_certificate)


_routes("/projects/{name}/trust", _project_scope)
_routes("/system/trust", _system_scope)


# --- policy ----------------------------------------------------------------------------------------
@router.get("/projects/{name}/trust-policy", response_model=TrustPolicyOut)
def get_policy(name: str, svc: ServicesDep, caller: Caller) -> TrustPolicyOut:
    project_permission(svc, caller, name, Permission.PROJECT_READ)
    return _policy_out(svc.trust.policy(name))


@router.patch("/projects/{name}/trust-policy", response_model=TrustPolicyOut, summary="Change the signature rules")
def set_policy(name: str, body: TrustPolicyPatch, svc: ServicesDep, caller: Caller) -> TrustPolicyOut:
    project_permission(svc, caller, name, Permission.TRUST_MANAGE)
    changes = body.model_dump(exclude_unset=True)
    policy = svc.trust.set_policy(name, changes.get("require_signature"), changes.get("signed_tags"))
    svc.gates.forget(name)
    return _policy_out(policy)


# --- an image's signatures -------------------------------------------------------------------------
@router.get(
    "/repositories/{repository:path}/manifests/{reference}/signatures",
    response_model=list[SignatureOut],
    summary="The signatures of an image and their verdicts",
)
def list_signatures(repository: str, reference: str, svc: ServicesDep, caller: Caller) -> list[SignatureOut]:
    project_permission(svc, caller, project_of(repository), Permission.PULL)
    manifest = svc.manifests.get(repository, reference)
    return [
        SignatureOut(
            digest=i.digest,
            format=i.format,
            signer=i.signer,
            state=i.state,
            message=i.message,
            verified_at=i.verified_at,
            expires_at=i.expires_at,
        )
        for i in svc.signatures.of(repository, manifest.digest)
    ]
