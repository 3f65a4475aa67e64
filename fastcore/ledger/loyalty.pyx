# Loyalty earning: what a sale earns (rules, tiers, bonuses, discounts), member standing,
# and points taken back when a sale is refunded.

cdef uint64_t policy_expiry(BatchContext batch, const ProgramRecord* program,
                            uint64_t now_s) except? 0:
    """The last second a lot earned at now_s can be used, by its program's policy (0:
    never), at the end of a local day (in the zone's offset of that day)."""
    cdef int64_t offset_s = offset_at(batch, program.zone_id, program.utc_offset_min, now_s)
    cdef int64_t day = (<int64_t>now_s + offset_s) // 86400
    cdef uint32_t yyyymm = yyyymm_of_day(day)
    cdef int64_t months = (yyyymm // 100) * 12 + (yyyymm % 100 - 1) + program.expiry_n
    cdef int64_t end_day                  # the first day after the last usable one
    if program.expiry_kind == EXPIRY_DAYS_AFTER:
        end_day = day + program.expiry_n + 1
    elif program.expiry_kind == EXPIRY_MONTH_END_AFTER:
        end_day = days_from_civil((months + 1) // 12, (months + 1) % 12 + 1, 1)
    elif program.expiry_kind == EXPIRY_YEAR_END_AFTER:
        end_day = days_from_civil(months // 12 + 1, 1, 1)
    else:
        return 0
    return <uint64_t>(utc_of_local(batch, program.zone_id, program.utc_offset_min,
                                   end_day * 86400) - 1)


cdef uint32_t partner_of(BatchContext batch, uint32_t outlet_code) except? 0xFFFFFFFF:
    """The loyalty partner an outlet belongs to (0: none, or not an outlet we know)."""
    cdef const OutletRecord* outlet
    if outlet_code == 0:
        return 0
    partner = batch.partners.get(outlet_code)
    if partner is None:
        value = batch.get(config_key_of(b'O', outlet_code), batch.db_config)
        partner = (<const OutletRecord*><const char*>value).partner_id if value is not None else 0
        batch.partners[outlet_code] = partner
    return partner


cdef tuple program_of(BatchContext batch, uint32_t range_id):
    """(ProgramRecord bytes, EarnRule[] bytes) of the range's program, or None; read
    once per batch."""
    found = batch.programs.get(range_id, False)
    if found is False:
        link = batch.get(config_key_of(b'g', range_id), batch.db_config)
        if link is None:
            found = None
        else:
            program_id = int.from_bytes(link, "little")
            program = batch.get(config_key_of(b'G', program_id), batch.db_config)
            require(program is not None and len(program) == sizeof(ProgramRecord),
                    "range of a missing program")
            program = local_now(batch, program)
            found = (program, batch.get(config_key_of(b'E', program_id), batch.db_config) or b"")
        batch.programs[range_id] = found
    return found


cdef bytes local_now(BatchContext batch, bytes program):
    """The program with utc_offset_min its zone's offset at the batch's time, so that its
    days, hours, months and birthdays are local ones (earning.pxd reads only that)."""
    cdef ProgramRecord p
    memcpy(&p, <const char*>program, sizeof(p))
    if p.zone_id == 0:
        return program
    p.utc_offset_min = <int16_t>(offset_at(batch, p.zone_id, 0, batch.now_s) // 60)
    return _bytes(&p, sizeof(p))


cdef int read_member(BatchContext batch, uint64_t card_id, MemberRecord* out) except -1:
    value = batch.get(member_key_of(card_id), batch.db_book)
    if value is None:
        memset(out, 0, sizeof(MemberRecord))
    else:
        require(len(value) == sizeof(MemberRecord), "corrupt member record")
        memcpy(out, <const char*>value, sizeof(MemberRecord))
    return 0


cdef int write_member(BatchContext batch, uint64_t card_id, const MemberRecord* member) except -1:
    batch.put(member_key_of(card_id), _bytes(member, sizeof(MemberRecord)), batch.db_book)
    return 0


cdef int record_points(BatchContext batch, uint64_t card_id, uint64_t seq, uint8_t op,
                       int64_t points,
                       uint32_t outlet_code, const PointsLine* explained=NULL) except -1:
    """One line of the card's points history (its statement), keyed by journal seq."""
    cdef PointsLine line
    if explained != NULL:
        memcpy(&line, explained, sizeof(line))
    else:
        memset(&line, 0, sizeof(line))
        line.outlet_code = outlet_code
    line.op = op
    line.points = points
    batch.put(history_key_of(card_id, seq), _bytes(&line, sizeof(line)), batch.db_book)
    return 0


cdef uint64_t credit_points(BatchContext batch, const CoreRequest* rq, const CardRecord* card,
                            int64_t amount, uint64_t valid_until_s, uint8_t op, uint32_t issuer,
                            uint8_t source_slot=SLOT_RANGE_POINTS_ISSUED,
                            uint8_t reason=0, int part=0) except 0:
    """Points onto the card: first they pay back what returns left owed, the rest
    becomes a lot of `issuer`'s points (the request's part-th). The first journal seq."""
    cdef uint64_t owner = SYSTEM_OWNER_BASE + card.range_id, seq = 0
    cdef int64_t owed = -points_owed(batch, card.card_id)
    cdef int64_t repay = owed if owed < amount else amount
    if repay > 0:
        seq = post(batch, rq.request_id, op, owner, source_slot, card.card_id,
                        SLOT_CARD_POINTS_OWED, POINTS, repay, reason)
    if amount > repay:
        last = post(batch, rq.request_id, op, owner, source_slot, card.card_id,
                         SLOT_CARD_POINTS, POINTS, amount - repay, reason)
        seq = seq or last
        new_lot(batch, batch.points, rq, card, amount - repay, valid_until_s, True, issuer, 0,
                part)
    return seq


cdef uint16_t member_discount_bp(BatchContext batch, const CardRecord* card) except? 0xFFFF:
    """The discount (1/100 %) the card's program gives it at a sale now (0: none): the
    level its lifetime spend has reached."""
    cdef MemberRecord member
    cdef const ProgramRecord* program
    found = program_of(batch, card.range_id)
    if found is None:
        return 0
    program = <const ProgramRecord*><const char*>found[0]
    if program.discount_count == 0:
        return 0
    read_member(batch, card.card_id, &member)
    return discount_of(program, member.lifetime_spend_minor)


cdef inline int64_t counted_spend(const ProgramRecord* program, int64_t paid, int64_t discount):
    """What a sale adds to lifetime spend: its price (what was paid and the discount),
    or what was paid if the program says so."""
    return paid if program.flags & PROGRAM_SPEND_AFTER_DISCOUNT else paid + discount


cdef int64_t earn_on_sale(BatchContext batch, const CoreRequest* rq, const CardRecord* card,
                          int64_t spend,
                          int64_t volume, uint8_t method, CoreReply* rp,
                          bint earns=True, int64_t discount=0) except -1:
    """A sale of a card in a loyalty program: its rules, tier and bonuses give points
    on what was paid (`spend`; in the same request, as a lot), and the sale counts
    towards tiers and discounts (counted_spend, with its `discount`). The first journal
    seq of the points (0: none)."""
    cdef MemberRecord member
    cdef PointsLine line
    cdef Sale sale
    cdef const ProgramRecord* program
    cdef int64_t points
    found = program_of(batch, card.range_id)
    if found is None:
        return 0
    program_bytes, rules_bytes = found
    program = <const ProgramRecord*><const char*>program_bytes
    read_member(batch, card.card_id, &member)
    roll_member(program, &member, batch.now_s)
    batch.partner = partner_of(batch, rq.outlet_code)
    sale.amount_minor = spend
    sale.volume_ml = volume
    sale.products = rq.products
    sale.outlet_code = rq.outlet_code
    sale.partner_id = batch.partner
    sale.method = method
    rp.lifetime_spend_minor = member.lifetime_spend_minor
    if earns:
        points = earn(program, <const EarnRule*><const char*>rules_bytes,
                      len(rules_bytes) // sizeof(EarnRule), &sale, &member, batch.now_s,
                      AMOUNT_MINOR_MAX, &line)
    else:                               # the program: no points when paying with points
        memset(&line, 0, sizeof(line))
        line.tier = member.tier
        points = 0
    if count_sale(program, &member, counted_spend(program, spend, discount), points, batch.now_s):
        line.earn_flags |= EARNED_TIER_UP
    write_member(batch, card.card_id, &member)
    rp.points_earned = points
    rp.tier = member.tier
    rp.earn_flags = line.earn_flags
    if points <= 0:
        return 0
    seq = credit_points(batch, rq, card, points, 0, OP_EARN_POINTS, batch.partner)
    record_points(batch, card.card_id, seq, rq.op, points, rq.outlet_code, &line)
    rp.points_seq = seq
    return seq


cdef int count_member(BatchContext batch, const CardRecord* card, int64_t spend,
                      int64_t points, int64_t discount=0) except -1:
    """Count a return (negative) or its reversal towards the member's spend and tier."""
    cdef MemberRecord member
    cdef const ProgramRecord* program
    found = program_of(batch, card.range_id)
    if found is not None:
        program = <const ProgramRecord*><const char*>found[0]
        read_member(batch, card.card_id, &member)
        roll_member(program, &member, batch.now_s)
        count_sale(program, &member, counted_spend(program, spend, discount), points,
                   batch.now_s)
        write_member(batch, card.card_id, &member)
    return 0


cdef int64_t take_back_points(BatchContext batch, const CoreRequest* rq, const CardRecord* card,
                              int64_t points, int64_t spend, int64_t discount=0) except -1:
    """A return takes back the points its sale earned: from the sale's own lot first,
    then earliest-expiring, pending ones too; what was already spent is owed (a
    negative balance that blocks redemption until new points cover it). The first
    journal seq (0: none)."""
    cdef LotRecord lot
    cdef int64_t covered = 0, take
    cdef uint64_t owner = SYSTEM_OWNER_BASE + card.range_id, seq = 0
    count_member(batch, card, -spend, -points, -discount)
    if points <= 0:
        return 0
    own = _bytes(rq.ref_request_id, REQUEST_ID_SIZE)
    lot_ids = [own] if read_lot(batch, batch.points, rq.ref_request_id, &lot) and \
        lot.status == LOT_OPEN else []
    lot_ids += [lot_id for lot_id in card_lot_ids(batch, batch.points, card.card_id, LOTS_VALID_NOW) if lot_id != own]
    for lot_id in lot_ids:
        if covered == points:
            break
        read_lot(batch, batch.points, <const uint8_t*><const char*>lot_id, &lot)
        take = lot.quantity_left if lot.quantity_left < points - covered else points - covered
        lot.quantity_left -= take
        covered += take
        if lot.quantity_left == 0:
            end_lot(batch, batch.points, <const uint8_t*><const char*>lot_id, &lot, LOT_USED_UP)
        else:
            write_lot(batch, batch.points, <const uint8_t*><const char*>lot_id, &lot)
    if covered:
        seq = post(batch, rq.request_id, rq.op, card.card_id, SLOT_CARD_POINTS, owner,
                        SLOT_RANGE_POINTS_ISSUED, POINTS, covered)
    if points > covered:
        last = post(batch, rq.request_id, rq.op, card.card_id, SLOT_CARD_POINTS_OWED, owner,
                         SLOT_RANGE_POINTS_ISSUED, POINTS, points - covered)
        seq = seq or last
    record_points(batch, card.card_id, seq, rq.op, -points, rq.outlet_code)
    return seq


cdef int64_t share_returned(int64_t whole, const RequestRecord* original,
                            int64_t refunded_before, int64_t refunded_after):
    """The part of a sale's `whole` (points it earned, the discount it got) that a
    return of refunded_before..refunded_after of what it charged takes back: in
    proportion, rounded so that returning everything takes back exactly `whole`."""
    cdef int64_t approved = original.reply.approved_minor
    if whole <= 0 or approved <= 0:
        return 0
    big = <object>whole                     # whole * refunded passes int64: Python ints
    return big * refunded_after // approved - big * refunded_before // approved


cdef bint check_loyalty_sale(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and positive_amount(rq) and \
        0 <= rq.points_tendered <= AMOUNT_MINOR_MAX and \
        PAYMENT_CASH <= rq.payment_method <= PAYMENT_OTHER and \
        0 <= rq.volume_ml <= VOLUME_ML_MAX


cdef int loyalty_sale(BatchContext batch, const CoreRequest* rq, const char* payload,
                      CoreReply* rp) except -1:
    """A sale the member pays otherwise (cash, a bank card): the discount the POS
    applies, and the points the rest earns."""
    cdef CardRecord card
    cdef MemberRecord member
    cdef const ProgramRecord* program
    cdef int64_t discount, payable, points = rq.points_tendered, value = 0
    cdef uint64_t earliest_s = 0
    if not find_described_card(batch, rq, &card, rp):
        return 0
    cdef uint8_t bad = usable_card(batch, &card, True)
    found = program_of(batch, card.range_id)
    if not bad and found is None:
        bad = RESULT_DECLINED_NOT_IN_PROGRAM
    taken = []
    if not bad:
        program = <const ProgramRecord*><const char*>found[0]
        read_member(batch, card.card_id, &member)
        rp.discount_bp = discount_of(program, member.lifetime_spend_minor)
        discount = rq.amount_minor * rp.discount_bp // 10000
        payable = rq.amount_minor - discount
        if points:                  # mixed tender: points pay part, at the program's rate
            if program.point_value_millis == 0:
                bad = RESULT_DECLINED_POINTS_HAVE_NO_VALUE
            else:                   # never more points than the sale needs
                points = min(points, (payable * 1000 + program.point_value_millis - 1)
                             // program.point_value_millis)
                value = min(payable, points * program.point_value_millis // 1000)
                bad = take_points(batch, &card, points, &earliest_s, taken)
    if bad:
        rp.result = bad
        rp.discount_bp = 0
        describe_lots(batch, batch.points, rp)
        return 0
    activate(batch, &card)
    rp.discount_minor = discount
    seq = 0                         # a discount of 100 % leaves nothing to count
    if payable:
        seq = post(batch, rq.request_id, OP_LOYALTY_SALE, SYSTEM_OWNER_BASE + card.range_id,
                   SLOT_RANGE_SALES_ELSEWHERE, card.card_id, SLOT_CARD_SALES_ELSEWHERE,
                   rq.currency, payable)
    if taken:
        batch.partner = partner_of(batch, rq.outlet_code)
        used_seq = post_use(batch, batch.points, rq, &card, taken)
        record_points(batch, card.card_id, used_seq, OP_REDEEM_POINTS, -points, rq.outlet_code)
        rp.points_redeemed = points
        rp.points_value_minor = value
    earn_on_sale(batch, rq, &card, payable - value, rq.volume_ml, rq.payment_method, rp,
                 not (taken and program.flags & PROGRAM_NO_EARN_WHEN_REDEEMING), discount)
    approve(batch, rq, rp, payable - value, seq)
    describe_lots(batch, batch.points, rp)
    return 0


cdef bint check_set_member(const CoreRequest* rq, const char* payload) except -1:
    return no_payload(rq) and (rq.birthday_mmdd == 0 or (
        1 <= rq.birthday_mmdd // 100 <= 12 and 1 <= rq.birthday_mmdd % 100 <= 31))


cdef int set_member(BatchContext batch, const CoreRequest* rq, const char* payload,
                    CoreReply* rp) except -1:
    """The holder's birthday (month * 100 + day in profile_id; 0: forget it)."""
    cdef CardRecord card
    cdef MemberRecord member
    cdef uint8_t bad = open_card(batch, rq, &card, rp)
    if bad:
        rp.result = bad
        return 0
    read_member(batch, card.card_id, &member)
    member.birth_month = rq.birthday_mmdd // 100
    member.birth_day = rq.birthday_mmdd % 100
    write_member(batch, card.card_id, &member)
    approve(batch, rq, rp, 0, 0, &card)
    return 0
