"""A small OCI Distribution client for the command line (`dockyard sign`, `dockyard verify`): image
references, manifests and blobs by digest, monolithic blob uploads, and the authentication registries
ask for (Basic, or the Bearer token dance of the Docker token specification). TLS like skopeo's
`--cert-dir` (CA certificates `*.crt`, a client certificate `*.cert` with its `*.key`), `--insecure`
(no certificate checks) and `--plain-http`."""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin

import httpx

from dockyard.oci.errors import CodedError
from dockyard.oci.names import validate_name, validate_tag

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
DOCKER_HUB = "index.docker.io"
# What this client hashes with. The grammar of names and tags is oci.names'.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class RegistryError(Exception):
    """A registry refused or failed a request; the message says which and why."""


@dataclass(frozen=True)
class Reference:
    """`registry/repository[:tag][@digest]`, read as docker does (no registry: Docker Hub)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        rest, at, named = text.partition("@")
        digest = named if at else None
        if digest is not None and not _DIGEST.fullmatch(digest):
            raise ValueError(f"{digest!r} is not a sha256 digest")
        tag = None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            rest, tag = rest.rsplit(":", 1)
            try:
                validate_tag(tag)
            except CodedError:
                raise ValueError(f"{tag!r} is not a valid tag") from None
        first, _, remainder = rest.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, remainder
        else:
            registry, repository = DOCKER_HUB, rest
        if registry in ("docker.io", "registry-1.docker.io"):
            registry = DOCKER_HUB
        if registry == DOCKER_HUB and "/" not in repository:
            repository = f"library/{repository}"
        try:
            validate_name(repository)
        except CodedError:
            raise ValueError(f"{text!r} is not an image reference") from None
        return cls(registry, repository, tag if tag or digest else "latest", digest)

    @property
    def name(self) -> str:
        """`registry/repository`: what cosign puts in a payload's docker-reference."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True)
class Manifest:
    media_type: str
    data: bytes
    digest: str


@dataclass(frozen=True)
class Connection:
    """How to reach a registry: credentials and transport options."""

    username: str | None = None
    password: str | None = None
    plain_http: bool = False
    insecure: bool = False  # TLS without certificate checks
    cert_dir: Path | None = None
    timeout: float = 60.0


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryClient:
    """One registry (host[:port]); tokens are kept per scope for the client's life."""

    def __init__(self, registry: str, connection: Connection | None = None) -> None:
        self.connection = connection or Connection()
        host = "registry-1.docker.io" if registry == DOCKER_HUB else registry
        self.base = f"{'http' if self.connection.plain_http else 'https'}://{host}"
        self._http = httpx.Client(timeout=self.connection.timeout, verify=self._verify(), follow_redirects=True)
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- manifests and blobs ----------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest under a tag or digest, or None when there is none. A manifest fetched by digest
        is checked against it."""
        response = self._request(
            "GET", f"/v2/{repository}/manifests/{quote(reference)}", repository, "pull",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )  # fmt: skip
        if response.status_code == 404:
            return None
        self._raise_for(response, f"manifest {repository}:{reference}")
        data = response.content
        digest = sha256(data)
        if _DIGEST.fullmatch(reference) and digest != reference:
            raise RegistryError(f"the registry answered {reference} with content of digest {digest}")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return Manifest(media_type, data, digest)

    def get_blob(self, repository: str, digest: str, limit: int = 4 << 20) -> bytes:
        response = self._request("GET", f"/v2/{repository}/blobs/{digest}", repository, "pull")
        self._raise_for(response, f"blob {digest}")
        data = response.content
        if len(data) > limit:
            raise RegistryError(f"blob {digest} is larger than {limit} bytes")
        if sha256(data) != digest:
            raise RegistryError(f"blob {digest} does not match its digest")
        return data

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self._request("HEAD", f"/v2/{repository}/blobs/{digest}", repository, "pull")
        return response.status_code == 200

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload `data` (monolithic: POST then PUT) unless the registry has it; its digest."""
        digest = sha256(data)
        if self.has_blob(repository, digest):
            return digest
        started = self._request("POST", f"/v2/{repository}/blobs/uploads/", repository, "pull,push")
        self._raise_for(started, f"upload to {repository}", expect=(202,))
        location = started.headers.get("location")
        if not location:
            raise RegistryError("the registry started an upload without a Location")
        url = urljoin(self.base + "/", location)
        response = self._request(
            "PUT", url, repository, "pull,push", params={"digest": digest}, content=data,
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        self._raise_for(response, f"upload of {digest}", expect=(201,))
        return digest

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        response = self._request(
            "PUT", f"/v2/{repository}/manifests/{quote(reference)}", repository, "pull,push", content=data,
            headers={"Content-Type": media_type},
        )  # fmt: skip
        self._raise_for(response, f"manifest {repository}:{reference}", expect=(201,))
        return sha256(data)

    # --- transport and authentication -------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        repository: str,
        actions: str,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        url = path if path.startswith(("http://", "https://")) else self.base + path
        scope = f"repository:{repository}:{actions}"
        sent = dict(headers or {})
        if scope in self._tokens:
            sent["Authorization"] = self._tokens[scope]
        try:
            response = self._http.request(method, url, headers=sent, params=params, content=content)
            if response.status_code != 401:
                return response
            sent["Authorization"] = self._tokens[scope] = self._authorize(response, scope)
            return self._http.request(method, url, headers=sent, params=params, content=content)
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach {self.base}: {exc}") from None

    def _authorize(self, response: httpx.Response, scope: str) -> str:
        challenge = response.headers.get("www-authenticate", "")
        scheme, _, params = challenge.partition(" ")
        basic = self._basic()
        if scheme.lower() == "basic":
            if basic is None:
                raise RegistryError(f"{self.base} wants a username and password")
            return f"Basic {basic}"
        if scheme.lower() != "bearer":
            raise RegistryError(f"{self.base} asks for unsupported authentication {scheme!r}")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if "realm" not in fields:
            raise RegistryError(f"{self.base} sent a Bearer challenge without a realm")
        query = {"scope": fields.get("scope", scope)}
        if "service" in fields:
            query["service"] = fields["service"]
        headers = {"Authorization": f"Basic {basic}"} if basic else {}
        answer = self._http.get(fields["realm"], params=query, headers=headers)
        if answer.status_code != 200:
            raise RegistryError(f"the token endpoint refused ({answer.status_code}): check the credentials")
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
            raise RegistryError("the token endpoint answered without a token")
        return f"Bearer {token}"

    def _basic(self) -> str | None:
        if self.connection.username is None:
            return None
        pair = f"{self.connection.username}:{self.connection.password or ''}".encode()
        return base64.b64encode(pair).decode()

    def _verify(self) -> ssl.SSLContext | bool:
        if self.connection.insecure:
            return False
        folder = self.connection.cert_dir
        if folder is None:
            return True
        context = ssl.create_default_context()
        for ca in sorted(folder.glob("*.crt")):
            context.load_verify_locations(cafile=str(ca))
        for cert in sorted(folder.glob("*.cert")):
            key = cert.with_suffix(".key")
            context.load_cert_chain(str(cert), str(key) if key.exists() else None)
        return context

    @staticmethod
    def _raise_for(response: httpx.Response, what: str, expect: tuple[int, ...] = (200,)) -> None:
        if response.status_code in expect:
            return
        detail = ""
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
        except ValueError:
            detail = response.text[:200]
        raise RegistryError(f"{what}: HTTP {response.status_code} {detail}".rstrip())
