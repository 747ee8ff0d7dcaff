"""`with server:` for the test servers: start on entering, stop on leaving."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Running:
    """A server with `start` and `stop`, usable as a context manager."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
