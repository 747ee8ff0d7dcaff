"""Exposure: which stored images an advisory (or a package at a version) affects, which tags point
at them now and pointed at them in a time window, and who pulled them, when and from where.

Each part is one indexed statement against its owner's tables (the scanner's findings and packages,
the registry's manifests and tags, the tag history, the audit log), so the report stays fast with
millions of audit rows (bench/bench_exposure.py). Callers say which projects the caller may read;
what lies elsewhere is left out, not refused.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dockyard.db.engine import Database
from dockyard.oci.names import project_of
from dockyard.services.audit import PULL_COLUMNS, AuditLog
from dockyard.services.errors import InvalidInput
from dockyard.services.history.service import entries_naming
from dockyard.services.registry.catalog import CatalogService
from dockyard.services.scanning.scanner import ScanService

IDENTITY = ("actor", "actor_kind", "provider")
SOURCE = ("source_ip",)


@dataclass(frozen=True, slots=True)
class ExposureQuery:
    advisory: str | None = None
    package: str | None = None
    version: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if (self.advisory is None) == (self.package is None):
            raise InvalidInput("give either ?advisory=ID or ?package=NAME (with &version=V)")
        if self.version is not None and self.package is None:
            raise InvalidInput("?version needs ?package")
        for value in (self.advisory, self.package, self.version):
            if value is not None and (not value or len(value) > 512 or "\x00" in value):
                raise InvalidInput("advisory, package and version are 1 to 512 characters")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidInput("since must be before until", {"since": self.since, "until": self.until})

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("advisory", "package", "version", "since", "until")}


@dataclass
class Affected:
    """The digests a query affects and why: findings or packages of an image, or the children of an index."""

    images: dict[str, list[dict[str, Any]]]  # image digest -> its matching findings or packages
    indexes: dict[str, list[str]]  # index digest -> the affected images it lists

    @property
    def digests(self) -> list[str]:
        return sorted({*self.images, *self.indexes})


class ExposureService:
    def __init__(self, db: Database, scans: ScanService, catalog: CatalogService, audit: AuditLog) -> None:
        self.db = db
        self.scans = scans
        self.catalog = catalog
        self.audit = audit

    def affected(self, q: ExposureQuery) -> Affected:
        if q.advisory is not None:
            rows = self.scans.findings_of(q.advisory)
        else:
            assert q.package is not None
            rows = self.scans.packages_named(q.package, q.version)
        images: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            digest = row.pop("digest")
            images.setdefault(digest, []).append(row)
        indexes: dict[str, list[str]] = {}
        for index, child in self.catalog.indexes_listing(images):
            indexes.setdefault(index, []).append(child)
        return Affected(images, {k: sorted(v) for k, v in indexes.items()})

    def report(
        self,
        q: ExposureQuery,
        projects: frozenset[str] | None,
        limit: int = 100,
        before: str | None = None,
        detail: int | None = None,
    ) -> dict[str, Any]:
        """The whole answer; `projects`: what the caller may read (None: everything). Pulls are paged
        (`limit`, `before`: the cursor of the previous page); their counts cover them all. `detail`:
        at most about that many current tags and history intervals (a page shows a few; an image
        under 100,000 tags must not cost reading them all) and only the most frequent identities
        and source addresses, `truncated` then says what was cut."""
        affected = self.affected(q)
        digests = affected.digests

        def visible(repository: str) -> bool:
            return projects is None or project_of(repository) in projects

        stored: dict[str, set[str]] = {}
        for repository, digest in self.catalog.holding(digests):
            if visible(repository):
                stored.setdefault(digest, set()).add(repository)
        tags_now = []
        cap = None if detail is None else detail + 1
        rows = self.catalog.stored_with_tags(digests, cap)
        for repository, digest, tag, updated_at in rows:
            if tag is not None and visible(repository):
                tags_now.append({"repository": repository, "tag": tag, "digest": digest, "since": updated_at})
        history, history_cut = self._intervals(digests, q.since, q.until, projects, cap)
        by_identity = self.audit.pull_counts(digests, IDENTITY, q.since, q.until, projects, cap)
        by_source = self.audit.pull_counts(digests, SOURCE, q.since, q.until, projects, cap)
        truncated = {
            "tags": cap is not None and len(rows) >= cap,
            "tag_history": history_cut,
            "identities": cap is not None and len(by_identity) >= cap,
            "sources": cap is not None and len(by_source) >= cap,
        }
        if detail is not None:
            tags_now, history = tags_now[:detail], history[:detail]
            by_identity, by_source = by_identity[:detail], by_source[:detail]
        # Per digest: the total, and which digests were pulled where the caller sees it (a few rows).
        by_digest = self.audit.pull_counts(digests, ("digest",), q.since, q.until, projects) if by_identity else []
        pulls, cursor = self.audit.pulls_of(digests, q.since, q.until, projects, limit, before)
        # A digest is reported where the caller sees it: stored, tagged or pulled in a readable project.
        seen = set(stored) | {h["digest"] for h in history} | {str(r["digest"]) for r in by_digest}
        out_digests = []
        for digest in digests:
            if digest not in seen:
                continue
            entry: dict[str, Any] = {"digest": digest, "repositories": sorted(stored.get(digest, ()))}
            if digest in affected.images:
                entry |= {"kind": "image", "matches": affected.images[digest]}
            else:
                entry |= {"kind": "index", "children": affected.indexes[digest]}
            out_digests.append(entry)
        out: dict[str, Any] = {
            "query": q.as_dict(),
            "digests": out_digests,
            "tags": tags_now,
            "tag_history": history,
            "pulls": {
                "total": sum(int(r["count"]) for r in by_digest),
                "by_identity": by_identity,
                "by_source": by_source,
                "events": pulls,
                "next_before": cursor,
            },
        }
        if detail is not None:
            out["truncated"] = truncated
        return out

    def intervals(
        self, digests: list[str], since: float | None, until: float | None, projects: frozenset[str] | None
    ) -> list[dict[str, Any]]:
        """When each tag pointed at an affected digest, from the tag history: intervals [from, until)
        that overlap the window (`until` None: it still does; `from` None: since before the history)."""
        return self._intervals(digests, since, until, projects, None)[0]

    def _intervals(
        self,
        digests: list[str],
        since: float | None,
        until: float | None,
        projects: frozenset[str] | None,
        entries: int | None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """`intervals` from the first `entries` history entries (None: all), and whether some were
        left: the last tag read may have more entries, so its intervals are dropped, not guessed."""
        wanted = set(digests)
        out: list[dict[str, Any]] = []
        open_: dict[tuple[str, str], dict[str, Any]] = {}  # (repository, tag) -> its interval not yet closed
        # Not cut at `until`: the entry closing an interval may lie after the window.
        found = entries_naming(self.db, digests, None, projects, entries)
        cut = entries is not None and len(found) >= entries
        if cut:
            last = (found[-1]["repository"], found[-1]["tag"])
            found = [e for e in found if (e["repository"], e["tag"]) != last]
        for e in found:
            key = (str(e["repository"]), str(e["tag"]))
            current = open_.pop(key, None)
            leaving = e["previous_digest"] if e["action"] == "moved" else e["digest"]
            if current is None and leaving in wanted:  # the tag pointed there before its history began
                current = {"repository": key[0], "tag": key[1], "digest": leaving, "from": None}
            if current is not None:
                current["until"] = e["at"]
                out.append(current)
            if e["action"] == "moved" and e["digest"] in wanted:
                open_[key] = {"repository": key[0], "tag": key[1], "digest": e["digest"], "from": e["at"]}
        out.extend({**interval, "until": None} for interval in open_.values())
        start = since if since is not None else -float("inf")
        end = until if until is not None else float("inf")
        kept = (i for i in out if (i["from"] is None or i["from"] < end) and (i["until"] is None or i["until"] > start))
        return sorted(kept, key=lambda i: (i["repository"], i["tag"], i["from"] or 0.0)), cut

    # --- export ----------------------------------------------------------------------------
    def export(self, q: ExposureQuery, projects: frozenset[str] | None, fmt: str) -> Iterator[str]:
        """CSV: every pull, one row each. JSON lines: the digests, current tags and history intervals
        (one record each, `record` naming the kind), then every pull. Streamed in batches."""
        head = self.report(q, projects, limit=1)
        digests = [d["digest"] for d in head["digests"]]
        if fmt == "csv":
            buf = io.StringIO()
            csv.writer(buf).writerow(PULL_COLUMNS)
            yield buf.getvalue()
        else:
            lines = [{"record": "digest", **d} for d in head["digests"]]
            lines += [{"record": "tag", **t} for t in head["tags"]]
            lines += [{"record": "tag_history", **h} for h in head["tag_history"]]
            yield "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
        for rows in self.audit.export_pulls(digests, q.since, q.until, projects):
            buf = io.StringIO()
            if fmt == "csv":
                writer = csv.writer(buf)
                for row in rows:
                    writer.writerow(["" if row[k] is None else row[k] for k in PULL_COLUMNS])
            else:
                for row in rows:
                    buf.write(json.dumps({"record": "pull", **row}, sort_keys=True) + "\n")
            yield buf.getvalue()
