"""Tag history: every move and deletion of a tag (`records`), listed and reverted (`service`), and
the collector's hold on manifests a tag pointed at recently (`records.held_until`)."""

from dockyard.services.history.records import TagHistoryListener, held_until
from dockyard.services.history.service import HistoryEntry, RevertResult, TagHistoryService

__all__ = ["HistoryEntry", "RevertResult", "TagHistoryListener", "TagHistoryService", "held_until"]
