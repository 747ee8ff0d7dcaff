"""An image in a remote registry (OCI Distribution API), read as the scanner reads local images:
manifests fetched, layers streamed from the blob endpoint, nothing written to disk.

Authorization follows the Docker token spec: a `Bearer` value is sent as it is; `Basic` credentials
are sent to the registry and, on a `WWW-Authenticate: Bearer realm=…` challenge, exchanged at the
realm for a token with pull scope.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import httpx

from dockyard.oci import mediatypes as mt
from dockyard.scan.layers import ChunkReader, Image, ImageError, ImageSource, LayerRef, platform_name

ACCEPT = ", ".join((mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST))
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RemoteImage(ImageSource):
    def __init__(
        self,
        registry_url: str,
        repository: str,
        reference: str,
        authorization: str | None = None,
        timeout: float = 60,
        client: httpx.Client | None = None,
    ) -> None:
        """`client`: the process's outbound client (wiring.http_client), shared and left open by
        close(); without one, a client of this image's own."""
        self.base = registry_url.rstrip("/")
        self.repository = repository
        self.reference = reference
        self._auth = authorization
        self._bearer = authorization if authorization and authorization.lower().startswith("bearer ") else None
        self._owned = client is None
        self.client = httpx.Client(timeout=timeout) if client is None else client

    def close(self) -> None:
        if self._owned:
            self.client.close()

    def _request(self, method: str, path: str, headers: dict[str, str] | None = None, stream: bool = False) -> Any:
        url = f"{self.base}/v2/{self.repository}/{path}"
        for attempt in range(2):
            hdrs = dict(headers or {})
            if self._bearer:
                hdrs["Authorization"] = self._bearer
            elif self._auth:
                hdrs["Authorization"] = self._auth
            req = self.client.build_request(method, url, headers=hdrs)
            resp = self.client.send(req, stream=stream, follow_redirects=True)
            if resp.status_code == 401 and attempt == 0 and self._exchange(resp):
                resp.close()
                continue
            if resp.status_code >= 400:
                body = resp.read()[:300] if stream else resp.content[:300]
                resp.close()
                raise ImageError(f"{method} {url}: HTTP {resp.status_code} {body.decode('utf-8', 'replace')}")
            return resp
        raise ImageError(f"{method} {url}: not authorized")  # pragma: no cover - loop always returns or raises

    def _exchange(self, resp: httpx.Response) -> bool:
        """Answer a Bearer challenge at its realm, with the Basic credentials we were given (if any)."""
        challenge = resp.headers.get("www-authenticate", "")
        if not challenge.lower().startswith("bearer "):
            return False
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        if "realm" not in params:
            return False
        query = {"service": params.get("service", ""), "scope": f"repository:{self.repository}:pull"}
        headers = {"Authorization": self._auth} if self._auth and self._auth.lower().startswith("basic ") else {}
        token = self.client.get(params["realm"], params=query, headers=headers, follow_redirects=True)
        if token.status_code != 200:
            return False
        doc = token.json()
        value = doc.get("token") or doc.get("access_token")
        if not value:
            return False
        self._bearer = f"Bearer {value}"
        return True

    def _manifest(self, reference: str) -> tuple[str, dict[str, Any]]:
        resp = self._request("GET", f"manifests/{reference}", {"Accept": ACCEPT})
        try:
            doc: dict[str, Any] = resp.json()
        except ValueError as exc:
            raise ImageError(f"manifest {reference} is not JSON: {exc}") from None
        return resp.headers.get("content-type", doc.get("mediaType", "")), doc

    def images(self, platform: str | None = None) -> list[Image]:
        media_type, doc = self._manifest(self.reference)
        if media_type.split(";")[0] in mt.INDEXES or "manifests" in doc:
            out = []
            for desc in doc.get("manifests") or []:
                p = desc.get("platform")
                plat = platform_name(p) if p else ""
                if platform is None or plat == platform:
                    out.extend(self._image(desc["digest"], plat))
            return out
        return self._image_from(doc, platform or "")

    def _image(self, digest: str, platform: str) -> list[Image]:
        _, doc = self._manifest(digest)
        return self._image_from(doc, platform)

    def _image_from(self, doc: dict[str, Any], platform: str) -> list[Image]:
        config_desc = doc.get("config") or {}
        config: dict[str, Any] = {}
        if config_desc.get("digest"):
            resp = self._request("GET", f"blobs/{config_desc['digest']}")
            try:
                config = json.loads(resp.content)
            except ValueError:
                config = {}
        if not platform and config:
            platform = platform_name(config)
        layers = [LayerRef(d["digest"], int(d.get("size", 0))) for d in doc.get("layers") or []]
        return [Image(self, layers, config, platform)]

    @contextmanager
    def open_layer(self, layer: LayerRef) -> Iterator[IO[bytes]]:
        resp = self._request("GET", f"blobs/{layer.digest}", stream=True)
        try:
            yield io.BufferedReader(ChunkReader(resp.iter_raw(1 << 20)), 1 << 20)
        finally:
            resp.close()
