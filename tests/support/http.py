"""The timeout of the tests' HTTP calls to real servers (server processes, moto, the OIDC provider).

httpx's default is 5 s, a deadline a busy 2-core CI machine can miss now and then: a test that fails
by chance. A call that is meant to fail fast names its own, shorter timeout instead."""

from __future__ import annotations

import httpx

TIMEOUT = httpx.Timeout(60.0)
