# Undoing earlier requests: refunds of a purchase, and reversals of any request (also
# of one the host never saw, which leaves a tombstone).


cdef int refund(BatchContext batch, const CoreRequest* rq, const char* payload,
                CoreReply* rp) except -1:
    cdef CardRecord card
    cdef RequestRecord original
    cdef uint8_t bad = money_checks(batch, rq, &card, rp, False)
    if bad:
        rp.result = bad
        return 0
    if not read_request(batch, rq.ref_request_id, &original) or \
            original.flags & RECORD_TOMBSTONE:
        rp.result = RESULT_DECLINED_ORIGINAL_NOT_FOUND
        return 0
    if foreign_to(batch, rq, original.request.merchant_code, original.request.outlet_code):
        return decline_foreign(rq, rp)
    if original.request.op not in (OP_PURCHASE, OP_COMPLETE, OP_LOYALTY_SALE) or \
            not took_effect(original.reply.result):
        rp.result = RESULT_DECLINED_ORIGINAL_NOT_REFUNDABLE
        return 0
    if original.flags & RECORD_REVERSED:
        rp.result = RESULT_DECLINED_ALREADY_REVERSED
        return 0
    if original.reply.card_id != card.card_id:
        rp.result = RESULT_DECLINED_CARD_MISMATCH
        return 0
    if original.refunded_minor + rq.amount_minor > original.reply.approved_minor:
        rp.result = RESULT_DECLINED_REFUND_EXCEEDS_ORIGINAL
        return 0
    cdef bint money = original.request.op != OP_LOYALTY_SALE  # else paid in cash, elsewhere
    if money and rp.balance_minor + rq.amount_minor > BALANCE_MINOR_MAX:
        rp.result = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
        return 0
    back = share_returned(original.reply.points_earned, &original, original.refunded_minor,
                          original.refunded_minor + rq.amount_minor)
    discount_back = share_returned(original.reply.discount_minor, &original,
                                   original.refunded_minor,
                                   original.refunded_minor + rq.amount_minor)
    original.refunded_minor += rq.amount_minor
    write_request(batch, &original)
    cdef uint64_t seq
    if money:
        seq = post(batch, rq.request_id, OP_REFUND, SYSTEM_OWNER_BASE + card.range_id,
                        SLOT_RANGE_MERCHANT, value_owner_of(&card), SLOT_CARD_VALUE,
                        rq.currency, rq.amount_minor)
    else:
        seq = post(batch, rq.request_id, OP_REFUND, card.card_id, SLOT_CARD_SALES_ELSEWHERE,
                        SYSTEM_OWNER_BASE + card.range_id, SLOT_RANGE_SALES_ELSEWHERE,
                        rq.currency, rq.amount_minor)
    points_seq = take_back_points(batch, rq, &card, back, rq.amount_minor, discount_back)
    approve(batch, rq, rp, rq.amount_minor, seq, &card)
    rp.points_earned = -back
    rp.points_seq = points_seq
    if not money:
        describe_lots(batch, batch.points, rp)
    return 0


cdef bint check_reversal(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and refers_elsewhere(rq)


cdef int reverse(BatchContext batch, const CoreRequest* rq, const char* payload,
                 CoreReply* rp) except -1:
    cdef RequestRecord original, purchase
    cdef HoldRecord hold
    cdef CardRecord card
    cdef AccountRecord acc
    cdef uint64_t seq = 0, system_owner
    cdef int64_t amount
    if not read_request(batch, rq.ref_request_id, &original):
        # Never seen: leave a tombstone so that the original, should it arrive
        # late, is declined instead of taking effect after its reversal.
        memset(&original, 0, sizeof(original))
        memcpy(original.request.request_id, rq.ref_request_id, REQUEST_ID_SIZE)
        original.request.merchant_code = rq.merchant_code     # whose blind reversal it is
        original.flags = RECORD_TOMBSTONE
        write_request(batch, &original)
        batch.retain(RETAIN_TOMBSTONE, rq.ref_request_id)
        approve(batch, rq, rp, 0, 0)
        return 0
    if original.flags & RECORD_TOMBSTONE:
        approve(batch, rq, rp, 0, 0)
        return 0
    if foreign_to(batch, rq, original.request.merchant_code, original.request.outlet_code):
        return decline_foreign(rq, rp)
    rp.card_id = original.reply.card_id
    if original.request.op not in (OP_LOAD, OP_PURCHASE, OP_REFUND, OP_PREAUTH,
                                   OP_LOYALTY_SALE):
        describe_reply_card(batch, rp)
        rp.result = RESULT_DECLINED_NOT_REVERSIBLE
        return 0
    if original.flags & RECORD_REVERSED:
        describe_reply_card(batch, rp)
        rp.result = RESULT_DECLINED_ALREADY_REVERSED
        return 0
    if not took_effect(original.reply.result):
        # Nothing took effect, so nothing to undo: the reversal's goal holds.
        original.flags |= RECORD_REVERSED
        write_request(batch, &original)
        approve(batch, rq, rp, 0, 0)
        return 0
    if original.request.op in (OP_PURCHASE, OP_LOYALTY_SALE) and original.refunded_minor:
        describe_reply_card(batch, rp)
        rp.result = RESULT_DECLINED_NOT_REVERSIBLE
        return 0
    if original.request.op == OP_REFUND:
        if not read_request(batch, original.request.ref_request_id, &purchase):
            raise InvariantViolated("refund of a missing purchase")
        if purchase.request.op == OP_LOYALTY_SALE:    # no money of ours moved: return again
            describe_reply_card(batch, rp)
            rp.result = RESULT_DECLINED_NOT_REVERSIBLE
            return 0
    if original.request.op == OP_PREAUTH:
        # An open hold is released, as by a void; a settled one is refunded instead.
        if not read_hold(batch, original.request.request_id, &hold):
            raise InvariantViolated("pre-authorization without hold")
        if hold.status != HOLD_OPEN:
            describe_reply_card(batch, rp)
            rp.result = RESULT_DECLINED_NOT_REVERSIBLE
            return 0
        amount = hold.held_minor
        seq = close_hold(batch, rq.request_id, OP_REVERSAL, original.request.request_id, &hold,
                              0, HOLD_VOIDED)
        original.flags |= RECORD_REVERSED
        write_request(batch, &original)
        approve(batch, rq, rp, amount, seq)
        return 0
    amount = original.reply.approved_minor
    value = batch.get(card_key_of(original.reply.card_id), batch.db_book)
    memcpy(&card, <const char*>value, sizeof(card))
    describe_card(batch, &card, rp)
    if card.status == CARD_CLOSED:
        # A closed card (paid out, moved, or replaced: its value went to the new card)
        # takes no value on or off: the reversal is declined, the original stands.
        rp.result = RESULT_DECLINED_CARD_CLOSED
        return 0
    if original.request.op == OP_LOYALTY_SALE:
        if amount + original.reply.points_value_minor:
            seq = post(batch, rq.request_id, OP_REVERSAL, card.card_id, SLOT_CARD_SALES_ELSEWHERE,
                       SYSTEM_OWNER_BASE + card.range_id, SLOT_RANGE_SALES_ELSEWHERE,
                       original.request.currency, amount + original.reply.points_value_minor)
        points_seq = take_back_points(batch, rq, &card, original.reply.points_earned, amount,
                                      original.reply.discount_minor)
        if original.reply.points_redeemed:
            restore_redeemed(batch, rq, &card, &original)
        original.flags |= RECORD_REVERSED
        write_request(batch, &original)
        approve(batch, rq, rp, amount, seq)
        rp.points_earned = -original.reply.points_earned
        rp.points_seq = points_seq
        describe_lots(batch, batch.points, rp)
        return 0
    system_owner = SYSTEM_OWNER_BASE + card.range_id
    if original.request.op == OP_PURCHASE:
        if rp.balance_minor + amount > BALANCE_MINOR_MAX:
            rp.result = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
            return 0
        if amount:                          # else a free sale (a discount of 100 %)
            seq = post(batch, rq.request_id, OP_REVERSAL, system_owner, SLOT_RANGE_MERCHANT,
                       value_owner_of(&card), SLOT_CARD_VALUE, rp.currency, amount)
            uncount_purchase(batch, &card, &original)
        take_back_points(batch, rq, &card, original.reply.points_earned, amount,
                         original.reply.discount_minor)
    else:
        if available_of(rp) < amount:
            rp.result = RESULT_DECLINED_INSUFFICIENT_FUNDS
            return 0
        seq = post(batch, rq.request_id, OP_REVERSAL, value_owner_of(&card), SLOT_CARD_VALUE,
                        system_owner,
                        SLOT_RANGE_MERCHANT if original.request.op == OP_REFUND
                        else SLOT_RANGE_FUNDING,
                        rp.currency, amount)
        if original.request.op == OP_REFUND:
            discount_back = share_returned(purchase.reply.discount_minor, &purchase,
                                           purchase.refunded_minor - amount,
                                           purchase.refunded_minor)
            purchase.refunded_minor -= amount
            require(purchase.refunded_minor >= 0, "refunded total below zero")
            write_request(batch, &purchase)
            if original.reply.points_earned < 0:    # the points it took back return
                points_seq = credit_points(batch, rq, &card, -original.reply.points_earned, 0,
                                                OP_EARN_POINTS, 0)
                record_points(batch, card.card_id, points_seq, OP_REVERSAL,
                                   -original.reply.points_earned, 0)
            count_member(batch, &card, amount, -original.reply.points_earned, discount_back)
    original.flags |= RECORD_REVERSED
    write_request(batch, &original)
    approve(batch, rq, rp, amount, seq)
    return 0


cdef int restore_redeemed(BatchContext batch, const CoreRequest* rq, const CardRecord* card,
                          const RequestRecord* original) except -1:
    """A reversed sale's points come back: what each issuing partner's points paid (one
    redemption entry each, right after the sale's own) returns as a new lot named after
    that partner, and its reversal entry keeps where they were redeemed, so that
    settlement takes back exactly the flow the sale made."""
    cdef JournalEntry entry
    cdef uint64_t seq = original.reply.journal_seq + 1
    cdef int64_t restored = 0
    while restored < original.reply.points_redeemed:
        value = batch.get(u64_be(seq), batch.db_journal)
        if value is None:
            raise InvariantViolated("a sale paid with points without its redemption")
        memcpy(&entry, <const char*>value, sizeof(entry))
        require(entry.op == OP_REDEEM_POINTS and memcmp(entry.request_id,
                original.request.request_id, REQUEST_ID_SIZE) == 0,
                "a sale's redemption entries are not right after it")
        batch.partner, batch.origin_partner = entry.partner_id, entry.origin_partner
        points_seq = credit_points(batch, rq, card, entry.amount_minor, 0, OP_REVERSAL,
                                   entry.origin_partner, SLOT_RANGE_POINTS_REDEEMED, 0,
                                   <int>(seq - original.reply.journal_seq - 1))
        record_points(batch, card.card_id, points_seq, OP_REVERSAL, entry.amount_minor, 0)
        restored += entry.amount_minor
        seq += 1
    require(restored == original.reply.points_redeemed, "redemption entries differ from the sale")
    batch.partner = batch.origin_partner = 0
    return 0
