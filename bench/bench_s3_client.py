"""Which S3 client, and how to keep the upload hash across replicas: measured against moto_server.

Rows (median of --reps, alternating the clients A/B then B/A):
- put / get of one --mib MiB object (boto3: put_object / get_object streamed; obstore: put / get);
- --heads HEAD requests of small objects (a blob GET's stat, a push's existence check);
- the commit of a 256 MiB upload whose last chunk came to another replica: resuming the saved
  SHA-256 state (dockyard.storage.hashing) against streaming the staged object back and hashing it.

obstore is only installed for this script (`pip install obstore`); boto3 is the driver's dependency.
Run: .venv/bin/python bench/bench_s3_client.py [--mib 256] [--heads 500] [--reps 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.s3 import start_s3

from dockyard.storage.hashing import resumable, resume


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--heads", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    data = os.urandom(args.mib * 1024 * 1024)
    with start_s3() as s3:
        bucket = s3.new_bucket()
        boto = s3.client()
        clients: dict[str, dict[str, Callable[[], object]]] = {}

        def boto_get() -> None:
            body = boto.get_object(Bucket=bucket, Key="big-boto")["Body"]
            for _ in body.iter_chunks(1024 * 1024):
                pass

        clients["boto3"] = {
            "put": lambda: boto.put_object(Bucket=bucket, Key="big-boto", Body=data),
            "get": boto_get,
            "head": lambda: [boto.head_object(Bucket=bucket, Key=f"small-{i % 10}") for i in range(args.heads)],
        }
        try:
            import obstore
            from obstore.store import S3Store

            obs = S3Store(
                bucket,
                endpoint=s3.endpoint_url,
                region=s3.region,
                access_key_id=s3.access_key,
                secret_access_key=s3.secret_key,
                client_options={"allow_http": True},
            )

            def obs_get() -> None:
                for _ in obstore.get(obs, "big-obs").stream(1024 * 1024):
                    pass

            clients["obstore"] = {
                "put": lambda: obstore.put(obs, "big-obs", data, use_multipart=False),  # as put_object
                "get": obs_get,
                "head": lambda: [obstore.head(obs, f"small-{i % 10}") for i in range(args.heads)],
            }
        except ImportError:
            print("obstore not installed: boto3 only", file=sys.stderr)
        for i in range(10):
            boto.put_object(Bucket=bucket, Key=f"small-{i}", Body=b"x" * 100)
        results: dict[tuple[str, str], list[float]] = {}
        names = list(clients)
        for rep in range(args.reps):
            order = names if rep % 2 == 0 else names[::-1]
            for op in ("put", "get", "head"):
                for name in order:
                    results.setdefault((name, op), []).append(timed(clients[name][op]))
        print(f"{'client':8} {'op':5} {'median s':>9}  rate")
        for (name, op), times in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            t = statistics.median(times)
            rate = f"{args.heads / t:8.0f} HEAD/s" if op == "head" else f"{args.mib / t:8.1f} MiB/s"
            print(f"{name:8} {op:5} {t:9.3f}  {rate}")

        # Hash state across replicas: resume the saved state vs read the staged bytes back.
        hasher = resumable()
        assert hasher is not None, "libcrypto's SHA256_* not available"
        hasher.update(data[: -4 * 1024 * 1024])
        state = hasher.export()

        def resumed() -> None:
            h = resume(state)
            assert h is not None
            h.update(data[-4 * 1024 * 1024 :])
            h.hexdigest()

        def recomputed() -> None:
            h = hashlib.sha256()
            body = boto.get_object(Bucket=bucket, Key="big-boto")["Body"]
            for chunk in body.iter_chunks(1024 * 1024):
                h.update(chunk)
            h.hexdigest()

        r = statistics.median(timed(resumed) for _ in range(args.reps))
        c = statistics.median(timed(recomputed) for _ in range(args.reps))
        print(f"commit after a change of replica: resume saved state {r:.3f}s, re-read + hash {c:.3f}s ({c / r:.0f}x)")
        print(f"saved state: {len(state)} bytes per chunk")


if __name__ == "__main__":
    main()
