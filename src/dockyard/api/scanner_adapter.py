"""Dockyard's scanner behind the Harbor Scanner Adapter API v1.1, so Harbor (or another Dockyard, see
`external_scanner_url`) can use it: `dockyard scanner-adapter`.

Scan requests name an artifact in a registry and an Authorization to pull it with; the image is read
from that registry as a stream (nothing is written to disk) and matched against the local
vulnerability database. Jobs live in this process's memory: a restarted adapter forgets them and
Harbor asks again.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard import __version__
from dockyard.scan import harbor
from dockyard.scan.inventory import LayerInventory, inventory_image
from dockyard.scan.matcher import Matcher
from dockyard.scan.model import ScanResult
from dockyard.scan.remote import RemoteImage
from dockyard.scan.report import render_json
from dockyard.scan.vulndb import VulnDB

SCANNER = {"name": "Dockyard", "vendor": "Dockyard", "version": __version__}
RAW = "application/vnd.scanner.adapter.vuln.report.raw"


@dataclass
class Job:
    artifact: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: ScanResult | None = None
    error: str | None = None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status, media_type=harbor.ERROR)


def create_adapter_app(vulndb: VulnDB, authorization: str | None = None, workers: int = 2) -> Starlette:
    matcher = Matcher(vulndb)
    lock = threading.Lock()  # the matcher's caches are shared by the worker threads
    layer_cache: dict[str, LayerInventory] = {}  # by layer digest: images share layers here too
    jobs: dict[str, Job] = {}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="adapter-scan")

    def authorized(request: Request) -> bool:
        return authorization is None or request.headers.get("authorization") == authorization

    def run(job: Job, registry: dict[str, Any]) -> None:
        source = RemoteImage(
            str(registry["url"]), job.artifact["repository"], job.artifact["digest"], registry.get("authorization")
        )
        try:
            images = source.images()
            if len(images) != 1:
                raise ValueError(f"expected one image at {job.artifact['digest']}, found {len(images)}")
            packages, distro = inventory_image(images[0], layer_cache)
            with lock:
                matcher.refresh()
                findings = matcher.match(packages, distro)
            job.result = ScanResult(packages, findings, distro)
        except Exception as exc:  # reported to the client as the job's error
            job.error = str(exc)
        finally:
            source.close()
            job.done.set()

    async def metadata(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "unauthorized")
        sources = vulndb.sources()
        updated = max((s.updated_at for s in sources if s.updated_at), default=None)
        doc = {
            "scanner": SCANNER,
            "capabilities": [
                {"consumes_mime_types": harbor.CONSUMES, "produces_mime_types": [harbor.VULN_REPORT, RAW]}
            ],
            "properties": {
                "harbor.scanner-adapter/scanner-type": "os-package-vulnerability",
                **({"harbor.scanner-adapter/vulnerability-database-updated-at": updated} if updated else {}),
                "dev.dockyard/advisories": str(vulndb.count()),
            },
        }
        return JSONResponse(doc, media_type=harbor.METADATA)

    async def accept_scan(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "unauthorized")
        try:
            doc = json.loads(await request.body())
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(doc, dict):
            return _error(400, "the body is not a JSON object")
        registry, artifact = doc.get("registry"), doc.get("artifact")
        if not isinstance(registry, dict) or not isinstance(registry.get("url"), str) or not registry["url"]:
            return _error(422, "registry.url is required")
        if not isinstance(artifact, dict) or not artifact.get("repository") or not artifact.get("digest"):
            return _error(422, "artifact.repository and artifact.digest are required")
        mime = artifact.get("mime_type")
        if mime and mime not in harbor.CONSUMES:
            return _error(422, f"artifact.mime_type {mime} is not scanned here")
        job_id = str(uuid.uuid4())
        job = Job({k: artifact[k] for k in ("repository", "digest", "tag", "mime_type") if artifact.get(k)})
        jobs[job_id] = job
        pool.submit(run, job, registry)
        return JSONResponse({"id": job_id}, status_code=202, media_type=harbor.SCAN_RESPONSE)

    async def report(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "unauthorized")
        job = jobs.get(request.path_params["scan_request_id"])
        if job is None:
            return _error(404, "no such scan request")
        accept = request.headers.get("accept", harbor.VULN_REPORT)
        wanted = RAW if RAW in accept else harbor.VULN_REPORT
        if not job.done.is_set():
            return Response(status_code=302, headers={"Refresh-After": "1"})
        if job.error is not None or job.result is None:
            return _error(500, job.error or "the scan failed")
        if wanted == RAW:
            return Response(json.dumps(render_json(job.result)), media_type=RAW)
        return JSONResponse(harbor.to_report(job.result, job.artifact, SCANNER), media_type=harbor.VULN_REPORT)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/api/v1/metadata", metadata, methods=["GET"]),
            Route("/api/v1/scan", accept_scan, methods=["POST"]),
            Route("/api/v1/scan/{scan_request_id}/report", report, methods=["GET"]),
        ],
    )
