"""Trust material (cosign public keys, Notary Project trust-store certificates) and trust policies,
per project and system-wide. Owner of `trust_keys`, `trust_certificates` and `trust_policies`.

Every change is audited in its transaction and, in the same transaction, asks for the affected
signatures to be verified again (`on_change`: the project's, or every one for system-wide material),
so no verdict stands on material that is gone.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.audit import AuditLog, current_actor
from dockyard.services.errors import Conflict, InvalidInput, NotFound
from dockyard.services.memo import TtlMemo
from dockyard.services.projects import ProjectService
from dockyard.services.trust.model import TrustedCertificate, TrustedKey, TrustMaterial
from dockyard.services.trust.pem import check_certificate, check_identity, check_public_key

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)
MAX_IDENTITIES = 100
MAX_TAG_PATTERNS = 50
MAX_TAG_PATTERN_LENGTH = 128

# Called in the change's transaction with the project whose material changed (None: system-wide).
OnChange = Callable[[sa.Connection, str | None], object]


@dataclass(frozen=True)
class KeyInfo:
    name: str
    project: str | None
    algorithm: str
    fingerprint: str
    public_key: str
    created_by: str | None
    created_at: float


@dataclass(frozen=True)
class CertificateInfo:
    name: str
    project: str | None
    subject: str
    fingerprint: str
    not_after: float
    identities: tuple[str, ...]
    certificate: str
    created_by: str | None
    created_at: float


@dataclass(frozen=True)
class TrustPolicy:
    require_signature: bool = False
    signed_tags: tuple[str, ...] = ()

    def protects(self, tag: str) -> bool:
        return any(fnmatch.fnmatchcase(tag, pattern) for pattern in self.signed_tags)


NO_POLICY = TrustPolicy()


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"name {name!r} must match {NAME_PATTERN}", {"name": name})
    return name


def check_identities(identities: list[str]) -> tuple[str, ...]:
    if len(identities) > MAX_IDENTITIES:
        raise InvalidInput(f"at most {MAX_IDENTITIES} identities", {"count": len(identities)})
    return tuple(dict.fromkeys(check_identity(i) for i in identities))


def check_tag_patterns(patterns: list[str]) -> tuple[str, ...]:
    if len(patterns) > MAX_TAG_PATTERNS:
        raise InvalidInput(f"at most {MAX_TAG_PATTERNS} signed_tags patterns", {"count": len(patterns)})
    for pattern in patterns:
        # A tag's own characters plus the glob's: anything else could never match a tag.
        if not re.fullmatch(r"[A-Za-z0-9_.\-*?\[\]!]{1,128}", pattern):
            raise InvalidInput(f"signed_tags pattern {pattern!r} is not a tag glob (such as v* or release-*)")
    return tuple(sorted(set(patterns)))


class TrustService:
    def __init__(self, db: Database, audit: AuditLog, ttl: float = 1.0) -> None:
        self.db = db
        self.audit = audit
        self.on_change: OnChange | None = None  # set by wiring: the signature service re-verifies
        self._policies: TtlMemo[str, TrustPolicy] = TtlMemo(ttl)

    # --- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _scope(conn: sa.Connection, project: str | None) -> int | None:
        return None if project is None else ProjectService.existing_id(conn, project)

    @staticmethod
    def _where(table: sa.Table, project_id: int | None) -> Any:
        c = table.c
        return c.project_id.is_(None) if project_id is None else c.project_id == project_id

    def _changed(self, conn: sa.Connection, project: str | None) -> None:
        if self.on_change is not None:
            self.on_change(conn, project)

    def _exists(self, conn: sa.Connection, table: sa.Table, project_id: int | None, name: str) -> bool:
        q = sa.select(table.c.id).where(self._where(table, project_id), table.c.name == name)
        return conn.execute(q).first() is not None

    # --- keys ----------------------------------------------------------------------------------
    @staticmethod
    def _key(row: Any, project: str | None) -> KeyInfo:
        return KeyInfo(
            row.name, project, row.algorithm, row.fingerprint, row.public_key, row.created_by, row.created_at
        )

    def add_key(self, project: str | None, name: str, public_key: str) -> KeyInfo:
        check_name(name)
        facts = check_public_key(public_key)
        actor = current_actor()
        with self.db.write() as conn:
            pid = self._scope(conn, project)
            if self._exists(conn, s.trust_keys, pid, name):
                raise Conflict(f"a key named {name!r} exists", {"name": name})
            values = dict(
                project_id=pid,
                name=name,
                public_key=facts.pem,
                algorithm=facts.algorithm,
                fingerprint=facts.fingerprint,
                created_by=actor.name if actor.kind != "system" else None,
                created_at=now(),
            )
            conn.execute(sa.insert(s.trust_keys).values(**values))
            detail = {"name": name, "algorithm": facts.algorithm, "fingerprint": facts.fingerprint}
            self.audit.record(conn, "trust.key.add", project=project, detail=detail)
            self._changed(conn, project)
        return self.key(project, name)

    def keys(self, project: str | None) -> list[KeyInfo]:
        with self.db.read() as conn:
            pid = self._scope(conn, project)
            rows = conn.execute(
                sa.select(s.trust_keys).where(self._where(s.trust_keys, pid)).order_by(s.trust_keys.c.name)
            ).all()
        return [self._key(r, project) for r in rows]

    def key(self, project: str | None, name: str) -> KeyInfo:
        with self.db.read() as conn:
            pid = self._scope(conn, project)
            row = conn.execute(
                sa.select(s.trust_keys).where(self._where(s.trust_keys, pid), s.trust_keys.c.name == name)
            ).first()
        if row is None:
            raise NotFound(f"no key named {name!r}", {"name": name})
        return self._key(row, project)

    def delete_key(self, project: str | None, name: str) -> None:
        self._delete(s.trust_keys, "trust.key.delete", project, name, "key")

    def _delete(self, table: sa.Table, action: str, project: str | None, name: str, what: str) -> None:
        with self.db.write() as conn:
            pid = self._scope(conn, project)
            gone = conn.execute(sa.delete(table).where(self._where(table, pid), table.c.name == name)).rowcount
            if not gone:
                raise NotFound(f"no {what} named {name!r}", {"name": name})
            self.audit.record(conn, action, project=project, detail={"name": name})
            self._changed(conn, project)

    # --- certificates --------------------------------------------------------------------------
    @staticmethod
    def _certificate(row: Any, project: str | None) -> CertificateInfo:
        return CertificateInfo(
            row.name,
            project,
            row.subject,
            row.fingerprint,
            row.not_after,
            tuple(json.loads(row.identities)),
            row.certificate,
            row.created_by,
            row.created_at,
        )

    def add_certificate(
        self, project: str | None, name: str, certificate: str, identities: list[str]
    ) -> CertificateInfo:
        check_name(name)
        facts = check_certificate(certificate)
        trusted = check_identities(identities)
        actor = current_actor()
        with self.db.write() as conn:
            pid = self._scope(conn, project)
            if self._exists(conn, s.trust_certificates, pid, name):
                raise Conflict(f"a certificate named {name!r} exists", {"name": name})
            conn.execute(
                sa.insert(s.trust_certificates).values(
                    project_id=pid,
                    name=name,
                    certificate=facts.pem,
                    identities=json.dumps(list(trusted)),
                    subject=facts.subject,
                    fingerprint=facts.fingerprint,
                    not_after=facts.not_after,
                    created_by=actor.name if actor.kind != "system" else None,
                    created_at=now(),
                )
            )
            detail = {
                "name": name,
                "subject": facts.subject,
                "fingerprint": facts.fingerprint,
                "identities": list(trusted),
            }
            self.audit.record(conn, "trust.certificate.add", project=project, detail=detail)
            self._changed(conn, project)
        return self.certificate(project, name)

    def certificates(self, project: str | None) -> list[CertificateInfo]:
        t = s.trust_certificates
        with self.db.read() as conn:
            pid = self._scope(conn, project)
            rows = conn.execute(sa.select(t).where(self._where(t, pid)).order_by(t.c.name)).all()
        return [self._certificate(r, project) for r in rows]

    def certificate(self, project: str | None, name: str) -> CertificateInfo:
        t = s.trust_certificates
        with self.db.read() as conn:
            pid = self._scope(conn, project)
            row = conn.execute(sa.select(t).where(self._where(t, pid), t.c.name == name)).first()
        if row is None:
            raise NotFound(f"no certificate named {name!r}", {"name": name})
        return self._certificate(row, project)

    def delete_certificate(self, project: str | None, name: str) -> None:
        self._delete(s.trust_certificates, "trust.certificate.delete", project, name, "certificate")

    # --- what the verifiers are given ----------------------------------------------------------
    def material(self, project: str) -> TrustMaterial:
        """The project's material and the system-wide material (which applies to every project)."""
        k, c = s.trust_keys, s.trust_certificates
        with self.db.read() as conn:
            pid = ProjectService.id_of(conn, project)
            scope_k = (
                k.c.project_id.is_(None) if pid is None else sa.or_(k.c.project_id.is_(None), k.c.project_id == pid)
            )
            scope_c = (
                c.c.project_id.is_(None) if pid is None else sa.or_(c.c.project_id.is_(None), c.c.project_id == pid)
            )
            keys = conn.execute(sa.select(k.c.name, k.c.public_key).where(scope_k).order_by(k.c.id)).all()
            certs = conn.execute(
                sa.select(c.c.name, c.c.certificate, c.c.identities).where(scope_c).order_by(c.c.id)
            ).all()
        return TrustMaterial(
            keys=tuple(TrustedKey(r.name, r.public_key) for r in keys),
            certificates=tuple(
                TrustedCertificate(r.name, r.certificate, tuple(json.loads(r.identities))) for r in certs
            ),
        )

    # --- policy --------------------------------------------------------------------------------
    def find_policy(self, project: str) -> TrustPolicy:
        """A project's trust policy, remembered for `ttl` seconds (the pull gate asks on every GET)."""
        return self._policies.get(project, lambda: self._read_policy(project))

    def _read_policy(self, project: str) -> TrustPolicy:
        p = s.trust_policies.c
        with self.db.engine.connect() as conn:  # on its own connection: asked outside any transaction
            row = conn.execute(
                sa.select(p.require_signature, p.signed_tags).where(p.project_id == ProjectService.id_query(project))
            ).first()
        if row is None:
            return NO_POLICY
        return TrustPolicy(bool(row.require_signature), tuple(json.loads(row.signed_tags)))

    def forget(self, project: str | None = None) -> None:
        self._policies.forget(project)

    def policy(self, project: str) -> TrustPolicy:
        with self.db.read() as conn:
            ProjectService.existing_id(conn, project)
        self.forget(project)
        return self.find_policy(project)

    def set_policy(
        self, project: str, require_signature: bool | None = None, signed_tags: list[str] | None = None
    ) -> TrustPolicy:
        patterns = None if signed_tags is None else check_tag_patterns(signed_tags)
        with self.db.write() as conn:
            pid = ProjectService.existing_id(conn, project)
            p = s.trust_policies.c
            row = conn.execute(sa.select(p.require_signature, p.signed_tags).where(p.project_id == pid)).first()
            current = (
                NO_POLICY
                if row is None
                else TrustPolicy(bool(row.require_signature), tuple(json.loads(row.signed_tags)))
            )
            new = TrustPolicy(
                current.require_signature if require_signature is None else require_signature,
                current.signed_tags if patterns is None else patterns,
            )
            values = {
                "require_signature": new.require_signature,
                "signed_tags": json.dumps(list(new.signed_tags)),
                "updated_at": now(),
            }
            conn.execute(self.db.upsert(s.trust_policies, ["project_id"], project_id=pid, **values))
            detail = {"require_signature": new.require_signature, "signed_tags": list(new.signed_tags)}
            self.audit.record(conn, "project.trust_policy", project=project, detail=detail)
        self.forget(project)
        return new
