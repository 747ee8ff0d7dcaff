"""Dockyard's scanner behind the Harbor Scanner Adapter API v1.1, so Harbor (or another Dockyard, see
`external_scanner_url`) can use it: `dockyard scanner-adapter`.

Scan requests name an artifact in a registry and an Authorization to pull it with; the image is read
from that registry as a stream (nothing is written to disk) and matched against the local
vulnerability database. Jobs live in this process's memory: a restarted adapter forgets them and
Harbor asks again.

The adapter reaches whatever registry a request names, so it is locked down by default: callers must
send the configured Authorization (running without one needs an explicit `allow_anonymous`), only
registries on an allow-list are contacted (others: 403), and the job table and the layer cache are
bounded in size and expire (a full table of running jobs answers 503 with Retry-After).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard import __version__
from dockyard.scan import harbor
from dockyard.scan.inventory import LayerInventory, inventory_image
from dockyard.scan.matcher import Matcher
from dockyard.scan.model import DatabaseInfo, ScanResult
from dockyard.scan.remote import RemoteImage
from dockyard.scan.report import render_json
from dockyard.scan.vulndb import VulnDB

SCANNER = {"name": "Dockyard", "vendor": "Dockyard", "version": __version__}
RAW = "application/vnd.scanner.adapter.vuln.report.raw"


DEFAULT_MAX_JOBS = 1000
DEFAULT_JOB_TTL = 3600.0  # seconds a finished job's report is kept (Harbor fetches it within seconds)
DEFAULT_LAYER_CACHE = 256  # layer inventories kept (each is a package list, usually a few kB)
DEFAULT_LAYER_TTL = 6 * 3600.0
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class Job:
    artifact: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: ScanResult | None = None
    error: str | None = None
    finished_at: float | None = None  # monotonic


class AdapterConfigError(ValueError):
    """The adapter would start unprotected or unable to reach any registry."""


class RegistryAllowList:
    """Registries the adapter may contact, each `host`, `host:port` or a URL (`https://host[:port][/path]`).

    A bare host allows it on any port and either scheme; a URL allows exactly its scheme, host, port
    and the paths below its path. Hosts compare case-insensitively; nothing else is reachable.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries: list[tuple[str | None, str, int | None, str]] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            parts = urlsplit(entry if "://" in entry else f"//{entry}")
            if parts.scheme not in ("", "http", "https") or not parts.hostname:
                raise AdapterConfigError(f"not a registry host or http(s) URL: {raw!r}")
            scheme = parts.scheme or None
            port = parts.port or (_DEFAULT_PORTS[scheme] if scheme else None)
            self.entries.append((scheme, parts.hostname.lower(), port, parts.path.rstrip("/")))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def allows(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:  # a port that is not a number
            return False
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
            return False
        host, path = parts.hostname.lower(), parts.path.rstrip("/")
        for scheme, e_host, e_port, e_path in self.entries:
            if host != e_host or (scheme is not None and scheme != parts.scheme):
                continue
            if e_port is not None and port != e_port:
                continue
            if e_path and path != e_path and not path.startswith(e_path + "/"):
                continue
            return True
        return False


class LayerCache:
    """Layer inventories by digest, least recently used first out, each kept at most `ttl` seconds.

    Shared by the worker threads (`inventory_image` calls `get` and sets items), hence the lock.
    """

    def __init__(self, maxsize: int = DEFAULT_LAYER_CACHE, ttl: float = DEFAULT_LAYER_TTL) -> None:
        self.maxsize, self.ttl = maxsize, ttl
        self._items: OrderedDict[str, tuple[float, LayerInventory]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, digest: str, default: LayerInventory | None = None) -> LayerInventory | None:
        with self._lock:
            item = self._items.get(digest)
            if item is None:
                return default
            if time.monotonic() - item[0] > self.ttl:
                del self._items[digest]
                return default
            self._items.move_to_end(digest)
            return item[1]

    def __setitem__(self, digest: str, inventory: LayerInventory) -> None:
        with self._lock:
            self._items[digest] = (time.monotonic(), inventory)
            self._items.move_to_end(digest)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)


class JobTable:
    """Scan jobs by id: at most `max_jobs`; a finished job is forgotten `ttl` seconds after it ended
    (its report then answers 404, and Harbor asks for a new scan), or sooner when room is needed."""

    def __init__(self, max_jobs: int = DEFAULT_MAX_JOBS, ttl: float = DEFAULT_JOB_TTL) -> None:
        self.max_jobs, self.ttl = max_jobs, ttl
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._expire()
            return self._jobs.get(job_id)

    def add(self, job: Job) -> str | None:
        """The new job's id, or None when the table is full of unfinished jobs."""
        with self._lock:
            self._expire()
            if len(self._jobs) >= self.max_jobs:
                finished = [k for k, j in self._jobs.items() if j.done.is_set()]  # oldest first
                for key in finished[: len(self._jobs) - self.max_jobs + 1]:
                    del self._jobs[key]
            if len(self._jobs) >= self.max_jobs:
                return None
            job_id = str(uuid.uuid4())
            self._jobs[job_id] = job
            return job_id

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, j in self._jobs.items() if j.finished_at is not None and now - j.finished_at > self.ttl]:
            del self._jobs[key]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status, media_type=harbor.ERROR, headers=headers)


def create_adapter_app(
    vulndb: VulnDB,
    authorization: str | None,
    workers: int = 2,
    *,
    allowed_registries: Iterable[str],
    allow_anonymous: bool = False,
    jobs: JobTable | None = None,
    layer_cache: LayerCache | None = None,
    http: httpx.Client | None = None,  # the outbound client images are read with (wiring.http_client)
) -> Starlette:
    if not authorization and not allow_anonymous:
        raise AdapterConfigError(
            "the scanner adapter needs an authorization value that clients must send "
            "(or an explicit choice to run without one)"
        )
    registries = RegistryAllowList(allowed_registries)
    if not registries:
        raise AdapterConfigError("the scanner adapter needs the registries it may pull from (an allow-list)")
    expected = authorization.encode() if authorization else None
    matcher = Matcher(vulndb)
    lock = threading.Lock()  # the matcher's caches are shared by the worker threads
    layers = layer_cache if layer_cache is not None else LayerCache()  # images share layers here too
    table = jobs if jobs is not None else JobTable()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="adapter-scan")

    def authorized(request: Request) -> bool:
        if expected is None:
            return True
        return hmac.compare_digest(request.headers.get("authorization", "").encode(), expected)

    def run(job: Job, registry: dict[str, Any]) -> None:
        source = RemoteImage(
            str(registry["url"]),
            job.artifact["repository"],
            job.artifact["digest"],
            registry.get("authorization"),
            client=http,
        )
        try:
            images = source.images()
            if len(images) != 1:
                raise ValueError(f"expected one image at {job.artifact['digest']}, found {len(images)}")
            packages, distro = inventory_image(images[0], layers)
            with lock:
                matcher.refresh()
                findings = matcher.match(packages, distro)
                snap = vulndb.snapshot()
            database = DatabaseInfo.of(snap.generation, snap.advisories, snap.updated_at)
            job.result = ScanResult(packages, findings, distro, database)
        except Exception as exc:  # reported to the client as the job's error
            job.error = str(exc)
        finally:
            source.close()
            job.finished_at = time.monotonic()
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
            # orjson: a body nested 100k levels deep is a decode error, not a RecursionError (500).
            doc = orjson.loads(await request.body())
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
        if not registries.allows(registry["url"]):
            return _error(403, f"registry {registry['url']} is not on this scanner's allow-list")
        job = Job({k: artifact[k] for k in ("repository", "digest", "tag", "mime_type") if artifact.get(k)})
        job_id = table.add(job)
        if job_id is None:
            return _error(503, "too many scans in progress; try again later", {"Retry-After": "30"})
        pool.submit(run, job, registry)
        return JSONResponse({"id": job_id}, status_code=202, media_type=harbor.SCAN_RESPONSE)

    async def report(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "unauthorized")
        job = table.get(request.path_params["scan_request_id"])
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
