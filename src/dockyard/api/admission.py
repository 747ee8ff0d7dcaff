"""POST /admission/validate: the Kubernetes validating admission webhook (docs/admission.md).

Thin: the caller is checked against `admission_token` (without one the webhook is off), the body is
read (bounded), and services/admission.py answers. Kubernetes sends the review over TLS (the registry's own listener, or
the proxy in front of it) and reads the answer from a 200 whatever it says; a body that is no
AdmissionReview is a 400, one over `admission_max_body_bytes` a 413.
"""

from __future__ import annotations

import hmac
import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.api.distribution.common import read_limited, services
from dockyard.config import secret
from dockyard.services.errors import InvalidInput, TooLarge


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _authorized(request: Request, expected: str) -> bool:
    header = request.headers.get("authorization", "")
    if header[:7].lower() != "bearer ":
        return False
    return hmac.compare_digest(header[7:].strip().encode(), expected.encode())


async def validate(request: Request) -> Response:
    svc = services(request)
    expected = secret(svc.settings.admission_token)
    if not expected:
        # Off unless a token is set: the answers name private projects' images, their findings and
        # quarantine reasons, which only the cluster that deploys them should learn.
        return _error(404, "the admission webhook is not enabled (set admission_token)")
    if not _authorized(request, expected):
        return JSONResponse(
            {"error": "a bearer token is required (admission_token)"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="dockyard-admission"'},
        )
    if not request.headers.get("content-type", "").lower().startswith("application/json"):
        return _error(415, "an AdmissionReview is sent as application/json")
    try:
        body = await read_limited(request, svc.settings.admission_max_body_bytes)
    except TooLarge as exc:
        return _error(413, exc.message)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the body is not JSON")
    try:
        answer = await run_in_threadpool(svc.admission.review, document)
    except InvalidInput as exc:
        return _error(400, exc.message)
    return JSONResponse(answer)
