"""The repositories of a project, as SQL (`services.projects.in_project`): one LIKE prefix, its
wildcards escaped, used by project deletion, the repository listing and retention alike. `_` is
LIKE's one-character wildcard: unescaped, 'a_b/%' matches 'axb/app'."""

from __future__ import annotations

from dockyard.services.lifecycle.retention import RetentionPolicy
from dockyard.wiring import Services
from tests.lifecycle.conftest import image

DROP_EVERYTHING = RetentionPolicy(keep_last=0)


def test_listing_and_retention_of_a_b_leave_the_repositories_of_axb_alone(svc: Services) -> None:
    for name in ("a_b", "axb"):
        svc.projects.create(name)
    image(svc, "axb/app", [b"layer of axb"], "v1")
    image(svc, "a_b/own", [b"layer of a_b"], "v1")
    image(svc, "a_b", [b"the project's own repository"], "v1")

    assert [r[0] for r in svc.catalog.repositories_in("a_b")] == ["a_b", "a_b/own"]
    assert [r[0] for r in svc.catalog.repositories_in("axb")] == ["axb/app"]
    assert {r.repository for r in svc.retention.plan("a_b", DROP_EVERYTHING)} == {"a_b", "a_b/own"}

    svc.retention.run("a_b", policy=DROP_EVERYTHING)
    assert svc.catalog.tags("axb/app", None, None).items == ["v1"]


def test_a_project_named_a_b_may_be_deleted_while_axb_has_repositories(svc: Services) -> None:
    for name in ("a_b", "axb"):
        svc.projects.create(name)
    image(svc, "axb/app", [b"layer of axb"], "v1")
    svc.projects.delete("a_b")
    assert [p.name for p in svc.projects.list_projects()] == ["axb"]
