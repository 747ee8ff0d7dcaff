"""Registry events: what happened to manifests, tags and blobs, told to every listener in turn.

The registry services (and the collector) describe each change as one event (`model`) and hand it
to their `Listeners` inside the change's transaction; the audit log, scanning, garbage-collection
bookkeeping and the outbox are listeners. See docs/architecture.md, "Registry events".
"""

from dockyard.services.events.listener import Listener, Listeners, RegistryListener
from dockyard.services.events.model import (
    BlobDeleted,
    BlobMounted,
    BlobPushed,
    ChangeEvent,
    ImageQuarantined,
    ImageReleased,
    ManifestDeleted,
    ManifestPulled,
    ManifestPushed,
    RegistryEvent,
    TagDeleted,
    TagMoved,
)

__all__ = [
    "BlobDeleted",
    "BlobMounted",
    "BlobPushed",
    "ChangeEvent",
    "ImageQuarantined",
    "ImageReleased",
    "Listener",
    "Listeners",
    "ManifestDeleted",
    "ManifestPulled",
    "ManifestPushed",
    "RegistryEvent",
    "RegistryListener",
    "TagDeleted",
    "TagMoved",
]
