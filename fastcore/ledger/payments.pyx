# Money onto and off a card in one step: loads and purchases, with the checks a
# charge runs (card, fleet rules, PIN, limits, funds) in their documented order.


cdef int load(BatchContext batch, const CoreRequest* rq, const char* payload,
              CoreReply* rp) except -1:
    cdef CardRecord card
    cdef RangeRecord rng
    cdef uint8_t bad = money_checks(batch, rq, &card, rp, True)
    if bad:
        rp.result = bad
        return 0
    read_range(batch, card.range_id, &rng)
    if rp.balance_minor + rq.amount_minor > balance_max_of(&rng):
        rp.result = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
        return 0
    cdef uint32_t local_yyyymm
    cdef uint32_t day = <uint32_t>range_local_day(batch, card.range_id, &local_yyyymm)
    cdef int64_t loaded_today = card.loaded_today_minor if card.load_day == day else 0
    if rng.load_per_day_max_minor and loaded_today + rq.amount_minor > rng.load_per_day_max_minor:
        rp.result = RESULT_DECLINED_LOAD_LIMIT_EXCEEDED
        return 0
    if card.status == CARD_ISSUED:
        card.status = CARD_ACTIVE
        card.activated_s = batch.now_s
    if not card.issuer_partner:
        # The partner whose outlet first loads a card issues its value: what is loaded or
        # spent at other partners' outlets is settled with it.
        card.issuer_partner = partner_of(batch, rq.outlet_code)
    card.load_day = day
    card.loaded_today_minor = loaded_today + rq.amount_minor
    write_card(batch, &card)
    seq = post(batch, rq.request_id, OP_LOAD, SYSTEM_OWNER_BASE + card.range_id,
                    SLOT_RANGE_FUNDING, value_owner_of(&card), SLOT_CARD_VALUE,
                    rq.currency, rq.amount_minor)
    approve(batch, rq, rp, rq.amount_minor, seq, &card)
    return 0


cdef int64_t charge_checks(BatchContext batch, const CoreRequest* rq, CardRecord* card,
                           CoreReply* rp,
                           Fleet* fleet, int64_t* volume, bint discounted) except -1:
    """What a purchase or pre-authorization may take: card, fleet rules and prompts,
    PIN (by the card's PIN policy), odometer and fleet limits, the member's discount (`discounted`: a purchase;
    rp.discount_bp and discount_minor say it), then funds for the price less the
    discount (partial approval included). Declined: rp.result says why; *volume is the
    volume to count or reserve."""
    cdef uint8_t bad = money_checks(batch, rq, card, rp, False)
    cdef int64_t due
    if bad:
        rp.result = bad
        return 0
    cdef int64_t amount = rq.amount_minor
    volume[0] = rq.volume_ml
    fleet.active = load_fleet(batch, card, fleet)
    if fleet.active:
        bad = fleet_rules(batch, rq, fleet, rp)
        if bad:
            rp.result = bad
            return 0
    bad = pin_checks(batch, rq, card, fleet, rp)
    if bad:
        rp.result = bad
        return 0
    if fleet.active:
        bad = fleet_limits(batch, rq, fleet, rp, &amount, volume)
        if bad:
            rp.result = bad
            return 0
    if discounted:
        rp.discount_bp = member_discount_bp(batch, card)
        rp.discount_minor = amount * rp.discount_bp // 10000
    due = amount - rp.discount_minor
    if due == 0 and rp.discount_minor:  # a discount of 100 %: free, whatever the card holds
        return 0
    amount = affordable(batch, rq, rp, due)
    if amount == 0:
        rp.result = RESULT_DECLINED_CREDIT_LIMIT_EXCEEDED if card.contract_id \
            else RESULT_DECLINED_INSUFFICIENT_FUNDS
        rp.discount_bp = rp.discount_minor = 0
    return amount


cdef bint check_charge(const CoreRequest* rq, const char* payload) except -1:
    """A purchase or a pre-authorization: a positive amount, fuel fields in range."""
    return no_payload(rq) and fuel_fields_valid(rq) and positive_amount(rq)


cdef int purchase(BatchContext batch, const CoreRequest* rq, const char* payload,
                  CoreReply* rp) except -1:
    cdef CardRecord card
    cdef Fleet fleet
    cdef int64_t volume
    cdef uint64_t seq = 0
    if rq.flags & REQUEST_OFFLINE:
        return offline_sale(batch, rq, rp)
    cdef int64_t amount = charge_checks(batch, rq, &card, rp, &fleet, &volume, True)
    if rp.result:
        return 0
    if amount:
        seq = post(batch, rq.request_id, OP_PURCHASE, value_owner_of(&card), SLOT_CARD_VALUE,
                   SYSTEM_OWNER_BASE + card.range_id, SLOT_RANGE_MERCHANT, rq.currency, amount)
    approve_amount(batch, rq, rp, amount, seq, &card)
    rp.volume_ml = volume
    if fleet.active:
        count_usage(batch, rq, card.card_id, &fleet, amount, volume, False)
        flag_soft(batch, &fleet, amount, volume, rp)
    earn_on_sale(batch, rq, &card, amount, volume, PAYMENT_CARD_VALUE, rp, True,
                 rp.discount_minor)
    return 0


cdef uint8_t offline_refusal(BatchContext batch, const CoreRequest* rq,
                             const CardRecord* card) except 255:
    """Why an offline sale is not posted (0: it is): a card closed since (its value was
    paid out or moved), an amount above the range's offline floor, or an approval older
    than the range's offline age limit (or dated ahead of the host's clock)."""
    cdef RangeRecord rng
    if card.status == CARD_CLOSED:
        return RESULT_DECLINED_CARD_CLOSED
    read_range(batch, card.range_id, &rng)
    if rq.amount_minor > rng.offline_floor_minor:
        return RESULT_DECLINED_OFFLINE_FLOOR_EXCEEDED
    cdef int64_t approved_s = utc_of_local(batch, rng.zone_id, rng.utc_offset_min,
                                           <int64_t>rq.offline_local_s)
    if <int64_t>batch.now_s - approved_s > rng.offline_age_s or \
            approved_s - <int64_t>batch.now_s > OFFLINE_AHEAD_MAX_S:
        return RESULT_DECLINED_OFFLINE_TOO_OLD
    return 0


cdef int offline_sale(BatchContext batch, const CoreRequest* rq, CoreReply* rp) except -1:
    """A sale a terminal approved while it could not reach the host, advised now (store
    and forward). The goods are gone: within the range's offline limits it is posted
    whatever the card holds or has become since (blocked, expired, not yet active, PIN
    tries used up): a forced post, which may leave the card owing (the audit allows and
    counts it). Otherwise it is declined, and recorded like every request; apply_one
    flags both for review, so an advice is never dropped unseen."""
    cdef CardRecord card
    cdef Fleet fleet
    cdef uint64_t seq
    if not find_described_card(batch, rq, &card, rp):
        return 0
    if memcmp(rp.currency, rq.currency, CURRENCY_SIZE) != 0:
        rp.result = RESULT_DECLINED_CURRENCY_MISMATCH
        return 0
    rp.result = offline_refusal(batch, rq, &card)
    if rp.result:
        return 0
    seq = post(batch, rq.request_id, OP_PURCHASE, value_owner_of(&card), SLOT_CARD_VALUE,
               SYSTEM_OWNER_BASE + card.range_id, SLOT_RANGE_MERCHANT, rq.currency,
               rq.amount_minor, REASON_OFFLINE_SALE)
    approve(batch, rq, rp, rq.amount_minor, seq, &card)
    rp.volume_ml = rq.volume_ml
    if not known_products(batch, rq):
        return 0                    # (products the catalog no longer has: posted, not counted)
    fleet.active = load_fleet(batch, &card, &fleet)
    if fleet.active:
        count_usage(batch, rq, card.card_id, &fleet, rq.amount_minor, rq.volume_ml, False)
    if card.status == CARD_ACTIVE:
        earn_on_sale(batch, rq, &card, rq.amount_minor, rq.volume_ml, PAYMENT_CARD_VALUE, rp,
                     True, 0)
    return 0


cdef int64_t affordable(BatchContext batch, const CoreRequest* rq, const CoreReply* rp,
                        int64_t amount):
    """The amount to approve: all of `amount`, what is available when the terminal
    accepts a partial approval, or 0 (decline)."""
    cdef int64_t available = available_of(rp)
    if available >= amount:
        return amount
    if rq.flags & REQUEST_PARTIAL_OK and available > 0:
        return available
    return 0


cdef int approve_amount(BatchContext batch, const CoreRequest* rq, CoreReply* rp, int64_t amount,
                        uint64_t seq, const CardRecord* card) except -1:
    approve(batch, rq, rp, amount, seq, card)
    if amount + rp.discount_minor < rq.amount_minor:    # less than the price less its discount
        rp.result = RESULT_PARTIALLY_APPROVED
    return 0
