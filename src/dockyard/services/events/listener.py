"""One listener protocol for the registry services, and the fan-out they call.

The pattern of distribution's notifications/listener.go (a repository wrapped so every change is
told to a listener, and a broadcaster fanning out to many), with one difference that matters here:
changes are told *inside* their transaction. A listener writes with the change's connection, so
what it writes (an audit row, a queued scan, a collector candidate, an outbox entry) commits or
rolls back with the change, and a listener that raises rolls the change back.

Pulls change nothing and are the hottest path: they are told after the read, with no transaction
(`pulled`), and a listener that records them must buffer (as the audit log does).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from sqlalchemy.engine import Connection

from dockyard.services.events.model import ChangeEvent, ManifestPulled


class RegistryListener(Protocol):
    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        """A change, in its transaction (`conn`); raising rolls the change back."""

    def pulled(self, event: ManifestPulled) -> None:
        """A manifest served; no transaction is open."""


class Listener:
    """A listener that ignores everything: subclass it and handle what you need."""

    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        return None

    def pulled(self, event: ManifestPulled) -> None:
        return None


class Listeners:
    """Tells every listener in turn, in the order given (a RegistryListener itself).

    No error is swallowed: the first listener that raises stops the rest, and the caller's
    transaction rolls back.
    """

    def __init__(self, *listeners: RegistryListener) -> None:
        self._listeners: list[RegistryListener] = list(listeners)

    def add(self, listener: RegistryListener) -> None:
        self._listeners.append(listener)

    def __iter__(self) -> Iterator[RegistryListener]:
        return iter(self._listeners)

    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        for listener in self._listeners:
            listener.changed(conn, event)

    def pulled(self, event: ManifestPulled) -> None:
        for listener in self._listeners:
            listener.pulled(event)
