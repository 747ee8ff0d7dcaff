"""A real S3-compatible server for the tests: moto's `moto_server` process on a free loopback port.

Reusable outside pytest (a multi-replica e2e test, a benchmark):

    with start_s3() as s3:
        bucket = s3.new_bucket()
        env = s3.env(bucket)          # DOCKYARD_STORAGE_URL, DOCKYARD_S3_*, AWS_* for `dockyard serve`
        store = s3.store(bucket)      # an S3BlobStore on it

`s3_available()` says why it cannot start (None when it can); the `s3_server` fixture in
tests/conftest.py turns that into a skip, or a failure under DOCKYARD_REQUIRE_ALL=1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


def _moto_server() -> str | None:
    here = Path(sys.executable).parent / "moto_server"  # the venv's, from the dev extra
    return str(here) if here.exists() else shutil.which("moto_server")


def s3_available() -> str | None:
    return None if _moto_server() else "moto_server not installed (pip install 'moto[server]', the dev extra)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    endpoint_url: str
    process: subprocess.Popen[bytes]
    region: str = REGION
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def session(self) -> Any:
        import boto3

        return boto3.session.Session(aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def client(self) -> Any:
        return self.session().client("s3", endpoint_url=self.endpoint_url, region_name=self.region)

    def new_bucket(self, name: str | None = None) -> str:
        bucket = name or f"dockyard-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def url(self, bucket: str, prefix: str = "") -> str:
        return f"s3://{bucket}/{prefix}".rstrip("/")

    def env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """What a `dockyard serve` process needs to use this bucket."""
        return {
            "DOCKYARD_STORAGE_URL": self.url(bucket, prefix),
            "DOCKYARD_S3_ENDPOINT_URL": self.endpoint_url,
            "DOCKYARD_S3_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def store(self, bucket: str, prefix: str = "", redirect_expiry: int | None = None) -> Any:
        from dockyard.storage.s3 import S3BlobStore

        return S3BlobStore(
            bucket,
            prefix,
            endpoint_url=self.endpoint_url,
            region=self.region,
            redirect_expiry=redirect_expiry,
            session=self.session(),
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def launch_s3(timeout: float = 60.0) -> S3Server:
    """Start moto_server on 127.0.0.1 and wait until it answers; RuntimeError when it does not."""
    binary = _moto_server()
    if binary is None:
        raise RuntimeError(s3_available() or "moto_server missing")
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            httpx.get(endpoint + "/moto-api/", timeout=2)
            return S3Server(endpoint, proc)
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"moto_server did not answer on {endpoint} within {timeout}s")


@contextmanager
def start_s3() -> Iterator[S3Server]:
    server = launch_s3()
    try:
        yield server
    finally:
        server.stop()
