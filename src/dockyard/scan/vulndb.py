"""The vulnerability database: OSV advisories imported from `<ecosystem>/all.zip` sources into one
SQLite file, incrementally and atomically.

A source is read completely and checked (zip CRCs, every record parsed) before anything is written;
the import of one source is then one transaction that writes only the advisories whose bytes changed.
A download that fails, is cut short or holds a broken record therefore never touches the last good
copy, and a scanner keeps matching against it offline. Every change bumps `generation`, which the
registry compares to re-evaluate stored images after an update.

Each replica keeps its own copy under its data folder (it is a cache of public data, rebuilt from the
sources at any time); what is derived from it — findings — lives in the registry's database.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sqlite3
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from dockyard.scan.model import RATED
from dockyard.scan.osv import Advisory, Affected, Event, Range, RecordError, normalize_name, parse_record

DB_FILE = "vulndb.sqlite"
MAX_DOWNLOAD_BYTES = 4 * 1024**3
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS advisories (
    source TEXT NOT NULL, id TEXT NOT NULL, sha256 TEXT NOT NULL, modified TEXT NOT NULL,
    summary TEXT NOT NULL, aliases TEXT NOT NULL, severity TEXT NOT NULL, score REAL, link TEXT NOT NULL,
    withdrawn INTEGER NOT NULL, urgency TEXT, PRIMARY KEY (source, id));
CREATE TABLE IF NOT EXISTS affected (
    source TEXT NOT NULL, advisory_id TEXT NOT NULL, ecosystem TEXT NOT NULL, release TEXT NOT NULL,
    name TEXT NOT NULL, ranges TEXT NOT NULL, versions TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS affected_by_package ON affected (ecosystem, name, release);
CREATE INDEX IF NOT EXISTS affected_by_advisory ON affected (source, advisory_id);
CREATE TABLE IF NOT EXISTS aliases (alias TEXT NOT NULL, source TEXT NOT NULL, advisory_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS aliases_by_alias ON aliases (alias);
CREATE INDEX IF NOT EXISTS aliases_by_advisory ON aliases (source, advisory_id);
CREATE TABLE IF NOT EXISTS sources (
    url TEXT PRIMARY KEY, checked_at TEXT, updated_at TEXT, etag TEXT, last_modified TEXT, sha256 TEXT,
    records INTEGER, added INTEGER, changed INTEGER, removed INTEGER, error TEXT, ok_at TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cve_severity (
    cve TEXT NOT NULL, source TEXT NOT NULL, severity TEXT NOT NULL, score REAL, vector TEXT,
    PRIMARY KEY (cve, source));
"""


class SourceError(Exception):
    """A source could not be read completely and correctly; the database was left as it was."""


@dataclass(frozen=True)
class ImportStats:
    source: str
    records: int
    added: int
    changed: int
    removed: int
    not_modified: bool = False  # the server said the copy we have is current

    @property
    def changes(self) -> int:
        return self.added + self.changed + self.removed


@dataclass(frozen=True)
class Snapshot:
    """What matching runs against: the generation, its size, and when its data was last confirmed."""

    generation: int
    advisories: int
    updated_at: float | None  # UTC seconds: the least recently checked source's last good check


@dataclass(frozen=True)
class SourceStatus:
    url: str
    checked_at: str | None
    updated_at: str | None
    records: int
    added: int
    changed: int
    removed: int
    error: str | None
    ok_at: str | None = None  # the last check that succeeded (changed or not)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class VulnDB:
    def __init__(self, path: Path, http: httpx.Client | None = None) -> None:
        """`path` is the database folder; it is created if missing. `http` downloads the sources
        given by URL (the process's client, `wiring.http_client()`; tests pass one on an
        httpx.MockTransport); without one, only files and folders can be imported."""
        self.folder = path
        self.http = http
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / DB_FILE
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(sources)")}
        if "ok_at" not in columns:  # a database file from before ok_at: its last good check is known
            self._conn.execute("ALTER TABLE sources ADD COLUMN ok_at TEXT")
            self._conn.execute("UPDATE sources SET ok_at = CASE WHEN error IS NULL THEN checked_at ELSE updated_at END")
        if "urgency" not in {r[1] for r in self._conn.execute("PRAGMA table_info(advisories)")}:
            # Records imported before urgencies were read: the next update parses and rewrites them all.
            self._conn.execute("ALTER TABLE advisories ADD COLUMN urgency TEXT")
            self._conn.execute("UPDATE advisories SET sha256 = ''")
            self._conn.execute("UPDATE sources SET sha256 = NULL, etag = NULL, last_modified = NULL")
        self._counted: tuple[int, int] | None = None  # (generation, advisories)

    def close(self) -> None:
        self._conn.close()

    def copy_to(self, folder: Path) -> VulnDB:
        """A consistent copy (SQLite's online backup), e.g. to seed another replica or a test."""
        copy = VulnDB(folder, self.http)
        self._conn.backup(copy._conn)
        return copy

    # -- reading -----------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM advisories").fetchone()[0])

    def updated_at(self) -> float | None:
        """When the data was last confirmed current: the oldest of the sources' last successful checks
        (a database is as old as its stalest source); None when no source was ever read."""
        row = self._conn.execute("SELECT min(ok_at), count(ok_at) FROM sources").fetchone()
        if not row or not row[1]:
            return None
        return datetime.fromisoformat(row[0]).timestamp()

    def snapshot(self) -> Snapshot:
        generation = self.generation
        if self._counted is None or self._counted[0] != generation:  # a count(*) only when the data changed
            self._counted = (generation, self.count())
        return Snapshot(generation, self._counted[1], self.updated_at())

    def sources(self) -> list[SourceStatus]:
        rows = self._conn.execute(
            "SELECT url, checked_at, updated_at, records, added, changed, removed, error, ok_at FROM sources "
            "ORDER BY url"
        ).fetchall()
        return [SourceStatus(r[0], r[1], r[2], r[3] or 0, r[4] or 0, r[5] or 0, r[6] or 0, r[7], r[8]) for r in rows]

    def affected_for(self, ecosystem: str, name: str) -> list[tuple[str, str, Affected]]:
        """(source, advisory id, affected entry) for every advisory naming this package, all releases."""
        rows = self._conn.execute(
            "SELECT f.source, f.advisory_id, f.release, f.ranges, f.versions FROM affected f "
            "JOIN advisories a ON a.source = f.source AND a.id = f.advisory_id "
            "WHERE f.ecosystem = ? AND f.name = ? AND a.withdrawn = 0",
            (ecosystem, normalize_name(ecosystem, name)),
        ).fetchall()
        return [(r[0], r[1], _affected_from_row(ecosystem, r[2], name, r[3], r[4])) for r in rows]

    def advisory(self, source: str, advisory_id: str) -> Advisory | None:
        row = self._conn.execute(
            "SELECT id, modified, summary, aliases, severity, score, link, withdrawn, urgency FROM advisories "
            "WHERE source = ? AND id = ?",
            (source, advisory_id),
        ).fetchone()
        if row is None:
            return None
        return Advisory(
            row[0], row[1], row[2], tuple(json.loads(row[3])), row[4], row[5], row[6], bool(row[7]), (),
            row[8] or "UNKNOWN",
        )  # fmt: skip

    def severity_of_alias(self, alias: str) -> tuple[str, float | None] | None:
        """The highest severity any advisory sharing this alias gives (feeds without scores borrow it)."""
        row = self._conn.execute(
            "SELECT severity, score FROM ("
            " SELECT a.severity, a.score FROM aliases x"
            " JOIN advisories a ON a.source = x.source AND a.id = x.advisory_id WHERE x.alias = ?"
            " UNION ALL SELECT severity, score FROM advisories WHERE id = ?"
            ") WHERE severity != 'UNKNOWN' ORDER BY coalesce(score, 0) DESC LIMIT 1",
            (alias, alias),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def cve_severity(self, cve: str) -> tuple[str, float | None] | None:
        """A CVE's CVSS from the severity sources (NVD): the highest when several sources rate it."""
        row = self._conn.execute(
            "SELECT severity, score FROM cve_severity WHERE cve = ? ORDER BY coalesce(score, 0) DESC LIMIT 1", (cve,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def ids_for(self, advisory_or_alias: str) -> set[str]:
        """Every advisory id that is, or is an alias of, the given id (DSA-…, CVE-…, GHSA-…)."""
        rows = self._conn.execute(
            "SELECT advisory_id FROM aliases WHERE alias = ? UNION SELECT id FROM advisories WHERE id = ?",
            (advisory_or_alias, advisory_or_alias),
        ).fetchall()
        return {r[0] for r in rows}

    # -- importing ---------------------------------------------------------------------------------

    def update(self, sources: Iterable[str], timeout: float = 300.0) -> list[ImportStats | SourceError]:
        """Import every source; one failing source is reported and does not stop the others.

        A local folder stands for the `<ecosystem>/all.zip` files (or zips) in it: the offline copy of
        osv.dev's layout."""
        return self._import_each(expand_sources(sources), self.import_source, timeout)

    def import_source(self, source: str, timeout: float = 300.0) -> ImportStats:
        return self._import_changed(source, timeout, _read_zip, self._apply)

    def update_severities(self, sources: Iterable[str], timeout: float = 300.0) -> list[ImportStats | SourceError]:
        """Import CVSS ratings of CVEs (NVD CVE API 2.0 JSON: the NVD feed files, plain, .gz or .zip, or
        saved API answers; a folder stands for the JSON files in it). Checked, atomic and incremental as
        advisory sources are; a change bumps the generation, so stored images are re-rated."""
        return self._import_each(expand_severity_sources(sources), self.import_severity_source, timeout)

    def import_severity_source(self, source: str, timeout: float = 300.0) -> ImportStats:
        return self._import_changed(source, timeout, read_nvd, self._apply_severities)

    def _import_changed(
        self,
        source: str,
        timeout: float,
        read: Callable[[Path], T],
        apply: Callable[[str, T, str | None, str | None, str | None], ImportStats],
    ) -> ImportStats:
        """Fetch a source and, when its bytes changed, `read` the file and `apply` what it holds (with
        the digest, ETag and Last-Modified that mark it current next time)."""
        with self._changed(source, timeout) as changed:
            if changed is None:
                return self._not_modified(source)
            path, digest, etag, last_modified = changed
            content = read(path)
        return apply(source, content, digest, etag, last_modified)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock up front), rolled back on any failure."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _import_each(
        self, sources: Iterable[str], importer: Callable[..., ImportStats], timeout: float
    ) -> list[ImportStats | SourceError]:
        out: list[ImportStats | SourceError] = []
        for source in sources:
            try:
                out.append(importer(source, timeout=timeout))
            except SourceError as exc:
                self._record_error(source, str(exc))
                out.append(exc)
        return out

    @contextmanager
    def _changed(self, source: str, timeout: float) -> Iterator[tuple[Path, str, str | None, str | None] | None]:
        """The fetched file with its digest, ETag and Last-Modified; None when the source answered "not
        modified" or its bytes are the same as last time (nothing to parse)."""
        with self._fetch(source, timeout) as fetched:
            if fetched is None:
                yield None
                return
            path, etag, last_modified = fetched
            digest = _file_sha256(path)
            row = self._conn.execute("SELECT sha256 FROM sources WHERE url = ?", (source,)).fetchone()
            yield None if row and row[0] == digest else (path, digest, etag, last_modified)

    def _not_modified(self, source: str) -> ImportStats:
        self._mark_current(source)
        return ImportStats(source, self._records_of(source), 0, 0, 0, not_modified=True)

    def _apply_severities(
        self,
        source: str,
        ratings: dict[str, tuple[str, float | None, str | None]],
        digest: str | None,
        etag: str | None,
        last_modified: str | None,
    ) -> ImportStats:
        with self._write() as conn:
            existing = {
                r[0]: (r[1], r[2], r[3])
                for r in conn.execute(
                    "SELECT cve, severity, score, vector FROM cve_severity WHERE source = ?", (source,)
                )
            }
            added, changed, removed = _changes(existing, ratings)
            conn.executemany(
                "DELETE FROM cve_severity WHERE source = ? AND cve = ?", [(source, c) for c in [*changed, *removed]]
            )
            conn.executemany(
                "INSERT INTO cve_severity (cve, source, severity, score, vector) VALUES (?, ?, ?, ?, ?)",
                [(c, source, *ratings[c]) for c in [*added, *changed]],
            )
            self._record_source(conn, source, etag, last_modified, digest, len(ratings), added, changed, removed)
        return ImportStats(source, len(ratings), len(added), len(changed), len(removed))

    def import_records(self, source: str, docs: Iterable[bytes]) -> ImportStats:
        """Import records given as bytes (tests and single-file sources)."""
        records = {}
        for raw in docs:
            adv = _parse(raw, source)
            records[adv.id] = (hashlib.sha256(raw).hexdigest(), adv)
        return self._apply(source, records, None, None, None)

    def _mark_current(self, source: str) -> None:
        now = _now()
        self._conn.execute(
            "UPDATE sources SET checked_at = ?, ok_at = ?, error = NULL WHERE url = ?", (now, now, source)
        )

    def _records_of(self, source: str) -> int:
        row = self._conn.execute("SELECT records FROM sources WHERE url = ?", (source,)).fetchone()
        return int(row[0] or 0) if row else 0

    def _record_error(self, source: str, error: str) -> None:
        self._conn.execute(
            "INSERT INTO sources (url, checked_at, error) VALUES (?, ?, ?) "
            "ON CONFLICT (url) DO UPDATE SET checked_at = excluded.checked_at, error = excluded.error",
            (source, _now(), error[:1000]),
        )

    @contextmanager
    def _fetch(self, source: str, timeout: float) -> Iterator[tuple[Path, str | None, str | None] | None]:
        """The source's zip as a local file, or None when an HTTP server says our copy is current."""
        if source.startswith(("http://", "https://")):
            row = self._conn.execute("SELECT etag, last_modified FROM sources WHERE url = ?", (source,)).fetchone()
            headers = {}
            if row and row[0]:
                headers["If-None-Match"] = row[0]
            if row and row[1]:
                headers["If-Modified-Since"] = row[1]
            http = self.http
            if http is None:
                raise SourceError(f"{source}: no HTTP client to download it with (this database reads files only)")
            fd, name = tempfile.mkstemp(prefix="osv-", suffix=".zip", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as out:
                    try:
                        # The injected client, with this download's own (longer) timeout.
                        stream = http.stream("GET", source, headers=headers, timeout=timeout, follow_redirects=True)
                        with stream as r:
                            if r.status_code == 304:
                                yield None
                                return
                            if r.status_code != 200:
                                raise SourceError(f"{source}: HTTP {r.status_code}")
                            size = 0
                            for chunk in r.iter_bytes(1 << 20):
                                size += len(chunk)
                                if size > MAX_DOWNLOAD_BYTES:
                                    raise SourceError(f"{source}: larger than {MAX_DOWNLOAD_BYTES} bytes")
                                out.write(chunk)
                            expected = r.headers.get("content-length")
                            if expected is not None and int(expected) != size:
                                raise SourceError(f"{source}: download cut short ({size} of {expected} bytes)")
                            etag, modified = r.headers.get("etag"), r.headers.get("last-modified")
                    except httpx.HTTPError as exc:
                        raise SourceError(f"{source}: {exc}") from exc
                yield Path(name), etag, modified
            finally:
                Path(name).unlink(missing_ok=True)
        else:
            path = Path(source.removeprefix("file://"))
            if path.is_dir():
                raise SourceError(f"{source}: a folder without <ecosystem>/all.zip files")
            if not path.is_file():
                raise SourceError(f"{source}: no such file")
            yield path, None, None

    def _apply(
        self,
        source: str,
        records: dict[str, tuple[str, Advisory]],
        digest: str | None,
        etag: str | None,
        last_modified: str | None,
    ) -> ImportStats:
        with self._write() as conn:
            existing = dict(conn.execute("SELECT id, sha256 FROM advisories WHERE source = ?", (source,)).fetchall())
            added, changed, removed = _changes(existing, {i: sha for i, (sha, _) in records.items()})
            for advisory_id in [*changed, *removed]:
                for table, column in (("advisories", "id"), ("affected", "advisory_id"), ("aliases", "advisory_id")):
                    conn.execute(f"DELETE FROM {table} WHERE source = ? AND {column} = ?", (source, advisory_id))
            for advisory_id in [*added, *changed]:
                sha, adv = records[advisory_id]
                _insert(conn, source, sha, adv)
            self._record_source(conn, source, etag, last_modified, digest, len(records), added, changed, removed)
        return ImportStats(source, len(records), len(added), len(changed), len(removed))

    @staticmethod
    def _record_source(
        conn: sqlite3.Connection,
        source: str,
        etag: str | None,
        last_modified: str | None,
        digest: str | None,
        records: int,
        added: list[str],
        changed: list[str],
        removed: list[str],
    ) -> None:
        """A source read completely: its state, and a new generation when anything changed (in the
        caller's transaction)."""
        now = _now()
        conn.execute(
            "INSERT INTO sources (url, checked_at, updated_at, etag, last_modified, sha256, records, added,"
            " changed, removed, error, ok_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (url) DO"
            " UPDATE SET checked_at = excluded.checked_at, updated_at = excluded.updated_at, etag = excluded.etag,"
            " last_modified = excluded.last_modified, sha256 = excluded.sha256, records = excluded.records,"
            " added = excluded.added, changed = excluded.changed, removed = excluded.removed, error = NULL,"
            " ok_at = excluded.ok_at",
            (source, now, now, etag, last_modified, digest, records, len(added), len(changed), len(removed), now),
        )
        if added or changed or removed:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('generation', '1') ON CONFLICT (key) DO UPDATE SET "
                "value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
            )


def _insert(conn: sqlite3.Connection, source: str, sha: str, adv: Advisory) -> None:
    conn.execute(
        "INSERT INTO advisories (source, id, sha256, modified, summary, aliases, severity, score, link, withdrawn,"
        " urgency) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (source, adv.id, sha, adv.modified, adv.summary, json.dumps(adv.aliases), adv.severity, adv.score, adv.link,
         int(adv.withdrawn), adv.urgency),
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO affected (source, advisory_id, ecosystem, release, name, ranges, versions) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (source, adv.id, a.ecosystem, a.release, a.name, _ranges_json(a.ranges), json.dumps(a.versions))
            for a in adv.affected
        ],
    )
    conn.executemany(
        "INSERT INTO aliases (alias, source, advisory_id) VALUES (?, ?, ?)",
        [(alias, source, adv.id) for alias in adv.aliases],
    )


def _ranges_json(ranges: tuple[Range, ...]) -> str:
    return json.dumps([[r.type, [[e.kind, e.version] for e in r.events]] for r in ranges])


def _affected_from_row(ecosystem: str, release: str, name: str, ranges: str, versions: str) -> Affected:
    parsed = tuple(Range(t, tuple(Event(k, v) for k, v in evs)) for t, evs in json.loads(ranges))
    return Affected(ecosystem, release, normalize_name(ecosystem, name), parsed, tuple(json.loads(versions)))


def _parse(raw: bytes, where: str) -> Advisory:
    try:
        return parse_record(json.loads(raw))
    except (ValueError, RecordError) as exc:
        raise SourceError(f"{where}: not an OSV record: {exc}") from exc


def _changes(existing: dict[str, Any], incoming: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """The keys added, changed (to another value) and removed going from `existing` to `incoming`."""
    added = [k for k in incoming if k not in existing]
    changed = [k for k in incoming if k in existing and existing[k] != incoming[k]]
    removed = [k for k in existing if k not in incoming]
    return added, changed, removed


def _read_zip(path: Path) -> dict[str, tuple[str, Advisory]]:
    """Every record of the zip, checked: a CRC mismatch, a truncated archive or a bad record fails it all."""
    records: dict[str, tuple[str, Advisory]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.endswith(".json"):
                    continue
                raw = zf.read(info)  # verifies the member's CRC
                adv = _parse(raw, f"{path.name}:{info.filename}")
                records[adv.id] = (hashlib.sha256(raw).hexdigest(), adv)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as exc:
        raise SourceError(f"{path}: unreadable zip: {exc}") from exc
    if not records:
        raise SourceError(f"{path}: no OSV records")
    return records


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sources_in(path: Path) -> list[str]:
    """The sources a `--vulndb` folder holds: `<ecosystem>/all.zip` files or zips directly inside."""
    if path.is_file():
        return [str(path.resolve())]
    return sorted(str(p.resolve()) for p in [*path.glob("*/all.zip"), *path.glob("*.zip")])


def expand_sources(sources: Iterable[str]) -> list[str]:
    """Sources with each local folder replaced by the zips it holds (an empty folder is kept, to fail)."""
    out: list[str] = []
    for source in sources:
        local = None if source.startswith(("http://", "https://")) else Path(source.removeprefix("file://"))
        if local is not None and local.is_dir():
            out.extend(sources_in(local) or [source])
        else:
            out.append(source)
    return out


def expand_severity_sources(sources: Iterable[str]) -> list[str]:
    """Severity sources with each local folder replaced by the NVD JSON files in it."""
    out: list[str] = []
    for source in sources:
        local = None if source.startswith(("http://", "https://")) else Path(source.removeprefix("file://"))
        if local is not None and local.is_dir():
            found = sorted(str(p.resolve()) for p in local.iterdir() if p.name.endswith(NVD_SUFFIXES) and p.is_file())
            out.extend(found or [source])
        else:
            out.append(source)
    return out


NVD_SUFFIXES = (".json", ".json.gz", ".json.zip")
# Which of a CVE's NVD metrics rates it: CVSS v3 as the advisories' own vectors are read (v3.1, v3.0),
# then v4.0, then v2; within a version the Primary (NVD's own) metric before a CNA's Secondary one.
_NVD_METRICS = ("cvssMetricV31", "cvssMetricV30", "cvssMetricV40", "cvssMetricV2")


def read_nvd(path: Path) -> dict[str, tuple[str, float | None, str | None]]:
    """CVE id -> (severity, base score, vector) from an NVD CVE API 2.0 document (`vulnerabilities[].cve`),
    as the NVD's feed files (`nvdcve-2.0-*.json`, plain, gzip or zip) and the API's answers hold it."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        elif raw[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                members = [i for i in zf.infolist() if i.filename.endswith(".json")]
                if len(members) != 1:
                    raise SourceError(f"{path}: expected one JSON file in the zip, found {len(members)}")
                raw = zf.read(members[0])
        doc = orjson.loads(raw)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, gzip.BadGzipFile, orjson.JSONDecodeError) as exc:
        raise SourceError(f"{path}: unreadable NVD JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("vulnerabilities"), list):
        raise SourceError(f"{path}: not an NVD CVE API 2.0 document (no 'vulnerabilities' list)")
    out: dict[str, tuple[str, float | None, str | None]] = {}
    for item in doc["vulnerabilities"]:
        cve = item.get("cve") if isinstance(item, dict) else None
        if not isinstance(cve, dict) or not isinstance(cve.get("id"), str):
            raise SourceError(f"{path}: a vulnerability without cve.id")
        if cve.get("vulnStatus") == "Rejected":
            continue
        rating = _nvd_rating(cve.get("metrics") or {})
        if rating is not None:
            out[cve["id"]] = rating
    return out


def _nvd_rating(metrics: dict[str, Any]) -> tuple[str, float | None, str | None] | None:
    for key in _NVD_METRICS:
        entries = [m for m in metrics.get(key) or [] if isinstance(m, dict) and isinstance(m.get("cvssData"), dict)]
        entries.sort(key=lambda m: m.get("type") != "Primary")
        for metric in entries:
            data = metric["cvssData"]
            label = data.get("baseSeverity") or metric.get("baseSeverity")  # v2 keeps it beside cvssData
            score = data.get("baseScore")
            if not isinstance(label, str) or label.upper() not in (*RATED, "NONE"):
                continue
            vector = data.get("vectorString")
            return (
                label.upper().replace("NONE", "LOW"),
                float(score) if isinstance(score, int | float) else None,
                vector if isinstance(vector, str) else None,
            )
    return None


def open_for_cli(path: Path, cache_root: Path) -> VulnDB:
    """A database folder is used as it is; zips are imported (incrementally) into a cache beside them."""
    if (path / DB_FILE).is_file():
        return VulnDB(path)
    sources = sources_in(path)
    if not sources:
        raise SourceError(f"{path}: neither a vulnerability database folder nor OSV zip files")
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    db = VulnDB(cache_root / key)
    nvd = [str(path / "NVD")] if (path / "NVD").is_dir() else []  # CVSS ratings beside the advisories
    for result in [*db.update(sources), *db.update_severities(nvd)]:
        if isinstance(result, SourceError):
            raise result
    return db


def record_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()
