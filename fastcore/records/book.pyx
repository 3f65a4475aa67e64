# Records of the book (cards, accounts, journal, holds, lots, ranges) and the keys they live under.


def unpack_card(bytes data):
    _check_size(data, sizeof(CardRecord), "card")
    cdef const CardRecord* p = <const CardRecord*><const char*>data
    return Card(p.card_id, p.range_id, p.expiry_yyyymm, p.status, p.pan_first6, p.pan_last4,
                p.pan_length, p.issued_s, p.activated_s, bool(p.pin_set), p.pin_failures,
                p.load_day, p.loaded_today_minor, p.contract_id, p.profile_id, p.stage,
                p.issuer_partner)


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
                       p.amount_minor, p.time_s, p.reason, p.actor, p.partner_id,
                       p.origin_partner)


def unpack_hold(bytes data):
    _check_size(data, sizeof(HoldRecord), "hold")
    cdef const HoldRecord* p = <const HoldRecord*><const char*>data
    return Hold(p.card_id, p.range_id, p.status, _currency(p.currency), p.held_minor,
                p.completed_minor, p.created_s, p.expires_s, bool(p.counted), p.value_owner,
                p.volume_ml, p.completed_volume_ml, bool(p.forced), p.merchant_code, p.outlet_code)


Lot = namedtuple("Lot", "card_id range_id status quantity_total quantity_left created_s "
                 "valid_until_s available_from_s partner_id held_until_s")


def unpack_lot(bytes data):
    _check_size(data, sizeof(LotRecord), "lot")
    cdef const LotRecord* p = <const LotRecord*><const char*>data
    return Lot(p.card_id, p.range_id, p.status, p.quantity_total, p.quantity_left, p.created_s,
               p.valid_until_s, p.available_from_s, p.partner_id, p.held_until_s)


def unpack_range(bytes data):
    _check_size(data, sizeof(RangeRecord), "range")
    cdef const RangeRecord* p = <const RangeRecord*><const char*>data
    name = p.name[:strnlen_max(p.name, RANGE_NAME_SIZE)].decode("utf-8", "replace")
    return CardRange(p.range_id, p.pan_length, p.iin_prefix, p.iin_digits,
                     _currency(p.currency), name, p.pin_tries_max, p.balance_max_minor,
                     p.load_per_day_max_minor, p.numbering, p.late_grace_s, p.zone_id,
                     p.utc_offset_min, p.pin_policy or PIN_POLICY_REQUIRED,
                     p.offline_floor_minor, p.offline_age_s)


Transaction = namedtuple(
    "Transaction", "time_s request_id op result review offline partial currency card_id "
    "range_id contract_id merchant_code outlet_code partner_id issuer_partner actor "
    "approval_code pan_first6 pan_last4 pan_length reason amount_minor approved_minor "
    "balance_minor volume_ml odometer points_earned points_redeemed discount_minor "
    "journal_seq ref_request_id ref_op details")
TRANSACTION_KEY_SIZE = 8 + REQUEST_ID_SIZE


def transaction_key(unsigned long long time_s, bytes request_id=b""):
    """Key of a line of the transactions database: time(8, big-endian) + request id (a
    shorter id: the first key at or after that time)."""
    return u64_be(time_s) + request_id


def unpack_transaction(bytes key, bytes value):
    """A line of the transactions database (the core writes one for every answered card
    operation); `details` is the gateway's TransactionDetails as carried, or b""."""
    if len(key) != TRANSACTION_KEY_SIZE or len(value) < sizeof(TransactionRecord):
        raise ValueError("not a line of the transactions database")
    cdef const TransactionRecord* p = <const TransactionRecord*><const char*>value
    return Transaction(u64_from_be(<const unsigned char*><const char*>key), key[8:], p.op,
                       p.result, p.review, bool(p.flags & TX_OFFLINE), bool(p.flags & TX_PARTIAL),
                       _currency(p.currency), p.card_id, p.range_id, p.contract_id,
                       p.merchant_code, p.outlet_code, p.partner_id, p.issuer_partner, p.actor,
                       p.approval_code,
                       p.pan_first6, p.pan_last4, p.pan_length, p.reason, p.amount_minor,
                       p.approved_minor, p.balance_minor, p.volume_ml,
                       p.odometer if p.flags & TX_ODOMETER else None, p.points_earned,
                       p.points_redeemed, p.discount_minor, p.journal_seq,
                       (<char*>p.ref_request_id)[:REQUEST_ID_SIZE], p.ref_op,
                       value[sizeof(TransactionRecord):])


AdminLine = namedtuple("AdminLine", "time_s request_id actor op result card_id")
ADMIN_OP_EXPORT_JOB = 200   # an admin log line the gateway writes: a personalization job exported


def admin_log_entry(unsigned long long time_s, bytes request_id, unsigned int actor, int op,
                    int result, unsigned long long card_id=0):
    """(key, value) of a line of the admin log: time(8, big-endian) + request id ->
    actor(4) op(1) result(1) card_id(8), little-endian. The core writes one for every
    request with an actor; the gateway for operators' and bureaus' acts that are not
    core requests (ADMIN_OP_*)."""
    if len(request_id) != REQUEST_ID_SIZE:
        raise ValueError("a request id is 16 bytes")
    return (time_s.to_bytes(8, "big") + request_id,
            actor.to_bytes(4, "little") + bytes([op, result]) + card_id.to_bytes(8, "little"))


def unpack_admin_line(bytes key, bytes value):
    """An entry of the admin log (admin_log_entry): who acted, when, on what."""
    if len(key) != 8 + REQUEST_ID_SIZE or len(value) != 14:
        raise ValueError("not an admin log entry")
    return AdminLine(int.from_bytes(key[:8], "big"), key[8:], int.from_bytes(value[:4], "little"),
                     value[4], value[5], int.from_bytes(value[6:], "little"))


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


def stage_time_key(unsigned long long card_id, int stage):
    """Book key of when the card reached a production stage (CardStage)."""
    return stage_time_key_of(card_id, stage)


def member_key(unsigned long long card_id):
    return member_key_of(card_id)


def history_key(unsigned long long card_id, unsigned long long seq):
    return history_key_of(card_id, seq)


def parse_book_key(bytes key):
    """What a key of the book names: ('card', card_id, None), ('account', owner_id, slot),
    ('member', card_id, None), ('points_history', card_id, journal seq),
    ('point_lot', card_id, (valid_until_s, lot id)) or ('stage_time', card_id, stage)."""
    cdef const unsigned char* k = <const unsigned char*><const char*>key
    if len(key) == 9 and k[8] == b'C':
        return "card", u64_from_be(k), None
    if len(key) == 10 and k[8] == b'A':
        return "account", u64_from_be(k), k[9]
    if len(key) == 9 and k[8] == b'M':
        return "member", u64_from_be(k), None
    if len(key) == 17 and k[8] == b'H':
        return "points_history", u64_from_be(k), u64_from_be(k + 9)
    if len(key) == 9 + 8 + REQUEST_ID_SIZE and k[8] == b'L':
        return "point_lot", u64_from_be(k), (u64_from_be(k + 9), key[17:])
    if len(key) == 10 and k[8] == b'T':
        return "stage_time", u64_from_be(k), k[9]
    raise ValueError(f"not a key of the book: {key.hex()}")
