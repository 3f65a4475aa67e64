# Points reserved for a redemption: held first, then confirmed (redeemed) or released.


cdef int reserve_points(BatchContext batch, const CoreRequest* rq, const char* payload,
                        CoreReply* rp) except -1:
    """Take points earliest-expiring first into the card's held points, as one held
    lot keyed by this request, released by itself at the hold timeout."""
    cdef CardRecord card
    cdef uint64_t earliest_s = 0, seq = 0
    if not find_described_card(batch, rq, &card, rp):
        return 0
    cdef uint8_t bad = usable_card(batch, &card, False)
    taken = []
    if not bad:
        bad = take_points(batch, &card, rq.amount_minor, &earliest_s, taken)
    if bad:
        rp.result = bad
        describe_lots(batch, batch.points, rp)
        return 0
    batch.partner = partner_of(batch, rq.outlet_code)
    for origin, amount in taken:
        batch.origin_partner = origin
        last = post(batch, rq.request_id, OP_RESERVE_POINTS, card.card_id, SLOT_CARD_POINTS,
                         card.card_id, SLOT_CARD_POINTS_HELD, POINTS, amount)
        seq = seq or last
    # One held lot; released, its points expire with the earliest of them.
    new_lot(batch, batch.points, rq, &card, rq.amount_minor, earliest_s, False, taken[0][0],
                 batch.now_s + batch.hold_timeout_s)
    record_points(batch, card.card_id, seq, OP_RESERVE_POINTS, -rq.amount_minor, rq.outlet_code)
    approve(batch, rq, rp, rq.amount_minor, seq)
    describe_lots(batch, batch.points, rp)
    return 0


cdef list reserved_groups(BatchContext batch, const RequestRecord* reserve):
    """[issuing partner, points, partner where reserved] of a reservation, from its
    journal entries."""
    cdef JournalEntry entry
    cdef uint64_t seq = reserve.reply.journal_seq
    groups = []
    while True:
        value = batch.get(u64_be(seq), batch.db_journal)
        if value is None:
            break
        memcpy(&entry, <const char*>value, sizeof(entry))
        if memcmp(entry.request_id, reserve.request.request_id, REQUEST_ID_SIZE) != 0 or \
                entry.op != OP_RESERVE_POINTS:
            break
        groups.append((entry.origin_partner, entry.amount_minor, entry.partner_id))
        seq += 1
    return groups


cdef uint64_t settle_reservation(BatchContext batch, const uint8_t* posting_id,
                                 RequestRecord* reserve,
                                 int64_t redeem, uint8_t release_op, uint32_t flag) except? 0:
    """Redeem `redeem` of a reservation (where it was made) and give the rest back: its
    lot opens again with what the first issuing partner gets back, and each other
    partner's points come back as a lot of their own (lot_id_of), all expiring with the
    earliest of what it held. The first journal seq."""
    cdef LotRecord lot, part_lot
    cdef const uint8_t* lot_id = reserve.request.request_id
    cdef uint64_t seq = 0, owner
    cdef int64_t take, released
    if not (read_lot(batch, batch.points, lot_id, &lot) and lot.status == LOT_HELD):
        raise InvariantViolated("settling a reservation that is not held")
    owner = SYSTEM_OWNER_BASE + lot.range_id
    released = lot.quantity_left - redeem
    back = []                                   # [issuer, points] given back
    for origin, amount, partner in reserved_groups(batch, reserve):
        batch.partner, batch.origin_partner = partner, origin
        take = amount if amount < redeem else redeem
        redeem -= take
        if take:
            last = post(batch, posting_id, OP_CONFIRM_POINTS, lot.card_id, SLOT_CARD_POINTS_HELD,
                             owner, SLOT_RANGE_POINTS_REDEEMED, POINTS, take)
            seq = seq or last
        if amount > take:
            last = post(batch, posting_id, release_op, lot.card_id, SLOT_CARD_POINTS_HELD,
                             lot.card_id, SLOT_CARD_POINTS, POINTS, amount - take)
            seq = seq or last
            back.append((origin, amount - take))
    batch.partner = batch.origin_partner = 0
    batch.delete(lot_due_key(&lot, lot_id), batch.points.db_expiry)
    lot.held_until_s = 0
    lot.quantity_left = back[0][1] if back else 0
    lot.partner_id = back[0][0] if back else lot.partner_id
    lot.status = LOT_OPEN if back else LOT_USED_UP
    if back:
        add_lot(batch, batch.points, lot_id, &lot)
        record_points(batch, lot.card_id, seq, release_op, released, 0)
    else:
        write_lot(batch, batch.points, lot_id, &lot)
        batch.retain(batch.points.retain_kind, lot_id)
    for part in range(1, len(back)):
        memcpy(&part_lot, &lot, sizeof(lot))
        part_lot.partner_id, part_lot.quantity_total = back[part]
        part_lot.quantity_left = part_lot.quantity_total
        part_lot.created_s = batch.now_s
        part_id = lot_id_of(lot_id, part)
        add_lot(batch, batch.points, <const uint8_t*><const char*>part_id, &part_lot)
    reserve.flags |= flag
    write_request(batch, reserve)
    return seq


cdef bint check_confirm_points(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and refers_elsewhere(rq) and positive_amount(rq)


cdef bint check_release_points(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and refers_elsewhere(rq) and rq.amount_minor == 0


cdef int close_reservation(BatchContext batch, const CoreRequest* rq, const char* payload,
                           CoreReply* rp) except -1:
    """Confirm a reservation (all of it or less: the rest goes back) or release it."""
    cdef CardRecord card
    cdef RequestRecord reserve
    cdef bint confirm = rq.op == OP_CONFIRM_POINTS
    if not find_described_card(batch, rq, &card, rp):
        return 0
    cdef uint8_t bad = 0
    cdef bint found = read_request(batch, rq.ref_request_id, &reserve)
    if found and foreign_to(batch, rq, reserve.request.merchant_code, reserve.request.outlet_code):
        return decline_foreign(rq, rp)
    if not found or reserve.request.op != OP_RESERVE_POINTS or not took_effect(reserve.reply.result):
        bad = RESULT_DECLINED_RESERVATION_NOT_FOUND
    elif reserve.reply.card_id != card.card_id:
        bad = RESULT_DECLINED_CARD_MISMATCH
    elif reserve.flags & RECORD_CONFIRMED:
        bad = RESULT_DECLINED_RESERVATION_CONFIRMED
    elif reserve.flags & RECORD_RELEASED:
        bad = RESULT_DECLINED_RESERVATION_RELEASED
    elif reserve.flags & RECORD_TIMED_OUT:
        bad = RESULT_DECLINED_RESERVATION_TIMED_OUT
    elif confirm and rq.amount_minor > reserve.reply.approved_minor:
        bad = RESULT_DECLINED_CONFIRMATION_EXCEEDS_RESERVATION
    if bad:
        rp.result = bad
        describe_lots(batch, batch.points, rp)
        return 0
    seq = settle_reservation(batch, rq.request_id, &reserve, rq.amount_minor if confirm else 0,
                             OP_RELEASE_POINTS, RECORD_CONFIRMED if confirm else RECORD_RELEASED)
    approve(batch, rq, rp, rq.amount_minor if confirm else reserve.reply.approved_minor, seq)
    describe_lots(batch, batch.points, rp)
    return 0
