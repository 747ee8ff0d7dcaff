"""Gate: a tag matching one of the project's `signed_tags` patterns (`v*`, `release-*`) may only
point at a manifest that already carries a verified signature: push by digest, sign, then tag.

An index counts as signed as for the pull gate (gates/signature.py): itself, or every child.
Signature, attestation and SBOM tags are never refused.
"""

from __future__ import annotations

from dockyard.services.gates.model import Refusal, Stage, Subject
from dockyard.services.gates.signature import unsigned
from dockyard.services.trust.material import TrustService
from dockyard.services.trust.signatures import SignatureService


class SignedTagsGate:
    name = "signed_tags"
    stages = frozenset({Stage.TAG})

    def __init__(self, trust: TrustService, signatures: SignatureService) -> None:
        self.trust = trust
        self.signatures = signatures

    def forget(self, project: str | None = None) -> None:
        self.trust.forget(project)

    def evaluate(self, subject: Subject) -> Refusal | None:
        if subject.tag is None:
            return None
        policy = self.trust.find_policy(subject.project)
        if not policy.protects(subject.tag):
            return None
        missing = unsigned(self.signatures, subject)
        if not missing:
            return None
        if self.signatures.is_signature_artifact(
            subject.repository, subject.digest, subject.tag, subject.content, subject.media_type
        ):
            return None
        patterns = ", ".join(p for p in policy.signed_tags)
        return Refusal(
            self.name,
            f"tag {subject.tag!r} matches a signed-tags pattern ({patterns}) and {missing[0]} has no verified "
            "signature",
            f"push by digest, sign {subject.digest} with a trusted key, then tag",
            {"policy": "signed_tags", "tag": subject.tag, "digest": subject.digest, "unsigned": missing[:50]},
        )
