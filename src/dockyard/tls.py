"""The files `dockyard serve` serves HTTPS with: check that they load, and notice when they change.

The ASGI servers read the certificate files when a worker starts, so a new certificate takes effect by
replacing the workers one by one (each old worker finishes its open requests first). `dockyard.launch`
does that on SIGHUP and when `FileWatcher` sees a change, and only for a set of files that loads: a
half-written or mismatched pair keeps the running workers, with an error in the log.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class TlsFilesError(Exception):
    """The certificate, key or client CA cannot be loaded; the message says which and why."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())

    def check(self) -> None:
        """Raise TlsFilesError unless the key matches the certificate and the client CA parses."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsFilesError(f"cannot load {self.cert} with key {self.key}: {exc}") from None
        if self.client_ca:
            try:
                ctx.load_verify_locations(cafile=self.client_ca)
            except (OSError, ssl.SSLError) as exc:
                raise TlsFilesError(f"cannot load client CA {self.client_ca}: {exc}") from None

    def stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        """What changes when a file is rewritten or replaced (mtime, size, inode); None for a missing file."""
        out: list[tuple[int, int, int] | None] = []
        for path in self.paths:
            try:
                st = path.stat()
            except OSError:
                out.append(None)
                continue
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)


class FileWatcher:
    """Calls `on_change` (from its own daemon thread) when the files' stamp differs from the last one
    seen and the files load; polling, because certificate renewers replace files in every way there is
    (rename over, rewrite in place, symlink swap)."""

    def __init__(
        self, files: TlsFiles, interval: float, on_change: Callable[[], None], on_error: Callable[[str], None]
    ):
        self.files, self.interval, self.on_change, self.on_error = files, interval, on_change, on_error
        self._seen = files.stamp()
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="tls-file-watcher", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> None:
        now = self.files.stamp()
        if now == self._seen:
            return
        self._seen = now
        try:
            self.files.check()
        except TlsFilesError as exc:
            self.on_error(str(exc))  # seen again only once the files change again
            return
        self.on_change()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()
