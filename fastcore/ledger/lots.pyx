# Value in lots: subscription units (packages) and loyalty points, usable until a time,
# used earliest-expiring first, expired through the journal.

cdef inline uint64_t lot_time(const LotRecord* lot):
    return lot.valid_until_s if lot.valid_until_s else LOT_NEVER


cdef inline uint64_t lot_due_s(const LotRecord* lot):
    """When a lot ends, as its indexes keep it: a held one at the end of its hold."""
    return lot.held_until_s if lot.status == LOT_HELD else lot_time(lot)


cdef inline bytes lot_due_key(const LotRecord* lot, const uint8_t* lot_id):
    """A lot's key in the index by which it ends: its due time, then its id."""
    return u64_be(lot_due_s(lot)) + _bytes(lot_id, REQUEST_ID_SIZE)


cdef inline bytes lot_card_key(_LotKind kind, const LotRecord* lot, const uint8_t* lot_id):
    """A lot's key in its card's index: card id, the kind's tag, then its due key."""
    return u64_be(lot.card_id) + kind.card_tag + lot_due_key(lot, lot_id)


cdef list card_lot_ids(BatchContext batch, _LotKind kind, uint64_t card_id, LotSelection which):
    """Ids of the card's open lots (LOTS_VALID_NOW: only those still valid now), earliest-expiring
    first."""
    cdef Py_ssize_t at = 8 + len(kind.card_tag)
    prefix = u64_be(card_id) + kind.card_tag
    ids = []
    cursor = batch.txn.cursor(db=kind.db_card)
    if cursor.set_range(prefix):
        for key in cursor.iternext(keys=True, values=False):
            if key[:at] != prefix:
                break
            if which == LOTS_ALL or u64_from_be(<const unsigned char*><const char*>key + at) >= batch.now_s:
                ids.append(key[at + 8:])
    cursor.close()
    return ids


cdef bint read_lot(BatchContext batch, _LotKind kind, const uint8_t* lot_id,
                   LotRecord* out) except -1:
    value = batch.get(_bytes(lot_id, REQUEST_ID_SIZE), kind.db)
    if value is None:
        return False
    require(len(value) == sizeof(LotRecord), "corrupt lot record")
    memcpy(out, <const char*>value, sizeof(LotRecord))
    return True


cdef int write_lot(BatchContext batch, _LotKind kind, const uint8_t* lot_id,
                   const LotRecord* lot) except -1:
    batch.put(_bytes(lot_id, REQUEST_ID_SIZE), _bytes(lot, sizeof(LotRecord)), kind.db)
    return 0


cdef bytes lot_id_of(const uint8_t* request_id, int part):
    """The id of a request's part-th lot (one per partner whose points it gives back):
    the request's own id for the first, a digest of it for the others."""
    cdef bytes own = _bytes(request_id, REQUEST_ID_SIZE)
    if part == 0:
        return own
    return hashlib.sha256(b"lot" + own + bytes([part])).digest()[:REQUEST_ID_SIZE]


cdef int add_lot(BatchContext batch, _LotKind kind, const uint8_t* lot_id,
                 const LotRecord* lot) except -1:
    """Write a lot and index it: by when it ends, and (open) on its card."""
    write_lot(batch, kind, lot_id, lot)
    batch.put(lot_due_key(lot, lot_id), b"", kind.db_expiry)
    if lot.status == LOT_OPEN:
        batch.put(lot_card_key(kind, lot, lot_id), b"", kind.db_card)
    return 0


cdef int end_lot(BatchContext batch, _LotKind kind, const uint8_t* lot_id, LotRecord* lot,
                 uint8_t status) except -1:
    batch.delete(lot_due_key(lot, lot_id), kind.db_expiry)
    batch.delete(lot_card_key(kind, lot, lot_id), kind.db_card)
    lot.status = status
    write_lot(batch, kind, lot_id, lot)
    batch.retain(kind.retain_kind, lot_id)
    return 0


cdef int describe_lots(BatchContext batch, _LotKind kind, CoreReply* rp) except -1:
    cdef AccountRecord acc
    if not read_account(batch, rp.card_id, kind.card_slot, &acc):
        raise InvariantViolated("card without its lots' account")
    memcpy(rp.currency, <const char*>kind.asset, CURRENCY_SIZE)
    rp.balance_minor = acc.balance_minor
    rp.pending_minor = 0
    if kind is batch.points:
        rp.balance_minor += points_owed(batch, rp.card_id)
    return 0


cdef int64_t points_owed(BatchContext batch, uint64_t card_id) except? -1:
    """Points a return took back after they were spent (<= 0): the card's points
    balance is its lots less these."""
    return balance_of(batch, card_id, SLOT_CARD_POINTS_OWED)


cdef bint check_sell_package(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and positive_amount(rq) and rq.valid_until_s > 0


cdef int issue_lot(BatchContext batch, _LotKind kind, const CoreRequest* rq,
                   CoreReply* rp) except -1:
    """Sell a package, or earn points: the first one of a new card activates it."""
    cdef CardRecord card
    if not find_described_card(batch, rq, &card, rp):
        return 0
    cdef uint8_t bad = usable_card(batch, &card, True)
    if not bad and rq.valid_until_s and rq.valid_until_s <= batch.now_s:
        bad = RESULT_DECLINED_CARD_EXPIRED       # the lot would be over already
    if bad:
        rp.result = bad
        describe_lots(batch, kind, rp)
        return 0
    activate(batch, &card)
    if kind is batch.points:
        batch.partner = partner_of(batch, rq.outlet_code)
        seq = credit_points(batch, rq, &card, rq.amount_minor, rq.valid_until_s, OP_EARN_POINTS,
                                 batch.partner)
        record_points(batch, card.card_id, seq, OP_EARN_POINTS, rq.amount_minor, rq.outlet_code)
    else:
        seq = post(batch, rq.request_id, kind.op_issue, SYSTEM_OWNER_BASE + card.range_id,
                        kind.issued_slot, card.card_id, kind.card_slot, kind.asset,
                        rq.amount_minor)
        new_lot(batch, kind, rq, &card, rq.amount_minor, rq.valid_until_s, True, 0)
    approve(batch, rq, rp, rq.amount_minor, seq)
    describe_lots(batch, kind, rp)
    return 0


cdef int new_lot(BatchContext batch, _LotKind kind, const CoreRequest* rq, const CardRecord* card,
                 int64_t amount, uint64_t valid_until_s, bint by_program, uint32_t issuer,
                 uint64_t held_until_s=0, int part=0) except -1:
    """A lot on the card keyed by the request's id (lot_id_of its part), of points
    `issuer` issued. New
    points (by_program) take their expiry from the card's program when not given
    (valid_until_s 0), and wait its returns window; transferred ones keep what they had.
    Points held for a redemption (held_until_s) are out of the card's index until they
    are released."""
    cdef LotRecord lot
    cdef const ProgramRecord* program
    cdef uint64_t available_from_s = batch.now_s
    found = program_of(batch, card.range_id) if kind is batch.points and by_program else None
    if found is not None:
        program = <const ProgramRecord*><const char*>found[0]
        if not valid_until_s:
            valid_until_s = policy_expiry(batch, program, batch.now_s)
        available_from_s = batch.now_s + <uint64_t>program.pending_days * 86400
    memset(&lot, 0, sizeof(lot))
    lot.card_id = card.card_id
    lot.range_id = card.range_id
    lot.status = LOT_HELD if held_until_s else LOT_OPEN
    lot.held_until_s = held_until_s
    lot.quantity_total = amount
    lot.quantity_left = amount
    lot.created_s = batch.now_s
    lot.valid_until_s = valid_until_s
    lot.available_from_s = available_from_s
    lot.partner_id = issuer
    lot_id = lot_id_of(rq.request_id, part)
    add_lot(batch, kind, <const uint8_t*><const char*>lot_id, &lot)
    return 0


cdef uint8_t take_from_lots(BatchContext batch, _LotKind kind, const CardRecord* card, int64_t need,
                            uint64_t* earliest_s, list taken=None) except 255:
    """Take `need` from the card's valid lots, earliest-expiring first (0), or decline
    with nothing taken. earliest_s: the expiry (0: never) of the first lot taken from;
    taken: gets [issuing partner, amount] for each run of lots of one partner."""
    cdef LotRecord lot
    cdef int64_t available = 0, pending = 0, take
    ready = []                                   # (id, record) usable now, not in a returns window
    for lot_id in card_lot_ids(batch, kind, card.card_id, LOTS_VALID_NOW):
        if not read_lot(batch, kind, <const uint8_t*><const char*>lot_id, &lot):
            raise InvariantViolated("index without lot")
        if lot.available_from_s > batch.now_s:
            pending += lot.quantity_left
        else:
            available += lot.quantity_left
            ready.append((lot_id, _bytes(&lot, sizeof(lot))))
    if available < need:
        return RESULT_DECLINED_POINTS_PENDING if available + pending >= need else kind.none_left
    for i, (lot_id, record) in enumerate(ready):
        if need == 0:
            break
        memcpy(&lot, <const char*>record, sizeof(lot))
        if i == 0:
            earliest_s[0] = lot.valid_until_s
        take = lot.quantity_left if lot.quantity_left < need else need
        if taken is not None:
            if taken and taken[len(taken) - 1][0] == lot.partner_id:
                taken[len(taken) - 1][1] += take
            else:
                taken.append([lot.partner_id, take])
        lot.quantity_left -= take
        need -= take
        if lot.quantity_left == 0:
            end_lot(batch, kind, <const uint8_t*><const char*>lot_id, &lot, LOT_USED_UP)
        else:
            write_lot(batch, kind, <const uint8_t*><const char*>lot_id, &lot)
    return 0


cdef uint8_t take_points(BatchContext batch, const CardRecord* card, int64_t need,
                         uint64_t* earliest_s,
                         list taken) except 255:
    """Points a member spends: none while a return has left points owed, else from
    the valid lots, earliest-expiring first (take_from_lots)."""
    if points_owed(batch, card.card_id) < 0:
        return RESULT_DECLINED_POINTS_OWED
    return take_from_lots(batch, batch.points, card, need, earliest_s, taken)


cdef int use_lots(BatchContext batch, _LotKind kind, const CoreRequest* rq,
                  CoreReply* rp) except -1:
    """Use units, or redeem points: from the earliest-expiring valid lots first."""
    cdef CardRecord card
    cdef uint64_t earliest_s = 0
    if not find_described_card(batch, rq, &card, rp):
        return 0
    cdef uint8_t bad = usable_card(batch, &card, False)
    cdef uint64_t seq = 0
    taken = []
    if not bad:
        bad = take_points(batch, &card, rq.amount_minor, &earliest_s,
                          taken) if kind is batch.points \
            else take_from_lots(batch, kind, &card, rq.amount_minor, &earliest_s, taken)
    if bad:
        rp.result = bad
        describe_lots(batch, kind, rp)
        return 0
    if kind is batch.points:
        batch.partner = partner_of(batch, rq.outlet_code)
    seq = post_use(batch, kind, rq, &card, taken)
    if kind is batch.points:
        record_points(batch, card.card_id, seq, OP_REDEEM_POINTS, -rq.amount_minor,
                           rq.outlet_code)
    approve(batch, rq, rp, rq.amount_minor, seq)
    describe_lots(batch, kind, rp)
    return 0


cdef uint64_t post_use(BatchContext batch, _LotKind kind, const CoreRequest* rq,
                       const CardRecord* card,
                       list taken) except? 0:
    """Post what take_from_lots took as used (points: redeemed at batch.partner), one
    entry per partner that issued them; the first seq."""
    cdef uint64_t seq = 0
    for origin, amount in taken:
        batch.origin_partner = origin
        last = post(batch, rq.request_id, kind.op_use, card.card_id, kind.card_slot,
                         SYSTEM_OWNER_BASE + card.range_id, kind.used_slot, kind.asset,
                         amount)
        seq = seq or last
    batch.origin_partner = 0
    return seq


cdef int adjust_points(BatchContext batch, const CoreRequest* rq, const char* payload,
                       CoreReply* rp) except -1:
    """An operator puts points on a card (a new lot, as its program dates lots) or
    takes them off (earliest-expiring first), with a reason the journal keeps."""
    cdef CardRecord card
    cdef uint64_t earliest_s = 0, adjusted
    cdef uint8_t bad = open_card(batch, rq, &card, rp)
    if bad == RESULT_DECLINED_UNKNOWN_CARD:
        rp.result = bad
        return 0
    if not bad and rq.flags & REQUEST_ADJUST_DOWN:
        bad = take_from_lots(batch, batch.points, &card, rq.amount_minor, &earliest_s)
    if bad:
        rp.result = bad
        describe_lots(batch, batch.points, rp)
        return 0
    adjusted = SYSTEM_OWNER_BASE + card.range_id
    if rq.flags & REQUEST_ADJUST_DOWN:
        seq = post(batch, rq.request_id, OP_ADJUST_POINTS, card.card_id, SLOT_CARD_POINTS,
                        adjusted, SLOT_RANGE_POINTS_ADJUSTED, POINTS, rq.amount_minor, rq.reason)
    else:
        seq = credit_points(batch, rq, &card, rq.amount_minor, 0, OP_ADJUST_POINTS, 0,
                                 SLOT_RANGE_POINTS_ADJUSTED, rq.reason)
    record_points(batch, card.card_id, seq, OP_ADJUST_POINTS,
                       -rq.amount_minor if rq.flags & REQUEST_ADJUST_DOWN else rq.amount_minor, 0)
    approve(batch, rq, rp, rq.amount_minor, seq)
    describe_lots(batch, batch.points, rp)
    return 0


cdef bint check_transfer_points(const CoreRequest* rq, const char* payload) except -1:
    return rq.payload_size == CARD_KEY_SIZE and positive_amount(rq) and \
        card_payload_matches(rq, payload)


cdef int transfer_points(BatchContext batch, const CoreRequest* rq, const char* payload,
                         CoreReply* rp) except -1:
    """Points from one member's card to another's: taken earliest-expiring first, they
    arrive as one lot per partner that issued them, each expiring with the earliest of
    them all (a transfer never extends validity), usable at once. Made for a merchant
    (a terminal's), it needs the giving card's PIN."""
    cdef CardRecord card, receiver
    cdef uint64_t earliest_s = 0
    if not find_described_card(batch, rq, &card, rp):
        return 0
    cdef uint8_t bad = usable_card(batch, &card, False)
    taken = []
    if not bad and rq.merchant_code:
        # At a merchant's terminal the cardholder gives the giving card's PIN (an operator
        # moves points without one).
        if not (card.pin_set and rq.flags & REQUEST_PIN_PRESENT):
            bad = RESULT_DECLINED_PIN_REQUIRED
        elif not check_pin(batch, rq, &card, rp):
            bad = RESULT_DECLINED_WRONG_PIN
    if not bad and (not find_card(batch, <const uint8_t*>payload, &receiver) or
                    usable_card(batch, &receiver, True)):
        bad = RESULT_DECLINED_RECEIVING_CARD_UNUSABLE
    if not bad:
        bad = take_points(batch, &card, rq.amount_minor, &earliest_s, taken)
    if bad:
        rp.result = bad
        describe_lots(batch, batch.points, rp)
        return 0
    activate(batch, &receiver)
    seq = post(batch, rq.request_id, OP_TRANSFER_POINTS, card.card_id, SLOT_CARD_POINTS,
                    receiver.card_id, SLOT_CARD_POINTS, POINTS, rq.amount_minor)
    for part, (issuer, amount) in enumerate(merged_by_issuer(taken)):
        new_lot(batch, batch.points, rq, &receiver, amount, earliest_s, False, issuer, 0, part)
    record_points(batch, card.card_id, seq, OP_TRANSFER_POINTS, -rq.amount_minor, 0)
    record_points(batch, receiver.card_id, seq, OP_TRANSFER_POINTS, rq.amount_minor, 0)
    approve(batch, rq, rp, rq.amount_minor, seq)
    describe_lots(batch, batch.points, rp)
    return 0


cdef list merged_by_issuer(list taken):
    """[issuer, amount] runs of take_from_lots, one per issuer, in first-taken order."""
    merged = {}
    for issuer, amount in taken:
        merged[issuer] = merged.get(issuer, 0) + amount
    return list(merged.items())


cdef list due_ids(BatchContext batch, index_db, uint64_t before_s):
    """Ids in a time index (time(8, big-endian) + id) whose time is before before_s,
    oldest first, at most TIMED_ENDS_PER_BATCH_MAX of them."""
    due = []
    cursor = batch.txn.cursor(db=index_db)
    if cursor.first():
        for key in cursor.iternext(keys=True, values=False):
            if u64_from_be(<const unsigned char*><const char*>key) >= before_s or \
                    len(due) >= TIMED_ENDS_PER_BATCH_MAX:
                break
            due.append(key[8:])
    cursor.close()
    return due


cdef int expire_lots(BatchContext batch, _LotKind kind) except -1:
    """Expire lots past their last valid second: what is left of them leaves the card
    through the journal (a bounded number per batch, oldest first)."""
    cdef LotRecord lot
    cdef RequestRecord reserve
    due = due_ids(batch, kind.db_expiry, batch.now_s)
    for lot_id in due:
        if not read_lot(batch, kind, <const uint8_t*><const char*>lot_id, &lot):
            raise InvariantViolated("expiry of a missing lot")
        if lot.status == LOT_HELD:      # a reservation nobody confirmed: released
            if not read_request(batch, <const uint8_t*><const char*>lot_id, &reserve):
                raise InvariantViolated("a held lot without its reservation")
            settle_reservation(batch, <const uint8_t*><const char*>lot_id, &reserve, 0,
                                    OP_POINTS_HOLD_EXPIRY, RECORD_TIMED_OUT)
            continue
        require(lot.status == LOT_OPEN and lot.quantity_left > 0, "indexed lot not open")
        batch.origin_partner = lot.partner_id if kind is batch.points else 0
        seq = post(batch, <const uint8_t*><const char*>lot_id, kind.op_expiry, lot.card_id,
                        kind.card_slot, SYSTEM_OWNER_BASE + lot.range_id, kind.expired_slot,
                        kind.asset, lot.quantity_left)
        batch.origin_partner = 0
        if kind is batch.points:
            record_points(batch, lot.card_id, seq, OP_POINTS_EXPIRY, -lot.quantity_left, 0)
        end_lot(batch, kind, <const uint8_t*><const char*>lot_id, &lot, LOT_EXPIRED)
    return len(due)


cdef int64_t move_lots(BatchContext batch, _LotKind kind, const CoreRequest* rq,
                       const CardRecord* card,
                       const CardRecord* new) except -1:
    """Re-home the card's open lots (their dates kept) to the new card; what they hold."""
    cdef LotRecord lot
    cdef int64_t moved = 0
    for lot_id in card_lot_ids(batch, kind, card.card_id, LOTS_ALL):
        read_lot(batch, kind, <const uint8_t*><const char*>lot_id, &lot)
        batch.delete(lot_card_key(kind, &lot, <const uint8_t*><const char*>lot_id), kind.db_card)
        lot.card_id = new.card_id
        batch.put(lot_card_key(kind, &lot, <const uint8_t*><const char*>lot_id), b"", kind.db_card)
        write_lot(batch, kind, <const uint8_t*><const char*>lot_id, &lot)
        moved += lot.quantity_left
    return moved


# The operations on lots, each naming its kind.

cdef int sell_package(BatchContext batch, const CoreRequest* rq, const char* payload,
                      CoreReply* rp) except -1:
    return issue_lot(batch, batch.packages, rq, rp)


cdef int use_units(BatchContext batch, const CoreRequest* rq, const char* payload,
                   CoreReply* rp) except -1:
    return use_lots(batch, batch.packages, rq, rp)


cdef int earn_points(BatchContext batch, const CoreRequest* rq, const char* payload,
                     CoreReply* rp) except -1:
    return issue_lot(batch, batch.points, rq, rp)


cdef int redeem_points(BatchContext batch, const CoreRequest* rq, const char* payload,
                       CoreReply* rp) except -1:
    return use_lots(batch, batch.points, rq, rp)
