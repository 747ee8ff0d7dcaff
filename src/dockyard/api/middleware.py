"""ASGI middleware: the error boundary and the request-body read timeout."""

from __future__ import annotations

import contextlib
import gc
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


def _client_gone(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):  # raised out of a task group (streaming responses)
        return all(_client_gone(inner) for inner in exc.exceptions)
    return isinstance(exc, CLIENT_GONE)


class ErrorBoundary:
    """The last stop for an exception out of a request: one log event, one answer.

    An expected condition (the client went away) is one info line; anything else is a bug: one error
    event with the exception's type, message and frames (`dockyard.logs` never renders locals, which
    hold credentials and settings), answered with `render_error()` if no response has started. Nothing
    is re-raised, so the server does not log the same exception a second time.
    """

    def __init__(self, app: ASGIApp, render_error: Callable[[], Response]) -> None:
        self.app = app
        self.render_error = render_error

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
    """Bounds the wait for each part of a request body: a client that stops sending is answered
    `render(scope)` (408, connection closed) and logged as one info line, instead of holding a
    connection and a worker's request open for ever. Only the body is timed; once it is complete, later
    receive() calls (disconnect listeners) wait as long as they like.

    The application then sees the client as gone (`http.disconnect`); whatever it does about that
    (an exception, a late response) is the timeout's consequence and is dropped here, so a framework
    that turns a failed body read into its own answer (FastAPI: 400) does not replace the 408."""

    def __init__(self, app: ASGIApp, seconds: float, render: Callable[[Scope], Response]) -> None:
        self.app = app
        self.seconds = seconds
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = timed_out = started = False

        async def timed_receive() -> Message:
            nonlocal complete, timed_out
            if timed_out:
                return {"type": "http.disconnect"}
            if complete:
                return await receive()
            try:
                with anyio.fail_after(self.seconds):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                _log.info("request body timed out", method=scope.get("method"), path=scope.get("path"))
                if not started:
                    with contextlib.suppress(Exception):
                        await self.render(scope)(scope, receive, send)
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the 408 was the answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not timed_out:
                raise
        finally:
            if timed_out:
                # The cancelled receive() is left in reference cycles (its exception's traceback):
                # until the collector frees it, granian keeps the connection open after the 408,
                # on an idle server until the next request comes (seen: 30 s). Timeouts are rare.
                gc.collect()
