"""Gate: a quarantined image (or an index with a quarantined child) is not served, except to the
callers who must judge it: system administrators and security reviewers (`registry:pull-quarantined`).
Asked first: a quarantine is the most deliberate refusal there is, and its reason is what a client
should see. The scanner passes every gate (GateChain's `exempt`), so quarantined images are still scanned."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from dockyard.services.auth.identity import Identity
from dockyard.services.gates.model import Refusal, Stage, Subject
from dockyard.services.trust.quarantine import QuarantineService


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class QuarantineGate:
    name = "quarantine"
    stages = frozenset({Stage.PULL})

    def __init__(self, quarantines: QuarantineService, may_pull_quarantined: Callable[[Identity], bool]) -> None:
        self.quarantines = quarantines
        self.may_pull_quarantined = may_pull_quarantined

    def forget(self, project: str | None = None) -> None:
        self.quarantines.forget(project)

    def evaluate(self, subject: Subject) -> Refusal | None:
        if not self.quarantines.any_in(subject.project):
            return None  # before the manifest is parsed for an index's children: most pulls end here
        digests = dict.fromkeys((subject.digest, *subject.images))
        found = self.quarantines.active(subject.project, list(digests))
        if not found:
            return None
        if subject.caller is not None and self.may_pull_quarantined(subject.caller):
            return None
        q = found[0]
        which = "image" if q.digest == subject.digest else f"index {subject.digest}: its image"
        return Refusal(
            self.name,
            f"{which} {q.digest} is quarantined in project {subject.project!r} since {_when(q.quarantined_at)}: "
            f"{q.reason}",
            "a maintainer releases it (DELETE /api/v1/repositories/…/manifests/<digest>/quarantine) once resolved; "
            "system administrators and security reviewers may pull it meanwhile",
            {
                "digest": q.digest,
                "reason": q.reason,
                "quarantined_at": _when(q.quarantined_at),
                "quarantined_by": q.quarantined_by,
                "automatic": q.automatic,
            },
        )
