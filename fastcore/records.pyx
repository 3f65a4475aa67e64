"""Python view of fastcore's packed records: sizes, limits, keys, pack and unpack.

The gateway packs requests with ``pack_request``; the audit, reads and the reference
model decode LMDB values with the ``unpack_*`` functions. The layout itself is
declared once, in records.pxd.
"""
import enum
import hashlib
from collections import namedtuple

from libc.string cimport memcpy, memset, strncpy

from layout cimport *  # found through the build include path (setup.py)
from earning cimport discount_of, roll_member, rolling_total, tier_due


class Op(enum.IntEnum):
    NONE = OP_NONE
    CREATE_RANGE = OP_CREATE_RANGE
    ISSUE_CARD = OP_ISSUE_CARD
    SET_STATUS = OP_SET_STATUS
    LOAD = OP_LOAD
    PURCHASE = OP_PURCHASE
    REFUND = OP_REFUND
    REVERSAL = OP_REVERSAL
    SET_PIN = OP_SET_PIN
    PREAUTH = OP_PREAUTH
    COMPLETE = OP_COMPLETE
    VOID = OP_VOID
    HOLD_EXPIRY = OP_HOLD_EXPIRY
    ADJUST = OP_ADJUST
    CLEAR = OP_CLEAR
    DEACTIVATE = OP_DEACTIVATE
    SELL_PACKAGE = OP_SELL_PACKAGE
    USE_UNITS = OP_USE_UNITS
    PACKAGE_EXPIRY = OP_PACKAGE_EXPIRY
    DEFINE_PRODUCT = OP_DEFINE_PRODUCT
    SET_PROFILE = OP_SET_PROFILE
    DEFINE_OUTLET = OP_DEFINE_OUTLET
    SET_CONTRACT = OP_SET_CONTRACT
    ASSIGN_CARD = OP_ASSIGN_CARD
    EARN_POINTS = OP_EARN_POINTS
    REDEEM_POINTS = OP_REDEEM_POINTS
    POINTS_EXPIRY = OP_POINTS_EXPIRY
    SET_PROGRAM = OP_SET_PROGRAM
    ADJUST_POINTS = OP_ADJUST_POINTS
    TRANSFER_POINTS = OP_TRANSFER_POINTS
    SET_RULES = OP_SET_RULES
    LOYALTY_SALE = OP_LOYALTY_SALE
    SET_MEMBER = OP_SET_MEMBER
    RESERVE_POINTS = OP_RESERVE_POINTS
    CONFIRM_POINTS = OP_CONFIRM_POINTS
    RELEASE_POINTS = OP_RELEASE_POINTS
    POINTS_HOLD_EXPIRY = OP_POINTS_HOLD_EXPIRY
    DEFINE_PARTNER = OP_DEFINE_PARTNER
    ALLOCATE_SERIALS = OP_ALLOCATE_SERIALS
    SET_STAGE = OP_SET_STAGE
    REPLACE_CARD = OP_REPLACE_CARD


class CardStage(enum.IntEnum):
    """Same numbers as cardgate.v1.CardStage - 1."""
    CREATED = STAGE_CREATED
    PERSONALIZED = STAGE_PERSONALIZED
    SHIPPED = STAGE_SHIPPED


class Result(enum.IntEnum):
    """Outcome of one core request; the same numbers as cardgate.v1.ResultCode."""
    APPROVED = RESULT_APPROVED
    PARTIALLY_APPROVED = RESULT_PARTIALLY_APPROVED
    DECLINED_UNKNOWN_CARD = RESULT_DECLINED_UNKNOWN_CARD
    DECLINED_CARD_NOT_ACTIVE = RESULT_DECLINED_CARD_NOT_ACTIVE
    DECLINED_CARD_BLOCKED = RESULT_DECLINED_CARD_BLOCKED
    DECLINED_CARD_EXPIRED = RESULT_DECLINED_CARD_EXPIRED
    DECLINED_CARD_CLOSED = RESULT_DECLINED_CARD_CLOSED
    DECLINED_WRONG_PIN = RESULT_DECLINED_WRONG_PIN
    DECLINED_INSUFFICIENT_FUNDS = RESULT_DECLINED_INSUFFICIENT_FUNDS
    DECLINED_CURRENCY_MISMATCH = RESULT_DECLINED_CURRENCY_MISMATCH
    DECLINED_BALANCE_LIMIT_EXCEEDED = RESULT_DECLINED_BALANCE_LIMIT_EXCEEDED
    DECLINED_LOAD_LIMIT_EXCEEDED = RESULT_DECLINED_LOAD_LIMIT_EXCEEDED
    DECLINED_BALANCE_NOT_ZERO = RESULT_DECLINED_BALANCE_NOT_ZERO
    DECLINED_NO_UNITS_LEFT = RESULT_DECLINED_NO_UNITS_LEFT
    DECLINED_ORIGINAL_NOT_FOUND = RESULT_DECLINED_ORIGINAL_NOT_FOUND
    DECLINED_ORIGINAL_NOT_REFUNDABLE = RESULT_DECLINED_ORIGINAL_NOT_REFUNDABLE
    DECLINED_REFUND_EXCEEDS_ORIGINAL = RESULT_DECLINED_REFUND_EXCEEDS_ORIGINAL
    DECLINED_CARD_MISMATCH = RESULT_DECLINED_CARD_MISMATCH
    DECLINED_NOT_REVERSIBLE = RESULT_DECLINED_NOT_REVERSIBLE
    DECLINED_ALREADY_REVERSED = RESULT_DECLINED_ALREADY_REVERSED
    DECLINED_CARD_ALREADY_ISSUED = RESULT_DECLINED_CARD_ALREADY_ISSUED
    DECLINED_UNKNOWN_CARD_RANGE = RESULT_DECLINED_UNKNOWN_CARD_RANGE
    DECLINED_CARD_RANGE_EXISTS = RESULT_DECLINED_CARD_RANGE_EXISTS
    DECLINED_INVALID_STATUS_CHANGE = RESULT_DECLINED_INVALID_STATUS_CHANGE
    DECLINED_RANGE_EXHAUSTED = RESULT_DECLINED_RANGE_EXHAUSTED
    DECLINED_REPLACEMENT_UNUSABLE = RESULT_DECLINED_REPLACEMENT_UNUSABLE
    DECLINED_HOLDS_OPEN = RESULT_DECLINED_HOLDS_OPEN
    DECLINED_HOLD_NOT_FOUND = RESULT_DECLINED_HOLD_NOT_FOUND
    DECLINED_HOLD_ALREADY_COMPLETED = RESULT_DECLINED_HOLD_ALREADY_COMPLETED
    DECLINED_HOLD_VOIDED = RESULT_DECLINED_HOLD_VOIDED
    DECLINED_HOLD_EXPIRED = RESULT_DECLINED_HOLD_EXPIRED
    DECLINED_COMPLETION_EXCEEDS_HOLD = RESULT_DECLINED_COMPLETION_EXCEEDS_HOLD
    DECLINED_PRODUCT_NOT_ALLOWED = RESULT_DECLINED_PRODUCT_NOT_ALLOWED
    DECLINED_OUTLET_NOT_ALLOWED = RESULT_DECLINED_OUTLET_NOT_ALLOWED
    DECLINED_TIME_NOT_ALLOWED = RESULT_DECLINED_TIME_NOT_ALLOWED
    DECLINED_PROMPT_REQUIRED = RESULT_DECLINED_PROMPT_REQUIRED
    DECLINED_ODOMETER_BACKWARDS = RESULT_DECLINED_ODOMETER_BACKWARDS
    DECLINED_LIMIT_EXCEEDED = RESULT_DECLINED_LIMIT_EXCEEDED
    DECLINED_CREDIT_LIMIT_EXCEEDED = RESULT_DECLINED_CREDIT_LIMIT_EXCEEDED
    DECLINED_UNKNOWN_PROFILE = RESULT_DECLINED_UNKNOWN_PROFILE
    DECLINED_UNKNOWN_CONTRACT = RESULT_DECLINED_UNKNOWN_CONTRACT
    DECLINED_CONTRACT_CARD = RESULT_DECLINED_CONTRACT_CARD
    DECLINED_OUTLET_CODE_TAKEN = RESULT_DECLINED_OUTLET_CODE_TAKEN
    DECLINED_INSUFFICIENT_POINTS = RESULT_DECLINED_INSUFFICIENT_POINTS
    DECLINED_POINTS_PENDING = RESULT_DECLINED_POINTS_PENDING
    DECLINED_RANGE_IN_ANOTHER_PROGRAM = RESULT_DECLINED_RANGE_IN_ANOTHER_PROGRAM
    DECLINED_RECEIVING_CARD_UNUSABLE = RESULT_DECLINED_RECEIVING_CARD_UNUSABLE
    DECLINED_POINTS_OWED = RESULT_DECLINED_POINTS_OWED
    DECLINED_UNKNOWN_PROGRAM = RESULT_DECLINED_UNKNOWN_PROGRAM
    DECLINED_NOT_IN_PROGRAM = RESULT_DECLINED_NOT_IN_PROGRAM
    DECLINED_UNKNOWN_OUTLET = RESULT_DECLINED_UNKNOWN_OUTLET
    DECLINED_POINTS_HAVE_NO_VALUE = RESULT_DECLINED_POINTS_HAVE_NO_VALUE
    DECLINED_UNKNOWN_PARTNER = RESULT_DECLINED_UNKNOWN_PARTNER
    REJECTED_REQUEST_ID_REUSED = RESULT_REJECTED_REQUEST_ID_REUSED
    REJECTED_INVALID_REQUEST = RESULT_REJECTED_INVALID_REQUEST
    REJECTED_UNKNOWN_PRODUCT = RESULT_REJECTED_UNKNOWN_PRODUCT


class Prompt(enum.IntFlag):
    """What a fleet profile makes the terminal collect; same bits as cardgate.v1.Prompt - 1."""
    PIN = PROMPT_PIN
    ODOMETER = PROMPT_ODOMETER
    DRIVER = PROMPT_DRIVER
    VEHICLE = PROMPT_VEHICLE


class Period(enum.IntEnum):
    """Limit periods (cardgate.v1.LimitPeriod - 1)."""
    TRANSACTION = 0
    DAY = 1
    WEEK = 2
    MONTH = 3
    LIFETIME = 4


class Measure(enum.IntEnum):
    """What a limit counts (cardgate.v1.LimitMeasure - 1)."""
    MONEY = 0
    VOLUME = 1
    COUNT = 2


def limit_index(period, measure):
    return int(period) * LIMIT_MEASURES + int(measure)


PRODUCT_KIND_FUEL = PRODUCT_FUEL
PRODUCT_KIND_OTHER = PRODUCT_OTHER
PROFILE_PLACES = PROFILE_PLACES_MAX


class CardStatus(enum.IntEnum):
    """Same numbers as cardgate.v1.CardStatus."""
    ISSUED = CARD_ISSUED
    ACTIVE = CARD_ACTIVE
    BLOCKED = CARD_BLOCKED
    CLOSED = CARD_CLOSED


class HoldState(enum.IntEnum):
    OPEN = HOLD_OPEN
    COMPLETED = HOLD_COMPLETED
    VOIDED = HOLD_VOIDED
    EXPIRED = HOLD_EXPIRED


class Slot(enum.IntEnum):
    CARD_VALUE = SLOT_CARD_VALUE
    RANGE_FUNDING = SLOT_RANGE_FUNDING
    RANGE_MERCHANT = SLOT_RANGE_MERCHANT
    CARD_HELD = SLOT_CARD_HELD
    CARD_UNITS = SLOT_CARD_UNITS
    RANGE_UNITS_SOLD = SLOT_RANGE_UNITS_SOLD
    RANGE_UNITS_USED = SLOT_RANGE_UNITS_USED
    RANGE_UNITS_EXPIRED = SLOT_RANGE_UNITS_EXPIRED
    CARD_POINTS = SLOT_CARD_POINTS
    RANGE_POINTS_ISSUED = SLOT_RANGE_POINTS_ISSUED
    RANGE_POINTS_REDEEMED = SLOT_RANGE_POINTS_REDEEMED
    RANGE_POINTS_EXPIRED = SLOT_RANGE_POINTS_EXPIRED
    RANGE_POINTS_ADJUSTED = SLOT_RANGE_POINTS_ADJUSTED
    CARD_POINTS_OWED = SLOT_CARD_POINTS_OWED
    CARD_SALES_ELSEWHERE = SLOT_CARD_SALES_ELSEWHERE
    RANGE_SALES_ELSEWHERE = SLOT_RANGE_SALES_ELSEWHERE
    CARD_POINTS_HELD = SLOT_CARD_POINTS_HELD


class PackageState(enum.IntEnum):
    OPEN = PACKAGE_OPEN
    USED_UP = PACKAGE_USED_UP
    EXPIRED = PACKAGE_EXPIRED
    HELD = PACKAGE_HELD

# Limits (minor units). An amount above AMOUNT_MINOR_MAX is refused as invalid; a
# balance may never exceed BALANCE_MINOR_MAX, so every sum stays far inside int64.
AMOUNT_MINOR_MAX = 10_000_000_000_000          # 100 billion units of a 2-decimal currency
SERIALS_PER_REQUEST_MAX = 1_000_000             # card numbers one allocation may take
BALANCE_MINOR_MAX = 1_000_000_000_000_000
SYSTEM_OWNER_BASE = 0xFF00_0000_0000_0000       # owner ids of range-level accounts
CONTRACT_OWNER_BASE = 0xFE00_0000_0000_0000     # owner ids of contract accounts
VOLUME_ML_MAX = 10_000_000_000                  # 10,000 m3 in one request, at most
ODOMETER_MAX = 100_000_000                      # km

REQUEST_SIZE = sizeof(CoreRequest)
REPLY_SIZE = sizeof(CoreReply)
REQUEST_RECORD_SIZE = sizeof(RequestRecord)
CARD_RECORD_SIZE = sizeof(CardRecord)
ACCOUNT_RECORD_SIZE = sizeof(AccountRecord)
JOURNAL_ENTRY_SIZE = sizeof(JournalEntry)
RANGE_RECORD_SIZE = sizeof(RangeRecord)
HOLD_RECORD_SIZE = sizeof(HoldRecord)
PACKAGE_RECORD_SIZE = sizeof(PackageRecord)
PROGRAM_RECORD_SIZE = sizeof(ProgramRecord)
PROGRAM_RANGES = PROGRAM_RANGES_MAX


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
                     "birthday_points birthday_window_days point_value_millis no_earn_when_redeeming",
                     defaults=(False, False, (), (), 0, 0, 0, 0, False))


def pack_program(unsigned int program_id, int expiry_kind, int expiry_n=0, int pending_days=0,
                 int utc_offset_min=0, range_ids=(), *, bint stack_rules=False,
                 bint tiers_by_points=False, tiers=(), discounts=(), long long welcome_points=0,
                 long long birthday_points=0, int birthday_window_days=0,
                 unsigned int point_value_millis=0, bint no_earn_when_redeeming=False):
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
    p.range_count = len(range_ids)
    for i, range_id in enumerate(range_ids):
        p.range_ids[i] = range_id
    p.flags = (PROGRAM_STACK_RULES if stack_rules else 0) | \
        (PROGRAM_TIERS_BY_POINTS if tiers_by_points else 0) | \
        (PROGRAM_NO_EARN_WHEN_REDEEMING if no_earn_when_redeeming else 0)
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
                   bool(p.flags & PROGRAM_NO_EARN_WHEN_REDEEMING))


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
PROFILE_RECORD_SIZE = sizeof(ProfileRecord)
OUTLET_RECORD_SIZE = sizeof(OutletRecord)
# The layout of what fastcore writes; a store of another format is refused, not misread.
STORE_FORMAT = 3
STORE_FORMAT_KEY = b"store_format"
UNITS_ASSET = "UNT"            # the asset code of subscription units in accounts and journal
POINTS_ASSET = "PTS"           # the asset code of loyalty points
LOT_NEVER = 0xFFFF_FFFF_FFFF_FFFF  # index time of a lot that never expires
# Holds released by timeout at the start of one batch, at most (the rest: next batch).
HOLD_EXPIRIES_PER_BATCH_MAX = 1000  # holds (and packages) ended by time per batch, at most
HOLD_TIMEOUT_S_DEFAULT = 1800      # an open pre-authorization is released after this long
PIN_TRIES_MAX_DEFAULT = 3      # wrong PINs in a row that block a card, unless its range says

assert REQUEST_SIZE == 240, REQUEST_SIZE
assert REPLY_SIZE == 136, REPLY_SIZE
assert REQUEST_RECORD_SIZE == 392, REQUEST_RECORD_SIZE
assert PROFILE_RECORD_SIZE == 232, PROFILE_RECORD_SIZE
assert CARD_RECORD_SIZE == 80, CARD_RECORD_SIZE
assert ACCOUNT_RECORD_SIZE == 48, ACCOUNT_RECORD_SIZE
assert JOURNAL_ENTRY_SIZE == 72, JOURNAL_ENTRY_SIZE
assert RANGE_RECORD_SIZE == 68, RANGE_RECORD_SIZE

REQUEST_FLAG_REVERSED = RECORD_REVERSED
REQUEST_FLAG_TOMBSTONE = RECORD_TOMBSTONE
REQUEST_FLAG_CONFIRMED = RECORD_CONFIRMED
REQUEST_FLAG_RELEASED = RECORD_RELEASED
REQUEST_FLAG_TIMED_OUT = RECORD_TIMED_OUT
ACCOUNT_FLAG_NO_OVERDRAFT = ACCOUNT_NO_OVERDRAFT

Reply = namedtuple("Reply", "result op card_status currency approved_minor balance_minor "
                   "pending_minor card_id journal_seq approval_code pan_first6 pan_last4 "
                   "pan_length expiry_yyyymm prompts_missing limit_hit volume_ml "
                   "credit_limit_minor review tier earn_flags discount_bp points_earned "
                   "discount_minor lifetime_spend_minor points_seq points_redeemed "
                   "points_value_minor")
RequestView = namedtuple("RequestView", "op target_status currency amount_minor request_id "
                         "ref_request_id card_key range_id expiry_yyyymm pan_first6 pan_last4 "
                         "pan_length pin_verifier partial_ok pin_tries_max reason adjust_down "
                         "load_per_day_max_minor valid_until_s payload_size profile_id volume_ml "
                         "odometer outlet_code contract_id products driver_present "
                         "vehicle_present actor range_name iin_digits")
RequestRecordView = namedtuple("RequestRecordView", "request reply refunded_minor flags")
Card = namedtuple("Card", "card_id range_id expiry_yyyymm status pan_first6 pan_last4 "
                  "pan_length issued_s activated_s pin_set pin_failures load_day "
                  "loaded_today_minor contract_id profile_id stage", defaults=(0,))
Account = namedtuple("Account", "balance_minor pending_minor currency flags "
                     "credits_minor_total debits_minor_total last_journal_seq")
JournalView = namedtuple("JournalView", "request_id debit_owner debit_slot credit_owner "
                         "credit_slot op currency amount_minor time_s reason actor "
                         "partner_id origin_partner", defaults=(0, 0, 0))
Hold = namedtuple("Hold", "card_id range_id status currency held_minor completed_minor "
                  "created_s expires_s counted value_owner volume_ml completed_volume_ml")
CardRange = namedtuple("CardRange", "range_id pan_length iin_prefix iin_digits currency name "
                       "pin_tries_max balance_max_minor load_per_day_max_minor numbering")


cdef inline str _currency(const char* c):
    return c[:strnlen_max(c, CURRENCY_SIZE)].decode("ascii")


cdef inline Py_ssize_t strnlen_max(const char* c, Py_ssize_t n):
    cdef Py_ssize_t i
    for i in range(n):
        if c[i] == 0:
            return i
    return n


cdef inline void _check_size(bytes data, Py_ssize_t expected, str what) except *:
    if len(data) != expected:
        raise ValueError(f"{what} record must be {expected} bytes, got {len(data)}")


def _one_of(*names_values):
    """The value of the one name given (not zero or empty) among names that share bytes."""
    given = [(n, v) for n, v in zip(names_values[::2], names_values[1::2]) if v]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(n for n, _ in given)} share bytes of the request: "
                         f"give only the one the operation uses")
    return given[0][1] if given else names_values[1]


def pack_request(int op, bytes request_id, *, bytes ref_request_id=None, bytes card_key=None,
                 str currency="", long long amount_minor=0, int target_status=0,
                 unsigned int range_id=0, unsigned int expiry_yyyymm=0,
                 unsigned int pan_first6=0, unsigned int pan_last4=0, int pan_length=0,
                 unsigned long long iin_prefix=0, int iin_digits=0, str range_name="",
                 bytes pin_verifier=None, bint partial_ok=False, int pin_tries_max=0,
                 int reason=0, bint adjust_down=False, long long load_per_day_max_minor=0,
                 unsigned long long valid_until_s=0, bytes payload=None,
                 unsigned int profile_id=0, long long volume_ml=0, odometer=None,
                 unsigned int outlet_code=0, unsigned int contract_id=0, products=(),
                 bint driver_present=False, bint vehicle_present=False, unsigned int actor=0,
                 long long points_tendered=0, int numbering=0, int close_disposition=0,
                 int product_kind=0, int stage=0, int payment_method=0,
                 long long balance_max_minor=0, long long serial_count=0,
                 long long credit_limit_minor=0, unsigned int product_code=0,
                 str product_name="", str partner_name="", unsigned int program_id=0,
                 unsigned int partner_id=0, unsigned int birthday_mmdd=0):
    """Pack one core request; the gateway validates values before calling this.

    With a payload (SET_PROFILE, DEFINE_OUTLET, SET_PROGRAM, TRANSFER_POINTS) the request
    is followed by it, and its payload_digest (card_payload_digest for a payload naming
    another card) carries the payload's digest so that a retry with another payload is
    seen. Names that share bytes of the record (core_request.h) are one per operation:
    giving two of them is an error."""
    cdef CoreRequest r
    memset(&r, 0, sizeof(r))
    if len(request_id) != REQUEST_ID_SIZE:
        raise ValueError("request_id must be 16 bytes")
    r.op = op
    r.target_status = _one_of("target_status", target_status, "numbering", numbering,
                              "close_disposition", close_disposition, "product_kind",
                              product_kind, "stage", stage, "payment_method", payment_method)
    r.pan_length = pan_length
    r.iin_digits = iin_digits
    cdef bytes cur = currency.encode("ascii")
    if len(cur) > 3:
        raise ValueError(f"currency must be 3 letters, got {currency!r}")
    strncpy(r.currency, cur, CURRENCY_SIZE)
    r.amount_minor = _one_of("amount_minor", amount_minor, "balance_max_minor", balance_max_minor,
                             "serial_count", serial_count, "credit_limit_minor", credit_limit_minor)
    memcpy(r.request_id, <char*>request_id, REQUEST_ID_SIZE)
    if ref_request_id is not None:
        if len(ref_request_id) != REQUEST_ID_SIZE:
            raise ValueError("ref_request_id must be 16 bytes")
        memcpy(r.ref_request_id, <char*>ref_request_id, REQUEST_ID_SIZE)
    if card_key is not None:
        if len(card_key) != CARD_KEY_SIZE:
            raise ValueError("card_key must be 32 bytes")
        memcpy(r.card_key, <char*>card_key, CARD_KEY_SIZE)
    r.range_id = _one_of("range_id", range_id, "product_code", product_code)
    r.expiry_yyyymm = expiry_yyyymm
    r.pan_first6 = pan_first6
    r.pan_last4 = pan_last4
    r.iin_prefix = iin_prefix
    cdef bytes name = _one_of("range_name", range_name, "product_name", product_name,
                              "partner_name", partner_name).encode("utf-8")
    if len(name) > RANGE_NAME_SIZE:
        raise ValueError(f"a name is at most {RANGE_NAME_SIZE} bytes of UTF-8")
    memcpy(r.range_name, <char*>name, len(name))
    if pin_verifier is not None:
        if len(pin_verifier) != PIN_VERIFIER_SIZE:
            raise ValueError(f"pin_verifier must be {PIN_VERIFIER_SIZE} bytes")
        memcpy(r.pin_verifier, <char*>pin_verifier, PIN_VERIFIER_SIZE)
        r.flags |= REQUEST_PIN_PRESENT
    if partial_ok:
        r.flags |= REQUEST_PARTIAL_OK
    if not 0 <= pin_tries_max <= 255:
        raise ValueError("pin_tries_max must be 0 to 255")
    r.pin_tries_max = pin_tries_max
    r.reason = reason
    if adjust_down:
        r.flags |= REQUEST_ADJUST_DOWN
    r.load_per_day_max_minor = _one_of("load_per_day_max_minor", load_per_day_max_minor,
                                       "points_tendered", points_tendered)
    r.valid_until_s = valid_until_s
    r.profile_id = _one_of("profile_id", profile_id, "program_id", program_id,
                           "partner_id", partner_id, "birthday_mmdd", birthday_mmdd)
    r.volume_ml = volume_ml
    if odometer is not None:
        r.odometer = odometer
        r.flags |= REQUEST_ODOMETER_PRESENT
    if driver_present:
        r.flags |= REQUEST_DRIVER_PRESENT
    if vehicle_present:
        r.flags |= REQUEST_VEHICLE_PRESENT
    r.outlet_code = outlet_code
    r.contract_id = contract_id
    r.actor = actor
    for code in products:
        if not 0 <= code < PRODUCT_SET_SIZE * 8:
            raise ValueError(f"product codes are 0 to {PRODUCT_SET_SIZE * 8 - 1}, got {code}")
        r.products[code >> 3] |= 1 << (code & 7)
    if payload is None:
        return (<char*>&r)[:sizeof(r)]
    if len(payload) > 0xFFFF:
        raise ValueError("payload is at most 65535 bytes")
    r.payload_size = len(payload)
    digest = hashlib.sha256(payload).digest()
    if op in (OP_TRANSFER_POINTS, OP_REPLACE_CARD, OP_DEACTIVATE):  # card_key names the card
        memcpy(r.card_payload_digest, <char*>digest, REQUEST_ID_SIZE)
    else:
        memcpy(r.payload_digest, <char*>digest, CARD_KEY_SIZE)
    return (<char*>&r)[:sizeof(r)] + payload


def product_set(bytes bitmap):
    """The product codes of a PRODUCT_SET_SIZE-byte bitmap, ascending."""
    return tuple(i for i in range(len(bitmap) * 8) if bitmap[i >> 3] >> (i & 7) & 1)


def pack_profile(unsigned int profile_id, *, products=None, nonfuel_allowed=True, prompts=0,
                 days_mask=0, minute_from=0, minute_to=0, utc_offset_min=0, places=(),
                 limits=None, soft=()):
    """A ProfileRecord. products: allowed fuel codes (None: every fuel); limits:
    {(Period, Measure): max}; soft: the (Period, Measure) keys that only flag."""
    cdef ProfileRecord p
    memset(&p, 0, sizeof(p))
    p.profile_id = profile_id
    if nonfuel_allowed:
        p.flags |= PROFILE_NONFUEL_ALLOWED
    if products is not None:
        p.flags |= PROFILE_FUELS_RESTRICTED
        for code in products:
            p.allowed_products[code >> 3] |= 1 << (code & 7)
    p.prompts = prompts
    p.days_mask = days_mask
    p.minute_from = minute_from
    p.minute_to = minute_to
    p.utc_offset_min = utc_offset_min
    if len(places) > PROFILE_PLACES_MAX:
        raise ValueError(f"at most {PROFILE_PLACES_MAX} outlets or regions")
    p.place_count = len(places)
    for i, code in enumerate(places):
        p.places[i] = code
    for key, value in (limits or {}).items():
        p.limits[limit_index(*key)] = value
    for key in soft:
        p.soft_mask |= 1 << limit_index(*key)
    return (<char*>&p)[:sizeof(p)]


Profile = namedtuple("Profile", "profile_id nonfuel_allowed products prompts days_mask "
                     "minute_from minute_to utc_offset_min places limits soft")


def unpack_profile(bytes data):
    _check_size(data, sizeof(ProfileRecord), "profile")
    cdef const ProfileRecord* p = <const ProfileRecord*><const char*>data
    limits = {(Period(i // LIMIT_MEASURES), Measure(i % LIMIT_MEASURES)): p.limits[i]
              for i in range(LIMIT_PERIODS * LIMIT_MEASURES) if p.limits[i]}
    soft = frozenset(key for key in limits if p.soft_mask >> limit_index(*key) & 1)
    return Profile(p.profile_id, bool(p.flags & PROFILE_NONFUEL_ALLOWED),
                   product_set((<char*>p.allowed_products)[:PRODUCT_SET_SIZE])
                   if p.flags & PROFILE_FUELS_RESTRICTED else None,
                   p.prompts, p.days_mask, p.minute_from, p.minute_to, p.utc_offset_min,
                   tuple(p.places[i] for i in range(min(p.place_count, PROFILE_PLACES_MAX))), limits, soft)


Usage = namedtuple("Usage", "period_index used pending odometer")


def unpack_usage(bytes data):
    """period_index: (day, week, month, lifetime); used[period - 1][measure] for the
    counted periods (Period.DAY..LIFETIME); pending[measure]; odometer or None."""
    _check_size(data, sizeof(UsageRecord), "usage")
    cdef const UsageRecord* u = <const UsageRecord*><const char*>data
    return Usage(tuple(u.period_index[i] for i in range(COUNTED_PERIODS)),
                 tuple(tuple(u.used[p * LIMIT_MEASURES + m] for m in range(LIMIT_MEASURES))
                       for p in range(COUNTED_PERIODS)),
                 tuple(u.pending[m] for m in range(LIMIT_MEASURES)),
                 u.odometer if u.odometer_set else None)


Contract = namedtuple("Contract", "contract_id profile_id currency credit_limit_minor")


def unpack_contract(bytes data):
    _check_size(data, sizeof(ContractRecord), "contract")
    cdef const ContractRecord* c = <const ContractRecord*><const char*>data
    return Contract(c.contract_id, c.profile_id, _currency(c.currency), c.credit_limit_minor)


def pack_outlet(unsigned int outlet_code, unsigned int region_code, str name,
                unsigned int partner_id=0, str display_name=""):
    cdef OutletRecord o
    memset(&o, 0, sizeof(o))
    o.outlet_code = outlet_code
    o.region_code = region_code
    o.partner_id = partner_id
    cdef bytes shown = display_name.encode("utf-8")
    if len(shown) > OUTLET_DISPLAY_SIZE:
        raise ValueError(f"an outlet's display name is at most {OUTLET_DISPLAY_SIZE} bytes of UTF-8")
    memcpy(o.display_name, <char*>shown, len(shown))
    cdef bytes raw = name.encode("utf-8")
    if len(raw) > OUTLET_NAME_SIZE:
        raise ValueError(f"outlet name is at most {OUTLET_NAME_SIZE} bytes of UTF-8")
    memcpy(o.name, <char*>raw, len(raw))
    return (<char*>&o)[:sizeof(o)]


Outlet = namedtuple("Outlet", "outlet_code region_code name partner_id display_name")


def unpack_outlet(bytes data):
    _check_size(data, sizeof(OutletRecord), "outlet")
    cdef const OutletRecord* o = <const OutletRecord*><const char*>data
    return Outlet(o.outlet_code, o.region_code,
                  o.name[:strnlen_max(o.name, OUTLET_NAME_SIZE)].decode("utf-8", "replace"),
                  o.partner_id, o.display_name[:strnlen_max(o.display_name, OUTLET_DISPLAY_SIZE)]
                  .decode("utf-8", "replace"))


def unpack_catalog(bytes data):
    """(known codes, fuel codes)."""
    _check_size(data, sizeof(CatalogRecord), "catalog")
    return product_set(data[:PRODUCT_SET_SIZE]), product_set(data[PRODUCT_SET_SIZE:])


def config_key(kind: str, unsigned int id_):
    """Key of a fleet record in the config database: kind 'F', 'C' or 'O'."""
    return config_key_of(ord(kind), id_)


CATALOG_KEY = b"catalog"


cdef object _reply(const CoreReply* p):
    return Reply(p.result, p.op, p.card_status, _currency(p.currency), p.approved_minor,
                 p.balance_minor, p.pending_minor, p.card_id, p.journal_seq, p.approval_code,
                 p.pan_first6, p.pan_last4, p.pan_length, p.expiry_yyyymm, p.prompts_missing,
                 p.limit_hit, p.volume_ml, p.credit_limit_minor, bool(p.review), p.tier,
                 p.earn_flags, p.discount_bp, p.points_earned, p.discount_minor,
                 p.lifetime_spend_minor, p.points_seq, p.points_redeemed, p.points_value_minor)


cdef object _request(const CoreRequest* p):
    return RequestView(p.op, p.target_status, _currency(p.currency), p.amount_minor,
                       (<char*>p.request_id)[:REQUEST_ID_SIZE],
                       (<char*>p.ref_request_id)[:REQUEST_ID_SIZE],
                       (<char*>p.card_key)[:CARD_KEY_SIZE], p.range_id, p.expiry_yyyymm,
                       p.pan_first6, p.pan_last4, p.pan_length,
                       (<char*>p.pin_verifier)[:PIN_VERIFIER_SIZE]
                       if p.flags & REQUEST_PIN_PRESENT else None,
                       bool(p.flags & REQUEST_PARTIAL_OK), p.pin_tries_max, p.reason,
                       bool(p.flags & REQUEST_ADJUST_DOWN), p.load_per_day_max_minor,
                       p.valid_until_s, p.payload_size, p.profile_id, p.volume_ml,
                       p.odometer if p.flags & REQUEST_ODOMETER_PRESENT else None,
                       p.outlet_code, p.contract_id,
                       product_set((<char*>p.products)[:PRODUCT_SET_SIZE]),
                       bool(p.flags & REQUEST_DRIVER_PRESENT),
                       bool(p.flags & REQUEST_VEHICLE_PRESENT), p.actor,
                       p.range_name[:strnlen_max(p.range_name, RANGE_NAME_SIZE)], p.iin_digits)


def unpack_reply(bytes data):
    _check_size(data, sizeof(CoreReply), "reply")
    return _reply(<const CoreReply*><const char*>data)


def unpack_replies(bytes data):
    """Split a batch answer of ``apply_batch`` into Reply tuples, in request order."""
    if len(data) % sizeof(CoreReply):
        raise ValueError("batch answer is not a whole number of replies")
    cdef const char* base = data
    return [_reply(<const CoreReply*>(base + i)) for i in range(0, len(data), sizeof(CoreReply))]


def unpack_request(bytes data):
    """A request as packed: the CoreRequest, then its payload if it has one."""
    if len(data) < sizeof(CoreRequest) or \
            len(data) != sizeof(CoreRequest) + (<const CoreRequest*><const char*>data).payload_size:
        raise ValueError(f"request record must be {sizeof(CoreRequest)} bytes and its payload, "
                         f"got {len(data)}")
    return _request(<const CoreRequest*><const char*>data)


def unpack_request_record(bytes data):
    _check_size(data, sizeof(RequestRecord), "request")
    cdef const RequestRecord* p = <const RequestRecord*><const char*>data
    return RequestRecordView(_request(&p.request), _reply(&p.reply), p.refunded_minor, p.flags)


def unpack_card(bytes data):
    _check_size(data, sizeof(CardRecord), "card")
    cdef const CardRecord* p = <const CardRecord*><const char*>data
    return Card(p.card_id, p.range_id, p.expiry_yyyymm, p.status, p.pan_first6, p.pan_last4,
                p.pan_length, p.issued_s, p.activated_s, bool(p.pin_set), p.pin_failures,
                p.load_day, p.loaded_today_minor, p.contract_id, p.profile_id, p.stage)


def unpack_account(bytes data):
    _check_size(data, sizeof(AccountRecord), "account")
    cdef const AccountRecord* p = <const AccountRecord*><const char*>data
    return Account(p.balance_minor, p.pending_minor, _currency(p.currency), p.flags,
                   p.credits_minor_total, p.debits_minor_total, p.last_journal_seq)


def unpack_journal_entry(bytes data):
    _check_size(data, sizeof(JournalEntry), "journal")
    cdef const JournalEntry* p = <const JournalEntry*><const char*>data
    return JournalView((<char*>p.request_id)[:REQUEST_ID_SIZE], p.debit_owner, p.debit_slot,
                       p.credit_owner, p.credit_slot, p.op, _currency(p.currency),
                       p.amount_minor, p.time_s, p.reason, p.actor, p.partner_id,
                       p.origin_partner)


def unpack_hold(bytes data):
    _check_size(data, sizeof(HoldRecord), "hold")
    cdef const HoldRecord* p = <const HoldRecord*><const char*>data
    return Hold(p.card_id, p.range_id, p.status, _currency(p.currency), p.held_minor,
                p.completed_minor, p.created_s, p.expires_s, bool(p.counted), p.value_owner,
                p.volume_ml, p.completed_volume_ml)


Package = namedtuple("Package", "card_id range_id status units_total units_left created_s "
                     "valid_until_s available_from_s partner_id held_until_s")


def unpack_package(bytes data):
    _check_size(data, sizeof(PackageRecord), "package")
    cdef const PackageRecord* p = <const PackageRecord*><const char*>data
    return Package(p.card_id, p.range_id, p.status, p.units_total, p.units_left, p.created_s,
                   p.valid_until_s, p.available_from_s, p.partner_id, p.held_until_s)


def unpack_range(bytes data):
    _check_size(data, sizeof(RangeRecord), "range")
    cdef const RangeRecord* p = <const RangeRecord*><const char*>data
    name = p.name[:strnlen_max(p.name, RANGE_NAME_SIZE)].decode("utf-8", "replace")
    return CardRange(p.range_id, p.pan_length, p.iin_prefix, p.iin_digits,
                     _currency(p.currency), name, p.pin_tries_max, p.balance_max_minor,
                     p.load_per_day_max_minor, p.numbering)


def card_key(unsigned long long card_id):
    """LMDB key of a card record in the book."""
    return card_key_of(card_id)


def account_key(unsigned long long owner_id, int slot):
    """LMDB key of an account record in the book."""
    return account_key_of(owner_id, slot)


def journal_key(unsigned long long seq):
    return u64_be(seq)


def journal_seq_of(bytes key):
    if len(key) != 8:
        raise ValueError("journal keys are 8 bytes")
    return u64_from_be(<const unsigned char*><const char*>key)


def range_key(unsigned int range_id):
    return range_key_of(range_id)


def stage_time_key(unsigned long long card_id, int stage):
    """Book key of when the card reached a production stage (CardStage)."""
    return stage_time_key_of(card_id, stage)


def member_key(unsigned long long card_id):
    return member_key_of(card_id)


def history_key(unsigned long long card_id, unsigned long long seq):
    return history_key_of(card_id, seq)


def parse_book_key(bytes key):
    """What a key of the book names: ('card', card_id, None), ('account', owner_id, slot),
    ('member', card_id, None), ('points_history', card_id, journal seq),
    ('point_lot', card_id, (valid_until_s, lot id)) or ('stage_time', card_id, stage)."""
    cdef const unsigned char* k = <const unsigned char*><const char*>key
    if len(key) == 9 and k[8] == b'C':
        return "card", u64_from_be(k), None
    if len(key) == 10 and k[8] == b'A':
        return "account", u64_from_be(k), k[9]
    if len(key) == 9 and k[8] == b'M':
        return "member", u64_from_be(k), None
    if len(key) == 17 and k[8] == b'H':
        return "points_history", u64_from_be(k), u64_from_be(k + 9)
    if len(key) == 9 + 8 + REQUEST_ID_SIZE and k[8] == b'L':
        return "point_lot", u64_from_be(k), (u64_from_be(k + 9), key[17:])
    if len(key) == 10 and k[8] == b'T':
        return "stage_time", u64_from_be(k), k[9]
    raise ValueError(f"not a key of the book: {key.hex()}")
