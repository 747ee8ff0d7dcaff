"""The schema, as SQLAlchemy Core tables; Alembic migrations are generated from it.

Services use Core rather than the ORM: the hot paths (manifest by tag, tag lists) are single
indexed statements, and keeping SQL visible makes their cost obvious.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

# Timestamps are UTC seconds as float: portable, sortable, cheap on both engines.
Timestamp = sa.Float


def new_uid() -> str:
    return uuid.uuid4().hex


repositories = sa.Table(
    "repositories",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
    # The project it belongs to (by the first path component), for quotas and usage.
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="SET NULL"), nullable=True),
    # Bytes of the blobs linked to it, kept up to date with every link added or removed.
    sa.Column("used_bytes", sa.BigInteger, nullable=False, server_default="0"),
    # When a manifest was last pushed or a tag last set in it (0: never), kept by the push itself so
    # the pages sort a project's repositories by it through an index (repositories.note_push).
    sa.Column("pushed_at", Timestamp, nullable=False, server_default="0"),
)

# A blob whose verified bytes are in storage. Rows are global; repositories see blobs via links.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("digest", sa.String(150), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    # ok | deleting: the collector marks a blob before it removes the bytes (see docs/garbage-collection.md).
    sa.Column("status", sa.String(16), nullable=False, server_default="ok"),
)

# Which repository may see which blob: set by an upload into it, a mount, or a manifest push.
repository_blobs = sa.Table(
    "repository_blobs",
    metadata,
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("digest", sa.String(150), sa.ForeignKey("blobs.digest"), primary_key=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_repository_blobs_digest", "digest"),
)

manifests = sa.Table(
    "manifests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    sa.Column("digest", sa.String(150), nullable=False),
    sa.Column("media_type", sa.String(255), nullable=False),
    sa.Column("artifact_type", sa.String(255), nullable=True),
    sa.Column("subject_digest", sa.String(150), nullable=True),
    sa.Column("annotations", sa.Text, nullable=True),  # JSON, for the referrers API
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("repository_id", "digest"),
    sa.Index("ix_manifests_subject", "repository_id", "subject_digest"),
)

# Blobs (config and layers) a manifest needs.
manifest_blobs = sa.Table(
    "manifest_blobs",
    metadata,
    sa.Column("manifest_id", sa.Integer, sa.ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("digest", sa.String(150), primary_key=True),
    sa.Index("ix_manifest_blobs_digest", "digest"),
)

# Manifests an index names (same repository).
manifest_children = sa.Table(
    "manifest_children",
    metadata,
    sa.Column("manifest_id", sa.Integer, sa.ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("child_digest", sa.String(150), primary_key=True),
    sa.Index("ix_manifest_children_child", "child_digest"),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("manifest_id", sa.Integer, sa.ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_tags_manifest_name", "manifest_id", "name"),
    sa.Index("ix_tags_manifest_updated", "manifest_id", "updated_at"),
)

upload_sessions = sa.Table(
    "upload_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),  # last append: the idle expiry reads it
    sa.Column("owner", sa.String(255), nullable=True),  # the identity that opened it (per-identity cap)
    # Staged bytes, including the chunk being written: they count against the project's quota.
    sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
    # The one request appending to or committing this upload, until when (any replica respects it).
    sa.Column("claim", sa.String(32), nullable=True),
    sa.Column("claimed_until", Timestamp, nullable=True),
    # Where the staged bytes stand, as the store describes them (storage.base.UploadState as JSON:
    # size, S3's multipart id and parts, the resumable hash state): written with each append's
    # release, handed to the store with the next append or the commit, on whichever replica.
    sa.Column("store_state", sa.Text, nullable=True),
    sa.Index("ix_upload_sessions_owner", "owner"),
    sa.Index("ix_upload_sessions_repository", "repository_id"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(255), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", Timestamp, nullable=False),
    # Where the user comes from: local (password here), ldap or oidc (password checked there).
    sa.Column("provider", sa.String(16), nullable=False, server_default="local"),
    sa.Column("email", sa.String(255), nullable=True),
    # Groups the provider reported at the last login (JSON list): matched against group grants.
    sa.Column("groups", sa.Text, nullable=True),
    sa.Column("can_create_projects", sa.Boolean, nullable=False, server_default=sa.false()),
    # OIDC users log in to the registry with this secret (SHA-256; the secret is 256 random bits).
    sa.Column("cli_secret_hash", sa.String(64), nullable=True),
    sa.Column("last_login_at", Timestamp, nullable=True),
    # What tokens and sessions name the account by: random, so a user deleted and created again under
    # the same name (or a reused row id: SQLite reuses the highest one) is never the old account.
    sa.Column("uid", sa.String(32), nullable=False, default=new_uid),
    sa.Index("ix_users_uid", "uid", unique=True),
)

# A project groups repositories `<project>/...`; public projects may be pulled anonymously.
projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("public", sa.Boolean, nullable=False, default=False),
    sa.Column("created_by", sa.String(255), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("quota_bytes", sa.BigInteger, nullable=True),  # None: no quota
    # Bytes of distinct blobs linked anywhere in the project (a blob shared by two repositories counts once).
    sa.Column("used_bytes", sa.BigInteger, nullable=False, server_default="0"),
    # Scanning policy (None: the system default).
    sa.Column("scan_on_push", sa.Boolean, nullable=True),
    sa.Column("block_severity", sa.String(16), nullable=True),  # refuse pulls with findings at or above
    sa.Column("block_unscanned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("vulnerability_allowlist", sa.Text, nullable=True),  # JSON list of advisory/CVE ids
    sa.Column("licence_denylist", sa.Text, nullable=True),  # JSON list of SPDX ids
    sa.Column("block_denied_licences", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Which blobs a project holds, and in how many of its repositories: the basis of `used_bytes`.
project_blobs = sa.Table(
    "project_blobs",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("digest", sa.String(150), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("links", sa.Integer, nullable=False),
)

# Tag rules per project: immutability (a matching tag, once pushed, is never moved or deleted).
tag_rules = sa.Table(
    "tag_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # immutable
    sa.Column("pattern", sa.String(255), nullable=False),
    sa.Column("created_by", sa.String(255), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("project_id", "kind", "pattern"),
)

# A project's retention policy (JSON: keep_last, keep_days, keep_patterns, remove_untagged).
retention_policies = sa.Table(
    "retention_policies",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("policy", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("last_run_at", Timestamp, nullable=True),
)

# Things that may have become garbage, to be looked at once `due_at` passes: the collector's work
# grows with what changed, not with the size of the registry. kind: manifest | link | blob.
gc_queue = sa.Table(
    "gc_queue",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("repository_id", sa.Integer, nullable=False),  # 0 for kind=blob
    sa.Column("digest", sa.String(150), nullable=False),
    sa.Column("due_at", Timestamp, nullable=False),
    sa.UniqueConstraint("kind", "repository_id", "digest"),
    sa.Index("ix_gc_queue_due", "due_at"),
)

# Leases: one process at a time runs each background duty (collector, retention, scrub).
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
)

# Background duties run on request (POST /vulndb/update): the API records the request, the maintenance
# loop of the replica that gets the duty's lease runs it; the last run's outcome, for status.
duty_runs = sa.Table(
    "duty_runs",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("requested_at", Timestamp, nullable=True),
    sa.Column("requested_by", sa.String(255), nullable=True),
    sa.Column("started_at", Timestamp, nullable=True),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("result", sa.Text, nullable=True),  # JSON: the last run's summary
    sa.Column("error", sa.Text, nullable=True),
)

# Role grants: to a user or to a group (as named by LDAP or the OIDC groups claim).
project_members = sa.Table(
    "project_members",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("principal_kind", sa.String(8), primary_key=True),  # user | group
    sa.Column("principal", sa.String(255), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_project_members_principal", "principal_kind", "principal"),
)

robots = sa.Table(
    "robots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),  # the login name, robot$<name>
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_by", sa.String(255), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("uid", sa.String(32), nullable=False, default=new_uid),  # as users.uid
    sa.Index("ix_robots_uid", "uid", unique=True),
)

# What a robot may do in each project it is scoped to: a comma-separated subset of pull,push,delete.
robot_permissions = sa.Table(
    "robot_permissions",
    metadata,
    sa.Column("robot_id", sa.Integer, sa.ForeignKey("robots.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("actions", sa.String(64), nullable=False),
    sa.Index("ix_robot_permissions_project", "project_id"),
)

# Personal access tokens: a named, expiring, revocable password for registry logins.
access_tokens = sa.Table(
    "access_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("revoked_at", Timestamp, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_used_at", Timestamp, nullable=True),
    sa.UniqueConstraint("user_id", "name"),
)

# One row per push, pull, delete, login, permission change, policy decision …
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),  # username, robot$name, or "" for anonymous
    sa.Column("actor_kind", sa.String(16), nullable=False),  # user | robot | anonymous | system
    sa.Column("provider", sa.String(16), nullable=True),
    sa.Column("source_ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(512), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("project", sa.String(255), nullable=True),
    sa.Column("repository", sa.String(255), nullable=True),
    sa.Column("reference", sa.String(255), nullable=True),  # tag, or another target name (user, robot…)
    sa.Column("digest", sa.String(150), nullable=True),
    sa.Column("result", sa.String(16), nullable=False),  # success | failure | denied
    sa.Column("detail", sa.Text, nullable=True),  # JSON
    # Filters are "this column, newest first": each index ends with (ts, id), the paging key, so a
    # page is an index range scan however deep it is.
    sa.Index("ix_audit_events_ts", "ts", "id"),
    sa.Index("ix_audit_events_project", "project", "ts", "id"),
    sa.Index("ix_audit_events_repository", "repository", "ts", "id"),
    sa.Index("ix_audit_events_actor", "actor", "ts", "id"),
    sa.Index("ix_audit_events_action", "action", "ts", "id"),
    sa.Index("ix_audit_events_digest", "digest", "ts", "id"),
)

# Pulls counted per digest, UTC day, project and who pulled (identity rows) or from where (source
# rows), written with the audit log's events and pruned with them (services/pull_rollups.py): the
# exposure report's counts read days, not every pull. "" stands for an absent value.
pull_rollups = sa.Table(
    "pull_rollups",
    metadata,
    sa.Column("digest", sa.String(150), primary_key=True),
    sa.Column("dimension", sa.String(8), primary_key=True),  # identity | source
    sa.Column("day", sa.Integer, primary_key=True),  # floor(ts / 86400)
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("actor", sa.String(255), primary_key=True),
    sa.Column("actor_kind", sa.String(16), primary_key=True),
    sa.Column("provider", sa.String(16), primary_key=True),
    sa.Column("source_ip", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("first_ts", Timestamp, nullable=False),
    sa.Column("last_ts", Timestamp, nullable=False),
)

# Registry events that leave the process (webhooks, replication), written in the transaction of
# their change and deleted when a consumer takes them (services/events/outbox.py). Not derived from
# audit_events: pruning the audit log must not drop a delivery.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),  # manifest.pushed, tag.moved, …
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("digest", sa.String(150), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the event as JSON
    sa.Column("created_at", Timestamp, nullable=False),
)

# Failed-login counters for brute-force protection, shared by every replica.
login_failures = sa.Table(
    "login_failures",
    metadata,
    # "ip:<addr>", "user:<name>" (account-wide: slows, never locks) or "pair:<hash of name and addr>"
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_start", Timestamp, nullable=False),
    sa.Column("locked_until", Timestamp, nullable=True),
    sa.Column("account", sa.String(300), nullable=True),  # the login name of user: and pair: keys (for unlock)
    sa.Column("refused", sa.Integer, nullable=False, server_default="0"),  # attempts refused while locked
    sa.Index("ix_login_failures_account", "account"),
)

# Token-signing keys live in the database so every replica signs and verifies with the same key.
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("algorithm", sa.String(16), nullable=False),
    sa.Column("private_pem", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

# --- scanning -------------------------------------------------------------------------------------

# A layer's inventory depends only on its bytes: extracted once, shared by every image with the layer.
layer_inventories = sa.Table(
    "layer_inventories",
    metadata,
    sa.Column("digest", sa.String(150), primary_key=True),
    sa.Column("scanner_version", sa.Integer, nullable=False),
    sa.Column("inventory", sa.Text, nullable=False),  # JSON (LayerInventory.to_json)
    sa.Column("created_at", Timestamp, nullable=False),
)

# One row per image manifest digest (content-addressed: the same digest in two repositories is the
# same image). status: queued | scanning | done | failed | skipped | unsupported. The result and the
# status the API shows; the work itself (claims, retries) is an item of the `scan` work queue.
image_scans = sa.Table(
    "image_scans",
    metadata,
    sa.Column("digest", sa.String(150), primary_key=True),
    sa.Column("repository", sa.String(255), nullable=False),  # where it was first pushed (for the audit trail)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("queued_at", Timestamp, nullable=False),
    sa.Column("scanned_at", Timestamp, nullable=True),
    sa.Column("vulndb_generation", sa.Integer, nullable=True),
    # What the built-in scanner matched against: advisories in the database (0: no data, so "not
    # scanned" for the pull gate) and when its sources were last checked successfully.
    sa.Column("vulndb_advisories", sa.Integer, nullable=True),
    sa.Column("vulndb_updated_at", Timestamp, nullable=True),
    sa.Column("distro", sa.String(64), nullable=True),
    sa.Column("packages", sa.Text, nullable=True),  # JSON: the combined inventory, for re-evaluation
    sa.Column("packages_sha", sa.String(64), nullable=True),  # its hash: equal inventories match once
    sa.Column("summary", sa.Text, nullable=True),  # JSON: findings by severity
    sa.Column("licences", sa.Text, nullable=True),  # JSON: distinct licence expressions
    sa.Column("error", sa.Text, nullable=True),
    # "dockyard" (the built-in scanner: re-evaluated from stored inventories) or "external:<url>".
    sa.Column("scanner", sa.String(255), nullable=True),
    sa.Index("ix_image_scans_status", "status", "queued_at"),
)

image_findings = sa.Table(
    "image_findings",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(150), nullable=False),
    sa.Column("advisory_id", sa.String(128), nullable=False),
    sa.Column("aliases", sa.Text, nullable=False),  # JSON list
    sa.Column("ecosystem", sa.String(16), nullable=False),
    sa.Column("package", sa.String(512), nullable=False),
    sa.Column("version", sa.String(255), nullable=False),
    sa.Column("fixed_version", sa.String(255), nullable=True),
    sa.Column("purl", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("link", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Index("ix_image_findings_digest", "digest"),
    sa.Index("ix_image_findings_advisory", "advisory_id"),
)

# Aliases of findings, one row each, so "which images are affected by CVE-…" is an index lookup.
finding_aliases = sa.Table(
    "finding_aliases",
    metadata,
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Column("digest", sa.String(150), primary_key=True),
    sa.Column("advisory_id", sa.String(128), primary_key=True),
)

image_packages = sa.Table(
    "image_packages",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(150), nullable=False),
    sa.Column("ecosystem", sa.String(16), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("version", sa.String(255), nullable=False),
    sa.Column("purl", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("licence", sa.Text, nullable=True),
    sa.Index("ix_image_packages_digest", "digest"),
    sa.Index("ix_image_packages_name", "name", "version"),
)

# --- the work queue -------------------------------------------------------------------------------

# Background work any number of processes take from (services/queue): one row per item of a named
# queue. Claimed by a conditional UPDATE that sets a new claim token; `processing_expires` is pushed
# on by the holder's heartbeat, and an item whose holder died (expired) is claimable again while it has
# retries left. Completed items are deleted; an item out of retries stays as `failed`, with its error.
queue_items = sa.Table(
    "queue_items",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("key", sa.String(255), nullable=True),  # at most one live item per key (idempotent puts)
    sa.Column("body", sa.Text, nullable=False),  # JSON
    sa.Column("state", sa.String(16), nullable=False),  # available | claimed | failed
    sa.Column("available_after", Timestamp, nullable=False),
    sa.Column("processing_expires", Timestamp, nullable=True),
    sa.Column("retries_remaining", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Column("claimed_by", sa.String(128), nullable=True),  # host:pid:thread, for the operator
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("queue", "key"),
    sa.Index("ix_queue_items_queue", "queue", "state", "available_after"),
)

# --- history: tag history and exposure ----------------------------------------------------------

# Every tag move and deletion, written by the registry listener (services/history) in the change's
# transaction. `digest` is the manifest the entry is about: the new target of a move, the target a
# deleted tag had; `previous_digest` is what a moved tag pointed at before (None: the tag was new).
tag_history = sa.Table(
    "tag_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),  # exposure filters by what the caller may read
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("tag", sa.String(128), nullable=False),
    sa.Column("digest", sa.String(150), nullable=False),
    sa.Column("previous_digest", sa.String(150), nullable=True),
    sa.Column("action", sa.String(16), nullable=False),  # moved | deleted
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("actor_kind", sa.String(16), nullable=False),
    # A tag's history newest first (the listing, the listener's "where was it"); a digest's entries
    # (the collector's hold, exposure).
    sa.Index("ix_tag_history_tag", "repository", "tag", "at", "id"),
    # A digest's entries by tag (the exposure report reads the first few tags' intervals).
    sa.Index("ix_tag_history_digest_tag", "digest", "repository", "tag", "at", "id"),
    sa.Index("ix_tag_history_previous_tag", "previous_digest", "repository", "tag", "at", "id"),
)

# Exposure: the pulls of a set of digests in a time window, without reading other actions' rows.
sa.Index("ix_audit_events_action_digest", audit_events.c.action, audit_events.c.digest, audit_events.c.ts)
# --- quarantine (services/trust/quarantine.py) ----------------------------------------------------

# A quarantined image: per project and digest, so it is withheld from every repository of the project
# that holds it, and a maintainer's decision reaches no further than their own project.
image_quarantines = sa.Table(
    "image_quarantines",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("digest", sa.String(150), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("quarantined_by", sa.String(255), nullable=False),  # the actor's name ("system": automatic)
    sa.Column("quarantined_at", Timestamp, nullable=False),
    sa.Column("automatic", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("advisory_id", sa.String(128), nullable=True),  # what an automatic quarantine was for
)

# A project's automatic quarantine rule (no row: none).
quarantine_policies = sa.Table(
    "quarantine_policies",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("auto_quarantine_severity", sa.String(16), nullable=True),  # CRITICAL, HIGH, …
)
# --- ui: the indexes the web UI's pages read by (services/registry/browse.py) -----------------------
# A repository's tags newest first (the tags page's keyset), and a project's repositories.
sa.Index("ix_tags_repository_updated", tags.c.repository_id, tags.c.updated_at)
sa.Index("ix_repositories_project_pushed", repositories.c.project_id, repositories.c.pushed_at)
# Name search (`LIKE '%…%'`) by trigrams, on PostgreSQL where pg_trgm could be added (migration 0018).
for _table in (tags, repositories):
    sa.Index(
        f"ix_{_table.name}_name_trgm",
        _table.c.name,
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql")
# --- signatures (area: signatures) ------------------------------------------------------------------

# Trust material: cosign public keys and Notary Project trust-store certificates, per project, or
# system-wide (project_id NULL: applies to every project). Owned by services/trust/material.py.
trust_keys = sa.Table(
    "trust_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),  # PEM (SubjectPublicKeyInfo)
    sa.Column("algorithm", sa.String(32), nullable=False),  # ecdsa-p256, ecdsa-p384, rsa-3072, ed25519, …
    sa.Column("fingerprint", sa.String(100), nullable=False),  # sha256 of the DER public key
    sa.Column("created_by", sa.String(255), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("project_id", "name"),
    # NULLs are distinct in a unique constraint: system-wide names are unique by their own index.
    sa.Index(
        "ix_trust_keys_system_name",
        "name",
        unique=True,
        sqlite_where=sa.text("project_id IS NULL"),
        postgresql_where=sa.text("project_id IS NULL"),
    ),
)

trust_certificates = sa.Table(
    "trust_certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("certificate", sa.Text, nullable=False),  # PEM
    sa.Column("identities", sa.Text, nullable=False),  # JSON list of trusted X.509 subjects ([]: any)
    sa.Column("subject", sa.Text, nullable=False),  # the certificate's own subject (RFC 4514)
    sa.Column("fingerprint", sa.String(100), nullable=False),
    sa.Column("not_after", Timestamp, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("project_id", "name"),
    sa.Index(
        "ix_trust_certificates_system_name",
        "name",
        unique=True,
        sqlite_where=sa.text("project_id IS NULL"),
        postgresql_where=sa.text("project_id IS NULL"),
    ),
)

# A project's signature policy (no row: nothing required).
trust_policies = sa.Table(
    "trust_policies",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("require_signature", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("signed_tags", sa.Text, nullable=False, server_default="[]"),  # JSON list of fnmatch patterns
    sa.Column("updated_at", Timestamp, nullable=False),
)

# A signature found in a repository: the signature manifest and the digest it signs. Owned by
# services/trust/signatures.py; found by the registry listener when the signature is pushed.
signatures = sa.Table(
    "signatures",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("signature_digest", sa.String(150), nullable=False),
    sa.Column("subject_digest", sa.String(150), nullable=False),
    sa.Column("format", sa.String(32), nullable=False),
    sa.Column("discovered_at", Timestamp, nullable=False),
    sa.UniqueConstraint("repository", "signature_digest"),
    sa.Index("ix_signatures_subject", "repository", "subject_digest"),
)

# One verdict per signature in a signature manifest (a cosign .sig manifest holds one per layer),
# replaced as a whole each time the signature is verified again.
signature_verdicts = sa.Table(
    "signature_verdicts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column(
        "signature_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("signatures.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("format", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # verified | invalid | untrusted | expired
    sa.Column("signer", sa.Text, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("verified_at", Timestamp, nullable=False),
    sa.UniqueConstraint("signature_id", "position"),
)
