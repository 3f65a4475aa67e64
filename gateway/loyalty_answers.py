"""What cardgate tells about a loyalty member: for an authorization, the points a sale
earned (or a return took back) and why, the card's tier, and the discount to apply with
its reason; on request, the member's standing (tier, progress, discount)."""
import collections
import datetime

from cardgate.fastcore import records
from cardgate.fastcore.records import Op
from cardgate.v1 import common_pb2

from . import loyalty_words as words

_LOYALTY_OPS = (Op.PURCHASE, Op.COMPLETE, Op.LOYALTY_SALE, Op.REFUND, Op.REVERSAL)


def loyalty_outcome(store, reply):
    """(LoyaltyOutcome, the card's money currency) for a reply of a card in a loyalty
    program, or (None, None)."""
    if reply.op not in _LOYALTY_OPS or not reply.card_id or not (
            reply.op == Op.LOYALTY_SALE or reply.points_earned or reply.points_seq or
            reply.points_redeemed or
            reply.tier or reply.discount_bp):
        return None, None
    card = store.read_card_by_id(reply.card_id)
    found = store.read_program_of_range(card.range_id)
    program = found[0] if found else None
    currency = store.read_range(card.range_id).currency
    explanation = ""
    if reply.points_seq:
        for line, entry in store.read_points_lines(card.card_id, 1, seq=reply.points_seq):
            outlet = store.read_outlet(line.outlet_code) if line.outlet_code else None
            explanation = words.describe_line(line, entry, program, outlet, currency)
    return common_pb2.LoyaltyOutcome(
        points_earned=reply.points_earned, points_balance=store.read_points(card.card_id),
        tier=words.tier_name(program, reply.tier),
        tier_up=bool(reply.earn_flags & records.EARNED_FLAG_TIER_UP),
        welcome_bonus=bool(reply.earn_flags & records.EARNED_FLAG_WELCOME),
        birthday_bonus=bool(reply.earn_flags & records.EARNED_FLAG_BIRTHDAY),
        discount_bp=reply.discount_bp,
        discount=common_pb2.Money(amount_minor=reply.discount_minor, currency=currency)
        if reply.discount_minor else None,
        discount_reason=words.discount_reason(program, reply.discount_bp,
                                              reply.lifetime_spend_minor, currency),
        explanation=explanation, points_redeemed=reply.points_redeemed,
        points_value=common_pb2.Money(amount_minor=reply.points_value_minor, currency=currency)
        if reply.points_redeemed else None), currency


Standing = collections.namedtuple("Standing", "tier rolling_total next_tier to_next_tier "
                                  "tier_review_s discount_bp next_discount_bp to_next_discount")


def _month_index(program, now_s: int) -> int:
    local = datetime.datetime.fromtimestamp(now_s + program.utc_offset_min * 60, datetime.timezone.utc)
    return (local.year - 1970) * 12 + local.month - 1


def standing(program, member, now_s: int) -> Standing:
    """Where the member stands now, as the next sale would see it: its 12-month total
    (months past the window dropped), its tier (lower only from the review date), the
    next tier and discount level and what they take."""
    member = member or records.Member(0, 0, False, 0, 0, 0, 0, 0, (0,) * 12, (0,) * 12)
    buckets = member.month_points if program.tiers_by_points else member.month_spend
    months_ago = _month_index(program, now_s) - member.month_index
    total = sum(buckets[(member.month_index - k) % 12] for k in range(12 - months_ago)) \
        if months_ago < 12 else 0
    reached = sum(1 for tier in program.tiers if total >= tier.minimum)
    tier = min(member.tier, len(program.tiers))
    if reached > tier or (reached < tier and now_s >= member.tier_review_s):
        tier = reached
    upper = program.tiers[tier] if tier < len(program.tiers) else None
    bp = max((s.discount_bp for s in program.discounts
              if member.lifetime_spend_minor >= s.minimum_spend_minor), default=0)
    step = next((s for s in program.discounts if s.minimum_spend_minor > member.lifetime_spend_minor),
                None)
    return Standing(tier, total, upper.name if upper else "",
                    max(upper.minimum - total, 0) if upper else 0, member.tier_review_s, bp,
                    step.discount_bp if step else 0,
                    step.minimum_spend_minor - member.lifetime_spend_minor if step else 0)
