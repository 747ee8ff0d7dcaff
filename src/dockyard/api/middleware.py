"""ASGI middleware every application shares: the error boundary and the request-body read timeout."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.logs import get_logger

_log = get_logger("dockyard.api")

# What a client that went away looks like from inside a request: starlette's ClientDisconnect when the
# server reports it, anyio's stream errors when a body or response stream is cut, a reset socket.
CLIENT_GONE: tuple[type[BaseException], ...] = (
    ClientDisconnect,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    ConnectionError,
)


class BodyReadTimeout(Exception):
    """The client sent no part of the request body for `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no request body data for {seconds:g} s")
        self.seconds = seconds


def _client_gone(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):  # raised out of a task group (streaming responses)
        return all(_client_gone(inner) for inner in exc.exceptions)
    return isinstance(exc, CLIENT_GONE)


class ErrorBoundary:
    """The last stop for an exception out of a request: one log event, one answer.

    An expected condition (the client went away, its body stalled) is one info line; anything else is
    a bug: one error event with the exception's type, message and frames (`dockyard.logs` never renders
    locals, which hold credentials and settings), answered with `render_error()` if no response has
    started. Nothing is re-raised, so the server does not log the same exception a second time.
    """

    def __init__(
        self, app: ASGIApp, render_error: Callable[[], Response], render_timeout: Callable[[], Response]
    ) -> None:
        self.app = app
        self.render_error = render_error
        self.render_timeout = render_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        where = {"method": scope.get("method"), "path": scope.get("path")}
        try:
            await self.app(scope, receive, tracking_send)
            return
        except BodyReadTimeout as exc:
            _log.info("request body timed out", **where, seconds=exc.seconds)
            response = self.render_timeout()
        except Exception as exc:
            if _client_gone(exc):
                _log.info("client went away", **where, error=type(exc).__name__)
                return
            _log.error("unhandled error", **where, exc_info=exc)
            response = self.render_error()
        if not started:
            with contextlib.suppress(Exception):  # the client may be gone by now as well
                await response(scope, receive, send)


class BodyTimeout:
    """Bounds the wait for each part of a request body: a client that stops sending gets 408 and the
    connection is closed, instead of holding a worker's connection open for ever. Only the body is
    timed; once it is complete, later receive() calls (disconnect listeners) wait as long as they like."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                with anyio.fail_after(self.seconds):
                    message = await receive()
            except TimeoutError:
                raise BodyReadTimeout(self.seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed_receive, send)
