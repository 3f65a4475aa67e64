# Two-phase payments: a pre-authorization places a hold; completion charges what was
# dispensed and releases the rest; void, reversal or timeout release it all.


cdef int preauth(BatchContext batch, const CoreRequest* rq, const char* payload,
                 CoreReply* rp) except -1:
    cdef CardRecord card
    cdef HoldRecord hold
    cdef Fleet fleet
    cdef int64_t volume
    cdef int64_t amount = charge_checks(batch, rq, &card, rp, &fleet, &volume, False)
    if rp.result:
        return 0
    cdef uint64_t owner = value_owner_of(&card)
    seq = post(batch, rq.request_id, OP_PREAUTH, owner, SLOT_CARD_VALUE,
                    owner, SLOT_CARD_HELD, rq.currency, amount)
    memset(&hold, 0, sizeof(hold))
    hold.card_id = card.card_id
    hold.range_id = card.range_id
    hold.status = HOLD_OPEN
    memcpy(hold.currency, rq.currency, CURRENCY_SIZE)
    hold.held_minor = amount
    hold.created_s = batch.now_s
    hold.expires_s = batch.now_s + batch.hold_timeout_s
    hold.value_owner = owner
    hold.volume_ml = volume
    hold.counted = fleet.active
    hold.merchant_code = rq.merchant_code
    hold.outlet_code = rq.outlet_code
    write_hold(batch, rq.request_id, &hold)
    batch.put(expiry_key(batch, &hold, rq.request_id), b"", batch.db_hold_expiry)
    approve_amount(batch, rq, rp, amount, seq, &card)
    rp.volume_ml = volume
    if fleet.active:
        count_usage(batch, rq, card.card_id, &fleet, amount, volume, True)
        flag_soft(batch, &fleet, amount, volume, rp)
    return 0


cdef bytes expiry_key(BatchContext batch, const HoldRecord* hold, const uint8_t* hold_id):
    return u64_be(hold.expires_s) + _bytes(hold_id, REQUEST_ID_SIZE)


cdef bint read_hold(BatchContext batch, const uint8_t* hold_id, HoldRecord* out) except -1:
    value = batch.get(_bytes(hold_id, REQUEST_ID_SIZE), batch.db_holds)
    if value is None:
        return False
    require(len(value) == sizeof(HoldRecord), "corrupt hold record")
    memcpy(out, <const char*>value, sizeof(HoldRecord))
    return True


cdef int write_hold(BatchContext batch, const uint8_t* hold_id, const HoldRecord* hold) except -1:
    batch.put(_bytes(hold_id, REQUEST_ID_SIZE), _bytes(hold, sizeof(HoldRecord)), batch.db_holds)
    return 0


cdef uint8_t closed_hold_result(BatchContext batch, const HoldRecord* hold):
    if hold.status == HOLD_COMPLETED:
        return RESULT_DECLINED_HOLD_ALREADY_COMPLETED
    if hold.status == HOLD_VOIDED:
        return RESULT_DECLINED_HOLD_VOIDED
    return RESULT_DECLINED_HOLD_EXPIRED


cdef uint64_t close_hold(BatchContext batch, const uint8_t* request_id, uint8_t op,
                         const uint8_t* hold_id, HoldRecord* hold, int64_t settled,
                         uint8_t status) except 0:
    """Settle `settled` to the merchant, release the rest to the card; returns the
    last journal position."""
    cdef uint64_t seq = 0
    cdef int64_t rest = hold.held_minor - settled
    cdef UsageRecord usage
    require(hold.status == HOLD_OPEN and 0 <= settled <= hold.held_minor, "hold closed twice")
    if settled:
        seq = post(batch, request_id, op, hold.value_owner, SLOT_CARD_HELD,
                        SYSTEM_OWNER_BASE + hold.range_id, SLOT_RANGE_MERCHANT,
                        hold.currency, settled)
    if rest:
        seq = post(batch, request_id, op, hold.value_owner, SLOT_CARD_HELD, hold.value_owner,
                        SLOT_CARD_VALUE, hold.currency, rest)
    if hold.counted:
        # What the hold reserved against the card's fleet limits is free again; a
        # completion counts what was actually dispensed (complete()).
        if not read_usage(batch, hold.card_id, &usage):
            raise InvariantViolated("counted hold without usage")
        release_reservation(hold, &usage)
        write_usage(batch, hold.card_id, &usage)
    batch.delete(expiry_key(batch, hold, hold_id), batch.db_hold_expiry)
    hold.status = status
    hold.completed_minor = settled
    write_hold(batch, hold_id, hold)
    batch.retain(RETAIN_HOLD, hold_id)
    return seq


cdef bint check_complete(const CoreRequest* rq, const char* payload) except -1:
    """Zero dispensed completes a hold by releasing all of it."""
    return no_payload(rq) and fuel_fields_valid(rq) and 0 <= rq.amount_minor <= AMOUNT_MINOR_MAX


cdef bint late_completion(BatchContext batch, const CoreRequest* rq,
                          const HoldRecord* hold) except -1:
    """A completion of a hold that time released, within its range's grace window: the
    pump has dispensed, so the host takes it as a forced capture."""
    cdef RangeRecord rng
    if hold.status != HOLD_EXPIRED or rq.amount_minor == 0:
        return False
    read_range(batch, hold.range_id, &rng)
    return batch.now_s <= hold.expires_s + rng.late_grace_s


cdef uint64_t force_capture(BatchContext batch, const CoreRequest* rq, HoldRecord* hold,
                            int64_t charged) except? 0:
    """Take a late completion from the card's value (its hold is gone): allowed below
    what is available, as far as minus the hold's amount, and marked in the journal and
    the hold as a forced capture."""
    cdef uint64_t seq = 0
    if charged:
        seq = post(batch, rq.request_id, OP_COMPLETE, hold.value_owner, SLOT_CARD_VALUE,
                   SYSTEM_OWNER_BASE + hold.range_id, SLOT_RANGE_MERCHANT, hold.currency,
                   charged, REASON_FORCED_CAPTURE)
    hold.status = HOLD_COMPLETED
    hold.forced = True
    hold.completed_minor = charged
    write_hold(batch, rq.ref_request_id, hold)
    return seq


cdef int complete(BatchContext batch, const CoreRequest* rq, const char* payload,
                  CoreReply* rp) except -1:
    cdef CardRecord card
    cdef HoldRecord hold
    cdef Fleet fleet
    if not find_described_card(batch, rq, &card, rp):
        return 0
    if not read_hold(batch, rq.ref_request_id, &hold):
        rp.result = RESULT_DECLINED_HOLD_NOT_FOUND
        return 0
    if foreign_to(batch, rq, hold.merchant_code, hold.outlet_code):
        return decline_foreign(rq, rp)
    if hold.card_id != card.card_id:
        rp.result = RESULT_DECLINED_CARD_MISMATCH
        return 0
    cdef bint late = late_completion(batch, rq, &hold)
    if hold.status != HOLD_OPEN and not late:
        rp.result = closed_hold_result(batch, &hold)
        return 0
    if memcmp(hold.currency, rq.currency, CURRENCY_SIZE) != 0:
        rp.result = RESULT_DECLINED_CURRENCY_MISMATCH
        return 0
    if rq.amount_minor > hold.held_minor or \
            (hold.volume_ml and rq.volume_ml > hold.volume_ml):
        rp.result = RESULT_DECLINED_COMPLETION_EXCEEDS_HOLD
        return 0
    if late and card.status == CARD_CLOSED:
        # Paid out, moved or replaced since: its value is gone, and a forced capture
        # never follows it to another card.
        rp.result = RESULT_DECLINED_CARD_CLOSED
        return 0
    # The member's discount comes off what was dispensed; the card is charged the rest.
    cdef uint16_t discount_bp = member_discount_bp(batch, &card) if rq.amount_minor else 0
    cdef int64_t discount = rq.amount_minor * discount_bp // 10000
    cdef int64_t charged = rq.amount_minor - discount
    if late and available_of(rp) - charged < -hold.held_minor:
        rp.result = RESULT_DECLINED_INSUFFICIENT_FUNDS
        return 0
    fleet.active = load_fleet(batch, &card, &fleet)
    if fleet.active and not products_allowed(batch, rq, &fleet.profile):
        rp.result = RESULT_DECLINED_PRODUCT_NOT_ALLOWED
        return 0
    hold.completed_volume_ml = rq.volume_ml
    if late:
        seq = force_capture(batch, rq, &hold, charged)
    else:
        seq = close_hold(batch, rq.request_id, OP_COMPLETE, rq.ref_request_id, &hold,
                         charged, HOLD_COMPLETED)
    approve(batch, rq, rp, charged, seq, &card)
    rp.discount_bp = discount_bp
    rp.discount_minor = discount
    rp.volume_ml = rq.volume_ml
    if late:
        rp.review = REVIEW_FORCED_CAPTURE
    if fleet.active and rq.amount_minor:
        # close_hold released the stored reservation; the copy in hand follows suit
        # before it counts what was dispensed (and is written over the stored one).
        if hold.counted and not late:
            release_reservation(&hold, &fleet.usage)
        count_usage(batch, rq, card.card_id, &fleet, charged, rq.volume_ml, False)
        flag_soft(batch, &fleet, charged, rq.volume_ml, rp)
    if rq.amount_minor:
        earn_on_sale(batch, rq, &card, charged, rq.volume_ml, PAYMENT_CARD_VALUE, rp, True,
                     discount)
    return 0


cdef bint check_void(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and refers_elsewhere(rq)


cdef int void_hold(BatchContext batch, const CoreRequest* rq, const char* payload,
                   CoreReply* rp) except -1:
    cdef HoldRecord hold
    if not read_hold(batch, rq.ref_request_id, &hold):
        rp.result = RESULT_DECLINED_HOLD_NOT_FOUND
        return 0
    if foreign_to(batch, rq, hold.merchant_code, hold.outlet_code):
        return decline_foreign(rq, rp)
    rp.card_id = hold.card_id
    describe_reply_card(batch, rp)
    if hold.status != HOLD_OPEN:
        rp.result = closed_hold_result(batch, &hold)
        return 0
    if rp.card_status == CARD_CLOSED:      # cannot hold value (closing needs holds settled)
        rp.result = RESULT_DECLINED_CARD_CLOSED
        return 0
    cdef int64_t released = hold.held_minor
    seq = close_hold(batch, rq.request_id, OP_VOID, rq.ref_request_id, &hold, 0, HOLD_VOIDED)
    approve(batch, rq, rp, released, seq)
    return 0


cdef int expire_holds(BatchContext batch) except -1:
    """Release holds whose time is up (oldest first, a bounded number per batch)."""
    cdef HoldRecord hold
    due = due_ids(batch, batch.db_hold_expiry, batch.now_s + 1)    # due at expires_s itself
    for hold_id in due:
        if not read_hold(batch, <const uint8_t*><const char*>hold_id, &hold):
            raise InvariantViolated("expiry of a missing hold")
        close_hold(batch, <const uint8_t*><const char*>hold_id, OP_HOLD_EXPIRY,
                        <const uint8_t*><const char*>hold_id, &hold, 0, HOLD_EXPIRED)
    return len(due)
