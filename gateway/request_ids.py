"""Request ids: clients choose them; cardgate's own clients use time-ordered UUIDv7.

Any RFC 4122/9562 UUID is accepted. Time-ordered ones (version 7) are recommended to
terminal vendors: the idempotency table is keyed by request id, and ids that grow with
time land next to each other in LMDB, so a batch of them dirties a few pages instead of
one page per request (benchmarks/core_throughput.py prints both).
"""
import os
import time
import uuid

_MS_BITS = 48


def uuid7() -> uuid.UUID:
    """RFC 9562 version 7: 48-bit Unix milliseconds, then random bits."""
    ms = time.time_ns() // 1_000_000 & ((1 << _MS_BITS) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) \
        | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


def new_request_id() -> str:
    return str(uuid7())
