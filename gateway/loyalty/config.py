"""A loyalty program's configuration at the gateway: SetProgram's and SetEarnRules'
messages checked field by field (with errors that name the field) and packed into the
core's fixed records, which the core compiles into its hot path."""
from cardgate.fastcore import records
from cardgate.fastcore.records import DiscountStep, Rule, RuleKind, RuleScope, Tier
from cardgate.gateway import validation, zones
from cardgate.gateway.fleet import sales as fleet
from cardgate.gateway.validation import InvalidArgument

RULE_ID_MAX = 0xFFFF
BIRTHDAY_WINDOW_DAYS_MAX = 31
POINT_VALUE_MILLIS_MAX = 1_000_000_000
CAP = records.AMOUNT_MINOR_MAX


def _within(value: int, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be {low} to {high}, got {value}")
    return value


def tiers_of(m):
    if len(m.tiers) > records.PROGRAM_TIERS_MAX:
        raise InvalidArgument("tiers", f"at most {records.PROGRAM_TIERS_MAX}")
    tiers, below = [], 0
    for i, tier in enumerate(m.tiers):
        where = f"tiers[{i}]"
        if not tier.name or len(tier.name.encode("utf-8")) > records.TIER_NAME_BYTES:
            raise InvalidArgument(f"{where}.name", f"must be 1 to {records.TIER_NAME_BYTES} bytes of UTF-8")
        if tier.minimum <= below:
            raise InvalidArgument(f"{where}.minimum", f"{tier.minimum} overlaps the tier below "
                                  f"(minimums must rise, each above {below})")
        _within(tier.minimum, f"{where}.minimum", below + 1, CAP)
        _within(tier.multiplier_permille, f"{where}.multiplier_permille", 1000,
                records.MULTIPLIER_MAX_PERMILLE)
        tiers.append(Tier(tier.name, tier.minimum, tier.multiplier_permille))
        below = tier.minimum
    return tuple(tiers)


def discounts_of(m):
    if len(m.discounts) > records.PROGRAM_DISCOUNT_STEPS_MAX:
        raise InvalidArgument("discounts", f"at most {records.PROGRAM_DISCOUNT_STEPS_MAX}")
    steps = []
    for i, step in enumerate(m.discounts):
        where = f"discounts[{i}]"
        _within(step.minimum_spend_minor, f"{where}.minimum_spend_minor", 0, CAP)
        _within(step.discount_bp, f"{where}.discount_bp", 1, 10_000)
        if steps and (step.minimum_spend_minor <= steps[-1].minimum_spend_minor or
                      step.discount_bp <= steps[-1].discount_bp):
            raise InvalidArgument(where, "levels must rise in both minimum spend and discount")
        steps.append(DiscountStep(step.minimum_spend_minor, step.discount_bp))
    return tuple(steps)


def program_payload(m) -> bytes:
    """The core's ProgramRecord of a SetProgramRequest."""
    if not 1 <= m.expiry_kind <= len(records.ExpiryKind):
        raise InvalidArgument("expiry_kind", "must be POINTS_EXPIRY_KIND_NEVER, _DAYS_AFTER, "
                              "_MONTH_END_AFTER or _YEAR_END_AFTER")
    validation.config_id(m.program_id, "program_id")
    _within(m.expiry_n, "expiry_n", 0, 0xFFFF)
    _within(m.pending_days, "pending_days", 0, 366)
    validation.utc_offset_min(m.utc_offset_min)
    if len(m.range_ids) > records.PROGRAM_RANGES or len(set(m.range_ids)) != len(m.range_ids):
        raise InvalidArgument("range_ids", f"at most {records.PROGRAM_RANGES}, each once")
    _within(m.welcome_points, "welcome_points", 0, CAP)
    _within(m.birthday_points, "birthday_points", 0, CAP)
    _within(m.birthday_window_days, "birthday_window_days", 0, BIRTHDAY_WINDOW_DAYS_MAX)
    _within(m.point_value_millis, "point_value_millis", 0, POINT_VALUE_MILLIS_MAX)
    return records.pack_program(
        m.program_id, records.ExpiryKind(m.expiry_kind - 1), m.expiry_n, m.pending_days, m.utc_offset_min,
        list(m.range_ids), stack_rules=m.stack_rules, tiers_by_points=m.tiers_by_points,
        tiers=tiers_of(m), discounts=discounts_of(m), welcome_points=m.welcome_points,
        birthday_points=m.birthday_points, birthday_window_days=m.birthday_window_days,
        point_value_millis=m.point_value_millis, no_earn_when_redeeming=m.no_earn_when_redeeming,
        spend_after_discount=m.lifetime_spend_after_discount,
        zone_id=zones.zone_fields(m.time_zone, m.utc_offset_min)[0])


def _rule(rule, where: str) -> Rule:
    _within(rule.rule_id, f"{where}.rule_id", 1, RULE_ID_MAX)
    if rule.kind not in tuple(RuleKind):
        raise InvalidArgument(f"{where}.kind", "must be EARN_RULE_KIND_PER_AMOUNT, _PER_VOLUME, "
                              "_MULTIPLIER or _FIXED")
    kind = RuleKind(rule.kind)
    if kind in (RuleKind.PER_AMOUNT, RuleKind.PER_VOLUME):
        _within(rule.points, f"{where}.points", 1, records.RULE_POINTS_LIMIT)
        _within(rule.per, f"{where}.per", 1, CAP)
    elif kind == RuleKind.MULTIPLIER:
        _within(rule.points, f"{where}.points", 0, records.MULTIPLIER_MAX_PERMILLE)
    else:
        _within(rule.points, f"{where}.points", 1, CAP)
    if rule.outlets and rule.partner_id:
        raise InvalidArgument(where, "names outlets and a partner; a rule has one scope")
    if len(rule.outlets) > records.RULE_OUTLETS_MAX:
        raise InvalidArgument(f"{where}.outlets", f"at most {records.RULE_OUTLETS_MAX}")
    outlets = []
    for i, ref in enumerate(rule.outlets):
        if not (ref.merchant_id and ref.outlet_id):
            raise InvalidArgument(f"{where}.outlets[{i}]", "merchant_id and outlet_id are both needed")
        outlets.append(fleet.outlet_code(ref.merchant_id, ref.outlet_id))
    scope = RuleScope.OUTLETS if outlets else RuleScope.PARTNER if rule.partner_id else RuleScope.ALL
    methods = []
    for i, method in enumerate(rule.payment_methods):
        if method not in tuple(records.PaymentMethod):
            raise InvalidArgument(f"{where}.payment_methods[{i}]", "must be PAYMENT_METHOD_CARD_VALUE, "
                                  "_CASH, _BANK_CARD or _OTHER")
        methods.append(records.PaymentMethod(method))
    days_mask = fleet.schedule_of(rule, "days", f"{where}.")
    _within(rule.valid_from_s, f"{where}.valid_from_s", 0, 2**63 - 1)
    _within(rule.valid_until_s, f"{where}.valid_until_s", 0, 2**63 - 1)
    if rule.valid_until_s and rule.valid_until_s <= rule.valid_from_s:
        raise InvalidArgument(f"{where}.valid_until_s", "must be after valid_from_s")
    products = tuple(fleet.product_code(c, f"{where}.product_codes[{i}]")
                     for i, c in enumerate(rule.product_codes))
    return Rule(rule.rule_id, kind, rule.points, rule.per if kind in (RuleKind.PER_AMOUNT,
                                                                      RuleKind.PER_VOLUME) else 0,
                scope, tuple(outlets), rule.partner_id, products, days_mask, rule.minute_from,
                rule.minute_to, tuple(methods), rule.valid_from_s, rule.valid_until_s)


def rules_payload(m) -> bytes:
    """The core's EarnRule records of a SetEarnRulesRequest."""
    validation.config_id(m.program_id, "program_id")
    if len(m.rules) > records.EARN_RULES_MAX:
        raise InvalidArgument("rules", f"at most {records.EARN_RULES_MAX}")
    rules = [_rule(rule, f"rules[{i}]") for i, rule in enumerate(m.rules)]
    ids = [rule.rule_id for rule in rules]
    if len(set(ids)) != len(ids):
        raise InvalidArgument("rules", "each rule_id once")
    return records.pack_rules(rules)
