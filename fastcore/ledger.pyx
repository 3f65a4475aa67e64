"""The authorization ledger: applies a batch of packed requests inside one LMDB write
transaction that the caller owns and commits.

Every request takes full effect or none: its checks run before its first write, and
post() checks the limits of both accounts it moves; a crossing found there undoes what
the request had written (BatchContext.roll_back) and declines it alone. A failing write
(map full, disk full) raises, so the caller aborts the whole transaction. A declined
request writes only its idempotency record; a request rejected as invalid, or reusing a
request id for other content, writes nothing.

One extension built from concept files (ledger/*.pyx, included below): this file keeps
the batch context, the table from each operation to its (check, apply) pair, and
apply_batch; every change of value goes through ledger/postings.pyx's post().
"""
from libc.stdint cimport INT64_MAX, int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

import hashlib

from layout cimport *  # found through the build include path (setup.py)
from civil cimport days_from_civil, in_schedule, yyyymm_of_day
from earning cimport *

from cardgate.fastcore import records as _records

DB_NAMES = (b"requests", b"book", b"pan_index", b"journal", b"config", b"holds", b"hold_expiry",
            b"packages", b"package_expiry", b"card_packages", b"usage", b"reviews",
            b"point_lots", b"point_lot_expiry", b"admin_log", b"retention", b"transactions")
(DB_REQUESTS, DB_BOOK, DB_PAN_INDEX, DB_JOURNAL, DB_CONFIG, DB_HOLDS, DB_HOLD_EXPIRY,
 DB_PACKAGES, DB_PACKAGE_EXPIRY, DB_CARD_PACKAGES, DB_USAGE, DB_REVIEWS,
 DB_POINT_LOTS, DB_POINT_LOT_EXPIRY, DB_ADMIN_LOG, DB_RETENTION, DB_TRANSACTIONS) = range(17)
NEXT_CARD_ID_KEY = b"next_card_id"

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
cdef bytes BOOK_POINT_LOT_TAG = b"L"    # a card's point lots in the book: card_id 'L' time id
cdef bytes RETAIN_REQUEST = _records.RETAIN_REQUEST
cdef bytes RETAIN_TOMBSTONE = _records.RETAIN_TOMBSTONE
cdef bytes RETAIN_HOLD = _records.RETAIN_HOLD
cdef bytes RETAIN_REVIEW = _records.RETAIN_REVIEW


class LimitCrossed(Exception):
    """A posting would take an account past the most it may hold: the request that made
    it is undone (its writes rolled back) and declined with `result`, alone."""
    def __init__(self, int result):
        super().__init__(result)
        self.result = result


class InvariantViolated(AssertionError):
    """A rule of the ledger found broken by the ledger itself (its bug, or a damaged
    store): the batch's transaction is aborted and nothing of it is written. Never caused
    by a request's content, which is declined with a result code instead."""


cdef inline int require(bint holds, str rule) except -1:
    """Check an invariant, whatever the interpreter's flags (python -O drops `assert`,
    and Cython's asserts with it). The condition only reads: work is never done here."""
    if not holds:
        raise InvariantViolated(rule)
    return 0


def open_databases(env):
    """Open (creating on first use) the named databases fastcore uses, in DB_* order."""
    return tuple(env.open_db(name, create=True) for name in DB_NAMES)


cdef enum LotSelection:         # card_lot_ids: which of a card's open lots
    LOTS_VALID_NOW = 1          # only those still usable at the batch's time
    LOTS_ALL = 2                # every open one, also past its time (a card moving)


# A fleet card's rules and usage while one request is decided.
cdef struct Fleet:
    bint active
    ProfileRecord profile
    UsageRecord usage
    int64_t local_s


cdef class _LotKind:
    """Value that comes in lots usable until a time, used earliest-expiring first and
    expired through the journal: subscription units (packages) and loyalty points."""
    cdef object db, db_expiry, db_card
    cdef bytes asset, card_tag      # card index keys: card_id(8) + card_tag + time(8) + lot id
    cdef bytes retain_kind          # its ended lots' kind in the retention index
    cdef uint8_t card_slot, issued_slot, used_slot, expired_slot
    cdef uint8_t op_issue, op_use, op_expiry, none_left

    def __cinit__(self, db, db_expiry, db_card, bytes card_tag, bytes retain_kind, bytes asset,
                  uint8_t card_slot, uint8_t issued_slot, uint8_t used_slot, uint8_t expired_slot,
                  uint8_t op_issue, uint8_t op_use, uint8_t op_expiry, uint8_t none_left):
        self.db, self.db_expiry, self.db_card, self.asset = db, db_expiry, db_card, asset
        self.card_tag, self.retain_kind = card_tag, retain_kind
        self.card_slot, self.issued_slot = card_slot, issued_slot
        self.used_slot, self.expired_slot = used_slot, expired_slot
        self.op_issue, self.op_use, self.op_expiry = op_issue, op_use, op_expiry
        self.none_left = none_left


cdef class BatchContext:
    """What applying one batch shares: the write transaction and its databases, the
    batch's clock, the next journal position, and configuration read once per batch."""
    cdef object txn, txn_get, txn_put, txn_delete
    cdef object db_requests, db_book, db_pan, db_journal, db_config, db_holds, db_hold_expiry
    cdef object db_packages, db_package_expiry, db_card_packages, db_usage, db_reviews
    cdef object db_point_lots, db_point_lot_expiry, db_admin_log, db_retention, db_transactions
    cdef _LotKind packages, points
    cdef uint64_t next_seq          # the journal position of the next entry (0: not read yet)
    cdef uint64_t undo_seq          # next_seq when the request being applied began
    cdef uint64_t now_s, hold_timeout_s
    cdef uint32_t actor             # the request being applied's actor (0 while time ends lots)
    cdef uint32_t partner           # loyalty partner where the request happens (0: none)
    cdef uint32_t origin_partner    # the partner that issued the points being used
    cdef dict programs              # range id -> (ProgramRecord bytes, EarnRule[] bytes) or None
    cdef dict partners              # outlet code -> partner id
    cdef dict zones                 # zone id -> its ZoneEntry[] bytes, or None
    cdef dict ranges                # range id -> (local day, local yyyymm) at now_s
    cdef uint32_t now_yyyymm
    cdef list undo                  # (key, value before or None, db) of the request's writes
    cdef bint recording             # a handler runs: its writes are noted in undo

    def __cinit__(self, txn, dbs, uint64_t now_s, uint32_t now_yyyymm, uint64_t hold_timeout_s):
        self.txn = txn
        self.txn_get = txn.get
        self.txn_put = txn.put
        self.txn_delete = txn.delete
        (self.db_requests, self.db_book, self.db_pan, self.db_journal,
         self.db_config, self.db_holds, self.db_hold_expiry, self.db_packages,
         self.db_package_expiry, self.db_card_packages, self.db_usage, self.db_reviews,
         self.db_point_lots, self.db_point_lot_expiry, self.db_admin_log,
         self.db_retention, self.db_transactions) = dbs
        self.programs = {}
        self.partners = {}
        self.zones = {}
        self.ranges = {}
        self.undo = []
        self.packages = _LotKind(self.db_packages, self.db_package_expiry, self.db_card_packages,
                                 b"", _records.RETAIN_PACKAGE, UNITS, SLOT_CARD_UNITS, SLOT_RANGE_UNITS_SOLD,
                                 SLOT_RANGE_UNITS_USED, SLOT_RANGE_UNITS_EXPIRED, OP_SELL_PACKAGE,
                                 OP_USE_UNITS, OP_PACKAGE_EXPIRY, RESULT_DECLINED_NO_UNITS_LEFT)
        # A card's points index, member standing and history sit in the book next to
        # the card: a sale that earns dirties the card's page, not three more.
        self.points = _LotKind(self.db_point_lots, self.db_point_lot_expiry, self.db_book,
                               BOOK_POINT_LOT_TAG, _records.RETAIN_POINT_LOT, POINTS,
                               SLOT_CARD_POINTS,
                               SLOT_RANGE_POINTS_ISSUED, SLOT_RANGE_POINTS_REDEEMED,
                               SLOT_RANGE_POINTS_EXPIRED, OP_EARN_POINTS, OP_REDEEM_POINTS,
                               OP_POINTS_EXPIRY, RESULT_DECLINED_INSUFFICIENT_POINTS)
        self.now_s = now_s
        self.now_yyyymm = now_yyyymm
        self.hold_timeout_s = hold_timeout_s
        self.next_seq = 0               # read from the journal at the first posting

    # One place for py-lmdb's positional flags (dupdata, overwrite, append): every
    # record is one value per key, replaced when written again. Every write notes what
    # it replaces, so that a request can be undone alone (roll_back).
    cdef object get(self, bytes key, db):
        return self.txn_get(key, None, db)

    cdef int put(self, bytes key, bytes value, db) except -1:
        if self.recording:
            self.undo.append((key, self.txn_get(key, None, db), db))
        self.txn_put(key, value, False, True, False, db)
        return 0

    cdef int put_replacing(self, bytes key, bytes value, bytes before, db) except -1:
        """put(), when the caller has just read what the key held (`before`)."""
        if self.recording:
            self.undo.append((key, before, db))
        self.txn_put(key, value, False, True, False, db)
        return 0

    cdef int append(self, bytes key, bytes value, db) except -1:
        """Write a key greater than every key of db (the journal), without searching."""
        if self.recording:
            self.undo.append((key, None, db))
        self.txn_put(key, value, False, True, True, db)
        return 0

    cdef int delete(self, bytes key, db) except -1:
        if self.recording:
            self.undo.append((key, self.txn_get(key, None, db), db))
        self.txn_delete(key, None, db)
        return 0

    cdef int retain(self, bytes kind, const uint8_t* record_id) except -1:
        """Index a record the store may forget once its retention window has passed
        from now (records.RETAIN_*; gateway/store/retention.py prunes by this index)."""
        self.put(kind + u64_be(self.now_s) + _bytes(record_id, REQUEST_ID_SIZE), b"",
                 self.db_retention)
        return 0

    cdef int begin_request(self) except -1:
        self.undo.clear()
        self.undo_seq = self.next_seq
        self.recording = True
        return 0

    cdef int roll_back(self) except -1:
        """Undo every write since begin_request, newest first: the store is as the
        request found it (the journal position too; cached configuration is read again)."""
        for key, before, db in reversed(self.undo):
            if before is None:
                self.txn_delete(key, None, db)
            else:
                self.txn_put(key, before, False, True, False, db)
        self.undo.clear()
        self.recording = False
        self.next_seq = self.undo_seq
        self.programs.clear()
        self.partners.clear()
        self.zones.clear()
        self.ranges.clear()
        return 0


# Every operation is a pair: a check of the request alone (sizes, ranges, payload
# digest; false: rejected as invalid, nothing written) and the handler that applies it.
ctypedef bint (*check_fn)(const CoreRequest* rq, const char* payload) except -1
ctypedef int (*apply_fn)(BatchContext batch, const CoreRequest* rq, const char* payload,
                         CoreReply* rp) except -1

cdef struct Operation:
    check_fn check
    apply_fn apply


include "ledger/postings.pyx"
include "ledger/zones.pyx"
include "ledger/checks.pyx"
include "ledger/cards.pyx"
include "ledger/payments.pyx"
include "ledger/holds.pyx"
include "ledger/lots.pyx"
include "ledger/reversals.pyx"
include "ledger/fleet.pyx"
include "ledger/configuration.pyx"
include "ledger/loyalty.pyx"
include "ledger/reservations.pyx"
include "ledger/issuing.pyx"


# ---- the table: each operation, its check beside its handler in its concept file ----

cdef Operation OPERATIONS[OP_COUNT]
memset(OPERATIONS, 0, sizeof(OPERATIONS))


cdef void register(uint8_t op, check_fn check, apply_fn apply):
    OPERATIONS[op].check = check
    OPERATIONS[op].apply = apply


register(OP_CREATE_RANGE, check_create_range, create_range)
register(OP_ISSUE_CARD, check_no_payload, issue_card)
register(OP_SET_STATUS, check_no_payload, set_status)
register(OP_LOAD, check_quantity_moved, load)
register(OP_PURCHASE, check_charge, purchase)
register(OP_REFUND, check_quantity_moved, refund)
register(OP_REVERSAL, check_reversal, reverse)
register(OP_SET_PIN, check_set_pin, set_pin)
register(OP_PREAUTH, check_charge, preauth)
register(OP_COMPLETE, check_complete, complete)
register(OP_VOID, check_void, void_hold)
register(OP_ADJUST, check_quantity_moved, adjust)
register(OP_CLEAR, check_clear, clear)
register(OP_DEACTIVATE, check_deactivate, deactivate)
register(OP_SELL_PACKAGE, check_sell_package, sell_package)
register(OP_USE_UNITS, check_quantity_moved, use_units)
register(OP_DEFINE_PRODUCT, check_define_product, define_product)
register(OP_SET_PROFILE, check_set_profile, set_profile)
register(OP_DEFINE_OUTLET, check_define_outlet, define_outlet)
register(OP_SET_CONTRACT, check_set_contract, set_contract)
register(OP_ASSIGN_CARD, check_no_payload, assign_card)
register(OP_EARN_POINTS, check_quantity_moved, earn_points)
register(OP_REDEEM_POINTS, check_quantity_moved, redeem_points)
register(OP_SET_PROGRAM, check_set_program, set_program)
register(OP_ADJUST_POINTS, check_quantity_moved, adjust_points)
register(OP_TRANSFER_POINTS, check_transfer_points, transfer_points)
register(OP_SET_RULES, check_set_rules, set_rules)
register(OP_LOYALTY_SALE, check_loyalty_sale, loyalty_sale)
register(OP_SET_MEMBER, check_set_member, set_member)
register(OP_RESERVE_POINTS, check_quantity_moved, reserve_points)
register(OP_CONFIRM_POINTS, check_confirm_points, close_reservation)
register(OP_RELEASE_POINTS, check_release_points, close_reservation)
register(OP_DEFINE_PARTNER, check_define_partner, define_partner)
register(OP_ALLOCATE_SERIALS, check_allocate_serials, allocate_serials)
register(OP_SET_STAGE, check_set_stage, set_stage)
register(OP_REPLACE_CARD, check_replace_card, replace_card)
register(OP_DEFINE_ZONE, check_define_zone, define_zone)


# records.TRANSACTION_OPERATIONS as a table for the hot path: what line each operation's
# requests leave in the transactions database.
cdef enum:
    TX_NONE = 0
    TX_PLAIN = 1                # an operator's, or one moving another card
    TX_DETAILED = 2             # a terminal's: it may carry its TransactionDetails

cdef uint8_t TRANSACTION_OPS[OP_COUNT]
memset(TRANSACTION_OPS, TX_NONE, sizeof(TRANSACTION_OPS))
for _op in _records.TRANSACTION_OPERATIONS:
    TRANSACTION_OPS[<int>_op] = TX_DETAILED if _op in _records.DETAILED_OPERATIONS else TX_PLAIN


# ---- one request ------------------------------------------------------------------

cdef int apply_one(BatchContext batch, const CoreRequest* rq, const char* payload,
                   CoreReply* rp) except -1:
    cdef RequestRecord rec
    cdef CardRecord card
    cdef CoreRequest bare               # rq without its transaction details
    cdef const CoreRequest* op_rq = rq  # what the operation's check and handler see
    memset(rp, 0, sizeof(CoreReply))
    batch.actor = rq.actor
    batch.partner = batch.origin_partner = 0      # where it happens, whose points it uses
    rp.op = rq.op
    if rq.op < OP_COUNT and TRANSACTION_OPS[rq.op] == TX_DETAILED and rq.payload_size:
        # The gateway's description of a terminal's transaction (acceptor, prompts,
        # lines): bound to the request by its digest, kept in the transactions
        # database, and of no concern to the operation itself.
        if hashlib.sha256(payload[:rq.payload_size]).digest()[:REQUEST_ID_SIZE] != \
                _bytes(rq.details_digest, REQUEST_ID_SIZE):
            rp.result = RESULT_REJECTED_INVALID_REQUEST
            return 0
        memcpy(&bare, rq, sizeof(CoreRequest))
        bare.payload_size = 0
        op_rq = &bare
    if rq.op >= OP_COUNT or OPERATIONS[rq.op].apply == NULL or \
            not OPERATIONS[rq.op].check(op_rq, payload):
        rp.result = RESULT_REJECTED_INVALID_REQUEST
        return 0
    if read_request(batch, rq.request_id, &rec) and not (
            rec.flags & RECORD_TOMBSTONE and foreign(&rec.request, rq.merchant_code)):
        # (A blind reversal by another merchant has no effect: the request goes on.)
        if rec.flags & RECORD_TOMBSTONE:
            # The original, after its blind reversal: declined, the card as it is.
            memcpy(rp.currency, rq.currency, CURRENCY_SIZE)
            if find_card(batch, rq.card_key, &card):
                rp.card_id = card.card_id
                describe_as_op(batch, rq.op, rp)
            rp.result = RESULT_DECLINED_ALREADY_REVERSED
            memcpy(&rec.request, rq, sizeof(CoreRequest))
            memcpy(&rec.reply, rp, sizeof(CoreReply))
            rec.flags = RECORD_REVERSED
            write_request(batch, &rec)
        elif memcmp(&rec.request, rq, sizeof(CoreRequest)) == 0:
            memcpy(rp, &rec.reply, sizeof(CoreReply))
        else:
            rp.result = RESULT_REJECTED_REQUEST_ID_REUSED
        return 0
    if rq.op in (OP_PURCHASE, OP_PREAUTH, OP_COMPLETE, OP_LOYALTY_SALE) and \
            not rq.flags & REQUEST_OFFLINE and not known_products(batch, rq):
        # (an offline sale is never rejected: the goods are gone; see offline_sale)
        rp.result = RESULT_REJECTED_UNKNOWN_PRODUCT
        return 0
    batch.begin_request()
    try:
        OPERATIONS[rq.op].apply(batch, op_rq, payload, rp)
    except LimitCrossed as crossed:
        decline_crossed(batch, op_rq, rp, crossed.result)
    finally:
        batch.recording = False
    require(rp.result != 0, "operation left no result")
    if rq.op == OP_PURCHASE and rq.flags & REQUEST_OFFLINE:
        # A sale approved offline, posted or not (a limit crossed included): listed for
        # the operator, never unseen.
        rp.review |= REVIEW_OFFLINE_POSTED if rp.result == RESULT_APPROVED \
            else REVIEW_OFFLINE_REFUSED
    if rp.card_id and (rp.points_seq or rp.points_earned or rp.points_redeemed or rp.tier or
                       rp.discount_bp or rq.op == OP_LOYALTY_SALE):
        # A sale of a member: its points after it, kept with the answer (a retry shows them).
        rp.points_balance = balance_of(batch, rp.card_id, SLOT_CARD_POINTS) + \
            points_owed(batch, rp.card_id)
    if rp.result == RESULT_REJECTED_UNKNOWN_PRODUCT:
        return 0                                 # a rejection writes nothing
    memset(&rec, 0, sizeof(rec))
    memcpy(&rec.request, rq, sizeof(CoreRequest))
    memcpy(&rec.reply, rp, sizeof(CoreReply))
    write_request(batch, &rec)
    batch.retain(RETAIN_REQUEST, rq.request_id)
    if rq.actor:
        # An operator's or bureau's act, approved or not: the admin log says who, when.
        key, line = _records.admin_log_entry(batch.now_s, _bytes(rq.request_id, REQUEST_ID_SIZE),
                                             rq.actor, rq.op, rp.result, rp.card_id)
        batch.put(key, line, batch.db_admin_log)
    if rp.review:
        # Approved past a soft limit, or a forced capture: listed for the operator
        # (card, time, limit, why).
        batch.put(_bytes(rq.request_id, REQUEST_ID_SIZE),
                  u64_be(rp.card_id) + u64_be(batch.now_s) + bytes([rp.limit_hit, rp.review]),
                  batch.db_reviews)
        batch.retain(RETAIN_REVIEW, rq.request_id)
    if TRANSACTION_OPS[rq.op]:
        write_transaction(batch, rq, rp, payload if op_rq != rq else NULL)
    return 0


cdef int write_transaction(BatchContext batch, const CoreRequest* rq, const CoreReply* rp,
                           const char* details) except -1:
    """The request's line in the transactions database, its details after it."""
    cdef TransactionRecord tx
    cdef CardRecord card
    cdef RequestRecord original
    memset(&tx, 0, sizeof(tx))
    tx.op, tx.result, tx.review, tx.reason = rq.op, rp.result, rp.review, rq.reason
    if rp.currency[0]:
        memcpy(tx.currency, rp.currency, CURRENCY_SIZE)
    else:
        memcpy(tx.currency, rq.currency, CURRENCY_SIZE)
    tx.card_id = rp.card_id
    value = batch.get(card_key_of(rp.card_id), batch.db_book) if rp.card_id else None
    if value is not None:
        memcpy(&card, <const char*>value, sizeof(card))
        tx.range_id, tx.contract_id = card.range_id, card.contract_id
        tx.issuer_partner = card.issuer_partner
        tx.pan_first6, tx.pan_last4, tx.pan_length = card.pan_first6, card.pan_last4, card.pan_length
    tx.merchant_code, tx.outlet_code = rq.merchant_code, rq.outlet_code
    tx.partner_id = batch.partner or partner_of(batch, rq.outlet_code)
    tx.actor, tx.approval_code = rq.actor, rp.approval_code
    tx.amount_minor, tx.approved_minor, tx.balance_minor = rq.amount_minor, rp.approved_minor, rp.balance_minor
    tx.volume_ml = rp.volume_ml if rq.op == OP_PREAUTH or not rq.volume_ml else rq.volume_ml
    if rq.flags & REQUEST_ODOMETER_PRESENT:
        tx.odometer = rq.odometer
        tx.flags |= TX_ODOMETER
    if rq.flags & REQUEST_OFFLINE:
        tx.flags |= TX_OFFLINE
    if rp.result == RESULT_PARTIALLY_APPROVED:
        tx.flags |= TX_PARTIAL
    tx.points_earned, tx.points_redeemed = rp.points_earned, rp.points_redeemed
    tx.discount_minor, tx.journal_seq = rp.discount_minor, rp.journal_seq
    memcpy(tx.request_id, rq.request_id, REQUEST_ID_SIZE)
    memcpy(tx.ref_request_id, rq.ref_request_id, REQUEST_ID_SIZE)
    if rq.op in (OP_REFUND, OP_REVERSAL) and read_request(batch, rq.ref_request_id, &original):
        # Money given back goes back where it was taken: the original's partner (an
        # operator's refund or reversal is made at no outlet).
        tx.ref_op = original.request.op
        tx.partner_id = partner_of(batch, original.request.outlet_code)
    line = _bytes(&tx, sizeof(tx))
    if details != NULL:
        line += details[:rq.payload_size]
    batch.put(u64_be(batch.now_s) + _bytes(rq.request_id, REQUEST_ID_SIZE), line,
              batch.db_transactions)
    return 0


cdef int decline_crossed(BatchContext batch, const CoreRequest* rq, CoreReply* rp,
                         uint8_t result) except -1:
    """A posting of the request would have crossed an account's limit: nothing of it
    stays, and the answer describes the card as it still is."""
    cdef uint64_t card_id = rp.card_id
    batch.roll_back()
    memset(rp, 0, sizeof(CoreReply))
    rp.op = rq.op
    rp.card_id = card_id
    memcpy(rp.currency, rq.currency, CURRENCY_SIZE)
    describe_as_op(batch, rq.op, rp)
    rp.result = result
    return 0


cdef int describe_as_op(BatchContext batch, uint8_t op, CoreReply* rp) except -1:
    """Describe the reply's card (rp.card_id, if any) as answers of `op` do: its points
    or units for operations on those, else its value."""
    if not rp.card_id:
        return 0
    describe_reply_card(batch, rp)
    if op in (OP_EARN_POINTS, OP_REDEEM_POINTS, OP_ADJUST_POINTS, OP_TRANSFER_POINTS,
              OP_LOYALTY_SALE, OP_RESERVE_POINTS, OP_CONFIRM_POINTS, OP_RELEASE_POINTS):
        describe_lots(batch, batch.points, rp)
    elif op in (OP_SELL_PACKAGE, OP_USE_UNITS):
        describe_lots(batch, batch.packages, rp)
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
    cdef BatchContext batch = BatchContext(txn, dbs, now_s, now_yyyymm, hold_timeout_s)
    expire_holds(batch)
    expire_lots(batch, batch.packages)
    expire_lots(batch, batch.points)
    cdef bytearray replies = bytearray(n * sizeof(CoreReply))
    cdef char* dst = replies
    cdef Py_ssize_t i
    offset = 0
    for i in range(n):
        rq = <const CoreRequest*>(src + offset)
        apply_one(batch, rq, src + offset + sizeof(CoreRequest),
                  <CoreReply*>(dst + i * sizeof(CoreReply)))
        offset += sizeof(CoreRequest) + rq.payload_size
    return bytes(replies)


def fleet_usage(txn, dbs, uint64_t card_id, uint64_t now_s):
    """(profile id, records.Usage rolled to now's periods) of a card with a restriction
    profile, or None: the counters the next authorization would see."""
    cdef BatchContext batch = BatchContext(txn, dbs, now_s, 0, 0)
    cdef CardRecord card
    cdef Fleet fleet
    value = txn.get(card_key_of(card_id), None, dbs[DB_BOOK])
    if value is None:
        return None
    memcpy(&card, <const char*>value, sizeof(card))
    if not load_fleet(batch, &card, &fleet):
        return None
    return fleet.profile.profile_id, _records.unpack_usage(_bytes(&fleet.usage, sizeof(UsageRecord)))


def open_holds(txn, dbs) -> int:
    """Open pre-authorizations: the entries of the index by which they end (each leaves it
    when completed, voided, reversed or expired)."""
    return txn.stat(dbs[DB_HOLD_EXPIRY])["entries"]


# ---- reads for Python, with the core's own rules -----------------------------------

def card_view(txn, dbs, bytes card_key):
    """(card record, reply) of the card with this PAN-index key, or None: the reply
    describes it as every answer does (balance with what is held, pending, a contract's
    credit limit), in any transaction, read-only included."""
    if len(card_key) != CARD_KEY_SIZE:
        raise ValueError(f"a card key is {CARD_KEY_SIZE} bytes, got {len(card_key)}")
    cdef BatchContext batch = BatchContext(txn, dbs, 0, 0, 0)
    cdef CardRecord card
    cdef CoreReply rp
    if not find_card(batch, card_key, &card):
        return None
    memset(&rp, 0, sizeof(rp))
    describe_card(batch, &card, &rp)
    return _bytes(&card, sizeof(card)), _bytes(&rp, sizeof(rp))


def valid_point_lots(txn, dbs, uint64_t card_id, uint64_t now_s):
    """[(due_s, lot record)] of the card's points still valid at now_s, earliest-expiring
    first: the lots a redemption at now_s would take, and when each ends as the core sees
    it (LOT_NEVER: never; a reserved lot: at the end of its hold). Records decode with
    records.unpack_lot."""
    cdef BatchContext batch = BatchContext(txn, dbs, now_s, 0, 0)
    cdef LotRecord lot
    out = []
    for lot_id in card_lot_ids(batch, batch.points, card_id, LOTS_VALID_NOW):
        if read_lot(batch, batch.points, <const uint8_t*><const char*>lot_id, &lot):
            out.append((lot_due_s(&lot), _bytes(&lot, sizeof(lot))))
    return out
