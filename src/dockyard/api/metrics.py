"""Prometheus metrics: requests by route and status, latency, bytes in and out.

Works with several worker processes through prometheus-client's multiprocess mode: the CLI sets
PROMETHEUS_MULTIPROC_DIR before workers start, and /metrics aggregates every worker's files.

The series name projects (private ones too), so /metrics answers only those holding the system
permission `system:metrics` (administrators, by the system matrix) and the accounts named in
`metrics_users`, signed in with Basic credentials (password, access token or robot secret); anyone
else gets 401/403 and no data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.api.auth import Challenge, basic_identity
from dockyard.services.auth.permissions import SystemPermission
from dockyard.services.errors import Denied

REQUESTS = Counter("dockyard_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "dockyard_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BYTES_IN = Counter("dockyard_http_request_bytes_total", "Request body bytes received", ["route"])
BYTES_OUT = Counter("dockyard_http_response_bytes_total", "Response body bytes sent", ["route"])

API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")

if TYPE_CHECKING:
    from dockyard.wiring import Services


class MetricsMiddleware:
    """Pure ASGI (no per-request Request objects) to keep the hot path cheap. Also stamps every
    response with Docker-Distribution-API-Version, which clients look for on /v2/."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        bytes_in = 0
        bytes_out = 0
        declared_out: int | None = None

        async def counting_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, bytes_out, declared_out
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append(API_VERSION_HEADER)
                message["headers"] = headers
                for k, v in headers:
                    if k == b"content-length":
                        declared_out = int(v)
            elif kind == "http.response.body":
                bytes_out += len(message.get("body", b""))
            elif kind == "http.response.pathsend" and declared_out is not None:
                bytes_out += declared_out
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            route = _route_label(scope)
            method = scope["method"]
            requests, latency = _series(method, route, status)
            requests.inc()
            latency.observe(time.perf_counter() - start)
            if bytes_in:
                BYTES_IN.labels(route).inc(bytes_in)
            if bytes_out and method != "HEAD":
                BYTES_OUT.labels(route).inc(bytes_out)


@lru_cache(maxsize=4096)
def _series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The children of one label set (`labels()` looks them up under a lock on every call). Bounded:
    methods, route patterns and statuses are few."""
    return REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route)


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class StorageUsageCollector:
    """Per-project storage use and quota, read from the database at scrape time (the counters the
    push path keeps up to date), so every replica reports the same figures."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            "dockyard_project_used_bytes", "Bytes of distinct blobs in a project", labels=["project"]
        )
        quota = GaugeMetricFamily("dockyard_project_quota_bytes", "A project's storage quota", labels=["project"])
        pending = GaugeMetricFamily("dockyard_gc_pending", "Candidates waiting in the garbage collector's queue")
        for project in self.services.projects.list_projects():
            used.add_metric([project.name], project.used_bytes)
            if project.quota_bytes is not None:
                quota.add_metric([project.name], project.quota_bytes)
        pending.add_metric([], self.services.collector.pending())
        yield from (used, quota, pending)
        from dockyard.services.scanning.scanner import vulndb_metrics  # loaded with the services, not here

        yield from vulndb_metrics(self.services.scans)


def _scrape(services: Services) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
        registry.register(StorageUsageCollector(services))
        return bytes(generate_latest(registry))
    registry.register(StorageUsageCollector(services))
    return bytes(generate_latest()) + bytes(generate_latest(registry))


def _check_reader(request: Request, services: Services) -> None:
    identity = basic_identity(request, services)  # Challenge (401) for bad credentials
    if identity.anonymous:
        raise Challenge("authentication required", {"WWW-Authenticate": 'Basic realm="dockyard"'})
    may_read = services.policy.can_system(identity, SystemPermission.READ_METRICS)
    if not (may_read or identity.subject in services.settings.metrics_users):
        raise Denied("metrics are for system administrators and the accounts named in metrics_users")


async def metrics_endpoint(request: Request) -> Response:
    services = request.app.state.services
    await run_in_threadpool(_check_reader, request, services)  # a password check is slow: off the loop
    data = await run_in_threadpool(_scrape, services)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
