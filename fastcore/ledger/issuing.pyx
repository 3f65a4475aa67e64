# Issuing: card ranges, serial numbers, cards, production stages, and replacement of a
# lost or stolen card by a new one that takes all it held.


cdef bint check_create_range(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and rq.balance_max_minor >= 0 and rq.load_per_day_max_minor >= 0 and \
        0 <= rq.offline_floor_minor <= BALANCE_MINOR_MAX and rq.offline_age_s >= 0 and \
        rq.numbering <= 2 and rq.pin_policy <= PIN_POLICY_NOT_USED and -1440 <= rq.utc_offset_min <= 1440


cdef int create_range(BatchContext batch, const CoreRequest* rq, const char* payload,
                      CoreReply* rp) except -1:
    cdef RangeRecord rng
    cdef AccountRecord acc
    key = range_key_of(rq.range_id)
    if batch.get(key, batch.db_config) is not None:
        rp.result = RESULT_DECLINED_CARD_RANGE_EXISTS
        return 0
    if not zone_known(batch, rq.zone_id):
        rp.result = RESULT_DECLINED_UNKNOWN_ZONE
        return 0
    memset(&rng, 0, sizeof(rng))
    rng.range_id = rq.range_id
    rng.pan_length = rq.pan_length
    rng.iin_digits = rq.iin_digits
    rng.pin_tries_max = rq.pin_tries_max if rq.pin_tries_max else PIN_TRIES_MAX_DEFAULT
    rng.numbering = rq.numbering
    rng.balance_max_minor = rq.balance_max_minor
    rng.load_per_day_max_minor = rq.load_per_day_max_minor
    rng.late_grace_s = rq.late_grace_s
    rng.offline_floor_minor = rq.offline_floor_minor
    rng.offline_age_s = rq.offline_age_s if rq.offline_age_s else OFFLINE_AGE_DEFAULT_S
    rng.pin_policy = rq.pin_policy
    rng.zone_id = rq.zone_id
    rng.utc_offset_min = rq.utc_offset_min
    rng.iin_prefix = rq.iin_prefix
    memcpy(rng.currency, rq.currency, CURRENCY_SIZE)
    memcpy(rng.name, rq.range_name, RANGE_NAME_SIZE)
    batch.put(key, _bytes(&rng, sizeof(rng)), batch.db_config)
    memset(&acc, 0, sizeof(acc))
    memcpy(acc.currency, rq.currency, CURRENCY_SIZE)
    write_account(batch, SYSTEM_OWNER_BASE + rq.range_id, SLOT_RANGE_FUNDING, &acc)
    write_account(batch, SYSTEM_OWNER_BASE + rq.range_id, SLOT_RANGE_MERCHANT, &acc)
    write_account(batch, SYSTEM_OWNER_BASE + rq.range_id, SLOT_RANGE_SALES_ELSEWHERE, &acc)
    memcpy(acc.currency, <const char*>UNITS, CURRENCY_SIZE)
    for slot in (SLOT_RANGE_UNITS_SOLD, SLOT_RANGE_UNITS_USED, SLOT_RANGE_UNITS_EXPIRED):
        write_account(batch, SYSTEM_OWNER_BASE + rq.range_id, slot, &acc)
    memcpy(acc.currency, <const char*>POINTS, CURRENCY_SIZE)
    for slot in (SLOT_RANGE_POINTS_ISSUED, SLOT_RANGE_POINTS_REDEEMED, SLOT_RANGE_POINTS_EXPIRED,
                 SLOT_RANGE_POINTS_ADJUSTED):
        write_account(batch, SYSTEM_OWNER_BASE + rq.range_id, slot, &acc)
    memcpy(rp.currency, rq.currency, CURRENCY_SIZE)
    approve(batch, rq, rp, 0, 0)
    return 0


cdef bint check_allocate_serials(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and 0 < rq.serial_count <= SERIALS_PER_REQUEST_MAX


cdef int allocate_serials(BatchContext batch, const CoreRequest* rq, const char* payload,
                          CoreReply* rp) except -1:
    """A block of the range's card serial numbers (the digits between its prefix and
    the check digit), for numbering new cards in order; the first in approved_minor.
    Never the same number twice; a retry gets the same block."""
    cdef RangeRecord rng
    if not find_range(batch, rq.range_id, &rng):
        rp.result = RESULT_DECLINED_UNKNOWN_CARD_RANGE
        return 0
    key = config_key_of(b'S', rq.range_id)
    stored = batch.get(key, batch.db_config)
    first = u64_from_be(<const unsigned char*><const char*>stored) if stored is not None else 1
    if first + rq.serial_count - 1 > 10 ** (rng.pan_length - rng.iin_digits - 1) - 1:
        rp.result = RESULT_DECLINED_RANGE_EXHAUSTED
        return 0
    batch.put(key, u64_be(first + rq.serial_count), batch.db_config)
    approve(batch, rq, rp, first, 0)
    return 0


cdef int issue_card(BatchContext batch, const CoreRequest* rq, const char* payload,
                    CoreReply* rp) except -1:
    cdef RangeRecord rng
    cdef CardRecord card
    cdef AccountRecord acc
    cdef uint64_t card_id
    if not find_range(batch, rq.range_id, &rng):
        rp.result = RESULT_DECLINED_UNKNOWN_CARD_RANGE
        return 0
    if find_card(batch, rq.card_key, &card):
        describe_card(batch, &card, rp)
        rp.result = RESULT_DECLINED_CARD_ALREADY_ISSUED
        return 0
    counter = batch.get(NEXT_CARD_ID_KEY, batch.db_config)
    card_id = u64_from_be(<const unsigned char*><const char*>counter) if counter is not None else 1
    batch.put(NEXT_CARD_ID_KEY, u64_be(card_id + 1), batch.db_config)
    memset(&card, 0, sizeof(card))
    card.card_id = card_id
    card.range_id = rq.range_id
    card.expiry_yyyymm = rq.expiry_yyyymm
    card.status = CARD_ISSUED
    card.pan_length = rq.pan_length
    card.pan_first6 = rq.pan_first6
    card.pan_last4 = rq.pan_last4
    card.issued_s = batch.now_s
    write_card(batch, &card)
    memset(&acc, 0, sizeof(acc))
    memcpy(acc.currency, rng.currency, CURRENCY_SIZE)
    acc.flags = ACCOUNT_NO_OVERDRAFT
    write_account(batch, card_id, SLOT_CARD_VALUE, &acc)
    write_account(batch, card_id, SLOT_CARD_HELD, &acc)
    acc.flags = 0
    write_account(batch, card_id, SLOT_CARD_SALES_ELSEWHERE, &acc)
    acc.flags = ACCOUNT_NO_OVERDRAFT
    memcpy(acc.currency, <const char*>UNITS, CURRENCY_SIZE)
    write_account(batch, card_id, SLOT_CARD_UNITS, &acc)
    memcpy(acc.currency, <const char*>POINTS, CURRENCY_SIZE)
    write_account(batch, card_id, SLOT_CARD_POINTS, &acc)
    write_account(batch, card_id, SLOT_CARD_POINTS_HELD, &acc)
    acc.flags = 0                       # owed points are a negative balance
    write_account(batch, card_id, SLOT_CARD_POINTS_OWED, &acc)
    batch.put(_bytes(rq.card_key, CARD_KEY_SIZE), u64_be(card_id), batch.db_pan)
    rp.card_id = card_id
    approve(batch, rq, rp, 0, 0)
    return 0


cdef bint check_set_stage(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and STAGE_CREATED <= rq.stage <= STAGE_SHIPPED


cdef int set_stage(BatchContext batch, const CoreRequest* rq, const char* payload,
                   CoreReply* rp) except -1:
    """Record the card's next production stage, and when: created, personalized,
    shipped, in that order (a stage again changes nothing: a bureau's retry)."""
    cdef CardRecord card
    cdef uint8_t bad = open_card(batch, rq, &card, rp)
    if not bad and rq.stage < card.stage:
        bad = RESULT_DECLINED_INVALID_STATUS_CHANGE
    if bad:
        rp.result = bad
        return 0
    if rq.stage > card.stage:
        for stage in range(card.stage + 1, rq.stage + 1):
            batch.put(stage_time_key_of(card.card_id, stage), u64_be(batch.now_s), batch.db_book)
        card.stage = rq.stage
        write_card(batch, &card)
    approve(batch, rq, rp, 0, 0, &card)
    return 0


cdef bint check_replace_card(const CoreRequest* rq, const char* payload) except -1:
    return rq.payload_size == CARD_KEY_SIZE and card_payload_matches(rq, payload)


cdef int replace_card(BatchContext batch, const CoreRequest* rq, const char* payload,
                      CoreReply* rp) except -1:
    """Everything of a lost or stolen card moves to a new, never used card of the same
    range: value, subscription and point lots (with their dates), points owed,
    loyalty standing, fleet profile, contract and usage. The old card is closed for
    good. Not while it has open pre-authorizations or held points."""
    cdef CardRecord card, new
    cdef MemberRecord member
    cdef UsageRecord usage
    cdef uint8_t bad = open_card(batch, rq, &card, rp)
    if not bad and (not find_card(batch, <const uint8_t*>payload, &new) or new.range_id != card.range_id
                    or new.status != CARD_ISSUED or new.activated_s or new.card_id == card.card_id
                    or usable_card(batch, &new, True)):
        bad = RESULT_DECLINED_REPLACEMENT_UNUSABLE
    if not bad and (balance_of(batch, value_owner_of(&card), SLOT_CARD_HELD) or
                    balance_of(batch, card.card_id, SLOT_CARD_POINTS_HELD)):
        bad = RESULT_DECLINED_HOLDS_OPEN
    if not bad and balance_of(batch, card.card_id, SLOT_CARD_VALUE) < 0:
        bad = RESULT_DECLINED_INSUFFICIENT_FUNDS    # a forced capture left it owing
    if bad:
        rp.result = bad
        return 0
    cdef uint64_t seq = 0
    cdef int64_t value = balance_of(batch, card.card_id, SLOT_CARD_VALUE) if not card.contract_id else 0
    if value > 0:
        seq = post(batch, rq.request_id, OP_REPLACE_CARD, card.card_id, SLOT_CARD_VALUE,
                        new.card_id, SLOT_CARD_VALUE, rp.currency, value)
    for kind in (batch.packages, batch.points):
        moved = move_lots(batch, kind, rq, &card, &new)
        if moved:
            last = post(batch, rq.request_id, OP_REPLACE_CARD, card.card_id, kind.card_slot,
                             new.card_id, kind.card_slot, kind.asset, moved)
            seq = seq or last
        if kind is batch.points:
            owed = -balance_of(batch, card.card_id, SLOT_CARD_POINTS_OWED)
            if owed:
                last = post(batch, rq.request_id, OP_REPLACE_CARD, new.card_id,
                            SLOT_CARD_POINTS_OWED,
                                 card.card_id, SLOT_CARD_POINTS_OWED, POINTS, owed)
                seq = seq or last
            if moved or owed:
                record_points(batch, card.card_id, seq, OP_REPLACE_CARD, owed - moved, 0)
                record_points(batch, new.card_id, seq, OP_REPLACE_CARD, moved - owed, 0)
    if batch.get(member_key_of(card.card_id), batch.db_book) is not None:
        read_member(batch, card.card_id, &member)
        write_member(batch, new.card_id, &member)
    if read_usage(batch, card.card_id, &usage):
        write_usage(batch, new.card_id, &usage)
    new.profile_id, new.contract_id = card.profile_id, card.contract_id
    new.load_day, new.loaded_today_minor = card.load_day, card.loaded_today_minor
    new.stage = card.stage
    new.issuer_partner = card.issuer_partner
    if card.status != CARD_ISSUED:
        new.status = CARD_ACTIVE if card.status == CARD_ACTIVE or card.activated_s else CARD_ISSUED
        new.activated_s = batch.now_s if new.status == CARD_ACTIVE else 0
    write_card(batch, &new)
    card.status = CARD_CLOSED
    write_card(batch, &card)
    approve(batch, rq, rp, value, seq, &card)
    return 0
