"""Gate: a project may refuse pulls of images without a verified signature (`require_signature`).

An index passes when the index itself carries a verified signature, or when every image it lists
does (cosign signs whichever digest it is given; both ways are in use). Signatures, SBOMs and
attestations themselves are never refused: they are what a client reads to judge the image.
"""

from __future__ import annotations

from dockyard.services.gates.model import Refusal, Stage, Subject
from dockyard.services.trust.material import TrustService
from dockyard.services.trust.signatures import SignatureService


def unsigned(signatures: SignatureService, subject: Subject) -> list[str]:
    """The digests that still need a verified signature for the subject to count as signed: none
    when the subject itself is verified; otherwise its images (an index's children) that are not."""
    images = subject.images
    verified = signatures.verified(subject.repository, {subject.digest, *images})
    if subject.digest in verified:
        return []
    return [d for d in images if d not in verified]


class SignatureGate:
    name = "signature"
    stages = frozenset({Stage.PULL})

    def __init__(self, trust: TrustService, signatures: SignatureService) -> None:
        self.trust = trust
        self.signatures = signatures

    def forget(self, project: str | None = None) -> None:
        self.trust.forget(project)

    def evaluate(self, subject: Subject) -> Refusal | None:
        if not self.trust.find_policy(subject.project).require_signature:
            return None
        missing = unsigned(self.signatures, subject)
        if not missing:
            return None
        if self.signatures.is_signature_artifact(
            subject.repository, subject.digest, subject.tag, subject.content, subject.media_type
        ):
            return None
        return Refusal(
            self.name,
            f"pull refused by project policy: {missing[0]} has no verified signature",
            f"sign {missing[0]} with a key or certificate the project trusts",
            {"policy": "require_signature", "digest": missing[0], "unsigned": missing[:50]},
        )
