# How a sale earns loyalty points: the program's earn rules, tier, welcome and birthday
# bonuses, and discount levels, decided from fixed records (no parsing per request).
# Pure computation on records the ledger reads and writes; declarations only, inlined
# where cimported.
#
# Rounding, in this order, each step rounded down (never in the member's favour twice):
#   each base rule:   amount * points // per   (or volume_ml * points // per)
#   rule multipliers: base * multiplier // 1000
#   tier multiplier:  that * tier multiplier // 1000
#   then fixed additions, the welcome and the birthday bonus are added as they are.
# Combining (ProgramRecord.flags): the best base rule, best multiplier and best fixed
# addition win; with PROGRAM_STACK_RULES base rules and fixed additions add up and
# multipliers add their extras (x1.5 and x2 stack to x2.5).
from libc.stdint cimport INT64_MAX, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset

from layout cimport *
from civil cimport days_from_civil, in_schedule, month_index_of_day, yyyymm_of_day


cdef struct Sale:
    int64_t amount_minor        # what the member paid (after any discount)
    int64_t volume_ml
    const uint8_t* products     # PRODUCT_SET_SIZE bitmap
    uint32_t outlet_code
    uint32_t partner_id         # of the outlet (0: none)
    uint8_t method              # cardgate.v1.PaymentMethod


cdef inline int64_t capped(int64_t value, int64_t cap):
    return value if value < cap else cap


cdef inline bint rule_matches(const EarnRule* rule, const Sale* sale, uint64_t now_s,
                              int64_t local_s):
    cdef int i
    cdef bint any_product = False
    if rule.from_s and now_s < rule.from_s:
        return False
    if rule.until_s and now_s >= rule.until_s:
        return False
    if rule.methods_mask and not (rule.methods_mask >> (sale.method - 1)) & 1:
        return False
    if not in_schedule(rule.days_mask, rule.minute_from, rule.minute_to, local_s):
        return False
    if rule.scope == SCOPE_PARTNER and (sale.partner_id == 0 or sale.partner_id != rule.partner_id):
        return False
    if rule.scope == SCOPE_OUTLETS:
        for i in range(rule.place_count):
            if rule.outlets[i] == sale.outlet_code:
                break
        else:
            return False
    for i in range(PRODUCT_SET_SIZE):
        if rule.products[i]:
            any_product = True
            if rule.products[i] & sale.products[i]:
                return True
    return not any_product


cdef inline int64_t rule_base(const EarnRule* rule, const Sale* sale, int64_t cap):
    """Points a base rule gives the sale (rounded down)."""
    if rule.kind == RULE_PER_AMOUNT:
        return capped(sale.amount_minor * rule.points // rule.per, cap)
    if rule.kind == RULE_PER_VOLUME:
        return capped(sale.volume_ml * rule.points // rule.per, cap)
    return 0


cdef inline void add_part(PointsLine* line, const EarnRule* rule, int64_t earned):
    cdef EarnPart* part
    if line.part_count >= EARN_PARTS_MAX:
        return
    part = &line.parts[line.part_count]
    part.rule_id = rule.rule_id
    part.kind = rule.kind
    part.points = rule.points
    part.per = rule.per
    part.earned = earned
    line.part_count += 1


cdef inline uint16_t tier_multiplier(const ProgramRecord* program, uint8_t tier):
    if tier == 0 or tier > program.tier_count or program.tier_multiplier_permille[tier - 1] == 0:
        return 1000
    return program.tier_multiplier_permille[tier - 1]


cdef inline bint birthday_due(const ProgramRecord* program, const MemberRecord* member,
                              int64_t local_s, uint32_t* year):
    """The sale is within the program's window of the member's birthday (of last, this or
    next year), and that birthday has not had its bonus: year := the birthday's year."""
    cdef int64_t day = local_s // 86400, distance
    cdef int64_t y = yyyymm_of_day(day) // 100, yy
    if not member.birth_month or program.birthday_points <= 0:
        return False
    for yy in range(y - 1, y + 2):
        distance = day - days_from_civil(yy, member.birth_month, member.birth_day)
        if -program.birthday_window_days <= distance <= program.birthday_window_days:
            if member.birthday_year == yy:
                return False
            year[0] = <uint32_t>yy
            return True
    return False


cdef inline int64_t earn(const ProgramRecord* program, const EarnRule* rules, int rule_count,
                         const Sale* sale, MemberRecord* member, uint64_t now_s, int64_t cap,
                         PointsLine* line):
    """Points the sale earns; `line` explains them. Marks the welcome and birthday bonus
    as given on `member` (the caller writes it only if the sale is approved)."""
    cdef int64_t local_s = <int64_t>now_s + program.utc_offset_min * 60
    cdef int64_t base = 0, fixed = 0, mult_extra = 0, value
    cdef int i, best_base = -1, best_mult = -1, best_fixed = -1
    cdef bint stack = program.flags & PROGRAM_STACK_RULES
    cdef const EarnRule* rule
    cdef uint32_t year = 0
    memset(line, 0, sizeof(PointsLine))
    line.op = OP_PURCHASE
    line.outlet_code = sale.outlet_code
    line.amount_minor = sale.amount_minor
    line.volume_ml = sale.volume_ml
    line.tier = member.tier
    for i in range(rule_count):
        rule = &rules[i]
        if not rule_matches(rule, sale, now_s, local_s):
            continue
        if rule.kind == RULE_MULTIPLIER:
            if stack:
                mult_extra += rule.points - 1000
                add_part(line, rule, 0)
            elif best_mult < 0 or rule.points > rules[best_mult].points:
                best_mult = i
        elif rule.kind == RULE_FIXED:
            if stack:
                fixed = capped(fixed + rule.points, cap)
                add_part(line, rule, rule.points)
            elif best_fixed < 0 or rule.points > rules[best_fixed].points:
                best_fixed = i
        else:
            value = rule_base(rule, sale, cap)
            if stack:
                base = capped(base + value, cap)
                add_part(line, rule, value)
            elif best_base < 0 or value > base:
                best_base, base = i, value
    if not stack:
        if best_base >= 0:
            add_part(line, &rules[best_base], base)
        if best_mult >= 0:
            mult_extra = rules[best_mult].points - 1000
            add_part(line, &rules[best_mult], 0)
        if best_fixed >= 0:
            fixed = rules[best_fixed].points
            add_part(line, &rules[best_fixed], fixed)
    if mult_extra < -1000:
        mult_extra = -1000
    if mult_extra > 64000:                   # x65 at most, so nothing overflows
        mult_extra = 64000
    line.base_points = base
    line.fixed_points = fixed
    line.multiplier_permille = <uint16_t>capped(1000 + mult_extra, 65535)
    line.tier_multiplier_permille = tier_multiplier(program, member.tier)
    value = capped(base * (1000 + mult_extra) // 1000, cap)
    value = capped(value * line.tier_multiplier_permille // 1000, cap)
    if program.welcome_points > 0 and not member.flags & MEMBER_WELCOMED:
        member.flags |= MEMBER_WELCOMED
        line.welcome_points = program.welcome_points
        line.earn_flags |= EARNED_WELCOME
    if birthday_due(program, member, local_s, &year):
        member.birthday_year = year
        line.birthday_points = program.birthday_points
        line.earn_flags |= EARNED_BIRTHDAY
    value = capped(value + fixed + line.welcome_points + line.birthday_points, cap)
    line.points = value
    return value


cdef inline void roll_member(const ProgramRecord* program, MemberRecord* member,
                             uint64_t now_s):
    """Move the member's 12 monthly buckets on to the current local month. A tier the
    program no longer has becomes its highest one."""
    cdef int64_t local_s = <int64_t>now_s + program.utc_offset_min * 60
    cdef uint32_t month = month_index_of_day(local_s // 86400), m
    cdef int i
    if member.tier > program.tier_count:
        member.tier = program.tier_count
    if member.month_index >= month:
        return
    if month - member.month_index >= SPEND_MONTHS:
        for i in range(SPEND_MONTHS):
            member.month_spend[i] = 0
            member.month_points[i] = 0
    else:
        for m in range(member.month_index + 1, month + 1):
            member.month_spend[m % SPEND_MONTHS] = 0
            member.month_points[m % SPEND_MONTHS] = 0
    member.month_index = month


cdef inline int64_t rolling_total(const ProgramRecord* program, const MemberRecord* member):
    """What tiers are measured by over the last 12 months: spend, or points earned."""
    cdef int64_t total = 0
    cdef int i
    for i in range(SPEND_MONTHS):
        total += member.month_points[i] if program.flags & PROGRAM_TIERS_BY_POINTS \
            else member.month_spend[i]
    return total


cdef inline int levels_reached(const int64_t* minimums, int count, int64_t value):
    """How many of the ascending minimums the value reaches (tiers, discount levels)."""
    cdef int reached = 0
    while reached < count and value >= minimums[reached]:
        reached += 1
    return reached


cdef inline uint8_t tier_due(const ProgramRecord* program, const MemberRecord* member,
                            uint64_t now_s):
    """The tier the rolling total gives a (rolled) member now: up at once, down only
    from its review date (a year after it was reached)."""
    cdef uint8_t reached = levels_reached(program.tier_min, program.tier_count,
                                          rolling_total(program, member))
    if reached > member.tier or (reached < member.tier and now_s >= member.tier_review_s):
        return reached
    return member.tier


cdef inline int64_t saturated_sum(int64_t total, int64_t change):
    if change > 0 and total > INT64_MAX - change:
        return INT64_MAX
    return total + change


cdef inline bint count_sale(const ProgramRecord* program, MemberRecord* member,
                            int64_t spend, int64_t points, uint64_t now_s):
    """Count a sale (spend may be negative: a return) towards lifetime spend and the
    rolling months, then move the tier (tier_due). True when the tier went up."""
    cdef uint8_t due
    cdef bint up
    cdef int slot = member.month_index % SPEND_MONTHS
    # Totals stay where int64 ends instead of wrapping (spend and points are at most
    # 10^13 a sale, so only a total already near the end can get there).
    member.lifetime_spend_minor = saturated_sum(member.lifetime_spend_minor, spend)
    if member.lifetime_spend_minor < 0:
        member.lifetime_spend_minor = 0
    member.month_spend[slot] = saturated_sum(member.month_spend[slot], spend)
    member.month_points[slot] = saturated_sum(member.month_points[slot], points)
    due = tier_due(program, member, now_s)
    if due == member.tier:
        return False
    up = due > member.tier
    member.tier = due
    member.tier_review_s = now_s + 365 * 86400
    return up


cdef inline uint16_t discount_of(const ProgramRecord* program, int64_t lifetime_spend):
    """The discount (1/100 %) of the highest level the lifetime spend has reached."""
    cdef int reached = levels_reached(program.discount_min, program.discount_count, lifetime_spend)
    return program.discount_bp[reached - 1] if reached else 0


cdef inline bint valid_program(const ProgramRecord* program, int64_t cap):
    """A program's own fields are in range; tiers and discount levels strictly ascend
    (tiers that overlap could not say which one a member is in)."""
    cdef int i
    if program.program_id == 0 or program.expiry_kind > EXPIRY_YEAR_END_AFTER or \
            program.range_count > PROGRAM_RANGES_MAX or \
            not -1440 <= program.utc_offset_min <= 1440 or program.pending_days > 366 or \
            program.tier_count > TIERS_MAX or program.discount_count > DISCOUNT_STEPS_MAX or \
            program.birthday_window_days > 31 or program.flags > 15 or \
            not 0 <= program.welcome_points <= cap or not 0 <= program.birthday_points <= cap or \
            program.point_value_millis > 1_000_000_000:
        return False
    for i in range(program.tier_count):
        if program.tier_min[i] <= (program.tier_min[i - 1] if i else 0) or \
                program.tier_min[i] > cap or \
                not 1000 <= program.tier_multiplier_permille[i] <= MULTIPLIER_PERMILLE_MAX:
            return False
    for i in range(program.discount_count):
        if program.discount_min[i] < 0 or program.discount_min[i] > cap or \
                (i and program.discount_min[i] <= program.discount_min[i - 1]) or \
                program.discount_bp[i] > 10000 or \
                (i and program.discount_bp[i] <= program.discount_bp[i - 1]):
            return False
    return True


cdef inline bint valid_rule(const EarnRule* rule, int64_t cap):
    if rule.kind < RULE_PER_AMOUNT or rule.kind > RULE_FIXED or rule.scope > SCOPE_PARTNER or \
            rule.place_count > RULE_PLACES_MAX or rule.days_mask >= 128 or \
            rule.methods_mask >= 16 or rule.minute_from > 1440 or rule.minute_to > 1440 or \
            (rule.until_s and rule.until_s <= rule.from_s):
        return False
    if (rule.scope == SCOPE_OUTLETS) != (rule.place_count > 0) or \
            (rule.scope == SCOPE_PARTNER and rule.partner_id == 0):
        return False
    if rule.kind == RULE_MULTIPLIER:
        return 0 <= rule.points <= MULTIPLIER_PERMILLE_MAX
    if rule.kind == RULE_FIXED:
        return 0 < rule.points <= cap
    return 0 < rule.points <= RULE_POINTS_MAX and 0 < rule.per <= cap
