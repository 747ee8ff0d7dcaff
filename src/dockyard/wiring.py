"""Builds the object graph (database, storage, services) from settings. No HTTP here."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from dockyard import __version__
from dockyard.config import Settings, secret
from dockyard.db.engine import Database
from dockyard.services.admission import AdmissionService, registry_hosts
from dockyard.services.audit import AuditLog
from dockyard.services.auth.access_tokens import AccessTokenService
from dockyard.services.auth.authenticator import Authenticator
from dockyard.services.auth.guard import GuardSettings, LoginGuard
from dockyard.services.auth.identity import SCANNER
from dockyard.services.auth.ldap import LdapProvider, LdapSettings
from dockyard.services.auth.liveness import LivenessCache
from dockyard.services.auth.permissions import SystemPermission
from dockyard.services.auth.policy import AccessPolicy
from dockyard.services.auth.robots import RobotService
from dockyard.services.auth.tokens import Scope, TokenService
from dockyard.services.auth.users import UserService
from dockyard.services.events import Listeners
from dockyard.services.events.audit import AuditListener
from dockyard.services.events.outbox import Outbox, OutboxListener
from dockyard.services.exposure import ExposureService
from dockyard.services.gates.chain import GateChain
from dockyard.services.gates.licences import LicenceGate
from dockyard.services.gates.quarantine import QuarantineGate
from dockyard.services.gates.scan_policy import ScanPolicies
from dockyard.services.gates.scan_severity import ScanSeverityGate
from dockyard.services.gates.signature import SignatureGate
from dockyard.services.gates.signed_tags import SignedTagsGate
from dockyard.services.gates.unscanned import UnscannedGate
from dockyard.services.history import TagHistoryListener, TagHistoryService
from dockyard.services.lifecycle import leases
from dockyard.services.lifecycle.collector import DUTY as GC_DUTY
from dockyard.services.lifecycle.collector import GarbageCollector
from dockyard.services.lifecycle.maintenance import VULNDB, Duty, Maintenance
from dockyard.services.lifecycle.retention import RetentionService
from dockyard.services.lifecycle.scrub import Scrubber
from dockyard.services.lifecycle.tag_rules import TagRuleService
from dockyard.services.projects import ProjectService
from dockyard.services.registry import BlobService, CatalogService, ManifestService, UploadService
from dockyard.services.scanning.external import HarborAdapterScanner
from dockyard.services.scanning.listener import ScanningListener
from dockyard.services.scanning.scanner import ScanService
from dockyard.services.trust.auto_quarantine import AutoQuarantine
from dockyard.services.trust.material import TrustService
from dockyard.services.trust.quarantine import QuarantineService
from dockyard.services.trust.signatures import SignatureListener, SignatureService
from dockyard.storage.base import BlobStore
from dockyard.storage.factory import open_store


@dataclass
class Services:
    settings: Settings
    db: Database
    store: BlobStore
    audit: AuditLog
    blobs: BlobService
    uploads: UploadService
    manifests: ManifestService
    catalog: CatalogService
    collector: GarbageCollector
    tag_rules: TagRuleService
    retention: RetentionService
    scrubber: Scrubber
    users: UserService
    projects: ProjectService
    robots: RobotService
    access_tokens: AccessTokenService
    authenticator: Authenticator
    tokens: TokenService
    policy: AccessPolicy
    scans: ScanService
    scan_policies: ScanPolicies
    gates: GateChain  # every pull- and tag-time policy decision (services/gates)
    history: TagHistoryService  # tag history and revert
    exposure: ExposureService  # who pulled what an advisory affects
    quarantines: QuarantineService
    admission: AdmissionService  # POST /admission/validate
    trust: TrustService  # trust material and trust policies
    signatures: SignatureService  # signatures found, their verification and verdicts
    events: Listeners
    outbox: Outbox
    http: httpx.Client  # outbound HTTP: the external scanner, vulnerability sources, OIDC; webhooks next
    _unverified: httpx.Client | None = field(default=None, repr=False)

    def http_for(self, verify_tls: bool) -> httpx.Client:
        """The outbound client for a peer; for one whose certificate a setting says not to check
        (`oidc_verify_tls = false`) one like it without verification, made once: httpx verifies per
        client, not per request."""
        if verify_tls:
            return self.http
        if self._unverified is None:
            self._unverified = http_client(verify=False)
        return self._unverified

    def close(self) -> None:
        self.audit.close()
        self.scans.vulndb.close()
        self.http.close()
        if self._unverified is not None:
            self._unverified.close()
        self.db.dispose()


# Outbound HTTP, built in this one place: a request that hangs must not hold a scan (or a delivery)
# for ever, and the far end can tell who calls it.
HTTP_CONNECT_TIMEOUT = 10.0
HTTP_READ_TIMEOUT = 60.0
USER_AGENT = f"dockyard/{__version__}"


def http_client(
    transport: httpx.BaseTransport | None = None, max_connections: int = 20, verify: bool | str = True
) -> httpx.Client:
    """The process's outbound HTTP client. `transport`: tests pass an httpx.MockTransport here."""
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(HTTP_READ_TIMEOUT, connect=HTTP_CONNECT_TIMEOUT),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections // 2),
        headers={"User-Agent": USER_AGENT},
        verify=verify,
    )


def ldap_provider(settings: Settings) -> LdapProvider | None:
    if not settings.ldap_url:
        return None
    assert settings.ldap_user_base is not None  # checked by the settings validator
    return LdapProvider(
        LdapSettings(
            url=settings.ldap_url,
            user_base=settings.ldap_user_base,
            bind_dn=settings.ldap_bind_dn,
            bind_password=secret(settings.ldap_bind_password),
            user_filter=settings.ldap_user_filter,
            group_base=settings.ldap_group_base,
            group_filter=settings.ldap_group_filter,
            group_name_attribute=settings.ldap_group_name_attribute,
            start_tls=settings.ldap_start_tls,
            verify_tls=settings.ldap_verify_tls,
            ca_file=settings.ldap_ca_file,
        )
    )


def build_services(
    settings: Settings, store: BlobStore | None = None, db: Database | None = None, http: httpx.Client | None = None
) -> Services:
    """`http`: the outbound HTTP client (default: `http_client()`; tests inject one on a MockTransport)."""
    db = db or Database(settings.resolved_database_url)
    http = http if http is not None else http_client()
    store = store or open_store(settings)
    audit = AuditLog(db, retention_seconds=settings.audit_retention_days * 86400)
    liveness = LivenessCache(ttl=settings.account_check_seconds)
    catalog = CatalogService(db)
    projects = ProjectService(db, audit, catalog)
    users = UserService(db, audit, projects, liveness)
    projects.users = users  # each asks the other: a member must exist; a deleted user's grants go
    robots = RobotService(db, audit, projects, liveness)
    access_tokens = AccessTokenService(db, audit, users, liveness)
    guard = LoginGuard(
        db,
        GuardSettings(
            slow_after=settings.login_slow_after,
            lock_after=settings.login_lock_after,
            ip_slow_after=settings.login_ip_slow_after,
            ip_lock_after=settings.login_ip_lock_after,
            window_seconds=settings.login_window_seconds,
            lockout_seconds=settings.login_lockout_seconds,
        ),
    )
    from dockyard.scan.vulndb import VulnDB  # the scanner's imports load only with the services

    tokens = TokenService(db, settings.token_issuer, settings.token_service, settings.token_ttl_seconds)
    scans = ScanService(
        db,
        store,
        VulnDB(settings.resolved_vulndb_path, http),
        audit,
        catalog,
        projects,
        settings.scan_on_push,
        external_scanner(settings, tokens, http),
        settings.vulndb_stale_after_seconds,
        settings.vulndb_severity_sources,
    )
    # The registry's listeners, in this order, inside each change's transaction (services/events),
    # after the registry's own garbage-collection bookkeeping, which its services install themselves.
    outbox = Outbox(db)
    trust = TrustService(db, audit, ttl=settings.account_check_seconds)
    signatures = SignatureService(db, store, trust, catalog, settings.signature_max_blob_bytes)
    events = Listeners(
        AuditListener(audit),
        TagHistoryListener(),
        ScanningListener(scans, catalog),
        SignatureListener(signatures),
        OutboxListener(outbox),
    )
    grace = settings.gc_grace_seconds
    uploads = UploadService(db, store, grace, settings.max_upload_sessions_per_identity, events)
    manifests = ManifestService(db, settings.max_manifest_bytes, events, grace)
    blobs = BlobService(db, store, grace, events)
    policy = AccessPolicy(
        db,
        projects,
        robots,
        settings.users_can_create_projects,
        settings.auto_create_projects,
        settings.security_reviewers,
    )
    scan_policies = ScanPolicies(db, projects, settings.scan_allowlist, ttl=settings.account_check_seconds)
    quarantines = QuarantineService(db, events, audit, projects, ttl=settings.account_check_seconds)
    scans.results.after_findings = AutoQuarantine(quarantines, scan_policies).findings_changed
    gates = gate_chain(scan_policies, policy, quarantines, trust, signatures)
    manifests.gates = gates  # a push by tag passes the tag-time gates before it is stored
    admission = AdmissionService(
        manifests,
        gates,
        registry_hosts(settings.public_url, settings.admission_registry_names),
        allow_other_registries=settings.admission_other_registries == "allow",
    )
    return Services(
        settings=settings,
        db=db,
        store=store,
        audit=audit,
        blobs=blobs,
        uploads=uploads,
        manifests=manifests,
        collector=GarbageCollector(
            db,
            store,
            audit,
            grace,
            settings.upload_ttl_seconds,
            settings.gc_pace,
            upload_idle_ttl=settings.upload_idle_ttl_seconds,
            lease_ttl=leases.ttl_for(settings.gc_interval_seconds, settings.duty_lease_seconds),
            events=events,
            uploads=uploads,
            history_keep=settings.tag_history_keep_days * 86400,
        ),
        tag_rules=TagRuleService(db, audit),
        retention=RetentionService(db, manifests, audit, catalog),
        scrubber=Scrubber(blobs, audit),
        catalog=catalog,
        users=users,
        projects=projects,
        robots=robots,
        access_tokens=access_tokens,
        authenticator=Authenticator(db, users, robots, access_tokens, audit, guard, ldap_provider(settings), liveness),
        tokens=tokens,
        policy=policy,
        scans=scans,
        scan_policies=scan_policies,
        gates=gates,
        history=TagHistoryService(db, manifests, catalog, gates, audit),
        exposure=ExposureService(db, scans, catalog, audit),
        quarantines=quarantines,
        admission=admission,
        trust=trust,
        signatures=signatures,
        events=events,
        outbox=outbox,
        http=http,
    )


def gate_chain(
    scan_policies: ScanPolicies,
    policy: AccessPolicy,
    quarantines: QuarantineService,
    trust: TrustService,
    signatures: SignatureService,
) -> GateChain:
    """The gates, in the order they are asked: the first refusal is the one a client sees."""
    may_pull_quarantined = lambda caller: policy.can_system(caller, SystemPermission.PULL_QUARANTINED)  # noqa: E731
    return GateChain(
        [
            QuarantineGate(quarantines, may_pull_quarantined),
            UnscannedGate(scan_policies),
            ScanSeverityGate(scan_policies),
            LicenceGate(scan_policies),
            SignatureGate(trust, signatures),
            SignedTagsGate(trust, signatures),
        ],
        # The scanner identity must read an image to judge it.
        exempt=lambda caller: policy.can_system(caller, SystemPermission.BYPASS_PULL_GATE),
    )


def external_scanner(settings: Settings, tokens: TokenService, http: httpx.Client) -> HarborAdapterScanner | None:
    if not settings.external_scanner_url:
        return None

    def pull_authorization(repository: str) -> str:
        # A short-lived token that may only pull this repository, for the adapter to read the image with.
        scope = Scope("repository", repository, frozenset({"pull"}))
        return "Bearer " + tokens.issue(SCANNER, [scope], ttl=900).token

    registry_url = settings.public_url or f"http://{settings.host}:{settings.port}"
    return HarborAdapterScanner(
        settings.external_scanner_url,
        registry_url,
        pull_authorization,
        secret(settings.external_scanner_authorization),
        client=http,
    )


def prepare_database(services: Services) -> None:
    """Schema and signing key: what every command that opens the database needs. Creates no user:
    the first administrator is made by the first `serve` (or `dockyard user create --admin`)."""
    services.settings.data_dir.mkdir(parents=True, exist_ok=True)
    services.db.migrate()
    services.tokens.ensure_key()


def prepare(services: Services) -> str | None:
    """First-start work, done by `dockyard serve` before serving: the database, then the `admin`
    user if there is no user at all.

    Returns the generated admin password when one was generated (the caller must show it).
    """
    prepare_database(services)
    return services.users.ensure_admin(secret(services.settings.admin_password))


def maintenance(services: Services) -> Maintenance:
    """The background duties a server process takes part in (each run by one replica at a time)."""
    s = services.settings
    return Maintenance(
        services.db,
        lease_seconds=s.duty_lease_seconds,
        duties=[
            Duty(GC_DUTY, s.gc_interval_seconds, services.collector.run),
            Duty(
                "retention",
                s.retention_interval_seconds,
                lambda: services.retention.run_due(s.retention_interval_seconds),
            ),
            Duty("scrub", s.scrub_interval_seconds, lambda: services.scrubber.run(s.scrub_rate_mb * 1_000_000)),
            # Not under a lease: every replica takes scans from the work queue (its claims are per item).
            Duty("scan", s.scan_interval_seconds if s.scanner_enabled else 0, services.scans.run, exclusive=False),
            # Likewise: signatures are verified from the work queue by every replica.
            Duty("signatures", s.signature_interval_seconds, services.signatures.run, exclusive=False),
            Duty(
                VULNDB,
                s.vulndb_update_interval_seconds,
                lambda: services.scans.update_vulndb(s.vulndb_sources),
                on_request=True,  # POST /vulndb/update asks for it: downloads never run in a request
                # An empty database is updated at once, not one interval (6 h) after start.
                due_at_start=lambda: services.scans.vulndb.count() == 0,
            ),
        ],
    )
