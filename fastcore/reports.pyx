"""Journal scans for loyalty reports (program analytics, coalition settlement): one
pass over a period's entries in C, counting what the reports need, so that a month of
a million cards' sales is read in seconds. The rules of what counts live in the
gateway's analytics and settlement modules' docstrings; this is their fast path."""
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from layout cimport *  # found through the build include path (setup.py)

cdef bytes POINTS = b"PTS\x00"


cdef inline bint among(uint64_t owner, const uint64_t* owners, int count):
    cdef int i
    for i in range(count):
        if owners[i] == owner:
            return True
    return False


cdef int load_owners(object system_owners, uint64_t* out) except -1:
    if len(system_owners) > PROGRAM_RANGES_MAX:
        raise ValueError(f"a program covers at most {PROGRAM_RANGES_MAX} card ranges")
    for i, owner in enumerate(sorted(system_owners)):
        out[i] = owner
    return len(system_owners)


def period_figures(txn, db, uint64_t first_seq, uint64_t until_s, system_owners, bint with_points):
    """(cards, transactions, sales, returns, earned, redeemed, expired, returned) of the
    journal entries from first_seq stamped before until_s, for the ranges whose system
    owners are given. cards: the set of card (or contract) owners with a sale."""
    cdef uint64_t owners[PROGRAM_RANGES_MAX]
    cdef int count = load_owners(system_owners, owners)
    cdef const JournalEntry* e
    cdef int64_t transactions = 0, sales = 0, returns = 0
    cdef int64_t earned = 0, redeemed = 0, expired = 0, returned = 0
    cdef bint points
    cards = set()
    cursor = txn.cursor(db=db)
    if cursor.set_key(u64_be(first_seq)):
        for value in cursor.iternext(keys=False):
            e = <const JournalEntry*><const char*>value
            if e.time_s >= until_s:
                break
            points = memcmp4(e.currency, POINTS)
            if e.op == OP_PURCHASE or e.op == OP_COMPLETE:
                if e.credit_slot == SLOT_RANGE_MERCHANT and among(e.credit_owner, owners, count):
                    cards.add(e.debit_owner)
                    transactions += 1
                    sales += e.amount_minor
            elif e.op == OP_LOYALTY_SALE and not points:
                if among(e.debit_owner, owners, count):
                    cards.add(e.credit_owner)
                    transactions += 1
                    sales += e.amount_minor
            elif (e.op == OP_REFUND or e.op == OP_REVERSAL) and not points:
                if (e.debit_slot == SLOT_RANGE_MERCHANT and among(e.debit_owner, owners, count)) or \
                        (e.debit_slot == SLOT_CARD_SALES_ELSEWHERE and among(e.credit_owner, owners, count)):
                    returns += e.amount_minor
            elif points and with_points:            # by the range's points accounts
                if e.debit_slot == SLOT_RANGE_POINTS_ISSUED and among(e.debit_owner, owners, count):
                    earned += e.amount_minor
                elif e.credit_slot == SLOT_RANGE_POINTS_ISSUED and among(e.credit_owner, owners, count):
                    returned += e.amount_minor
                elif e.credit_slot == SLOT_RANGE_POINTS_REDEEMED and among(e.credit_owner, owners, count):
                    redeemed += e.amount_minor
                elif e.debit_slot == SLOT_RANGE_POINTS_REDEEMED and among(e.debit_owner, owners, count):
                    redeemed -= e.amount_minor           # a sale paid with points, reversed
                elif e.credit_slot == SLOT_RANGE_POINTS_EXPIRED and among(e.credit_owner, owners, count):
                    expired += e.amount_minor
    cursor.close()
    return cards, transactions, sales, returns, earned, redeemed, expired, returned


cdef inline bint memcmp4(const char* a, bytes b):
    cdef const char* p = b
    return a[0] == p[0] and a[1] == p[1] and a[2] == p[2] and a[3] == p[3]


def period_flows(txn, db, uint64_t first_seq, uint64_t until_s, system_owners):
    """(issued, redeemed, flows) of a period for settlement: points issued and redeemed
    per partner, and points redeemed at one partner that another issued, per (issuer,
    redeemer) pair; reversed redemptions count back."""
    cdef uint64_t owners[PROGRAM_RANGES_MAX]
    cdef int count = load_owners(system_owners, owners)
    cdef const JournalEntry* e
    cdef int64_t sign
    issued, redeemed, flows = {}, {}, {}
    cursor = txn.cursor(db=db)
    if cursor.set_key(u64_be(first_seq)):
        for value in cursor.iternext(keys=False):
            e = <const JournalEntry*><const char*>value
            if e.time_s >= until_s:
                break
            if not memcmp4(e.currency, POINTS):
                continue
            if e.op == OP_EARN_POINTS and e.debit_slot == SLOT_RANGE_POINTS_ISSUED and \
                    among(e.debit_owner, owners, count):
                issued[e.partner_id] = issued.get(e.partner_id, 0) + e.amount_minor
                continue
            if e.credit_slot == SLOT_RANGE_POINTS_REDEEMED and among(e.credit_owner, owners, count):
                sign = 1
            elif e.debit_slot == SLOT_RANGE_POINTS_REDEEMED and among(e.debit_owner, owners, count):
                sign = -1
            else:
                continue
            redeemed[e.partner_id] = redeemed.get(e.partner_id, 0) + sign * e.amount_minor
            if e.origin_partner != e.partner_id:
                pair = (e.origin_partner, e.partner_id)
                flows[pair] = flows.get(pair, 0) + sign * e.amount_minor
    cursor.close()
    return issued, redeemed, flows
