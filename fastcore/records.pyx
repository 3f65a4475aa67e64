"""Python view of fastcore's packed records: sizes, limits, keys, pack and unpack.

The gateway packs requests with ``pack_request``; the audit, reads and the reference
model decode LMDB values with the ``unpack_*`` functions. The layout itself is
declared once, in layout.pxd (the request in core_request.h); the files included below
group the records by concern.
"""
import enum
import hashlib
from collections import namedtuple

from libc.string cimport memcpy, memset, strncpy

from layout cimport *  # found through the build include path (setup.py)
from earning cimport discount_of, roll_member, rolling_total, tier_due


include "records/codes.pyx"
include "records/loyalty.pyx"

PROFILE_RECORD_SIZE = sizeof(ProfileRecord)
OUTLET_RECORD_SIZE = sizeof(OutletRecord)
# The layout of what fastcore writes; a store of another format is refused, not misread.
STORE_FORMAT = 3
STORE_FORMAT_KEY = b"store_format"
UNITS_ASSET = "UNT"            # the asset code of subscription units in accounts and journal
POINTS_ASSET = "PTS"           # the asset code of loyalty points
LOT_NEVER = 0xFFFF_FFFF_FFFF_FFFF  # index time of a lot that never expires
# Holds released by timeout at the start of one batch, at most (the rest: next batch).
HOLD_EXPIRIES_PER_BATCH_MAX = 1000  # holds (and packages) ended by time per batch, at most
HOLD_TIMEOUT_S_DEFAULT = 1800      # an open pre-authorization is released after this long
PIN_TRIES_MAX_DEFAULT = 3      # wrong PINs in a row that block a card, unless its range says

assert REQUEST_SIZE == 240, REQUEST_SIZE
assert REPLY_SIZE == 136, REPLY_SIZE
assert REQUEST_RECORD_SIZE == 392, REQUEST_RECORD_SIZE
assert PROFILE_RECORD_SIZE == 232, PROFILE_RECORD_SIZE
assert CARD_RECORD_SIZE == 80, CARD_RECORD_SIZE
assert ACCOUNT_RECORD_SIZE == 48, ACCOUNT_RECORD_SIZE
assert JOURNAL_ENTRY_SIZE == 72, JOURNAL_ENTRY_SIZE
assert RANGE_RECORD_SIZE == 68, RANGE_RECORD_SIZE

REQUEST_FLAG_REVERSED = RECORD_REVERSED
REQUEST_FLAG_TOMBSTONE = RECORD_TOMBSTONE
REQUEST_FLAG_CONFIRMED = RECORD_CONFIRMED
REQUEST_FLAG_RELEASED = RECORD_RELEASED
REQUEST_FLAG_TIMED_OUT = RECORD_TIMED_OUT
ACCOUNT_FLAG_NO_OVERDRAFT = ACCOUNT_NO_OVERDRAFT


include "records/requests.pyx"
include "records/fleet.pyx"
include "records/book.pyx"
