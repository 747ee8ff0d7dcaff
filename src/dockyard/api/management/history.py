"""Tag history and revert: GET …/tags/{tag}/history, POST …/tags/{tag}/revert."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from dockyard.api.management.audit import CURSOR_PATTERN
from dockyard.api.management.deps import Caller, ServicesDep, project_permission
from dockyard.api.management.models import Body, Checked, problems
from dockyard.oci.names import project_of
from dockyard.services.auth.permissions import Permission

router = APIRouter(tags=["tag history"])
# The grammars the services check, stated in the document (oci/names.py, oci/digest.py).
Tag = Annotated[str, Path(pattern=r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$", description="A tag")]
DIGEST_PATTERN = r"^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$"


class HistoryEntryOut(BaseModel):
    digest: str = Field(description="A move's new target; the target a deleted tag had.")
    previous_digest: str | None = Field(description="What a moved tag pointed at before (null: it was new).")
    action: str = Field(description="moved | deleted")
    at: float
    actor: str
    actor_kind: str


class HistoryPage(BaseModel):
    entries: list[HistoryEntryOut]
    next_before: str | None = Field(None, description="Pass as `before` for the next (older) page.")


class RevertIn(Body):
    digest: str = Checked("A digest named in the tag's history", pattern=DIGEST_PATTERN)


class RevertOut(BaseModel):
    repository: str
    tag: str
    digest: str
    previous_digest: str | None = Field(description="What the tag pointed at before the revert (null: absent).")
    changed: bool = Field(description="false: the tag pointed there already.")


@router.get(
    "/repositories/{repository:path}/tags/{tag}/history",
    response_model=HistoryPage,
    summary="Every move and deletion of a tag, newest first",
)
def tag_history(
    repository: str,
    tag: Tag,
    svc: ServicesDep,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        str | None, Query(description="`next_before` of the previous page", pattern=CURSOR_PATTERN, max_length=64)
    ] = None,
) -> HistoryPage:
    project_permission(svc, caller, project_of(repository), Permission.PULL)
    entries, cursor = svc.history.history(repository, tag, limit, before)
    return HistoryPage(
        entries=[
            HistoryEntryOut(
                digest=e.digest,
                previous_digest=e.previous_digest,
                action=e.action,
                at=e.at,
                actor=e.actor,
                actor_kind=e.actor_kind,
            )
            for e in entries
        ],
        next_before=cursor,
    )


@router.post(
    "/repositories/{repository:path}/tags/{tag}/revert",
    response_model=RevertOut,
    summary="Point the tag back at a manifest of its history",
    description="The digest must be in the tag's history and still stored (else 404 / 409). Immutability "
    "rules and the tag-time gates apply (403).",
    responses=problems(409),
)
def revert_tag(repository: str, tag: Tag, body: RevertIn, svc: ServicesDep, caller: Caller) -> RevertOut:
    project_permission(svc, caller, project_of(repository), Permission.PUSH)
    r = svc.history.revert(repository, tag, body.digest, caller)
    return RevertOut(
        repository=r.repository, tag=r.tag, digest=r.digest, previous_digest=r.previous_digest, changed=r.changed
    )
