"""IANA time zones for the core: a zone's UTC offsets over time, compiled from the tzdata
package (so every machine has the same data) into the table the core reads, so that
local days, hours and months follow daylight saving with no Python per request.

A table is the zone's name (ZONE_NAME_BYTES, NUL-padded) followed by entries of
(from_s int64, offset_s int32, reserved int32), little-endian, ascending: the offset in
force from from_s until the next entry. It covers 1970 to 2100; the last offset holds
after that. It reaches the core as a DEFINE_ZONE request, sent before the configuration
that names the zone, with a request id derived from the table: the same table sent again
is an idempotent retry, a table that a newer tzdata changed replaces the old one.
"""
import datetime
import functools
import hashlib
import importlib.resources
import re
import struct
import zoneinfo

from cardgate.fastcore import records
from cardgate.fastcore.records import Op
from cardgate.gateway.validation import InvalidArgument

ZONE_NAME_BYTES = 32
ENTRY = struct.Struct("<qii")
COVERED_FROM_S = 0                              # 1970-01-01 UTC
COVERED_UNTIL_S = 4_102_444_800                 # 2100-01-01 UTC
BEFORE_ALL_S = -(2 ** 62)                       # from_s of the first entry
_SCAN_STEP_S = 86_400                           # offsets are sampled daily, then bisected
_NAME = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+){0,2}")


def zone_id(name: str) -> int:
    """The core's 32-bit name of a zone (never 0: 0 means a fixed offset)."""
    digest = hashlib.sha256(b"zone\0" + name.encode("ascii")).digest()
    return int.from_bytes(digest[:4], "little") or 1


def load(name: str, field: str = "time_zone") -> zoneinfo.ZoneInfo:
    """The zone from the tzdata package; InvalidArgument naming `field` if there is none."""
    if not (_NAME.fullmatch(name) and len(name) <= ZONE_NAME_BYTES):
        raise InvalidArgument(field, f"{name!r} is not an IANA time zone name (e.g. "
                              "'Europe/Warsaw')")
    try:
        with importlib.resources.files("tzdata.zoneinfo").joinpath(name).open("rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key=name)
    except (FileNotFoundError, IsADirectoryError, ValueError):
        raise InvalidArgument(field, f"{name!r} is not a time zone of the IANA database "
                              "(tzdata)") from None


def transitions(zone: zoneinfo.ZoneInfo) -> list:
    """[(from_s, offset_s)] of the zone from 1970 to 2100: every change of its UTC offset,
    to the second."""
    def offset(t):
        return int(datetime.datetime.fromtimestamp(t, zone).utcoffset().total_seconds())

    found = [(BEFORE_ALL_S, offset(COVERED_FROM_S))]
    for t in range(COVERED_FROM_S, COVERED_UNTIL_S, _SCAN_STEP_S):
        now = offset(t + _SCAN_STEP_S)
        if now == found[-1][1]:
            continue
        before, after = t, t + _SCAN_STEP_S      # the change is in (before, after]
        while after - before > 1:
            middle = (before + after) // 2
            if offset(middle) == found[-1][1]:
                before = middle
            else:
                after = middle
        found.append((after, now))
    return found


@functools.lru_cache(maxsize=64)
def compiled(name: str) -> tuple[int, bytes]:
    """(zone id, DEFINE_ZONE payload) of an IANA zone name."""
    table = b"".join(ENTRY.pack(from_s, offset_s, 0) for from_s, offset_s in
                     transitions(load(name)))
    return zone_id(name), name.encode("ascii").ljust(ZONE_NAME_BYTES, b"\0") + table


@functools.lru_cache(maxsize=64)
def define_request(name: str) -> bytes:
    """The packed DEFINE_ZONE request of a zone, its request id derived from its table."""
    zid, payload = compiled(name)
    request_id = hashlib.sha256(b"define zone\0" + payload).digest()[:records.REQUEST_ID_BYTES]
    return records.pack_request(Op.DEFINE_ZONE, request_id, zone_id=zid, payload=payload)


def zone_fields(name: str, utc_offset_min: int) -> tuple:
    """(zone id, [DEFINE_ZONE request]) of a configuration naming a zone (both given is an
    error), or (0, []) for a fixed UTC offset. A zone is read from tzdata and compiled once
    per process (a name that is none is refused each time)."""
    if not name:
        return 0, []
    if utc_offset_min:
        raise InvalidArgument("time_zone", "give a time zone or a UTC offset, not both")
    request = define_request(name)              # reads the zone: a bad name is refused here
    return zone_id(name), [request]
