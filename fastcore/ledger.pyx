"""The authorization ledger: applies a batch of packed requests inside one LMDB write
transaction that the caller owns and commits.

Every request takes full effect or none: all checks run before the first write of a
request, and a failing write (map full, disk full) raises, so the caller aborts the
whole transaction. A declined request writes only its idempotency record; a request
rejected as invalid, or reusing a request id for other content, writes nothing.
"""
from libc.stdint cimport INT64_MAX, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

import hashlib

from layout cimport *  # found through the build include path (setup.py)
from civil cimport days_from_civil, in_schedule, yyyymm_of_day
from earning cimport *

from cardgate.fastcore import records as _records

DB_NAMES = (b"requests", b"book", b"pan_index", b"journal", b"config", b"holds", b"hold_expiry",
            b"packages", b"package_expiry", b"card_packages", b"usage", b"reviews",
            b"point_lots", b"point_lot_expiry")
(DB_REQUESTS, DB_BOOK, DB_PAN_INDEX, DB_JOURNAL, DB_CONFIG, DB_HOLDS, DB_HOLD_EXPIRY,
 DB_PACKAGES, DB_PACKAGE_EXPIRY, DB_CARD_PACKAGES, DB_USAGE, DB_REVIEWS,
 DB_POINT_LOTS, DB_POINT_LOT_EXPIRY) = range(14)
NEXT_CARD_ID_KEY = b"next_card_id"
cdef bytes BOOK_POINT_LOT_TAG = b"L"    # a card's point lots in the book: card_id 'L' time id

# The limits are declared once, in records.pyx; C copies of them for the hot path.
cdef int64_t AMOUNT_MINOR_MAX = _records.AMOUNT_MINOR_MAX
cdef int64_t BALANCE_MINOR_MAX = _records.BALANCE_MINOR_MAX
cdef uint64_t SYSTEM_OWNER_BASE = _records.SYSTEM_OWNER_BASE
cdef uint64_t CONTRACT_OWNER_BASE = _records.CONTRACT_OWNER_BASE
cdef int64_t VOLUME_ML_MAX = _records.VOLUME_ML_MAX
cdef int64_t ODOMETER_MAX = _records.ODOMETER_MAX
cdef int64_t SERIALS_PER_REQUEST_MAX = _records.SERIALS_PER_REQUEST_MAX
cdef bytes CATALOG_KEY = _records.CATALOG_KEY
cdef int TIMED_ENDS_PER_BATCH_MAX = _records.HOLD_EXPIRIES_PER_BATCH_MAX
cdef uint8_t PIN_TRIES_MAX_DEFAULT = _records.PIN_TRIES_MAX_DEFAULT
cdef bytes UNITS = _records.UNITS_ASSET.encode("ascii").ljust(CURRENCY_SIZE, b"\x00")
cdef bytes POINTS = _records.POINTS_ASSET.encode("ascii").ljust(CURRENCY_SIZE, b"\x00")
cdef uint64_t LOT_NEVER = _records.LOT_NEVER
cdef uint32_t APPROVAL_CODE_MODULUS = 1_000_000


cdef inline bint took_effect(uint8_t result):
    return result == RESULT_APPROVED or result == RESULT_PARTIALLY_APPROVED


cdef inline uint64_t value_owner_of(const CardRecord* card):
    """Whose value a card spends: its own, or its contract's."""
    return CONTRACT_OWNER_BASE + card.contract_id if card.contract_id else card.card_id


cdef inline int64_t balance_max_of(const RangeRecord* rng):
    """The most a card of the range may hold (its own limit, else the system's)."""
    return rng.balance_max_minor if rng.balance_max_minor else BALANCE_MINOR_MAX


cdef inline int64_t available_of(const CoreReply* rp):
    return rp.balance_minor - rp.pending_minor + rp.credit_limit_minor


cdef uint64_t policy_expiry(const ProgramRecord* program, uint64_t now_s):
    """The last second a lot earned at now_s can be used, by its program's policy (0:
    never), at the end of a local day."""
    cdef int64_t offset_s = program.utc_offset_min * 60
    cdef int64_t day = (<int64_t>now_s + offset_s) // 86400
    cdef uint32_t yyyymm = yyyymm_of_day(day)
    cdef int64_t months = (yyyymm // 100) * 12 + (yyyymm % 100 - 1) + program.expiry_n
    cdef int64_t end_day                  # the first day after the last usable one
    if program.expiry_kind == EXPIRY_DAYS_AFTER:
        end_day = day + program.expiry_n + 1
    elif program.expiry_kind == EXPIRY_MONTH_END_AFTER:
        end_day = days_from_civil((months + 1) // 12, (months + 1) % 12 + 1, 1)
    elif program.expiry_kind == EXPIRY_YEAR_END_AFTER:
        end_day = days_from_civil(months // 12 + 1, 1, 1)
    else:
        return 0
    return <uint64_t>(end_day * 86400 - 1 - offset_s)


cdef int release_reservation(const HoldRecord* hold, UsageRecord* usage) except -1:
    """Take back what a counted hold reserved against the card's fleet limits."""
    usage.pending[0] -= hold.held_minor
    usage.pending[1] -= hold.volume_ml
    usage.pending[2] -= 1
    assert usage.pending[0] >= 0 and usage.pending[1] >= 0 and usage.pending[2] >= 0, \
        "fleet reservations below zero"
    return 0


cdef void period_indexes(int64_t local_s, uint32_t* index):
    """Day, week (Monday first), month (YYYYMM) and lifetime of a local time."""
    cdef int64_t day = local_s // 86400
    index[0] = <uint32_t>day
    index[1] = <uint32_t>((day + 3) // 7)
    index[2] = yyyymm_of_day(day)
    index[3] = 1


# A fleet card's rules and usage while one request is decided.
cdef struct Fleet:
    bint active
    ProfileRecord profile
    UsageRecord usage
    int64_t local_s


def open_databases(env):
    """Open (creating on first use) the named databases fastcore uses, in DB_* order."""
    return tuple(env.open_db(name, create=True) for name in DB_NAMES)


cdef inline bytes _bytes(const void* p, Py_ssize_t n):
    return (<const char*>p)[:n]


cdef inline uint32_t _approval_code(const uint8_t* request_id, uint64_t seq):
    # FNV-1a of the request id, mixed with the journal position: six digits that a
    # cashier can read back, unique enough to find the transaction.
    cdef uint64_t h = 1469598103934665603ULL
    cdef int i
    for i in range(REQUEST_ID_SIZE):
        h = (h ^ request_id[i]) * 1099511628211ULL
    return <uint32_t>((h + seq) % APPROVAL_CODE_MODULUS)


cdef class _LotKind:
    """Value that comes in lots usable until a time, used earliest-expiring first and
    expired through the journal: subscription units (packages) and loyalty points."""
    cdef object db, db_expiry, db_card
    cdef bytes asset, card_tag      # card index keys: card_id(8) + card_tag + time(8) + lot id
    cdef uint8_t card_slot, issued_slot, used_slot, expired_slot
    cdef uint8_t op_issue, op_use, op_expiry, none_left

    def __cinit__(self, db, db_expiry, db_card, bytes card_tag, bytes asset, uint8_t card_slot,
                  uint8_t issued_slot, uint8_t used_slot, uint8_t expired_slot,
                  uint8_t op_issue, uint8_t op_use, uint8_t op_expiry, uint8_t none_left):
        self.db, self.db_expiry, self.db_card, self.asset = db, db_expiry, db_card, asset
        self.card_tag = card_tag
        self.card_slot, self.issued_slot = card_slot, issued_slot
        self.used_slot, self.expired_slot = used_slot, expired_slot
        self.op_issue, self.op_use, self.op_expiry = op_issue, op_use, op_expiry
        self.none_left = none_left


cdef inline uint64_t lot_time(const PackageRecord* lot):
    return lot.valid_until_s if lot.valid_until_s else LOT_NEVER


cdef class _BatchApplier:
    cdef object txn, get, put, delete
    cdef object db_requests, db_book, db_pan, db_journal, db_config, db_holds, db_hold_expiry
    cdef object db_packages, db_package_expiry, db_card_packages, db_usage, db_reviews
    cdef object db_point_lots, db_point_lot_expiry
    cdef _LotKind packages, points
    cdef uint64_t next_seq, now_s, hold_timeout_s
    cdef uint32_t actor             # the request being applied's actor (0 while time ends lots)
    cdef uint32_t partner           # loyalty partner where the request happens (0: none)
    cdef uint32_t origin_partner    # the partner that issued the points being used
    cdef dict programs              # range id -> (ProgramRecord bytes, EarnRule[] bytes) or None
    cdef dict partners              # outlet code -> partner id
    cdef uint32_t now_yyyymm

    def __cinit__(self, txn, dbs, uint64_t now_s, uint32_t now_yyyymm, uint64_t hold_timeout_s):
        self.txn = txn
        self.get = txn.get
        self.put = txn.put
        self.delete = txn.delete
        (self.db_requests, self.db_book, self.db_pan, self.db_journal,
         self.db_config, self.db_holds, self.db_hold_expiry, self.db_packages,
         self.db_package_expiry, self.db_card_packages, self.db_usage, self.db_reviews,
         self.db_point_lots, self.db_point_lot_expiry) = dbs
        self.programs = {}
        self.partners = {}
        self.packages = _LotKind(self.db_packages, self.db_package_expiry, self.db_card_packages,
                                 b"", UNITS, SLOT_CARD_UNITS, SLOT_RANGE_UNITS_SOLD,
                                 SLOT_RANGE_UNITS_USED, SLOT_RANGE_UNITS_EXPIRED, OP_SELL_PACKAGE,
                                 OP_USE_UNITS, OP_PACKAGE_EXPIRY, RESULT_DECLINED_NO_UNITS_LEFT)
        # A card's points index, member standing and history sit in the book next to
        # the card: a sale that earns dirties the card's page, not three more.
        self.points = _LotKind(self.db_point_lots, self.db_point_lot_expiry, self.db_book,
                               BOOK_POINT_LOT_TAG, POINTS, SLOT_CARD_POINTS,
                               SLOT_RANGE_POINTS_ISSUED, SLOT_RANGE_POINTS_REDEEMED,
                               SLOT_RANGE_POINTS_EXPIRED, OP_EARN_POINTS, OP_REDEEM_POINTS,
                               OP_POINTS_EXPIRY, RESULT_DECLINED_INSUFFICIENT_POINTS)
        self.now_s = now_s
        self.now_yyyymm = now_yyyymm
        self.hold_timeout_s = hold_timeout_s
        cdef bytes last_key = None
        cursor = txn.cursor(db=self.db_journal)
        if cursor.last():
            last_key = cursor.key()
        cursor.close()
        self.next_seq = 1 if last_key is None else \
            u64_from_be(<const unsigned char*><const char*>last_key) + 1

    # ---- storage helpers -------------------------------------------------------------

    cdef bint read_account(self, uint64_t owner, uint8_t slot, AccountRecord* out) except -1:
        value = self.get(account_key_of(owner, slot), None, self.db_book)
        if value is None:
            return False
        assert len(value) == sizeof(AccountRecord), "corrupt account record"
        memcpy(out, <const char*>value, sizeof(AccountRecord))
        return True

    cdef int write_account(self, uint64_t owner, uint8_t slot, const AccountRecord* acc) except -1:
        self.put(account_key_of(owner, slot), _bytes(acc, sizeof(AccountRecord)),
                 False, True, False, self.db_book)
        return 0

    cdef int write_card(self, const CardRecord* card) except -1:
        self.put(card_key_of(card.card_id), _bytes(card, sizeof(CardRecord)),
                 False, True, False, self.db_book)
        return 0

    cdef bint read_request(self, const uint8_t* request_id, RequestRecord* out) except -1:
        value = self.get(_bytes(request_id, REQUEST_ID_SIZE), None, self.db_requests)
        if value is None:
            return False
        assert len(value) == sizeof(RequestRecord), "corrupt request record"
        memcpy(out, <const char*>value, sizeof(RequestRecord))
        return True

    cdef int write_request(self, const RequestRecord* rec) except -1:
        self.put(_bytes(rec.request.request_id, REQUEST_ID_SIZE),
                 _bytes(rec, sizeof(RequestRecord)), False, True, False, self.db_requests)
        return 0

    cdef uint64_t post(self, const uint8_t* request_id, uint8_t op,
                       uint64_t debit_owner, uint8_t debit_slot,
                       uint64_t credit_owner, uint8_t credit_slot,
                       const char* currency, int64_t amount, uint8_t reason=0) except 0:
        """Append one double-entry journal entry and apply it to both accounts."""
        cdef AccountRecord debit, credit
        cdef JournalEntry entry
        cdef uint64_t seq = self.next_seq
        assert amount > 0, "postings move a positive amount"
        assert self.read_account(debit_owner, debit_slot, &debit), "debit account missing"
        assert self.read_account(credit_owner, credit_slot, &credit), "credit account missing"
        assert memcmp(debit.currency, currency, CURRENCY_SIZE) == 0, "debit currency differs"
        assert memcmp(credit.currency, currency, CURRENCY_SIZE) == 0, "credit currency differs"
        debit.balance_minor -= amount
        debit.debits_minor_total += amount
        debit.last_journal_seq = seq
        credit.balance_minor += amount
        credit.credits_minor_total += amount
        credit.last_journal_seq = seq
        if debit.flags & ACCOUNT_NO_OVERDRAFT:
            assert debit.balance_minor - debit.pending_minor >= 0, "overdraft on a no-overdraft account"
        assert credit.balance_minor <= BALANCE_MINOR_MAX, "balance above BALANCE_MINOR_MAX"
        memset(&entry, 0, sizeof(entry))
        memcpy(entry.request_id, request_id, REQUEST_ID_SIZE)
        entry.debit_owner = debit_owner
        entry.debit_slot = debit_slot
        entry.credit_owner = credit_owner
        entry.credit_slot = credit_slot
        entry.op = op
        entry.reason = reason
        memcpy(entry.currency, currency, CURRENCY_SIZE)
        entry.amount_minor = amount
        entry.time_s = self.now_s
        entry.actor = self.actor
        entry.partner_id = self.partner
        entry.origin_partner = self.origin_partner
        self.write_account(debit_owner, debit_slot, &debit)
        self.write_account(credit_owner, credit_slot, &credit)
        self.put(u64_be(seq), _bytes(&entry, sizeof(entry)), False, True, True, self.db_journal)
        self.next_seq = seq + 1
        return seq

    # ---- checks shared by the operations ------------------------------------------

    cdef bint find_card(self, const uint8_t* card_key, CardRecord* card) except -1:
        card_id_be = self.get(_bytes(card_key, CARD_KEY_SIZE), None, self.db_pan)
        if card_id_be is None:
            return False
        value = self.get(card_key_of(u64_from_be(<const unsigned char*><const char*>card_id_be)),
                         None, self.db_book)
        assert value is not None and len(value) == sizeof(CardRecord), \
            "PAN index points at a missing card"
        memcpy(card, <const char*>value, sizeof(CardRecord))
        return True

    cdef int describe_card(self, const CardRecord* card, CoreReply* rp) except -1:
        cdef AccountRecord acc
        cdef ContractRecord contract
        cdef uint64_t owner = value_owner_of(card)
        rp.card_id = card.card_id
        rp.card_status = card.status
        rp.pan_first6 = card.pan_first6
        rp.pan_last4 = card.pan_last4
        rp.pan_length = card.pan_length
        rp.expiry_yyyymm = card.expiry_yyyymm
        assert self.read_account(owner, SLOT_CARD_VALUE, &acc), "card without account"
        memcpy(rp.currency, acc.currency, CURRENCY_SIZE)
        rp.balance_minor = acc.balance_minor
        rp.pending_minor = 0
        rp.credit_limit_minor = 0
        if card.contract_id:
            self.read_contract(card.contract_id, &contract)
            rp.credit_limit_minor = contract.credit_limit_minor
        if self.read_account(owner, SLOT_CARD_HELD, &acc):
            # What is held for pre-authorizations still belongs to the card, but is
            # not available: balance = value + held, available = value.
            rp.balance_minor += acc.balance_minor
            rp.pending_minor = acc.balance_minor
        return 0

    cdef bint find_described_card(self, const CoreRequest* rq, CardRecord* card,
                                  CoreReply* rp) except -1:
        """The request's card, described in the reply; False (declined) when unknown."""
        if not self.find_card(rq.card_key, card):
            rp.result = RESULT_DECLINED_UNKNOWN_CARD
            return False
        self.describe_card(card, rp)
        return True

    cdef uint8_t usable_card(self, const CardRecord* card, bint allow_issued):
        if card.status == CARD_CLOSED:
            return RESULT_DECLINED_CARD_CLOSED
        if card.status == CARD_BLOCKED:
            return RESULT_DECLINED_CARD_BLOCKED
        if card.status == CARD_ISSUED and not allow_issued:
            return RESULT_DECLINED_CARD_NOT_ACTIVE
        if card.expiry_yyyymm < self.now_yyyymm:
            return RESULT_DECLINED_CARD_EXPIRED
        return 0

    cdef uint8_t money_checks(self, const CoreRequest* rq, CardRecord* card, CoreReply* rp,
                              bint allow_issued) except 255:
        """Card found, usable, same currency: 0, else the decline (rp describes the card)."""
        if not self.find_card(rq.card_key, card):
            return RESULT_DECLINED_UNKNOWN_CARD
        self.describe_card(card, rp)
        cdef uint8_t bad = self.usable_card(card, allow_issued)
        if bad:
            return bad
        if memcmp(rp.currency, rq.currency, CURRENCY_SIZE) != 0:
            return RESULT_DECLINED_CURRENCY_MISMATCH
        return 0

    cdef int approve(self, const CoreRequest* rq, CoreReply* rp, int64_t amount, uint64_t seq,
                     const CardRecord* card=NULL) except -1:
        """Approved: the reply describes the card as it is now (`card`, when the caller
        holds its current record, saves reading it again)."""
        rp.result = RESULT_APPROVED
        rp.approved_minor = amount
        rp.journal_seq = seq
        rp.approval_code = _approval_code(rq.request_id, seq)
        if card != NULL:
            self.describe_card(card, rp)
        else:
            self.describe_reply_card(rp)
        return 0

    # ---- operations ---------------------------------------------------------------

    cdef int create_range(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef RangeRecord rng
        cdef AccountRecord acc
        key = range_key_of(rq.range_id)
        if self.get(key, None, self.db_config) is not None:
            rp.result = RESULT_DECLINED_CARD_RANGE_EXISTS
            return 0
        memset(&rng, 0, sizeof(rng))
        rng.range_id = rq.range_id
        rng.pan_length = rq.pan_length
        rng.iin_digits = rq.iin_digits
        rng.pin_tries_max = rq.pin_tries_max if rq.pin_tries_max else PIN_TRIES_MAX_DEFAULT
        rng.numbering = rq.target_status
        rng.balance_max_minor = rq.amount_minor
        rng.load_per_day_max_minor = rq.load_per_day_max_minor
        rng.iin_prefix = rq.iin_prefix
        memcpy(rng.currency, rq.currency, CURRENCY_SIZE)
        memcpy(rng.name, rq.range_name, RANGE_NAME_SIZE)
        self.put(key, _bytes(&rng, sizeof(rng)), False, True, False, self.db_config)
        memset(&acc, 0, sizeof(acc))
        memcpy(acc.currency, rq.currency, CURRENCY_SIZE)
        self.write_account(SYSTEM_OWNER_BASE + rq.range_id, SLOT_RANGE_FUNDING, &acc)
        self.write_account(SYSTEM_OWNER_BASE + rq.range_id, SLOT_RANGE_MERCHANT, &acc)
        self.write_account(SYSTEM_OWNER_BASE + rq.range_id, SLOT_RANGE_SALES_ELSEWHERE, &acc)
        memcpy(acc.currency, <const char*>UNITS, CURRENCY_SIZE)
        for slot in (SLOT_RANGE_UNITS_SOLD, SLOT_RANGE_UNITS_USED, SLOT_RANGE_UNITS_EXPIRED):
            self.write_account(SYSTEM_OWNER_BASE + rq.range_id, slot, &acc)
        memcpy(acc.currency, <const char*>POINTS, CURRENCY_SIZE)
        for slot in (SLOT_RANGE_POINTS_ISSUED, SLOT_RANGE_POINTS_REDEEMED, SLOT_RANGE_POINTS_EXPIRED,
                     SLOT_RANGE_POINTS_ADJUSTED):
            self.write_account(SYSTEM_OWNER_BASE + rq.range_id, slot, &acc)
        memcpy(rp.currency, rq.currency, CURRENCY_SIZE)
        self.approve(rq, rp, 0, 0)
        return 0

    cdef int allocate_serials(self, const CoreRequest* rq, CoreReply* rp) except -1:
        """A block of the range's card serial numbers (the digits between its prefix and
        the check digit), for numbering new cards in order; the first in approved_minor.
        Never the same number twice; a retry gets the same block."""
        cdef RangeRecord rng
        if not self.find_range(rq.range_id, &rng):
            rp.result = RESULT_DECLINED_UNKNOWN_CARD_RANGE
            return 0
        key = config_key_of(b'S', rq.range_id)
        stored = self.get(key, None, self.db_config)
        first = u64_from_be(<const unsigned char*><const char*>stored) if stored is not None else 1
        if first + rq.amount_minor - 1 > 10 ** (rng.pan_length - rng.iin_digits - 1) - 1:
            rp.result = RESULT_DECLINED_RANGE_EXHAUSTED
            return 0
        self.put(key, u64_be(first + rq.amount_minor), False, True, False, self.db_config)
        self.approve(rq, rp, first, 0)
        return 0

    cdef int issue_card(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef RangeRecord rng
        cdef CardRecord card
        cdef AccountRecord acc
        cdef uint64_t card_id
        if not self.find_range(rq.range_id, &rng):
            rp.result = RESULT_DECLINED_UNKNOWN_CARD_RANGE
            return 0
        if self.find_card(rq.card_key, &card):
            self.describe_card(&card, rp)
            rp.result = RESULT_DECLINED_CARD_ALREADY_ISSUED
            return 0
        counter = self.get(NEXT_CARD_ID_KEY, None, self.db_config)
        card_id = u64_from_be(<const unsigned char*><const char*>counter) if counter is not None else 1
        self.put(NEXT_CARD_ID_KEY, u64_be(card_id + 1), False, True, False, self.db_config)
        memset(&card, 0, sizeof(card))
        card.card_id = card_id
        card.range_id = rq.range_id
        card.expiry_yyyymm = rq.expiry_yyyymm
        card.status = CARD_ISSUED
        card.pan_length = rq.pan_length
        card.pan_first6 = rq.pan_first6
        card.pan_last4 = rq.pan_last4
        card.issued_s = self.now_s
        self.write_card(&card)
        memset(&acc, 0, sizeof(acc))
        memcpy(acc.currency, rng.currency, CURRENCY_SIZE)
        acc.flags = ACCOUNT_NO_OVERDRAFT
        self.write_account(card_id, SLOT_CARD_VALUE, &acc)
        self.write_account(card_id, SLOT_CARD_HELD, &acc)
        acc.flags = 0
        self.write_account(card_id, SLOT_CARD_SALES_ELSEWHERE, &acc)
        acc.flags = ACCOUNT_NO_OVERDRAFT
        memcpy(acc.currency, <const char*>UNITS, CURRENCY_SIZE)
        self.write_account(card_id, SLOT_CARD_UNITS, &acc)
        memcpy(acc.currency, <const char*>POINTS, CURRENCY_SIZE)
        self.write_account(card_id, SLOT_CARD_POINTS, &acc)
        self.write_account(card_id, SLOT_CARD_POINTS_HELD, &acc)
        acc.flags = 0                       # owed points are a negative balance
        self.write_account(card_id, SLOT_CARD_POINTS_OWED, &acc)
        self.put(_bytes(rq.card_key, CARD_KEY_SIZE), u64_be(card_id), False, True, False, self.db_pan)
        rp.card_id = card_id
        self.approve(rq, rp, 0, 0)
        return 0

    cdef int set_status(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef CardRecord card
        if not self.find_described_card(rq, &card, rp):
            return 0
        cdef uint8_t target = rq.target_status
        if card.status == CARD_CLOSED or target not in (CARD_BLOCKED, CARD_ACTIVE):
            rp.result = RESULT_DECLINED_INVALID_STATUS_CHANGE
            return 0
        if target == CARD_ACTIVE:
            if card.status == CARD_BLOCKED:
                # Unblocking returns the card to where it was: active once loaded.
                card.status = CARD_ACTIVE if card.activated_s else CARD_ISSUED
                card.pin_failures = 0
        else:
            card.status = CARD_BLOCKED
        self.write_card(&card)
        self.approve(rq, rp, 0, 0)
        return 0

    cdef int set_stage(self, const CoreRequest* rq, CoreReply* rp) except -1:
        """Record the card's next production stage, and when: created, personalized,
        shipped, in that order (a stage again changes nothing: a bureau's retry)."""
        cdef CardRecord card
        cdef uint8_t bad = self.open_card(rq, &card, rp)
        if not bad and rq.target_status < card.stage:
            bad = RESULT_DECLINED_INVALID_STATUS_CHANGE
        if bad:
            rp.result = bad
            return 0
        if rq.target_status > card.stage:
            for stage in range(card.stage + 1, rq.target_status + 1):
                self.put(stage_time_key_of(card.card_id, stage), u64_be(self.now_s), False, True,
                         False, self.db_book)
            card.stage = rq.target_status
            self.write_card(&card)
        self.approve(rq, rp, 0, 0, &card)
        return 0

    cdef int load(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef CardRecord card
        cdef RangeRecord rng
        cdef uint8_t bad = self.money_checks(rq, &card, rp, True)
        if bad:
            rp.result = bad
            return 0
        self.read_range(card.range_id, &rng)
        if rp.balance_minor + rq.amount_minor > balance_max_of(&rng):
            rp.result = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
            return 0
        cdef uint32_t day = <uint32_t>(self.now_s // 86400)
        cdef int64_t loaded_today = card.loaded_today_minor if card.load_day == day else 0
        if rng.load_per_day_max_minor and loaded_today + rq.amount_minor > rng.load_per_day_max_minor:
            rp.result = RESULT_DECLINED_LOAD_LIMIT_EXCEEDED
            return 0
        if card.status == CARD_ISSUED:
            card.status = CARD_ACTIVE
            card.activated_s = self.now_s
        card.load_day = day
        card.loaded_today_minor = loaded_today + rq.amount_minor
        self.write_card(&card)
        seq = self.post(rq.request_id, OP_LOAD, SYSTEM_OWNER_BASE + card.range_id,
                        SLOT_RANGE_FUNDING, value_owner_of(&card), SLOT_CARD_VALUE,
                        rq.currency, rq.amount_minor)
        self.approve(rq, rp, rq.amount_minor, seq, &card)
        return 0

    cdef bint find_range(self, uint32_t range_id, RangeRecord* rng) except -1:
        value = self.get(range_key_of(range_id), None, self.db_config)
        if value is None:
            return False
        assert len(value) == sizeof(RangeRecord), "corrupt range record"
        memcpy(rng, <const char*>value, sizeof(RangeRecord))
        return True

    cdef int read_range(self, uint32_t range_id, RangeRecord* rng) except -1:
        assert self.find_range(range_id, rng), "card of a missing range"
        return 0

    # ---- the issuer's corrections ---------------------------------------------------

    cdef uint8_t open_card(self, const CoreRequest* rq, CardRecord* card, CoreReply* rp) except 255:
        """The request's card, described; 0 when it exists and is not closed."""
        if not self.find_described_card(rq, card, rp):
            return RESULT_DECLINED_UNKNOWN_CARD
        if card.status == CARD_CLOSED:
            return RESULT_DECLINED_CARD_CLOSED
        return 0

    cdef uint8_t own_value_card(self, const CoreRequest* rq, CardRecord* card,
                                CoreReply* rp) except 255:
        """open_card, for corrections of a card's own value: a card drawing on a contract
        has none (its contract is corrected instead)."""
        cdef uint8_t bad = self.open_card(rq, card, rp)
        if not bad and card.contract_id:
            return RESULT_DECLINED_CONTRACT_CARD
        return bad

    cdef int adjust(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef CardRecord card
        cdef uint8_t bad = self.own_value_card(rq, &card, rp)
        if bad:
            rp.result = bad
            return 0
        if memcmp(rp.currency, rq.currency, CURRENCY_SIZE) != 0:
            rp.result = RESULT_DECLINED_CURRENCY_MISMATCH
            return 0
        cdef uint64_t funding = SYSTEM_OWNER_BASE + card.range_id
        if rq.flags & REQUEST_ADJUST_DOWN:
            if rp.balance_minor - rp.pending_minor < rq.amount_minor:
                rp.result = RESULT_DECLINED_INSUFFICIENT_FUNDS
                return 0
            seq = self.post(rq.request_id, OP_ADJUST, card.card_id, SLOT_CARD_VALUE, funding,
                            SLOT_RANGE_FUNDING, rq.currency, rq.amount_minor, rq.reason)
        else:
            if rp.balance_minor + rq.amount_minor > BALANCE_MINOR_MAX:
                rp.result = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
                return 0
            seq = self.post(rq.request_id, OP_ADJUST, funding, SLOT_RANGE_FUNDING, card.card_id,
                            SLOT_CARD_VALUE, rq.currency, rq.amount_minor, rq.reason)
        self.approve(rq, rp, rq.amount_minor, seq)
        return 0

    cdef int clear(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef CardRecord card
        cdef uint64_t seq = 0
        cdef uint8_t bad = self.own_value_card(rq, &card, rp)
        if bad:
            rp.result = bad
            return 0
        cdef int64_t cleared = rp.balance_minor - rp.pending_minor
        if cleared:
            seq = self.post(rq.request_id, OP_CLEAR, card.card_id, SLOT_CARD_VALUE,
                            SYSTEM_OWNER_BASE + card.range_id, SLOT_RANGE_FUNDING, rp.currency,
                            cleared, rq.reason)
        self.approve(rq, rp, cleared, seq)
        return 0

    cdef int deactivate(self, const CoreRequest* rq, const char* payload, CoreReply* rp) except -1:
        """Close a card for good. Its own value must be zero (CLOSE_AT_ZERO), or is paid
        out (CLOSE_PAYOUT: back to the range's funding, the holder paid in cash or by
        bank) or moved to another usable card of the same currency (CLOSE_MOVE, within
        that card's balance limit; an unused card is activated by it), in the same step.
        Not while pre-authorizations or held points are open. A card drawing on a
        contract holds no value of its own."""
        cdef CardRecord card, receiver
        cdef RangeRecord rng
        cdef AccountRecord acc
        cdef uint64_t seq = 0
        cdef uint8_t bad = self.open_card(rq, &card, rp)
        cdef int64_t value = 0
        if not bad and not card.contract_id:
            value = self.balance_of(card.card_id, SLOT_CARD_VALUE)
        if not bad and (self.balance_of(value_owner_of(&card), SLOT_CARD_HELD) or
                        self.balance_of(card.card_id, SLOT_CARD_POINTS_HELD)):
            bad = RESULT_DECLINED_HOLDS_OPEN
        if not bad and rq.target_status == CLOSE_AT_ZERO and value:
            bad = RESULT_DECLINED_BALANCE_NOT_ZERO
        if not bad and rq.target_status == CLOSE_MOVE:
            if not self.find_card(<const uint8_t*>payload, &receiver) or receiver.card_id == card.card_id \
                    or receiver.contract_id or self.usable_card(&receiver, True):
                bad = RESULT_DECLINED_RECEIVING_CARD_UNUSABLE
            else:
                self.read_account(receiver.card_id, SLOT_CARD_VALUE, &acc)
                self.read_range(receiver.range_id, &rng)
                if memcmp(acc.currency, rp.currency, CURRENCY_SIZE) != 0:
                    bad = RESULT_DECLINED_CURRENCY_MISMATCH
                elif acc.balance_minor + value > balance_max_of(&rng):
                    bad = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
        if bad:
            rp.result = bad
            return 0
        if value and rq.target_status == CLOSE_PAYOUT:
            seq = self.post(rq.request_id, OP_DEACTIVATE, card.card_id, SLOT_CARD_VALUE,
                            SYSTEM_OWNER_BASE + card.range_id, SLOT_RANGE_FUNDING, rp.currency, value,
                            rq.reason)
        elif value and rq.target_status == CLOSE_MOVE:
            seq = self.post(rq.request_id, OP_DEACTIVATE, card.card_id, SLOT_CARD_VALUE,
                            receiver.card_id, SLOT_CARD_VALUE, rp.currency, value, rq.reason)
            self.activate(&receiver)
        card.status = CARD_CLOSED
        self.write_card(&card)
        self.approve(rq, rp, value, seq, &card)
        return 0

    cdef int set_pin(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef CardRecord card
        if not self.find_described_card(rq, &card, rp):
            return 0
        if card.status == CARD_CLOSED:
            rp.result = RESULT_DECLINED_CARD_CLOSED
            return 0
        card.pin_set = 1
        card.pin_failures = 0
        memcpy(card.pin_verifier, rq.pin_verifier, PIN_VERIFIER_SIZE)
        self.write_card(&card)
        self.approve(rq, rp, 0, 0)
        return 0

    cdef int64_t charge_checks(self, const CoreRequest* rq, CardRecord* card, CoreReply* rp,
                               Fleet* fleet, int64_t* volume) except -1:
        """What a purchase or pre-authorization may take: card, fleet rules and prompts,
        PIN, odometer and fleet limits, then funds (partial approval included). 0 means
        declined, with rp.result saying why; *volume is the volume to count or reserve."""
        cdef uint8_t bad = self.money_checks(rq, card, rp, False)
        if bad:
            rp.result = bad
            return 0
        cdef int64_t amount = rq.amount_minor
        volume[0] = rq.volume_ml
        fleet.active = self.load_fleet(card, fleet)
        if fleet.active:
            bad = self.fleet_rules(rq, fleet, rp)
            if bad:
                rp.result = bad
                return 0
        if not self.check_pin(rq, card, rp):
            rp.result = RESULT_DECLINED_WRONG_PIN
            return 0
        if fleet.active:
            bad = self.fleet_limits(rq, fleet, rp, &amount, volume)
            if bad:
                rp.result = bad
                return 0
        amount = self.affordable(rq, rp, amount)
        if amount == 0:
            rp.result = RESULT_DECLINED_CREDIT_LIMIT_EXCEEDED if card.contract_id \
                else RESULT_DECLINED_INSUFFICIENT_FUNDS
        return amount

    cdef int purchase(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef CardRecord card
        cdef Fleet fleet
        cdef int64_t volume
        cdef int64_t amount = self.charge_checks(rq, &card, rp, &fleet, &volume)
        if amount == 0:
            return 0
        seq = self.post(rq.request_id, OP_PURCHASE, value_owner_of(&card), SLOT_CARD_VALUE,
                        SYSTEM_OWNER_BASE + card.range_id, SLOT_RANGE_MERCHANT,
                        rq.currency, amount)
        self.approve_amount(rq, rp, amount, seq, &card)
        rp.volume_ml = volume
        if fleet.active:
            self.count_usage(rq, card.card_id, &fleet, amount, volume, False)
            self.flag_soft(&fleet, amount, volume, rp)
        self.earn_on_sale(rq, &card, amount, volume, PAYMENT_CARD_VALUE, rp)
        return 0

    cdef bint check_pin(self, const CoreRequest* rq, CardRecord* card, CoreReply* rp) except -1:
        """True unless a PIN was entered and is wrong. Wrong PINs in a row are counted, and
        the range's pin_tries_max of them block the card; a right one resets the count.
        (The one state a declined request changes.)"""
        cdef RangeRecord rng
        if not (rq.flags & REQUEST_PIN_PRESENT and card.pin_set):
            return True
        if memcmp(rq.pin_verifier, card.pin_verifier, PIN_VERIFIER_SIZE) == 0:
            if card.pin_failures:
                card.pin_failures = 0
                self.write_card(card)
            return True
        self.read_range(card.range_id, &rng)
        if card.pin_failures < 255:
            card.pin_failures += 1
        if card.pin_failures >= rng.pin_tries_max:
            card.status = CARD_BLOCKED
        self.write_card(card)
        self.describe_card(card, rp)
        return False

    cdef int64_t affordable(self, const CoreRequest* rq, const CoreReply* rp, int64_t amount):
        """The amount to approve: all of `amount`, what is available when the terminal
        accepts a partial approval, or 0 (decline)."""
        cdef int64_t available = available_of(rp)
        if available >= amount:
            return amount
        if rq.flags & REQUEST_PARTIAL_OK and available > 0:
            return available
        return 0

    cdef int approve_amount(self, const CoreRequest* rq, CoreReply* rp, int64_t amount,
                            uint64_t seq, const CardRecord* card) except -1:
        self.approve(rq, rp, amount, seq, card)
        if amount < rq.amount_minor:
            rp.result = RESULT_PARTIALLY_APPROVED
        return 0

    # ---- holds --------------------------------------------------------------------

    cdef int preauth(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef CardRecord card
        cdef HoldRecord hold
        cdef Fleet fleet
        cdef int64_t volume
        cdef int64_t amount = self.charge_checks(rq, &card, rp, &fleet, &volume)
        if amount == 0:
            return 0
        cdef uint64_t owner = value_owner_of(&card)
        seq = self.post(rq.request_id, OP_PREAUTH, owner, SLOT_CARD_VALUE,
                        owner, SLOT_CARD_HELD, rq.currency, amount)
        memset(&hold, 0, sizeof(hold))
        hold.card_id = card.card_id
        hold.range_id = card.range_id
        hold.status = HOLD_OPEN
        memcpy(hold.currency, rq.currency, CURRENCY_SIZE)
        hold.held_minor = amount
        hold.created_s = self.now_s
        hold.expires_s = self.now_s + self.hold_timeout_s
        hold.value_owner = owner
        hold.volume_ml = volume
        hold.counted = fleet.active
        self.write_hold(rq.request_id, &hold)
        self.put(self.expiry_key(&hold, rq.request_id), b"", False, True, False, self.db_hold_expiry)
        self.approve_amount(rq, rp, amount, seq, &card)
        rp.volume_ml = volume
        if fleet.active:
            self.count_usage(rq, card.card_id, &fleet, amount, volume, True)
            self.flag_soft(&fleet, amount, volume, rp)
        return 0

    cdef bytes expiry_key(self, const HoldRecord* hold, const uint8_t* hold_id):
        return u64_be(hold.expires_s) + _bytes(hold_id, REQUEST_ID_SIZE)

    cdef bint read_hold(self, const uint8_t* hold_id, HoldRecord* out) except -1:
        value = self.get(_bytes(hold_id, REQUEST_ID_SIZE), None, self.db_holds)
        if value is None:
            return False
        assert len(value) == sizeof(HoldRecord), "corrupt hold record"
        memcpy(out, <const char*>value, sizeof(HoldRecord))
        return True

    cdef int write_hold(self, const uint8_t* hold_id, const HoldRecord* hold) except -1:
        self.put(_bytes(hold_id, REQUEST_ID_SIZE), _bytes(hold, sizeof(HoldRecord)),
                 False, True, False, self.db_holds)
        return 0

    cdef uint8_t closed_hold_result(self, const HoldRecord* hold):
        if hold.status == HOLD_COMPLETED:
            return RESULT_DECLINED_HOLD_ALREADY_COMPLETED
        if hold.status == HOLD_VOIDED:
            return RESULT_DECLINED_HOLD_VOIDED
        return RESULT_DECLINED_HOLD_EXPIRED

    cdef uint64_t close_hold(self, const uint8_t* request_id, uint8_t op,
                             const uint8_t* hold_id, HoldRecord* hold, int64_t settled,
                             uint8_t status) except 0:
        """Settle `settled` to the merchant, release the rest to the card; returns the
        last journal position."""
        cdef uint64_t seq = 0
        cdef int64_t rest = hold.held_minor - settled
        cdef UsageRecord usage
        assert hold.status == HOLD_OPEN and 0 <= settled <= hold.held_minor, "hold closed twice"
        if settled:
            seq = self.post(request_id, op, hold.value_owner, SLOT_CARD_HELD,
                            SYSTEM_OWNER_BASE + hold.range_id, SLOT_RANGE_MERCHANT,
                            hold.currency, settled)
        if rest:
            seq = self.post(request_id, op, hold.value_owner, SLOT_CARD_HELD, hold.value_owner,
                            SLOT_CARD_VALUE, hold.currency, rest)
        if hold.counted:
            # What the hold reserved against the card's fleet limits is free again; a
            # completion counts what was actually dispensed (complete()).
            assert self.read_usage(hold.card_id, &usage), "counted hold without usage"
            release_reservation(hold, &usage)
            self.write_usage(hold.card_id, &usage)
        self.delete(self.expiry_key(hold, hold_id), None, self.db_hold_expiry)
        hold.status = status
        hold.completed_minor = settled
        self.write_hold(hold_id, hold)
        return seq

    cdef int complete(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef CardRecord card
        cdef HoldRecord hold
        cdef Fleet fleet
        if not self.find_described_card(rq, &card, rp):
            return 0
        if not self.read_hold(rq.ref_request_id, &hold):
            rp.result = RESULT_DECLINED_HOLD_NOT_FOUND
            return 0
        if hold.card_id != card.card_id:
            rp.result = RESULT_DECLINED_CARD_MISMATCH
            return 0
        if hold.status != HOLD_OPEN:
            rp.result = self.closed_hold_result(&hold)
            return 0
        if memcmp(hold.currency, rq.currency, CURRENCY_SIZE) != 0:
            rp.result = RESULT_DECLINED_CURRENCY_MISMATCH
            return 0
        if rq.amount_minor > hold.held_minor or \
                (hold.volume_ml and rq.volume_ml > hold.volume_ml):
            rp.result = RESULT_DECLINED_COMPLETION_EXCEEDS_HOLD
            return 0
        fleet.active = self.load_fleet(&card, &fleet)
        if fleet.active and not self.products_allowed(rq, &fleet.profile):
            rp.result = RESULT_DECLINED_PRODUCT_NOT_ALLOWED
            return 0
        hold.completed_volume_ml = rq.volume_ml
        seq = self.close_hold(rq.request_id, OP_COMPLETE, rq.ref_request_id, &hold,
                              rq.amount_minor, HOLD_COMPLETED)
        self.approve(rq, rp, rq.amount_minor, seq, &card)
        rp.volume_ml = rq.volume_ml
        if fleet.active and rq.amount_minor:
            # close_hold released the stored reservation; the copy in hand follows suit
            # before it counts what was dispensed (and is written over the stored one).
            if hold.counted:
                release_reservation(&hold, &fleet.usage)
            self.count_usage(rq, card.card_id, &fleet, rq.amount_minor, rq.volume_ml, False)
            self.flag_soft(&fleet, rq.amount_minor, rq.volume_ml, rp)
        if rq.amount_minor:
            self.earn_on_sale(rq, &card, rq.amount_minor, rq.volume_ml, PAYMENT_CARD_VALUE, rp)
        return 0

    cdef int void(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef HoldRecord hold
        if not self.read_hold(rq.ref_request_id, &hold):
            rp.result = RESULT_DECLINED_HOLD_NOT_FOUND
            return 0
        rp.card_id = hold.card_id
        self.describe_reply_card(rp)
        if hold.status != HOLD_OPEN:
            rp.result = self.closed_hold_result(&hold)
            return 0
        cdef int64_t released = hold.held_minor
        seq = self.close_hold(rq.request_id, OP_VOID, rq.ref_request_id, &hold, 0, HOLD_VOIDED)
        self.approve(rq, rp, released, seq)
        return 0

    # ---- lots: subscription packages and loyalty points ---------------------------

    cdef bytes lot_keys(self, _LotKind kind, const PackageRecord* lot, const uint8_t* lot_id,
                        bint by_card):
        """Index keys of a lot; a held one is due at the end of its hold."""
        key = u64_be(lot.held_until_s if lot.status == PACKAGE_HELD else lot_time(lot)) + \
            _bytes(lot_id, REQUEST_ID_SIZE)
        return u64_be(lot.card_id) + kind.card_tag + key if by_card else key

    cdef list card_lot_ids(self, _LotKind kind, uint64_t card_id, bint valid_only=True):
        """Ids of the card's open lots (valid_only: still valid now), earliest-expiring
        first."""
        cdef Py_ssize_t at = 8 + len(kind.card_tag)
        prefix = u64_be(card_id) + kind.card_tag
        ids = []
        cursor = self.txn.cursor(db=kind.db_card)
        if cursor.set_range(prefix):
            for key in cursor.iternext(keys=True, values=False):
                if key[:at] != prefix:
                    break
                if not valid_only or u64_from_be(<const unsigned char*><const char*>key + at) >= self.now_s:
                    ids.append(key[at + 8:])
        cursor.close()
        return ids

    cdef bint read_lot(self, _LotKind kind, const uint8_t* lot_id, PackageRecord* out) except -1:
        value = self.get(_bytes(lot_id, REQUEST_ID_SIZE), None, kind.db)
        if value is None:
            return False
        assert len(value) == sizeof(PackageRecord), "corrupt lot record"
        memcpy(out, <const char*>value, sizeof(PackageRecord))
        return True

    cdef int write_lot(self, _LotKind kind, const uint8_t* lot_id, const PackageRecord* lot) except -1:
        self.put(_bytes(lot_id, REQUEST_ID_SIZE), _bytes(lot, sizeof(PackageRecord)),
                 False, True, False, kind.db)
        return 0

    cdef int end_lot(self, _LotKind kind, const uint8_t* lot_id, PackageRecord* lot,
                     uint8_t status) except -1:
        self.delete(self.lot_keys(kind, lot, lot_id, False), None, kind.db_expiry)
        self.delete(self.lot_keys(kind, lot, lot_id, True), None, kind.db_card)
        lot.status = status
        self.write_lot(kind, lot_id, lot)
        return 0

    cdef int describe_lots(self, _LotKind kind, CoreReply* rp) except -1:
        cdef AccountRecord acc
        assert self.read_account(rp.card_id, kind.card_slot, &acc), "card without its lots' account"
        memcpy(rp.currency, <const char*>kind.asset, CURRENCY_SIZE)
        rp.balance_minor = acc.balance_minor
        rp.pending_minor = 0
        if kind is self.points:
            rp.balance_minor += self.points_owed(rp.card_id)
        return 0

    cdef int64_t points_owed(self, uint64_t card_id) except? -1:
        """Points a return took back after they were spent (<= 0): the card's points
        balance is its lots less these."""
        return self.balance_of(card_id, SLOT_CARD_POINTS_OWED)

    cdef int issue_lot(self, _LotKind kind, const CoreRequest* rq, CoreReply* rp) except -1:
        """Sell a package, or earn points: the first one of a new card activates it."""
        cdef CardRecord card
        if not self.find_described_card(rq, &card, rp):
            return 0
        cdef uint8_t bad = self.usable_card(&card, True)
        if not bad and rq.valid_until_s and rq.valid_until_s <= self.now_s:
            bad = RESULT_DECLINED_CARD_EXPIRED       # the lot would be over already
        if bad:
            rp.result = bad
            self.describe_lots(kind, rp)
            return 0
        self.activate(&card)
        if kind is self.points:
            self.partner = self.partner_of(rq.outlet_code)
            seq = self.credit_points(rq, &card, rq.amount_minor, rq.valid_until_s, OP_EARN_POINTS,
                                     self.partner)
            self.record_points(card.card_id, seq, OP_EARN_POINTS, rq.amount_minor, rq.outlet_code)
        else:
            seq = self.post(rq.request_id, kind.op_issue, SYSTEM_OWNER_BASE + card.range_id,
                            kind.issued_slot, card.card_id, kind.card_slot, kind.asset,
                            rq.amount_minor)
            self.new_lot(kind, rq, &card, rq.amount_minor, rq.valid_until_s, True, 0)
        self.approve(rq, rp, rq.amount_minor, seq)
        self.describe_lots(kind, rp)
        return 0

    cdef int activate(self, CardRecord* card) except -1:
        if card.status == CARD_ISSUED:
            card.status = CARD_ACTIVE
            card.activated_s = self.now_s
            self.write_card(card)
        return 0

    cdef int new_lot(self, _LotKind kind, const CoreRequest* rq, const CardRecord* card,
                     int64_t amount, uint64_t valid_until_s, bint by_program, uint32_t issuer,
                     uint64_t held_until_s=0) except -1:
        """A lot on the card keyed by the request's id, of points `issuer` issued. New
        points (by_program) take their expiry from the card's program when not given
        (valid_until_s 0), and wait its returns window; transferred ones keep what they had.
        Points held for a redemption (held_until_s) are out of the card's index until they
        are released."""
        cdef PackageRecord lot
        cdef const ProgramRecord* program
        cdef uint64_t available_from_s = self.now_s
        found = self.program_of(card.range_id) if kind is self.points and by_program else None
        if found is not None:
            program = <const ProgramRecord*><const char*>found[0]
            if not valid_until_s:
                valid_until_s = policy_expiry(program, self.now_s)
            available_from_s = self.now_s + <uint64_t>program.pending_days * 86400
        memset(&lot, 0, sizeof(lot))
        lot.card_id = card.card_id
        lot.range_id = card.range_id
        lot.status = PACKAGE_HELD if held_until_s else PACKAGE_OPEN
        lot.held_until_s = held_until_s
        lot.units_total = amount
        lot.units_left = amount
        lot.created_s = self.now_s
        lot.valid_until_s = valid_until_s
        lot.available_from_s = available_from_s
        lot.partner_id = issuer
        self.write_lot(kind, rq.request_id, &lot)
        self.put(self.lot_keys(kind, &lot, rq.request_id, False), b"", False, True, False, kind.db_expiry)
        if not held_until_s:
            self.put(self.lot_keys(kind, &lot, rq.request_id, True), b"", False, True, False, kind.db_card)
        return 0

    cdef uint8_t take_from_lots(self, _LotKind kind, const CardRecord* card, int64_t need,
                                uint64_t* earliest_s, list taken=None) except 255:
        """Take `need` from the card's valid lots, earliest-expiring first (0), or decline
        with nothing taken. earliest_s: the expiry (0: never) of the first lot taken from;
        taken: gets [issuing partner, amount] for each run of lots of one partner."""
        cdef PackageRecord lot
        cdef int64_t available = 0, pending = 0, take
        ready = []                                   # (id, record) usable now, not in a returns window
        for lot_id in self.card_lot_ids(kind, card.card_id):
            assert self.read_lot(kind, <const uint8_t*><const char*>lot_id, &lot), "index without lot"
            if lot.available_from_s > self.now_s:
                pending += lot.units_left
            else:
                available += lot.units_left
                ready.append((lot_id, _bytes(&lot, sizeof(lot))))
        if available < need:
            return RESULT_DECLINED_POINTS_PENDING if available + pending >= need else kind.none_left
        for i, (lot_id, record) in enumerate(ready):
            if need == 0:
                break
            memcpy(&lot, <const char*>record, sizeof(lot))
            if i == 0:
                earliest_s[0] = lot.valid_until_s
            take = lot.units_left if lot.units_left < need else need
            if taken is not None:
                if taken and taken[len(taken) - 1][0] == lot.partner_id:
                    taken[len(taken) - 1][1] += take
                else:
                    taken.append([lot.partner_id, take])
            lot.units_left -= take
            need -= take
            if lot.units_left == 0:
                self.end_lot(kind, <const uint8_t*><const char*>lot_id, &lot, PACKAGE_USED_UP)
            else:
                self.write_lot(kind, <const uint8_t*><const char*>lot_id, &lot)
        return 0

    cdef uint8_t take_points(self, const CardRecord* card, int64_t need, uint64_t* earliest_s,
                             list taken) except 255:
        """Points a member spends: none while a return has left points owed, else from
        the valid lots, earliest-expiring first (take_from_lots)."""
        if self.points_owed(card.card_id) < 0:
            return RESULT_DECLINED_POINTS_OWED
        return self.take_from_lots(self.points, card, need, earliest_s, taken)

    cdef int use_lots(self, _LotKind kind, const CoreRequest* rq, CoreReply* rp) except -1:
        """Use units, or redeem points: from the earliest-expiring valid lots first."""
        cdef CardRecord card
        cdef uint64_t earliest_s = 0
        if not self.find_described_card(rq, &card, rp):
            return 0
        cdef uint8_t bad = self.usable_card(&card, False)
        cdef uint64_t seq = 0
        taken = []
        if not bad:
            bad = self.take_points(&card, rq.amount_minor, &earliest_s, taken) if kind is self.points \
                else self.take_from_lots(kind, &card, rq.amount_minor, &earliest_s, taken)
        if bad:
            rp.result = bad
            self.describe_lots(kind, rp)
            return 0
        if kind is self.points:
            self.partner = self.partner_of(rq.outlet_code)
        seq = self.post_use(kind, rq, &card, taken)
        if kind is self.points:
            self.record_points(card.card_id, seq, OP_REDEEM_POINTS, -rq.amount_minor,
                               rq.outlet_code)
        self.approve(rq, rp, rq.amount_minor, seq)
        self.describe_lots(kind, rp)
        return 0

    cdef uint64_t post_use(self, _LotKind kind, const CoreRequest* rq, const CardRecord* card,
                           list taken) except? 0:
        """Post what take_from_lots took as used (points: redeemed at self.partner), one
        entry per partner that issued them; the first seq."""
        cdef uint64_t seq = 0
        for origin, amount in taken:
            self.origin_partner = origin
            last = self.post(rq.request_id, kind.op_use, card.card_id, kind.card_slot,
                             SYSTEM_OWNER_BASE + card.range_id, kind.used_slot, kind.asset,
                             amount)
            seq = seq or last
        self.origin_partner = 0
        return seq

    cdef int adjust_points(self, const CoreRequest* rq, CoreReply* rp) except -1:
        """An operator puts points on a card (a new lot, as its program dates lots) or
        takes them off (earliest-expiring first), with a reason the journal keeps."""
        cdef CardRecord card
        cdef uint64_t earliest_s = 0, adjusted
        cdef uint8_t bad = self.open_card(rq, &card, rp)
        if bad == RESULT_DECLINED_UNKNOWN_CARD:
            rp.result = bad
            return 0
        if not bad and rq.flags & REQUEST_ADJUST_DOWN:
            bad = self.take_from_lots(self.points, &card, rq.amount_minor, &earliest_s)
        if bad:
            rp.result = bad
            self.describe_lots(self.points, rp)
            return 0
        adjusted = SYSTEM_OWNER_BASE + card.range_id
        if rq.flags & REQUEST_ADJUST_DOWN:
            seq = self.post(rq.request_id, OP_ADJUST_POINTS, card.card_id, SLOT_CARD_POINTS,
                            adjusted, SLOT_RANGE_POINTS_ADJUSTED, POINTS, rq.amount_minor, rq.reason)
        else:
            seq = self.credit_points(rq, &card, rq.amount_minor, 0, OP_ADJUST_POINTS, 0,
                                     SLOT_RANGE_POINTS_ADJUSTED, rq.reason)
        self.record_points(card.card_id, seq, OP_ADJUST_POINTS,
                           -rq.amount_minor if rq.flags & REQUEST_ADJUST_DOWN else rq.amount_minor, 0)
        self.approve(rq, rp, rq.amount_minor, seq)
        self.describe_lots(self.points, rp)
        return 0

    cdef int transfer_points(self, const CoreRequest* rq, const char* payload,
                             CoreReply* rp) except -1:
        """Points from one member's card to another's: taken earliest-expiring first, they
        arrive as one lot expiring with the earliest of them (a transfer never extends
        validity), usable at once."""
        cdef CardRecord card, receiver
        cdef uint64_t earliest_s = 0
        if not self.find_described_card(rq, &card, rp):
            return 0
        cdef uint8_t bad = self.usable_card(&card, False)
        taken = []
        if not bad and (not self.find_card(<const uint8_t*>payload, &receiver) or
                        self.usable_card(&receiver, True)):
            bad = RESULT_DECLINED_RECEIVING_CARD_UNUSABLE
        if not bad:
            bad = self.take_points(&card, rq.amount_minor, &earliest_s, taken)
        if bad:
            rp.result = bad
            self.describe_lots(self.points, rp)
            return 0
        self.activate(&receiver)
        seq = self.post(rq.request_id, OP_TRANSFER_POINTS, card.card_id, SLOT_CARD_POINTS,
                        receiver.card_id, SLOT_CARD_POINTS, POINTS, rq.amount_minor)
        # One lot, named after the partner that issued the first of its points.
        self.new_lot(self.points, rq, &receiver, rq.amount_minor, earliest_s, False, taken[0][0])
        self.record_points(card.card_id, seq, OP_TRANSFER_POINTS, -rq.amount_minor, 0)
        self.record_points(receiver.card_id, seq, OP_TRANSFER_POINTS, rq.amount_minor, 0)
        self.approve(rq, rp, rq.amount_minor, seq)
        self.describe_lots(self.points, rp)
        return 0

    cdef list due_ids(self, index_db, uint64_t before_s):
        """Ids in a time index (time(8, big-endian) + id) whose time is before before_s,
        oldest first, at most TIMED_ENDS_PER_BATCH_MAX of them."""
        due = []
        cursor = self.txn.cursor(db=index_db)
        if cursor.first():
            for key in cursor.iternext(keys=True, values=False):
                if u64_from_be(<const unsigned char*><const char*>key) >= before_s or \
                        len(due) >= TIMED_ENDS_PER_BATCH_MAX:
                    break
                due.append(key[8:])
        cursor.close()
        return due

    cdef int expire_lots(self, _LotKind kind) except -1:
        """Expire lots past their last valid second: what is left of them leaves the card
        through the journal (a bounded number per batch, oldest first)."""
        cdef PackageRecord lot
        cdef RequestRecord reserve
        due = self.due_ids(kind.db_expiry, self.now_s)
        for lot_id in due:
            assert self.read_lot(kind, <const uint8_t*><const char*>lot_id, &lot), "expiry of a missing lot"
            if lot.status == PACKAGE_HELD:      # a reservation nobody confirmed: released
                assert self.read_request(<const uint8_t*><const char*>lot_id, &reserve), \
                    "a held lot without its reservation"
                self.settle_reservation(<const uint8_t*><const char*>lot_id, &reserve, 0,
                                        OP_POINTS_HOLD_EXPIRY, REQUEST_TIMED_OUT)
                continue
            assert lot.status == PACKAGE_OPEN and lot.units_left > 0, "indexed lot not open"
            self.origin_partner = lot.partner_id if kind is self.points else 0
            seq = self.post(<const uint8_t*><const char*>lot_id, kind.op_expiry, lot.card_id,
                            kind.card_slot, SYSTEM_OWNER_BASE + lot.range_id, kind.expired_slot,
                            kind.asset, lot.units_left)
            self.origin_partner = 0
            if kind is self.points:
                self.record_points(lot.card_id, seq, OP_POINTS_EXPIRY, -lot.units_left, 0)
            self.end_lot(kind, <const uint8_t*><const char*>lot_id, &lot, PACKAGE_EXPIRED)
        return len(due)

    cdef int expire_holds(self) except -1:
        """Release holds whose time is up (oldest first, a bounded number per batch)."""
        cdef HoldRecord hold
        due = self.due_ids(self.db_hold_expiry, self.now_s + 1)    # due at expires_s itself
        for hold_id in due:
            assert self.read_hold(<const uint8_t*><const char*>hold_id, &hold), "expiry of a missing hold"
            self.close_hold(<const uint8_t*><const char*>hold_id, OP_HOLD_EXPIRY,
                            <const uint8_t*><const char*>hold_id, &hold, 0, HOLD_EXPIRED)
        return len(due)

    cdef int refund(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef CardRecord card
        cdef RequestRecord original
        cdef uint8_t bad = self.money_checks(rq, &card, rp, False)
        if bad:
            rp.result = bad
            return 0
        if not self.read_request(rq.ref_request_id, &original) or \
                original.flags & REQUEST_TOMBSTONE:
            rp.result = RESULT_DECLINED_ORIGINAL_NOT_FOUND
            return 0
        if original.request.op not in (OP_PURCHASE, OP_COMPLETE, OP_LOYALTY_SALE) or \
                not took_effect(original.reply.result):
            rp.result = RESULT_DECLINED_ORIGINAL_NOT_REFUNDABLE
            return 0
        if original.flags & REQUEST_REVERSED:
            rp.result = RESULT_DECLINED_ALREADY_REVERSED
            return 0
        if original.reply.card_id != card.card_id:
            rp.result = RESULT_DECLINED_CARD_MISMATCH
            return 0
        if original.refunded_minor + rq.amount_minor > original.reply.approved_minor:
            rp.result = RESULT_DECLINED_REFUND_EXCEEDS_ORIGINAL
            return 0
        cdef bint money = original.request.op != OP_LOYALTY_SALE  # else paid in cash, elsewhere
        if money and rp.balance_minor + rq.amount_minor > BALANCE_MINOR_MAX:
            rp.result = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
            return 0
        back = self.points_to_return(&original, original.refunded_minor,
                                     original.refunded_minor + rq.amount_minor)
        original.refunded_minor += rq.amount_minor
        self.write_request(&original)
        cdef uint64_t seq
        if money:
            seq = self.post(rq.request_id, OP_REFUND, SYSTEM_OWNER_BASE + card.range_id,
                            SLOT_RANGE_MERCHANT, value_owner_of(&card), SLOT_CARD_VALUE,
                            rq.currency, rq.amount_minor)
        else:
            seq = self.post(rq.request_id, OP_REFUND, card.card_id, SLOT_CARD_SALES_ELSEWHERE,
                            SYSTEM_OWNER_BASE + card.range_id, SLOT_RANGE_SALES_ELSEWHERE,
                            rq.currency, rq.amount_minor)
        points_seq = self.take_back_points(rq, &card, back, rq.amount_minor)
        self.approve(rq, rp, rq.amount_minor, seq, &card)
        rp.points_earned = -back
        rp.points_seq = points_seq
        if not money:
            self.describe_lots(self.points, rp)
        return 0

    cdef int reverse(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef RequestRecord original, purchase
        cdef HoldRecord hold
        cdef CardRecord card
        cdef AccountRecord acc
        cdef uint64_t seq = 0, system_owner
        cdef int64_t amount
        if not self.read_request(rq.ref_request_id, &original):
            # Never seen: leave a tombstone so that the original, should it arrive
            # late, is declined instead of taking effect after its reversal.
            memset(&original, 0, sizeof(original))
            memcpy(original.request.request_id, rq.ref_request_id, REQUEST_ID_SIZE)
            original.flags = REQUEST_TOMBSTONE
            self.write_request(&original)
            self.approve(rq, rp, 0, 0)
            return 0
        if original.flags & REQUEST_TOMBSTONE:
            self.approve(rq, rp, 0, 0)
            return 0
        rp.card_id = original.reply.card_id
        if original.request.op not in (OP_LOAD, OP_PURCHASE, OP_REFUND, OP_PREAUTH,
                                       OP_LOYALTY_SALE):
            self.describe_reply_card(rp)
            rp.result = RESULT_DECLINED_NOT_REVERSIBLE
            return 0
        if original.flags & REQUEST_REVERSED:
            self.describe_reply_card(rp)
            rp.result = RESULT_DECLINED_ALREADY_REVERSED
            return 0
        if not took_effect(original.reply.result):
            # Nothing took effect, so nothing to undo: the reversal's goal holds.
            original.flags |= REQUEST_REVERSED
            self.write_request(&original)
            self.approve(rq, rp, 0, 0)
            return 0
        if original.request.op in (OP_PURCHASE, OP_LOYALTY_SALE) and original.refunded_minor:
            self.describe_reply_card(rp)
            rp.result = RESULT_DECLINED_NOT_REVERSIBLE
            return 0
        if original.request.op == OP_REFUND:
            assert self.read_request(original.request.ref_request_id, &purchase), \
                "refund of a missing purchase"
            if purchase.request.op == OP_LOYALTY_SALE:    # no money of ours moved: return again
                self.describe_reply_card(rp)
                rp.result = RESULT_DECLINED_NOT_REVERSIBLE
                return 0
        if original.request.op == OP_PREAUTH:
            # An open hold is released, as by a void; a settled one is refunded instead.
            assert self.read_hold(original.request.request_id, &hold), "pre-authorization without hold"
            if hold.status != HOLD_OPEN:
                self.describe_reply_card(rp)
                rp.result = RESULT_DECLINED_NOT_REVERSIBLE
                return 0
            amount = hold.held_minor
            seq = self.close_hold(rq.request_id, OP_REVERSAL, original.request.request_id, &hold,
                                  0, HOLD_VOIDED)
            original.flags |= REQUEST_REVERSED
            self.write_request(&original)
            self.approve(rq, rp, amount, seq)
            return 0
        amount = original.reply.approved_minor
        value = self.get(card_key_of(original.reply.card_id), None, self.db_book)
        memcpy(&card, <const char*>value, sizeof(card))
        self.describe_card(&card, rp)
        if original.request.op == OP_LOYALTY_SALE:
            seq = self.post(rq.request_id, OP_REVERSAL, card.card_id, SLOT_CARD_SALES_ELSEWHERE,
                            SYSTEM_OWNER_BASE + card.range_id, SLOT_RANGE_SALES_ELSEWHERE,
                            original.request.currency, amount + original.reply.points_value_minor)
            points_seq = self.take_back_points(rq, &card, original.reply.points_earned, amount)
            if original.reply.points_redeemed:
                self.restore_redeemed(rq, &card, &original)
            original.flags |= REQUEST_REVERSED
            self.write_request(&original)
            self.approve(rq, rp, amount, seq)
            rp.points_earned = -original.reply.points_earned
            rp.points_seq = points_seq
            self.describe_lots(self.points, rp)
            return 0
        system_owner = SYSTEM_OWNER_BASE + card.range_id
        if original.request.op == OP_PURCHASE:
            if rp.balance_minor + amount > BALANCE_MINOR_MAX:
                rp.result = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
                return 0
            seq = self.post(rq.request_id, OP_REVERSAL, system_owner, SLOT_RANGE_MERCHANT,
                            value_owner_of(&card), SLOT_CARD_VALUE, rp.currency, amount)
            self.uncount_purchase(&card, &original)
            self.take_back_points(rq, &card, original.reply.points_earned, amount)
        else:
            if available_of(rp) < amount:
                rp.result = RESULT_DECLINED_INSUFFICIENT_FUNDS
                return 0
            seq = self.post(rq.request_id, OP_REVERSAL, value_owner_of(&card), SLOT_CARD_VALUE,
                            system_owner,
                            SLOT_RANGE_MERCHANT if original.request.op == OP_REFUND
                            else SLOT_RANGE_FUNDING,
                            rp.currency, amount)
            if original.request.op == OP_REFUND:
                purchase.refunded_minor -= amount
                assert purchase.refunded_minor >= 0, "refunded total below zero"
                self.write_request(&purchase)
                if original.reply.points_earned < 0:    # the points it took back return
                    points_seq = self.credit_points(rq, &card, -original.reply.points_earned, 0,
                                                    OP_EARN_POINTS, 0)
                    self.record_points(card.card_id, points_seq, OP_REVERSAL,
                                       -original.reply.points_earned, 0)
                self.count_member(&card, amount, -original.reply.points_earned)
        original.flags |= REQUEST_REVERSED
        self.write_request(&original)
        self.approve(rq, rp, amount, seq)
        return 0

    cdef int restore_redeemed(self, const CoreRequest* rq, const CardRecord* card,
                              const RequestRecord* original) except -1:
        """A reversed sale's points come back, as one new lot named after the partner that
        issued the first of them (the reversal entry keeps where they were redeemed)."""
        cdef JournalEntry entry
        value = self.get(u64_be(original.reply.journal_seq + 1), None, self.db_journal)
        memcpy(&entry, <const char*>value, sizeof(entry))
        assert entry.op == OP_REDEEM_POINTS, "a sale paid with points without its redemption"
        self.partner, self.origin_partner = entry.partner_id, entry.origin_partner
        points_seq = self.credit_points(rq, card, original.reply.points_redeemed, 0, OP_REVERSAL,
                                        entry.origin_partner, SLOT_RANGE_POINTS_REDEEMED)
        self.record_points(card.card_id, points_seq, OP_REVERSAL, original.reply.points_redeemed, 0)
        self.partner = self.origin_partner = 0
        return 0

    cdef int describe_reply_card(self, CoreReply* rp) except -1:
        """Describe the card the reply names (rp.card_id), if any, as it is now."""
        cdef CardRecord card
        if rp.card_id:
            value = self.get(card_key_of(rp.card_id), None, self.db_book)
            memcpy(&card, <const char*>value, sizeof(card))
            self.describe_card(&card, rp)
        return 0


    # ---- fleet cards: restriction profiles, usage, contracts ----------------------

    cdef int read_contract(self, uint32_t contract_id, ContractRecord* out) except -1:
        value = self.get(config_key_of(b'C', contract_id), None, self.db_config)
        assert value is not None and len(value) == sizeof(ContractRecord), "card of a missing contract"
        memcpy(out, <const char*>value, sizeof(ContractRecord))
        return 0

    cdef bint read_usage(self, uint64_t card_id, UsageRecord* out) except -1:
        value = self.get(u64_be(card_id), None, self.db_usage)
        if value is None:
            memset(out, 0, sizeof(UsageRecord))
            return False
        assert len(value) == sizeof(UsageRecord), "corrupt usage record"
        memcpy(out, <const char*>value, sizeof(UsageRecord))
        return True

    cdef int write_usage(self, uint64_t card_id, const UsageRecord* usage) except -1:
        self.put(u64_be(card_id), _bytes(usage, sizeof(UsageRecord)), False, True, False,
                 self.db_usage)
        return 0

    cdef bint load_fleet(self, const CardRecord* card, Fleet* fleet) except -1:
        """The card's restriction profile (its own, else its contract's) and its usage,
        counters rolled to the current periods; False for a card without a profile."""
        cdef ContractRecord contract
        cdef uint32_t profile_id = card.profile_id
        cdef uint32_t index[COUNTED_PERIODS]
        cdef int p, m
        if not profile_id and card.contract_id:
            self.read_contract(card.contract_id, &contract)
            profile_id = contract.profile_id
        if not profile_id:
            return False
        value = self.get(config_key_of(b'F', profile_id), None, self.db_config)
        assert value is not None and len(value) == sizeof(ProfileRecord), "card of a missing profile"
        memcpy(&fleet.profile, <const char*>value, sizeof(ProfileRecord))
        fleet.local_s = <int64_t>self.now_s + fleet.profile.utc_offset_min * 60
        self.read_usage(card.card_id, &fleet.usage)
        period_indexes(fleet.local_s, index)
        for p in range(COUNTED_PERIODS):
            if fleet.usage.period_index[p] != index[p]:
                fleet.usage.period_index[p] = index[p]
                for m in range(LIMIT_MEASURES):
                    fleet.usage.used[p * LIMIT_MEASURES + m] = 0
        return True

    cdef int read_catalog(self, CatalogRecord* catalog) except -1:
        value = self.get(CATALOG_KEY, None, self.db_config)
        if value is None:
            memset(catalog, 0, sizeof(CatalogRecord))
        else:
            memcpy(catalog, <const char*>value, sizeof(CatalogRecord))
        return 0

    cdef bint known_products(self, const CoreRequest* rq) except -1:
        """Every product code of the request is in the catalog (read only when it names any)."""
        cdef CatalogRecord catalog
        cdef int i
        for i in range(PRODUCT_SET_SIZE):
            if rq.products[i]:
                break
        else:
            return True
        self.read_catalog(&catalog)
        for i in range(PRODUCT_SET_SIZE):
            if rq.products[i] & ~catalog.known[i]:
                return False
        return True

    cdef bint products_allowed(self, const CoreRequest* rq, const ProfileRecord* profile) except -1:
        """Every product of the sale is allowed. A sale without product data passes only
        where the profile restricts nothing (a pre-authorization's products are a hint:
        its completion says what was sold)."""
        cdef CatalogRecord catalog
        cdef int i
        cdef uint8_t fuel, other
        cdef bint any_product = False
        self.read_catalog(&catalog)
        for i in range(PRODUCT_SET_SIZE):
            if not rq.products[i]:
                continue
            any_product = True
            fuel = rq.products[i] & catalog.fuel[i]
            other = rq.products[i] & ~catalog.fuel[i]
            if other and not profile.flags & PROFILE_NONFUEL_ALLOWED:
                return False
            if fuel & ~profile.allowed_products[i] and profile.flags & PROFILE_FUELS_RESTRICTED:
                return False
        if any_product or rq.op == OP_PREAUTH:
            return True
        return not (profile.flags & PROFILE_FUELS_RESTRICTED) and \
            profile.flags & PROFILE_NONFUEL_ALLOWED

    cdef bint place_allowed(self, uint32_t outlet_code, const ProfileRecord* profile) except -1:
        cdef OutletRecord outlet
        cdef uint32_t region = 0
        cdef int i
        if outlet_code:
            value = self.get(config_key_of(b'O', outlet_code), None, self.db_config)
            if value is not None:
                memcpy(&outlet, <const char*>value, sizeof(outlet))
                region = outlet.region_code
        for i in range(profile.place_count):
            if outlet_code and profile.places[i] == outlet_code:
                return True
            if region and profile.places[i] == region:
                return True
        return False

    cdef uint8_t fleet_rules(self, const CoreRequest* rq, const Fleet* fleet,
                             CoreReply* rp) except 255:
        """Products, outlet, day and hour, then the prompts the profile requires."""
        cdef const ProfileRecord* profile = &fleet.profile
        cdef uint8_t present = 0
        if not self.products_allowed(rq, profile):
            return RESULT_DECLINED_PRODUCT_NOT_ALLOWED
        if profile.place_count and not self.place_allowed(rq.outlet_code, profile):
            return RESULT_DECLINED_OUTLET_NOT_ALLOWED
        if not in_schedule(profile.days_mask, profile.minute_from, profile.minute_to,
                           fleet.local_s):
            return RESULT_DECLINED_TIME_NOT_ALLOWED
        if rq.flags & REQUEST_PIN_PRESENT:
            present |= PROMPT_PIN
        if rq.flags & REQUEST_ODOMETER_PRESENT:
            present |= PROMPT_ODOMETER
        if rq.flags & REQUEST_DRIVER_PRESENT:
            present |= PROMPT_DRIVER
        if rq.flags & REQUEST_VEHICLE_PRESENT:
            present |= PROMPT_VEHICLE
        if profile.prompts & ~present:
            rp.prompts_missing = profile.prompts & ~present
            return RESULT_DECLINED_PROMPT_REQUIRED
        return 0

    cdef uint8_t fleet_limits(self, const CoreRequest* rq, const Fleet* fleet, CoreReply* rp,
                              int64_t* amount, int64_t* volume) except 255:
        """The odometer, then the hard limits, pessimistically: what was used in each
        period plus what open holds reserve plus this request. Where the terminal takes a
        partial approval the money (and a pre-authorization's volume) is cut to what the
        limits leave; a pre-authorization without a volume reserves what they leave."""
        cdef const ProfileRecord* profile = &fleet.profile
        cdef int64_t room[LIMIT_MEASURES]
        cdef int tightest[LIMIT_MEASURES]
        cdef int64_t this[LIMIT_MEASURES]
        cdef int64_t before
        cdef int idx, p, m
        if rq.flags & REQUEST_ODOMETER_PRESENT and fleet.usage.odometer_set and \
                rq.odometer < fleet.usage.odometer:
            return RESULT_DECLINED_ODOMETER_BACKWARDS
        for m in range(LIMIT_MEASURES):
            room[m] = INT64_MAX
            tightest[m] = -1
        for idx in range(LIMIT_PERIODS * LIMIT_MEASURES):
            if profile.limits[idx] <= 0 or profile.soft_mask >> idx & 1:
                continue
            p = idx // LIMIT_MEASURES
            m = idx % LIMIT_MEASURES
            before = 0 if p == 0 else \
                fleet.usage.used[(p - 1) * LIMIT_MEASURES + m] + fleet.usage.pending[m]
            if profile.limits[idx] - before < room[m]:
                room[m] = profile.limits[idx] - before
                tightest[m] = idx
        this[0] = amount[0]
        this[1] = volume[0]
        this[2] = 1
        for m in range(LIMIT_MEASURES):
            if tightest[m] < 0:
                continue
            if m == 1 and rq.op == OP_PREAUTH and this[1] == 0:
                if room[1] <= 0:             # no litres left for the pump to dispense
                    rp.limit_hit = tightest[1] + 1
                    return RESULT_DECLINED_LIMIT_EXCEEDED
                this[1] = room[1]            # the pump stops where the limits do
            elif this[m] > (room[m] if room[m] > 0 else 0):   # (a sale of no litres passes)
                if rq.flags & REQUEST_PARTIAL_OK and room[m] > 0 and \
                        (m == 0 or (m == 1 and rq.op == OP_PREAUTH)):
                    this[m] = room[m]
                else:
                    rp.limit_hit = tightest[m] + 1
                    return RESULT_DECLINED_LIMIT_EXCEEDED
        amount[0] = this[0]
        volume[0] = this[1]
        return 0

    cdef int count_usage(self, const CoreRequest* rq, uint64_t card_id, Fleet* fleet,
                         int64_t amount, int64_t volume, bint reserve) except -1:
        """Count an approved sale in every period (or reserve it for an open hold), and
        keep the odometer reading."""
        cdef int p
        cdef UsageRecord* usage = &fleet.usage
        if reserve:
            usage.pending[0] += amount
            usage.pending[1] += volume
            usage.pending[2] += 1
        else:
            for p in range(COUNTED_PERIODS):
                usage.used[p * LIMIT_MEASURES] += amount
                usage.used[p * LIMIT_MEASURES + 1] += volume
                usage.used[p * LIMIT_MEASURES + 2] += 1
        if rq.flags & REQUEST_ODOMETER_PRESENT:
            usage.odometer = rq.odometer
            usage.odometer_set = 1
        self.write_usage(card_id, usage)
        return 0

    cdef int flag_soft(self, const Fleet* fleet, int64_t amount, int64_t volume,
                       CoreReply* rp) except -1:
        """After counting: past a soft limit, the approval is flagged for review."""
        cdef const ProfileRecord* profile = &fleet.profile
        cdef int64_t this[LIMIT_MEASURES]
        cdef int64_t value
        cdef int idx, p, m
        this[0] = amount
        this[1] = volume
        this[2] = 1
        for idx in range(LIMIT_PERIODS * LIMIT_MEASURES):
            if profile.limits[idx] <= 0 or not profile.soft_mask >> idx & 1:
                continue
            p = idx // LIMIT_MEASURES
            m = idx % LIMIT_MEASURES
            value = this[m] if p == 0 else \
                fleet.usage.used[(p - 1) * LIMIT_MEASURES + m] + fleet.usage.pending[m]
            if value > profile.limits[idx]:
                rp.review = 1
                rp.limit_hit = idx + 1
                return 0
        return 0

    cdef int uncount_purchase(self, const CardRecord* card, const RequestRecord* original) except -1:
        """A reversed purchase no longer counts in the periods it was counted in."""
        cdef UsageRecord usage
        cdef Fleet fleet
        cdef JournalEntry entry
        cdef uint32_t index[COUNTED_PERIODS]
        cdef int64_t offset_s = 0, volume = original.request.volume_ml
        cdef int p
        if not self.read_usage(card.card_id, &usage):
            return 0
        if self.load_fleet(card, &fleet):
            offset_s = fleet.profile.utc_offset_min * 60
        value = self.get(u64_be(original.reply.journal_seq), None, self.db_journal)
        assert value is not None, "approved purchase without journal entry"
        memcpy(&entry, <const char*>value, sizeof(entry))
        period_indexes(<int64_t>entry.time_s + offset_s, index)
        for p in range(COUNTED_PERIODS):
            if usage.period_index[p] != index[p]:
                continue
            usage.used[p * LIMIT_MEASURES] = max(0, usage.used[p * LIMIT_MEASURES] -
                                                 original.reply.approved_minor)
            usage.used[p * LIMIT_MEASURES + 1] = max(0, usage.used[p * LIMIT_MEASURES + 1] - volume)
            usage.used[p * LIMIT_MEASURES + 2] = max(0, usage.used[p * LIMIT_MEASURES + 2] - 1)
        self.write_usage(card.card_id, &usage)
        return 0

    # ---- fleet configuration ----------------------------------------------------------

    cdef int define_product(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef CatalogRecord catalog
        cdef uint32_t code = rq.range_id
        self.read_catalog(&catalog)
        catalog.known[code >> 3] |= 1 << (code & 7)
        if rq.target_status == PRODUCT_FUEL:
            catalog.fuel[code >> 3] |= 1 << (code & 7)
        else:
            catalog.fuel[code >> 3] &= ~(1 << (code & 7))
        self.put(CATALOG_KEY, _bytes(&catalog, sizeof(catalog)), False, True, False, self.db_config)
        self.put(config_key_of(b'P', code), bytes([rq.target_status]) + _bytes(rq.range_name, RANGE_NAME_SIZE),
                 False, True, False, self.db_config)
        self.approve(rq, rp, 0, 0)
        return 0

    cdef int set_profile(self, const CoreRequest* rq, const char* payload, CoreReply* rp) except -1:
        cdef const ProfileRecord* profile = <const ProfileRecord*>payload
        cdef CatalogRecord catalog
        cdef int i
        self.read_catalog(&catalog)
        for i in range(PRODUCT_SET_SIZE):
            if profile.allowed_products[i] & ~catalog.known[i]:
                rp.result = RESULT_REJECTED_UNKNOWN_PRODUCT
                return 0
        self.put(config_key_of(b'F', rq.profile_id), _bytes(payload, sizeof(ProfileRecord)),
                 False, True, False, self.db_config)
        self.approve(rq, rp, 0, 0)
        return 0

    cdef int define_outlet(self, const CoreRequest* rq, const char* payload, CoreReply* rp) except -1:
        cdef const OutletRecord* outlet = <const OutletRecord*>payload
        key = config_key_of(b'O', rq.outlet_code)
        value = self.get(key, None, self.db_config)
        if value is not None and (
                memcmp(<const char*>value + 8, outlet.name, OUTLET_NAME_SIZE) != 0 or
                (<const OutletRecord*><const char*>value).partner_id != outlet.partner_id):
            rp.result = RESULT_DECLINED_OUTLET_CODE_TAKEN       # another outlet, or partner
            return 0
        if not self.configured(b'N', outlet.partner_id):
            rp.result = RESULT_DECLINED_UNKNOWN_PARTNER
            return 0
        self.put(key, _bytes(payload, sizeof(OutletRecord)), False, True, False, self.db_config)
        self.partners.clear()
        self.approve(rq, rp, 0, 0)
        return 0

    cdef bint configured(self, char kind, uint32_t id_) except -1:
        """No reference (0), or one to a record the configuration has ('F' profile, 'N'
        partner, 'O' outlet, 'G' program)."""
        return id_ == 0 or self.get(config_key_of(kind, id_), None, self.db_config) is not None

    cdef int set_contract(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef ContractRecord contract
        cdef AccountRecord acc
        cdef uint64_t owner = CONTRACT_OWNER_BASE + rq.contract_id
        if not self.configured(b'F', rq.profile_id):
            rp.result = RESULT_DECLINED_UNKNOWN_PROFILE
            return 0
        key = config_key_of(b'C', rq.contract_id)
        value = self.get(key, None, self.db_config)
        if value is None:
            memset(&acc, 0, sizeof(acc))
            memcpy(acc.currency, rq.currency, CURRENCY_SIZE)
            self.write_account(owner, SLOT_CARD_VALUE, &acc)
            self.write_account(owner, SLOT_CARD_HELD, &acc)
        else:
            memcpy(&contract, <const char*>value, sizeof(contract))
            if memcmp(contract.currency, rq.currency, CURRENCY_SIZE) != 0:
                rp.result = RESULT_DECLINED_CURRENCY_MISMATCH
                return 0
            self.read_account(owner, SLOT_CARD_VALUE, &acc)
            if acc.balance_minor + rq.amount_minor < 0:
                rp.result = RESULT_DECLINED_CREDIT_LIMIT_EXCEEDED   # already drawn further
                return 0
        memset(&contract, 0, sizeof(contract))
        contract.contract_id = rq.contract_id
        contract.profile_id = rq.profile_id
        memcpy(contract.currency, rq.currency, CURRENCY_SIZE)
        contract.credit_limit_minor = rq.amount_minor
        self.put(key, _bytes(&contract, sizeof(contract)), False, True, False, self.db_config)
        memcpy(rp.currency, rq.currency, CURRENCY_SIZE)
        self.approve(rq, rp, 0, 0)
        return 0

    cdef int assign_card(self, const CoreRequest* rq, CoreReply* rp) except -1:
        cdef CardRecord card
        cdef ContractRecord contract
        cdef AccountRecord value_acc, held_acc
        cdef uint8_t bad = self.open_card(rq, &card, rp)
        if bad:
            rp.result = bad
            return 0
        if not self.configured(b'F', rq.profile_id):
            rp.result = RESULT_DECLINED_UNKNOWN_PROFILE
            return 0
        if rq.contract_id:
            value = self.get(config_key_of(b'C', rq.contract_id), None, self.db_config)
            if value is None:
                rp.result = RESULT_DECLINED_UNKNOWN_CONTRACT
                return 0
            memcpy(&contract, <const char*>value, sizeof(contract))
            if memcmp(contract.currency, rp.currency, CURRENCY_SIZE) != 0:
                rp.result = RESULT_DECLINED_CURRENCY_MISMATCH
                return 0
        if rq.contract_id != card.contract_id and not card.contract_id:
            # The card's own value would be out of reach: it must be spent or cleared first.
            self.read_account(card.card_id, SLOT_CARD_VALUE, &value_acc)
            self.read_account(card.card_id, SLOT_CARD_HELD, &held_acc)
            if value_acc.balance_minor or held_acc.balance_minor:
                rp.result = RESULT_DECLINED_BALANCE_NOT_ZERO
                return 0
        card.profile_id = rq.profile_id
        card.contract_id = rq.contract_id
        self.write_card(&card)
        self.approve(rq, rp, 0, 0, &card)
        return 0

    # ---- loyalty programs ---------------------------------------------------------

    cdef int set_program(self, const CoreRequest* rq, const char* payload, CoreReply* rp) except -1:
        cdef const ProgramRecord* program = <const ProgramRecord*>payload
        cdef ProgramRecord old
        cdef int i
        for i in range(program.range_count):
            if self.get(range_key_of(program.range_ids[i]), None, self.db_config) is None:
                rp.result = RESULT_DECLINED_UNKNOWN_CARD_RANGE
                return 0
            link = self.get(config_key_of(b'g', program.range_ids[i]), None, self.db_config)
            if link is not None and int.from_bytes(link, "little") != program.program_id:
                rp.result = RESULT_DECLINED_RANGE_IN_ANOTHER_PROGRAM
                return 0
        key = config_key_of(b'G', program.program_id)
        value = self.get(key, None, self.db_config)
        if value is not None:                        # ranges it no longer covers leave it
            memcpy(&old, <const char*>value, sizeof(old))
            for i in range(old.range_count):
                self.delete(config_key_of(b'g', old.range_ids[i]), None, self.db_config)
        for i in range(program.range_count):
            self.put(config_key_of(b'g', program.range_ids[i]),
                     (<uint32_t>program.program_id).to_bytes(4, "little"), False, True, False,
                     self.db_config)
        self.put(key, _bytes(payload, sizeof(ProgramRecord)), False, True, False, self.db_config)
        self.programs.clear()                # read again by the batch's next sales
        self.approve(rq, rp, 0, 0)
        return 0

    # ---- loyalty: earning on sales, members, returns --------------------------------

    cdef uint32_t partner_of(self, uint32_t outlet_code) except? 0xFFFFFFFF:
        """The loyalty partner an outlet belongs to (0: none, or not an outlet we know)."""
        cdef const OutletRecord* outlet
        if outlet_code == 0:
            return 0
        partner = self.partners.get(outlet_code)
        if partner is None:
            value = self.get(config_key_of(b'O', outlet_code), None, self.db_config)
            partner = (<const OutletRecord*><const char*>value).partner_id if value is not None else 0
            self.partners[outlet_code] = partner
        return partner

    cdef tuple program_of(self, uint32_t range_id):
        """(ProgramRecord bytes, EarnRule[] bytes) of the range's program, or None; read
        once per batch."""
        found = self.programs.get(range_id, False)
        if found is False:
            link = self.get(config_key_of(b'g', range_id), None, self.db_config)
            if link is None:
                found = None
            else:
                program_id = int.from_bytes(link, "little")
                program = self.get(config_key_of(b'G', program_id), None, self.db_config)
                assert program is not None and len(program) == sizeof(ProgramRecord), \
                    "range of a missing program"
                found = (program, self.get(config_key_of(b'E', program_id), b"", self.db_config))
            self.programs[range_id] = found
        return found

    cdef int read_member(self, uint64_t card_id, MemberRecord* out) except -1:
        value = self.get(member_key_of(card_id), None, self.db_book)
        if value is None:
            memset(out, 0, sizeof(MemberRecord))
        else:
            assert len(value) == sizeof(MemberRecord), "corrupt member record"
            memcpy(out, <const char*>value, sizeof(MemberRecord))
        return 0

    cdef int write_member(self, uint64_t card_id, const MemberRecord* member) except -1:
        self.put(member_key_of(card_id), _bytes(member, sizeof(MemberRecord)), False, True, False,
                 self.db_book)
        return 0

    cdef int record_points(self, uint64_t card_id, uint64_t seq, uint8_t op, int64_t points,
                           uint32_t outlet_code, const PointsLine* explained=NULL) except -1:
        """One line of the card's points history (its statement), keyed by journal seq."""
        cdef PointsLine line
        if explained != NULL:
            memcpy(&line, explained, sizeof(line))
        else:
            memset(&line, 0, sizeof(line))
            line.outlet_code = outlet_code
        line.op = op
        line.points = points
        self.put(history_key_of(card_id, seq), _bytes(&line, sizeof(line)), False, True, False,
                 self.db_book)
        return 0

    cdef uint64_t credit_points(self, const CoreRequest* rq, const CardRecord* card,
                                int64_t amount, uint64_t valid_until_s, uint8_t op, uint32_t issuer,
                                uint8_t source_slot=SLOT_RANGE_POINTS_ISSUED,
                                uint8_t reason=0) except 0:
        """Points onto the card: first they pay back what returns left owed, the rest
        becomes a lot of `issuer`'s points. The first journal seq."""
        cdef uint64_t owner = SYSTEM_OWNER_BASE + card.range_id, seq = 0
        cdef int64_t owed = -self.points_owed(card.card_id)
        cdef int64_t repay = owed if owed < amount else amount
        if repay > 0:
            seq = self.post(rq.request_id, op, owner, source_slot, card.card_id,
                            SLOT_CARD_POINTS_OWED, POINTS, repay, reason)
        if amount > repay:
            last = self.post(rq.request_id, op, owner, source_slot, card.card_id,
                             SLOT_CARD_POINTS, POINTS, amount - repay, reason)
            seq = seq or last
            self.new_lot(self.points, rq, card, amount - repay, valid_until_s, True, issuer)
        return seq

    cdef int64_t earn_on_sale(self, const CoreRequest* rq, const CardRecord* card, int64_t spend,
                              int64_t volume, uint8_t method, CoreReply* rp,
                              bint earns=True) except -1:
        """A sale of a card in a loyalty program: its rules, tier and bonuses give points
        (in the same request, as a lot), and the sale counts towards tiers and discounts.
        The first journal seq of the points (0: none)."""
        cdef MemberRecord member
        cdef PointsLine line
        cdef Sale sale
        cdef const ProgramRecord* program
        cdef int64_t points
        found = self.program_of(card.range_id)
        if found is None:
            return 0
        program_bytes, rules_bytes = found
        program = <const ProgramRecord*><const char*>program_bytes
        self.read_member(card.card_id, &member)
        roll_member(program, &member, self.now_s)
        self.partner = self.partner_of(rq.outlet_code)
        sale.amount_minor = spend
        sale.volume_ml = volume
        sale.products = rq.products
        sale.outlet_code = rq.outlet_code
        sale.partner_id = self.partner
        sale.method = method
        rp.lifetime_spend_minor = member.lifetime_spend_minor
        if earns:
            points = earn(program, <const EarnRule*><const char*>rules_bytes,
                          len(rules_bytes) // sizeof(EarnRule), &sale, &member, self.now_s,
                          AMOUNT_MINOR_MAX, &line)
        else:                               # the program: no points when paying with points
            memset(&line, 0, sizeof(line))
            line.tier = member.tier
            points = 0
        if count_sale(program, &member, spend, points, self.now_s):
            line.earn_flags |= EARNED_TIER_UP
        self.write_member(card.card_id, &member)
        rp.points_earned = points
        rp.tier = member.tier
        rp.earn_flags = line.earn_flags
        if points <= 0:
            return 0
        seq = self.credit_points(rq, card, points, 0, OP_EARN_POINTS, self.partner)
        self.record_points(card.card_id, seq, rq.op, points, rq.outlet_code, &line)
        rp.points_seq = seq
        return seq

    cdef int count_member(self, const CardRecord* card, int64_t spend, int64_t points) except -1:
        """Count a return (negative) or its reversal towards the member's spend and tier."""
        cdef MemberRecord member
        found = self.program_of(card.range_id)
        if found is not None:
            self.read_member(card.card_id, &member)
            roll_member(<const ProgramRecord*><const char*>found[0], &member, self.now_s)
            count_sale(<const ProgramRecord*><const char*>found[0], &member, spend, points,
                       self.now_s)
            self.write_member(card.card_id, &member)
        return 0

    cdef int64_t take_back_points(self, const CoreRequest* rq, const CardRecord* card,
                                  int64_t points, int64_t spend) except -1:
        """A return takes back the points its sale earned: from the sale's own lot first,
        then earliest-expiring, pending ones too; what was already spent is owed (a
        negative balance that blocks redemption until new points cover it). The first
        journal seq (0: none)."""
        cdef PackageRecord lot
        cdef int64_t covered = 0, take
        cdef uint64_t owner = SYSTEM_OWNER_BASE + card.range_id, seq = 0
        self.count_member(card, -spend, -points)
        if points <= 0:
            return 0
        own = _bytes(rq.ref_request_id, REQUEST_ID_SIZE)
        lot_ids = [own] if self.read_lot(self.points, rq.ref_request_id, &lot) and \
            lot.status == PACKAGE_OPEN else []
        lot_ids += [lot_id for lot_id in self.card_lot_ids(self.points, card.card_id) if lot_id != own]
        for lot_id in lot_ids:
            if covered == points:
                break
            self.read_lot(self.points, <const uint8_t*><const char*>lot_id, &lot)
            take = lot.units_left if lot.units_left < points - covered else points - covered
            lot.units_left -= take
            covered += take
            if lot.units_left == 0:
                self.end_lot(self.points, <const uint8_t*><const char*>lot_id, &lot, PACKAGE_USED_UP)
            else:
                self.write_lot(self.points, <const uint8_t*><const char*>lot_id, &lot)
        if covered:
            seq = self.post(rq.request_id, rq.op, card.card_id, SLOT_CARD_POINTS, owner,
                            SLOT_RANGE_POINTS_ISSUED, POINTS, covered)
        if points > covered:
            last = self.post(rq.request_id, rq.op, card.card_id, SLOT_CARD_POINTS_OWED, owner,
                             SLOT_RANGE_POINTS_ISSUED, POINTS, points - covered)
            seq = seq or last
        self.record_points(card.card_id, seq, rq.op, -points, rq.outlet_code)
        return seq

    cdef int64_t points_to_return(self, const RequestRecord* original, int64_t refunded_before,
                                  int64_t refunded_after):
        """Points a return gives back: in proportion to the amount, rounded so that
        returning everything returns exactly what was earned."""
        earned = original.reply.points_earned
        approved = original.reply.approved_minor
        if earned <= 0 or approved <= 0:
            return 0
        return earned * refunded_after // approved - earned * refunded_before // approved

    cdef int loyalty_sale(self, const CoreRequest* rq, CoreReply* rp) except -1:
        """A sale the member pays otherwise (cash, a bank card): the discount the POS
        applies, and the points the rest earns."""
        cdef CardRecord card
        cdef MemberRecord member
        cdef const ProgramRecord* program
        cdef int64_t discount, payable, points = rq.load_per_day_max_minor, value = 0
        cdef uint64_t earliest_s = 0
        if not self.find_described_card(rq, &card, rp):
            return 0
        cdef uint8_t bad = self.usable_card(&card, True)
        found = self.program_of(card.range_id)
        if not bad and found is None:
            bad = RESULT_DECLINED_NOT_IN_PROGRAM
        taken = []
        if not bad:
            program = <const ProgramRecord*><const char*>found[0]
            self.read_member(card.card_id, &member)
            rp.discount_bp = discount_of(program, member.lifetime_spend_minor)
            discount = rq.amount_minor * rp.discount_bp // 10000
            payable = rq.amount_minor - discount
            if points:                  # mixed tender: points pay part, at the program's rate
                if program.point_value_millis == 0:
                    bad = RESULT_DECLINED_POINTS_HAVE_NO_VALUE
                else:                   # never more points than the sale needs
                    points = min(points, (payable * 1000 + program.point_value_millis - 1)
                                 // program.point_value_millis)
                    value = min(payable, points * program.point_value_millis // 1000)
                    bad = self.take_points(&card, points, &earliest_s, taken)
        if bad:
            rp.result = bad
            rp.discount_bp = 0
            self.describe_lots(self.points, rp)
            return 0
        self.activate(&card)
        rp.discount_minor = discount
        seq = self.post(rq.request_id, OP_LOYALTY_SALE, SYSTEM_OWNER_BASE + card.range_id,
                        SLOT_RANGE_SALES_ELSEWHERE, card.card_id, SLOT_CARD_SALES_ELSEWHERE,
                        rq.currency, payable)
        if taken:
            self.partner = self.partner_of(rq.outlet_code)
            used_seq = self.post_use(self.points, rq, &card, taken)
            self.record_points(card.card_id, used_seq, OP_REDEEM_POINTS, -points, rq.outlet_code)
            rp.points_redeemed = points
            rp.points_value_minor = value
        self.earn_on_sale(rq, &card, payable - value, rq.volume_ml, rq.target_status, rp,
                          not (taken and program.flags & PROGRAM_NO_EARN_WHEN_REDEEMING))
        self.approve(rq, rp, payable - value, seq)
        self.describe_lots(self.points, rp)
        return 0

    cdef int set_rules(self, const CoreRequest* rq, const char* payload, CoreReply* rp) except -1:
        """Replace a program's earn rules; every outlet and product they name must exist."""
        cdef const EarnRule* rule
        cdef CatalogRecord catalog
        cdef int i, j
        if not self.configured(b'G', rq.profile_id):       # (valid() refused program 0)
            rp.result = RESULT_DECLINED_UNKNOWN_PROGRAM
            return 0
        self.read_catalog(&catalog)
        for i in range(rq.payload_size // sizeof(EarnRule)):
            rule = <const EarnRule*>(payload + i * sizeof(EarnRule))
            for j in range(rule.place_count):
                if rule.outlets[j] == 0 or not self.configured(b'O', rule.outlets[j]):
                    rp.result = RESULT_DECLINED_UNKNOWN_OUTLET
                    return 0
            if rule.scope == SCOPE_PARTNER and not self.configured(b'N', rule.partner_id):
                rp.result = RESULT_DECLINED_UNKNOWN_PARTNER
                return 0
            for j in range(PRODUCT_SET_SIZE):
                if rule.products[j] & ~catalog.known[j]:
                    rp.result = RESULT_REJECTED_UNKNOWN_PRODUCT
                    return 0
        self.put(config_key_of(b'E', rq.profile_id), payload[:rq.payload_size], False, True,
                 False, self.db_config)
        self.programs.clear()
        self.approve(rq, rp, 0, 0)
        return 0

    cdef int define_partner(self, const CoreRequest* rq, CoreReply* rp) except -1:
        """A loyalty partner (a merchant company): its number and name; renaming is fine."""
        self.put(config_key_of(b'N', rq.profile_id), _bytes(rq.range_name, RANGE_NAME_SIZE),
                 False, True, False, self.db_config)
        self.approve(rq, rp, 0, 0)
        return 0

    cdef int set_member(self, const CoreRequest* rq, CoreReply* rp) except -1:
        """The holder's birthday (month * 100 + day in profile_id; 0: forget it)."""
        cdef CardRecord card
        cdef MemberRecord member
        cdef uint8_t bad = self.open_card(rq, &card, rp)
        if bad:
            rp.result = bad
            return 0
        self.read_member(card.card_id, &member)
        member.birth_month = rq.profile_id // 100
        member.birth_day = rq.profile_id % 100
        self.write_member(card.card_id, &member)
        self.approve(rq, rp, 0, 0, &card)
        return 0

    # ---- held redemptions: reserve, then confirm or release ------------------------

    cdef int reserve_points(self, const CoreRequest* rq, CoreReply* rp) except -1:
        """Take points earliest-expiring first into the card's held points, as one held
        lot keyed by this request, released by itself at the hold timeout."""
        cdef CardRecord card
        cdef uint64_t earliest_s = 0, seq = 0
        if not self.find_described_card(rq, &card, rp):
            return 0
        cdef uint8_t bad = self.usable_card(&card, False)
        taken = []
        if not bad:
            bad = self.take_points(&card, rq.amount_minor, &earliest_s, taken)
        if bad:
            rp.result = bad
            self.describe_lots(self.points, rp)
            return 0
        self.partner = self.partner_of(rq.outlet_code)
        for origin, amount in taken:
            self.origin_partner = origin
            last = self.post(rq.request_id, OP_RESERVE_POINTS, card.card_id, SLOT_CARD_POINTS,
                             card.card_id, SLOT_CARD_POINTS_HELD, POINTS, amount)
            seq = seq or last
        # One held lot; released, its points expire with the earliest of them.
        self.new_lot(self.points, rq, &card, rq.amount_minor, earliest_s, False, taken[0][0],
                     self.now_s + self.hold_timeout_s)
        self.record_points(card.card_id, seq, OP_RESERVE_POINTS, -rq.amount_minor, rq.outlet_code)
        self.approve(rq, rp, rq.amount_minor, seq)
        self.describe_lots(self.points, rp)
        return 0

    cdef list reserved_groups(self, const RequestRecord* reserve):
        """[issuing partner, points, partner where reserved] of a reservation, from its
        journal entries."""
        cdef JournalEntry entry
        cdef uint64_t seq = reserve.reply.journal_seq
        groups = []
        while True:
            value = self.get(u64_be(seq), None, self.db_journal)
            if value is None:
                break
            memcpy(&entry, <const char*>value, sizeof(entry))
            if memcmp(entry.request_id, reserve.request.request_id, REQUEST_ID_SIZE) != 0 or \
                    entry.op != OP_RESERVE_POINTS:
                break
            groups.append((entry.origin_partner, entry.amount_minor, entry.partner_id))
            seq += 1
        return groups

    cdef uint64_t settle_reservation(self, const uint8_t* posting_id, RequestRecord* reserve,
                                     int64_t redeem, uint8_t release_op, uint32_t flag) except? 0:
        """Redeem `redeem` of a reservation (where it was made) and give the rest back: its
        lot opens again with it, expiring with the earliest of what it held. The first
        journal seq."""
        cdef PackageRecord lot
        cdef const uint8_t* lot_id = reserve.request.request_id
        cdef uint64_t seq = 0, owner
        cdef int64_t take, released
        assert self.read_lot(self.points, lot_id, &lot) and lot.status == PACKAGE_HELD, \
            "settling a reservation that is not held"
        owner = SYSTEM_OWNER_BASE + lot.range_id
        released = lot.units_left - redeem
        for origin, amount, partner in self.reserved_groups(reserve):
            self.partner, self.origin_partner = partner, origin
            take = amount if amount < redeem else redeem
            redeem -= take
            if take:
                last = self.post(posting_id, OP_CONFIRM_POINTS, lot.card_id, SLOT_CARD_POINTS_HELD,
                                 owner, SLOT_RANGE_POINTS_REDEEMED, POINTS, take)
                seq = seq or last
            if amount > take:
                last = self.post(posting_id, release_op, lot.card_id, SLOT_CARD_POINTS_HELD,
                                 lot.card_id, SLOT_CARD_POINTS, POINTS, amount - take)
                seq = seq or last
        self.partner = self.origin_partner = 0
        self.delete(self.lot_keys(self.points, &lot, lot_id, False), None, self.points.db_expiry)
        lot.held_until_s = 0
        lot.units_left = released
        if released:
            lot.status = PACKAGE_OPEN
            self.put(self.lot_keys(self.points, &lot, lot_id, False), b"", False, True, False,
                     self.points.db_expiry)
            self.put(self.lot_keys(self.points, &lot, lot_id, True), b"", False, True, False,
                     self.points.db_card)
            self.record_points(lot.card_id, seq, release_op, released, 0)
        else:
            lot.status = PACKAGE_USED_UP
        self.write_lot(self.points, lot_id, &lot)
        reserve.flags |= flag
        self.write_request(reserve)
        return seq

    cdef int close_reservation(self, const CoreRequest* rq, CoreReply* rp) except -1:
        """Confirm a reservation (all of it or less: the rest goes back) or release it."""
        cdef CardRecord card
        cdef RequestRecord reserve
        cdef bint confirm = rq.op == OP_CONFIRM_POINTS
        if not self.find_described_card(rq, &card, rp):
            return 0
        cdef uint8_t bad = 0
        if not self.read_request(rq.ref_request_id, &reserve) or \
                reserve.request.op != OP_RESERVE_POINTS or not took_effect(reserve.reply.result):
            bad = RESULT_DECLINED_HOLD_NOT_FOUND
        elif reserve.reply.card_id != card.card_id:
            bad = RESULT_DECLINED_CARD_MISMATCH
        elif reserve.flags & REQUEST_CONFIRMED:
            bad = RESULT_DECLINED_HOLD_ALREADY_COMPLETED
        elif reserve.flags & REQUEST_RELEASED:
            bad = RESULT_DECLINED_HOLD_VOIDED
        elif reserve.flags & REQUEST_TIMED_OUT:
            bad = RESULT_DECLINED_HOLD_EXPIRED
        elif confirm and rq.amount_minor > reserve.reply.approved_minor:
            bad = RESULT_DECLINED_COMPLETION_EXCEEDS_HOLD
        if bad:
            rp.result = bad
            self.describe_lots(self.points, rp)
            return 0
        seq = self.settle_reservation(rq.request_id, &reserve, rq.amount_minor if confirm else 0,
                                      OP_RELEASE_POINTS, REQUEST_CONFIRMED if confirm else REQUEST_RELEASED)
        self.approve(rq, rp, rq.amount_minor if confirm else reserve.reply.approved_minor, seq)
        self.describe_lots(self.points, rp)
        return 0

    # ---- lost or stolen: a replacement card -----------------------------------------

    cdef int replace_card(self, const CoreRequest* rq, const char* payload, CoreReply* rp) except -1:
        """Everything of a lost or stolen card moves to a new, never used card of the same
        range: value, subscription and point lots (with their dates), points owed,
        loyalty standing, fleet profile, contract and usage. The old card is closed for
        good. Not while it has open pre-authorizations or held points."""
        cdef CardRecord card, new
        cdef MemberRecord member
        cdef UsageRecord usage
        cdef uint8_t bad = self.open_card(rq, &card, rp)
        if not bad and (not self.find_card(<const uint8_t*>payload, &new) or new.range_id != card.range_id
                        or new.status != CARD_ISSUED or new.activated_s or new.card_id == card.card_id
                        or self.usable_card(&new, True)):
            bad = RESULT_DECLINED_REPLACEMENT_UNUSABLE
        if not bad and (self.balance_of(value_owner_of(&card), SLOT_CARD_HELD) or
                        self.balance_of(card.card_id, SLOT_CARD_POINTS_HELD)):
            bad = RESULT_DECLINED_HOLDS_OPEN
        if bad:
            rp.result = bad
            return 0
        cdef uint64_t seq = 0
        cdef int64_t value = self.balance_of(card.card_id, SLOT_CARD_VALUE) if not card.contract_id else 0
        if value > 0:
            seq = self.post(rq.request_id, OP_REPLACE_CARD, card.card_id, SLOT_CARD_VALUE,
                            new.card_id, SLOT_CARD_VALUE, rp.currency, value)
        for kind in (self.packages, self.points):
            moved = self.move_lots(kind, rq, &card, &new)
            if moved:
                last = self.post(rq.request_id, OP_REPLACE_CARD, card.card_id, kind.card_slot,
                                 new.card_id, kind.card_slot, kind.asset, moved)
                seq = seq or last
            if kind is self.points:
                owed = -self.balance_of(card.card_id, SLOT_CARD_POINTS_OWED)
                if owed:
                    last = self.post(rq.request_id, OP_REPLACE_CARD, new.card_id, SLOT_CARD_POINTS_OWED,
                                     card.card_id, SLOT_CARD_POINTS_OWED, POINTS, owed)
                    seq = seq or last
                if moved or owed:
                    self.record_points(card.card_id, seq, OP_REPLACE_CARD, owed - moved, 0)
                    self.record_points(new.card_id, seq, OP_REPLACE_CARD, moved - owed, 0)
        if self.get(member_key_of(card.card_id), None, self.db_book) is not None:
            self.read_member(card.card_id, &member)
            self.write_member(new.card_id, &member)
        if self.read_usage(card.card_id, &usage):
            self.write_usage(new.card_id, &usage)
        new.profile_id, new.contract_id = card.profile_id, card.contract_id
        new.load_day, new.loaded_today_minor = card.load_day, card.loaded_today_minor
        new.stage = card.stage
        if card.status != CARD_ISSUED:
            new.status = CARD_ACTIVE if card.status == CARD_ACTIVE or card.activated_s else CARD_ISSUED
            new.activated_s = self.now_s if new.status == CARD_ACTIVE else 0
        self.write_card(&new)
        card.status = CARD_CLOSED
        self.write_card(&card)
        self.approve(rq, rp, value, seq, &card)
        return 0

    cdef int64_t balance_of(self, uint64_t owner, uint8_t slot) except? -1:
        cdef AccountRecord acc
        return acc.balance_minor if self.read_account(owner, slot, &acc) else 0

    cdef int64_t move_lots(self, _LotKind kind, const CoreRequest* rq, const CardRecord* card,
                           const CardRecord* new) except -1:
        """Re-home the card's open lots (their dates kept) to the new card; what they hold."""
        cdef PackageRecord lot
        cdef int64_t moved = 0
        for lot_id in self.card_lot_ids(kind, card.card_id, False):
            self.read_lot(kind, <const uint8_t*><const char*>lot_id, &lot)
            self.delete(self.lot_keys(kind, &lot, <const uint8_t*><const char*>lot_id, True), None, kind.db_card)
            lot.card_id = new.card_id
            self.put(self.lot_keys(kind, &lot, <const uint8_t*><const char*>lot_id, True), b"", False, True,
                     False, kind.db_card)
            self.write_lot(kind, <const uint8_t*><const char*>lot_id, &lot)
            moved += lot.units_left
        return moved

    # ---- one request --------------------------------------------------------------

    cdef bint valid(self, const CoreRequest* rq):
        if rq.op == OP_SET_RULES:
            return rq.profile_id != 0 and rq.payload_size % sizeof(EarnRule) == 0 and \
                rq.payload_size <= RULES_MAX * sizeof(EarnRule)
        if rq.op == OP_SET_STAGE:
            return rq.payload_size == 0 and STAGE_CREATED <= rq.target_status <= STAGE_SHIPPED
        if rq.op == OP_ALLOCATE_SERIALS:
            return rq.payload_size == 0 and 0 < rq.amount_minor <= SERIALS_PER_REQUEST_MAX
        if rq.op == OP_DEFINE_PARTNER:
            return rq.payload_size == 0 and rq.profile_id != 0 and rq.range_name[0] != 0
        if rq.op == OP_SET_MEMBER:
            return rq.payload_size == 0 and (rq.profile_id == 0 or (
                1 <= rq.profile_id // 100 <= 12 and 1 <= rq.profile_id % 100 <= 31))
        if rq.op == OP_REPLACE_CARD:
            return rq.payload_size == CARD_KEY_SIZE
        if rq.op == OP_DEACTIVATE:
            return rq.amount_minor == 0 and CLOSE_AT_ZERO <= rq.target_status <= CLOSE_MOVE and \
                rq.payload_size == (CARD_KEY_SIZE if rq.target_status == CLOSE_MOVE else 0)
        if rq.payload_size != (sizeof(ProfileRecord) if rq.op == OP_SET_PROFILE else
                               sizeof(OutletRecord) if rq.op == OP_DEFINE_OUTLET else
                               sizeof(ProgramRecord) if rq.op == OP_SET_PROGRAM else
                               CARD_KEY_SIZE if rq.op == OP_TRANSFER_POINTS else 0):
            return False
        if rq.op == OP_LOYALTY_SALE:
            return 0 < rq.amount_minor <= AMOUNT_MINOR_MAX and \
                0 <= rq.load_per_day_max_minor <= AMOUNT_MINOR_MAX and \
                PAYMENT_CASH <= rq.target_status <= PAYMENT_OTHER and \
                0 <= rq.volume_ml <= VOLUME_ML_MAX
        if rq.op in (OP_PURCHASE, OP_PREAUTH, OP_COMPLETE):
            if not 0 <= rq.volume_ml <= VOLUME_ML_MAX:
                return False
            if rq.flags & REQUEST_ODOMETER_PRESENT and not 0 <= rq.odometer <= ODOMETER_MAX:
                return False
        if rq.op in (OP_CONFIRM_POINTS, OP_RELEASE_POINTS):
            if memcmp(rq.ref_request_id, rq.request_id, REQUEST_ID_SIZE) == 0:
                return False
            return 0 < rq.amount_minor <= AMOUNT_MINOR_MAX if rq.op == OP_CONFIRM_POINTS \
                else rq.amount_minor == 0
        if rq.op in (OP_LOAD, OP_PURCHASE, OP_REFUND, OP_PREAUTH, OP_ADJUST, OP_USE_UNITS,
                     OP_EARN_POINTS, OP_REDEEM_POINTS, OP_ADJUST_POINTS, OP_TRANSFER_POINTS,
                     OP_RESERVE_POINTS):
            return 0 < rq.amount_minor <= AMOUNT_MINOR_MAX
        if rq.op == OP_COMPLETE:
            return 0 <= rq.amount_minor <= AMOUNT_MINOR_MAX
        if rq.op == OP_CLEAR:
            return rq.amount_minor == 0
        if rq.op == OP_SELL_PACKAGE:
            return 0 < rq.amount_minor <= AMOUNT_MINOR_MAX and rq.valid_until_s > 0
        if rq.op == OP_CREATE_RANGE:
            return rq.amount_minor >= 0 and rq.load_per_day_max_minor >= 0 and rq.target_status <= 2
        if rq.op in (OP_VOID, OP_REVERSAL):
            return memcmp(rq.ref_request_id, rq.request_id, REQUEST_ID_SIZE) != 0
        if rq.op == OP_SET_PIN:
            return rq.flags & REQUEST_PIN_PRESENT
        if rq.op == OP_DEFINE_PRODUCT:
            return rq.range_id < PRODUCT_SET_SIZE * 8 and \
                rq.target_status in (PRODUCT_FUEL, PRODUCT_OTHER)
        if rq.op == OP_SET_PROFILE:
            return rq.profile_id != 0
        if rq.op == OP_DEFINE_OUTLET:
            return rq.outlet_code != 0
        if rq.op == OP_SET_CONTRACT:
            return rq.contract_id != 0 and 0 <= rq.amount_minor <= BALANCE_MINOR_MAX
        return OP_CREATE_RANGE <= rq.op <= OP_SET_STATUS or rq.op in (OP_ASSIGN_CARD, OP_SET_PROGRAM)

    cdef bint valid_payload(self, const CoreRequest* rq, const char* payload) except -1:
        """A payload matches its digest (card_key) and says what the request says."""
        cdef const ProfileRecord* profile
        cdef const ProgramRecord* program
        cdef int i
        if rq.payload_size == 0:
            return True
        digest = hashlib.sha256(payload[:rq.payload_size]).digest()
        if rq.op in (OP_TRANSFER_POINTS, OP_REPLACE_CARD, OP_DEACTIVATE):
            return digest[:REQUEST_ID_SIZE] == _bytes(rq.ref_request_id, REQUEST_ID_SIZE) and \
                memcmp(payload, rq.card_key, CARD_KEY_SIZE) != 0     # not to itself
        if digest != _bytes(rq.card_key, CARD_KEY_SIZE):
            return False
        if rq.op == OP_DEFINE_OUTLET:
            return (<const OutletRecord*>payload).outlet_code == rq.outlet_code
        if rq.op == OP_SET_PROGRAM:
            return valid_program(<const ProgramRecord*>payload, AMOUNT_MINOR_MAX)
        if rq.op == OP_SET_RULES:
            for i in range(rq.payload_size // sizeof(EarnRule)):
                if not valid_rule(<const EarnRule*>(payload + i * sizeof(EarnRule)), AMOUNT_MINOR_MAX):
                    return False
            return True
        profile = <const ProfileRecord*>payload
        if profile.profile_id != rq.profile_id or profile.place_count > PROFILE_PLACES_MAX or \
                profile.minute_from > 1440 or profile.minute_to > 1440 or \
                profile.days_mask >= 128 or profile.prompts >= 16 or \
                profile.utc_offset_min < -1440 or profile.utc_offset_min > 1440:
            return False
        for i in range(LIMIT_PERIODS * LIMIT_MEASURES):
            if profile.limits[i] < 0:
                return False
        return True

    cdef int apply_one(self, const CoreRequest* rq, const char* payload, CoreReply* rp) except -1:
        cdef RequestRecord rec
        memset(rp, 0, sizeof(CoreReply))
        self.actor = rq.actor
        self.partner = self.origin_partner = 0      # where it happens, whose points it uses
        rp.op = rq.op
        if not self.valid(rq) or not self.valid_payload(rq, payload):
            rp.result = RESULT_REJECTED_INVALID_REQUEST
            return 0
        if self.read_request(rq.request_id, &rec):
            if rec.flags & REQUEST_TOMBSTONE:
                rp.result = RESULT_DECLINED_ALREADY_REVERSED
                memcpy(rp.currency, rq.currency, CURRENCY_SIZE)
                memcpy(&rec.request, rq, sizeof(CoreRequest))
                memcpy(&rec.reply, rp, sizeof(CoreReply))
                rec.flags = REQUEST_REVERSED
                self.write_request(&rec)
            elif memcmp(&rec.request, rq, sizeof(CoreRequest)) == 0:
                memcpy(rp, &rec.reply, sizeof(CoreReply))
            else:
                rp.result = RESULT_REJECTED_REQUEST_ID_REUSED
            return 0
        if rq.op in (OP_PURCHASE, OP_PREAUTH, OP_COMPLETE, OP_LOYALTY_SALE) and \
                not self.known_products(rq):
            rp.result = RESULT_REJECTED_UNKNOWN_PRODUCT
            return 0
        if rq.op == OP_LOAD:
            self.load(rq, rp)
        elif rq.op == OP_PURCHASE:
            self.purchase(rq, rp)
        elif rq.op == OP_REFUND:
            self.refund(rq, rp)
        elif rq.op == OP_REVERSAL:
            self.reverse(rq, rp)
        elif rq.op == OP_ISSUE_CARD:
            self.issue_card(rq, rp)
        elif rq.op == OP_SET_STATUS:
            self.set_status(rq, rp)
        elif rq.op == OP_CREATE_RANGE:
            self.create_range(rq, rp)
        elif rq.op == OP_SET_PIN:
            self.set_pin(rq, rp)
        elif rq.op == OP_PREAUTH:
            self.preauth(rq, rp)
        elif rq.op == OP_COMPLETE:
            self.complete(rq, rp)
        elif rq.op == OP_VOID:
            self.void(rq, rp)
        elif rq.op == OP_ADJUST:
            self.adjust(rq, rp)
        elif rq.op == OP_CLEAR:
            self.clear(rq, rp)
        elif rq.op == OP_DEACTIVATE:
            self.deactivate(rq, payload, rp)
        elif rq.op == OP_SELL_PACKAGE:
            self.issue_lot(self.packages, rq, rp)
        elif rq.op == OP_USE_UNITS:
            self.use_lots(self.packages, rq, rp)
        elif rq.op == OP_EARN_POINTS:
            self.issue_lot(self.points, rq, rp)
        elif rq.op == OP_REDEEM_POINTS:
            self.use_lots(self.points, rq, rp)
        elif rq.op == OP_DEFINE_PRODUCT:
            self.define_product(rq, rp)
        elif rq.op == OP_SET_PROFILE:
            self.set_profile(rq, payload, rp)
        elif rq.op == OP_DEFINE_OUTLET:
            self.define_outlet(rq, payload, rp)
        elif rq.op == OP_SET_CONTRACT:
            self.set_contract(rq, rp)
        elif rq.op == OP_ASSIGN_CARD:
            self.assign_card(rq, rp)
        elif rq.op == OP_SET_PROGRAM:
            self.set_program(rq, payload, rp)
        elif rq.op == OP_ADJUST_POINTS:
            self.adjust_points(rq, rp)
        elif rq.op == OP_TRANSFER_POINTS:
            self.transfer_points(rq, payload, rp)
        elif rq.op == OP_LOYALTY_SALE:
            self.loyalty_sale(rq, rp)
        elif rq.op == OP_SET_RULES:
            self.set_rules(rq, payload, rp)
        elif rq.op == OP_SET_MEMBER:
            self.set_member(rq, rp)
        elif rq.op == OP_RESERVE_POINTS:
            self.reserve_points(rq, rp)
        elif rq.op == OP_DEFINE_PARTNER:
            self.define_partner(rq, rp)
        elif rq.op == OP_ALLOCATE_SERIALS:
            self.allocate_serials(rq, rp)
        elif rq.op == OP_SET_STAGE:
            self.set_stage(rq, rp)
        elif rq.op == OP_REPLACE_CARD:
            self.replace_card(rq, payload, rp)
        elif rq.op in (OP_CONFIRM_POINTS, OP_RELEASE_POINTS):
            self.close_reservation(rq, rp)
        assert rp.result != 0, "operation left no result"
        if rp.result == RESULT_REJECTED_UNKNOWN_PRODUCT:
            return 0                                 # a rejection writes nothing
        memset(&rec, 0, sizeof(rec))
        memcpy(&rec.request, rq, sizeof(CoreRequest))
        memcpy(&rec.reply, rp, sizeof(CoreReply))
        self.write_request(&rec)
        if rp.review:
            # Approved past a soft limit: listed for the operator (card, time, limit).
            self.put(_bytes(rq.request_id, REQUEST_ID_SIZE),
                     u64_be(rp.card_id) + u64_be(self.now_s) + bytes([rp.limit_hit]),
                     False, True, False, self.db_reviews)
        return 0


def expiry_due(txn, dbs, uint64_t now_s):
    """True when a hold or package is due to end at now_s: an idle writer then runs an
    empty batch, whose start ends them (the same rules as apply_batch)."""
    cdef bytes first
    for index_db, before_s in ((dbs[DB_HOLD_EXPIRY], now_s + 1), (dbs[DB_PACKAGE_EXPIRY], now_s),
                               (dbs[DB_POINT_LOT_EXPIRY], now_s)):
        cursor = txn.cursor(db=index_db)
        first = cursor.key() if cursor.first() else None
        cursor.close()
        if first is not None and u64_from_be(<const unsigned char*><const char*>first) < before_s:
            return True
    return False


def apply_batch(txn, dbs, bytes requests, uint64_t now_s, uint32_t now_yyyymm,
                uint64_t hold_timeout_s=_records.HOLD_TIMEOUT_S_DEFAULT):
    """Release the holds whose time is up (at most HOLD_EXPIRIES_PER_BATCH_MAX), then
    apply packed requests (records.pack_request, concatenated) in order inside the
    write transaction ``txn``; return their packed replies, concatenated in the same order.
    New holds expire hold_timeout_s after now_s.

    The caller commits ``txn`` (with sync) before it lets anyone see a reply, and aborts
    it if this raises.
    """
    cdef Py_ssize_t size = len(requests), offset = 0, n = 0
    cdef const char* src = requests
    cdef const CoreRequest* rq
    while offset < size:                 # requests, each followed by its payload if any
        if size - offset < <Py_ssize_t>sizeof(CoreRequest):
            raise ValueError(f"batch of {size} bytes ends inside a request")
        rq = <const CoreRequest*>(src + offset)
        offset += sizeof(CoreRequest) + rq.payload_size
        if offset > size:
            raise ValueError(f"batch of {size} bytes ends inside a payload")
        n += 1
    cdef _BatchApplier applier = _BatchApplier(txn, dbs, now_s, now_yyyymm, hold_timeout_s)
    applier.expire_holds()
    applier.expire_lots(applier.packages)
    applier.expire_lots(applier.points)
    cdef bytearray replies = bytearray(n * sizeof(CoreReply))
    cdef char* dst = replies
    cdef Py_ssize_t i
    offset = 0
    for i in range(n):
        rq = <const CoreRequest*>(src + offset)
        applier.apply_one(rq, src + offset + sizeof(CoreRequest), <CoreReply*>(dst + i * sizeof(CoreReply)))
        offset += sizeof(CoreRequest) + rq.payload_size
    return bytes(replies)


def fleet_usage(txn, dbs, uint64_t card_id, uint64_t now_s):
    """(profile id, records.Usage rolled to now's periods) of a card with a restriction
    profile, or None: the counters the next authorization would see."""
    cdef _BatchApplier reader = _BatchApplier(txn, dbs, now_s, 0, 0)
    cdef CardRecord card
    cdef Fleet fleet
    cdef ContractRecord contract
    value = txn.get(card_key_of(card_id), None, dbs[DB_BOOK])
    if value is None:
        return None
    memcpy(&card, <const char*>value, sizeof(card))
    if not reader.load_fleet(&card, &fleet):
        return None
    return fleet.profile.profile_id, _records.unpack_usage(_bytes(&fleet.usage, sizeof(UsageRecord)))


def open_holds(txn, dbs) -> int:
    """Open pre-authorizations: the entries of the index by which they end (each leaves it
    when completed, voided, reversed or expired)."""
    return txn.stat(dbs[DB_HOLD_EXPIRY])["entries"]
