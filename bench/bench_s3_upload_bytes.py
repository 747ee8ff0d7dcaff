"""Bytes the S3 driver sends per uploaded byte, by the size of the appends it is handed.

Counts request-body bytes per S3 operation (botocore's before-send event) for one upload of --mib MiB
plus a remainder, appended in batches of 4 MiB (the HTTP layer's batch before `append_bytes`) and of
`S3BlobStore.append_bytes` (a whole part), then committed. Against moto_server (tests/support/s3.py).
Run: .venv/bin/python bench/bench_s3_upload_bytes.py [--mib 64] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.s3 import start_s3

from dockyard.storage.s3 import S3BlobStore


def measure(store: S3BlobStore, data: bytes, batch: int, upload_id: str) -> tuple[dict[str, int], float]:
    sent: dict[str, int] = {}

    def count(request: Any, event_name: str, **_: Any) -> None:
        body = request.body
        size = len(body) if isinstance(body, bytes | bytearray) else int(request.headers.get("Content-Length") or 0)
        op = event_name.rsplit(".", 1)[-1]
        sent[op] = sent.get(op, 0) + size

    store.client.meta.events.register("before-send.s3", count, unique_id=upload_id)
    started = time.perf_counter()
    state = store.create_upload(upload_id)
    for i in range(0, len(data), batch):
        state = store.append_upload(upload_id, state, [data[i : i + batch]])
    store.commit_upload(upload_id, state, "sha256:" + hashlib.sha256(data).hexdigest())
    elapsed = time.perf_counter() - started
    store.client.meta.events.unregister("before-send.s3", unique_id=upload_id)
    return sent, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="16 MiB")
    args = ap.parse_args()
    mib = 16 if args.quick else args.mib
    with start_s3() as s3:
        store = s3.store(s3.new_bucket())
        print("| appends of | uploaded | sent in bodies | ratio | UploadPart | PutObject (tails) | time |")
        print("|---|---|---|---|---|---|---|")
        for n, batch in enumerate((4 * 1024 * 1024, store.append_bytes)):
            data = os.urandom(mib * 1024 * 1024 + 1_000_000)  # a remainder below a part
            sent, elapsed = measure(store, data, batch, f"b{n}")
            total = sum(sent.values())
            print(
                f"| {batch >> 20} MiB | {len(data) / 2**20:.1f} MiB | {total / 2**20:.1f} MiB | "
                f"{total / len(data):.2f}x | {sent.get('UploadPart', 0) / 2**20:.1f} MiB | "
                f"{sent.get('PutObject', 0) / 2**20:.1f} MiB | {elapsed:.2f} s |"
            )


if __name__ == "__main__":
    main()
