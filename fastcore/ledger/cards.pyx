# Cards: finding and describing a card, whether it may be used, its status and PIN,
# and the operator's corrections of its value (adjust, clear, close).


cdef bint find_card(BatchContext batch, const uint8_t* card_key, CardRecord* card) except -1:
    card_id_be = batch.get(_bytes(card_key, CARD_KEY_SIZE), batch.db_pan)
    if card_id_be is None:
        return False
    value = batch.get(card_key_of(u64_from_be(<const unsigned char*><const char*>card_id_be)),
                      batch.db_book)
    require(value is not None and len(value) == sizeof(CardRecord),
            "PAN index points at a missing card")
    memcpy(card, <const char*>value, sizeof(CardRecord))
    return True


cdef int describe_card(BatchContext batch, const CardRecord* card, CoreReply* rp) except -1:
    cdef AccountRecord acc
    cdef ContractRecord contract
    cdef uint64_t owner = value_owner_of(card)
    rp.card_id = card.card_id
    rp.card_status = card.status
    rp.pan_first6 = card.pan_first6
    rp.pan_last4 = card.pan_last4
    rp.pan_length = card.pan_length
    rp.expiry_yyyymm = card.expiry_yyyymm
    if not read_account(batch, owner, SLOT_CARD_VALUE, &acc):
        raise InvariantViolated("card without account")
    memcpy(rp.currency, acc.currency, CURRENCY_SIZE)
    rp.balance_minor = acc.balance_minor
    rp.pending_minor = 0
    rp.credit_limit_minor = 0
    if card.contract_id:
        read_contract(batch, card.contract_id, &contract)
        rp.credit_limit_minor = contract.credit_limit_minor
    if read_account(batch, owner, SLOT_CARD_HELD, &acc):
        # What is held for pre-authorizations still belongs to the card, but is
        # not available: balance = value + held, available = value.
        rp.balance_minor += acc.balance_minor
        rp.pending_minor = acc.balance_minor
    return 0


cdef bint find_described_card(BatchContext batch, const CoreRequest* rq, CardRecord* card,
                              CoreReply* rp) except -1:
    """The request's card, described in the reply; False (declined) when unknown."""
    if not find_card(batch, rq.card_key, card):
        rp.result = RESULT_DECLINED_UNKNOWN_CARD
        return False
    describe_card(batch, card, rp)
    return True


cdef int describe_reply_card(BatchContext batch, CoreReply* rp) except -1:
    """Describe the card the reply names (rp.card_id), if any, as it is now."""
    cdef CardRecord card
    if rp.card_id:
        value = batch.get(card_key_of(rp.card_id), batch.db_book)
        memcpy(&card, <const char*>value, sizeof(card))
        describe_card(batch, &card, rp)
    return 0


cdef uint8_t usable_card(BatchContext batch, const CardRecord* card, bint allow_issued) except 255:
    if card.status == CARD_CLOSED:
        return RESULT_DECLINED_CARD_CLOSED
    if card.status == CARD_BLOCKED:
        return RESULT_DECLINED_CARD_BLOCKED
    if card.status == CARD_ISSUED and not allow_issued:
        return RESULT_DECLINED_CARD_NOT_ACTIVE
    cdef uint32_t local_yyyymm
    range_local_day(batch, card.range_id, &local_yyyymm)
    if card.expiry_yyyymm < local_yyyymm:
        return RESULT_DECLINED_CARD_EXPIRED
    return 0


cdef uint8_t money_checks(BatchContext batch, const CoreRequest* rq, CardRecord* card,
                          CoreReply* rp,
                          bint allow_issued) except 255:
    """Card found, usable, same currency: 0, else the decline (rp describes the card)."""
    if not find_card(batch, rq.card_key, card):
        return RESULT_DECLINED_UNKNOWN_CARD
    describe_card(batch, card, rp)
    cdef uint8_t bad = usable_card(batch, card, allow_issued)
    if bad:
        return bad
    if memcmp(rp.currency, rq.currency, CURRENCY_SIZE) != 0:
        return RESULT_DECLINED_CURRENCY_MISMATCH
    return 0


cdef bint find_range(BatchContext batch, uint32_t range_id, RangeRecord* rng) except -1:
    value = batch.get(range_key_of(range_id), batch.db_config)
    if value is None:
        return False
    require(len(value) == sizeof(RangeRecord), "corrupt range record")
    memcpy(rng, <const char*>value, sizeof(RangeRecord))
    return True


cdef int read_range(BatchContext batch, uint32_t range_id, RangeRecord* rng) except -1:
    if not find_range(batch, range_id, rng):
        raise InvariantViolated("card of a missing range")
    return 0


cdef uint8_t open_card(BatchContext batch, const CoreRequest* rq, CardRecord* card,
                       CoreReply* rp) except 255:
    """The request's card, described; 0 when it exists and is not closed."""
    if not find_described_card(batch, rq, card, rp):
        return RESULT_DECLINED_UNKNOWN_CARD
    if card.status == CARD_CLOSED:
        return RESULT_DECLINED_CARD_CLOSED
    return 0


cdef uint8_t own_value_card(BatchContext batch, const CoreRequest* rq, CardRecord* card,
                            CoreReply* rp) except 255:
    """open_card, for corrections of a card's own value: a card drawing on a contract
    has none (its contract is corrected instead)."""
    cdef uint8_t bad = open_card(batch, rq, card, rp)
    if not bad and card.contract_id:
        return RESULT_DECLINED_CONTRACT_CARD
    return bad


cdef int activate(BatchContext batch, CardRecord* card) except -1:
    if card.status == CARD_ISSUED:
        card.status = CARD_ACTIVE
        card.activated_s = batch.now_s
        write_card(batch, card)
    return 0


cdef int set_status(BatchContext batch, const CoreRequest* rq, const char* payload,
                    CoreReply* rp) except -1:
    cdef CardRecord card
    if not find_described_card(batch, rq, &card, rp):
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
    write_card(batch, &card)
    approve(batch, rq, rp, 0, 0)
    return 0


cdef bint check_set_pin(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and rq.flags & REQUEST_PIN_PRESENT != 0


cdef int set_pin(BatchContext batch, const CoreRequest* rq, const char* payload,
                 CoreReply* rp) except -1:
    cdef CardRecord card
    if not find_described_card(batch, rq, &card, rp):
        return 0
    if card.status == CARD_CLOSED:
        rp.result = RESULT_DECLINED_CARD_CLOSED
        return 0
    card.pin_set = 1
    card.pin_failures = 0
    memcpy(card.pin_verifier, rq.pin_verifier, PIN_VERIFIER_SIZE)
    write_card(batch, &card)
    approve(batch, rq, rp, 0, 0)
    return 0


cdef uint8_t pin_policy_of(BatchContext batch, const CardRecord* card,
                           const Fleet* fleet) except 255:
    """The card's PinPolicy: its restriction profile's where that says one, else its
    range's (unset: required)."""
    cdef RangeRecord rng
    if fleet.active:
        if fleet.profile.prompts & PROMPT_PIN:
            return PIN_POLICY_REQUIRED
        if fleet.profile.flags & PROFILE_PIN_NOT_USED:
            return PIN_POLICY_NOT_USED
        if fleet.profile.flags & PROFILE_PIN_OPTIONAL:
            return PIN_POLICY_OPTIONAL
    read_range(batch, card.range_id, &rng)
    return rng.pin_policy or PIN_POLICY_REQUIRED


cdef uint8_t pin_checks(BatchContext batch, const CoreRequest* rq, CardRecord* card,
                        const Fleet* fleet, CoreReply* rp) except 255:
    """0, or why a charge is declined for its PIN: a card with a PIN set must be given
    it where its policy requires one; a PIN given is checked unless the policy says PINs
    are not used."""
    if not card.pin_set:
        return 0
    cdef uint8_t policy = pin_policy_of(batch, card, fleet)
    if policy == PIN_POLICY_NOT_USED:
        return 0
    if not rq.flags & REQUEST_PIN_PRESENT:
        return RESULT_DECLINED_PIN_REQUIRED if policy == PIN_POLICY_REQUIRED else 0
    return 0 if check_pin(batch, rq, card, rp) else RESULT_DECLINED_WRONG_PIN


cdef bint check_pin(BatchContext batch, const CoreRequest* rq, CardRecord* card,
                    CoreReply* rp) except -1:
    """True unless a PIN was entered and is wrong. Wrong PINs in a row are counted, and
    the range's pin_tries_max of them block the card; a right one resets the count.
    (The one state a declined request changes.)"""
    cdef RangeRecord rng
    if not (rq.flags & REQUEST_PIN_PRESENT and card.pin_set):
        return True
    if memcmp(rq.pin_verifier, card.pin_verifier, PIN_VERIFIER_SIZE) == 0:
        if card.pin_failures:
            card.pin_failures = 0
            write_card(batch, card)
        return True
    read_range(batch, card.range_id, &rng)
    if card.pin_failures < 255:
        card.pin_failures += 1
    if card.pin_failures >= rng.pin_tries_max:
        card.status = CARD_BLOCKED
    write_card(batch, card)
    describe_card(batch, card, rp)
    return False


cdef int adjust(BatchContext batch, const CoreRequest* rq, const char* payload,
                CoreReply* rp) except -1:
    cdef CardRecord card
    cdef uint8_t bad = own_value_card(batch, rq, &card, rp)
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
        seq = post(batch, rq.request_id, OP_ADJUST, card.card_id, SLOT_CARD_VALUE, funding,
                        SLOT_RANGE_FUNDING, rq.currency, rq.amount_minor, rq.reason)
    else:
        if rp.balance_minor + rq.amount_minor > BALANCE_MINOR_MAX:
            rp.result = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
            return 0
        seq = post(batch, rq.request_id, OP_ADJUST, funding, SLOT_RANGE_FUNDING, card.card_id,
                        SLOT_CARD_VALUE, rq.currency, rq.amount_minor, rq.reason)
    approve(batch, rq, rp, rq.amount_minor, seq)
    return 0


cdef bint check_clear(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and rq.amount_minor == 0


cdef int clear(BatchContext batch, const CoreRequest* rq, const char* payload,
               CoreReply* rp) except -1:
    cdef CardRecord card
    cdef uint64_t seq = 0
    cdef uint8_t bad = own_value_card(batch, rq, &card, rp)
    if bad:
        rp.result = bad
        return 0
    cdef int64_t cleared = rp.balance_minor - rp.pending_minor
    if cleared < 0:                         # a forced capture left it owing: nothing to clear
        rp.result = RESULT_DECLINED_INSUFFICIENT_FUNDS
        return 0
    if cleared:
        seq = post(batch, rq.request_id, OP_CLEAR, card.card_id, SLOT_CARD_VALUE,
                        SYSTEM_OWNER_BASE + card.range_id, SLOT_RANGE_FUNDING, rp.currency,
                        cleared, rq.reason)
    approve(batch, rq, rp, cleared, seq)
    return 0


cdef bint check_deactivate(const CoreRequest* rq, const char* payload) except -1:
    if rq.amount_minor != 0 or not CLOSE_AT_ZERO <= rq.close_disposition <= CLOSE_MOVE:
        return False
    if rq.close_disposition != CLOSE_MOVE:
        return no_payload(rq)
    return rq.payload_size == CARD_KEY_SIZE and card_payload_matches(rq, payload)


cdef int deactivate(BatchContext batch, const CoreRequest* rq, const char* payload,
                    CoreReply* rp) except -1:
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
    cdef uint8_t bad = open_card(batch, rq, &card, rp)
    cdef int64_t value = 0
    if not bad and not card.contract_id:
        value = balance_of(batch, card.card_id, SLOT_CARD_VALUE)
    if not bad and (balance_of(batch, value_owner_of(&card), SLOT_CARD_HELD) or
                    balance_of(batch, card.card_id, SLOT_CARD_POINTS_HELD)):
        bad = RESULT_DECLINED_HOLDS_OPEN
    if not bad and value < 0:               # a forced capture left it owing: load it first
        bad = RESULT_DECLINED_INSUFFICIENT_FUNDS
    if not bad and rq.close_disposition == CLOSE_AT_ZERO and value:
        bad = RESULT_DECLINED_BALANCE_NOT_ZERO
    if not bad and rq.close_disposition == CLOSE_MOVE:
        if not find_card(batch, <const uint8_t*>payload, &receiver) or receiver.card_id == card.card_id \
                or receiver.contract_id or usable_card(batch, &receiver, True):
            bad = RESULT_DECLINED_RECEIVING_CARD_UNUSABLE
        else:
            read_account(batch, receiver.card_id, SLOT_CARD_VALUE, &acc)
            read_range(batch, receiver.range_id, &rng)
            if memcmp(acc.currency, rp.currency, CURRENCY_SIZE) != 0:
                bad = RESULT_DECLINED_CURRENCY_MISMATCH
            elif acc.balance_minor + value > balance_max_of(&rng):
                bad = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
    if bad:
        rp.result = bad
        return 0
    if value and rq.close_disposition == CLOSE_PAYOUT:
        seq = post(batch, rq.request_id, OP_DEACTIVATE, card.card_id, SLOT_CARD_VALUE,
                        SYSTEM_OWNER_BASE + card.range_id, SLOT_RANGE_FUNDING, rp.currency, value,
                        rq.reason)
    elif value and rq.close_disposition == CLOSE_MOVE:
        seq = post(batch, rq.request_id, OP_DEACTIVATE, card.card_id, SLOT_CARD_VALUE,
                        receiver.card_id, SLOT_CARD_VALUE, rp.currency, value, rq.reason)
        activate(batch, &receiver)
    card.status = CARD_CLOSED
    write_card(batch, &card)
    approve(batch, rq, rp, value, seq, &card)
    return 0
