"""Python view of fastcore's packed records: sizes, limits, keys, pack and unpack.

The gateway packs requests with ``pack_request``; the audit, reads and the reference
model decode LMDB values with the ``unpack_*`` functions. The layout itself is
declared once, in records.pxd.
"""
import enum
from collections import namedtuple

from libc.string cimport memcpy, memset, strncpy

from layout cimport *  # found through the build include path (setup.py)


class Op(enum.IntEnum):
    NONE = OP_NONE
    CREATE_RANGE = OP_CREATE_RANGE
    ISSUE_CARD = OP_ISSUE_CARD
    SET_STATUS = OP_SET_STATUS
    LOAD = OP_LOAD
    PURCHASE = OP_PURCHASE
    REFUND = OP_REFUND
    REVERSAL = OP_REVERSAL
    SET_PIN = OP_SET_PIN
    PREAUTH = OP_PREAUTH
    COMPLETE = OP_COMPLETE
    VOID = OP_VOID
    HOLD_EXPIRY = OP_HOLD_EXPIRY
    ADJUST = OP_ADJUST
    CLEAR = OP_CLEAR
    DEACTIVATE = OP_DEACTIVATE
    SELL_PACKAGE = OP_SELL_PACKAGE
    USE_UNITS = OP_USE_UNITS
    PACKAGE_EXPIRY = OP_PACKAGE_EXPIRY


class Result(enum.IntEnum):
    """Outcome of one core request; the same numbers as cardgate.v1.ResultCode."""
    APPROVED = RESULT_APPROVED
    PARTIALLY_APPROVED = RESULT_PARTIALLY_APPROVED
    DECLINED_UNKNOWN_CARD = RESULT_DECLINED_UNKNOWN_CARD
    DECLINED_CARD_NOT_ACTIVE = RESULT_DECLINED_CARD_NOT_ACTIVE
    DECLINED_CARD_BLOCKED = RESULT_DECLINED_CARD_BLOCKED
    DECLINED_CARD_EXPIRED = RESULT_DECLINED_CARD_EXPIRED
    DECLINED_CARD_CLOSED = RESULT_DECLINED_CARD_CLOSED
    DECLINED_WRONG_PIN = RESULT_DECLINED_WRONG_PIN
    DECLINED_INSUFFICIENT_FUNDS = RESULT_DECLINED_INSUFFICIENT_FUNDS
    DECLINED_CURRENCY_MISMATCH = RESULT_DECLINED_CURRENCY_MISMATCH
    DECLINED_BALANCE_LIMIT_EXCEEDED = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
    DECLINED_LOAD_LIMIT_EXCEEDED = RESULT_DECLINED_LOAD_LIMIT_EXCEEDED
    DECLINED_BALANCE_NOT_ZERO = RESULT_DECLINED_BALANCE_NOT_ZERO
    DECLINED_NO_UNITS_LEFT = RESULT_DECLINED_NO_UNITS_LEFT
    DECLINED_ORIGINAL_NOT_FOUND = RESULT_DECLINED_ORIGINAL_NOT_FOUND
    DECLINED_ORIGINAL_NOT_REFUNDABLE = RESULT_DECLINED_ORIGINAL_NOT_REFUNDABLE
    DECLINED_REFUND_EXCEEDS_ORIGINAL = RESULT_DECLINED_REFUND_EXCEEDS_ORIGINAL
    DECLINED_CARD_MISMATCH = RESULT_DECLINED_CARD_MISMATCH
    DECLINED_NOT_REVERSIBLE = RESULT_DECLINED_NOT_REVERSIBLE
    DECLINED_ALREADY_REVERSED = RESULT_DECLINED_ALREADY_REVERSED
    DECLINED_CARD_ALREADY_ISSUED = RESULT_DECLINED_CARD_ALREADY_ISSUED
    DECLINED_UNKNOWN_CARD_RANGE = RESULT_DECLINED_UNKNOWN_CARD_RANGE
    DECLINED_CARD_RANGE_EXISTS = RESULT_DECLINED_CARD_RANGE_EXISTS
    DECLINED_INVALID_STATUS_CHANGE = RESULT_DECLINED_INVALID_STATUS_CHANGE
    DECLINED_HOLD_NOT_FOUND = RESULT_DECLINED_HOLD_NOT_FOUND
    DECLINED_HOLD_ALREADY_COMPLETED = RESULT_DECLINED_HOLD_ALREADY_COMPLETED
    DECLINED_HOLD_VOIDED = RESULT_DECLINED_HOLD_VOIDED
    DECLINED_HOLD_EXPIRED = RESULT_DECLINED_HOLD_EXPIRED
    DECLINED_COMPLETION_EXCEEDS_HOLD = RESULT_DECLINED_COMPLETION_EXCEEDS_HOLD
    REJECTED_REQUEST_ID_REUSED = RESULT_REJECTED_REQUEST_ID_REUSED
    REJECTED_INVALID_REQUEST = RESULT_REJECTED_INVALID_REQUEST


class CardStatus(enum.IntEnum):
    """Same numbers as cardgate.v1.CardStatus."""
    ISSUED = CARD_ISSUED
    ACTIVE = CARD_ACTIVE
    BLOCKED = CARD_BLOCKED
    CLOSED = CARD_CLOSED


class HoldState(enum.IntEnum):
    OPEN = HOLD_OPEN
    COMPLETED = HOLD_COMPLETED
    VOIDED = HOLD_VOIDED
    EXPIRED = HOLD_EXPIRED


class Slot(enum.IntEnum):
    CARD_VALUE = SLOT_CARD_VALUE
    RANGE_FUNDING = SLOT_RANGE_FUNDING
    RANGE_MERCHANT = SLOT_RANGE_MERCHANT
    CARD_HELD = SLOT_CARD_HELD
    CARD_UNITS = SLOT_CARD_UNITS
    RANGE_UNITS_SOLD = SLOT_RANGE_UNITS_SOLD
    RANGE_UNITS_USED = SLOT_RANGE_UNITS_USED
    RANGE_UNITS_EXPIRED = SLOT_RANGE_UNITS_EXPIRED


class PackageState(enum.IntEnum):
    OPEN = PACKAGE_OPEN
    USED_UP = PACKAGE_USED_UP
    EXPIRED = PACKAGE_EXPIRED

# Limits (minor units). An amount above AMOUNT_MINOR_MAX is refused as invalid; a
# balance may never exceed BALANCE_MINOR_MAX, so every sum stays far inside int64.
AMOUNT_MINOR_MAX = 10_000_000_000_000          # 100 billion units of a 2-decimal currency
BALANCE_MINOR_MAX = 1_000_000_000_000_000
SYSTEM_OWNER_BASE = 0xFF00_0000_0000_0000       # owner ids of range-level accounts

REQUEST_SIZE = sizeof(CoreRequest)
REPLY_SIZE = sizeof(CoreReply)
REQUEST_RECORD_SIZE = sizeof(RequestRecord)
CARD_RECORD_SIZE = sizeof(CardRecord)
ACCOUNT_RECORD_SIZE = sizeof(AccountRecord)
JOURNAL_ENTRY_SIZE = sizeof(JournalEntry)
RANGE_RECORD_SIZE = sizeof(RangeRecord)
HOLD_RECORD_SIZE = sizeof(HoldRecord)
PACKAGE_RECORD_SIZE = sizeof(PackageRecord)
UNITS_ASSET = "UNT"            # the asset code of subscription units in accounts and journal
# Holds released by timeout at the start of one batch, at most (the rest: next batch).
HOLD_EXPIRIES_PER_BATCH_MAX = 1000  # holds (and packages) ended by time per batch, at most
HOLD_TIMEOUT_S_DEFAULT = 1800      # an open pre-authorization is released after this long
PIN_TRIES_MAX_DEFAULT = 3      # wrong PINs in a row that block a card, unless its range says

assert REQUEST_SIZE == 176, REQUEST_SIZE
assert REPLY_SIZE == 64, REPLY_SIZE
assert REQUEST_RECORD_SIZE == 256, REQUEST_RECORD_SIZE
assert CARD_RECORD_SIZE == 80, CARD_RECORD_SIZE
assert ACCOUNT_RECORD_SIZE == 48, ACCOUNT_RECORD_SIZE
assert JOURNAL_ENTRY_SIZE == 56, JOURNAL_ENTRY_SIZE
assert RANGE_RECORD_SIZE == 68, RANGE_RECORD_SIZE

REQUEST_FLAG_REVERSED = REQUEST_REVERSED
REQUEST_FLAG_TOMBSTONE = REQUEST_TOMBSTONE
ACCOUNT_FLAG_NO_OVERDRAFT = ACCOUNT_NO_OVERDRAFT

Reply = namedtuple("Reply", "result op card_status currency approved_minor balance_minor "
                   "pending_minor card_id journal_seq approval_code pan_first6 pan_last4 "
                   "pan_length expiry_yyyymm")
RequestView = namedtuple("RequestView", "op target_status currency amount_minor request_id "
                         "ref_request_id card_key range_id expiry_yyyymm pan_first6 pan_last4 "
                         "pan_length pin_verifier partial_ok pin_tries_max reason adjust_down "
                         "load_per_day_max_minor valid_until_s")
RequestRecordView = namedtuple("RequestRecordView", "request reply refunded_minor flags")
Card = namedtuple("Card", "card_id range_id expiry_yyyymm status pan_first6 pan_last4 "
                  "pan_length issued_s activated_s pin_set pin_failures load_day "
                  "loaded_today_minor")
Account = namedtuple("Account", "balance_minor pending_minor currency flags "
                     "credits_minor_total debits_minor_total last_journal_seq")
JournalView = namedtuple("JournalView", "request_id debit_owner debit_slot credit_owner "
                         "credit_slot op currency amount_minor time_s reason")
Hold = namedtuple("Hold", "card_id range_id status currency held_minor completed_minor "
                  "created_s expires_s")
CardRange = namedtuple("CardRange", "range_id pan_length iin_prefix iin_digits currency name "
                       "pin_tries_max balance_max_minor load_per_day_max_minor")


cdef inline str _currency(const char* c):
    return c[:strnlen_max(c, CURRENCY_SIZE)].decode("ascii")


cdef inline Py_ssize_t strnlen_max(const char* c, Py_ssize_t n):
    cdef Py_ssize_t i
    for i in range(n):
        if c[i] == 0:
            return i
    return n


cdef inline void _check_size(bytes data, Py_ssize_t expected, str what) except *:
    if len(data) != expected:
        raise ValueError(f"{what} record must be {expected} bytes, got {len(data)}")


def pack_request(int op, bytes request_id, *, bytes ref_request_id=None, bytes card_key=None,
                 str currency="", long long amount_minor=0, int target_status=0,
                 unsigned int range_id=0, unsigned int expiry_yyyymm=0,
                 unsigned int pan_first6=0, unsigned int pan_last4=0, int pan_length=0,
                 unsigned long long iin_prefix=0, int iin_digits=0, str range_name="",
                 bytes pin_verifier=None, bint partial_ok=False, int pin_tries_max=0,
                 int reason=0, bint adjust_down=False, long long load_per_day_max_minor=0,
                 unsigned long long valid_until_s=0):
    """Pack one core request; the gateway validates values before calling this."""
    cdef CoreRequest r
    memset(&r, 0, sizeof(r))
    if len(request_id) != REQUEST_ID_SIZE:
        raise ValueError("request_id must be 16 bytes")
    r.op = op
    r.target_status = target_status
    r.pan_length = pan_length
    r.iin_digits = iin_digits
    cdef bytes cur = currency.encode("ascii")
    if len(cur) > 3:
        raise ValueError(f"currency must be 3 letters, got {currency!r}")
    strncpy(r.currency, cur, CURRENCY_SIZE)
    r.amount_minor = amount_minor
    memcpy(r.request_id, <char*>request_id, REQUEST_ID_SIZE)
    if ref_request_id is not None:
        if len(ref_request_id) != REQUEST_ID_SIZE:
            raise ValueError("ref_request_id must be 16 bytes")
        memcpy(r.ref_request_id, <char*>ref_request_id, REQUEST_ID_SIZE)
    if card_key is not None:
        if len(card_key) != CARD_KEY_SIZE:
            raise ValueError("card_key must be 32 bytes")
        memcpy(r.card_key, <char*>card_key, CARD_KEY_SIZE)
    r.range_id = range_id
    r.expiry_yyyymm = expiry_yyyymm
    r.pan_first6 = pan_first6
    r.pan_last4 = pan_last4
    r.iin_prefix = iin_prefix
    cdef bytes name = range_name.encode("utf-8")
    if len(name) > RANGE_NAME_SIZE:
        raise ValueError(f"range name is at most {RANGE_NAME_SIZE} bytes of UTF-8")
    memcpy(r.range_name, <char*>name, len(name))
    if pin_verifier is not None:
        if len(pin_verifier) != PIN_VERIFIER_SIZE:
            raise ValueError(f"pin_verifier must be {PIN_VERIFIER_SIZE} bytes")
        memcpy(r.pin_verifier, <char*>pin_verifier, PIN_VERIFIER_SIZE)
        r.flags |= REQUEST_PIN_PRESENT
    if partial_ok:
        r.flags |= REQUEST_PARTIAL_OK
    if not 0 <= pin_tries_max <= 255:
        raise ValueError("pin_tries_max must be 0 to 255")
    r.pin_tries_max = pin_tries_max
    r.reason = reason
    if adjust_down:
        r.flags |= REQUEST_ADJUST_DOWN
    r.load_per_day_max_minor = load_per_day_max_minor
    r.valid_until_s = valid_until_s
    return (<char*>&r)[:sizeof(r)]


cdef object _reply(const CoreReply* p):
    return Reply(p.result, p.op, p.card_status, _currency(p.currency), p.approved_minor,
                 p.balance_minor, p.pending_minor, p.card_id, p.journal_seq, p.approval_code,
                 p.pan_first6, p.pan_last4, p.pan_length, p.expiry_yyyymm)


cdef object _request(const CoreRequest* p):
    return RequestView(p.op, p.target_status, _currency(p.currency), p.amount_minor,
                       (<char*>p.request_id)[:REQUEST_ID_SIZE],
                       (<char*>p.ref_request_id)[:REQUEST_ID_SIZE],
                       (<char*>p.card_key)[:CARD_KEY_SIZE], p.range_id, p.expiry_yyyymm,
                       p.pan_first6, p.pan_last4, p.pan_length,
                       (<char*>p.pin_verifier)[:PIN_VERIFIER_SIZE]
                       if p.flags & REQUEST_PIN_PRESENT else None,
                       bool(p.flags & REQUEST_PARTIAL_OK), p.pin_tries_max, p.reason,
                       bool(p.flags & REQUEST_ADJUST_DOWN), p.load_per_day_max_minor,
                       p.valid_until_s)


def unpack_reply(bytes data):
    _check_size(data, sizeof(CoreReply), "reply")
    return _reply(<const CoreReply*><const char*>data)


def unpack_replies(bytes data):
    """Split a batch answer of ``apply_batch`` into Reply tuples, in request order."""
    if len(data) % sizeof(CoreReply):
        raise ValueError("batch answer is not a whole number of replies")
    cdef const char* base = data
    return [_reply(<const CoreReply*>(base + i)) for i in range(0, len(data), sizeof(CoreReply))]


def unpack_request(bytes data):
    _check_size(data, sizeof(CoreRequest), "request")
    return _request(<const CoreRequest*><const char*>data)


def unpack_request_record(bytes data):
    _check_size(data, sizeof(RequestRecord), "request")
    cdef const RequestRecord* p = <const RequestRecord*><const char*>data
    return RequestRecordView(_request(&p.request), _reply(&p.reply), p.refunded_minor, p.flags)


def unpack_card(bytes data):
    _check_size(data, sizeof(CardRecord), "card")
    cdef const CardRecord* p = <const CardRecord*><const char*>data
    return Card(p.card_id, p.range_id, p.expiry_yyyymm, p.status, p.pan_first6, p.pan_last4,
                p.pan_length, p.issued_s, p.activated_s, bool(p.pin_set), p.pin_failures,
                p.load_day, p.loaded_today_minor)


def unpack_account(bytes data):
    _check_size(data, sizeof(AccountRecord), "account")
    cdef const AccountRecord* p = <const AccountRecord*><const char*>data
    return Account(p.balance_minor, p.pending_minor, _currency(p.currency), p.flags,
                   p.credits_minor_total, p.debits_minor_total, p.last_journal_seq)


def unpack_journal_entry(bytes data):
    _check_size(data, sizeof(JournalEntry), "journal")
    cdef const JournalEntry* p = <const JournalEntry*><const char*>data
    return JournalView((<char*>p.request_id)[:REQUEST_ID_SIZE], p.debit_owner, p.debit_slot,
                       p.credit_owner, p.credit_slot, p.op, _currency(p.currency),
                       p.amount_minor, p.time_s, p.reason)


def unpack_hold(bytes data):
    _check_size(data, sizeof(HoldRecord), "hold")
    cdef const HoldRecord* p = <const HoldRecord*><const char*>data
    return Hold(p.card_id, p.range_id, p.status, _currency(p.currency), p.held_minor,
                p.completed_minor, p.created_s, p.expires_s)


Package = namedtuple("Package", "card_id range_id status units_total units_left created_s "
                     "valid_until_s")


def unpack_package(bytes data):
    _check_size(data, sizeof(PackageRecord), "package")
    cdef const PackageRecord* p = <const PackageRecord*><const char*>data
    return Package(p.card_id, p.range_id, p.status, p.units_total, p.units_left, p.created_s,
                   p.valid_until_s)


def unpack_range(bytes data):
    _check_size(data, sizeof(RangeRecord), "range")
    cdef const RangeRecord* p = <const RangeRecord*><const char*>data
    name = p.name[:strnlen_max(p.name, RANGE_NAME_SIZE)].decode("utf-8", "replace")
    return CardRange(p.range_id, p.pan_length, p.iin_prefix, p.iin_digits,
                     _currency(p.currency), name, p.pin_tries_max, p.balance_max_minor,
                     p.load_per_day_max_minor)


def card_key(unsigned long long card_id):
    """LMDB key of a card record in the book."""
    return card_key_of(card_id)


def account_key(unsigned long long owner_id, int slot):
    """LMDB key of an account record in the book."""
    return account_key_of(owner_id, slot)


def journal_key(unsigned long long seq):
    return u64_be(seq)


def journal_seq_of(bytes key):
    if len(key) != 8:
        raise ValueError("journal keys are 8 bytes")
    return u64_from_be(<const unsigned char*><const char*>key)


def range_key(unsigned int range_id):
    return range_key_of(range_id)


def parse_book_key(bytes key):
    """('card', card_id, None) or ('account', owner_id, slot) for a key of the book."""
    cdef const unsigned char* k = <const unsigned char*><const char*>key
    if len(key) == 9 and k[8] == b'C':
        return "card", u64_from_be(k), None
    if len(key) == 10 and k[8] == b'A':
        return "account", u64_from_be(k), k[9]
    raise ValueError(f"not a key of the book: {key.hex()}")
