# The single posting path: accounts and the journal. Every change of value is one
# double-entry journal entry written by post(), with the checks a debit or credit needs.

cdef inline bint took_effect(uint8_t result):
    return result == RESULT_APPROVED or result == RESULT_PARTIALLY_APPROVED


cdef inline uint64_t value_owner_of(const CardRecord* card):
    """Whose value a card spends: its own, or its contract's."""
    return CONTRACT_OWNER_BASE + card.contract_id if card.contract_id else card.card_id


cdef inline int64_t balance_max_of(const RangeRecord* rng):
    """The most a card of the range may hold (its own limit, else the system's)."""
    return rng.balance_max_minor if rng.balance_max_minor else BALANCE_MINOR_MAX


cdef inline bint holds_value(uint64_t owner, uint8_t slot):
    """A card's or contract's own balance (value, held value, units, points): at most
    BALANCE_MINOR_MAX either way. The range's accounts (merchant, funding, the pools of
    units and points) and a card's statistic of sales paid elsewhere span all of int64:
    about 9,200 times the most a card holds, 922,337 sales at the per-request maximum."""
    return owner < SYSTEM_OWNER_BASE and slot != SLOT_CARD_SALES_ELSEWHERE


cdef inline int64_t account_cap(uint64_t owner, uint8_t slot):
    return BALANCE_MINOR_MAX if holds_value(owner, slot) else INT64_MAX


cdef inline uint8_t limit_result(uint64_t owner, uint8_t slot):
    """The decline of a request whose posting would take this account past its cap."""
    if not holds_value(owner, slot):
        return RESULT_DECLINED_SYSTEM_LIMIT_EXCEEDED
    if slot == SLOT_CARD_UNITS:
        return RESULT_DECLINED_UNITS_LIMIT_EXCEEDED
    if slot in (SLOT_CARD_POINTS, SLOT_CARD_POINTS_HELD, SLOT_CARD_POINTS_OWED):
        return RESULT_DECLINED_POINTS_LIMIT_EXCEEDED
    return RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED


cdef inline int64_t available_of(const CoreReply* rp):
    return rp.balance_minor - rp.pending_minor + rp.credit_limit_minor


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


cdef bint read_account(BatchContext batch, uint64_t owner, uint8_t slot,
                       AccountRecord* out) except -1:
    return read_account_at(batch, account_key_of(owner, slot), out) is not None


cdef object read_account_at(BatchContext batch, bytes key, AccountRecord* out):
    """The account record at `key` into *out; the bytes read (what a write replaces), or
    None when there is none."""
    value = batch.get(key, batch.db_book)
    if value is not None:
        require(len(value) == sizeof(AccountRecord), "corrupt account record")
        memcpy(out, <const char*>value, sizeof(AccountRecord))
    return value


cdef int write_account(BatchContext batch, uint64_t owner, uint8_t slot,
                       const AccountRecord* acc) except -1:
    batch.put(account_key_of(owner, slot), _bytes(acc, sizeof(AccountRecord)), batch.db_book)
    return 0


cdef int write_card(BatchContext batch, const CardRecord* card) except -1:
    batch.put(card_key_of(card.card_id), _bytes(card, sizeof(CardRecord)), batch.db_book)
    return 0


cdef bint read_request(BatchContext batch, const uint8_t* request_id, RequestRecord* out) except -1:
    value = batch.get(_bytes(request_id, REQUEST_ID_SIZE), batch.db_requests)
    if value is None:
        return False
    require(len(value) == sizeof(RequestRecord), "corrupt request record")
    memcpy(out, <const char*>value, sizeof(RequestRecord))
    return True


cdef int write_request(BatchContext batch, const RequestRecord* rec) except -1:
    batch.put(_bytes(rec.request.request_id, REQUEST_ID_SIZE),
             _bytes(rec, sizeof(RequestRecord)), batch.db_requests)
    return 0


cdef uint64_t journal_end(BatchContext batch) except 0:
    """The position after the journal's last entry (1 for an empty journal): read once
    per batch, at its first posting, so that reads and batches that post nothing never
    touch the journal."""
    cursor = batch.txn.cursor(db=batch.db_journal)
    last_key = cursor.key() if cursor.last() else None
    cursor.close()
    return 1 if last_key is None else u64_from_be(<const unsigned char*><const char*>last_key) + 1


cdef uint64_t post(BatchContext batch, const uint8_t* request_id, uint8_t op,
                   uint64_t debit_owner, uint8_t debit_slot,
                   uint64_t credit_owner, uint8_t credit_slot,
                   const char* currency, int64_t amount, uint8_t reason=0) except 0:
    """Append one double-entry journal entry and apply it to both accounts. Raises
    LimitCrossed, before it writes, when either account would pass its cap (apply_one
    then undoes the request and declines it)."""
    cdef AccountRecord debit, credit
    cdef JournalEntry entry
    if batch.next_seq == 0:
        batch.next_seq = journal_end(batch)
    cdef uint64_t seq = batch.next_seq
    require(amount > 0, "postings move a positive amount")
    cdef bytes debit_key = account_key_of(debit_owner, debit_slot)
    cdef bytes credit_key = account_key_of(credit_owner, credit_slot)
    debit_before = read_account_at(batch, debit_key, &debit)
    if debit_before is None:
        raise InvariantViolated("debit account missing")
    credit_before = read_account_at(batch, credit_key, &credit)
    if credit_before is None:
        raise InvariantViolated("credit account missing")
    require(memcmp(debit.currency, currency, CURRENCY_SIZE) == 0, "debit currency differs")
    require(memcmp(credit.currency, currency, CURRENCY_SIZE) == 0, "credit currency differs")
    # Limits, checked before anything moves: a crossing declines this request alone.
    cdef int64_t cap = account_cap(credit_owner, credit_slot)
    if credit.balance_minor > cap - amount or credit.credits_minor_total > INT64_MAX - amount:
        raise LimitCrossed(limit_result(credit_owner, credit_slot))
    cap = account_cap(debit_owner, debit_slot)
    if debit.balance_minor < amount - cap or debit.debits_minor_total > INT64_MAX - amount:
        raise LimitCrossed(limit_result(debit_owner, debit_slot))
    debit.balance_minor -= amount
    debit.debits_minor_total += amount
    debit.last_journal_seq = seq
    credit.balance_minor += amount
    credit.credits_minor_total += amount
    credit.last_journal_seq = seq
    if debit.flags & ACCOUNT_NO_OVERDRAFT and reason != REASON_FORCED_CAPTURE and \
            reason != REASON_OFFLINE_SALE:
        require(debit.balance_minor - debit.pending_minor >= 0,
                "overdraft on a no-overdraft account")
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
    entry.time_s = batch.now_s
    entry.actor = batch.actor
    entry.partner_id = batch.partner
    entry.origin_partner = batch.origin_partner
    batch.put_replacing(debit_key, _bytes(&debit, sizeof(AccountRecord)), debit_before,
                        batch.db_book)
    batch.put_replacing(credit_key, _bytes(&credit, sizeof(AccountRecord)), credit_before,
                        batch.db_book)
    batch.append(u64_be(seq), _bytes(&entry, sizeof(entry)), batch.db_journal)
    batch.next_seq = seq + 1
    return seq


cdef int64_t balance_of(BatchContext batch, uint64_t owner, uint8_t slot) except? -1:
    cdef AccountRecord acc
    return acc.balance_minor if read_account(batch, owner, slot, &acc) else 0


cdef int approve(BatchContext batch, const CoreRequest* rq, CoreReply* rp, int64_t amount,
                 uint64_t seq,
                 const CardRecord* card=NULL) except -1:
    """Approved: the reply describes the card as it is now (`card`, when the caller
    holds its current record, saves reading it again)."""
    rp.result = RESULT_APPROVED
    rp.approved_minor = amount
    rp.journal_seq = seq
    rp.approval_code = _approval_code(rq.request_id, seq)
    if card != NULL:
        describe_card(batch, card, rp)
    else:
        describe_reply_card(batch, rp)
    return 0
