"""The one place where gates are evaluated."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dockyard.services.auth.identity import Identity
from dockyard.services.errors import Denied
from dockyard.services.gates.model import Gate, Refusal, Stage, Subject


class GateChain:
    """Gates in order; the first refusal wins where one answer is wanted, all are collected where a
    report is (admission messages, the UI). `exempt` names callers no gate applies to at pull time
    (the scanner identity, which must read an image to judge it)."""

    def __init__(self, gates: Sequence[Gate], exempt: Callable[[Identity], bool] | None = None) -> None:
        self.gates = list(gates)
        self._exempt = exempt

    def _applicable(self, stage: Stage, subject: Subject) -> list[Gate]:
        if stage is Stage.PULL and subject.caller is not None and self._exempt and self._exempt(subject.caller):
            return []
        return [g for g in self.gates if stage in g.stages]

    def first_refusal(self, stage: Stage, subject: Subject) -> Refusal | None:
        for gate in self._applicable(stage, subject):
            refusal = gate.evaluate(subject)
            if refusal is not None:
                return refusal
        return None

    def refusals(self, stage: Stage, subject: Subject) -> list[Refusal]:
        found = (gate.evaluate(subject) for gate in self._applicable(stage, subject))
        return [r for r in found if r is not None]

    def enforce(self, stage: Stage, subject: Subject) -> None:
        """Raise Denied (DENIED on /v2), naming the gate and its remedy, if any gate refuses."""
        refusal = self.first_refusal(stage, subject)
        if refusal is not None:
            raise Denied(refusal.describe(), {"gate": refusal.gate, "remedy": refusal.remedy, **refusal.detail})

    def check_pull(
        self, repository: str, digest: str, media_type: str, content: bytes, caller: Identity | None = None
    ) -> None:
        self.enforce(Stage.PULL, Subject(repository, digest, media_type, content, caller=caller))

    def forget(self, project: str | None = None) -> None:
        for gate in self.gates:
            gate.forget(project)
