"""High availability: three `dockyard serve` replicas on one PostgreSQL database and one S3 bucket (a
real S3 server, moto's), behind haproxy (docs/deploy/haproxy.cfg verbatim: TLS, round-robin, no
stickiness).

Real clients push through the balancer and pull from every replica directly; a replica is killed
with SIGKILL in the middle of an upload and in the middle of a background duty. The tests run in
file order on one cluster (each later one builds on what the earlier ones left).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import create_pg_database, drop_pg_database, missing
from tests.e2e.cluster import Cluster, Replica, running_cluster, timestamp, wait_until
from tests.e2e.conftest import require_tool, run
from tests.e2e.layouts import add_index, all_blob_digests, build_image, descriptor
from tests.support.http import TIMEOUT
from tests.support.s3 import S3Server

pytestmark = pytest.mark.e2e

# The duties that run in one process at a time (scans are shared out per queue item instead).
EXCLUSIVE_DUTIES = {"gc", "retention", "scrub", "vulndb"}
DUTY_ENV = {
    # Every duty often, a short lease so a dead holder's duty moves on within seconds, and a scrub slow
    # enough to be caught in the middle of its run.
    "DOCKYARD_GC_INTERVAL_SECONDS": "1",
    "DOCKYARD_RETENTION_INTERVAL_SECONDS": "1",
    "DOCKYARD_SCRUB_INTERVAL_SECONDS": "1",
    "DOCKYARD_SCRUB_RATE_MB": "0.2",
    "DOCKYARD_VULNDB_UPDATE_INTERVAL_SECONDS": "1",
    "DOCKYARD_DUTY_LEASE_SECONDS": "4",
    "DOCKYARD_LOG_LEVEL": "debug",  # the maintenance loop's "duty started/ended" lines
}


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    """The shared storage: one bucket of the S3 server (moto) that every replica is given."""
    return s3_server.new_bucket()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, bucket: str) -> Iterator[Cluster]:
    for tool in ("haproxy", "skopeo", "umoci"):
        require_tool(tool)
    if importlib.util.find_spec("oras") is None:
        missing("the oras Python package is not installed (the dev extra has it)")
    root = tmp_path_factory.mktemp("replicas")
    database_url, admin = create_pg_database("dockyard_ha")  # fails under DOCKYARD_REQUIRE_ALL without PostgreSQL
    try:
        with running_cluster(root, database_url, s3_server.env(bucket), DUTY_ENV) as c:
            yield c
    finally:
        drop_pg_database(database_url, admin)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ha-layouts") / "images"
    layers = [{"etc/app.conf": b"mode=ha\n"}, {"usr/bin/tool": os.urandom(300_000)}, {"opt/data": os.urandom(200_000)}]
    build_image(path, "app", layers)
    build_image(path, "arm", [{"etc/app.conf": b"mode=arm\n"}, {"opt/arm.bin": os.urandom(100_000)}], arch="arm64")
    add_index(
        path,
        "multi",
        {"app": {"architecture": "amd64", "os": "linux"}, "arm": {"architecture": "arm64", "os": "linux"}},
    )
    return path


def skopeo(*args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return run(require_tool("skopeo"), "--insecure-policy", *args, check=check)


def token(cluster: Cluster, scope: str) -> str:
    r = httpx.get(
        f"{cluster.balancer.url}/token",
        params={"service": "dockyard", "scope": scope},
        auth=(cluster.username, cluster.password),
        verify=cluster.balancer.tls_context(),
        timeout=TIMEOUT,
    )
    r.raise_for_status()
    return str(r.json()["token"])


def balancer_client(cluster: Cluster, repo: str) -> httpx.Client:
    bearer = token(cluster, f"repository:{repo}:pull,push")
    return httpx.Client(
        base_url=cluster.balancer.url,
        headers={"Authorization": f"Bearer {bearer}"},
        verify=cluster.balancer.tls_context(),
        timeout=60,
    )


def replica_get(cluster: Cluster, replica: Replica, repo: str, path: str, method: str = "GET") -> httpx.Response:
    bearer = token(cluster, f"repository:{repo}:pull")
    return httpx.request(
        method, f"{replica.url}/v2/{repo}/{path}", headers={"Authorization": f"Bearer {bearer}"}, timeout=TIMEOUT
    )


def test_the_balancer_terminates_tls_and_names_itself_in_the_token_realm(cluster: Cluster) -> None:
    r = httpx.get(f"{cluster.balancer.url}/v2/", verify=cluster.balancer.tls_context(), timeout=TIMEOUT)
    assert r.status_code == 401
    assert f'realm="{cluster.balancer.url}/token"' in r.headers["www-authenticate"]


def test_skopeo_pushes_through_the_balancer_and_every_replica_serves_the_same_digests(
    cluster: Cluster, layout: Path, tmp_path: Path
) -> None:
    lb, certs = cluster.balancer, str(cluster.balancer.ca_dir)
    for tag, ref, extra in (("app", "team/app:v1", ()), ("multi", "team/multi:v1", ("--all",))):
        skopeo(
            "copy", *extra, "--dest-cert-dir", certs, "--dest-creds", cluster.creds,
            f"oci:{layout}:{tag}", f"docker://{lb.host}/{ref}",
        )  # fmt: skip
    # The pushes' requests were shared out over the replicas (round-robin, no stickiness), the
    # requests of one blob upload (POST, PATCH, PUT) included.
    served = [(r, path) for r, _, path in lb.served_by() if path.startswith("/v2/team/")]
    assert {r for r, _ in served} == {r.name for r in cluster.replicas}
    sessions: dict[str, set[str]] = {}
    for replica, path in served:
        if "/blobs/uploads/" in path and not path.endswith("/uploads/"):
            sessions.setdefault(path.split("/blobs/uploads/")[1].split("?")[0], set()).add(replica)
    assert sessions and any(len(replicas) > 1 for replicas in sessions.values()), sessions

    for replica in cluster.replicas:
        for tag, ref in (("app", "team/app:v1"), ("multi", "team/multi:v1")):
            raw = skopeo(
                "inspect", "--raw", "--tls-verify=false", "--creds", cluster.creds, f"docker://{replica.host}/{ref}"
            ).stdout
            assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == descriptor(layout, tag)["digest"]
            out = tmp_path / replica.name
            skopeo(
                "copy", "--all", "--src-tls-verify=false", "--src-creds", cluster.creds,
                f"docker://{replica.host}/{ref}", f"oci:{out}:{tag}",
            )  # fmt: skip
            assert all_blob_digests(out, tag) == all_blob_digests(layout, tag), replica.name


def test_a_chunked_upload_whose_chunks_land_on_different_replicas(cluster: Cluster) -> None:
    repo = "team/chunked"
    data = os.urandom(3 * 1024 * 1024 + 123)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    parts = [data[i : i + 1024 * 1024] for i in range(0, len(data), 1024 * 1024)]
    with balancer_client(cluster, repo) as client:
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = r.headers["location"]
        upload_id = location.rstrip("/").rsplit("/", 1)[1]
        offset = 0
        for part in parts:
            r = client.patch(
                location,
                content=part,
                headers={
                    "Content-Range": f"{offset}-{offset + len(part) - 1}",
                    "Content-Type": "application/octet-stream",
                },
            )
            assert r.status_code == 202, r.text
            location = r.headers["location"]
            offset += len(part)
        r = client.put(location, params={"digest": digest})
        assert r.status_code == 201, r.text

    def session_requests() -> list[str]:
        served = [r for r, _, path in cluster.balancer.served_by() if upload_id in path]
        return served if len(served) == len(parts) + 1 else []  # haproxy logs a request once it is done

    served = wait_until("haproxy to log the upload's commit", session_requests)
    assert isinstance(served, list)
    assert len(set(served)) > 1, served  # the session moved between replicas mid-upload
    for replica in cluster.replicas:
        got = replica_get(cluster, replica, repo, f"blobs/{digest}")
        assert got.status_code == 200 and got.content == data, replica.name


def test_oras_pushes_an_artifact_and_a_referrer_through_the_balancer(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oras.client import OrasClient
    from oras.oci import Subject

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.chdir(tmp_path)
    lb = cluster.balancer
    client = OrasClient(hostname=lb.host, tls_verify=str(lb.ca_file))
    client.login(
        username=cluster.username,
        password=cluster.password,
        hostname=lb.host,
        config_path=str(tmp_path / "docker-config" / "config.json"),
        tls_verify=str(lb.ca_file),
    )
    (tmp_path / "policy.json").write_text(json.dumps({"allow": ["team/*"]}))
    r = client.push(target=f"{lb.host}/artifacts/policy:v1", files=["policy.json:application/vnd.example.policy"])
    assert r.status_code == 201
    digest = r.headers["docker-content-digest"]
    manifest = replica_get(cluster, cluster.replicas[0], "artifacts/policy", f"manifests/{digest}")
    (tmp_path / "sig.txt").write_text("signed-by: ci")
    r = client.push(
        target=f"{lb.host}/artifacts/policy:sig",
        files=["sig.txt:application/vnd.example.sig"],
        subject=Subject(manifest.json()["mediaType"], digest, len(manifest.content)),
    )
    assert r.status_code == 201
    signature = r.headers["docker-content-digest"]
    for replica in cluster.replicas:
        referrers = replica_get(cluster, replica, "artifacts/policy", f"referrers/{digest}").json()
        assert [m["digest"] for m in referrers["manifests"]] == [signature], replica.name


def staged(s3: S3Server, bucket: str, upload_id: str) -> tuple[list[str], list[str]]:
    """What the bucket holds of one upload session: its objects and its open multipart uploads."""
    client, prefix = s3.client(), f"_uploads/{upload_id}/"
    objects = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    uploads = [u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])]
    return objects, uploads


def parts_uploaded(s3: S3Server, bucket: str, upload_id: str) -> int:
    client, key = s3.client(), f"_uploads/{upload_id}/data"
    return sum(
        len(client.list_parts(Bucket=bucket, Key=key, UploadId=mpu).get("Parts", []))
        for mpu in staged(s3, bucket, upload_id)[1]
    )


def session_row(cluster: Cluster, upload_id: str) -> sa.Row[Any] | None:
    engine = sa.create_engine(cluster.database_url)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT size, claim FROM upload_sessions WHERE id = :id")
            return conn.execute(query, {"id": upload_id}).first()
    finally:
        engine.dispose()


def staged_size(cluster: Cluster, upload_id: str) -> int:
    """The bytes the session's row counts once no request holds it (0 while one does)."""
    row = session_row(cluster, upload_id)
    return int(row.size) if row is not None and row.claim is None else 0


def test_a_replica_killed_in_the_middle_of_an_upload(cluster: Cluster, s3_server: S3Server, bucket: str) -> None:
    repo = "team/big"
    data = os.urandom(12 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    # Past the driver's 8 MiB part size: the victim has a multipart upload with a part in the bucket.
    first, gate, outcome = data[: 9 * 1024 * 1024], threading.Event(), {}

    def body() -> Iterator[bytes]:
        yield first
        gate.wait(120)  # the rest only once the replica receiving it is dead
        for i in range(len(first), len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]

    with balancer_client(cluster, repo) as client:
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        stalled = r.headers["location"]
        stalled_id = stalled.split("?")[0].rstrip("/").rsplit("/", 1)[1]

        def push() -> None:
            try:
                outcome["status"] = client.patch(stalled, content=body()).status_code
            except httpx.HTTPError as exc:
                outcome["error"] = type(exc).__name__

        pusher = threading.Thread(target=push)
        pusher.start()
        busy = wait_until("the upload to be in progress on a replica", cluster.balancer.busy_servers)
        assert isinstance(busy, set) and len(busy) == 1
        # One 8 MiB batch written, as one part (the rest waits in the replica for a whole batch),
        # nothing being written at the kill: the session's row released with its state, the part in
        # the bucket.
        wait_until("8 MiB of the upload to be staged", lambda: staged_size(cluster, stalled_id) >= 8 * 1024 * 1024)
        assert parts_uploaded(s3_server, bucket, stalled_id) == 1
        victim = cluster.by_name(busy.pop())
        cluster.kill(victim)
        gate.set()
        pusher.join(120)
        assert outcome and outcome.get("status") != 202, outcome  # the client saw its upload fail

        survivors = cluster.alive()
        assert victim not in survivors and len(survivors) == len(cluster.replicas) - 1
        for replica in survivors:  # nothing of the cut-short upload is served
            assert replica_get(cluster, replica, repo, f"blobs/{digest}", "HEAD").status_code == 404
        assert staged(s3_server, bucket, stalled_id)[1], "the killed session's multipart upload is open"
        # ...and the cut-short session cannot be passed off as the whole blob: the failed commit
        # removes the session, its multipart upload aborted and its staging objects deleted.
        assert client.put(stalled, params={"digest": digest}).status_code == 400
        assert staged(s3_server, bucket, stalled_id) == ([], [])

        # The client's retry: a new session through the balancer (which takes the dead replica out).
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        r = client.patch(r.headers["location"], content=data)
        assert r.status_code == 202, r.text
        for replica in survivors:
            assert replica_get(cluster, replica, repo, f"blobs/{digest}", "HEAD").status_code == 404
        r = client.put(r.headers["location"], params={"digest": digest})
        assert r.status_code == 201, r.text
    for replica in survivors:
        got = replica_get(cluster, replica, repo, f"blobs/{digest}")
        assert got.status_code == 200 and got.content == data, replica.name
    wait_until("haproxy to take the dead replica out", lambda: victim.name not in cluster.balancer.servers_up())


def test_the_collector_aborts_the_multipart_upload_of_an_abandoned_session(
    cluster: Cluster, s3_server: S3Server, bucket: str
) -> None:
    repo = "team/abandoned"
    with balancer_client(cluster, repo) as client:
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        upload_id = r.headers["location"].split("?")[0].rstrip("/").rsplit("/", 1)[1]
        r = client.patch(r.headers["location"], content=os.urandom(9 * 1024 * 1024))
        assert r.status_code == 202, r.text
    objects, uploads = staged(s3_server, bucket, upload_id)
    assert objects and len(uploads) == 1 and parts_uploaded(s3_server, bucket, upload_id) == 1
    # The client never comes back. Its session as the collector sees it once the idle expiry has
    # passed (an hour by default): the row's times moved back by more than that.
    engine = sa.create_engine(cluster.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE upload_sessions SET created_at = created_at - 90000, updated_at = updated_at - 90000"
                    " WHERE id = :id"
                ),
                {"id": upload_id},
            )
    finally:
        engine.dispose()
    wait_until("the collector to expire the session", lambda: session_row(cluster, upload_id) is None)
    wait_until("the session's staging to leave the bucket", lambda: staged(s3_server, bucket, upload_id) == ([], []))


def lease_holder(cluster: Cluster, name: str) -> str | None:
    engine = sa.create_engine(cluster.database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT holder, expires_at FROM leases WHERE name = :n"), {"n": name}).first()
    finally:
        engine.dispose()
    return str(row.holder) if row is not None and row.expires_at > time.time() else None


def holder_replica(cluster: Cluster, holder: str) -> Replica | None:
    return cluster.owner_of(int(holder.split(":")[1]))  # a holder is host:pid:loop


def duty_runs(cluster: Cluster) -> dict[str, list[tuple[float, float, str]]]:
    """Every run of each exclusive duty from the replicas' logs: (start, end, holder); a run the kill
    cut short ends at the kill, one still going at the latest time in the logs."""
    runs: dict[str, list[tuple[float, float, str]]] = {}
    for replica in cluster.replicas:
        open_runs: dict[tuple[str, str], float] = {}
        last = 0.0
        for event in replica.events():
            last = max(last, timestamp(event)) if "timestamp" in event else last
            duty, holder = event.get("duty"), event.get("holder")
            if duty not in EXCLUSIVE_DUTIES or not isinstance(holder, str):
                continue
            key = (str(duty), holder)
            if event["event"] == "duty started":
                assert key not in open_runs, key
                open_runs[key] = timestamp(event)
            elif event["event"] == "duty ended":
                runs.setdefault(key[0], []).append((open_runs.pop(key), timestamp(event), holder))
        end = cluster.killed_at.get(replica.name, time.time())
        for (duty, holder), start in open_runs.items():
            runs.setdefault(duty, []).append((start, end, holder))
    return runs


def test_duties_run_one_at_a_time_and_move_on_when_their_holder_dies(cluster: Cluster) -> None:
    # The scrub reads every blob at a slow rate: it runs long enough to be caught holding its lease.
    def scrub_holder() -> Replica | None:
        holder = lease_holder(cluster, "scrub")
        return holder_replica(cluster, holder) if holder else None

    victim = wait_until("a replica to be scrubbing", scrub_holder)
    assert isinstance(victim, Replica)
    cluster.kill(victim)
    killed_at = cluster.killed_at[victim.name]

    def taken_over() -> bool:
        return any(
            start > killed_at and holder_replica(cluster, holder) is not None
            for start, _, holder in duty_runs(cluster).get("scrub", [])
        )

    wait_until("another replica to take over the scrub", taken_over)

    runs = duty_runs(cluster)
    assert {"gc", "scrub", "retention", "vulndb"} <= set(runs)  # every exclusive duty ran
    for duty, intervals in runs.items():
        intervals.sort()
        for (_, e1, h1), (s2, _, h2) in itertools.pairwise(intervals):
            assert s2 >= e1, f"{duty} ran in {h1} and {h2} at once"
        assert len({h for _, _, h in intervals}) > 1 or duty != "scrub"  # the scrub moved to another process
