"""The one durable work queue: background work (scans now; webhook deliveries and replication next) as
rows any number of processes claim, renew while they work, and complete, fail or lose (see work.py)."""

from dockyard.services.queue.work import AVAILABLE, CLAIMED, FAILED, Claim, ClaimLost, Item, Worked, WorkQueue

__all__ = ["AVAILABLE", "CLAIMED", "FAILED", "Claim", "ClaimLost", "Item", "WorkQueue", "Worked"]
