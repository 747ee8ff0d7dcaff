"""The vulnerability database: imports of the real shared OSV zips, incremental updates, and sources
that fail (truncated, corrupt, not OSV, unreachable, cut short over HTTP) leaving the last good copy."""

from __future__ import annotations

import http.server
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from dockyard import wiring
from dockyard.cli import app
from dockyard.scan.matcher import Matcher, Query
from dockyard.scan.vulndb import SourceError, VulnDB, open_for_cli, sources_in
from dockyard.wiring import http_client
from tests.scan.conftest import shared_vulndb

NPM_ZIP = "npm/all.zip"


def test_the_shared_sources_import_completely(vulndb: VulnDB) -> None:
    by_file = {Path(s.url).parent.name: s for s in vulndb.sources()}
    # Record counts as documented in ../shared/vulndb/README.md.
    assert {k: v.records for k, v in by_file.items()} == {
        "PyPI": 2661, "npm": 14, "Go": 4291, "Debian": 8911, "Alpine": 2471,
    }  # fmt: skip
    assert vulndb.count() == 2661 + 14 + 4291 + 8911 + 2471
    assert all(s.error is None and s.updated_at for s in by_file.values())
    # CVE ids of Debian records live in `upstream`/`related`: they are searchable as aliases.
    assert "DSA-5343-1" in vulndb.ids_for("CVE-2023-0286")


def _rezip(src: Path, dst: Path, edit: dict[str, bytes | None], add: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename in edit:
                if edit[info.filename] is not None:
                    zout.writestr(info.filename, edit[info.filename])  # type: ignore[arg-type]
                continue
            zout.writestr(info, zin.read(info))
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


@pytest.fixture
def npm_db(tmp_path: Path) -> Iterator[tuple[VulnDB, Path]]:
    source = tmp_path / "npm.zip"
    source.write_bytes((shared_vulndb() / NPM_ZIP).read_bytes())
    db = VulnDB(tmp_path / "db")
    db.import_source(str(source))
    yield db, source
    db.close()


def test_updates_are_incremental(npm_db: tuple[VulnDB, Path], tmp_path: Path) -> None:
    db, source = npm_db
    gen = db.generation
    again = db.import_source(str(source))
    assert again.not_modified and db.generation == gen

    with zipfile.ZipFile(source) as z:
        doc = json.loads(z.read("GHSA-jf85-cpcp-j695.json"))
    # A new lodash advisory appears, one is withdrawn from the feed, one is re-published with a new range.
    doc_changed = dict(doc, modified="2026-11-01T00:00:00Z")
    doc_changed["affected"] = [
        {**doc["affected"][0], "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "4.17.16"}]}]}
    ]
    new = dict(doc, id="GHSA-test-new0-0001", aliases=["CVE-2099-0001"])
    edited = _rezip(
        source,
        tmp_path / "edited.zip",
        {"GHSA-jf85-cpcp-j695.json": json.dumps(doc_changed).encode(), "GHSA-cm22-4g7w-348p.json": None},
        {"GHSA-test-new0-0001.json": json.dumps(new).encode()},
    )
    source.write_bytes(edited.read_bytes())
    stats = db.import_source(str(source))
    assert (stats.added, stats.changed, stats.removed, stats.records) == (1, 1, 1, 14)
    assert db.generation == gen + 1
    hits = {h.advisory_id for h in Matcher(db).hits(Query("npm", "", "lodash", "4.17.15"))}
    assert "GHSA-jf85-cpcp-j695" in hits  # its new range covers 4.17.15
    assert "GHSA-cm22-4g7w-348p" not in db.ids_for("GHSA-cm22-4g7w-348p")
    assert db.ids_for("CVE-2099-0001") == {"GHSA-test-new0-0001"}


@pytest.mark.parametrize("damage", ["truncated", "crc", "not-osv", "empty", "missing"])
def test_a_broken_source_leaves_the_last_good_copy(npm_db: tuple[VulnDB, Path], tmp_path: Path, damage: str) -> None:
    db, source = npm_db
    before = (db.count(), db.generation)
    q = Query("npm", "", "minimist", "1.2.0")
    hits_before = Matcher(db).hits(q)
    raw = source.read_bytes()
    if damage == "truncated":
        source.write_bytes(raw[: len(raw) // 2])
    elif damage == "crc":
        # Flip bytes inside the first member's compressed data: the zip directory still reads.
        with zipfile.ZipFile(source) as z:
            info = z.infolist()[0]
        start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 10
        data = bytearray(raw)
        for i in range(start, start + 8):
            data[i] ^= 0xFF
        source.write_bytes(bytes(data))
    elif damage == "not-osv":
        _rezip(source, tmp_path / "bad.zip", {}, {"broken.json": b'{"summary": "no id"}'})
        source.write_bytes((tmp_path / "bad.zip").read_bytes())
    elif damage == "empty":
        with zipfile.ZipFile(source, "w"):
            pass
    else:
        source.unlink()
    result = db.update([str(source)])
    assert len(result) == 1 and isinstance(result[0], SourceError)
    assert (db.count(), db.generation) == before
    assert Matcher(db).hits(q) == hits_before and hits_before
    status = next(s for s in db.sources() if s.url == str(source))
    assert status.error and status.records == 14


class _ZipHandler(http.server.BaseHTTPRequestHandler):
    body = b""
    etag = '"v1"'
    cut_short = False
    requests: list[dict[str, str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(dict(self.headers))
        if self.headers.get("If-None-Match") == self.etag:
            self.send_response(304)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", self.etag)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 3] if self.cut_short else self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def zip_server() -> Iterator[tuple[str, type[_ZipHandler]]]:
    handler = type("Handler", (_ZipHandler,), {"requests": [], "body": (shared_vulndb() / NPM_ZIP).read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/npm/all.zip", handler
    server.shutdown()


def test_http_sources_are_downloaded_once_and_a_cut_download_changes_nothing(
    tmp_path: Path, zip_server: tuple[str, type[_ZipHandler]]
) -> None:
    url, handler = zip_server
    db = VulnDB(tmp_path / "db", http_client())
    assert db.import_source(url).added == 14
    # The next update asks with the ETag and the server answers 304: nothing is downloaded.
    again = db.import_source(url)
    assert again.not_modified and handler.requests[-1].get("If-None-Match") == '"v1"'
    gen = db.generation

    handler.etag, handler.cut_short = '"v2"', True
    result = db.update([url])
    assert isinstance(result[0], SourceError) and "17502" in str(result[0])  # names the expected size
    assert db.count() == 14 and db.generation == gen
    assert list((tmp_path / "db").glob("osv-*")) == []  # the partial download was removed

    result = db.update(["http://127.0.0.1:1/offline/all.zip"])  # nothing listens there: offline
    assert isinstance(result[0], SourceError)
    assert db.count() == 14


def test_the_cli_opens_a_folder_of_zips_into_a_reusable_cache(tmp_path: Path) -> None:
    folder = tmp_path / "feeds"
    (folder / "npm").mkdir(parents=True)
    (folder / NPM_ZIP).write_bytes((shared_vulndb() / NPM_ZIP).read_bytes())
    single = tmp_path / "one.zip"
    single.write_bytes((shared_vulndb() / NPM_ZIP).read_bytes())
    assert sources_in(folder) == [str((folder / NPM_ZIP).resolve())]
    db = open_for_cli(folder, tmp_path / "cache")
    assert db.count() == 14
    assert open_for_cli(folder, tmp_path / "cache").generation == db.generation  # reused, not re-imported
    assert open_for_cli(db.folder, tmp_path / "other").path == db.path  # a database folder is used as it is
    assert open_for_cli(single, tmp_path / "cache").count() == 14
    with pytest.raises(SourceError):
        open_for_cli(tmp_path / "empty-dir-that-does-not-exist", tmp_path / "cache")


# --- downloads go through the injected outbound client ---------------------------------------------
def _osv_transport(seen: list[httpx.Request]) -> httpx.MockTransport:
    body = (shared_vulndb() / NPM_ZIP).read_bytes()

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body, headers={"ETag": '"v1"'})

    return httpx.MockTransport(answer)


def test_advisory_downloads_use_the_injected_client_with_their_own_timeout(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    db = VulnDB(tmp_path / "db", http_client(transport=_osv_transport(seen)))
    assert db.import_source("https://osv.test/npm/all.zip", timeout=123.0).added == 14
    assert [str(r.url) for r in seen] == ["https://osv.test/npm/all.zip"]
    assert seen[0].headers["user-agent"].startswith("dockyard/")  # the process's client, not a new one
    assert seen[0].extensions["timeout"]["read"] == 123.0  # a download keeps its longer timeout
    # Without a client, a database reads files only: a URL is a failed source, not a download.
    offline = VulnDB(tmp_path / "offline")
    result = offline.update(["https://osv.test/npm/all.zip"])
    assert isinstance(result[0], SourceError) and "no HTTP client" in str(result[0])


def test_vulndb_update_command_downloads_through_the_process_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[httpx.Request] = []
    made = http_client(transport=_osv_transport(seen))
    monkeypatch.setattr(wiring, "http_client", lambda: made)
    monkeypatch.setenv("DOCKYARD_DATA_DIR", str(tmp_path / "data"))
    args = ["vulndb", "update", "--path", str(tmp_path / "db"), "--source", "https://osv.test/npm/all.zip"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "+14" in result.output and [str(r.url) for r in seen] == ["https://osv.test/npm/all.zip"]
    assert made.is_closed  # the command closes the client it was given
