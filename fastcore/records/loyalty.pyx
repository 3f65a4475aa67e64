# Loyalty records: programs, earn rules, member standing, lines of a points statement.


class ExpiryKind(enum.IntEnum):
    """Same numbers as cardgate.v1.PointsExpiryKind - 1."""
    NEVER = EXPIRY_NEVER
    DAYS_AFTER = EXPIRY_DAYS_AFTER
    MONTH_END_AFTER = EXPIRY_MONTH_END_AFTER
    YEAR_END_AFTER = EXPIRY_YEAR_END_AFTER


class PaymentMethod(enum.IntEnum):
    """Same numbers as cardgate.v1.PaymentMethod."""
    CARD_VALUE = PAYMENT_CARD_VALUE
    CASH = PAYMENT_CASH
    BANK_CARD = PAYMENT_BANK_CARD
    OTHER = PAYMENT_OTHER


class RuleKind(enum.IntEnum):
    """Same numbers as cardgate.v1.EarnRuleKind."""
    PER_AMOUNT = RULE_PER_AMOUNT
    PER_VOLUME = RULE_PER_VOLUME
    MULTIPLIER = RULE_MULTIPLIER
    FIXED = RULE_FIXED


class RuleScope(enum.IntEnum):
    ALL = SCOPE_ALL
    OUTLETS = SCOPE_OUTLETS
    PARTNER = SCOPE_PARTNER


Tier = namedtuple("Tier", "name minimum multiplier_permille")
DiscountStep = namedtuple("DiscountStep", "minimum_spend_minor discount_bp")
Program = namedtuple("Program", "program_id expiry_kind expiry_n pending_days utc_offset_min "
                     "range_ids stack_rules tiers_by_points tiers discounts welcome_points "
                     "birthday_points birthday_window_days point_value_millis no_earn_when_redeeming "
                     "spend_after_discount zone_id",
                     defaults=(False, False, (), (), 0, 0, 0, 0, False, False, 0))


def pack_program(unsigned int program_id, int expiry_kind, int expiry_n=0, int pending_days=0,
                 int utc_offset_min=0, range_ids=(), *, bint stack_rules=False,
                 bint tiers_by_points=False, tiers=(), discounts=(), long long welcome_points=0,
                 long long birthday_points=0, int birthday_window_days=0,
                 unsigned int point_value_millis=0, bint no_earn_when_redeeming=False,
                 bint spend_after_discount=False, unsigned int zone_id=0):
    """A ProgramRecord. tiers: Tier(name, minimum, multiplier_permille) ascending;
    discounts: DiscountStep(minimum_spend_minor, discount_bp) ascending."""
    cdef ProgramRecord p
    memset(&p, 0, sizeof(p))
    if len(range_ids) > PROGRAM_RANGES_MAX:
        raise ValueError(f"a program covers at most {PROGRAM_RANGES_MAX} card ranges")
    if len(tiers) > TIERS_MAX:
        raise ValueError(f"a program has at most {TIERS_MAX} tiers")
    if len(discounts) > DISCOUNT_STEPS_MAX:
        raise ValueError(f"a program has at most {DISCOUNT_STEPS_MAX} discount levels")
    p.program_id = program_id
    p.expiry_kind = expiry_kind
    p.expiry_n = expiry_n
    p.pending_days = pending_days
    p.utc_offset_min = utc_offset_min
    p.zone_id = zone_id
    p.range_count = len(range_ids)
    for i, range_id in enumerate(range_ids):
        p.range_ids[i] = range_id
    p.flags = (PROGRAM_STACK_RULES if stack_rules else 0) | \
        (PROGRAM_TIERS_BY_POINTS if tiers_by_points else 0) | \
        (PROGRAM_NO_EARN_WHEN_REDEEMING if no_earn_when_redeeming else 0) | \
        (PROGRAM_SPEND_AFTER_DISCOUNT if spend_after_discount else 0)
    p.tier_count = len(tiers)
    for i, (name, minimum, multiplier) in enumerate(tiers):
        raw = name.encode("utf-8")
        if len(raw) > TIER_NAME_SIZE:
            raise ValueError(f"a tier name is at most {TIER_NAME_SIZE} bytes of UTF-8")
        memcpy(p.tier_names[i], <char*>raw, len(raw))
        p.tier_min[i] = minimum
        p.tier_multiplier_permille[i] = multiplier
    p.discount_count = len(discounts)
    for i, (minimum, bp) in enumerate(discounts):
        p.discount_min[i] = minimum
        p.discount_bp[i] = bp
    p.welcome_points = welcome_points
    p.birthday_points = birthday_points
    p.birthday_window_days = birthday_window_days
    p.point_value_millis = point_value_millis
    return (<char*>&p)[:sizeof(p)]


def unpack_program(bytes data):
    _check_size(data, sizeof(ProgramRecord), "program")
    cdef const ProgramRecord* p = <const ProgramRecord*><const char*>data
    tiers = tuple(Tier(p.tier_names[i][:strnlen_max(p.tier_names[i], TIER_NAME_SIZE)]
                       .decode("utf-8", "replace"), p.tier_min[i], p.tier_multiplier_permille[i])
                  for i in range(min(p.tier_count, TIERS_MAX)))
    discounts = tuple(DiscountStep(p.discount_min[i], p.discount_bp[i])
                      for i in range(min(p.discount_count, DISCOUNT_STEPS_MAX)))
    return Program(p.program_id, p.expiry_kind, p.expiry_n, p.pending_days, p.utc_offset_min,
                   tuple(p.range_ids[i] for i in range(min(p.range_count, PROGRAM_RANGES_MAX))),
                   bool(p.flags & PROGRAM_STACK_RULES), bool(p.flags & PROGRAM_TIERS_BY_POINTS),
                   tiers, discounts, p.welcome_points, p.birthday_points,
                   p.birthday_window_days, p.point_value_millis,
                   bool(p.flags & PROGRAM_NO_EARN_WHEN_REDEEMING),
                   bool(p.flags & PROGRAM_SPEND_AFTER_DISCOUNT), p.zone_id)


Rule = namedtuple("Rule", "rule_id kind points per scope outlets partner_id products "
                  "days_mask minute_from minute_to methods from_s until_s",
                  defaults=(RuleScope.ALL, (), 0, (), 0, 0, 0, (), 0, 0))


def pack_rules(rules):
    """EarnRule records, concatenated, of Rule tuples (methods: PaymentMethod values)."""
    cdef EarnRule r
    out = []
    if len(rules) > RULES_MAX:
        raise ValueError(f"a program has at most {RULES_MAX} earn rules")
    for rule in rules:
        memset(&r, 0, sizeof(r))
        r.rule_id = rule.rule_id
        r.kind = rule.kind
        r.points = rule.points
        r.per = rule.per
        r.scope = rule.scope
        if len(rule.outlets) > RULE_PLACES_MAX:
            raise ValueError(f"a rule names at most {RULE_PLACES_MAX} outlets")
        r.place_count = len(rule.outlets)
        for i, code in enumerate(rule.outlets):
            r.outlets[i] = code
        r.partner_id = rule.partner_id
        for code in rule.products:
            if not 0 <= code < PRODUCT_SET_SIZE * 8:
                raise ValueError(f"product codes are 0 to {PRODUCT_SET_SIZE * 8 - 1}, got {code}")
            r.products[code >> 3] |= 1 << (code & 7)
        r.days_mask = rule.days_mask
        r.minute_from = rule.minute_from
        r.minute_to = rule.minute_to
        for method in rule.methods:
            r.methods_mask |= 1 << (int(method) - 1)
        r.from_s = rule.from_s
        r.until_s = rule.until_s
        out.append((<char*>&r)[:sizeof(r)])
    return b"".join(out)


def unpack_rules(bytes data):
    cdef const EarnRule* r
    cdef const char* base = data
    cdef Py_ssize_t offset
    if len(data) % sizeof(EarnRule):
        raise ValueError("earn rules are not a whole number of records")
    rules = []
    for offset in range(0, len(data), sizeof(EarnRule)):
        r = <const EarnRule*>(base + offset)
        rules.append(Rule(r.rule_id, RuleKind(r.kind), r.points, r.per, RuleScope(r.scope),
                          tuple(r.outlets[i] for i in range(min(r.place_count, RULE_PLACES_MAX))),
                          r.partner_id, product_set((<char*>r.products)[:PRODUCT_SET_SIZE]),
                          r.days_mask, r.minute_from, r.minute_to,
                          tuple(PaymentMethod(m + 1) for m in range(4) if r.methods_mask >> m & 1),
                          r.from_s, r.until_s))
    return tuple(rules)


Member = namedtuple("Member", "month_index tier welcomed birth_month birth_day birthday_year "
                    "tier_review_s lifetime_spend_minor month_spend month_points")


def unpack_member(bytes data):
    """month_spend / month_points: the 12 buckets, indexed by month_index % 12."""
    _check_size(data, sizeof(MemberRecord), "member")
    cdef const MemberRecord* m = <const MemberRecord*><const char*>data
    return Member(m.month_index, m.tier, bool(m.flags & MEMBER_WELCOMED), m.birth_month,
                  m.birth_day, m.birthday_year, m.tier_review_s, m.lifetime_spend_minor,
                  tuple(m.month_spend[i] for i in range(SPEND_MONTHS)),
                  tuple(m.month_points[i] for i in range(SPEND_MONTHS)))


def member_standing(bytes program, bytes member, uint64_t now_s):
    """(tier, rolling total, discount_bp) of a member record (None: not a member yet)
    under a program record at now_s, as the next sale would see them: the core's own
    rules (earning.pxd), on a copy."""
    cdef MemberRecord m
    _check_size(program, sizeof(ProgramRecord), "program")
    cdef const ProgramRecord* p = <const ProgramRecord*><const char*>program
    if member is None:
        memset(&m, 0, sizeof(m))
    else:
        _check_size(member, sizeof(MemberRecord), "member")
        memcpy(&m, <const char*>member, sizeof(m))
    roll_member(p, &m, now_s)
    return tier_due(p, &m, now_s), rolling_total(p, &m), discount_of(p, m.lifetime_spend_minor)


EarnPartView = namedtuple("EarnPartView", "rule_id kind points per earned")
PointsLineView = namedtuple("PointsLineView", "op tier welcome birthday tier_up outlet_code "
                            "points amount_minor volume_ml tier_multiplier_permille "
                            "multiplier_permille base_points fixed_points welcome_points "
                            "birthday_points parts")


def unpack_points_line(bytes data):
    _check_size(data, sizeof(PointsLine), "points history")
    cdef const PointsLine* p = <const PointsLine*><const char*>data
    parts = tuple(EarnPartView(p.parts[i].rule_id, p.parts[i].kind, p.parts[i].points,
                               p.parts[i].per, p.parts[i].earned)
                  for i in range(min(p.part_count, EARN_PARTS_MAX)))
    return PointsLineView(p.op, p.tier, bool(p.earn_flags & EARNED_WELCOME),
                          bool(p.earn_flags & EARNED_BIRTHDAY), bool(p.earn_flags & EARNED_TIER_UP),
                          p.outlet_code, p.points, p.amount_minor, p.volume_ml,
                          p.tier_multiplier_permille, p.multiplier_permille, p.base_points,
                          p.fixed_points, p.welcome_points, p.birthday_points, parts)


EARNED_FLAG_WELCOME = EARNED_WELCOME
EARNED_FLAG_BIRTHDAY = EARNED_BIRTHDAY
EARNED_FLAG_TIER_UP = EARNED_TIER_UP
SPEND_WINDOW_MONTHS = SPEND_MONTHS
EARN_RULE_SIZE = sizeof(EarnRule)
EARN_RULES_MAX = RULES_MAX
RULE_OUTLETS_MAX = RULE_PLACES_MAX
PROGRAM_TIERS_MAX = TIERS_MAX
PROGRAM_DISCOUNT_STEPS_MAX = DISCOUNT_STEPS_MAX
TIER_NAME_BYTES = TIER_NAME_SIZE
OUTLET_DISPLAY_BYTES = OUTLET_DISPLAY_SIZE
MULTIPLIER_MAX_PERMILLE = MULTIPLIER_PERMILLE_MAX
RULE_POINTS_LIMIT = RULE_POINTS_MAX
