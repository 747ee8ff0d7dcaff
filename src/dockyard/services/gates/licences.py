"""Gate: a project may refuse images carrying licences on its deny-list."""

from __future__ import annotations

import json
import re

from dockyard.services.gates.model import Refusal, Stage, Subject
from dockyard.services.gates.scan_policy import ScanPolicies

_LICENCE_TOKEN = re.compile(r"[A-Za-z0-9.+\-]+")


def denied_licences(expressions: list[str], denylist: frozenset[str]) -> list[str]:
    """The SPDX ids of a deny-list that appear in any of these licence expressions."""
    found: set[str] = set()
    for expression in expressions:
        found |= set(_LICENCE_TOKEN.findall(expression)) & denylist
    return sorted(found)


class LicenceGate:
    name = "licences"
    stages = frozenset({Stage.PULL})

    def __init__(self, policies: ScanPolicies) -> None:
        self.policies = policies

    def forget(self, project: str | None = None) -> None:
        self.policies.forget(project)

    def evaluate(self, subject: Subject) -> Refusal | None:
        policy = self.policies.policy(subject.project)
        if not (policy.block_denied_licences and policy.licence_denylist):
            return None
        scans = self.policies.scans(subject)
        denied = denied_licences(
            [e for row in scans.values() for e in json.loads(row.licences or "[]")], policy.licence_denylist
        )
        if not denied:
            return None
        return Refusal(
            self.name,
            f"pull refused by project policy: denied licences {', '.join(denied)}",
            "remove the packages under these licences, or take them off the project's licence deny-list",
            {"policy": "licence_denylist", "licences": denied},
        )
