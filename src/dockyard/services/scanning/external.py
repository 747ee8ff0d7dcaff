"""A scanner that speaks the Harbor Scanner Adapter API v1.1 (Trivy's, a vendor's, or another
Dockyard's), used instead of the built-in one when `external_scanner_url` is set."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from dockyard.scan import harbor
from dockyard.scan.model import Finding


class ExternalScanError(Exception):
    pass


class HarborAdapterScanner:
    def __init__(
        self,
        url: str,
        registry_url: str,
        pull_authorization: Callable[[str], str],
        authorization: Any = None,  # str, or a pydantic SecretStr setting
        timeout: float = 600.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.registry_url = registry_url
        self.pull_authorization = pull_authorization  # repository -> Authorization header value
        if hasattr(authorization, "get_secret_value"):
            authorization = authorization.get_secret_value()
        self.headers = {"Authorization": str(authorization)} if authorization else {}
        self.timeout = timeout  # for a scan's report, in all
        # Outbound HTTP goes through the injected client (wiring.http_client: timeouts, limits, user
        # agent; tests pass an httpx.MockTransport or a real local server alike).
        self.client = client if client is not None else httpx.Client(timeout=60)
        self.name = f"external:{self.url}"

    def metadata(self) -> dict[str, Any]:
        r = self.client.get(f"{self.url}/api/v1/metadata", headers=self.headers)
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc

    def scan(
        self, repository: str, digest: str, media_type: str, progress: Callable[[], None] | None = None
    ) -> list[Finding]:
        """`progress` is called while waiting for the report (it keeps the caller's claims alive)."""
        body = {
            "registry": {"url": self.registry_url, "authorization": self.pull_authorization(repository)},
            "artifact": {"repository": repository, "digest": digest, "mime_type": media_type},
        }
        client = self.client
        try:
            r = client.post(
                f"{self.url}/api/v1/scan", json=body, headers={**self.headers, "Content-Type": harbor.SCAN_REQUEST}
            )
        except httpx.HTTPError as exc:
            raise ExternalScanError(f"scanner adapter {self.url}: {exc}") from exc
        if r.status_code != 202:
            raise ExternalScanError(f"scanner adapter refused the scan: HTTP {r.status_code} {r.text[:300]}")
        job = r.json()["id"]
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                report = client.get(
                    f"{self.url}/api/v1/scan/{job}/report",
                    headers={**self.headers, "Accept": harbor.VULN_REPORT},
                    follow_redirects=False,
                )
            except httpx.HTTPError as exc:
                raise ExternalScanError(f"scanner adapter {self.url}: {exc}") from exc
            if report.status_code == 200:
                return harbor.from_report(report.json())
            if report.status_code != 302:
                raise ExternalScanError(f"scanner adapter report: HTTP {report.status_code} {report.text[:300]}")
            if time.monotonic() > deadline:
                raise ExternalScanError(f"scanner adapter did not finish within {self.timeout:.0f} s")
            if progress is not None:
                progress()
            wait = report.headers.get("refresh-after", "1")
            time.sleep(min(10.0, max(0.2, float(wait) if wait.isdigit() else 1.0)))
