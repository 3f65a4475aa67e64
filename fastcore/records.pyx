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
STORE_FORMAT = 8
STORE_FORMAT_KEY = b"store_format"
UNITS_ASSET = "UNT"            # the asset code of subscription units in accounts and journal
POINTS_ASSET = "PTS"           # the asset code of loyalty points
LOT_NEVER = 0xFFFF_FFFF_FFFF_FFFF  # index time of a lot that never expires
# Holds released by timeout at the start of one batch, at most (the rest: next batch).
HOLD_EXPIRIES_PER_BATCH_MAX = 1000  # holds (and packages) ended by time per batch, at most
HOLD_TIMEOUT_S_DEFAULT = 1800      # an open pre-authorization is released after this long
LATE_GRACE_S_DEFAULT = 7 * 86400   # after that, a completion is a forced capture this long
PIN_TRIES_MAX_DEFAULT = 3      # wrong PINs in a row that block a card, unless its range says

# The sizes this store format has; checked at import whatever the interpreter's flags.
for _name, _size, _expected in (("request", REQUEST_SIZE, 260), ("reply", REPLY_SIZE, 144),
                                ("request record", REQUEST_RECORD_SIZE, 420),
                                ("hold record", HOLD_RECORD_SIZE, 84),
                                ("profile record", PROFILE_RECORD_SIZE, 236),
                                ("card record", CARD_RECORD_SIZE, 84),
                                ("account record", ACCOUNT_RECORD_SIZE, 48),
                                ("journal entry", JOURNAL_ENTRY_SIZE, 72),
                                ("range record", RANGE_RECORD_SIZE, 99),
                                ("transaction record", sizeof(TransactionRecord), 164)):
    if _size != _expected:
        raise ImportError(f"fastcore was built with a {_size}-byte {_name}; store format "
                          f"{STORE_FORMAT} has {_expected}: the layout changed without a new format")
del _name, _size, _expected

REQUEST_FLAG_REVERSED = RECORD_REVERSED
REQUEST_FLAG_TOMBSTONE = RECORD_TOMBSTONE
REQUEST_FLAG_CONFIRMED = RECORD_CONFIRMED
REQUEST_FLAG_RELEASED = RECORD_RELEASED
REQUEST_FLAG_TIMED_OUT = RECORD_TIMED_OUT
ACCOUNT_FLAG_NO_OVERDRAFT = ACCOUNT_NO_OVERDRAFT
REQUEST_ID_BYTES = REQUEST_ID_SIZE    # a request id (and a lot id) is 16 bytes
JOURNAL_REASON_FORCED_CAPTURE = REASON_FORCED_CAPTURE
JOURNAL_REASON_OFFLINE_SALE = REASON_OFFLINE_SALE
REVIEW_FLAG_SOFT_LIMIT = REVIEW_SOFT_LIMIT
REVIEW_FLAG_FORCED_CAPTURE = REVIEW_FORCED_CAPTURE
REVIEW_FLAG_OFFLINE_POSTED = REVIEW_OFFLINE_POSTED
REVIEW_FLAG_OFFLINE_REFUSED = REVIEW_OFFLINE_REFUSED
OFFLINE_AGE_S_DEFAULT = OFFLINE_AGE_DEFAULT_S
OFFLINE_AHEAD_S_MAX = OFFLINE_AHEAD_MAX_S

# What the store may forget once its retention window has passed (gateway/store/
# retention.py prunes it): the core indexes each in the retention database, keyed
# kind(1) + time(8, big-endian) + id(16), from the time it became prunable.
RETAIN_REQUEST = b"R"       # an idempotency record, from its request's time
RETAIN_TOMBSTONE = b"T"     # a blind reversal's tombstone, from the reversal's time
RETAIN_HOLD = b"H"          # a hold, from its end (completed, voided, reversed, expired)
RETAIN_PACKAGE = b"P"       # a package, from when it was used up or expired
RETAIN_POINT_LOT = b"L"     # a point lot, likewise
RETAIN_REVIEW = b"V"        # a sale flagged for review, from its time


include "records/requests.pyx"
include "records/fleet.pyx"
include "records/book.pyx"
