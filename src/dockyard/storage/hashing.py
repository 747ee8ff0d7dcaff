"""Resumable SHA-256: a hash state that can be saved after every chunk and resumed on another replica.

hashlib cannot export its state, and no maintained library can (`rehash` reads OpenSSL 1.x's
private structs and refuses OpenSSL 3). libcrypto itself still exports the one-shot-free SHA-256
API (`SHA256_Init/Update/Final`) over a caller-owned `SHA256_CTX`, a struct its public header
spells out: eight 32-bit words, the bit count, and the unprocessed tail of at most 64 bytes. So
the state is ours to copy: it goes into the upload row after each chunk (~110 bytes), and the
next chunk, on whichever replica, continues from it at hashlib's own speed (the same assembly,
SHA-NI where the CPU has it; ctypes releases the GIL during the call). bench/README.md has the
measurement against re-reading the staged bytes at commit.

The filesystem driver keeps hashlib objects per process instead (`HashCache`): its staged file is
local, so a miss costs a local re-read, not a round trip.

When libcrypto is not found, `resumable()` answers None and the drivers recompute the digest by
streaming the staged bytes at commit: slower, never wrong.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import struct
import threading
from collections import OrderedDict
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import _Hash

DEFAULT_ALGORITHM = "sha256"
_FORMAT = b"S2"  # version tag of the exported state


class _Sha256Ctx(ctypes.Structure):
    # openssl/sha.h: SHA_LONG h[8]; SHA_LONG Nl, Nh; SHA_LONG data[SHA_LBLOCK]; unsigned int num, md_len;
    _fields_ = [
        ("h", ctypes.c_uint32 * 8),
        ("Nl", ctypes.c_uint32),
        ("Nh", ctypes.c_uint32),
        ("data", ctypes.c_uint8 * 64),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    ]


@cache
def _libcrypto() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        for fn in ("SHA256_Init", "SHA256_Update", "SHA256_Final"):
            getattr(lib, fn).restype = ctypes.c_int
        lib.SHA256_Update.argtypes = [ctypes.POINTER(_Sha256Ctx), ctypes.c_char_p, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    if _check(lib):
        return lib
    return None


def _check(lib: ctypes.CDLL) -> bool:
    """The library computes what hashlib computes (a guard against a libcrypto of another layout)."""
    h = ResumableSha256.__new__(ResumableSha256)
    h._lib = lib
    h._ctx = _Sha256Ctx()
    lib.SHA256_Init(ctypes.byref(h._ctx))
    sample = bytes(range(256)) * 3
    h.update(sample[:100])
    h = ResumableSha256.restore(h.export(), lib)
    h.update(sample[100:])
    return h.hexdigest() == hashlib.sha256(sample).hexdigest()


class ResumableSha256:
    """hashlib.sha256's interface (update, hexdigest) plus export()/restore()."""

    name = DEFAULT_ALGORITHM

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._ctx = _Sha256Ctx()
        lib.SHA256_Init(ctypes.byref(self._ctx))

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            buf = bytes(data) if not isinstance(data, bytes) else data
            self._lib.SHA256_Update(ctypes.byref(self._ctx), buf, len(buf))

    def export(self) -> bytes:
        """The state, portable between hosts: tag, h[8], bit count, then the unprocessed tail."""
        c = self._ctx
        tail = bytes(c.data)[: c.num]
        return _FORMAT + struct.pack(">8I2I", *c.h, c.Nl, c.Nh) + tail

    @classmethod
    def restore(cls, state: bytes, lib: ctypes.CDLL | None = None) -> ResumableSha256:
        lib = lib or _libcrypto()
        if lib is None or state[:2] != _FORMAT or len(state) < 42 or len(state) > 42 + 63:
            raise ValueError("not a resumable SHA-256 state")
        self = cls(lib)
        words = struct.unpack(">8I2I", state[2:42])
        tail = state[42:]
        c = self._ctx
        c.h[:] = words[:8]
        c.Nl, c.Nh = words[8], words[9]
        ctypes.memmove(c.data, tail, len(tail))
        c.num = len(tail)
        if (c.Nl // 8) % 64 != len(tail):
            raise ValueError("inconsistent SHA-256 state")
        return self

    def hexdigest(self) -> str:
        ctx = _Sha256Ctx()
        ctypes.pointer(ctx)[0] = self._ctx  # Final consumes the context: finish a copy
        out = ctypes.create_string_buffer(32)
        self._lib.SHA256_Final(out, ctypes.byref(ctx))
        return out.raw.hex()


def resumable() -> ResumableSha256 | None:
    """A new resumable SHA-256 hasher, or None when this host's libcrypto cannot provide one."""
    lib = _libcrypto()
    return None if lib is None else ResumableSha256(lib)


def resume(state: bytes | None) -> ResumableSha256 | None:
    """The hasher a saved state describes; None when there is none (the caller recomputes)."""
    if state is None:
        return None
    try:
        return ResumableSha256.restore(state)
    except ValueError:
        return None


class HashCache:
    """Hashers by upload, each with the size it has consumed and the tag of the state that recorded
    it (a driver's generation: two states of one size may describe different bytes)."""

    def __init__(self, capacity: int = 256) -> None:
        self._items: OrderedDict[str, tuple[int, str, _Hash]] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def take(self, upload_id: str, offset: int, tag: str = "") -> _Hash | None:
        """The hasher that has consumed exactly `offset` bytes of this upload under `tag`, if this
        process has it."""
        with self._lock:
            item = self._items.pop(upload_id, None)
        if item is None or item[0] != offset or item[1] != tag:
            return None
        return item[2]

    def start(self, upload_id: str) -> _Hash:
        with self._lock:
            self._items.pop(upload_id, None)
        return hashlib.new(DEFAULT_ALGORITHM)

    def keep(self, upload_id: str, size: int, hasher: _Hash, tag: str = "") -> None:
        with self._lock:
            self._items[upload_id] = (size, tag, hasher)
            self._items.move_to_end(upload_id)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def forget(self, upload_id: str) -> None:
        with self._lock:
            self._items.pop(upload_id, None)
